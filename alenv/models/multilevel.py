"""A committee that learns every fidelity level at once: a model of the cheapest level plus a learned
correction per level above it.

``prediction at level l = model_0 + correction_1 + ... + correction_l`` (energies and forces alike, member by
member: member m of the sum is the sum of the levels' members m). ``model_0`` learns the cheapest level's
labels; ``correction_l`` learns level l's labels minus the mean prediction of the levels below it at the same
frames. The top level's prediction is what the multi-fidelity environment evaluates, and it needs no oracle:
molecular dynamics runs on it as on any committee. A cheap label is worth buying because it teaches
``model_0`` everywhere the correction is smooth (GFN2-xTB under PBE: forces that correlate at 0.94).

Member m of the sum is a committee member as any other, so the top-level spread combines every level's
spread. A level with no labels yet contributes nothing (exactly zero), so with top-level labels only this is the
plain single-level committee. Every level uses the same registered model (``model``, ``model_kwargs``) on the
same representation, so invariance and exact forces hold as they do for that model.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from ase import Atoms

from alenv.descriptors.representation import Featurized, Representation


class MultiLevelPotential:
    """``n_levels`` committees summed level by level; follows ``alenv.models.base.Potential`` for the top
    level (``predict``, ``evaluate_atoms``, ``as_calculator``) and fits with :meth:`fit_levels`."""

    def __init__(self, representation: Representation, model: str, model_kwargs: dict[str, Any], n_levels: int,
                 seed: int = 0) -> None:
        if n_levels < 2:
            raise ValueError(f"a multi-level potential needs at least 2 levels, got {n_levels}")
        self.representation = representation
        self.model, self.model_kwargs, self.seed = model, dict(model_kwargs), int(seed)
        self.levels = [self._new(level, 0) for level in range(n_levels)]
        self.fitted = [False] * n_levels
        self.restarts = [0] * n_levels  # fits from scratch after the first, per level (they seed the new one)

    def _new(self, level: int, restart: int) -> Any:
        from alenv.models import make_potential

        return make_potential(self.model, self.representation, seed=self.seed + 7919 * level + 104729 * restart,
                              **self.model_kwargs)

    @property
    def n_members(self) -> int:
        return self.levels[0].n_members

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    def prepare(self, frames: Sequence[Atoms], jacobian: bool = True) -> Featurized:
        return self.levels[0].prepare(frames, jacobian=jacobian)

    # ----------------------------------------------------------------------------------- fit
    def fit_levels(
        self,
        data: Featurized,
        labels: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray] | None],
        rng: np.random.Generator,
        changed: Sequence[bool],
    ) -> dict[str, Any]:
        """Fit the levels whose labels changed (warm where the model warm-starts), and every level above one
        that changed: their targets moved, so each gets a new committee fitted from scratch (seeded from the
        potential's seed, its level and how many restarts it had: deterministic).

        A correction learns its labels minus the *mean* of the levels below, so at frames with top labels the
        lower levels' disagreement stays in the top-level spread: the spread there is an upper estimate.

        ``labels[l]``: energies (K,) eV, forces eV/Angstrom and rows ``idx`` (K,) of ``data`` labelled at
        level l, or None where the level has no labels. Returns the levels fitted.
        """
        if len(labels) != self.n_levels or len(changed) != self.n_levels:
            raise ValueError(f"need labels and changed flags for each of the {self.n_levels} levels")
        refit, moved = [], False
        for level, part in enumerate(labels):
            shifted = moved  # a level below changed: this level's targets moved, by up to its whole offset
            moved = moved or bool(changed[level])
            if part is None or not moved:
                continue
            E, F, idx = part
            E, F = np.asarray(E, dtype=np.float64), np.asarray(F, dtype=np.float64)
            if level > 0 and any(self.fitted[:level]):
                E0, F0 = self._predict(data, idx, upto=level - 1, forces=True)
                E, F = E - E0.mean(0), F - F0.mean(0)
            if shifted and self.fitted[level]:  # moved targets: a new committee, fitted from scratch (a warm fit
                # keeps the old energy baseline, and the correction's offset can be thousands of eV, PBE - xTB)
                self.restarts[level] += 1
                self.levels[level] = self._new(level, self.restarts[level])
            self.levels[level].fit(data, E, F, rng, idx=np.asarray(idx, dtype=np.int64))
            self.fitted[level] = True
            refit.append(level)
        return {"levels_fitted": refit}

    def fit(self, data: Featurized, energies: np.ndarray, forces: np.ndarray, rng: np.random.Generator,
            idx: np.ndarray | None = None, warm: bool | None = None) -> dict[str, Any]:
        """Fit top-level labels only (the levels below are kept as they are): ``Potential.fit`` for a refit
        on the top level's training set."""
        idx = np.arange(len(data)) if idx is None else np.asarray(idx, dtype=np.int64)
        labels: list = [None] * self.n_levels
        labels[-1] = (energies, forces, idx)
        return self.fit_levels(data, labels, rng, [False] * (self.n_levels - 1) + [True])

    # ----------------------------------------------------------------------------------- predict
    def _predict(self, data: Featurized, idx: np.ndarray | None, upto: int, forces: bool
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        E_sum, F_sum = None, None
        for level in range(upto + 1):
            if not self.fitted[level]:
                continue
            E, F = self.levels[level].predict(data, forces=forces, idx=idx)
            E_sum = E if E_sum is None else E_sum + E
            if forces:
                F_sum = F if F_sum is None else F_sum + F
        if E_sum is None:  # nothing fitted up to this level: exactly zero
            E, F = self.levels[0].predict(data, forces=forces, idx=idx)
            return np.zeros_like(E), (np.zeros_like(F) if forces else None)
        return E_sum, F_sum

    def predict_level(self, data: Featurized, level: int, forces: bool = True, idx: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-member prediction of level ``level`` (the sum of the levels up to it), as ``predict``."""
        if not 0 <= level < self.n_levels:
            raise ValueError(f"level must be in [0, {self.n_levels}), got {level}")
        return self._predict(data, idx, level, forces)

    def predict(self, data: Featurized, forces: bool = True, chunk: int = 1000, idx: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-member top-level energies (M, F) eV and forces eV/Angstrom (layout as the level models')."""
        return self._predict(data, idx, self.n_levels - 1, forces)

    def evaluate_atoms(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
        """Top-level member energies (M,) and forces (M, n, 3) of one structure (molecular dynamics)."""
        E_sum, F_sum = None, None
        for level, model in enumerate(self.levels):
            if not self.fitted[level]:
                continue
            E, F = model.evaluate_atoms(atoms)
            E_sum = E if E_sum is None else E_sum + E
            F_sum = F if F_sum is None else F_sum + F
        if E_sum is None:
            raise RuntimeError("no level of this potential is fitted yet")
        return E_sum, F_sum

    def as_calculator(self) -> Any:
        from alenv.models.calculator import EnsembleCalculator

        return EnsembleCalculator(self)
