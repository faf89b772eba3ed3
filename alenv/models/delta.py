"""Delta-learning: a committee learns the difference between the task's oracle and a cheap baseline oracle.

``energy = baseline(structure) + correction(structure)`` and the same for forces, so the learned part only has
to carry what the cheap method gets wrong (GFN2-xTB under DFT: forces that correlate at 0.94 with PBE's but
differ by about 0.3 eV/Angstrom). Physics holds as long as the baseline's does: xTB, EMT and LJ energies are
invariant, their forces are their exact negative gradients, and so are the committee's.

Any registered model (``model``, ``model_kwargs``) learns the correction; its members share the baseline, so
the committee's spread is the correction's spread. Each featurised frame is labelled by the baseline once
(stored on the featurised data, ``FeaturizedFrames.frames`` say which structures they are); single structures
(molecular dynamics) are labelled as they come, without a cache. A baseline failure (an SCF that does not
converge) raises, naming the structure: a correction to a missing baseline means nothing. Baseline labels are
not charged to the labelling budget: report ``baseline_seconds`` beside the oracle's seconds when costs matter.

    gym.make("alenv/Dataset-v0", model="delta",
             model_kwargs={"baseline": "xtb", "model": "bp-ensemble", "model_kwargs": {"n_members": 5}})
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from ase import Atoms

from alenv.descriptors.representation import Featurized, Representation, frame_cache


@dataclass(frozen=True)
class DeltaConfig:
    """Settings of :class:`DeltaPotential`: the baseline oracle, and the model that learns the correction."""

    baseline: str = "xtb"  # a name of alenv.oracles.ORACLES
    baseline_kwargs: dict[str, Any] = field(default_factory=dict)
    model: str = "bp-ensemble"  # a name of alenv.models.MODELS (not "delta")
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from alenv.models import MODELS, make_settings
        from alenv.oracles import ORACLES

        if self.baseline not in ORACLES or self.baseline in ("lookup", "noisy"):
            known = ", ".join(sorted(set(ORACLES) - {"lookup", "noisy"}))
            raise ValueError(f"unknown baseline oracle {self.baseline!r}; a baseline computes labels: {known}")
        if self.model == "delta" or self.model not in MODELS:
            raise ValueError(f"the correction's model must be one of {sorted(set(MODELS) - {'delta'})}, got {self.model!r}")
        make_settings(self.model, dict(self.model_kwargs))  # its unknown settings raise here


class DeltaPotential:
    """A committee of corrections on top of a baseline oracle; follows ``alenv.models.base.Potential``."""

    def __init__(self, representation: Representation, settings: DeltaConfig, seed: int = 0) -> None:
        from alenv.models import make_potential
        from alenv.oracles import make_oracle

        self.representation = representation
        self.config = settings
        self.inner = make_potential(settings.model, representation, seed=seed, **settings.model_kwargs)
        self.baseline = make_oracle(settings.baseline, **settings.baseline_kwargs)
        self._key = (self.baseline.name, repr(sorted(self.baseline.fingerprint().items())))
        self.baseline_seconds = 0.0  # baseline compute time spent by this potential (featurised frames and MD)

    @property
    def n_members(self) -> int:
        return self.inner.n_members

    # ----------------------------------------------------------------------------------- baseline
    def _labels(self, structures: Sequence[Atoms]) -> tuple[list[float], list[np.ndarray]]:
        t0 = time.perf_counter()
        labels = self.baseline.label(list(structures))
        self.baseline_seconds += time.perf_counter() - t0
        for atoms, lab in zip(structures, labels):
            if lab.failed:
                raise ValueError(
                    f"baseline oracle {self.baseline.name!r} failed on {atoms.get_chemical_formula()}: {lab.error}; "
                    "a Delta model needs the baseline of every structure it sees"
                )
        return [float(lab.energy) for lab in labels], [np.asarray(lab.forces, dtype=np.float64) for lab in labels]

    def baseline_of(self, data: Featurized, idx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Baseline energies (B,) eV and forces, (B, n, 3) dense or (atoms of frames ``idx``, 3) flat, of
        frames ``idx`` of ``data`` (default all); computed once per frame and kept on ``data``."""
        labels = frame_cache(data, "delta baseline", self._key, lambda new: list(zip(*self._labels(new))))
        energies, forces = [e for e, _ in labels], [f for _, f in labels]
        frames = data.frames
        sel = np.arange(len(frames)) if idx is None else np.asarray(idx, dtype=np.int64)
        E = np.array([energies[i] for i in sel], dtype=np.float64)
        parts = [forces[i] for i in sel]
        if data.layout == "flat":
            F = np.concatenate(parts) if parts else np.zeros((0, 3))
        else:
            F = np.stack(parts) if parts else np.zeros((0, data.n_atoms, 3))
        return E, F

    # ----------------------------------------------------------------------------------- Potential
    def prepare(self, frames: Sequence[Atoms], jacobian: bool = True) -> Featurized:
        return self.inner.prepare(frames, jacobian=jacobian)

    def fit(self, data: Featurized, energies: np.ndarray, forces: np.ndarray, rng: np.random.Generator,
            idx: np.ndarray | None = None, warm: bool | None = None) -> dict[str, Any]:
        """Fit the correction: labels minus the baseline of the same frames."""
        E0, F0 = self.baseline_of(data, idx)
        return self.inner.fit(data, np.asarray(energies) - E0, np.asarray(forces) - F0, rng, idx=idx, warm=warm)

    def predict(self, data: Featurized, forces: bool = True, chunk: int = 1000, idx: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray | None]:
        E, F = self.inner.predict(data, forces=forces, chunk=chunk, idx=idx)
        E0, F0 = self.baseline_of(data, idx)
        return E + E0[None], (None if F is None else F + F0[None])

    def evaluate_atoms(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
        E, F = self.inner.evaluate_atoms(atoms)
        (e0,), (f0,) = self._labels([atoms])
        return E + e0, F + f0[None]

    def as_calculator(self) -> Any:
        from alenv.models.calculator import EnsembleCalculator

        return EnsembleCalculator(self)

    def __getattr__(self, name: str) -> Any:
        # model features (SupportsFeatures) where the correction's model has them: E_m = phi_m . theta_m +
        # baseline, the baseline being the same for every member
        if name == "features" and "inner" in self.__dict__:
            return getattr(self.inner, "features")
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
