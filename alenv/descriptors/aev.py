"""Atom-centred invariant descriptors (ANI-style radial and angular symmetry functions).

Each atom i gets a vector G_i built from its neighbours within a smooth cutoff:

- radial terms, one block per neighbour element s:
  ``G_i[s, k] = sum_{j in s} 0.25 exp(-eta_R (r_ij - R_k)^2) fc(r_ij, Rc_R)``
- angular terms, one block per unordered element pair (s1, s2):
  ``G_i[(s1,s2), a, b] = sum_{j<k} 2^(1-zeta) (1 + cos(theta_ijk - theta_b))^zeta
  exp(-eta_A ((r_ij + r_ik)/2 - R_a)^2) fc(r_ij) fc(r_ik)``

with ``fc(r) = 0.5 cos(pi r / Rc) + 0.5`` for r < Rc. Distances and angles only, summed over neighbours of
each element, so G is invariant to translation, rotation and permutation of like atoms. Periodic cells are
handled through neighbour images. The computation is written in torch so that the exact derivative of G with
respect to positions (what forces need) comes from automatic differentiation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list


@dataclass(frozen=True)
class AEVSpec:
    """Settings of the descriptor; ``species`` are the atomic numbers it knows (sorted)."""

    species: tuple[int, ...]
    radial_cutoff: float = 5.2  # Angstrom
    radial_shells: int = 16
    radial_eta: float = 16.0  # 1/Angstrom^2
    radial_start: float = 0.8  # Angstrom
    angular_cutoff: float = 3.5  # Angstrom
    angular_shells: int = 4
    angular_eta: float = 8.0  # 1/Angstrom^2
    angular_start: float = 0.8  # Angstrom
    angle_sections: int = 8
    zeta: float = 32.0

    def __post_init__(self) -> None:
        if len(self.species) == 0:
            raise ValueError("AEVSpec needs at least one element")
        if tuple(sorted(set(self.species))) != tuple(self.species):
            raise ValueError(f"species must be sorted and unique, got {self.species}")
        if self.angular_cutoff > self.radial_cutoff:
            raise ValueError("angular_cutoff must not exceed radial_cutoff")

    @property
    def n_species(self) -> int:
        return len(self.species)

    @property
    def n_radial(self) -> int:
        return self.n_species * self.radial_shells

    @property
    def n_pairs(self) -> int:
        return self.n_species * (self.n_species + 1) // 2

    @property
    def n_angular(self) -> int:
        return self.n_pairs * self.angular_shells * self.angle_sections

    @property
    def n_features(self) -> int:
        return self.n_radial + self.n_angular

    def species_index(self, numbers: np.ndarray) -> np.ndarray:
        """Map atomic numbers to 0..S-1; unknown elements raise a clear error."""
        lut = np.full(max(max(self.species), int(np.max(numbers))) + 1, -1, dtype=np.int64)
        lut[list(self.species)] = np.arange(self.n_species)
        idx = lut[numbers]
        if np.any(idx < 0):
            unknown = sorted(set(int(z) for z in np.asarray(numbers)[idx < 0]))
            raise ValueError(f"elements {unknown} are not in the descriptor's species {self.species}")
        return idx


@dataclass
class Neighbours:
    """Flat pair and triplet lists for a batch of frames.

    Atom indices are global over the batch: frame f, atom a -> ``atom_ptr[f] + a``. A uniform batch (every
    frame with ``n_atoms`` atoms) has ``atom_ptr`` None and the offsets ``f * n_atoms``; a ragged batch
    (``build_neighbours(..., ragged=True)``) has ``n_atoms`` None and ``atom_ptr`` (n_frames + 1,).
    """

    n_frames: int
    n_atoms: int | None
    species: np.ndarray  # (n_total,) int64 species index
    pair_i: np.ndarray  # (P,) centre atom
    pair_j: np.ndarray  # (P,) neighbour atom
    pair_shift: np.ndarray  # (P, 3) Angstrom, cell translation added to r_j
    triplet_a: np.ndarray  # (T,) index into pairs (centre i, neighbour j)
    triplet_b: np.ndarray  # (T,) index into pairs (same centre i, neighbour k), a < b
    cells: np.ndarray = field(default_factory=lambda: np.zeros((0, 3, 3)))
    atom_ptr: np.ndarray | None = None  # (n_frames + 1,) ragged batch: frame f owns atoms ptr[f]:ptr[f+1]

    @property
    def n_total(self) -> int:
        """Atoms in the batch."""
        return int(self.atom_ptr[-1]) if self.atom_ptr is not None else self.n_frames * int(self.n_atoms)

    @property
    def ragged(self) -> bool:
        return self.atom_ptr is not None


def _periodic_pairs(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``_periodic_images`` with each pair's Cartesian shift (Angstrom) in place of its lattice image."""
    found = _periodic_images(atoms, cutoff)
    if found is None:
        return None
    i, j, image = found
    return i, j, image @ atoms.cell.array


def _periodic_images(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """All (i, j, lattice image) with |r_j + shift - r_i| < cutoff, vectorised over atoms and images.

    Positions are wrapped into the cell first (the returned images, integer-valued floats, are for the
    positions as given).
    Returns None when the dense search would be too large (then ASE's neighbour list is used).
    """
    cell = atoms.cell.array
    pbc = atoms.pbc
    n = len(atoms)
    reciprocal = np.linalg.norm(np.linalg.inv(cell), axis=0)  # |b_i|: 1 / spacing of lattice planes
    reps = np.where(pbc, np.ceil(cutoff * reciprocal), 0).astype(int)
    ranges = [np.arange(-r, r + 1) for r in reps]
    S = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
    if n * n * len(S) > 4_000_000:
        return None
    frac = np.linalg.solve(cell.T, atoms.positions.T).T
    offset = np.where(pbc, np.floor(frac), 0.0)
    wrapped = atoms.positions - offset @ cell
    vec = wrapped[None, :, None, :] + (S @ cell)[None, None, :, :] - wrapped[:, None, None, :]
    d2 = (vec**2).sum(-1)  # (n, n, nS)
    close = d2 < cutoff * cutoff
    zero = np.flatnonzero((S == 0).all(1))[0]
    close[np.arange(n), np.arange(n), zero] = False
    i, j, s = np.nonzero(close)  # sorted by centre i
    shifts = S[s] - offset[j] + offset[i]  # lattice shifts for the unwrapped positions
    return i, j, shifts


def frame_pair_images(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Pairs (i, j) of one frame within ``cutoff``, sorted by centre i, and each pair's lattice image
    (P, 3), integer-valued floats: r_j + image @ cell - r_i is the bond vector (None without periodicity)."""
    if atoms.pbc.any():
        dense = _periodic_images(atoms, cutoff)
        if dense is not None:
            return dense
        i, j, S = neighbor_list("ijS", atoms, cutoff)
        order = np.lexsort((j, i))
        return i[order], j[order], S[order]
    pos = atoms.positions
    d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    np.fill_diagonal(d, np.inf)
    i, j = np.nonzero(d < cutoff)
    return i, j, None


def _frame_pairs(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of one frame with Cartesian shifts (the dense path's arithmetic, kept as it was)."""
    if atoms.pbc.any():
        dense = _periodic_pairs(atoms, cutoff)
        if dense is not None:
            return dense
        i, j, S = neighbor_list("ijS", atoms, cutoff)
        shift = S @ atoms.cell.array
        order = np.lexsort((j, i))
        return i[order], j[order], shift[order]
    i, j, _ = frame_pair_images(atoms, cutoff)
    return i, j, np.zeros((len(i), 3))


def build_neighbours(frames: Sequence[Atoms], spec: AEVSpec, ragged: bool = False) -> Neighbours:
    """Pair list within the radial cutoff and triplets within the angular cutoff, for all frames.

    Frames must have the same number of atoms, unless ``ragged``: then atoms are numbered by per-frame
    offsets (``Neighbours.atom_ptr``) and frames may differ in size.
    """
    if len(frames) == 0:
        raise ValueError("no frames given")
    counts = np.array([len(a) for a in frames], dtype=np.int64)
    n = int(counts[0])
    if not ragged and np.any(counts != n):
        raise ValueError("all frames of a batch must have the same number of atoms")
    if np.any(counts == 0):
        raise ValueError("frames have no atoms")
    offsets = np.concatenate([[0], np.cumsum(counts)])
    pi, pj, ps = [], [], []
    species = []
    for f, atoms in enumerate(frames):
        i, j, s = _frame_pairs(atoms, spec.radial_cutoff)
        pi.append(i + offsets[f])
        pj.append(j + offsets[f])
        ps.append(s)
        species.append(spec.species_index(atoms.numbers))
    pair_i = np.concatenate(pi).astype(np.int64)
    pair_j = np.concatenate(pj).astype(np.int64)
    pair_shift = np.concatenate(ps).astype(np.float64)
    pos = np.concatenate([a.positions for a in frames])
    triplet_a, triplet_b = triplets(pos, pair_i, pair_j, pair_shift, spec.angular_cutoff)
    return Neighbours(
        n_frames=len(frames),
        n_atoms=None if ragged else n,
        species=np.concatenate(species),
        pair_i=pair_i,
        pair_j=pair_j,
        pair_shift=pair_shift,
        triplet_a=triplet_a,
        triplet_b=triplet_b,
        atom_ptr=offsets if ragged else None,
    )


def triplets(
    pos: np.ndarray, pair_i: np.ndarray, pair_j: np.ndarray, pair_shift: np.ndarray, angular_cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """Triplets (a, b), a < b, of pairs that share a centre and both lie within the angular cutoff.

    Pairs must be sorted by centre (each centre's pairs contiguous); ``pos`` (A, 3) are the batch's
    positions in the pairs' atom numbering.
    """
    dist = np.linalg.norm(pos[pair_j] + pair_shift - pos[pair_i], axis=1)
    ang = np.nonzero(dist < angular_cutoff)[0]  # pairs sorted by centre already
    centres = pair_i[ang]
    starts = np.flatnonzero(np.r_[True, centres[1:] != centres[:-1]])
    counts = np.diff(np.r_[starts, len(ang)])
    ta, tb = [], []
    for k in np.unique(counts):
        if k < 2:
            continue
        a_loc, b_loc = np.triu_indices(k, 1)
        s = starts[counts == k]
        ta.append(ang[(s[:, None] + a_loc[None, :]).ravel()])
        tb.append(ang[(s[:, None] + b_loc[None, :]).ravel()])
    triplet_a = np.concatenate(ta) if ta else np.zeros(0, dtype=np.int64)
    triplet_b = np.concatenate(tb) if tb else np.zeros(0, dtype=np.int64)
    return triplet_a.astype(np.int64), triplet_b.astype(np.int64)


@dataclass
class Geometry:
    """A batch's descriptors G (A, D) and the derivatives of its radial and angular terms with respect to
    the bond vectors (``AEV.geometry``), which ``AEV.vjp`` contracts with dE/dG into dE/dR."""

    n_atoms: int
    G: torch.Tensor
    pi: torch.Tensor
    pj: torch.Tensor
    rad_slot: torch.Tensor
    ang_slot: torch.Tensor
    unit: torch.Tensor  # (P, 3) bond directions
    d_rad: torch.Tensor  # (P, R) radial terms' derivatives by bond length
    angular: tuple | None = None  # per-triplet factors, None without triplets


class AEV:
    """Computes descriptors, and their exact position Jacobian, for batches of frames."""

    def __init__(self, spec: AEVSpec, dtype: torch.dtype = torch.float64):
        self.spec = spec
        self.dtype = dtype
        s = spec
        self.radial_centres = torch.linspace(s.radial_start, s.radial_cutoff, s.radial_shells + 1, dtype=dtype)[:-1]
        self.angular_centres = torch.linspace(s.angular_start, s.angular_cutoff, s.angular_shells + 1, dtype=dtype)[:-1]
        self.angle_centres = (torch.arange(s.angle_sections, dtype=dtype) + 0.5) * math.pi / s.angle_sections
        # Index of the unordered species pair (s1, s2) -> 0..n_pairs-1.
        S = s.n_species
        pair_index = torch.zeros((S, S), dtype=torch.long)
        c = 0
        for a in range(S):
            for b in range(a, S):
                pair_index[a, b] = pair_index[b, a] = c
                c += 1
        self.pair_index = pair_index

    def _tensors(self, nb: Neighbours) -> dict[str, torch.Tensor]:
        t = {
            "species": torch.from_numpy(nb.species),
            "pi": torch.from_numpy(nb.pair_i),
            "pj": torch.from_numpy(nb.pair_j),
            "shift": torch.from_numpy(nb.pair_shift).to(self.dtype),
            "ta": torch.from_numpy(nb.triplet_a),
            "tb": torch.from_numpy(nb.triplet_b),
        }
        return t

    def _radial_terms(self, d: torch.Tensor) -> torch.Tensor:
        s = self.spec
        fc = 0.5 * torch.cos(math.pi * d / s.radial_cutoff) + 0.5
        fc = torch.where(d < s.radial_cutoff, fc, torch.zeros_like(fc))
        return 0.25 * torch.exp(-s.radial_eta * (d[:, None] - self.radial_centres) ** 2) * fc[:, None]

    def _angular_terms(self, va: torch.Tensor, vb: torch.Tensor) -> torch.Tensor:
        """Angular terms (T, shells * sections) of triplets with bond vectors va, vb (both within cutoff)."""
        s = self.spec
        d1 = torch.linalg.vector_norm(va, dim=1)
        d2 = torch.linalg.vector_norm(vb, dim=1)
        cos = (va * vb).sum(dim=1) / (d1 * d2)
        theta = torch.acos(0.95 * cos)  # 0.95 keeps acos away from its singular ends
        fc1 = 0.5 * torch.cos(math.pi * d1 / s.angular_cutoff) + 0.5
        fc2 = 0.5 * torch.cos(math.pi * d2 / s.angular_cutoff) + 0.5
        ang = 2.0 ** (1.0 - s.zeta) * (1.0 + torch.cos(theta[:, None] - self.angle_centres)) ** s.zeta
        rad = torch.exp(-s.angular_eta * ((d1 + d2)[:, None] / 2 - self.angular_centres) ** 2)
        return (rad[:, :, None] * ang[:, None, :]).reshape(len(d1), -1) * (fc1 * fc2)[:, None]

    def _slots(self, t: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Row in the (atom, block) layout for each pair's radial and each triplet's angular terms."""
        s = self.spec
        sp = t["species"]
        rad_slot = t["pi"] * s.n_species + sp[t["pj"]]
        pair = self.pair_index[sp[t["pj"][t["ta"]]], sp[t["pj"][t["tb"]]]]
        ang_slot = t["pi"][t["ta"]] * s.n_pairs + pair
        return rad_slot, ang_slot

    def compute(self, positions: torch.Tensor, nb: Neighbours, tensors: dict | None = None) -> torch.Tensor:
        """Descriptors (n_frames * n_atoms, n_features) from flat positions (n_frames * n_atoms, 3).

        Differentiable with respect to ``positions``.
        """
        s = self.spec
        t = tensors if tensors is not None else self._tensors(nb)
        n_total = nb.n_total
        vec = positions[t["pj"]] + t["shift"].to(positions.dtype) - positions[t["pi"]]
        rad_slot, ang_slot = self._slots(t)
        rad = self._radial_terms(torch.linalg.vector_norm(vec, dim=1))
        G_rad = torch.zeros((n_total * s.n_species, s.radial_shells), dtype=positions.dtype)
        G_rad = G_rad.index_add(0, rad_slot, rad).reshape(n_total, s.n_radial)
        n_ang_terms = s.angular_shells * s.angle_sections
        G_ang = torch.zeros((n_total * s.n_pairs, n_ang_terms), dtype=positions.dtype)
        if len(t["ta"]) > 0:
            ang = self._angular_terms(vec[t["ta"]], vec[t["tb"]])
            G_ang = G_ang.index_add(0, ang_slot, ang)
        return torch.cat([G_rad, G_ang.reshape(n_total, s.n_angular)], dim=1)

    def geometry(self, positions: torch.Tensor, nb: Neighbours) -> "Geometry":
        """Descriptors of a batch and the derivatives of their terms with respect to the bond vectors, for
        ``vjp``: everything that depends on positions alone, computed once per batch without a graph."""
        s = self.spec
        t = self._tensors(nb)
        with torch.no_grad():
            pos = positions.detach()
            n_total = nb.n_total
            vec = pos[t["pj"]] + t["shift"].to(pos.dtype) - pos[t["pi"]]
            d = torch.linalg.vector_norm(vec, dim=1)
            rad_slot, ang_slot = self._slots(t)
            # radial: d term_k / d r = (d term_k / d d) * vec / d
            arg = math.pi * d / s.radial_cutoff
            inside = d < s.radial_cutoff
            fc = torch.where(inside, 0.5 * torch.cos(arg) + 0.5, torch.zeros_like(d))
            dfc = torch.where(inside, -0.5 * math.pi / s.radial_cutoff * torch.sin(arg), torch.zeros_like(d))
            x = d[:, None] - self.radial_centres
            e = 0.25 * torch.exp(-s.radial_eta * x**2)
            d_rad = e * (-2.0 * s.radial_eta * x) * fc[:, None] + e * dfc[:, None]  # (P, R)
            G_rad = torch.zeros((n_total * s.n_species, s.radial_shells), dtype=pos.dtype)
            G_rad = G_rad.index_add(0, rad_slot, e * fc[:, None]).reshape(n_total, s.n_radial)
            n_ang_terms = s.angular_shells * s.angle_sections
            G_ang = torch.zeros((n_total * s.n_pairs, n_ang_terms), dtype=pos.dtype)
            geo = Geometry(n_total, G_rad, t["pi"], t["pj"], rad_slot, ang_slot, vec / d[:, None], d_rad)
            ta, tb = t["ta"], t["tb"]
            if len(ta) > 0:
                va, vb = vec[ta], vec[tb]
                d1, d2 = d[ta], d[tb]
                kappa = (va * vb).sum(1) / (d1 * d2)
                theta = torch.acos(0.95 * kappa)
                rc = s.angular_cutoff
                fc1, fc2 = 0.5 * torch.cos(math.pi * d1 / rc) + 0.5, 0.5 * torch.cos(math.pi * d2 / rc) + 0.5
                dfc1, dfc2 = -0.5 * math.pi / rc * torch.sin(math.pi * d1 / rc), -0.5 * math.pi / rc * torch.sin(math.pi * d2 / rc)
                base = 1.0 + torch.cos(theta[:, None] - self.angle_centres)
                h = 2.0 ** (1.0 - s.zeta) * base**s.zeta  # (T, sections)
                dh = -(2.0 ** (1.0 - s.zeta)) * s.zeta * base ** (s.zeta - 1) * torch.sin(theta[:, None] - self.angle_centres)
                y = (d1 + d2)[:, None] / 2 - self.angular_centres
                f = torch.exp(-s.angular_eta * y**2)  # (T, shells)
                df = f * (-2.0 * s.angular_eta * y)  # d f / d ((d1 + d2) / 2)
                c = fc1 * fc2
                dtheta = -0.95 / torch.sqrt(torch.clamp(1.0 - (0.95 * kappa) ** 2, min=1e-30))
                dk_a = vb / (d1 * d2)[:, None] - (kappa / d1**2)[:, None] * va
                dk_b = va / (d1 * d2)[:, None] - (kappa / d2**2)[:, None] * vb
                T = len(ta)
                # each term is f_a h_b c: its factors' parts, (T, terms, 3): f h, f' h (by the mean bond
                # length), f h' (by the angle); the cutoff product c and its derivatives apply to all terms
                w = torch.stack([f, df, f], -1)[:, :, None, :] * torch.stack([h, h, dh], -1)[:, None, :, :]
                w = w.reshape(T, -1, 3)
                G_ang = G_ang.index_add(0, ang_slot, w[..., 0] * c[:, None])
                geo.angular = (ta, tb, w, c, dfc1 * fc2, fc1 * dfc2, va / d1[:, None],
                               vb / d2[:, None], dtheta[:, None] * dk_a, dtheta[:, None] * dk_b)
            geo.G = torch.cat([geo.G, G_ang.reshape(n_total, s.n_angular)], dim=1)
        return geo

    def vjp(self, geo: "Geometry", grad_G: torch.Tensor) -> torch.Tensor:
        """sum over atoms and terms of ``grad_G`` (..., A, D) times dG/dR: the gradient (..., A, 3) with
        respect to the positions of a scalar whose gradient with respect to G is ``grad_G`` (leading axes:
        e.g. one per ensemble member). Written in torch operations on ``grad_G`` alone, so it stays
        differentiable with respect to whatever ``grad_G`` depends on (network weights in training), and it
        costs no graph through the descriptors (``geometry`` holds their derivatives)."""
        s = self.spec
        lead = grad_G.shape[:-2]
        A = geo.n_atoms
        L = int(np.prod(lead)) if lead else 1
        g = grad_G.reshape(L, A, s.n_features).permute(1, 0, 2)  # atoms first: row gathers and sums are fast
        g_rad = g[..., : s.n_radial].reshape(A, L, s.n_species, s.radial_shells).permute(0, 2, 1, 3)
        g_rad = g_rad.reshape(A * s.n_species, L, s.radial_shells).index_select(0, geo.rad_slot)  # (P, L, R)
        g_vec = (g_rad * geo.d_rad[:, None, :]).sum(-1)[..., None] * geo.unit[:, None, :]  # (P, L, 3)
        if geo.angular is not None:
            ta, tb, w, c, dc1, dc2, ua, ub, dth_a, dth_b = geo.angular
            n_ang = s.angular_shells * s.angle_sections
            g_ang = g[..., s.n_radial :].reshape(A, L, s.n_pairs, n_ang).permute(0, 2, 1, 3)
            g_ang = g_ang.reshape(A * s.n_pairs, L, n_ang).index_select(0, geo.ang_slot)  # (T, L, terms)
            s0, sf, sh = torch.bmm(g_ang, w).unbind(-1)  # (T, L) each: sums of g times each factor's part
            radial_part = 0.5 * sf * c[:, None]
            g_va = (radial_part + s0 * dc1[:, None])[..., None] * ua[:, None] + (sh * c[:, None])[..., None] * dth_a[:, None]
            g_vb = (radial_part + s0 * dc2[:, None])[..., None] * ub[:, None] + (sh * c[:, None])[..., None] * dth_b[:, None]
            g_vec = g_vec.index_add(0, ta, g_va).index_add(0, tb, g_vb)
        zero = torch.zeros((A, L, 3), dtype=grad_G.dtype)
        out = zero.index_add(0, geo.pj, g_vec).index_add(0, geo.pi, -g_vec)  # (A, L, 3)
        return out.permute(1, 0, 2).reshape(*lead, A, 3)

    def descriptors(self, frames: Sequence[Atoms], nb: Neighbours | None = None) -> np.ndarray:
        """Descriptors as an array (n_frames, n_atoms, n_features) (frames of one size)."""
        nb = nb if nb is not None else build_neighbours(frames, self.spec)
        if nb.ragged:
            raise ValueError("descriptors() needs frames of one size; AEV.compute takes ragged batches")
        pos = torch.from_numpy(np.concatenate([a.positions for a in frames])).to(self.dtype)
        with torch.no_grad():
            G = self.compute(pos, nb)
        return G.reshape(nb.n_frames, nb.n_atoms, -1).numpy()

    def descriptors_and_jacobian(
        self, frames: Sequence[Atoms], nb: Neighbours | None = None, positions: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Descriptors (F, n, D) and their exact position Jacobian (F, n, D, n, 3).

        Each radial term depends on one bond vector and each angular term on two, so their derivatives
        come from 3 + 6 forward-mode passes over all pairs and triplets at once (independent of system
        size); they are then scattered into the dense per-frame Jacobian. ``positions`` (F * n, 3) stand
        in for the frames' own (then ``frames`` is not read, and ``nb`` must be given).
        """
        s = self.spec
        nb = nb if nb is not None else build_neighbours(frames, self.spec)
        if nb.ragged:
            raise ValueError("the dense Jacobian needs frames of one size")
        F, n, D = nb.n_frames, nb.n_atoms, s.n_features
        t = self._tensors(nb)
        pos = np.concatenate([a.positions for a in frames]) if positions is None else np.asarray(positions, dtype=np.float64)
        pos = torch.from_numpy(pos).to(self.dtype)
        with torch.no_grad():
            G = self.compute(pos, nb, t)
            vec = pos[t["pj"]] + t["shift"] - pos[t["pi"]]
        eye = torch.eye(3, dtype=self.dtype)

        def d_radial(direction: torch.Tensor) -> torch.Tensor:
            f = lambda v: self._radial_terms(torch.linalg.vector_norm(v, dim=1))
            return torch.func.jvp(f, (vec,), (direction.expand_as(vec),))[1]

        drad = torch.func.vmap(d_radial)(eye).permute(1, 2, 0)  # (P, n_rad, 3)
        rad_slot, ang_slot = self._slots(t)
        J = torch.zeros((F * n * D * n, 3), dtype=self.dtype)

        def scatter(rows: torch.Tensor, cols: torch.Tensor, atoms: torch.Tensor, values: torch.Tensor) -> None:
            # rows (K,), cols (K, C), atoms (K,) local atom index, values (K, C, 3): add xyz triples at once
            idx = (rows[:, None] * D + cols) * n + atoms[:, None]
            J.index_add_(0, idx.reshape(-1), values.reshape(-1, 3))

        pi, pj = t["pi"], t["pj"]
        rad_cols = (rad_slot % s.n_species)[:, None] * s.radial_shells + torch.arange(s.radial_shells)
        scatter(pi, rad_cols, pj % n, drad)
        scatter(pi, rad_cols, pi % n, -drad)
        ta, tb = t["ta"], t["tb"]
        if len(ta) > 0:
            va, vb = vec[ta], vec[tb]
            n_ang_terms = s.angular_shells * s.angle_sections

            def d_ang_a(direction: torch.Tensor) -> torch.Tensor:
                return torch.func.jvp(lambda v: self._angular_terms(v, vb), (va,), (direction.expand_as(va),))[1]

            def d_ang_b(direction: torch.Tensor) -> torch.Tensor:
                return torch.func.jvp(lambda v: self._angular_terms(va, v), (vb,), (direction.expand_as(vb),))[1]

            dva = torch.func.vmap(d_ang_a)(eye).permute(1, 2, 0)  # (T, n_ang_terms, 3)
            dvb = torch.func.vmap(d_ang_b)(eye).permute(1, 2, 0)
            ang_cols = s.n_radial + (ang_slot % s.n_pairs)[:, None] * n_ang_terms + torch.arange(n_ang_terms)
            centre = pi[ta]
            scatter(centre, ang_cols, pj[ta] % n, dva)
            scatter(centre, ang_cols, pj[tb] % n, dvb)
            scatter(centre, ang_cols, centre % n, -(dva + dvb))
        return G.reshape(F, n, D).numpy(), J.reshape(F, n, D, n, 3).numpy()
