"""Selection algorithms on plain arrays (agents.algorithms) against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest

from agents import fps_select, kmeanspp_select, maxdet_select, topk_select

ALGORITHMS = {"topk": topk_select, "fps": fps_select, "kmeans++": kmeanspp_select, "maxdet": maxdet_select}


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


@pytest.mark.parametrize("select", sorted(ALGORITHMS))
def test_algorithms_reject_impossible_requests(select):
    fn = ALGORITHMS[select]
    rng = np.random.default_rng(0)
    x = rng.normal(size=6) if select == "topk" else rng.normal(size=(6, 2))  # scores or features
    mask = np.array([1, 0, 1, 0, 0, 0], dtype=np.int8)
    with pytest.raises(ValueError):
        fn(x, 3, mask, rng)
    with pytest.raises(ValueError):
        fn(x, 0, mask, rng)
    out = fn(x, 2, mask, rng)
    assert sorted(out.tolist()) == [0, 2]


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
