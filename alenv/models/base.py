"""The ``Potential`` protocol: what the round engine, the samplers and the calculator need from a learner.

A potential is a committee of M members on a shared ``Representation``: it fits energies (eV) and forces
(eV/Angstrom) of featurised frames, predicts every member's energies and forces for featurised frames, and
evaluates single structures for molecular dynamics. The spread over members is the epistemic signal that
agents see.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
from ase import Atoms

from alenv.descriptors.representation import FeaturizedFrames, Representation


@runtime_checkable
class Potential(Protocol):
    """A committee of M members trained together on a shared representation."""

    representation: Representation

    @property
    def n_members(self) -> int:
        """M, the number of members (>= 2 where a spread is read)."""
        ...

    def prepare(self, frames: Sequence[Atoms], jacobian: bool = True) -> FeaturizedFrames:
        """Featurise frames once; ``jacobian`` is needed for forces."""
        ...

    def fit(
        self,
        data: FeaturizedFrames,
        energies: np.ndarray,
        forces: np.ndarray,
        rng: np.random.Generator,
        idx: np.ndarray | None = None,
        warm: bool | None = None,
    ) -> dict[str, Any]:
        """Train on the frames ``idx`` of ``data`` (default all) with labels (K,) eV and (K, n, 3) eV/Angstrom;
        later calls warm-start unless ``warm=False``. All randomness from ``rng``."""
        ...

    def predict(
        self, data: FeaturizedFrames, forces: bool = True, chunk: int = 1000, idx: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-member energies (M, F) eV and forces (M, F, n, 3) eV/Angstrom of frames ``idx`` of ``data``."""
        ...

    def evaluate_atoms(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
        """Per-member energy (M,) eV and forces (M, n, 3) eV/Angstrom of one structure."""
        ...

    def as_calculator(self) -> Any:
        """The committee as an ASE calculator: mean energy and forces, ``energy_std``, ``forces_std``."""
        ...
