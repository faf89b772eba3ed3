"""Agents: conformance of every registered strategy, and the selectors against brute-force references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from agents import AGENTS, SELECTORS, fps_select, make_agent, topk_select


def _check_action(action: np.ndarray, k: int, mask: np.ndarray) -> None:
    assert isinstance(action, np.ndarray) and action.dtype == np.int64 and action.shape == (k,)
    assert len(np.unique(action)) == k
    assert np.all(mask[action] == 1)


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_agent_conformance_full_episode(name, ethanol_tiny_env):
    """Over a whole tiny episode: k distinct unmasked int64 indices, never a labelled point, reproducible."""
    env = ethanol_tiny_env
    u = env.unwrapped
    k = u.task.batch_size
    agent = make_agent(name)
    assert isinstance(agent.name, str)
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(42)
    labelled: set[int] = set()
    terminated = False
    while not terminated:
        obs_copy = {key: v.copy() for key, v in obs.items()}
        state = rng.bit_generator.state
        action = agent.act(obs, info, k, rng)
        _check_action(action, k, obs["mask"])
        assert not labelled & set(action.tolist())
        for key in obs:  # agents never modify the observation
            np.testing.assert_array_equal(obs[key], obs_copy[key])
        # Same observation and same rng state: the same action.
        replay = np.random.default_rng()
        replay.bit_generator.state = state
        np.testing.assert_array_equal(make_agent(name).act(obs, info, k, replay), action)
        labelled |= set(action.tolist())
        obs, reward, terminated, truncated, info = env.step(action)
    assert len(labelled) == u.task.budget
    assert obs["mask"].sum() == u.n_pool - u.task.budget


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_agent_respects_sparse_mask(name, rng):
    """With almost every candidate masked the agent must pick exactly the few that are left."""
    N, k = 30, 4
    obs = {
        "candidates": rng.random((N, 6)).astype(np.float32),
        "embedding": rng.normal(size=(N, 5)).astype(np.float32),
        "mask": np.zeros(N, dtype=np.int8),
        "globals": np.array([0.5, 0.5, -1.0, -1.0, 0.0], dtype=np.float32),
    }
    avail = np.array([2, 9, 17, 23, 28])
    obs["mask"][avail] = 1
    # Masked candidates look most attractive by every criterion: large spreads, far away.
    obs["candidates"][obs["mask"] == 0] += 10.0
    obs["embedding"][obs["mask"] == 0] *= 100.0
    action = make_agent(name).act(obs, {}, k, rng)
    _check_action(action, k, obs["mask"])
    obs["mask"][:] = 0
    obs["mask"][avail[:k]] = 1
    np.testing.assert_array_equal(np.sort(make_agent(name).act(obs, {}, k, rng)), avail[:k])
    obs["mask"][avail[0]] = 0
    with pytest.raises(ValueError):
        make_agent(name).act(obs, {}, k, rng)


def _fps_reference(X, k, mask, initial, bonus, first: int | None = None) -> list[int]:
    """Greedy farthest point sampling, the slow obvious way (no ties in random continuous data).

    Without ``initial`` every candidate is infinitely far from the (empty) labelled set, so the first pick
    is a tie; ``first`` then fixes it and the reference checks the greedy picks that follow.
    """
    picks: list[int] = [] if first is None else [first]
    while len(picks) < k:
        best, best_value = None, -np.inf
        for i in range(len(X)):
            if not mask[i] or i in picks:
                continue
            dists = [float(np.sqrt(((X[i] - X[j]) ** 2).sum())) for j in picks]
            if initial is not None:
                dists.append(float(initial[i]))
            d = min(dists)
            value = d + (0.0 if bonus is None else float(bonus[i]))
            if value > best_value:
                best, best_value = i, value
        picks.append(best)
    return picks


@pytest.mark.parametrize("case", range(12))
def test_fps_select_equals_brute_force(case):
    rng = np.random.default_rng(case)
    N = int(rng.integers(8, 25))
    D = int(rng.integers(1, 5))
    k = int(rng.integers(1, 6))
    X = rng.normal(size=(N, D))
    mask = (rng.random(N) < 0.7).astype(np.int8)
    while mask.sum() < k:
        mask[rng.integers(N)] = 1
    initial = rng.random(N) * 2.0 if case % 3 else None
    bonus = rng.random(N) if case % 4 == 1 else None
    got = fps_select(X, k, mask, np.random.default_rng(100 + case), initial_distance=initial, bonus=bonus)
    assert got.dtype == np.int64
    assert mask[got[0]] == 1
    expected = _fps_reference(X, k, mask, initial, bonus, first=None if initial is not None else int(got[0]))
    assert got.tolist() == expected
    if initial is not None and bonus is None:
        # The first pick is the available point farthest from the labelled set.
        assert got[0] == np.flatnonzero(mask)[np.argmax(initial[mask == 1])]


def test_fps_select_spreads_points():
    """Two tight clusters: FPS with k=2 takes one point from each; the brute force agrees."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 0.01, (10, 2)), rng.normal(5, 0.01, (10, 2))])
    mask = np.ones(20, dtype=np.int8)
    picks = fps_select(X, 2, mask, rng)
    assert {int(p) // 10 for p in picks} == {0, 1}
    # With the first cluster already labelled (distance 0 there), both picks come from the second.
    initial = np.where(np.arange(20) < 10, 0.0, 5.0)
    picks = fps_select(X, 2, mask, rng, initial_distance=initial)
    assert all(p >= 10 for p in picks)


def test_fps_select_does_not_modify_inputs(rng):
    X = rng.normal(size=(10, 3))
    initial = rng.random(10)
    X0, i0 = X.copy(), initial.copy()
    fps_select(X, 3, np.ones(10, dtype=np.int8), rng, initial_distance=initial)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(initial, i0)


@pytest.mark.parametrize("case", range(10))
def test_topk_select_picks_highest_available(case):
    rng = np.random.default_rng(case)
    N = int(rng.integers(5, 40))
    scores = rng.normal(size=N)
    mask = (rng.random(N) < 0.6).astype(np.int8)
    mask[:2] = 1
    k = int(rng.integers(1, mask.sum() + 1))
    got = topk_select(scores, k, mask, rng)
    assert got.dtype == np.int64 and len(np.unique(got)) == k
    assert np.all(mask[got] == 1)
    avail = np.flatnonzero(mask)
    expected = avail[np.argsort(-scores[avail])[:k]]
    assert set(got.tolist()) == set(expected.tolist())
    # Nothing left out scores above anything taken.
    rest = np.setdiff1d(avail, got)
    if len(rest):
        assert scores[got].min() >= scores[rest].max()


def test_topk_select_breaks_ties_with_rng():
    scores = np.zeros(12)
    mask = np.ones(12, dtype=np.int8)
    picks = {tuple(sorted(topk_select(scores, 3, mask, np.random.default_rng(s)).tolist())) for s in range(20)}
    assert len(picks) > 1  # ties go to the rng, not always to the lowest indices
    a = topk_select(scores, 3, mask, np.random.default_rng(7))
    b = topk_select(scores, 3, mask, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("select", sorted(SELECTORS))
def test_selectors_reject_impossible_requests(select):
    fn = SELECTORS[select]
    rng = np.random.default_rng(0)
    x = rng.normal(size=6) if select == "topk" else rng.normal(size=(6, 2))  # scores or features
    mask = np.array([1, 0, 1, 0, 0, 0], dtype=np.int8)
    with pytest.raises(ValueError):
        fn(x, 3, mask, rng)
    with pytest.raises(ValueError):
        fn(x, 0, mask, rng)
    out = fn(x, 2, mask, rng)
    assert sorted(out.tolist()) == [0, 2]


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


def test_fps_select_first_pick_tie_goes_to_rng():
    X = np.random.default_rng(0).normal(size=(12, 3))
    mask = np.ones(12, dtype=np.int8)
    firsts = {int(fps_select(X, 1, mask, np.random.default_rng(s))[0]) for s in range(20)}
    assert len(firsts) > 1


def _maxdet_reference(X, k, mask, scale, conditioned, length):
    """Greedy max log det, the slow obvious way: try every candidate, keep the best determinant."""
    K = np.outer(scale, scale) * np.exp(-((X[:, None] - X[None]) ** 2).sum(-1) / (2 * length**2))
    chosen = list(conditioned)
    picks = []
    for _ in range(k):
        best, best_val = None, -np.inf
        for i in np.flatnonzero(mask):
            if i in picks:
                continue
            S = chosen + picks + [i]
            val = np.linalg.slogdet(K[np.ix_(S, S)] + 1e-6 * np.eye(len(S)))[1]
            if val > best_val:
                best, best_val = i, val
        picks.append(int(best))
    return picks


@pytest.mark.parametrize("case", range(6))
def test_maxdet_select_equals_brute_force(case):
    from agents import maxdet_select

    rng = np.random.default_rng(100 + case)
    N, k = 14, 4
    X = rng.normal(size=(N, 3))
    scale = rng.uniform(0.5, 2.0, N)
    mask = np.ones(N, dtype=np.int8)
    conditioned = list(rng.choice(N, size=case % 3, replace=False))
    mask[conditioned] = 0
    got = maxdet_select(X, k, mask, np.random.default_rng(0), scale=scale, conditioned=conditioned, length_scale=1.3)
    assert got.tolist() == _maxdet_reference(X, k, mask, scale, conditioned, 1.3)


def test_kmeanspp_spreads_out_and_follows_rng():
    """Two tight clusters far apart: k-means++ with k=2 takes one point of each, and a seed fixes it."""
    from agents import kmeanspp_select

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 0.01, (20, 2)), rng.normal(10, 0.01, (20, 2))])
    mask = np.ones(40, dtype=np.int8)
    for seed in range(5):
        picks = kmeanspp_select(X, 2, mask, np.random.default_rng(seed))
        assert sorted(p // 20 for p in picks) == [0, 1]
        again = kmeanspp_select(X, 2, mask, np.random.default_rng(seed))
        assert picks.tolist() == again.tolist()
    # with one cluster already labelled (distance 0 there), both picks come from the other
    d = np.where(np.arange(40) < 20, 0.0, 10.0)
    picks = kmeanspp_select(X, 2, mask, np.random.default_rng(1), initial_distance=d)
    assert all(p >= 20 for p in picks)


def test_trust_window_prefers_inside_then_nearest():
    from agents.base import TrustWindowAgent

    spreads = np.array([0.01, 0.2, 0.5, 3.0, 0.04, 1.2], dtype=np.float32)
    obs = {
        "candidates": np.zeros((6, 6), dtype=np.float32),
        "embedding": np.zeros((6, 2), dtype=np.float32),
        "mask": np.ones(6, dtype=np.int8),
        "globals": np.zeros(5, dtype=np.float32),
    }
    from alenv.observe import CANDIDATE_FEATURES

    obs["candidates"][:, CANDIDATE_FEATURES.index("force_std_max")] = spreads
    agent = TrustWindowAgent(lower=0.05, upper=1.0)
    rng = np.random.default_rng(0)
    assert agent.act(obs, {}, 2, rng).tolist() == [2, 1]  # inside, largest spread first
    assert agent.act(obs, {}, 3, rng).tolist() == [2, 1, 4]  # then the closest below the window
    with pytest.raises(ValueError):
        TrustWindowAgent(lower=1.0, upper=0.5)


def test_true_error_reference_picks_largest_true_errors(ethanol_tiny_env):
    from agents.reference import make_reference

    env = ethanol_tiny_env
    u = env.unwrapped
    obs, info = env.reset(seed=0)
    agent = make_reference("true-error", env)
    assert agent.cheating is True
    k = u.task.batch_size
    picks = agent.act(obs, info, k, np.random.default_rng(0))
    _check_action(picks, k, obs["mask"])
    _, F = u.potential.predict(u.candidates, idx=np.arange(u.n_pool))
    _, true_F = u.true_labels()
    err = np.abs(F.mean(0) - true_F).mean((1, 2))
    assert set(picks.tolist()) == set(np.argsort(-err)[:k].tolist())


@pytest.fixture(scope="module")
def otf_first_round(make_env):
    """The first observation of Ethanol-GFN2-OTF-tiny and its environment."""
    env = make_env("alenv/Ethanol-GFN2-OTF-tiny-v0")
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
    for o in (obs, sparse):
        k = min(u.action_space.limit, int(o["mask"].sum()))
        picks = make_agent(name).act(o, info, k, rng)
        assert picks.dtype == np.int64 and len(np.unique(picks)) == len(picks)
        assert np.all(o["mask"][picks] == 1)
        if name == "trust-window":
            assert len(picks) <= k
            x = o["candidates"][:, list(u.candidate_features).index("force_std_max")]
            assert np.all((x[picks] >= 0.05) & (x[picks] <= 1.0))
        else:
            assert len(picks) == k
        action = np.zeros(u.n_candidates, dtype=np.int8)
        action[picks] = 1
        saved = u.mask.copy()
        u.mask = o["mask"].copy()
        try:
            assert np.array_equal(np.sort(u.validate_action(action)), np.sort(picks))
        finally:
            u.mask = saved
