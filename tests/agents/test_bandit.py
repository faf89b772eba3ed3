"""The bandit over heuristics: EXP3 weights follow the validation-error drops each arm was followed by, the
state starts again with each episode, and bad settings are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents import make_agent
from agents.bandit import HeuristicBandit


def _info(rnd: int, mae: float | None) -> dict:
    return {"round": rnd, "metrics": {} if mae is None else {"force_mae": mae}, "any_subset": False}


def test_the_arm_that_chose_a_round_is_credited_with_the_drop_that_followed(make_obs):
    bandit = HeuristicBandit("random,uncertainty", gamma=0.2, eta=0.5)
    obs, rng = make_obs(3), np.random.default_rng(0)
    np.testing.assert_allclose(bandit.probabilities(), [0.5, 0.5])
    bandit.act(obs, _info(0, 0.20), 4, rng)
    first = bandit.history[0]
    assert first["reward"] is None and first["mae_before"] == 0.20 and first["name"] in ("random", "uncertainty")
    bandit.act(obs, _info(1, 0.10), 4, rng)  # the error halved after the first arm's round
    assert first["reward"] == pytest.approx(math.log(2.0))
    expected = np.zeros(2)
    expected[first["arm"]] = 0.5 * math.log(2.0) / first["probability"]
    np.testing.assert_allclose(bandit.log_weights, expected)
    p = bandit.probabilities()
    assert p[first["arm"]] > 0.5 and p.min() >= 0.2 / 2 and p.sum() == pytest.approx(1.0)
    # a rise of the error is a negative reward
    second = bandit.history[1]
    bandit.act(obs, _info(2, 0.15), 4, rng)
    assert second["reward"] == pytest.approx(math.log(0.10 / 0.15)) and second["reward"] < 0
    # a new episode (round 0 again) starts from equal weights and no history
    bandit.act(obs, _info(0, 0.3), 4, rng)
    assert len(bandit.history) == 1 and np.all(bandit.log_weights == 0)


def test_an_arm_that_keeps_helping_is_chosen_more_often(make_obs):
    obs = make_obs(3)
    bandit = HeuristicBandit("random,fps,kmeans++", gamma=0.1, eta=1.0)
    rng, mae, chosen = np.random.default_rng(1), 1.0, []
    for rnd in range(40):  # fps is followed by a 20% drop, the others by none
        bandit.act(obs, _info(rnd, mae), 3, rng)
        chosen.append(bandit.history[-1]["name"])
        mae *= 0.8 if chosen[-1] == "fps" else 1.0
    assert chosen[-20:].count("fps") >= 15
    assert bandit.probabilities()[1] > 0.8


def test_it_plays_through_the_registry_and_refuses_bad_settings(make_obs):
    agent = make_agent("bandit", arms=["uncertainty", "kmeans_pp"])
    assert agent.arm_names == ("uncertainty", "kmeans++") and agent.name == "bandit"
    obs = make_obs(3)
    a = agent.act(obs, _info(0, None), 4, np.random.default_rng(5))  # no validation error yet: no reward
    b = make_agent("bandit", arms=["uncertainty", "kmeans_pp"]).act(obs, _info(0, None), 4, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    for bad in (dict(arms="random"), dict(arms="random,random"), dict(arms="random,bandit"), dict(gamma=0.0),
                dict(eta=-1.0)):
        with pytest.raises(ValueError):
            HeuristicBandit(**bad)
    with pytest.raises(ValueError, match="unknown agent"):
        HeuristicBandit("random,no-such-heuristic")
