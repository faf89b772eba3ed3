"""Ensemble of Behler-Parrinello atomic neural networks, trained together as one vectorised model.

Energy of a configuration = sum over atoms of a per-element network applied to the atom's descriptor.
Forces are the exact negative gradient of that energy: ``F = -(dE/dG) . (dG/dR)`` with the descriptor
Jacobian dG/dR computed once per configuration (see ``alenv.descriptors``) and reused every epoch (the
dense layout), or by automatic differentiation through the descriptors of each minibatch or prediction
chunk (the flat layout, ``FlatFrames``: frames of any sizes, memory linear in atoms). The M members are stacked along a leading axis of every weight tensor, so one batched matmul evaluates
all of them; the spread of their predictions is the ensemble's epistemic uncertainty.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from ase import Atoms

from alenv import ragged
from alenv.descriptors.aev import build_neighbours
from alenv.descriptors.flat import MAX_TRIPLETS
from alenv.descriptors.representation import Featurized, FeaturizedFrames, Representation
from alenv.models.ensemble_flat import FlatLayout

if TYPE_CHECKING:
    from alenv.models.calculator import EnsembleCalculator


@dataclass(frozen=True)
class EnsembleConfig:
    """Hyper-parameters of the ensemble potential and of its training.

    Training grows with the labelled set: a from-scratch fit runs ``epochs_initial`` passes over the
    labels and at least ``min_steps`` optimiser steps (a handful of labels needs many passes); each
    warm-started refit runs ``epochs_per_round`` passes over all labels held, from the current weights with a
    fresh optimiser state. Members differ by initialisation, by
    minibatch order and (``bootstrap``) by Bayesian-bootstrap weights of the labels, fixed per label, so their
    spread reflects the data as well as the starting weights.
    """

    n_members: int = 5
    hidden: tuple[int, ...] = (128, 128)
    force_weight: float = 100.0  # weight of the force loss relative to the per-atom energy loss
    lr: float = 3e-3  # learning rate when training from scratch
    warm_lr: float = 3e-3  # peak learning rate of warm-started rounds (at 1e-3, rMD17 ethanol stayed 31%
    # above a refit from scratch at 460 labels; at 3e-3, 1%, before each fit got a fresh Adam)
    lr_final_fraction: float = 0.01  # cosine decay of each fit ends at this fraction of its learning rate
    batch_size: int = 16  # frames per minibatch (more, smaller steps converge faster per second here)
    epochs_initial: int = 200  # passes over the labels of a fit from scratch
    epochs_per_round: int = 40  # passes over all labels of each warm-started refit
    min_steps: int = 400  # least optimiser steps of a fit from scratch
    bootstrap: bool = True  # members weight the labels by Exp(1) draws (Bayesian bootstrap)
    # Warm-started fits first re-derive the per-element baseline and the energy scale from every label held,
    # rescaling the output layer so that no prediction changes (``refresh_baseline``). Off: both stay as the
    # first fit set them. Off in every standard task: on AlanineDipeptide-GFN2-OTF, whose later labels have
    # larger forces than the initial ones (force RMS 0.77 eV/A initially, about 1.3 after), refreshing lowered
    # the in-loop force MAE by 19-46% at 60-90 labels when one episode's labels were replayed, but a whole
    # episode with it on still ended 93% and 191% above a refit at 110 and 160 labels, as without it.
    refresh_scale: bool = False
    # Warm-started fits become fits from scratch (new initial weights, ``epochs_initial`` passes) once the
    # labels held reach this multiple of those of the last fit from scratch: 0 = never. Training many rounds
    # from one start can leave a worse optimum than one fit on all labels; refitting at geometric steps
    # (1.5: at 15, 23, 34, 51, 76, 114, 171... labels after 10) bounds that at about 3x the cost of the
    # largest fit from scratch over a whole episode. Off in every task: on AlanineDipeptide-GFN2-OTF it left
    # the in-loop model 100% and 128% worse than a refit 3 warm rounds after a scratch fit
    # (benchmarks/results/learner/trials/).
    scratch_growth: float = 0.0
    # Warm-started fits raise the learning rate linearly from zero to ``warm_lr`` over this fraction of their
    # steps before the cosine decay: a fresh Adam's first steps move every weight by about the full learning
    # rate whatever its gradient, which can throw a converged model far from its optimum. 0 = off.
    warm_warmup: float = 0.0
    # Largest gradient norm of one member per step (its parameters together); larger ones are scaled down to
    # it, member by member, so one extreme label cannot throw a member far in one step. 0 = off.
    grad_clip: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.n_members < 1:
            raise ValueError(f"an ensemble needs at least one member, got n_members={self.n_members}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden layer sizes must be positive, got {self.hidden}")
        if self.epochs_initial < 1 or self.epochs_per_round < 1 or self.min_steps < 0 or self.batch_size < 1:
            raise ValueError(
                "epochs_initial, epochs_per_round and batch_size must be positive and min_steps non-negative, got "
                f"{self.epochs_initial}, {self.epochs_per_round}, {self.batch_size}, {self.min_steps}"
            )
        if self.scratch_growth and not self.scratch_growth > 1:
            raise ValueError(f"scratch_growth must be 0 (off) or above 1, got {self.scratch_growth}")
        if not 0 <= self.warm_warmup < 1:
            raise ValueError(f"warm_warmup is a fraction of a fit's steps in [0, 1), got {self.warm_warmup}")
        if not self.grad_clip >= 0:
            raise ValueError(f"grad_clip must be 0 (off) or positive, got {self.grad_clip}")


def learning_rate(config: EnsembleConfig, peak: float, step: int, total_steps: int, warm: bool) -> float:
    """Learning rate of ``step`` of a fit of ``total_steps``: cosine decay from ``peak`` to
    ``lr_final_fraction`` of it, after a linear warm-up over ``warm_warmup`` of the steps of warm-started fits."""
    f = config.lr_final_fraction
    n_up = int(config.warm_warmup * total_steps) if warm else 0
    if step < n_up:
        return peak * (step + 1) / (n_up + 1)
    t = (step - n_up) / max(1, total_steps - n_up)
    return peak * (f + (1 - f) * 0.5 * (1 + math.cos(math.pi * t)))


def _init_layer(gen: torch.Generator, M: int, n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    bound = math.sqrt(6.0 / (n_in + n_out))
    W = (torch.rand((M, n_in, n_out), generator=gen, dtype=torch.float32) * 2 - 1) * bound
    b = torch.zeros((M, 1, n_out), dtype=torch.float32)
    return W.requires_grad_(), b.requires_grad_()


class EnsemblePotential(FlatLayout):
    """M per-element atomic networks on invariant descriptors; energies in eV, forces in eV/Angstrom.

    The descriptors, their normalisation and the embedding come from ``representation`` (shared by every
    potential of a task); the ensemble owns only its weights and its energy baseline.
    """

    def __init__(self, representation: Representation, config: EnsembleConfig = EnsembleConfig(), seed: int = 0):
        self.representation = representation
        self.spec = representation.spec
        self.config = config
        self.aev = representation.aev
        self.gen = torch.Generator().manual_seed(int(seed))
        self.layers: list[list[tuple[torch.Tensor, torch.Tensor]]] = self._initial_layers()
        self.element_energy = torch.zeros(self.spec.n_species, dtype=torch.float64)  # eV per atom of each element
        self.energy_scale = 1.0  # eV; network outputs are multiplied by it
        self.optimizer: torch.optim.Optimizer | None = None
        self.n_updates = 0
        self._boot_rng = np.random.default_rng([int(seed), 1])  # bootstrap weights, drawn once per label
        self._weights = np.zeros((config.n_members, 0))
        self.scratch_labels = 0  # labels of the last fit from scratch (``scratch_growth``)

    def _initial_layers(self) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
        """Fresh weights of every element's networks, drawn from the potential's own generator."""
        M, S, D = self.config.n_members, self.spec.n_species, self.spec.n_features
        sizes = (D, *self.config.hidden, 1)
        return [[_init_layer(self.gen, M, a, b) for a, b in zip(sizes[:-1], sizes[1:])] for _ in range(S)]

    @property
    def n_members(self) -> int:
        return self.config.n_members

    @property
    def feature_mean(self) -> torch.Tensor:
        return self.representation.feature_mean

    @property
    def feature_scale(self) -> torch.Tensor:
        return self.representation.feature_scale

    def parameters(self) -> list[torch.Tensor]:
        return [p for elem in self.layers for (W, b) in elem for p in (W, b)]

    def _fit_baseline(self, species: torch.Tensor, energies: torch.Tensor, forces: torch.Tensor) -> None:
        """Per-element reference energies by least squares on composition (minimum norm).

        For a single molecule every frame has the same composition; the minimum-norm solution then
        reproduces the mean energy, which is exactly what should be subtracted.
        """
        self._solve_baseline(self._counts(species), energies, forces)

    def _counts(self, species: torch.Tensor) -> torch.Tensor:
        """Atoms of each element (F, S) of frames with species (F, n)."""
        return torch.stack([(species == e).sum(1) for e in range(self.spec.n_species)], dim=1).double()

    def refresh_baseline(self, counts: torch.Tensor, energies: torch.Tensor, forces: torch.Tensor) -> None:
        """Re-derive baseline and energy scale from labels (compositions (F, S), energies, forces) while
        keeping every prediction: each element's output layer is rescaled by old / new scale and its bias
        absorbs the change of that element's reference energy, so E = scale * sum(net) + baseline is the same
        function before and after."""
        old_scale, old_base = self.energy_scale, self.element_energy.clone()
        self._solve_baseline(counts, energies, forces)
        ratio = old_scale / self.energy_scale
        with torch.no_grad():
            for e, layers in enumerate(self.layers):
                W, b = layers[-1]
                W.mul_(ratio)
                b.mul_(ratio).add_(float(old_base[e] - self.element_energy[e]) / self.energy_scale)

    def _solve_baseline(self, counts: torch.Tensor, energies: torch.Tensor, forces: torch.Tensor) -> None:
        """Baseline from compositions (F, S) and the energy scale from the forces' RMS."""
        sol = torch.linalg.lstsq(counts, energies.double()[:, None], driver="gelsd").solution[:, 0]
        self.element_energy = sol
        rms = float(torch.sqrt((forces.double() ** 2).mean()))
        self.energy_scale = rms if rms > 0 else 1.0

    # ------------------------------------------------------------------------------------ forward
    def _element_energy_terms(self, X: torch.Tensor, e: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Network e on normalised inputs X (K, D): outputs (M, K) and first-layer pre-activations."""
        layers = self.layers[e]
        z1 = torch.matmul(X, layers[0][0]) + layers[0][1]  # (M, K, H)
        h = z1
        for W, b in layers[1:]:
            h = torch.matmul(torch.nn.functional.silu(h), W) + b
        return h[..., 0], z1

    def _energy_offset(self, species: torch.Tensor) -> torch.Tensor:
        """Baseline energy (F,) in eV of frames with species (F, n)."""
        return self.element_energy[species].sum(1)

    def forward(
        self, data: FeaturizedFrames, idx: np.ndarray, forces: bool = True, create_graph: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Energies (M, B) without the baseline, in eV, and forces (M, B, n, 3) in eV/Angstrom.

        ``idx`` is (B,): frames every member evaluates, or (M, B): each member its own frames (training in
        each member's own minibatch order costs the same arithmetic). Descriptor rows are
        element-sorted inside ``data``, but the Jacobian's columns keep the input atom order, so forces come
        out in the order of the input frames.
        """
        M = self.config.n_members
        idx = np.asarray(idx, dtype=np.int64)
        per_member = idx.ndim == 2
        if per_member and idx.shape[0] != M:
            raise ValueError(f"per-member frame indices need {M} rows, got {idx.shape}")
        G, species, J = data.take(idx.reshape(-1))  # (F, n, D), (F, n), (F, n*D, n*3)
        B, n, D = idx.shape[-1], G.shape[1], G.shape[2]
        lead = (M,) if per_member else ()
        G = G.reshape(*lead, B, n, D)
        outs, firsts = [], []
        with torch.set_grad_enabled(forces or torch.is_grad_enabled()):
            if data.blocks is not None:  # one composition, element-sorted rows: each network sees its own atoms
                groups = [e for e, _, _ in data.blocks]
                rows = [G[..., lo:hi, :].reshape(*lead, -1, D) for _, lo, hi in data.blocks]
            else:  # compositions differ: every network on every atom, masked to its element
                groups = [e for e in range(self.spec.n_species) if bool((species == e).any())]
                rows = [G.reshape(*lead, B * n, D)] * len(groups)
                masks = [(species == e).reshape(*lead, B * n).to(G.dtype) for e in groups]
            for e, X in zip(groups, rows):
                out, z1 = self._element_energy_terms((X - self.feature_mean[e]) / self.feature_scale[e], e)
                outs.append(out)
                firsts.append(z1)
            if data.blocks is not None:
                atomic = torch.cat([o.reshape(M, B, -1) for o in outs], dim=2)  # (M, B, n)
            else:
                atomic = sum(o * mk for o, mk in zip(outs, masks)).reshape(M, B, n)
            E = atomic.sum(2) * self.energy_scale
            if not forces:
                return E, None
            if J is None:
                raise ValueError("forces need the descriptor Jacobian; featurise these frames with jacobian=True")
            dz = torch.autograd.grad(E.sum(), firsts, create_graph=create_graph)
        # dE/dG = dE/dz1 . W1^T / scale, per member (members never mix); masked atoms have dz = 0.
        dG = [torch.matmul(d, self.layers[e][0][0].transpose(1, 2)) / self.feature_scale[e] for e, d in zip(groups, dz)]
        if data.blocks is not None:
            g = torch.cat([d.reshape(M, B, -1, D) for d in dG], dim=2)  # (M, B, n, D)
        else:
            g = sum(dG).reshape(M, B, n, D)
        if per_member:  # each (member, frame) pair has its own Jacobian
            F = -torch.bmm(g.reshape(M * B, 1, n * D), J).reshape(M, B, n, 3)
            return E, F
        F = -torch.bmm(g.reshape(M, B, n * D).transpose(0, 1), J)  # (B, M, n*3)
        return E, F.transpose(0, 1).reshape(M, B, n, 3)

    def _step(self, loss_e: torch.Tensor, loss_f: torch.Tensor) -> dict[str, float]:
        """One optimiser step on the weighted energy and force losses; their values for the fit's report."""
        loss = (loss_e + self.config.force_weight * loss_f) / (self.energy_scale**2)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip:
            self._clip_member_gradients(self.config.grad_clip)
        self.optimizer.step()
        return {"loss_energy": loss_e.item(), "loss_forces": loss_f.item()}

    @torch.no_grad()
    def _clip_member_gradients(self, max_norm: float) -> None:
        """Scale each member's gradient (all its parameters together) down to norm ``max_norm`` at most.

        Every parameter is stacked over members on its first axis, so members are clipped independently and
        one member's extreme batch does not shrink the others' steps."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return
        sq = sum(g.reshape(g.shape[0], -1).pow(2).sum(1) for g in grads)  # (M,)
        scale = (max_norm / (sq.sqrt() + 1e-12)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.reshape(-1, *([1] * (g.dim() - 1))))

    # ------------------------------------------------------------------------------------- training
    def _bootstrap_weights(self, K: int) -> torch.Tensor:
        """Loss weight of each member on each of the first ``K`` labels, (M, K) float32.

        The Bayesian bootstrap: Exp(1) weights (mean 1), drawn once per label from the potential's own
        generator, so a label keeps its weights as the set grows. Unlike a resample, no member ever ignores a
        paid label, which matters with a handful of labels: a member that never saw a labelled structure
        disagrees there and the committee's spread stays high where the data is. All ones without
        ``bootstrap``.
        """
        M = self.config.n_members
        if not self.config.bootstrap or M == 1:
            return torch.ones((M, K))
        have = self._weights.shape[1]
        if K > have:
            self._weights = np.concatenate([self._weights, self._boot_rng.exponential(1.0, size=(M, K - have))], 1)
        return torch.as_tensor(self._weights[:, :K], dtype=torch.float32)

    def _batches(self, K: int, steps: int, rng: np.random.Generator) -> np.ndarray:
        """Positions (steps, M, b) of the labels each member trains on at each step: each member walks
        through shuffled passes over all labels, in its own order."""
        M, b = self.config.n_members, min(self.config.batch_size, K)
        passes = math.ceil(steps * b / K)
        streams = np.stack([np.concatenate([rng.permutation(K) for _ in range(passes)])[: steps * b] for _ in range(M)])
        return streams.reshape(M, steps, b).transpose(1, 0, 2)

    def fit(
        self,
        data: FeaturizedFrames,
        energies: np.ndarray,
        forces: np.ndarray,
        rng: np.random.Generator,
        idx: np.ndarray | None = None,
        epochs: int | None = None,
        warm: bool | None = None,
    ) -> dict[str, float]:
        """Train all members on labelled frames; warm-starts from the current weights after the first fit.

        ``idx`` selects the labelled frames of ``data`` (default: all), in the order they were labelled
        (bootstrap weights are kept per position, so later calls may only append); ``energies`` (K,) eV and
        ``forces`` (K, n, 3) eV/Angstrom (dense frames) or (sum of the K frames' atoms, 3) (flat frames:
        per-atom energies then divide by each frame's own atom count, and the force loss averages over all
        atoms of a minibatch) are their labels, finite. A fit runs ``epochs`` passes over the
        labels (default ``epochs_initial`` from scratch, at least ``min_steps`` steps; ``epochs_per_round``
        warm). Minibatch orders come from ``rng``, so a seeded generator gives the same weights.
        """
        idx = np.arange(len(data)) if idx is None else np.asarray(idx, dtype=np.int64)
        K = len(idx)
        if K == 0:
            raise ValueError("no labelled frames to train on")
        E = torch.as_tensor(np.asarray(energies), dtype=torch.float64)
        Fr = torch.as_tensor(np.asarray(forces), dtype=torch.float32)
        flat = data.layout == "flat"
        want = (int(data.atom_counts(idx).sum()), 3) if flat else (K, data.n_atoms, 3)
        if E.shape != (K,) or Fr.shape != want:
            raise ValueError(f"label shapes {tuple(E.shape)}, {tuple(Fr.shape)} do not match {K} frames ({want} forces)")
        if not (torch.isfinite(E).all() and torch.isfinite(Fr).all()):
            raise ValueError("training labels contain NaN or inf; failed labels must be filtered out")
        if not self.representation.normalised:
            self.representation.set_normalisation([data])
        cfg = self.config
        if warm is None:
            warm = self.optimizer is not None
            if warm and cfg.scratch_growth and K >= cfg.scratch_growth * self.scratch_labels:
                self.layers, warm = self._initial_layers(), False  # see EnsembleConfig.scratch_growth
        if not warm or self.optimizer is None:
            self.scratch_labels = K
        if flat:
            return self._fit_flat(data, idx, E, Fr, rng, epochs, warm)
        species = data.species[torch.from_numpy(idx)]
        if not warm or self.optimizer is None:
            self._fit_baseline(species, E, Fr)
            epochs = cfg.epochs_initial if epochs is None else epochs
            lr = cfg.lr
        else:  # baseline and scale are kept, or refreshed with the outputs unchanged (refresh_scale)
            if cfg.refresh_scale:
                self.refresh_baseline(self._counts(species), E, Fr)
            epochs = cfg.epochs_per_round if epochs is None else epochs
            lr = cfg.warm_lr
        # every fit starts a fresh Adam: moments carried over from the last round's converged end slowed the
        # next round's descent (rMD17 ethanol at 730 labels: 25.2 meV/A kept, 21.0 restarted, same steps)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=cfg.weight_decay)
        n_batches = max(1, math.ceil(K / cfg.batch_size))
        total_steps = max(cfg.min_steps if not warm else 1, epochs * n_batches)
        target_E = ((E - self._energy_offset(species)) / data.n_atoms).float()
        n = data.n_atoms
        t0 = time.perf_counter()
        last = {}
        weights = self._bootstrap_weights(K)
        for step, pos in enumerate(self._batches(K, total_steps, rng)):
            for group in self.optimizer.param_groups:  # warm-up (warm fits) then cosine decay over this fit
                group["lr"] = learning_rate(cfg, lr, step, total_steps, warm)
            Ep, Fp = self.forward(data, idx[pos], forces=True, create_graph=True)
            ti = torch.from_numpy(pos)
            w = torch.gather(weights, 1, ti)  # (M, b) each member's weights of its own frames
            loss_e = (w * (Ep / n - target_E[ti]) ** 2).mean()
            loss_f = (w[..., None, None] * (Fp - Fr[ti]) ** 2).mean()
            last = self._step(loss_e, loss_f)
        self.n_updates += total_steps
        return {"train_seconds": time.perf_counter() - t0, "epochs": total_steps / n_batches, "steps": total_steps, **last}

    # ----------------------------------------------------------------------------------- prediction
    @torch.no_grad()
    def _no_grad_energy(self, data: FeaturizedFrames, idx: torch.Tensor) -> torch.Tensor:
        E, _ = self.forward(data, idx, forces=False)
        return E

    def predict(
        self,
        data: Featurized,
        forces: bool = True,
        chunk: int = 1000,
        idx: np.ndarray | None = None,
        max_triplets: int = MAX_TRIPLETS,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-member energies (M, F) in eV and forces in eV/Angstrom of the frames ``idx`` of ``data``
        (default: every frame): (M, F, n, 3) for dense frames, (M, A, 3) for flat ones (their atoms
        concatenated, ``data.atom_ptr(idx)``; computed in chunks of at most ``max_triplets`` triplets)."""
        frames = np.arange(len(data)) if idx is None else np.asarray(idx, dtype=np.int64)
        if data.layout == "flat":
            return self._predict_flat(data, frames, forces, chunk, max_triplets)
        Es, Fs = [], []
        for start in range(0, len(frames), chunk):
            idx = frames[start : start + chunk]
            if forces:
                E, F = self.forward(data, idx, forces=True)
                Fs.append(F.detach())
                E = E.detach()
            else:
                E = self._no_grad_energy(data, idx)
            Es.append(E.double() + self._energy_offset(data.species[torch.from_numpy(idx)]))
        E_all = torch.cat(Es, dim=1).numpy()
        F_all = torch.cat(Fs, dim=1).double().numpy() if forces else None
        return E_all, F_all

    # ------------------------------------------------------------------------------ model features
    def _last_layer_inputs(self, X: torch.Tensor, e: int) -> torch.Tensor:
        """What every member's last layer of network ``e`` reads, (M, K, H), on normalised inputs X (K, D):
        the last hidden layer's activations (the descriptors themselves for a network without hidden layers)."""
        layers = self.layers[e]
        if len(layers) == 1:
            return X.expand(self.config.n_members, *X.shape)
        h = torch.matmul(X, layers[0][0]) + layers[0][1]
        for W, b in layers[1:-1]:
            h = torch.matmul(torch.nn.functional.silu(h), W) + b
        return torch.nn.functional.silu(h)

    @torch.no_grad()
    def features(self, data: Featurized, idx: np.ndarray | None = None, chunk: int = 1000) -> np.ndarray:
        """Last-layer features (F, M * S * (H + 1)) float64 of frames ``idx`` of ``data`` (default all), either
        layout: the gradient of each member's energy (eV) with respect to its last layer's weights and biases.

        Member m's energy is ``E_m = s * sum_atoms (w_{m,e} . h_m(atom) + b_{m,e}) + baseline``, e the atom's
        element, h_m the input of its element network's last layer, s the energy scale. Each element has its
        own last layer, so ``dE_m/d(w_{m,e}, b_{m,e}) = s * (sum of h_m over the frame's atoms of element e,
        their count)``: one block of H + 1 per element (an element the frame lacks gives zeros), the blocks
        of a member concatenated in element order, the members' in member order, all scaled by
        ``1 / sqrt(M)``. The dot product of two frames' features is thus the members' average last-layer
        neural tangent kernel of the energy, and ``E_m = sqrt(M) * features[:, block m] . (w_m, b_m) +
        baseline``. Sums over atoms and the descriptors make them invariant to rotation, translation and
        permutation of like atoms. Energies only: no Jacobian or pair list is read.
        """
        frames = np.arange(len(data)) if idx is None else np.asarray(idx, dtype=np.int64)
        M, S = self.config.n_members, self.spec.n_species
        H = int(self.layers[0][-1][0].shape[1])
        out = np.zeros((len(frames), M, S, H + 1))
        for start in range(0, len(frames), chunk):
            part = frames[start : start + chunk]
            B = len(part)
            if data.layout == "flat":
                G, species, ptr = data.take(part)
                frame = torch.from_numpy(ragged.frame_index(ptr))
            else:
                G = torch.from_numpy(data.G.numpy()[part])  # descriptors only: never copies the Jacobians
                species = data.species[torch.from_numpy(part)]
                n = G.shape[1]
                G, species = G.reshape(B * n, -1), species.reshape(-1)
                frame = torch.arange(B).repeat_interleave(n)
            for e in range(S):
                sel = torch.nonzero(species == e).squeeze(1)
                if len(sel) == 0:
                    continue
                h = self._last_layer_inputs((G[sel] - self.feature_mean[e]) / self.feature_scale[e], e)
                sums = torch.zeros((M, B, H), dtype=torch.float64).index_add(1, frame[sel], h.double())
                out[start : start + B, :, e, :H] = sums.numpy().transpose(1, 0, 2)
                out[start : start + B, :, e, H] = np.bincount(frame[sel].numpy(), minlength=B)[:, None]
        out *= self.energy_scale / math.sqrt(M)
        return out.reshape(len(frames), M * S * (H + 1))

    # ------------------------------------------------------------------------------ single structure
    def evaluate_atoms(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
        """Per-member energy (M,) eV and forces (M, n, 3) eV/Angstrom of one structure, by autograd."""
        nb = build_neighbours([atoms], self.spec)
        pos = torch.tensor(atoms.positions, dtype=torch.float32, requires_grad=True)
        G = self.aev.compute(pos, nb)  # (n, D)
        species = torch.from_numpy(nb.species)
        M = self.config.n_members
        # One backward pass through all members' networks gives each member's dE_m/dG (members never mix);
        # only the cheap descriptor part is then differentiated once per member. MD calls this every step.
        Gm = G.detach().expand(M, *G.shape).clone().requires_grad_(True)  # (M, n, D)
        E = torch.zeros(M, dtype=G.dtype)
        for e in range(self.spec.n_species):
            sel = species == e
            if bool(sel.any()):
                X = (Gm[:, sel] - self.feature_mean[e]) / self.feature_scale[e]  # (M, k, D)
                out, _ = self._element_energy_terms(X, e)
                E = E + out.sum(1) * self.energy_scale
        (dG,) = torch.autograd.grad(E.sum(), Gm)  # (M, n, D)
        grads = torch.autograd.grad(G, pos, grad_outputs=dG, is_grads_batched=True)[0]  # (M, n, 3)
        offset = float(self.element_energy[species].sum())
        return E.detach().double().numpy() + offset, -grads.detach().double().numpy()

    def prepare(self, frames: Sequence[Atoms], jacobian: bool = True) -> Featurized:
        """Featurise frames once for ``fit`` and ``predict`` (through the shared representation)."""
        return self.representation.featurize(frames, jacobian=jacobian)

    def as_calculator(self) -> "EnsembleCalculator":
        """This ensemble as an ASE calculator (mean energy and forces, plus their spreads)."""
        from alenv.models.calculator import EnsembleCalculator

        return EnsembleCalculator(self)
