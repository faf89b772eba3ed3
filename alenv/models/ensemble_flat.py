"""The flat layout of the ensemble (``FlatFrames``: frames of any sizes, atoms concatenated with a pointer).

Forward, training and prediction on ragged batches: descriptors and their derivatives by bond vectors are
computed per minibatch or prediction chunk, so memory grows linearly with atoms. A mixin of
``EnsemblePotential``, which holds the weights, the baseline and the optimiser step they use.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from alenv import ragged
from alenv.descriptors.flat import FlatFrames


class FlatLayout:
    """``EnsemblePotential``'s methods for the flat layout (see the module docstring)."""

    def _composition(self, data: FlatFrames, idx: np.ndarray) -> torch.Tensor:
        """Atoms of each element (B, S) in frames ``idx``, float64."""
        S = self.spec.n_species
        _, species, ptr = data.take(idx)
        key = ragged.frame_index(ptr) * S + species.numpy()
        return torch.from_numpy(np.bincount(key, minlength=len(idx) * S).reshape(len(idx), S)).double()

    def _energy_offset_flat(self, species: torch.Tensor, ptr: np.ndarray) -> torch.Tensor:
        """Baseline energy (B,) in eV of ragged frames with species (A,) and pointer ``ptr``."""
        frame = torch.from_numpy(ragged.frame_index(ptr))
        return torch.zeros(len(ptr) - 1, dtype=torch.float64).index_add(0, frame, self.element_energy[species])

    def _member_energy(self, X: torch.Tensor, e: int, m: int) -> torch.Tensor:
        """Atomic energies (K,) of member m's network of element e on normalised inputs X (K, D)."""
        layers = self.layers[e]
        h = torch.matmul(X, layers[0][0][m]) + layers[0][1][m]
        for W, b in layers[1:]:
            h = torch.matmul(torch.nn.functional.silu(h), W[m]) + b[m]
        return h[..., 0]

    def _atomic_all(self, G: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Atomic energies (M, A) of every member on every atom; G (A, D) or (M, A, D)."""
        M = self.config.n_members
        atomic = torch.zeros((M, G.shape[-2]), dtype=G.dtype)
        for e in range(self.spec.n_species):
            sel = torch.nonzero(species == e).squeeze(1)
            if len(sel) == 0:
                continue
            X = (G[..., sel, :] - self.feature_mean[e]) / self.feature_scale[e]
            out, _ = self._element_energy_terms(X, e)  # (M, k)
            atomic = atomic.index_copy(1, sel, out)
        return atomic

    def _forward_flat(self, data: FlatFrames, idx: np.ndarray, forces: bool, create_graph: bool = False):
        """The flat counterpart of ``forward``.

        ``idx`` (B,): every member on frames ``idx``; returns energies (M, B) without the baseline and
        forces (M, A_idx, 3) (``data.atom_ptr(idx)``): dE/dG of every member contracted with the derivatives
        of the descriptors' terms by bond vectors (``AEV.geometry``, ``AEV.vjp``; the same forces as
        autograd through ``AEV.compute``, to float32 rounding, at a fraction of its cost). ``idx`` (M, B):
        member m on its own frames ``idx[m]`` (training); the M * B frames form one ragged batch and the
        forces (A_MB, 3) come member-major, differentiable with respect to the weights when ``create_graph``.
        """
        M = self.config.n_members
        idx = np.asarray(idx, dtype=np.int64)
        per_member = idx.ndim == 2
        if per_member and idx.shape[0] != M:
            raise ValueError(f"per-member frame indices need {M} rows, got {idx.shape}")
        flat = idx.reshape(-1)
        if not forces:
            G, species, ptr = data.take(flat)
            frame = torch.from_numpy(ragged.frame_index(ptr))
            if not per_member:
                atomic = self._atomic_all(G, species)  # (M, A)
                E = torch.zeros((M, len(flat)), dtype=G.dtype).index_add(1, frame, atomic)
                return E * self.energy_scale, None
            E = self._per_member_energy(G, species, ptr, idx.shape)
            return E, None
        if not data.has_jacobian:
            raise ValueError("forces need the pair lists; featurise these frames with jacobian=True")
        nb = data.neighbours(flat)
        pos = torch.from_numpy(data.frame_positions(flat)).to(self.aev.dtype)
        species = torch.from_numpy(nb.species)
        geo = self.aev.geometry(pos, nb)  # G and its derivatives by bond vectors: no graph through them
        with torch.enable_grad():
            if per_member:  # each atom belongs to one member's frame: dE/dG (A, D), kept differentiable
                G = geo.G.clone().requires_grad_(True)
                E = self._per_member_energy(G, species, nb.atom_ptr, idx.shape)
                (dG,) = torch.autograd.grad(E.sum(), G, create_graph=create_graph)
                return E, -self.aev.vjp(geo, dG)
            Gm = geo.G.expand(M, *geo.G.shape).clone().requires_grad_(True)
            atomic = self._atomic_all(Gm, species)
            frame = torch.from_numpy(ragged.frame_index(nb.atom_ptr))
            E = torch.zeros((M, len(flat)), dtype=Gm.dtype).index_add(1, frame, atomic) * self.energy_scale
            (dG,) = torch.autograd.grad(E.sum(), Gm)  # (M, A, D): members never mix
        return E.detach(), -self.aev.vjp(geo, dG)  # (M, A, 3)

    def _per_member_energy(self, G: torch.Tensor, species: torch.Tensor, ptr: np.ndarray, shape: tuple) -> torch.Tensor:
        """Energies (M, B) of a ragged batch of M * B frames, member-major: frame k is member k // B's."""
        M, B = shape
        S = self.spec.n_species
        frame = ragged.frame_index(ptr)
        key = (frame // B) * S + species.numpy()  # (member, element) of every atom
        order = np.argsort(key, kind="stable")
        key_sorted = key[order]
        starts = np.flatnonzero(np.r_[True, key_sorted[1:] != key_sorted[:-1]])
        stops = np.r_[starts[1:], len(key_sorted)]
        Gs = G[torch.from_numpy(order)]
        outs = []
        for lo, hi in zip(starts, stops):
            m, e = divmod(int(key_sorted[lo]), S)
            X = (Gs[lo:hi] - self.feature_mean[e]) / self.feature_scale[e]
            outs.append(self._member_energy(X, e, m))
        atomic = torch.cat(outs)
        E = torch.zeros(M * B, dtype=G.dtype).index_add(0, torch.from_numpy(frame[order]), atomic)
        return (E * self.energy_scale).reshape(M, B)

    def _fit_flat(self, data: FlatFrames, idx: np.ndarray, E: torch.Tensor, Fr: torch.Tensor, rng, epochs, warm) -> dict:
        """``fit`` on flat frames: labels E (K,), forces Fr (sum n_f, 3) in label order."""
        from alenv.models.ensemble import learning_rate  # ensemble.py imports this module

        cfg = self.config
        K = len(idx)
        counts = data.atom_counts(idx)
        label_ptr = ragged.ptr_of(counts)
        if not warm or self.optimizer is None:
            self._solve_baseline(self._composition(data, idx), E, Fr)
            epochs = cfg.epochs_initial if epochs is None else epochs
            lr = cfg.lr
        else:
            if cfg.refresh_scale:
                self.refresh_baseline(self._composition(data, idx), E, Fr)
            epochs = cfg.epochs_per_round if epochs is None else epochs
            lr = cfg.warm_lr
        self.optimizer = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=cfg.weight_decay)
        n_batches = max(1, math.ceil(K / cfg.batch_size))
        total_steps = max(cfg.min_steps if not warm else 1, epochs * n_batches)
        _, species, ptr = data.take(idx)
        n = torch.from_numpy(counts).float()
        target_E = ((E - self._energy_offset_flat(species, ptr)) / torch.from_numpy(counts).double()).float()
        t0 = time.perf_counter()
        last = {}
        weights = self._bootstrap_weights(K)
        for step, pos in enumerate(self._batches(K, total_steps, rng)):
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(cfg, lr, step, total_steps, warm)
            Ep, Fp = self._forward_flat(data, idx[pos], forces=True, create_graph=True)
            ti = torch.from_numpy(pos)
            w = torch.gather(weights, 1, ti)  # (M, b)
            loss_e = (w * (Ep / n[ti] - target_E[ti]) ** 2).mean()
            flat = pos.reshape(-1)
            w_atom = torch.repeat_interleave(w.reshape(-1), torch.from_numpy(counts[flat]))
            Fref = Fr[torch.from_numpy(ragged.rows(label_ptr, flat))]
            loss_f = (w_atom[:, None] * (Fp - Fref) ** 2).sum() / (3 * len(w_atom))
            last = self._step(loss_e, loss_f)
        self.n_updates += total_steps
        return {"train_seconds": time.perf_counter() - t0, "epochs": total_steps / n_batches, "steps": total_steps, **last}

    def _predict_flat(
        self, data: FlatFrames, frames: np.ndarray, forces: bool, chunk: int, max_triplets: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        M = self.config.n_members
        E_all = np.empty((M, len(frames)))
        if not forces:
            with torch.no_grad():
                for start in range(0, len(frames), chunk):
                    part = frames[start : start + chunk]
                    E, _ = self._forward_flat(data, part, forces=False)
                    _, species, ptr = data.take(part)
                    E_all[:, start : start + len(part)] = (E.double() + self._energy_offset_flat(species, ptr)).numpy()
            return E_all, None
        out_ptr = data.atom_ptr(frames)
        F_all = np.empty((M, int(out_ptr[-1]), 3))
        for start, stop in data.chunks(frames, max_triplets):
            part = frames[start:stop]
            E, F = self._forward_flat(data, part, forces=True)
            _, species, ptr = data.take(part)
            E_all[:, start:stop] = (E.double() + self._energy_offset_flat(species, ptr)).numpy()
            F_all[:, out_ptr[start] : out_ptr[stop]] = F.detach().double().numpy()
        return E_all, F_all
