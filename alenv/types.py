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

    A label from a noisy oracle (``alenv.oracles.NoisyOracle``) records the standard deviations of the
    noise it carries; the label cache stores clean labels only (the noise is added outside it), and an
    episode writes the sigmas with its labels (``noise_sigma``, ``energy_noise_sigma`` in each frame's info).
    """

    energy: float  # eV, total energy of the configuration; NaN when failed
    forces: np.ndarray  # (n_atoms, 3) eV/Angstrom; NaN when failed
    seconds: float  # wall seconds the oracle spent (the original cost, also for cache hits)
    error: str | None = None  # None on success, else a one-line reason
    cached: bool = False  # True when served from the label cache
    noise_sigma: float | None = None  # eV/Angstrom, std of the noise on each force component; None: not known
    energy_noise_sigma: float | None = None  # eV, std of the noise on the energy; None: not known

    @property
    def failed(self) -> bool:
        return self.error is not None

    @staticmethod
    def of(atoms: Any) -> "Label":
        """The label an ``ase.Atoms`` carries in its calculator (task data, labelled files)."""
        sigma, e_sigma = atoms.info.get("noise_sigma"), atoms.info.get("energy_noise_sigma")
        return Label(
            energy=float(atoms.get_potential_energy()),
            forces=np.array(atoms.get_forces(), dtype=np.float64),
            seconds=float(atoms.info.get("oracle_seconds", 0.0)),
            noise_sigma=None if sigma is None else float(sigma),
            energy_noise_sigma=None if e_sigma is None else float(e_sigma),
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
    """Errors of a potential's ensemble-mean prediction on a labelled set (``alenv.metrics.errors``).

    Field names are the metric keys of ``alenv.keys`` (units there). Energy errors count every frame, force
    errors only the frames that carry forces; a set without forces has NaN force errors.
    """

    energy_mae: float  # eV per structure
    energy_rmse: float  # eV per structure
    force_mae: float  # eV/Angstrom per component
    force_rmse: float  # eV/Angstrom per component
    force_max: float = float("nan")  # largest per-atom force-error norm |F_pred - F_ref|, eV/Angstrom
    force_norm_p95: float = float("nan")  # 95th percentile of the per-atom force-error norm, eV/Angstrom
    force_norm_p99: float = float("nan")  # 99th percentile of the per-atom force-error norm, eV/Angstrom
    energy_mae_centred: float = float("nan")  # energy MAE after removing the mean signed error, eV per structure
    energy_rmse_centred: float = float("nan")  # energy RMSE after removing the mean signed error, eV per structure
    n_energy_frames: int = 0  # frames the energy errors count
    n_force_frames: int = 0  # frames the force errors count

    def as_dict(self) -> dict[str, float]:
        """Every field by its metric key, in field order."""
        return dict(vars(self))
