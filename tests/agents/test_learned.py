"""PolicyAgent: a batch from single picks of a callable policy."""

from __future__ import annotations

import numpy as np
import pytest

from agents import PolicyAgent, feature_score, greedy_policy, make_agent


@pytest.mark.parametrize("seed", range(4))
def test_argmax_spread_policy_reproduces_uncertainty(seed, make_obs):
    obs = make_obs(seed)
    agent = PolicyAgent(greedy_policy(feature_score("force_std_max")))
    for k in (1, 4, 9):
        expected = make_agent("uncertainty").act(obs, {}, k, np.random.default_rng(seed))
        assert agent.act(obs, {}, k, np.random.default_rng(seed)).tolist() == expected.tolist()


def test_policy_sees_its_own_picks_masked_and_never_changes_obs(make_obs):
    obs = make_obs(1)
    before = {key: v.copy() for key, v in obs.items()}
    seen: list[np.ndarray] = []

    def policy(o, info, available, rng):
        seen.append(available.copy())
        return int(rng.choice(np.flatnonzero(available)))

    picks = PolicyAgent(policy, name="random-policy").act(obs, {}, 5, np.random.default_rng(0)).tolist()
    assert len(set(picks)) == 5 and all(obs["mask"][i] == 1 for i in picks)
    for j, available in enumerate(seen):
        expected = obs["mask"].copy()
        expected[picks[:j]] = 0
        np.testing.assert_array_equal(available, expected)
    for key in obs:
        np.testing.assert_array_equal(obs[key], before[key])


def test_policy_may_stop_early_only_in_any_subset_mode(make_obs):
    obs = make_obs(2)
    first_two = greedy_policy(feature_score("force_std_max"))

    def policy(o, info, available, rng):
        return None if (o["mask"] - available).sum() >= 2 else first_two(o, info, available, rng)

    agent = PolicyAgent(policy)
    assert len(agent.act(obs, {"any_subset": True}, 5, np.random.default_rng(0))) == 2
    with pytest.raises(ValueError, match="stopped"):
        agent.act(obs, {"any_subset": False}, 5, np.random.default_rng(0))
    assert agent.act(obs, {"any_subset": True}, 0, np.random.default_rng(0)).tolist() == []


def test_policy_picking_an_unavailable_candidate_is_an_error(make_obs):
    obs = make_obs(3)
    labelled = int(np.flatnonzero(obs["mask"] == 0)[0])
    with pytest.raises(ValueError, match="not available"):
        PolicyAgent(lambda o, i, a, r: labelled).act(obs, {}, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="not available"):
        PolicyAgent(lambda o, i, a, r: 0).act(obs, {}, 2, np.random.default_rng(0))  # the same one twice
