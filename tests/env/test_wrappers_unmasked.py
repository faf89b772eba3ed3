"""RL without masks: SinglePick's penalty and nearest-candidate options for invalid picks, and the
within-round scaling of candidate features."""

from __future__ import annotations

import numpy as np
import pytest

from alenv.wrappers import ScaledCandidates, SinglePick


def test_penalty_makes_an_invalid_pick_a_no_op_with_a_negative_reward(cu_tiny_env):
    env = SinglePick(cu_tiny_env, invalid="penalty", penalty=-0.5)
    obs, info = env.reset(seed=0)
    n = len(obs["mask"])
    obs1, r, term, trunc, info1 = env.step(2)
    assert r == 0.0 and info1["invalid_pick"] is False and env.pending == [2]
    for bad in (2, n, -3):  # already pending, out of range
        obs2, r, term, trunc, info2 = env.step(bad)
        assert (r, term, trunc, info2["invalid_pick"]) == (-0.5, False, False, True)
        assert env.pending == [2]
        for key in obs1:
            np.testing.assert_array_equal(obs2[key], obs1[key])
    done, steps = False, 0
    while not done:  # the episode still ends normally with valid picks
        _, _, done, _, _ = env.step(int(np.flatnonzero(env.action_masks())[0]))
        steps += 1
    assert steps > 0


def test_nearest_replaces_an_invalid_pick_by_the_closest_allowed_candidate(cu_tiny_env):
    env = SinglePick(cu_tiny_env, invalid="nearest")
    obs, info = env.reset(seed=0)
    env.step(5)
    allowed = np.flatnonzero(env.action_masks())
    emb = obs["embedding"].astype(np.float64)
    expected = allowed[np.argmin(np.linalg.norm(emb[allowed] - emb[5], axis=1))]
    _, r, _, _, info = env.step(5)  # 5 is pending: the nearest allowed one is picked instead
    assert info["invalid_pick"] is True and env.pending == [5, int(expected)]
    lowest = int(np.flatnonzero(env.action_masks())[0])
    assert info["max_picks"] > 3
    _, _, _, _, info = env.step(10**6)  # out of range: the lowest allowed index
    assert info["invalid_pick"] is True and env.pending == [5, int(expected), lowest]


def test_bad_settings_are_refused(cu_tiny_env):
    with pytest.raises(ValueError, match="invalid must be one of"):
        SinglePick(cu_tiny_env, invalid="skip")
    with pytest.raises(ValueError, match="penalty must be finite"):
        SinglePick(cu_tiny_env, invalid="penalty", penalty=float("nan"))


def test_scaled_candidates_are_within_round_z_scores_of_logs(cu_tiny_env, check_env_clean):
    env = ScaledCandidates(cu_tiny_env)
    obs, info = env.reset(seed=0)
    raw = env.unwrapped._observe()["candidates"].astype(np.float64)
    live = obs["mask"].astype(bool)
    x = obs["candidates"][live].astype(np.float64)
    varying = raw[live].std(0) > 0
    np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x[:, varying].std(0), 1.0, rtol=1e-4)
    assert np.all(x[:, ~varying] == 0)
    # monotone in the raw value: the order of candidates by each spread is kept
    j = int(np.flatnonzero(varying)[0])
    assert np.array_equal(np.argsort(x[:, j], kind="stable"), np.argsort(raw[live][:, j], kind="stable"))
    assert obs["candidates"].dtype == np.float32 and env.observation_space["candidates"].contains(obs["candidates"])
    check_env_clean(ScaledCandidates(cu_tiny_env))
