"""Errors of a potential's predictions against reference labels, and torsion-space coverage of sampled frames."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from alenv import keys, ragged
from alenv.types import Metrics


def errors(
    pred_energy: np.ndarray,
    pred_forces: np.ndarray,
    energy: np.ndarray,
    forces: np.ndarray,
    has_forces: np.ndarray | None = None,
    ptr: np.ndarray | None = None,
) -> Metrics:
    """Errors of ensemble-mean predictions against reference labels (keys and units in ``keys.METRICS``).

    ``pred_*`` are the ensemble-mean predictions, (F,) eV and (F, n, 3) eV/Angstrom, aligned with the
    references. ``has_forces`` (F,) bool marks the frames whose reference forces exist (None: all of them);
    energy errors count every frame, force errors only those frames (NaN where there are none), so a set
    may hold energy-only frames (bond scans, normal-mode paths). Force tails are percentiles (numpy's linear
    interpolation) and the maximum of the per-atom error norm |F_pred - F_ref| over all atoms of those frames.
    The centred energy errors remove the mean signed error first: the offset-invariant measure used for
    condensed phases, where a constant shift of the energy zero is no error of the potential.

    Frames of several sizes (the flat layout) give forces (A, 3), their atoms concatenated, with the
    pointer ``ptr`` (F + 1,) (``alenv.ragged``); force errors then count every atom of the frames with
    forces, as for frames of one size.
    """
    if ptr is not None:
        return _errors_flat(pred_energy, pred_forces, energy, forces, has_forces, ptr)
    energy, forces = np.asarray(energy, dtype=np.float64), np.asarray(forces, dtype=np.float64)
    if pred_energy.shape != energy.shape or pred_forces.shape != forces.shape:
        raise ValueError(f"prediction shapes {pred_energy.shape}, {pred_forces.shape} != {energy.shape}, {forces.shape}")
    if len(energy) == 0:
        raise ValueError("errors need at least one reference frame")
    mask = np.ones(len(energy), dtype=bool) if has_forces is None else np.asarray(has_forces, dtype=bool)
    if mask.shape != energy.shape:
        raise ValueError(f"has_forces has shape {mask.shape}, the references {energy.shape}")
    if not np.all(np.isfinite(energy)) or not np.all(np.isfinite(forces[mask])):
        raise ValueError("reference energies (every frame) and forces (frames with forces) must be finite")
    out = _energy_metrics(pred_energy - energy, int(mask.sum()))
    if mask.any():
        df = pred_forces[mask] - forces[mask]
        _force_errors(out, df)
    return out


def _energy_metrics(de: np.ndarray, n_force_frames: int) -> Metrics:
    """Energy errors from the per-frame errors ``de`` (eV), with the offset-invariant ones; forces unset."""
    dc = de - de.mean()
    return Metrics(
        energy_mae=float(np.abs(de).mean()),
        energy_rmse=float(np.sqrt((de**2).mean())),
        force_mae=float("nan"),
        force_rmse=float("nan"),
        energy_mae_centred=float(np.abs(dc).mean()),
        energy_rmse_centred=float(np.sqrt((dc**2).mean())),
        n_energy_frames=int(len(de)),
        n_force_frames=n_force_frames,
    )


def _force_errors(out: Metrics, df: np.ndarray) -> None:
    """Force errors of ``out`` from the prediction errors ``df`` (..., 3) of every atom that counts."""
    norms = np.linalg.norm(df, axis=-1).ravel()  # per atom, eV/Angstrom
    out.force_mae = float(np.abs(df).mean())
    out.force_rmse = float(np.sqrt((df**2).mean()))
    out.force_max = float(norms.max())
    out.force_norm_p95, out.force_norm_p99 = (float(v) for v in np.percentile(norms, [95.0, 99.0]))


def _errors_flat(
    pred_energy: np.ndarray,
    pred_forces: np.ndarray,
    energy: np.ndarray,
    forces: np.ndarray,
    has_forces: np.ndarray | None,
    ptr: np.ndarray,
) -> Metrics:
    """``errors`` of ragged frames: forces (A, 3) with the atom pointer ``ptr`` (F + 1,)."""
    energy, forces = np.asarray(energy, dtype=np.float64), np.asarray(forces, dtype=np.float64)
    pred_energy, pred_forces = np.asarray(pred_energy), np.asarray(pred_forces)
    if pred_energy.shape != energy.shape or pred_forces.shape != forces.shape or forces.ndim != 2:
        raise ValueError(f"prediction shapes {pred_energy.shape}, {pred_forces.shape} != {energy.shape}, {forces.shape}")
    if len(energy) == 0:
        raise ValueError("errors need at least one reference frame")
    ptr = ragged.check_ptr(ptr, len(forces))
    if len(ptr) - 1 != len(energy):
        raise ValueError(f"the atom pointer has {len(ptr) - 1} frames, the references {len(energy)}")
    mask = np.ones(len(energy), dtype=bool) if has_forces is None else np.asarray(has_forces, dtype=bool)
    if mask.shape != energy.shape:
        raise ValueError(f"has_forces has shape {mask.shape}, the references {energy.shape}")
    atoms = ragged.per_atom(mask, ptr)
    if not np.all(np.isfinite(energy)) or not np.all(np.isfinite(forces[atoms])):
        raise ValueError("reference energies (every frame) and forces (frames with forces) must be finite")
    out = _energy_metrics(pred_energy - energy, int(mask.sum()))
    if mask.any():
        _force_errors(out, pred_forces[atoms] - forces[atoms])
    return out


def subset_errors(
    pred_energy: np.ndarray,
    pred_forces: np.ndarray,
    energy: np.ndarray,
    forces: np.ndarray,
    has_forces: np.ndarray,
    subsets: Sequence[str | None],
    ptr: np.ndarray | None = None,
) -> dict[str, float]:
    """``errors`` of each subset of frames, keyed ``keys.per_subset(metric, subset)`` (``force_mae[T=300K]``).

    ``subsets`` (F,) names each frame's subset (``alenv.data.subset_of``); frames with None belong to none.
    Subsets appear in sorted order. Ragged frames: forces (A, 3) with the atom pointer ``ptr``.
    """
    if len(subsets) != len(energy):
        raise ValueError(f"{len(subsets)} subset labels for {len(energy)} frames")
    has_forces = np.asarray(has_forces, dtype=bool)
    out: dict[str, float] = {}
    for name in sorted({s for s in subsets if s is not None}):
        rows = np.array([i for i, s in enumerate(subsets) if s == name])
        if ptr is None:
            m = errors(pred_energy[rows], pred_forces[rows], energy[rows], forces[rows], has_forces[rows])
        else:
            atoms = ragged.rows(np.asarray(ptr, dtype=np.int64), rows)
            sub_ptr = ragged.ptr_of(np.diff(np.asarray(ptr))[rows])
            m = errors(pred_energy[rows], pred_forces[atoms], energy[rows], forces[atoms], has_forces[rows], sub_ptr)
        out.update({keys.per_subset(k, name): v for k, v in m.as_dict().items()})
    return out


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


def torsion_distance(reference: np.ndarray, sampled: np.ndarray) -> np.ndarray:
    """Distance in degrees (F,) from each ``reference`` frame's torsions (F, T) to the nearest ``sampled``
    frame's (S, T): Euclidean over the torsions, each difference taken around the circle. A reference frame
    far from every sampled one lies where the labels do not reach (a model can only extrapolate there);
    inf for every frame when nothing was sampled."""
    reference, sampled = np.asarray(reference, dtype=float), np.asarray(sampled, dtype=float)
    if len(sampled) == 0:
        return np.full(len(reference), np.inf)
    d = np.abs(reference[:, None, :] - sampled[None, :, :]) % 360.0
    d = np.minimum(d, 360.0 - d)
    return np.sqrt((d**2).sum(-1)).min(1)


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
