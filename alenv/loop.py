"""The round engine: an episode's state and the plain functions that play one round of active learning.

Every mode (pool, on the fly) sequences the same stages: label the chosen configurations, record the
labels (failures charged and kept, never trained on), refit the potential, evaluate it, and report. The
modes differ only in where candidates come from and how an action is decoded; they call these functions.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from ase import Atoms

from alenv import keys, ragged
from alenv.data import LabelledSet, frame_labels, subset_of
from alenv.descriptors.representation import Featurized, Representation
from alenv.metrics import errors, subset_errors
from alenv.models import make_potential
from alenv.models.base import Potential
from alenv.oracles.base import Oracle
from alenv.types import Label


@dataclass
class Reference:
    """Featurised frames with their reference labels: energies (F,) eV and forces (F, n, 3) eV/Angstrom,
    or for the flat layout (frames of several sizes) forces (A, 3), their atoms concatenated, with the
    atom pointer ``ptr`` (F + 1,) (None for the dense layout).

    ``has_forces`` (F,) marks the frames with reference forces; the others (energy-only frames of a Dataset
    validation or test file) hold NaN forces and count only in energy errors. ``subsets`` (F,) names each
    frame's subset for per-subset metrics (``alenv.data.subset_of``: ``T=300K``, a ``config_type``), or None.

    A *streamed* reference (``data`` None) keeps its frames instead of their Jacobians and featurises them
    again, ``STREAM_CHUNK`` frames at a time, whenever it is evaluated: memory for time, for tasks whose
    Jacobians do not all fit (``jacobian_bytes``). Its predictions equal a held reference's to float32
    rounding (chunks of other shapes sum in another order: 6e-6 eV/A seen).
    """

    data: Featurized | None
    energies: np.ndarray
    forces: np.ndarray
    has_forces: np.ndarray
    subsets: list[str | None]
    frames: Sequence[Atoms] | None = None
    representation: Representation | None = None
    ptr: np.ndarray | None = None

    @classmethod
    def of(cls, frames: Sequence[Atoms], representation: Representation, stream: bool = False) -> "Reference":
        """Featurise ``frames`` (which carry their labels) once, or keep them to featurise at each evaluation
        (``stream``); frames without forces are kept for energies."""
        if not frames:
            raise ValueError("a reference set needs at least one labelled frame")
        E, F, has = [], [], []
        for i, atoms in enumerate(frames):
            e, f = frame_labels(atoms)
            if e is None:
                raise ValueError(f"reference frame {i} has no energy")
            E.append(e)
            F.append(np.full((len(atoms), 3), np.nan) if f is None else f)
            has.append(f is not None)
        data = None if stream else representation.featurize(frames, memo=True)
        layout = data.layout if data is not None else representation.layout
        flat = layout == "flat" or (layout == "auto" and len({len(a) for a in frames}) > 1)
        forces, ptr = ragged.concat(F) if flat else (np.stack(F), None)
        return cls(
            data, np.array(E), forces, np.array(has, dtype=bool), [subset_of(a) for a in frames],
            list(frames) if stream else None, representation if stream else None, ptr,
        )

    @property
    def streamed(self) -> bool:
        return self.data is None

    def predict(self, potential: Potential) -> tuple[np.ndarray, np.ndarray]:
        """Per-member energies (M, F) eV and forces (M, F, n, 3) eV/Angstrom (flat: (M, A, 3)) of the
        potential on these frames."""
        if self.data is not None:
            return potential.predict(self.data)
        parts = [
            potential.predict(self.representation.featurize(self.frames[s : s + STREAM_CHUNK]))
            for s in range(0, len(self.frames), STREAM_CHUNK)
        ]
        return np.concatenate([E for E, _ in parts], axis=1), np.concatenate([F for _, F in parts], axis=1)


STREAM_CHUNK = 50  # frames featurised at a time by a streamed reference (rMD17 aspirin: 200 raised the peak 0.4 GB)


def jacobian_bytes(frames: Sequence[Atoms], n_features: int) -> int:
    """Bytes that dense float32 descriptor Jacobians of ``frames`` take: 12 n^2 D per frame of n atoms."""
    return int(sum(12 * len(a) ** 2 * n_features for a in frames))


@dataclass
class TrainingSet:
    """The frames the potential trains on: rows of featurised ``data`` and their labels, in label order."""

    data: Featurized | None = None
    rows: list[int] = field(default_factory=list)
    energies: list[float] = field(default_factory=list)
    forces: list[np.ndarray] = field(default_factory=list)

    def add(self, labels: Sequence[Label], rows: Sequence[int]) -> None:
        """Append successful labels of rows already in ``data``."""
        self.rows += [int(r) for r in rows]
        self.energies += [lab.energy for lab in labels]
        self.forces += [np.asarray(lab.forces) for lab in labels]

    def extend(self, new: Featurized, labels: Sequence[Label]) -> None:
        """Append newly featurised frames (rows at the end of ``data``) with their labels."""
        start = 0 if self.data is None else len(self.data)
        if self.data is None:
            self.data = new
        else:
            self.data.extend(new)
        self.add(labels, range(start, start + len(new)))

    def __len__(self) -> int:
        return len(self.rows)

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Energies (K,) and forces of the training labels: (K, n, 3) stacked, or (sum n_f, 3)
        concatenated when ``data`` has the flat layout."""
        E = np.array(self.energies)
        if self.data is not None and self.data.layout == "flat":
            return E, np.concatenate(self.forces)
        return E, np.stack(self.forces)


@dataclass
class Episode:
    """Everything an episode accumulates: labels, training set, potential, budget, metrics and timings."""

    potential: Potential
    labelled: LabelledSet
    train: TrainingSet
    metrics: dict[str, float] = field(default_factory=dict)
    budget_used: int = 0
    round: int = 0
    train_force_rmse: float = math.nan
    train_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


def record(
    ep: Episode,
    frames: Sequence[Atoms],
    labels: Sequence[Label],
    index: Sequence[int],
    rows: Sequence[int] | None,
    representation: Representation,
) -> tuple[list[int], list[Atoms]]:
    """Keep every label paid for in ``ep.labelled``; add the successful ones to the training set.

    ``rows`` are the frames' rows in the training set's ``data`` (pool mode), or None to featurise the
    frames now (on-the-fly mode). Returns the ``index`` entries whose label failed, and the frames that
    were labelled successfully.
    """
    ep.labelled.extend(frames, labels, index, ep.round)
    ok = [k for k, lab in enumerate(labels) if not lab.failed]
    good = [labels[k] for k in ok]
    if rows is not None:
        ep.train.add(good, [rows[k] for k in ok])
    elif ok:
        ep.train.extend(representation.featurize([frames[k] for k in ok]), good)
    failed = [int(index[k]) for k, lab in enumerate(labels) if lab.failed]
    return failed, [frames[k] for k in ok]


def fit(ep: Episode, rng: np.random.Generator) -> None:
    """Train the potential on the training set (warm start after the first fit), then measure how well
    its mean fits its own labels (``train_force_rmse``: an estimate of what it cannot learn)."""
    E, F = ep.train.labels()
    idx = np.array(ep.train.rows, dtype=np.int64)
    t0 = time.perf_counter()
    ep.potential.fit(ep.train.data, E, F, rng, idx=idx)
    ep.train_seconds += time.perf_counter() - t0
    _, Fp = ep.potential.predict(ep.train.data, idx=idx)
    ep.train_force_rmse = float(np.sqrt(((Fp.mean(0) - F) ** 2).mean()))


def refit(ep: Episode, spec: Any, representation: Representation, seed: int, **settings: Any) -> Potential:
    """A new potential of the task's model, trained from scratch on the episode's training set.

    The in-loop potential is warm-started round after round; this one sees the same labels in one fit
    from scratch (its own seed), so the gap between their errors says whether the loop trains enough.
    ``settings`` override the task's model settings for this fit (e.g. ``min_steps`` of the ensemble).
    """
    if not ep.train.rows:
        raise RuntimeError("no labels to refit on")
    potential = make_potential(spec.model, representation, seed=int(seed), **{**spec.model_kwargs, **settings})
    E, F = ep.train.labels()
    idx = np.array(ep.train.rows, dtype=np.int64)
    potential.fit(ep.train.data, E, F, np.random.default_rng([int(seed), 2]), idx=idx)
    return potential


def evaluate(potential: Potential, reference: Reference, by_subset: bool = False) -> dict[str, float]:
    """Errors of the potential's mean prediction on ``reference`` (``keys.TEST_METRICS``).

    With ``by_subset`` also every one of them per subset of the frames, keyed ``keys.per_subset`` (reports
    read these from ``test_metrics()``; ``info`` keeps only the overall errors, a small fixed set of keys).
    """
    E, F = reference.predict(potential)
    args = (E.mean(0), F.mean(0), reference.energies, reference.forces, reference.has_forces)
    out = errors(*args, ptr=reference.ptr).as_dict()
    if by_subset:
        out.update(subset_errors(*args, reference.subsets, ptr=reference.ptr))
    return out


def start(
    spec: Any,
    representation: Representation,
    oracle: Oracle,
    frames: Sequence[Atoms],
    rows: Sequence[int] | None,
    reference: Reference,
    rng: np.random.Generator,
    data: Featurized | None = None,
) -> tuple[Episode, list[Atoms]]:
    """A new episode: label the initial ``frames``, build the task's potential (seeded from ``rng``), fit
    it from scratch and evaluate it. Returns the episode and the initial frames labelled successfully."""
    ep = Episode(potential=None, labelled=LabelledSet(), train=TrainingSet(data=data))  # type: ignore[arg-type]
    labels = oracle.label(list(frames))
    _, ok = record(ep, frames, labels, [-1] * len(frames), rows, representation)
    if not ok:
        errs = sorted({lab.error for lab in labels})
        raise RuntimeError(f"every initial label failed; the oracle cannot label this task's reserve: {errs}")
    ep.potential = make_potential(spec.model, representation, seed=int(rng.integers(2**31)), **spec.model_kwargs)
    fit(ep, rng)
    ep.metrics = evaluate(ep.potential, reference)
    return ep, ok


def play_round(
    ep: Episode,
    oracle: Oracle,
    frames: Sequence[Atoms],
    index: Sequence[int],
    rows: Sequence[int] | None,
    representation: Representation,
    reference: Reference,
    rng: np.random.Generator,
) -> tuple[dict[str, float], list[int], list[Label]]:
    """Label ``frames``, record them, refit and evaluate if any label succeeded.

    Returns the metrics before the round, the failed indices and the labels.
    """
    t0 = time.perf_counter()
    labels = oracle.label(list(frames))
    ep.round += 1
    ep.timings = {"label": time.perf_counter() - t0}
    failed, _ = record(ep, frames, labels, index, rows, representation)
    ep.budget_used += len(frames)
    before = ep.metrics
    if len(failed) < len(frames):
        t1 = time.perf_counter()
        fit(ep, rng)
        t2 = time.perf_counter()
        ep.metrics = evaluate(ep.potential, reference)
        ep.timings.update(train=t2 - t1, evaluate=time.perf_counter() - t2)
    return before, failed, labels


def info(
    ep: Episode,
    chosen: Sequence[int],
    failed: Sequence[int],
    seconds: float,
    *,
    max_picks: int,
    any_subset: bool,
    wall_times: bool,
    extra_metrics: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The step's ``info``: metrics (``keys.METRICS``), round, chosen and failed indices, how many picks
    the next action may hold, and (opt-in) wall-clock timings."""
    metrics = dict(ep.metrics)
    metrics.update(
        {
            keys.N_LABELS: len(ep.labelled),
            keys.N_FAILED: ep.labelled.n_failed,
            keys.BUDGET_USED: ep.budget_used,
            keys.ORACLE_SECONDS: ep.labelled.oracle_seconds,
            keys.TRAIN_FORCE_RMSE: ep.train_force_rmse,
        }
    )
    metrics.update(extra_metrics or {})
    out = {
        keys.METRICS_KEY: metrics,
        keys.ROUND: ep.round,
        keys.CHOSEN: [int(i) for i in chosen],
        keys.FAILED: [int(i) for i in failed],
        keys.MAX_PICKS: int(max_picks),
        keys.ANY_SUBSET: bool(any_subset),
        keys.N_MEMBERS: int(ep.potential.n_members),
    }
    if wall_times:
        metrics.update({keys.TRAIN_SECONDS: ep.train_seconds, keys.ROUND_SECONDS: seconds})
        out[keys.TIMINGS] = dict(ep.timings)
    return out
