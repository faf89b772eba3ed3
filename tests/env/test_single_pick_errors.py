"""SinglePick's documented errors: a pick is one integer index of an allowed candidate, after reset; a
rejected pick changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from alenv.wrappers import SinglePick


def test_step_before_reset_raises(cu_tiny_env):
    env = SinglePick(cu_tiny_env)
    assert env.action_masks().all()  # before reset every action is shown as allowed ...
    with pytest.raises(RuntimeError, match=r"call reset\(\) before step\(\)"):
        env.step(0)  # ... but none can be stepped


@pytest.mark.parametrize("action", [1.0, 2.5, np.float32(3.0), True, np.array([1, 2]), "5", None])
def test_a_pick_is_one_integer(cu_tiny_env, action):
    env = SinglePick(cu_tiny_env)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="one integer index"):
        env.step(action)
    assert env.pending == []


def test_out_of_range_and_masked_picks(cu_tiny_env):
    env = SinglePick(cu_tiny_env)
    obs, info = env.reset(seed=0)
    n, k = len(obs["mask"]), info["max_picks"]
    for bad in (n, -1, 10**6):
        with pytest.raises(ValueError, match=rf"candidate {bad} is out of range \[0, {n}\)"):
            env.step(bad)
    env.step(np.int64(3))
    with pytest.raises(ValueError, match="candidate 3 is masked"):
        env.step(3)  # already pending this round
    assert env.pending == [3]
    for i in range(4, 3 + k):  # complete the round: candidate 3 is now labelled
        obs, _, _, _, info = env.step(i)
    assert info["pending"] == [] and info["metrics"]["budget_used"] == k and obs["mask"][3] == 0
    with pytest.raises(ValueError, match="candidate 3 is masked"):
        env.step(3)
    assert not env.action_masks()[3]


def test_no_pick_after_the_episode_ended(ethanol_tiny_env):
    """Once the wrapped episode terminates, every pick is refused until reset (none is silently queued)."""
    from alenv.wrappers import SinglePick

    env = SinglePick(ethanol_tiny_env)
    env.reset(seed=0)
    terminated = False
    while not terminated:
        _, _, terminated, _, _ = env.step(int(np.flatnonzero(env.action_masks())[0]))
    assert not env.action_masks().any()
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step(int(np.flatnonzero(ethanol_tiny_env.unwrapped.mask)[0]))
    env.reset(seed=0)
    assert env.action_masks().any()
