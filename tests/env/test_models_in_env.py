"""Every registered model plays a tiny episode in both modes through the task's ``model`` setting."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import alenv  # noqa: F401
from alenv.models import MODELS

SMALL = {
    "bp-ensemble": {"n_members": 2, "hidden": [16, 16], "epochs_initial": 20, "min_steps": 0},
    "ridge": {"n_members": 3},
    # a weak, short pair potential under GFN2-xTB labels (an xTB baseline would leave nothing to learn; a
    # sigma near bond lengths makes the difference steep and hard for a linear committee)
    "delta": {"baseline": "lj", "baseline_kwargs": {"sigma": 0.7, "epsilon": 0.05}, "model": "ridge",
              "model_kwargs": {"n_members": 3}},
    "mace": {"n_members": 2, "channels": 8, "num_interactions": 1, "epochs_initial": 5, "epochs_per_round": 2},
    "mace-heads": {"heads": 2, "channels": 8, "num_interactions": 1, "epochs_initial": 5, "epochs_per_round": 2},
}
OPTIONAL = {"mace": "mace", "mace-heads": "mace"}  # checked where installed (an environment of its own: pyproject.toml), slow


def _models() -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n in OPTIONAL else n for n in sorted(MODELS)]


def _members(name: str) -> int:
    """Committee size: members (of the correction, for delta) times readout heads (mace-heads: one network)."""
    kwargs = SMALL[name].get("model_kwargs", SMALL[name])
    return kwargs.get("n_members", 1) * kwargs.get("heads", 1)


@pytest.mark.parametrize("name", _models())
def test_model_runs_a_pool_episode_and_passes_check_env(name, alenv_cache, check_env_clean):
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name])
    env = gym.make("alenv/Ethanol-GFN2-tiny-v3", cache_dir=alenv_cache, model=name, model_kwargs=SMALL[name])
    check_env_clean(env)
    obs, info = env.reset(seed=0)
    assert env.unwrapped.potential.n_members == _members(name)
    spread = obs["candidates"][:, env.unwrapped.candidate_features.index("force_std_max")]
    assert np.all(spread > 0), "a committee must disagree somewhere on every candidate"
    first = info["metrics"]["force_mae"]
    env.action_space.seed(0)
    while True:
        obs, reward, terminated, _, info = env.step(env.action_space.sample())  # random, spread over the pool
        if terminated:
            break
    assert info["metrics"]["force_mae"] < first  # 15 more labels help any sane learner


@pytest.mark.parametrize("name", _models())
def test_model_drives_on_the_fly_md(name, alenv_cache):
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name])
    env = gym.make("alenv/Ethanol-GFN2-OTF-tiny-v3", cache_dir=alenv_cache, model=name, model_kwargs=SMALL[name])
    obs, info = env.reset(seed=0)
    assert info["metrics"]["md_steps"] > 0 and obs["mask"].sum() > 0
    action = np.zeros(len(obs["mask"]), dtype=np.int8)
    action[np.flatnonzero(obs["mask"])[:2]] = 1
    _, _, _, _, info = env.step(action)
    assert info["metrics"]["n_labels"] == 7 and len(info["chosen"]) == 2


def test_model_setting_changes_the_learner(alenv_cache):
    env = gym.make("alenv/Ethanol-GFN2-tiny-v3", cache_dir=alenv_cache, model="ridge")
    env.reset(seed=0)
    assert type(env.unwrapped.potential).__name__ == "RidgeEnsemble"
    assert env.unwrapped.task.model_kwargs == {}  # the tiny task's neural settings do not carry over
    with pytest.raises(ValueError, match="unknown model"):
        gym.make("alenv/Ethanol-GFN2-tiny-v3", cache_dir=alenv_cache, model="nope").reset(seed=0)


def test_one_member_has_no_spread_and_spread_strategies_say_so(alenv_cache):
    from agents import make_agent

    env = gym.make("alenv/Ethanol-GFN2-tiny-v3", cache_dir=alenv_cache, model_kwargs={"n_members": 1})
    obs, info = env.reset(seed=0)
    assert info["n_members"] == 1
    rng = np.random.default_rng(0)
    for name in ("uncertainty", "qbc-energy", "hybrid", "prefilter-fps", "maxdet", "information-gain", "trust-window"):
        with pytest.raises(ValueError, match=f"{name}' ranks by the committee's spread.*at least 2 members"):
            make_agent(name).act(obs, info, info["max_picks"], rng)
    for name in ("random", "fps", "kmeans++", "distance"):  # nothing here reads a spread
        assert len(make_agent(name).act(obs, info, info["max_picks"], rng)) == info["max_picks"]
    atoms = env.unwrapped.test_frames[0].copy()
    atoms.calc = env.unwrapped.potential.as_calculator()
    atoms.get_potential_energy()
    assert np.isnan(atoms.calc.results["energy_std"]) and np.isnan(atoms.calc.results["forces_std"]).all()
