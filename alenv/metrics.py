"""Errors of a potential's predictions against reference labels."""

from __future__ import annotations

import numpy as np

from alenv.types import Metrics


def errors(pred_energy: np.ndarray, pred_forces: np.ndarray, energy: np.ndarray, forces: np.ndarray) -> Metrics:
    """MAE/RMSE of energies (eV per structure) and force components (eV/Angstrom), and max force error.

    ``pred_*`` are the ensemble-mean predictions, (F,) and (F, n, 3), aligned with the references.
    """
    if pred_energy.shape != energy.shape or pred_forces.shape != forces.shape:
        raise ValueError(f"prediction shapes {pred_energy.shape}, {pred_forces.shape} != {energy.shape}, {forces.shape}")
    de = pred_energy - energy
    df = pred_forces - forces
    return Metrics(
        energy_mae=float(np.abs(de).mean()),
        energy_rmse=float(np.sqrt((de**2).mean())),
        force_mae=float(np.abs(df).mean()),
        force_rmse=float(np.sqrt((df**2).mean())),
        force_max=float(np.abs(df).max()),
    )
