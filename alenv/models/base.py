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

**Optional: model features.** A potential may also offer ``features(data, idx=None) -> (F, P)`` float64
(``SupportsFeatures``): per-frame features in which every member's energy is linear at its last layer, so
that their dot product is the committee's last-layer kernel (a finite-width neural tangent kernel restricted
to the last layer). Feature-space selectors (LCMD, MaxDet on the model's kernel) read them through the
observation key ``model_features`` (``TaskSpec.model_features``). Callers check ``hasattr(potential,
"features")``: a model without the method still runs every other strategy.
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


@runtime_checkable
class SupportsFeatures(Protocol):
    """The optional part of a potential: per-frame model features (see the module docstring)."""

    def features(self, data: Featurized, idx: np.ndarray | None = None) -> np.ndarray:
        """Features (F, P) float64 of frames ``idx`` of ``data`` (default all), in either layout: for each
        member m, ``E_m(frame) = phi_m(frame) . theta_m + baseline(frame)`` with ``theta_m`` the member's
        last-layer parameters; members' blocks concatenated and scaled by ``1 / sqrt(M)``, so that
        ``features(a) . features(b)`` is the members' average last-layer kernel (members that share one
        feature map, as the ridge committee's do, return it once: the same kernel). Invariant to rotation,
        translation and permutation of like atoms, as the energies are."""
        ...
