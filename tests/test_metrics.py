"""The metrics behind the reward, recomputed independently: the potential's ASE calculator on the
validation frames (what ``info["metrics"]`` and the reward use) and on the sealed test frames (what
``test_metrics()`` reports), errors by hand; and the error paths of ``alenv.metrics``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alenv.metrics import errors, torsion_coverage


def _errors_by_hand(de: np.ndarray, df: np.ndarray) -> dict[str, float]:
    """Every error metric from energy errors (F,) and force errors (F, n, 3), written out the obvious way."""
    norms = np.sqrt((df**2).sum(-1)).ravel()  # per-atom force-error norms
    centred = de - de.mean()
    return {
        "energy_mae": float(np.abs(de).mean()),
        "energy_rmse": float(np.sqrt((de**2).mean())),
        "force_mae": float(np.abs(df).mean()),
        "force_rmse": float(np.sqrt((df**2).mean())),
        "force_max": float(norms.max()),
        "force_norm_p95": float(np.percentile(norms, 95)),
        "force_norm_p99": float(np.percentile(norms, 99)),
        "energy_mae_centred": float(np.abs(centred).mean()),
        "energy_rmse_centred": float(np.sqrt((centred**2).mean())),
        "n_energy_frames": len(de),
        "n_force_frames": len(df),
    }


def _by_hand(env, part: str = "validation") -> dict[str, float]:
    """Errors of the env's current potential on its validation (or test) frames, through its ASE
    calculator, one frame at a time; for the test set also per temperature (``force_mae[T=300K]``)."""
    u = env.unwrapped
    calc = u.potential.as_calculator()
    de, df, temps = [], [], []
    for frame in getattr(u, f"{part}_frames"):
        atoms = frame.copy()  # without the reference labels' calculator
        atoms.calc = calc
        de.append(atoms.get_potential_energy() - frame.get_potential_energy())
        df.append(atoms.get_forces() - frame.get_forces())
        temps.append(frame.info["temperature"])
    de, df, temps = np.array(de), np.stack(df), np.array(temps)
    out = _errors_by_hand(de, df)
    if part == "test":
        for t in np.unique(temps):
            rows = temps == t
            out.update({f"{k}[T={t:.0f}K]": v for k, v in _errors_by_hand(de[rows], df[rows]).items()})
    return out


def _assert_close(reported: dict, mine: dict) -> None:
    for key, value in mine.items():
        assert reported[key] == pytest.approx(value, rel=1e-5), key


def test_reported_metrics_and_reward_match_an_independent_computation(ethanol_tiny_env):
    env = ethanol_tiny_env
    u = env.unwrapped
    assert u.task.reward == "log_force_mae" and not u.task.reward_per_cost
    obs, info = env.reset(seed=7)
    before = _by_hand(env)
    _assert_close(info["metrics"], before)
    test, test_by_hand = u.test_metrics(), _by_hand(env, "test")
    _assert_close(test, test_by_hand)
    assert set(test) == set(test_by_hand)  # the overall errors and those of each temperature, nothing else
    subsets = {k[k.index("[") :] for k in test if "[" in k}
    assert subsets == {f"[T={t:.0f}K]" for t in u.task.temperatures}  # every temperature, nothing else
    assert not any("[" in k for k in info["metrics"])  # info keeps only the overall errors
    assert len(u.test_frames) == u.task.test_size and len(u.validation_frames) == u.task.validation_size
    obs, reward, _, _, info = env.step(np.flatnonzero(obs["mask"])[:: 7][: u.task.batch_size])
    after = _by_hand(env)
    _assert_close(info["metrics"], after)
    assert after["force_mae"] != before["force_mae"]  # the round changed the model
    assert reward == pytest.approx(math.log(before["force_mae"]) - math.log(after["force_mae"]), rel=1e-4)


def test_errors_reject_misaligned_predictions():
    E, F = np.zeros(3), np.zeros((3, 2, 3))
    with pytest.raises(ValueError, match="prediction shapes"):
        errors(np.zeros(2), np.zeros((2, 2, 3)), E, F)
    m = errors(np.array([1.0, -1.0, 0.0]), F + 0.5, E, F)
    # every component off by 0.5: the per-atom error norm is sqrt(3 * 0.25)
    assert (m.energy_mae, m.energy_rmse, m.force_mae, m.force_max) == pytest.approx(
        (2 / 3, math.sqrt(2 / 3), 0.5, math.sqrt(0.75))
    )


def test_torsion_coverage_needs_reference_angles():
    with pytest.raises(ValueError, match="reference angles"):
        torsion_coverage(np.zeros((3, 2)), np.zeros((0, 2)))
    ref = np.array([[-170.0, 10.0], [100.0, 100.0]])
    assert torsion_coverage(np.zeros((0, 2)), ref) == 0.0
    assert torsion_coverage(ref[:1] + 1.0, ref) == 0.5  # one of the two cells visited


def test_torsion_distance_wraps_around_the_circle_and_takes_the_nearest_sample():
    from alenv.metrics import torsion_distance

    sampled = np.array([[-170.0, 10.0], [60.0, 60.0]])
    reference = np.array([[175.0, 10.0], [60.0, 100.0], [0.0, -120.0]])
    d = torsion_distance(reference, sampled)
    # 175 and -170 are 15 degrees apart across +-180; the second frame is 40 degrees from (60, 60)
    np.testing.assert_allclose(d[:2], [15.0, 40.0])
    assert d[2] == pytest.approx(min(np.hypot(170.0, 130.0), np.hypot(60.0, 180.0)))
    assert np.isinf(torsion_distance(reference, np.zeros((0, 2)))).all()
