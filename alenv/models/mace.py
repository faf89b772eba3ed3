"""An equivariant committee: M independent MACE models (mace-torch), trained in alenv's own loop.

Optional: ``pip install "alenv[mace]"`` (mace-torch 0.3.16 with e3nn 0.4.4; nequip needs another e3nn and
cannot share the environment). Two traps of that pair are handled here, and tested:

- ``import mace`` sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` for the whole process, which turns off
  ``torch.load``'s safe mode for everything loaded afterwards; the variable is put back as it was once mace
  and e3nn are imported (:func:`import_mace`).
- e3nn 0.4.4 reads its constants with ``torch.load`` at import, which the safe default of torch 2.13 refuses:
  it imports only while that variable is set, so mace is always imported first.

A third one is left to the environment: mace-torch's wheel installs a top-level package named ``tests``,
which shadows this repository's ``tests/`` in the same environment, so alenv's own test suite runs where
mace-torch is not installed and the mace tests in a separate environment (``pyproject.toml``).

Each member is a MACE (``channels`` x 0e + ``channels`` x 1o hidden features for ``max_L = 1``, correlation 3,
two interactions) on graphs built here from the structures the featurised frames keep
(``FeaturizedFrames.frames``; the AEV descriptors are not used); energies are per-element offsets fitted by
least squares plus the network. Members differ by initialisation, Bayesian-bootstrap weights of the frames
(Exp(1), as the BP ensemble's) and minibatch order. Training: ``epochs_initial`` passes over the labels from
scratch, then ``epochs_per_round`` passes over all labels held each round (warm start), so the cost grows
with the data as the BP ensemble's does. Forces are exact negative gradients (autograd), so MD conserves
energy. Runs on CUDA when present (``device="auto"``), never needs it.

Measured here on one core (``python -m benchmarks.accuracy --model mace``): see the README's learner figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list

from alenv.descriptors.representation import Featurized, Representation, frame_cache

TRAP = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def import_mace() -> tuple[Any, Any]:
    """``mace.modules`` and ``e3nn.o3``, imported so that the process's ``torch.load`` stays as it was."""
    before = os.environ.get(TRAP)
    try:
        import mace  # noqa: F401  (sets TRAP; must come before e3nn under torch 2.13)
        from e3nn import o3
        from mace import modules
    except ImportError as exc:
        raise ImportError('the "mace" model needs mace-torch: pip install "alenv[mace]"') from exc
    finally:
        if before is None:
            os.environ.pop(TRAP, None)
        else:
            os.environ[TRAP] = before
    return modules, o3


@dataclass(frozen=True)
class MACEConfig:
    """Settings of :class:`MACECommittee`."""

    n_members: int = 3
    channels: int = 32  # hidden features per irrep
    max_L: int = 1  # highest rotation order of the hidden features
    correlation: int = 3  # body order of the product basis
    num_interactions: int = 2
    r_max: float = 5.0  # cutoff, Angstrom
    max_ell: int = 3  # spherical harmonics of the edges
    num_bessel: int = 8
    epochs_initial: int = 40  # passes over the labels of a fit from scratch
    epochs_per_round: int = 10  # passes over every label held, each warm-started round
    lr: float = 1e-2
    lr_final_fraction: float = 0.1  # cosine decay within each fit to this fraction of lr
    batch_size: int = 8  # frames per minibatch
    force_weight: float = 100.0  # relative to per-atom energy residuals
    bootstrap: bool = True  # Exp(1) frame weights per member
    dtype: str = "float64"  # float64 keeps forces equal to -dE/dx to 1e-6; float32 is about 2 x faster
    device: str = "auto"  # "auto": CUDA when present, else CPU
    heads: int = 1  # readout heads per network: the committee is n_members x heads (see MACEHeadsConfig)

    def __post_init__(self) -> None:
        if self.n_members < 1 or self.channels < 1 or self.max_L < 0 or self.num_interactions < 1 or self.heads < 1:
            raise ValueError("n_members, heads, channels and num_interactions must be positive and max_L >= 0")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.epochs_initial < 1 or self.epochs_per_round < 0 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError("epochs_initial, batch_size and lr must be positive, epochs_per_round >= 0")


@dataclass(frozen=True)
class MACEHeadsConfig(MACEConfig):
    """The cheap-uncertainty variant (``model="mace-heads"``): one MACE backbone with ``heads`` readout heads.

    Each head has its own column of the first (linear) readout and its own hidden block of the last (MLP)
    readout, mace-torch's multi-head readouts; the interactions are shared. Heads differ by initialisation and
    by their own Exp(1) frame weights, so their spread is a committee spread over the readouts only (a shallow
    ensemble): it sees less than independent networks do, and costs one forward pass for every head's energy
    and one backward pass per head for forces (``python -m benchmarks.accuracy --model mace-heads`` against
    ``--model mace`` measures both)."""

    n_members: int = 1
    heads: int = 4


class MACECommittee:
    """M MACE models trained together on alenv's labels; follows ``alenv.models.base.Potential``.

    ``n_members`` networks of ``heads`` readout heads each: the committee has ``n_members x heads`` members
    (``MACEConfig``: independent networks; ``MACEHeadsConfig``: one network, several heads)."""

    def __init__(self, representation: Representation, settings: MACEConfig, seed: int = 0) -> None:
        self._modules, self._o3 = import_mace()
        self.representation = representation
        self.config = settings
        self.seed = int(seed)
        self.zs = [int(z) for z in representation.spec.species]
        self.dtype = torch.float64 if settings.dtype == "float64" else torch.float32
        want_cuda = settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available())
        if settings.device == "cuda" and not torch.cuda.is_available():
            raise ValueError('device="cuda" but torch sees no CUDA device; use "auto" or "cpu"')
        self.device = torch.device("cuda" if want_cuda else "cpu")
        self.members: list[torch.nn.Module] | None = None  # built at the first fit (neighbour count known)
        self.e0 = np.zeros(len(self.zs))  # per-element energy offsets, eV
        self._fits = 0

    @property
    def n_members(self) -> int:
        return self.config.n_members * self.config.heads

    # ----------------------------------------------------------------------------------- graphs
    def _one_hot(self, numbers: np.ndarray) -> np.ndarray:
        index = {z: k for k, z in enumerate(self.zs)}
        missing = sorted({int(z) for z in numbers} - set(index))
        if missing:
            raise ValueError(f"elements {missing} are outside this model's {self.zs}")
        out = np.zeros((len(numbers), len(self.zs)))
        out[np.arange(len(numbers)), [index[int(z)] for z in numbers]] = 1.0
        return out

    def _edges(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
        i, j, S = neighbor_list("ijS", atoms, self.config.r_max)
        return np.stack([i, j]), S.astype(np.float64)

    def _graphs(self, data: Featurized) -> list[tuple[np.ndarray, np.ndarray]]:
        """Edges of every frame of ``data``, built once per frame and kept on ``data``."""
        return frame_cache(data, "mace graphs", self.config.r_max, lambda new: [self._edges(a) for a in new])

    def _batch(self, frames: Sequence[Atoms], edges: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
        pos, attrs, index, shifts, units, cells, batch, ptr = [], [], [], [], [], [], [], [0]
        for b, (atoms, (ij, S)) in enumerate(zip(frames, edges)):
            cell = np.array(atoms.cell.array, dtype=np.float64)
            pos.append(atoms.positions)
            attrs.append(self._one_hot(atoms.numbers))
            index.append(ij + ptr[-1])
            units.append(S)
            shifts.append(S @ cell)
            cells.append(cell)
            batch.append(np.full(len(atoms), b))
            ptr.append(ptr[-1] + len(atoms))

        def t(parts: list[np.ndarray], dtype: torch.dtype = self.dtype) -> torch.Tensor:
            return torch.tensor(np.concatenate(parts), dtype=dtype, device=self.device)

        return {"positions": t(pos), "node_attrs": t(attrs),
                "edge_index": torch.tensor(np.concatenate(index, axis=1), dtype=torch.long, device=self.device),
                "shifts": t(shifts), "unit_shifts": t(units), "cell": t(cells),
                "batch": t(batch, torch.long), "ptr": torch.tensor(ptr, dtype=torch.long, device=self.device),
                "head": torch.zeros(len(frames), dtype=torch.long, device=self.device)}

    # ----------------------------------------------------------------------------------- members
    def _build(self, avg_neighbours: float) -> list[torch.nn.Module]:
        modules, o3 = self._modules, self._o3
        c = self.config
        hidden = o3.Irreps(" + ".join(f"{c.channels}x{L}{'e' if L % 2 == 0 else 'o'}" for L in range(c.max_L + 1)))
        block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        members = []
        previous = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)
        try:
            for m in range(c.n_members):
                with torch.random.fork_rng(devices=[]):  # each member's initial weights from the run seed alone
                    torch.manual_seed(1000 * self.seed + m)
                    model = modules.MACE(
                        r_max=c.r_max, num_bessel=c.num_bessel, num_polynomial_cutoff=5, max_ell=c.max_ell,
                        interaction_cls=block, interaction_cls_first=block, num_interactions=c.num_interactions,
                        num_elements=len(self.zs), hidden_irreps=hidden, MLP_irreps=o3.Irreps("16x0e"),
                        atomic_energies=np.zeros((c.heads, len(self.zs)) if c.heads > 1 else len(self.zs)),
                        avg_num_neighbors=float(avg_neighbours), atomic_numbers=self.zs,
                        correlation=c.correlation, gate=torch.nn.functional.silu,
                        **({"heads": [f"head{h}" for h in range(c.heads)]} if c.heads > 1 else {}),
                    )
                members.append(model.to(self.device))
        finally:
            torch.set_default_dtype(previous)
        return members

    def _counts(self, frames: Sequence[Atoms]) -> np.ndarray:
        return np.stack([self._one_hot(a.numbers).sum(0) for a in frames])

    def _forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], forces: bool, training: bool
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Energies ``(heads, frames)`` and forces ``(heads, atoms, 3)`` (``None`` unless ``forces``)."""
        data = dict(batch)
        data["positions"] = batch["positions"].clone()
        with torch.set_grad_enabled(forces or training):
            if self.config.heads == 1:
                out = model(data, training=training, compute_force=forces)
                return out["energy"][None], out["forces"][None] if forces else None
            return self._forward_heads(model, data, forces, training)

    def _forward_heads(self, model: torch.nn.Module, data: dict[str, torch.Tensor], forces: bool, training: bool
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every head of one network from a single pass through its interactions (mace-torch's own forward
        gives one head per graph). The same sums as ``MACE.forward`` for models built here (no pair repulsion,
        no joint embedding, zero atomic energies); tested against it head by head."""
        from mace.modules.utils import prepare_graph

        ctx = prepare_graph(data)
        kwargs = ctx.interaction_kwargs
        attrs, edge_index, n_graphs = data["node_attrs"], data["edge_index"], ctx.num_graphs
        feats = model.node_embedding(attrs)
        edge_attrs = model.spherical_harmonics(ctx.vectors)
        edge_feats, cutoff = model.radial_embedding(ctx.lengths, attrs, edge_index, model.atomic_numbers)
        per_layer = []
        for i, (interaction, product) in enumerate(zip(model.interactions, model.products)):
            feats, sc = interaction(node_attrs=attrs, node_feats=feats, edge_attrs=edge_attrs, edge_feats=edge_feats,
                                    edge_index=edge_index, cutoff=cutoff, first_layer=(i == 0),
                                    lammps_class=kwargs.lammps_class, lammps_natoms=kwargs.lammps_natoms)
            feats = product(node_feats=feats, sc=sc, node_attrs=attrs)
            per_layer.append(feats)
        heads = []
        for h in range(self.config.heads):
            which = torch.full((len(attrs),), h, dtype=torch.long, device=attrs.device)
            node_e = sum(readout(per_layer[i], which)[:, h] for i, readout in enumerate(model.readouts))
            heads.append(torch.zeros(n_graphs, dtype=node_e.dtype, device=node_e.device).index_add(0, data["batch"], node_e))
        E = torch.stack(heads)
        if not forces:
            return E, None
        grads = [torch.autograd.grad(E[h].sum(), ctx.positions, create_graph=training, retain_graph=True)[0]
                 for h in range(len(E))]
        return E, -torch.stack(grads)

    # ----------------------------------------------------------------------------------- Potential
    def prepare(self, frames: Sequence[Atoms], jacobian: bool = True) -> Featurized:
        return self.representation.featurize(frames, jacobian=False)  # graphs come from the structures

    def fit(self, data: Featurized, energies: np.ndarray, forces: np.ndarray, rng: np.random.Generator,
            idx: np.ndarray | None = None, warm: bool | None = None) -> dict[str, Any]:
        """Fit every member on frames ``idx`` of ``data``; warm-started after the first fit unless ``warm=False``."""
        import time

        t0 = time.perf_counter()
        sel = np.arange(len(data)) if idx is None else np.asarray(idx, dtype=np.int64)
        frames = [data.frames[i] for i in sel]
        graphs = self._graphs(data)
        edges = [graphs[i] for i in sel]
        E = np.asarray(energies, dtype=np.float64)
        if len(E) != len(frames):
            raise ValueError(f"{len(E)} energies for {len(frames)} frames")
        sizes = [len(a) for a in frames]
        F = np.asarray(forces, dtype=np.float64)
        per_frame = (np.split(F, np.cumsum(sizes)[:-1]) if F.ndim == 2 else list(F))
        warm = self._fits > 0 if warm is None else bool(warm)
        counts = self._counts(frames)
        if not warm or self.members is None:
            self.e0 = np.linalg.lstsq(counts, E, rcond=None)[0]  # per-element offsets
            neighbours = np.mean([np.bincount(ij[1], minlength=len(a)).mean() for a, (ij, _) in zip(frames, edges)])
            self.members = self._build(max(float(neighbours), 1.0))
        epochs = self.config.epochs_per_round if warm else self.config.epochs_initial
        residual = E - counts @ self.e0
        n, c = len(frames), self.config
        steps_per_epoch = int(np.ceil(n / c.batch_size))
        total = max(epochs * steps_per_epoch, 1)
        losses = []
        for model in self.members:
            shape = (c.heads, n) if c.heads > 1 else n  # one head: the draws of the committee before heads existed
            weights = rng.exponential(size=shape) if c.bootstrap else np.ones(shape)
            weights = np.atleast_2d(weights / weights.mean(axis=-1, keepdims=True))  # (heads, frames)
            optimiser = torch.optim.Adam(model.parameters(), lr=c.lr)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=total, eta_min=c.lr * c.lr_final_fraction)
            model.train()
            for _ in range(epochs):
                order = rng.permutation(n)
                for s in range(0, n, c.batch_size):
                    part = order[s : s + c.batch_size]
                    batch = self._batch([frames[k] for k in part], [edges[k] for k in part])
                    e_pred, f_pred = self._forward(model, batch, forces=True, training=True)
                    w = torch.tensor(weights[:, part], dtype=self.dtype, device=self.device)  # (heads, batch)
                    natoms = torch.tensor([sizes[k] for k in part], dtype=self.dtype, device=self.device)
                    e_true = torch.tensor(residual[part], dtype=self.dtype, device=self.device)
                    f_true = torch.tensor(np.concatenate([per_frame[k] for k in part]), dtype=self.dtype, device=self.device)
                    atom_w = torch.repeat_interleave(w, natoms.long(), dim=1)
                    loss_e = (w * ((e_pred - e_true) / natoms) ** 2).mean()  # mean over heads: each head's own loss
                    loss_f = (atom_w[..., None] * (f_pred - f_true) ** 2).mean()
                    loss = loss_e + c.force_weight * loss_f
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                    schedule.step()
            model.eval()
            losses.append(float(loss.detach()) if epochs else float("nan"))
        self._fits += 1
        return {"train_seconds": time.perf_counter() - t0, "epochs": epochs, "steps": epochs * steps_per_epoch,
                "loss": float(np.mean(losses))}

    def _require_fit(self) -> list[torch.nn.Module]:
        if self.members is None:
            raise RuntimeError("the mace committee must be fitted before it predicts")
        return self.members

    def predict(self, data: Featurized, forces: bool = True, chunk: int = 1000, idx: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray | None]:
        members = self._require_fit()
        sel = np.arange(len(data)) if idx is None else np.asarray(idx, dtype=np.int64)
        graphs = self._graphs(data)
        frames = [data.frames[i] for i in sel]
        offsets = self._counts(frames) @ self.e0 if frames else np.zeros(0)
        M, H = self.n_members, self.config.heads
        E = np.zeros((M, len(frames)))
        Fs: list[np.ndarray] = []
        step = max(1, min(int(chunk), 64))
        for s in range(0, len(frames), step):
            batch = self._batch(frames[s : s + step], [graphs[i] for i in sel[s : s + step]])
            parts = []
            for m, model in enumerate(members):
                e, f = self._forward(model, batch, forces=forces, training=False)
                E[m * H : (m + 1) * H, s : s + step] = e.detach().cpu().numpy()
                if forces:
                    parts.append(f.detach().cpu().numpy())
            if forces:
                Fs.append(np.concatenate(parts))  # (M, atoms of the chunk, 3)
        E += offsets[None]
        if not forces:
            return E, None
        F = np.concatenate(Fs, axis=1) if Fs else np.zeros((M, 0, 3))  # (M, A, 3)
        if data.layout != "flat":
            F = F.reshape(M, len(frames), -1, 3)
        return E, F

    def evaluate_atoms(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
        members = self._require_fit()
        batch = self._batch([atoms], [self._edges(atoms)])
        offset = float(self._counts([atoms])[0] @ self.e0)
        out = [self._forward(model, batch, forces=True, training=False) for model in members]
        E = np.concatenate([e.detach().cpu().numpy()[:, 0] for e, _ in out]) + offset
        F = np.concatenate([f.detach().cpu().numpy() for _, f in out])
        return E, F

    def as_calculator(self) -> Any:
        from alenv.models.calculator import EnsembleCalculator

        return EnsembleCalculator(self)
