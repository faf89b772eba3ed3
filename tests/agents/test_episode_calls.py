"""How benchmarks.episode.run_episode calls an agent: k = info["max_picks"], the action from
alenv.spaces.picks_to_action, the empty action when no pick is allowed in any-subset mode, and nothing
read from the environment but what reset and step return (the stub has no ``unwrapped``)."""

from __future__ import annotations

import numpy as np
import pytest

from agents import make_agent
from benchmarks.episode import run_episode


class StubEnv:
    """Rounds allowing ``max_picks[0]``, ``max_picks[1]``, ... picks; records the actions it gets."""

    def __init__(self, obs: dict, max_picks: list[int], any_subset: bool):
        self.obs, self.max_picks, self.any_subset = obs, max_picks, any_subset
        self.actions: list[np.ndarray] = []

    def _info(self, r: int) -> dict:
        k = self.max_picks[r] if r < len(self.max_picks) else 0
        metrics = {"n_labels": r, "force_mae": 0.1, "energy_mae": 0.01}
        return {"round": r, "metrics": metrics, "max_picks": k, "any_subset": self.any_subset, "chosen": [], "failed": []}

    def reset(self, seed: int):
        return self.obs, self._info(0)

    def step(self, action):
        self.actions.append(np.asarray(action))
        r = len(self.actions)
        return self.obs, 0.0, r >= len(self.max_picks), False, self._info(r)


class Recorder:
    def __init__(self, agent):
        self.agent, self.name, self.ks = agent, agent.name, []

    def act(self, obs, info, k, rng):
        self.ks.append(k)
        return self.agent.act(obs, info, k, rng)


@pytest.mark.parametrize("any_subset", [False, True])
def test_run_episode_asks_for_max_picks(any_subset, make_obs):
    obs = make_obs(0)
    env = StubEnv(obs, [3, 0, 2] if any_subset else [3, 2], any_subset)
    agent = Recorder(make_agent("uncertainty"))
    record = run_episode(env, agent, seed=0, progress=False, echo=False)
    assert len(record["steps"]) == len(env.max_picks)
    assert agent.ks == [k for k in env.max_picks if k > 0]  # never asked for zero picks
    expected = [make_agent("uncertainty").act(obs, {}, k, np.random.default_rng(0)) if k else [] for k in env.max_picks]
    for action, picks in zip(env.actions, expected):
        if any_subset:  # a 0/1 vector over the candidates
            assert action.dtype == np.int8 and action.shape == obs["mask"].shape
            assert sorted(np.flatnonzero(action).tolist()) == sorted(np.asarray(picks).tolist())
        else:  # the indices themselves
            assert action.dtype == np.int64 and action.tolist() == np.asarray(picks).tolist()
