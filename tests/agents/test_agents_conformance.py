"""Agents: conformance of every registered strategy in both modes, and the true-error reference."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest

from agents import AGENTS, OTF_ONLY, global_feature, make_agent
from alenv.observe import CANDIDATE_FEATURES
from alenv.spaces import picks_to_action


def _check_action(action: np.ndarray, k: int, mask: np.ndarray) -> None:
    assert isinstance(action, np.ndarray) and action.dtype == np.int64 and action.shape == (k,)
    assert len(np.unique(action)) == k
    assert np.all(mask[action] == 1)


POOL_AGENTS = sorted(set(AGENTS) - OTF_ONLY)


@pytest.mark.parametrize("name", POOL_AGENTS)
def test_agent_conformance_full_episode(name, ethanol_tiny_env):
    """Over a whole tiny episode: k distinct unmasked int64 indices, never a labelled point, reproducible."""
    env = ethanol_tiny_env
    agent = make_agent(name)
    assert isinstance(agent.name, str)
    obs, info = env.reset(seed=0)
    assert info["any_subset"] is False
    rng = np.random.default_rng(42)
    labelled: set[int] = set()
    terminated = False
    while not terminated:
        k = info["max_picks"]
        assert k > 0
        obs_copy = {key: v.copy() for key, v in obs.items()}
        state, before = rng.bit_generator.state, copy.deepcopy(agent)  # (the bandit keeps state per episode)
        action = agent.act(obs, info, k, rng)
        _check_action(action, k, obs["mask"])
        assert not labelled & set(action.tolist())
        for key in obs:  # agents never modify the observation
            np.testing.assert_array_equal(obs[key], obs_copy[key])
        # Same agent state, observation and rng state: the same action.
        replay = np.random.default_rng()
        replay.bit_generator.state = state
        np.testing.assert_array_equal(before.act(obs, info, k, replay), action)
        labelled |= set(action.tolist())
        obs, reward, terminated, truncated, info = env.step(picks_to_action(action, obs, info))
    assert global_feature(obs, "budget_used") == pytest.approx(1.0)  # the whole budget went to distinct picks
    assert obs["mask"].sum() == len(obs["mask"]) - len(labelled)
    assert info["max_picks"] == 0


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_agent_respects_sparse_mask(name, rng):
    """With almost every candidate masked the agent must pick exactly the few that are left."""
    N, k = 30, 4
    obs = {
        "candidates": rng.random((N, len(CANDIDATE_FEATURES))).astype(np.float32),
        "embedding": rng.normal(size=(N, 5)).astype(np.float32),
        "mask": np.zeros(N, dtype=np.int8),
        "globals": np.array([0.5, 0.5, -1.0, -1.0, 0.0], dtype=np.float32),
    }
    avail = np.array([2, 9, 17, 23, 28])
    obs["mask"][avail] = 1
    # Masked candidates look most attractive by every criterion: large spreads, far away.
    obs["candidates"][obs["mask"] == 0] += 10.0
    obs["embedding"][obs["mask"] == 0] *= 100.0
    base = {"slot_walker": np.repeat(np.arange(6), 5)} if name in OTF_ONLY else {}  # 6 walkers x 5 slots
    action = make_agent(name).act(obs, base, k, rng)
    _check_action(action, k, obs["mask"])
    obs["mask"][:] = 0
    obs["mask"][avail[:k]] = 1
    np.testing.assert_array_equal(np.sort(make_agent(name).act(obs, base, k, rng)), avail[:k])
    obs["mask"][avail[0]] = 0
    with pytest.raises(ValueError):
        make_agent(name).act(obs, base, k, rng)
    for info in (base, {**base, "any_subset": True}):  # nothing to pick: the empty selection, in either mode
        empty = make_agent(name).act(obs, info, 0, rng)
        assert empty.dtype == np.int64 and empty.shape == (0,)


def test_make_agent_unknown_name():
    with pytest.raises(ValueError, match="unknown agent"):
        make_agent("oracle-peeking")
    for name in AGENTS:
        assert make_agent(name) is not None
    with pytest.raises(ValueError, match="unknown candidate feature"):
        make_agent("uncertainty", feature="no_such_feature")


def test_all_pairs_of_agents_registered_names_unique():
    names = [make_agent(n).name for n in AGENTS]
    assert names == list(AGENTS)
    assert not any(a == b for a, b in itertools.combinations(names, 2))


def test_fixed_interval_labels_each_walkers_newest_frames():
    walker = np.repeat(np.arange(3), 4)  # 3 walkers x 4 slots, walker-major, MD order within a walker
    mask = np.ones(12, dtype=np.int8)
    mask[[3, 7, 6]] = 0  # walker 0's newest slot and walker 1's two newest are empty
    obs = {"mask": mask, "candidates": np.zeros((12, len(CANDIDATE_FEATURES)), dtype=np.float32)}
    agent = make_agent("fixed-interval")
    rng = np.random.default_rng(0)
    info = {"slot_walker": walker, "any_subset": True}
    assert agent.act(obs, info, 3, rng).tolist() == [2, 5, 11]  # each walker's newest available frame
    assert agent.act(obs, info, 5, rng).tolist() == [1, 2, 4, 5, 11]  # then the next newest, walkers in order
    assert agent.act(obs, info, 3, np.random.default_rng(9)).tolist() == [2, 5, 11]  # no randomness
    with pytest.raises(ValueError, match="on-the-fly"):
        agent.act(obs, {}, 3, rng)


def test_trust_window_prefers_inside_then_nearest():
    spreads = np.array([0.01, 0.2, 0.5, 3.0, 0.04, 1.2], dtype=np.float32)
    obs = {
        "candidates": np.zeros((6, len(CANDIDATE_FEATURES)), dtype=np.float32),
        "embedding": np.zeros((6, 2), dtype=np.float32),
        "mask": np.ones(6, dtype=np.int8),
        "globals": np.zeros(5, dtype=np.float32),
    }
    obs["candidates"][:, CANDIDATE_FEATURES.index("force_std_max")] = spreads
    agent = make_agent("trust-window", lower=0.05, upper=1.0)
    rng = np.random.default_rng(0)
    assert agent.act(obs, {}, 2, rng).tolist() == [2, 1]  # inside, largest spread first
    assert agent.act(obs, {}, 3, rng).tolist() == [2, 1, 4]  # then the closest below the window
    with pytest.raises(ValueError):
        make_agent("trust-window", lower=1.0, upper=0.5)


def test_true_error_reference_picks_largest_true_errors(ethanol_tiny_env):
    from benchmarks.references import make_reference

    env = ethanol_tiny_env
    u = env.unwrapped
    obs, info = env.reset(seed=0)
    agent = make_reference("true-error", env)
    assert agent.cheating is True
    k = info["max_picks"]
    picks = agent.act(obs, info, k, np.random.default_rng(0))
    _check_action(picks, k, obs["mask"])
    _, F = u.predict_candidates()
    _, true_F = u.true_labels()
    err = np.abs(F.mean(0) - true_F).mean((1, 2))
    assert set(picks.tolist()) == set(np.argsort(-err)[:k].tolist())


@pytest.fixture(scope="module")
def otf_first_round(make_env):
    """The first observation of Ethanol-GFN2-OTF-tiny and its environment."""
    env = make_env("alenv/Ethanol-GFN2-OTF-tiny-v3")
    obs, info = env.reset(seed=0)
    return env, obs, info


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_agent_conformance_on_the_fly(name, otf_first_round):
    """Every strategy works in on-the-fly mode: distinct unmasked picks, at most the round's limit, the
    env accepts them; only the trust window may label fewer (it labels only inside its window)."""
    env, obs, info = otf_first_round
    u = env.unwrapped
    rng = np.random.default_rng(3)
    sparse = dict(obs, mask=obs["mask"].copy())
    sparse["mask"][::2] = 0  # as when a walker gave up and left empty slots
    assert info["any_subset"] is True
    for o in (obs, sparse):
        k = min(info["max_picks"], int(o["mask"].sum()))
        picks = make_agent(name).act(o, info, k, rng)
        assert picks.dtype == np.int64 and len(np.unique(picks)) == len(picks)
        assert np.all(o["mask"][picks] == 1)
        if name == "trust-window":
            assert len(picks) <= k
            x = o["candidates"][:, CANDIDATE_FEATURES.index("force_std_max")]
            assert np.all((x[picks] >= 0.05) & (x[picks] <= 1.0))
        else:
            assert len(picks) == k
        action = picks_to_action(picks, o, info)
        saved = u.mask.copy()
        u.mask = o["mask"].copy()
        try:
            assert np.array_equal(np.sort(u.validate_action(action)), np.sort(picks))
        finally:
            u.mask = saved


def test_true_error_reference_needs_pool_mode(otf_first_round):
    from benchmarks.references import make_reference

    env, _, _ = otf_first_round
    with pytest.raises(ValueError, match="pool mode"):
        make_reference("true-error", env)
    with pytest.raises(ValueError, match="unknown reference"):
        make_reference("oracle-peeking", env)
