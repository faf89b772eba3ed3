"""The ``Potential`` protocol: what the round engine, the samplers and the calculator need from a learner.

A potential is a committee of M members on a shared ``Representation``: it fits energies (eV) and forces
(eV/Angstrom) of featurised frames, predicts every member's energies and forces for featurised frames, and
evaluates single structures for molecular dynamics. The spread over members is the epistemic signal that
agents see.

Featurised frames come in two layouts (``data.layout``), and a potential serves both:

- ``"dense"`` (``FeaturizedFrames``): frames of one size n, descriptors (F, n, D) and their Jacobians;
  force labels and predictions are (K, n, 3) and (M, F, n, 3).
- ``"flat"`` (``alenv.descriptors.flat.FlatFrames``): frames of any sizes, their atoms concatenated (frame f
  owns atom rows ``data.atom_ptr()[f]:data.atom_ptr()[f + 1]``); force labels are (sum n_f, 3) in label
  order and predictions (M, A, 3) with ``data.atom_ptr(idx)``. Per-atom energies divide by each frame's own
  atom count. Forces come from differentiating the descriptors (no Jacobian is stored).

``check_potential`` (``alenv.models.conformance``) checks a model in both layouts.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
from ase import Atoms

from alenv.descriptors.representation import Featurized, Representation


@runtime_checkable
class Potential(Protocol):
    """A committee of M members trained together on a shared representation."""

    representation: Representation

    @property
    def n_members(self) -> int:
        """M, the number of members (>= 2 where a spread is read)."""
        ...

    def prepare(self, frames: Sequence[Atoms], jacobian: bool = True) -> Featurized:
        """Featurise frames once, in the representation's layout; ``jacobian`` is needed for forces."""
        ...

    def fit(
        self,
        data: Featurized,
        energies: np.ndarray,
        forces: np.ndarray,
        rng: np.random.Generator,
        idx: np.ndarray | None = None,
        warm: bool | None = None,
    ) -> dict[str, Any]:
        """Train on the frames ``idx`` of ``data`` (default all) with labels (K,) eV and (K, n, 3) eV/Angstrom
        (flat: (sum n_f, 3)); later calls warm-start unless ``warm=False``. All randomness from ``rng``."""
        ...

    def predict(
        self, data: Featurized, forces: bool = True, chunk: int = 1000, idx: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-member energies (M, F) eV and forces (M, F, n, 3) eV/Angstrom of frames ``idx`` of ``data``
        (flat: (M, A, 3), atoms of frames ``idx`` concatenated)."""
        ...

    def evaluate_atoms(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
        """Per-member energy (M,) eV and forces (M, n, 3) eV/Angstrom of one structure."""
        ...

    def as_calculator(self) -> Any:
        """The committee as an ASE calculator: mean energy and forces, ``energy_std``, ``forces_std``."""
        ...
