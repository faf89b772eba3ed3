"""Reference sets too big to hold with their Jacobians are featurised again at each evaluation (streamed):
the same predictions, errors and episode as held ones, and a clear error for a meaningless limit."""

from __future__ import annotations

import ase.io
import gymnasium as gym
import numpy as np
import pytest
import torch

import alenv  # noqa: F401
from alenv import loop
from alenv.datasets import rmd17
from alenv.descriptors.representation import Representation
from alenv.models import make_potential
from alenv.tasks import TINY_DESCRIPTOR
from agents import make_agent

SMALL = {"pool_size": 40, "test_size": 20, "validation_size": 20, "budget": 10, "batch_size": 5, "reserve_size": 10,
         "n_initial": 5}


@pytest.fixture(scope="module")
def frames():
    return ase.io.read(rmd17("ethanol", "test"), index=":30")


def test_streamed_reference_predicts_as_held(frames, monkeypatch):
    monkeypatch.setattr(loop, "STREAM_CHUNK", 7)  # several chunks, the last one short
    torch.set_num_threads(1)
    rep = Representation.for_frames(frames, {"radial_shells": 8, "angular_shells": 4, "angle_sections": 4}, 4)
    held, streamed = loop.Reference.of(frames, rep), loop.Reference.of(frames, rep, stream=True)
    assert streamed.streamed and not held.streamed and streamed.data is None
    pot = make_potential("bp-ensemble", rep, seed=0, n_members=2, hidden=(16,), epochs_initial=5, min_steps=0)
    E, F = np.array([a.get_potential_energy() for a in frames[:10]]), np.stack([a.get_forces() for a in frames[:10]])
    pot.fit(held.data, E, F, np.random.default_rng(0), idx=np.arange(10))
    (Eh, Fh), (Es, Fs) = held.predict(pot), streamed.predict(pot)
    assert Es.shape == Eh.shape == (2, 30) and Fs.shape == Fh.shape == (2, 30, 9, 3)
    # float32 descriptors and Jacobians of other chunk shapes round differently (a few ulp: 6e-6 eV/A seen)
    np.testing.assert_allclose(Es, Eh, rtol=0, atol=1e-5)
    np.testing.assert_allclose(Fs, Fh, rtol=0, atol=1e-5)
    assert loop.evaluate(pot, streamed) == pytest.approx(loop.evaluate(pot, held), rel=1e-6)


def test_jacobian_bytes_grow_as_atoms_squared(frames):
    assert loop.jacobian_bytes(frames[:3], 240) == 3 * 12 * 81 * 240
    water = ase.Atoms("H2O" * 4)
    assert loop.jacobian_bytes([water], 100) == 12 * 144 * 100


def _episode(tmp_path, **kwargs):
    env = gym.make("alenv/Dataset-tiny-v3", cache_dir=tmp_path, pool=rmd17("ethanol", "train"),
                   test=rmd17("ethanol", "test"), **SMALL, **kwargs)
    agent, rng = make_agent("uncertainty"), np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    rewards, actions, done = [], [], False
    while not done:
        action = agent.act(obs, info, info["max_picks"], rng)
        obs, reward, done, _, info = env.step(action)
        rewards.append(reward)
        actions.append(np.asarray(action).tolist())
    return env.unwrapped, rewards, actions, env.unwrapped.test_metrics()


def test_streamed_sets_give_the_same_episode(tmp_path):
    held_env, r_held, a_held, t_held = _episode(tmp_path)
    # a dense layout kept on purpose: with layout "auto", training data over the limit goes flat
    dense = {"descriptor": {**TINY_DESCRIPTOR, "layout": "dense"}}
    stream_env, r_stream, a_stream, t_stream = _episode(tmp_path, jacobian_limit_gb=1e-6, **dense)
    assert held_env.streamed == frozenset()  # every standard size fits: nothing streamed by default
    assert held_env.layout == stream_env.layout == "dense"
    assert stream_env.streamed == {"test", "validation"}
    assert a_stream == a_held
    np.testing.assert_allclose(r_stream, r_held, rtol=1e-6, atol=1e-9)
    assert t_stream["force_mae"] == pytest.approx(t_held["force_mae"], rel=1e-6)


def test_training_data_too_big_for_dense_jacobians_goes_flat(tmp_path):
    env = gym.make("alenv/Dataset-tiny-v3", cache_dir=tmp_path, pool=rmd17("ethanol", "train"),
                   test=rmd17("ethanol", "test"), **SMALL, jacobian_limit_gb=1e-6)
    assert env.unwrapped.layout == "flat" and env.unwrapped.streamed == frozenset()
    assert type(env.unwrapped.candidates).__name__ == "FlatFrames"


def test_only_the_test_set_is_streamed_when_the_rest_fits(tmp_path):
    env = gym.make("alenv/Dataset-tiny-v3", cache_dir=tmp_path, pool=rmd17("ethanol", "train"),
                   test=rmd17("ethanol", "test"), **{**SMALL, "test_size": 200}, jacobian_limit_gb=16 / 1024)
    # Dataset-tiny: D = 120, 12 * 81 * 120 B per frame: held 50 + validation 20 frames = 8.2 MB, test 23 MB
    assert env.unwrapped.streamed == {"test"}


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_jacobian_limit_must_be_positive(tmp_path, bad):
    with pytest.raises(ValueError, match="jacobian_limit_gb must be positive"):
        gym.make("alenv/Dataset-tiny-v3", cache_dir=tmp_path, pool=rmd17("ethanol", "train"),
                 test=rmd17("ethanol", "test"), **SMALL, jacobian_limit_gb=bad)
