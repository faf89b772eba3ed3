"""The flat (ragged) layout of featurised frames: memory linear in the number of atoms.

``FlatFrames`` concatenates the atoms of all frames (frame f owns atom rows ``ptr[f]:ptr[f + 1]``), so
frames may differ in size. It stores each atom's descriptor G (4 D bytes per atom), its species and
position, and each frame's compact pair list (local atom indices and lattice images, about 11 bytes per
pair); it stores no Jacobian. Forces are computed when needed by automatic differentiation through
``AEV.compute`` on a batch of frames (a training minibatch, a prediction chunk), from the positions and the
stored pairs; triplets are rebuilt per batch.

The dense layout (``FeaturizedFrames``: G and the full Jacobian dG/dR, 12 n^2 D bytes per frame) is
faster per step and stays the layout of every task whose frames have one size and whose Jacobians fit
(``choose_layout``); both give the same energies and forces to float32 rounding.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from ase import Atoms

from alenv import ragged
from alenv.descriptors.aev import AEV, Neighbours, frame_pair_images, triplets

MAX_TRIPLETS = 100_000  # triplets per batch of a force computation (about 0.3-0.4 GB with 5 members)
FEATURIZE_PAIRS = 200_000  # pairs per batch when descriptors are computed once


class FlatFrames:
    """Descriptors of frames of any sizes, atoms concatenated (see the module docstring).

    ``jacobian`` keeps the pair lists that forces need (the name matches ``FeaturizedFrames``: "forces can
    be computed"); without it only G, species and positions are kept (energies, embeddings).
    """

    layout = "flat"

    def __init__(self, frames: Sequence[Atoms], aev: AEV, jacobian: bool = True, chunk: int = 200):
        if len(frames) == 0:
            raise ValueError("no frames to featurise")
        spec = aev.spec
        self.aev = aev
        self.n_frames = len(frames)
        counts = np.array([len(a) for a in frames], dtype=np.int64)
        if np.any(counts == 0):
            raise ValueError(f"frame {int(np.flatnonzero(counts == 0)[0])} has no atoms")
        self.counts = counts
        self.ptr = ragged.ptr_of(counts)
        self.frames: list[Atoms] = [a.copy() for a in frames]  # as FeaturizedFrames.frames
        self.species = torch.from_numpy(np.concatenate([spec.species_index(a.numbers) for a in frames]))  # (A,)
        self.positions = np.concatenate([a.positions for a in frames]).astype(np.float64)  # (A, 3) Angstrom
        self.cells = np.stack([a.cell.array for a in frames]).astype(np.float64)  # (F, 3, 3)
        pi, pj, img = [], [], []
        periodic = False
        for atoms in frames:
            i, j, image = frame_pair_images(atoms, spec.radial_cutoff)
            pi.append(i.astype(np.int32))
            pj.append(j.astype(np.int32))
            periodic |= image is not None
            img.append(image)
        self.pair_ptr = ragged.ptr_of([len(i) for i in pi])
        self.pair_i, self.pair_j = np.concatenate(pi), np.concatenate(pj)
        self.pair_image = _images(img, [len(i) for i in pi]) if periodic else None
        self.n_triplets = np.zeros(self.n_frames, dtype=np.int64)
        D = spec.n_features
        self.has_jacobian = True  # while the descriptors are computed
        G = torch.empty((int(self.ptr[-1]), D), dtype=torch.float32)
        with torch.no_grad():
            for start, stop in self._featurize_chunks(chunk):
                idx = np.arange(start, stop)
                nb = self.neighbours(idx)
                pos = torch.from_numpy(self.positions[self.ptr[start] : self.ptr[stop]]).to(aev.dtype)
                G[self.ptr[start] : self.ptr[stop]] = aev.compute(pos, nb).float()
                centre_frame = np.searchsorted(nb.atom_ptr, nb.pair_i[nb.triplet_a], side="right") - 1
                self.n_triplets[start:stop] = np.bincount(centre_frame, minlength=stop - start)
        self.G = G  # (A, D) float32, atoms in input order
        self.has_jacobian = bool(jacobian)
        if not jacobian:  # energies and embeddings need only G
            self.pair_i = self.pair_j = np.zeros(0, dtype=np.int32)
            self.pair_ptr = np.zeros(self.n_frames + 1, dtype=np.int64)
            self.pair_image = None

    # ------------------------------------------------------------------------------ layout
    @property
    def n_atoms(self) -> int:
        """The atom count when every frame has the same one (ValueError otherwise)."""
        sizes = np.unique(self.counts)
        if len(sizes) != 1:
            raise ValueError(f"flat frames of {len(sizes)} sizes have no single atom count")
        return int(sizes[0])

    def __len__(self) -> int:
        return self.n_frames

    def atom_counts(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Atoms (B,) of frames ``idx`` (default all)."""
        return self.counts if idx is None else self.counts[np.asarray(idx, dtype=np.int64)]

    def atom_ptr(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Pointer (B + 1,) of the atoms of frames ``idx`` (default all), concatenated in that order."""
        return self.ptr if idx is None else ragged.ptr_of(self.atom_counts(idx))

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Flat atom rows of frames ``idx``, concatenated in that order."""
        return ragged.rows(self.ptr, np.asarray(idx, dtype=np.int64))

    def take(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Descriptors (A_idx, D), species (A_idx,) and atom pointer of frames ``idx``."""
        idx = np.asarray(idx, dtype=np.int64)
        if len(idx) and idx[-1] - idx[0] == len(idx) - 1 and np.all(np.diff(idx) == 1):
            sl = slice(int(self.ptr[idx[0]]), int(self.ptr[idx[-1] + 1]))  # a contiguous run: views
            return self.G[sl], self.species[sl], self.atom_ptr(idx)
        r = torch.from_numpy(self.rows(idx))
        return self.G[r], self.species[r], self.atom_ptr(idx)

    def frame_positions(self, idx: np.ndarray) -> np.ndarray:
        """Positions (A_idx, 3) of frames ``idx``."""
        return self.positions[self.rows(idx)]

    def neighbours(self, idx: np.ndarray) -> Neighbours:
        """The ragged neighbour lists of frames ``idx`` (any order, repeats allowed) as one batch."""
        if not self.has_jacobian:
            raise ValueError("forces need the pair lists; featurise these frames with jacobian=True")
        idx = np.asarray(idx, dtype=np.int64)
        counts = self.counts[idx]
        atom_ptr = ragged.ptr_of(counts)
        n_pairs = self.pair_ptr[idx + 1] - self.pair_ptr[idx]
        prow = ragged.rows(self.pair_ptr, idx)
        offset = np.repeat(atom_ptr[:-1], n_pairs)
        pair_i = self.pair_i[prow].astype(np.int64) + offset
        pair_j = self.pair_j[prow].astype(np.int64) + offset
        if self.pair_image is None:
            shift = np.zeros((len(prow), 3))
        else:
            shift = np.einsum("pk,pkl->pl", self.pair_image[prow].astype(np.float64), self.cells[np.repeat(idx, n_pairs)])
        pos = self.positions[ragged.rows(self.ptr, idx)]
        ta, tb = triplets(pos, pair_i, pair_j, shift, self.aev.spec.angular_cutoff)
        return Neighbours(
            n_frames=len(idx), n_atoms=None, species=self.species.numpy()[ragged.rows(self.ptr, idx)],
            pair_i=pair_i, pair_j=pair_j, pair_shift=shift, triplet_a=ta, triplet_b=tb, atom_ptr=atom_ptr,
        )

    def chunks(self, idx: np.ndarray, max_triplets: int = MAX_TRIPLETS) -> Iterator[tuple[int, int]]:
        """Consecutive slices (start, stop) of ``idx`` whose frames hold at most ``max_triplets`` triplets
        together (at least one frame each): the batches of a force computation."""
        idx = np.asarray(idx, dtype=np.int64)
        cost = np.maximum(self.n_triplets[idx], 1)
        start = 0
        while start < len(idx):
            total = np.cumsum(cost[start:])
            stop = start + max(1, int(np.searchsorted(total, max_triplets, side="right")))
            yield start, stop
            start = stop

    def _featurize_chunks(self, chunk: int) -> Iterator[tuple[int, int]]:
        """Runs of at most ``chunk`` frames and ``FEATURIZE_PAIRS`` pairs (at least one frame)."""
        n_pairs = np.diff(self.pair_ptr)
        start = 0
        while start < self.n_frames:
            total = np.cumsum(n_pairs[start : start + chunk])
            stop = start + max(1, int(np.searchsorted(total, FEATURIZE_PAIRS, side="right")))
            yield start, min(stop, self.n_frames)
            start = min(stop, self.n_frames)

    def extend(self, other: "FlatFrames") -> None:
        """Append the frames of ``other`` (featurised the same way): on-the-fly training sets grow so."""
        if other.has_jacobian != self.has_jacobian or other.aev.spec != self.aev.spec:
            raise ValueError("can only extend with frames featurised the same way")
        self.G = torch.cat([self.G, other.G])
        self.species = torch.cat([self.species, other.species])
        self.frames = self.frames + other.frames
        self.positions = np.concatenate([self.positions, other.positions])
        self.cells = np.concatenate([self.cells, other.cells])
        self.counts = np.concatenate([self.counts, other.counts])
        self.ptr = ragged.ptr_of(self.counts)
        self.n_triplets = np.concatenate([self.n_triplets, other.n_triplets])
        if self.pair_image is not None or other.pair_image is not None:
            mine = self.pair_image if self.pair_image is not None else np.zeros((len(self.pair_i), 3), np.int8)
            theirs = other.pair_image if other.pair_image is not None else np.zeros((len(other.pair_i), 3), np.int8)
            dtype = np.result_type(mine, theirs)
            self.pair_image = np.concatenate([mine.astype(dtype), theirs.astype(dtype)])
        self.pair_ptr = np.concatenate([self.pair_ptr, other.pair_ptr[1:] + self.pair_ptr[-1]])
        self.pair_i = np.concatenate([self.pair_i, other.pair_i])
        self.pair_j = np.concatenate([self.pair_j, other.pair_j])
        self.n_frames += other.n_frames

    def nbytes(self) -> int:
        """Bytes held by the arrays of these frames."""
        arrays = [self.G.numpy(), self.species.numpy(), self.positions, self.cells, self.counts, self.ptr,
                  self.pair_ptr, self.pair_i, self.pair_j, self.n_triplets]
        if self.pair_image is not None:
            arrays.append(self.pair_image)
        return int(sum(a.nbytes for a in arrays))


def _images(images: list[np.ndarray | None], n_pairs: list[int]) -> np.ndarray:
    """Lattice images of all pairs as one int array, as small an integer type as holds them."""
    full = np.concatenate([np.zeros((n, 3)) if im is None else np.asarray(im) for im, n in zip(images, n_pairs)])
    top = float(np.abs(full).max()) if len(full) else 0.0
    dtype = np.int8 if top <= 127 else np.int16 if top <= 32767 else np.int32
    out = np.rint(full).astype(dtype)
    if not np.array_equal(out, full):
        raise ValueError("lattice images must be integers")
    return out
