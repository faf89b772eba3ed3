"""The single-pick wrapper: Discrete(N) actions with action_masks(), one batch per k picks."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from alenv.wrappers import SinglePick


def test_check_env_on_single_pick(make_env):
    check_env(SinglePick(make_env("alenv/Cu-EMT-tiny-v3")), skip_render_check=True)


def test_k_picks_make_one_round_equal_to_a_batch_step(make_env):
    env = make_env("alenv/Ethanol-GFN2-tiny-v3")
    wrapped = SinglePick(make_env("alenv/Ethanol-GFN2-tiny-v3"))
    k = env.unwrapped.task.batch_size
    obs_b, _ = env.reset(seed=4)
    obs, info = wrapped.reset(seed=4)
    np.testing.assert_array_equal(obs["candidates"], obs_b["candidates"])
    picks = [7, 3, 11, 40, 22][:k]
    for j, p in enumerate(picks[:-1]):
        obs, reward, terminated, truncated, info = wrapped.step(p)
        assert reward == 0.0 and not terminated and info["pending"] == picks[: j + 1]
        assert obs["mask"][picks[: j + 1]].sum() == 0
        assert not wrapped.action_masks()[p]
        with pytest.raises(ValueError, match="masked"):
            wrapped.step(p)  # the same candidate twice in one round
    obs, reward, terminated, truncated, info = wrapped.step(picks[-1])
    obs_b, reward_b, *_ , info_b = env.step(np.array(picks))
    assert reward == reward_b
    assert info["metrics"]["force_mae"] == info_b["metrics"]["force_mae"]
    np.testing.assert_array_equal(obs["mask"], obs_b["mask"])
    with pytest.raises(ValueError, match="masked"):
        wrapped.step(picks[0])  # labelled in the previous round
    with pytest.raises(ValueError, match="out of range"):
        wrapped.step(10_000)


def test_sampled_single_picks_finish_an_episode(make_env):
    wrapped = SinglePick(make_env("alenv/Cu-EMT-tiny-v3"))
    wrapped.reset(seed=0)
    wrapped.action_space.seed(0)
    steps, terminated = 0, False
    while not terminated:
        _, _, terminated, _, _ = wrapped.step(wrapped.action_space.sample())
        steps += 1
    u = wrapped.unwrapped
    assert steps == u.task.budget
