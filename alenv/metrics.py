"""Errors of a potential's predictions against reference labels, and torsion-space coverage of sampled frames."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

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


def dihedrals(frames: Sequence[Atoms], quads: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    """Dihedral angles (F, T) in degrees, in [-180, 180), of each frame for each atom quadruple."""
    out = np.empty((len(frames), len(quads)))
    for t, (a, b, c, d) in enumerate(quads):
        p = np.stack([f.positions[[a, b, c, d]] for f in frames]) if len(frames) else np.zeros((0, 4, 3))
        b0, b1, b2 = p[:, 0] - p[:, 1], p[:, 2] - p[:, 1], p[:, 3] - p[:, 2]
        b1n = b1 / np.linalg.norm(b1, axis=1, keepdims=True)
        v = b0 - (b0 * b1n).sum(1, keepdims=True) * b1n
        w = b2 - (b2 * b1n).sum(1, keepdims=True) * b1n
        x = (v * w).sum(1)
        y = (np.cross(b1n, v) * w).sum(1)
        out[:, t] = np.degrees(np.arctan2(y, x))
    return ((out + 180.0) % 360.0) - 180.0


def torsion_coverage(sampled: np.ndarray, reference: np.ndarray, bins: int = 12) -> float:
    """Fraction of the torsion-space cells visited by ``reference`` (F, T) degrees that ``sampled`` also
    visits; cells are ``bins`` equal slices of [-180, 180) per torsion. 0 when nothing was sampled."""
    if len(reference) == 0:
        raise ValueError("torsion coverage needs reference angles")

    def cells(angles: np.ndarray) -> set[tuple[int, ...]]:
        idx = np.floor((np.asarray(angles) + 180.0) / (360.0 / bins)).astype(int) % bins
        return {tuple(row) for row in idx}

    ref = cells(reference)
    return len(cells(sampled) & ref) / len(ref) if len(sampled) else 0.0
