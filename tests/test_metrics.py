"""The metrics behind the reward, recomputed independently: the potential's ASE calculator on the
validation frames (what ``info["metrics"]`` and the reward use) and on the sealed test frames (what
``test_metrics()`` reports), errors by hand; and the error paths of ``alenv.metrics``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alenv.metrics import errors, torsion_coverage


def _by_hand(env, part: str = "validation") -> dict[str, float]:
    """Errors of the env's current potential on its validation (or test) frames, through its ASE
    calculator, one frame at a time."""
    u = env.unwrapped
    calc = u.potential.as_calculator()
    de, df = [], []
    for frame in getattr(u, f"{part}_frames"):
        atoms = frame.copy()  # without the reference labels' calculator
        atoms.calc = calc
        de.append(atoms.get_potential_energy() - frame.get_potential_energy())
        df.append(atoms.get_forces() - frame.get_forces())
    de, df = np.array(de), np.stack(df)
    return {
        "energy_mae": float(np.abs(de).mean()),
        "energy_rmse": float(np.sqrt((de**2).mean())),
        "force_mae": float(np.abs(df).mean()),
        "force_rmse": float(np.sqrt((df**2).mean())),
        "force_max": float(np.abs(df).max()),
    }


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
    _assert_close(u.test_metrics(), _by_hand(env, "test"))
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
    assert (m.energy_mae, m.energy_rmse, m.force_mae, m.force_max) == pytest.approx((2 / 3, math.sqrt(2 / 3), 0.5, 0.5))


def test_torsion_coverage_needs_reference_angles():
    with pytest.raises(ValueError, match="reference angles"):
        torsion_coverage(np.zeros((3, 2)), np.zeros((0, 2)))
    ref = np.array([[-170.0, 10.0], [100.0, 100.0]])
    assert torsion_coverage(np.zeros((0, 2)), ref) == 0.0
    assert torsion_coverage(ref[:1] + 1.0, ref) == 0.5  # one of the two cells visited
