"""On-the-fly mode: the stability-weighted reward and the schedule of the stability test (public API only)."""

from __future__ import annotations

import math

import numpy as np
import pytest

OTF = "alenv/Ethanol-GFN2-OTF-tiny-v3"


def _picks(seed: int, k: int):
    """Policy: label up to ``k`` uniformly random unmasked candidates (seeded)."""
    rng = np.random.default_rng([seed, 1])

    def policy(obs: dict, info: dict) -> np.ndarray:
        avail = np.flatnonzero(obs["mask"])
        action = np.zeros(len(obs["mask"]), dtype=np.int8)
        action[rng.choice(avail, size=min(k, info["max_picks"], len(avail)), replace=False)] = 1
        return action

    return policy


def _same(a: dict, b: dict) -> bool:
    """Equal metrics, NaN equal to NaN (md_survived after the last round)."""
    if a.keys() != b.keys():
        return False
    return all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def test_stability_weight_adds_the_surviving_fraction(make_env):
    """reward(w) - reward(0) = w * md_survived / steps_per_round after every round that runs MD, and 0 after
    the last round (no MD follows it); nothing else changes."""
    w = 0.7
    plain = make_env(OTF, otf={"stability_steps": 0})
    weighted = make_env(OTF, otf={"stability_steps": 0, "stability_weight": w})
    steps_per_round = weighted.unwrapped.task.otf.steps_per_round
    obs, info = plain.reset(seed=2)
    obs_w, info_w = weighted.reset(seed=2)
    assert info_w["metrics"] == info["metrics"]
    policy = _picks(2, 3)
    fractions = []
    terminated = False
    while not terminated:
        action = policy(obs, info)
        obs, reward, terminated, _, info = plain.step(action)
        obs_w, reward_w, terminated_w, _, info_w = weighted.step(action)
        m = info_w["metrics"]
        assert terminated_w == terminated and _same(m, info["metrics"])
        for key in obs:
            np.testing.assert_array_equal(obs_w[key], obs[key])
        if terminated:
            assert math.isnan(m["md_survived"]) and reward_w == reward
        else:
            fraction = m["md_survived"] / steps_per_round
            assert 0 <= fraction <= 1
            assert reward_w - reward == pytest.approx(w * fraction, rel=1e-9, abs=1e-12)
            fractions.append(fraction)
    assert len(fractions) >= 3 and min(fractions) < 1  # some walker failed: the term is not a constant


def test_stability_is_measured_on_schedule(make_env):
    """With ``stability_every=2`` the stability test runs at reset, after rounds 2 and 4, and at the end
    (round 5, off the schedule); in between the last result is reported unchanged. No labels are taken, so
    the model is fixed and a fresh test differs from the last one only by its random velocities: 4 starts,
    each surviving a number of steps up to 200, make a repeat of the same mean and minimum unlikely."""
    env = make_env(OTF, otf={"stability_every": 2, "stability_starts": 4, "md_step_budget": 400})
    obs, info = env.reset(seed=0)
    rows = [info["metrics"]]
    terminated = False
    while not terminated:
        obs, _, terminated, _, info = env.step(np.zeros(len(obs["mask"]), dtype=np.int8))
        rows.append(info["metrics"])
    assert len(rows) == 6  # reset and rounds 1-5: 400 MD steps at 80 per round
    cap = env.unwrapped.task.otf.stability_steps
    result = [(m["stability_steps"], m["stability_min"]) for m in rows]
    assert all(0 <= least <= mean <= cap for mean, least in result)
    measured = [r for r in range(1, len(rows)) if result[r] != result[r - 1]]
    assert measured == [2, 4, 5], result
