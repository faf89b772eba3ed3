"""``alenv.metrics.errors`` and ``subset_errors`` on small synthetic sets whose answers are known by hand:
force tails of the per-atom error norm, offset-invariant energy errors, energy-only frames, subsets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alenv import keys
from alenv.metrics import errors, subset_errors


def _norm_ladder() -> tuple[np.ndarray, np.ndarray]:
    """Two frames of 50 atoms whose per-atom force errors have norms 1, 2, ..., 100 eV/Angstrom, each along
    (0.6, 0, 0.8): predictions and references (F, n, 3)."""
    k = np.arange(1, 101, dtype=float)
    err = np.stack([0.6 * k, np.zeros_like(k), 0.8 * k], axis=1).reshape(2, 50, 3)
    ref = np.random.default_rng(0).normal(size=(2, 50, 3))
    return ref + err, ref


def test_force_tails_are_percentiles_of_the_per_atom_error_norm():
    pred_f, ref_f = _norm_ladder()
    m = errors(np.zeros(2), pred_f, np.zeros(2), ref_f)
    # linear interpolation between order statistics: position 0.95 * 99 = 94.05 -> 95 + 0.05
    assert m.force_norm_p95 == pytest.approx(95.05, rel=1e-12)
    assert m.force_norm_p99 == pytest.approx(99.01, rel=1e-12)
    assert m.force_max == pytest.approx(100.0, rel=1e-12)  # the largest norm, not the largest component (80)
    assert m.force_mae == pytest.approx((0.6 + 0.8) * 50.5 / 3, rel=1e-12)
    assert m.force_rmse == pytest.approx(math.sqrt(3383.5 / 3), rel=1e-12)  # mean of k^2 over 1..100 is 3383.5
    assert (m.n_energy_frames, m.n_force_frames) == (2, 2)


def test_centred_energy_errors_remove_the_mean_offset():
    ref = np.array([-10.0, -11.0, -12.0, -13.0])
    m = errors(ref + np.array([1.0, 2.0, 3.0, 6.0]), np.zeros((4, 2, 3)), ref, np.zeros((4, 2, 3)))
    assert (m.energy_mae, m.energy_rmse) == pytest.approx((3.0, math.sqrt(12.5)))
    # signed errors 1, 2, 3, 6 have mean 3: centred -2, -1, 0, 3
    assert (m.energy_mae_centred, m.energy_rmse_centred) == pytest.approx((1.5, math.sqrt(3.5)))
    shifted = errors(ref + 7.0, np.zeros((4, 2, 3)), ref, np.zeros((4, 2, 3)))
    assert shifted.energy_mae == pytest.approx(7.0)
    assert shifted.energy_mae_centred == pytest.approx(0.0, abs=1e-12) and shifted.energy_rmse_centred == pytest.approx(0.0, abs=1e-12)


def test_energy_only_frames_count_in_energy_errors_only():
    pred_f, ref_f = _norm_ladder()
    ref_e = np.array([-5.0, -6.0, -7.0])
    pred_e = ref_e + np.array([0.5, -0.5, 2.0])
    # a third frame without reference forces: NaN forces and a wild force prediction that must not count
    F = np.concatenate([ref_f, np.full((1, 50, 3), np.nan)])
    P = np.concatenate([pred_f, np.full((1, 50, 3), 1e6)])
    m = errors(pred_e, P, ref_e, F, has_forces=np.array([True, True, False]))
    only_forces = errors(pred_e[:2], pred_f, ref_e[:2], ref_f)
    assert m.energy_mae == pytest.approx(1.0) and m.n_energy_frames == 3  # |0.5|, |-0.5|, |2.0| over 3 frames
    assert m.n_force_frames == 2
    for key in (keys.FORCE_MAE, keys.FORCE_RMSE, keys.FORCE_MAX, keys.FORCE_NORM_P95, keys.FORCE_NORM_P99):
        assert getattr(m, key) == getattr(only_forces, key), key
    none = errors(pred_e, P, ref_e, np.full((3, 50, 3), np.nan), has_forces=np.zeros(3, dtype=bool))
    assert none.n_force_frames == 0 and none.energy_mae == pytest.approx(1.0)
    assert all(math.isnan(getattr(none, k)) for k in (keys.FORCE_MAE, keys.FORCE_RMSE, keys.FORCE_MAX,
                                                      keys.FORCE_NORM_P95, keys.FORCE_NORM_P99))
    with pytest.raises(ValueError, match="must be finite"):  # a frame said to have forces must have them
        errors(pred_e, P, ref_e, F, has_forces=np.ones(3, dtype=bool))


def test_metrics_dict_has_every_test_metric_key():
    pred_f, ref_f = _norm_ladder()
    d = errors(np.zeros(2), pred_f, np.zeros(2), ref_f).as_dict()
    assert tuple(d) == keys.TEST_METRICS
    assert set(keys.TEST_METRICS) <= set(keys.METRICS)  # every one documented with its unit


def test_subset_errors_are_the_errors_of_each_subset():
    pred_f, ref_f = _norm_ladder()
    pred_f = np.concatenate([pred_f, pred_f[:1] + 1.0, pred_f[:1]])
    ref_f = np.concatenate([ref_f, ref_f[:1], np.full((1, 50, 3), np.nan)])
    ref_e = np.array([-1.0, -2.0, -3.0, -4.0])
    pred_e = ref_e + np.array([0.1, 0.2, 0.4, -0.8])
    has = np.array([True, True, True, False])
    tags = ["T=300K", None, "T=300K", "scan"]  # frame 1 is in no subset
    out = subset_errors(pred_e, pred_f, ref_e, ref_f, has, tags)
    assert set(out) == {keys.per_subset(k, s) for k in keys.TEST_METRICS for s in ("T=300K", "scan")}
    hot = errors(pred_e[[0, 2]], pred_f[[0, 2]], ref_e[[0, 2]], ref_f[[0, 2]])
    assert out["force_mae[T=300K]"] == hot.force_mae and out["energy_mae[T=300K]"] == pytest.approx(0.25)
    assert out["n_force_frames[T=300K]"] == 2 and out["force_max[T=300K]"] == hot.force_max
    assert out["energy_mae[scan]"] == pytest.approx(0.8) and out["energy_mae_centred[scan]"] == 0.0
    assert out["n_force_frames[scan]"] == 0 and math.isnan(out["force_mae[scan]"])
    with pytest.raises(ValueError, match="subset labels"):
        subset_errors(pred_e, pred_f, ref_e, ref_f, has, tags[:3])
