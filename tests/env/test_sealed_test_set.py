"""The test set is sealed: perturbing its labels changes nothing an agent sees, only test_metrics()."""

from __future__ import annotations

import ase.io
import gymnasium as gym
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

import alenv  # noqa: F401
from alenv.datasets import rmd17
from agents import make_agent

SMALL = {"pool_size": 40, "test_size": 20, "validation_size": 20, "budget": 10, "batch_size": 5, "reserve_size": 10,
         "n_initial": 5}


def _files(tmp_path, scale: float):
    pool = ase.io.read(rmd17("ethanol", "train"), index=":100")
    test = ase.io.read(rmd17("ethanol", "test"), index=":20")
    rng = np.random.default_rng(1)
    for a in test:  # perturbed labels: energies shifted, forces scaled and noised
        a.calc = SinglePointCalculator(
            a, energy=a.get_potential_energy() + scale * 0.3, forces=a.get_forces() * (1 + scale)
            + scale * rng.normal(scale=0.2, size=(len(a), 3)),
        )
    ase.io.write(tmp_path / "pool.extxyz", pool, format="extxyz")
    ase.io.write(tmp_path / f"test{scale}.extxyz", test, format="extxyz")
    return tmp_path / "pool.extxyz", tmp_path / f"test{scale}.extxyz"


def _episode(cache, pool, test, agent_name: str):
    env = gym.make("alenv/Dataset-tiny-v3", cache_dir=cache, pool=pool, test=test, **SMALL)
    agent, rng = make_agent(agent_name), np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    seen = [obs], []
    tests, done = [env.unwrapped.test_metrics()], False
    while not done:
        action = agent.act(obs, info, info["max_picks"], rng)
        obs, reward, done, _, info = env.step(action)
        seen[0].append(obs)
        seen[1].append((action.tolist(), reward, {k: v for k, v in info["metrics"].items()}))
        tests.append(env.unwrapped.test_metrics())
    return seen, tests


@pytest.mark.parametrize("agent_name", ["uncertainty", "hybrid"])
def test_perturbed_test_labels_change_nothing_the_agent_sees(tmp_path, alenv_cache, agent_name):
    clean = _episode(alenv_cache, *_files(tmp_path, 0.0), agent_name)
    perturbed = _episode(alenv_cache, *_files(tmp_path, 1.0), agent_name)
    (obs_a, steps_a), test_a = clean
    (obs_b, steps_b), test_b = perturbed
    for a, b in zip(obs_a, obs_b):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])  # observations identical
    assert steps_a == steps_b  # same actions, rewards and info metrics
    assert all(x["force_mae"] != y["force_mae"] for x, y in zip(test_a, test_b))  # the test set was read


def test_validation_is_never_the_test_set(tmp_path, alenv_cache):
    pool, test = _files(tmp_path, 0.0)
    env = gym.make("alenv/Dataset-tiny-v3", cache_dir=alenv_cache, pool=pool, test=test, **SMALL)
    u = env.unwrapped
    keys = lambda frames: {a.positions.tobytes() for a in frames}  # noqa: E731
    assert len(u.validation_frames) == 20
    assert not keys(u.validation_frames) & keys(u.test_frames)
    assert not keys(u.validation_frames) & keys(u.pool_frames + u.reserve_frames)
    with pytest.raises(ValueError, match=r"empty.extxyz.*(Empty file|holds no frames)"):
        empty = tmp_path / "empty.extxyz"
        empty.write_text("")
        gym.make("alenv/Dataset-tiny-v3", cache_dir=alenv_cache, pool=pool, test=test, validation=empty, **SMALL)
