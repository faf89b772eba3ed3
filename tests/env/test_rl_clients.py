"""The environment with the RL clients users bring: Gymnasium's checker and vector envs, SB3, sb3-contrib."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import alenv  # noqa: F401  (registers the tasks)
from alenv.wrappers import SinglePick, action_masks

POOL, OTF = "alenv/Ethanol-GFN2-tiny-v3", "alenv/Ethanol-GFN2-OTF-tiny-v3"


def test_render_mode_keyword_is_accepted(alenv_cache):
    """RL tooling passes render_mode to every env (SB3's make_vec_env: "rgb_array"); nothing renders."""
    for mode in (None, "rgb_array"):
        env = gym.make(POOL, cache_dir=alenv_cache, render_mode=mode)
        assert env.unwrapped.render_mode == mode
        env.reset(seed=0)
        assert env.unwrapped.render() is None


def test_default_construction_has_no_wall_times(alenv_cache):
    """No keyword but the cache: wall-clock timings are opt-in, so two same-seed rollouts match (check_env
    runs every task with ``wall_times=False``, the default checked here, in test_env_contract)."""
    env = gym.make(POOL, cache_dir=alenv_cache)
    assert env.unwrapped.wall_times is False
    _, info = env.reset(seed=0)
    assert "timings" not in info and "train_seconds" not in info["metrics"]


@pytest.mark.slow  # the same check_env as test_env_contract's, built without make_env
@pytest.mark.parametrize("env_id", [POOL, OTF])
def test_default_construction_passes_check_env(env_id, alenv_cache, check_env_clean):
    """No keyword but the cache: wall-clock timings are opt-in, so two same-seed rollouts match."""
    env = gym.make(env_id, cache_dir=alenv_cache)
    check_env_clean(env)
    _, info = env.reset(seed=0)
    assert "timings" not in info and "train_seconds" not in info["metrics"]


def test_single_pick_masks_before_reset(alenv_cache):
    for env_id, n_extra in ((POOL, 0), (OTF, 1)):
        env = SinglePick(gym.make(env_id, cache_dir=alenv_cache))
        mask = env.action_masks()
        assert mask.dtype == bool and mask.all() and len(mask) == env.action_space.n == env.n + n_extra
        with pytest.raises(RuntimeError, match="reset"):
            env.step(0)


def test_masks_reach_through_outer_wrappers(alenv_cache):
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported

    inner = SinglePick(gym.make(POOL, cache_dir=alenv_cache))
    outer = gym.wrappers.RecordEpisodeStatistics(gym.wrappers.TimeLimit(inner, max_episode_steps=100))
    outer.reset(seed=0)
    first = int(np.flatnonzero(inner.action_masks())[0])
    outer.step(first)
    assert not action_masks(outer)[first]
    np.testing.assert_array_equal(action_masks(outer), inner.action_masks())
    assert is_masking_supported(outer)
    np.testing.assert_array_equal(get_action_masks(outer), inner.action_masks())


@pytest.mark.parametrize("env_id", [POOL, OTF])
def test_gymnasium_sync_vector_env(env_id, alenv_cache):
    """Infos of different lengths per copy (on-the-fly: a different number of picks each) stack fine."""
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(env_id, cache_dir=alenv_cache)] * 2)
    obs, info = envs.reset(seed=[0, 1])
    assert obs["mask"].shape[0] == 2
    for _ in range(2):
        actions = []
        for i in range(2):
            mask = obs["mask"][i]
            k = int(info["max_picks"][i])
            picks = np.flatnonzero(mask)[: (k if i == 0 else max(k - 2, 0))]
            if env_id == OTF:
                a = np.zeros(len(mask), dtype=np.int8)
                a[picks] = 1
            else:
                a = np.flatnonzero(mask)[:k]
            actions.append(a)
        obs, reward, terminated, truncated, info = envs.step(np.stack(actions))
        assert reward.shape == (2,)
    envs.close()


def test_gymnasium_async_vector_env_forkserver(alenv_cache):
    """Separate processes (forkserver: xTB must not be forked after it ran), one step each. A fresh
    process has not imported alenv: the ``alenv:`` prefix makes ``gym.make`` import it."""
    envs = gym.vector.AsyncVectorEnv(
        [lambda: gym.make("alenv:" + OTF, cache_dir=alenv_cache)] * 2, context="forkserver", shared_memory=False
    )
    try:
        obs, info = envs.reset(seed=[0, 1])
        actions = np.zeros((2, obs["mask"].shape[1]), dtype=np.int8)
        actions[0, np.flatnonzero(obs["mask"][0])[:2]] = 1
        obs, reward, terminated, truncated, info = envs.step(actions)
        assert reward.shape == (2,) and list(info["metrics"]["n_labels"]) == [7, 5]
    finally:
        envs.close()


def test_maskable_ppo_on_sb3_vector_envs(alenv_cache):
    """sb3-contrib's MaskablePPO through SB3's make_vec_env by id, in subprocesses, for a few updates
    (``alenv:`` prefix: the workers import alenv to find the id)."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    venv = make_vec_env(
        "alenv:" + POOL, n_envs=2, seed=0, env_kwargs={"cache_dir": str(alenv_cache)}, wrapper_class=SinglePick,
        vec_env_cls=SubprocVecEnv, vec_env_kwargs={"start_method": "forkserver"},
    )
    try:
        model = MaskablePPO("MultiInputPolicy", venv, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
        model.learn(total_timesteps=32)
        masks = np.stack(venv.env_method("action_masks"))
        assert masks.shape == (2, venv.action_space.n) and masks.any(axis=1).all()
    finally:
        venv.close()
