"""A fast committee: bootstrap ridge regression of energies and forces, linear in the descriptors.

Energy of a configuration = sum over atoms of ``w_e . x_i`` (x_i the atom's normalised descriptor, e its
element) plus the energy baseline; forces are its exact negative gradient, ``-sum_i w_e . dx_i/dR``, so
both are linear in the weights and one least-squares solve fits them together. Each member solves on a
bootstrap resample of the labelled frames (drawn from the episode's generator), which gives the committee
its spread. A refit takes milliseconds to a second; it is a baseline learner, and a fast one for training
query policies, not an accurate potential.

On flat (ragged) frames the force rows of each labelled frame come from a one-frame dense Jacobian
(always uniform), summed per element and kept per label, so memory stays linear in the labels' atoms;
predictions differentiate the descriptors of each chunk (``alenv.descriptors.flat``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from ase import Atoms

from alenv import ragged
from alenv.descriptors.aev import build_neighbours
from alenv.descriptors.flat import MAX_TRIPLETS, FlatFrames
from alenv.descriptors.representation import Featurized, FeaturizedFrames, Representation


@dataclass(frozen=True)
class RidgeConfig:
    """Settings of the ridge committee."""

    n_members: int = 5
    force_weight: float = 100.0  # weight of the force residuals relative to per-atom energy residuals
    alpha: float = 1e-4  # ridge penalty, relative to the mean diagonal of the normal matrix
    bootstrap: bool = True  # members fit bootstrap resamples of the frames (False: all fit every frame)

    def __post_init__(self) -> None:
        if self.n_members < 1:
            raise ValueError(f"a committee needs at least one member, got n_members={self.n_members}")
        if self.alpha <= 0 or self.force_weight < 0:
            raise ValueError(f"need alpha > 0 and force_weight >= 0, got {self.alpha}, {self.force_weight}")


class RidgeEnsemble:
    """Bootstrap ridge committee on a shared representation; energies in eV, forces in eV/Angstrom."""

    def __init__(self, representation: Representation, config: RidgeConfig = RidgeConfig(), seed: int = 0):
        self.representation = representation
        self.config = config
        S, D = representation.spec.n_species, representation.spec.n_features
        self.weights = np.zeros((config.n_members, S, D))  # per normalised descriptor term, eV
        self.element_energy = np.zeros(S)  # eV per atom of each element (minimum-norm baseline)
        self.seed = int(seed)
        self._force_rows: dict[int, np.ndarray] = {}  # flat frames: per-element Jacobian sums by frame row
        self._force_rows_of: FlatFrames | None = None

    @property
    def n_members(self) -> int:
        return self.config.n_members

    def prepare(self, frames: Sequence[Atoms], jacobian: bool = True) -> Featurized:
        """Featurise frames once for ``fit`` and ``predict``."""
        return self.representation.featurize(frames, jacobian=jacobian)

    # ----------------------------------------------------------------------------------- design
    def _onehot(self, species: torch.Tensor) -> np.ndarray:
        S = self.representation.spec.n_species
        return (species.numpy()[..., None] == np.arange(S)).astype(np.float64)  # (F, n, S)

    def _normalised(self, G: torch.Tensor, species: torch.Tensor) -> np.ndarray:
        rep = self.representation
        return ((G - rep.feature_mean[species]) / rep.feature_scale[species]).double().numpy()

    def _design(self, data: FeaturizedFrames, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Energy rows (K, S*D) and force rows (K, n*3, S*D) of the frames ``idx``."""
        G, species, J = data.take(idx)
        K, n, D = G.shape
        onehot = self._onehot(species)
        x = self._normalised(G, species)
        energy_rows = np.einsum("fns,fnd->fsd", onehot, x).reshape(K, -1)
        Jr = J.double().numpy().reshape(K, n, D, n * 3)
        scale = self.representation.feature_scale.double().numpy()  # (S, D)
        force_rows = -np.einsum("fns,fndc->fcsd", onehot, Jr) / scale[None, None]
        return energy_rows, force_rows.reshape(K, n * 3, -1)

    def _baseline(self, species: torch.Tensor, energies: np.ndarray) -> None:
        counts = self._onehot(species).sum(1)  # (K, S)
        self.element_energy = np.linalg.lstsq(counts, energies, rcond=None)[0]

    # ----------------------------------------------------------------------------------- flat layout
    def _jacobian_sums(self, data: FlatFrames, f: int) -> np.ndarray:
        """Frame f's descriptor Jacobian summed over the atoms of each element, (S * D, 3 n_f) float64
        (its dense one-frame Jacobian, kept per frame of ``data``)."""
        if self._force_rows_of is not data:
            self._force_rows, self._force_rows_of = {}, data
        if f not in self._force_rows:
            rep = self.representation
            S, D = rep.spec.n_species, rep.spec.n_features
            nb = data.neighbours(np.array([f]))
            n = int(data.counts[f])
            nb.n_atoms, nb.atom_ptr = n, None  # one frame: a uniform batch
            _, J = rep.aev.descriptors_and_jacobian([], nb, positions=data.frame_positions(np.array([f])))
            onehot = (nb.species[:, None] == np.arange(S)).astype(np.float64)  # (n, S)
            Jr = J.astype(np.float64).reshape(n, D, n * 3)
            self._force_rows[f] = np.einsum("ns,ndc->sdc", onehot, Jr).reshape(S * D, n * 3)
        return self._force_rows[f]

    def _fit_flat(self, data: FlatFrames, idx: np.ndarray, E: np.ndarray, F: np.ndarray, rng) -> None:
        """Normal equations of every member accumulated frame block by frame block (flat frames)."""
        rep, cfg = self.representation, self.config
        S, D = rep.spec.n_species, rep.spec.n_features
        K, P = len(idx), S * D
        counts = data.atom_counts(idx)
        label_ptr = ragged.ptr_of(counts)
        comp = np.zeros((K, S))
        G, species, ptr = data.take(idx)
        frame = ragged.frame_index(ptr)
        np.add.at(comp, (frame, species.numpy()), 1.0)
        self.element_energy = np.linalg.lstsq(comp, E, rcond=None)[0]
        x = self._normalised(G, species)  # (A, D)
        Xe = np.zeros((K * S, D))
        np.add.at(Xe, frame * S + species.numpy(), x)
        Xe = Xe.reshape(K, P)
        target_e = (E - comp @ self.element_energy) / counts
        scale = rep.feature_scale.double().numpy().reshape(P)
        M = cfg.n_members
        draws = [
            np.bincount(rng.integers(0, K, K), minlength=K) if cfg.bootstrap and M > 1 else np.ones(K) for _ in range(M)
        ]
        AtA, Aty = np.zeros((M, P, P)), np.zeros((M, P))
        for lo in range(0, K, 64):
            block = range(lo, min(lo + 64, K))
            rows, ys, owner = [], [], []
            for k in block:
                n = int(counts[k])
                w_f = np.sqrt(cfg.force_weight / (3 * n))
                rows += [Xe[k][None] / n, -w_f * (self._jacobian_sums(data, int(idx[k])) / scale[:, None]).T]
                ys += [[target_e[k]], w_f * F[label_ptr[k] : label_ptr[k + 1]].reshape(-1)]
                owner.append(np.full(1 + 3 * n, k))
            A, y, owner = np.concatenate(rows), np.concatenate(ys), np.concatenate(owner)
            for m in range(M):
                root = np.sqrt(draws[m][owner])
                Aw = A * root[:, None]
                AtA[m] += Aw.T @ Aw
                Aty[m] += Aw.T @ (y * root)
        for m in range(M):
            lam = cfg.alpha * max(float(np.trace(AtA[m])) / P, 1e-12)
            self.weights[m] = np.linalg.solve(AtA[m] + lam * np.eye(P), Aty[m]).reshape(S, D)

    def _predict_flat(
        self, data: FlatFrames, frames: np.ndarray, forces: bool, chunk: int, max_triplets: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        rep = self.representation
        M, S = len(self.weights), rep.spec.n_species
        E_all = np.empty((M, len(frames)))
        for start in range(0, len(frames), chunk):
            part = frames[start : start + chunk]
            G, species, ptr = data.take(part)
            sp = species.numpy()
            x = self._normalised(G, species)  # (A, D)
            atomic = np.zeros((M, len(sp)))
            for e in range(S):
                sel = np.flatnonzero(sp == e)
                atomic[:, sel] = (x[sel] @ self.weights[:, e].T).T
            atomic += self.element_energy[sp][None]
            E_all[:, start : start + len(part)] = ragged.segment_sum(atomic, ptr, axis=1)
        if not forces:
            return E_all, None
        if not data.has_jacobian:
            raise ValueError("forces need the pair lists; featurise these frames with jacobian=True")
        scale = rep.feature_scale.double().numpy()
        out_ptr = data.atom_ptr(frames)
        F_all = np.empty((M, int(out_ptr[-1]), 3))
        for start, stop in data.chunks(frames, max_triplets):
            part = frames[start:stop]
            nb = data.neighbours(part)
            geo = rep.aev.geometry(torch.from_numpy(data.frame_positions(part)).to(rep.aev.dtype), nb)
            g = torch.from_numpy(self.weights[:, nb.species] / scale[nb.species][None]).to(geo.G.dtype)  # (M, A, D)
            F_all[:, out_ptr[start] : out_ptr[stop]] = -rep.aev.vjp(geo, g).double().numpy()
        return E_all, F_all

    # ----------------------------------------------------------------------------------- fit
    def fit(
        self,
        data: FeaturizedFrames,
        energies: np.ndarray,
        forces: np.ndarray,
        rng: np.random.Generator,
        idx: np.ndarray | None = None,
        warm: bool | None = None,
    ) -> dict[str, Any]:
        """Solve every member's ridge problem from scratch (closed form; ``warm`` has no meaning here)."""
        idx = np.arange(len(data)) if idx is None else np.asarray(idx, dtype=np.int64)
        E, F = np.asarray(energies, dtype=np.float64), np.asarray(forces, dtype=np.float64)
        K = len(idx)
        if K == 0:
            raise ValueError("no labelled frames to train on")
        if data.layout == "flat":
            want, what = (int(data.atom_counts(idx).sum()), 3), f"{K} frames of {int(data.atom_counts(idx).sum())} atoms"
        else:
            n = data.n_atoms
            want, what = (K, n, 3), f"{K} frames of {n} atoms"
        if E.shape != (K,) or F.shape != want:
            raise ValueError(f"label shapes {E.shape}, {F.shape} do not match {what}")
        if not (np.isfinite(E).all() and np.isfinite(F).all()):
            raise ValueError("training labels contain NaN or inf; failed labels must be filtered out")
        if not self.representation.normalised:
            self.representation.set_normalisation([data])
        t0 = time.perf_counter()
        if data.layout == "flat":
            self._fit_flat(data, idx, E, F, rng)
            return {"train_seconds": time.perf_counter() - t0, "epochs": 0, "steps": 0}
        species = data.species[torch.from_numpy(idx)]
        self._baseline(species, E)
        Xe, Xf = self._design(data, idx)
        w_f = np.sqrt(self.config.force_weight / (3 * n))
        A = np.concatenate([Xe[:, None, :] / n, w_f * Xf], axis=1)  # (K, 1 + 3n, P) rows per frame
        target_e = (E - self._onehot(species).sum(1) @ self.element_energy) / n
        y = np.concatenate([target_e[:, None], w_f * F.reshape(K, -1)], axis=1)  # (K, 1 + 3n)
        M, P = self.config.n_members, A.shape[2]
        for m in range(M):
            counts = np.bincount(rng.integers(0, K, K), minlength=K) if self.config.bootstrap and M > 1 else np.ones(K)
            root = np.sqrt(counts)
            Aw = (A * root[:, None, None]).reshape(-1, P)
            AtA = Aw.T @ Aw
            Aty = Aw.T @ (y * root[:, None]).reshape(-1)
            lam = self.config.alpha * max(float(np.trace(AtA)) / P, 1e-12)
            theta = np.linalg.solve(AtA + lam * np.eye(P), Aty)
            self.weights[m] = theta.reshape(self.weights.shape[1:])
        return {"train_seconds": time.perf_counter() - t0, "epochs": 0, "steps": 0}

    # ----------------------------------------------------------------------------------- predict
    def predict(
        self,
        data: Featurized,
        forces: bool = True,
        chunk: int = 1000,
        idx: np.ndarray | None = None,
        max_triplets: int = MAX_TRIPLETS,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-member energies (M, F) eV and forces eV/Angstrom of frames ``idx`` of ``data``: (M, F, n, 3)
        for dense frames, (M, A, 3) for flat ones (atoms concatenated, ``data.atom_ptr(idx)``)."""
        frames = np.arange(len(data)) if idx is None else np.asarray(idx, dtype=np.int64)
        if data.layout == "flat":
            return self._predict_flat(data, frames, forces, chunk, max_triplets)
        scale = self.representation.feature_scale.double().numpy()
        Es, Fs = [], []
        for start in range(0, len(frames), chunk):
            part = frames[start : start + chunk]
            G, species, J = data.take(part)
            sp = species.numpy()
            x = self._normalised(G, species)  # (B, n, D)
            Es.append(np.einsum("bnd,mbnd->mb", x, self.weights[:, sp]) + self.element_energy[sp].sum(1))
            if forces:
                if J is None:
                    raise ValueError("forces need the descriptor Jacobian; featurise these frames with jacobian=True")
                B, n, D = G.shape
                g = (self.weights[:, sp] / scale[sp][None]).reshape(len(self.weights), B, n * D)
                Fs.append(-np.matmul(g.transpose(1, 0, 2), J.double().numpy()).transpose(1, 0, 2).reshape(-1, B, n, 3))
        E_all = np.concatenate(Es, axis=1)
        return E_all, (np.concatenate(Fs, axis=1) if forces else None)

    def features(self, data: Featurized, idx: np.ndarray | None = None, chunk: int = 1000) -> np.ndarray:
        """Features (F, S * D) float64 of frames ``idx`` of ``data`` (default all), either layout: the sum of
        the normalised descriptors over the frame's atoms of each element, elements in order.

        Every member is linear in them, ``E_m = features . weights[m] + baseline``, so they are the gradient
        of each member's energy (eV) with respect to its weights. The members share this feature map, so it is
        returned once: the kernel ``features(a) . features(b)`` is the members' average kernel, as the
        ensemble's concatenation over members scaled by ``1 / sqrt(M)`` gives it. Energies only.
        """
        rep = self.representation
        S, D = rep.spec.n_species, rep.spec.n_features
        frames = np.arange(len(data)) if idx is None else np.asarray(idx, dtype=np.int64)
        out = np.zeros((len(frames) * S, D))
        for start in range(0, len(frames), chunk):
            part = frames[start : start + chunk]
            if data.layout == "flat":
                G, species, ptr = data.take(part)
                frame = ragged.frame_index(ptr)
            else:
                G = torch.from_numpy(data.G.numpy()[part])  # descriptors only: never copies the Jacobians
                species = data.species[torch.from_numpy(part)]
                frame = np.repeat(np.arange(len(part)), G.shape[1])
                G, species = G.reshape(-1, D), species.reshape(-1)
            np.add.at(out, (start + frame) * S + species.numpy(), self._normalised(G, species))
        return out.reshape(len(frames), S * D)

    def evaluate_atoms(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
        """Per-member energy (M,) eV and forces (M, n, 3) eV/Angstrom of one structure, by autograd."""
        rep = self.representation
        nb = build_neighbours([atoms], rep.spec)
        pos = torch.tensor(atoms.positions, dtype=torch.float64, requires_grad=True)
        G = rep.aev.compute(pos.float(), nb)  # (n, D)
        sp = torch.from_numpy(nb.species)
        x = (G.double() - rep.feature_mean[sp].double()) / rep.feature_scale[sp].double()
        W = torch.from_numpy(self.weights[:, nb.species])  # (M, n, D)
        E = (x[None] * W).sum((1, 2))  # (M,)
        grads = torch.autograd.grad(E, pos, grad_outputs=torch.eye(len(E), dtype=E.dtype), is_grads_batched=True)[0]
        offset = float(self.element_energy[nb.species].sum())
        return E.detach().numpy() + offset, -grads.detach().numpy()

    def as_calculator(self) -> Any:
        """This committee as an ASE calculator (mean energy and forces, plus their spreads)."""
        from alenv.models.calculator import EnsembleCalculator

        return EnsembleCalculator(self)
