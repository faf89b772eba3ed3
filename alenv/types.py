"""Dataclasses passed between the stages of the active-learning loop.

Units everywhere: eV, Angstrom, eV/Angstrom, seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Label:
    """The oracle's answer for one configuration.

    A failed calculation is still a Label (``error`` set, ``energy`` NaN, ``forces`` NaN) because it
    was paid for: it is charged to the budget and kept in the cache, but never used for training.
    """

    energy: float  # eV, total energy of the configuration; NaN when failed
    forces: np.ndarray  # (n_atoms, 3) eV/Angstrom; NaN when failed
    seconds: float  # wall seconds the oracle spent (the original cost, also for cache hits)
    error: str | None = None  # None on success, else a one-line reason
    cached: bool = False  # True when served from the label cache

    @property
    def failed(self) -> bool:
        return self.error is not None

    @staticmethod
    def of(atoms: Any) -> "Label":
        """The label an ``ase.Atoms`` carries in its calculator (task data, labelled files)."""
        return Label(
            energy=float(atoms.get_potential_energy()),
            forces=np.array(atoms.get_forces(), dtype=np.float64),
            seconds=float(atoms.info.get("oracle_seconds", 0.0)),
        )

    @staticmethod
    def failure(n_atoms: int, seconds: float, error: str) -> "Label":
        """A failed label with NaN energy and forces."""
        return Label(
            energy=float("nan"),
            forces=np.full((n_atoms, 3), np.nan),
            seconds=float(seconds),
            error=error,
        )


@dataclass
class Metrics:
    """Errors of a potential on a labelled test set, with costs so far."""

    energy_mae: float  # eV per structure
    energy_rmse: float  # eV per structure
    force_mae: float  # eV/Angstrom per component
    force_rmse: float  # eV/Angstrom per component
    force_max: float = float("nan")  # largest absolute force-component error, eV/Angstrom

    def as_dict(self) -> dict[str, float]:
        d = {
            "energy_mae": self.energy_mae,
            "energy_rmse": self.energy_rmse,
            "force_mae": self.force_mae,
            "force_rmse": self.force_rmse,
            "force_max": self.force_max,
        }
        return d
