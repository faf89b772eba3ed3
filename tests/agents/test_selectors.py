"""Selectors with the one signature ``select(obs, info, scores, k, mask, rng)``: the contract, information
gain against an exhaustive greedy reference, and k-means++'s D^2 sampling by a chi-square test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from agents import SELECTORS, feature, information_gain, make_agent, signal_to_noise
from alenv.observe import CANDIDATE_FEATURES


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_selector_contract(name, make_obs):
    obs = make_obs(0, n=20, available=1.0)
    select, rng = SELECTORS[name], np.random.default_rng(0)
    scores = feature(obs, "force_std_mean")
    mask = obs["mask"].copy()
    mask[::2] = 0  # a prefilter's subset: fewer than obs["mask"] offers
    before = {key: v.copy() for key, v in obs.items()}
    info = {"slot_walker": np.arange(20) // 4} if name == "fixed-interval" else {}  # 5 walkers x 4 slots
    out = select(obs, info, scores, 3, mask, rng)
    assert out.dtype == np.int64 and out.shape == (3,) and len(set(out.tolist())) == 3
    assert np.all(mask[out] == 1)
    for key in obs:
        np.testing.assert_array_equal(obs[key], before[key])
    for bad_k in (0, int(mask.sum()) + 1):
        with pytest.raises(ValueError):
            select(obs, info, scores, bad_k, mask, rng)


def test_topk_selector_needs_scores(make_obs):
    obs = make_obs(0)
    with pytest.raises(ValueError, match="scores"):
        SELECTORS["topk"](obs, {}, None, 2, obs["mask"], np.random.default_rng(0))


def _obs(X: np.ndarray, spread: np.ndarray, mask: np.ndarray, noise: np.ndarray | float = 0.0) -> dict:
    """Embeddings ``X``, per-atom force spreads ``spread`` (force_std_mean, eV/A) and label noise ``noise``
    (noise_sigma, eV/A per component)."""
    n = len(X)
    obs = {
        "candidates": np.zeros((n, len(CANDIDATE_FEATURES)), dtype=np.float32),
        "embedding": np.asarray(X, dtype=np.float32),
        "mask": np.asarray(mask, dtype=np.int8),
        "globals": np.zeros(5, dtype=np.float32),
    }
    obs["candidates"][:, CANDIDATE_FEATURES.index("force_std_mean")] = spread
    obs["candidates"][:, CANDIDATE_FEATURES.index("noise_sigma")] = noise
    return obs


def _info_gain_reference(obs: dict, k: int, floor: float = 0.01) -> list[int]:
    """Exhaustive greedy: each step adds the candidate that maximises the information gain of a Gaussian
    process with heteroscedastic noise, ``log det(K_S + N_S) - log det N_S`` over S = labelled + picks +
    [i]: ``K_ij = (s_i / sqrt 3)(s_j / sqrt 3) exp(-|x_i - x_j|^2 / 2 l^2)``, s the per-atom force spread
    (force_std_mean, a norm over 3 components, so s / sqrt 3 is per component), l the median pairwise
    distance of the available candidates, and ``N = diag(sigma^2)``, sigma the per-component noise
    (noise_sigma, floored at ``floor``)."""
    X = obs["embedding"].astype(np.float64)
    s = obs["candidates"][:, CANDIDATE_FEATURES.index("force_std_mean")].astype(np.float64) / np.sqrt(3)
    sigma = np.maximum(obs["candidates"][:, CANDIDATE_FEATURES.index("noise_sigma")].astype(np.float64), floor)
    avail = np.flatnonzero(obs["mask"]).tolist()
    pd = np.sqrt(((X[avail][:, None] - X[avail][None]) ** 2).sum(-1))
    length = float(np.median(pd[np.triu_indices(len(avail), 1)]))
    K = np.outer(s, s) * np.exp(-((X[:, None] - X[None]) ** 2).sum(-1) / (2 * length**2))
    labelled = np.flatnonzero(obs["mask"] == 0).tolist()
    picks: list[int] = []
    for _ in range(k):
        def gain(i: int) -> float:
            S = labelled + picks + [i]
            N = np.diag(sigma[S] ** 2)
            return np.linalg.slogdet(K[np.ix_(S, S)] + N)[1] - np.linalg.slogdet(N)[1]

        picks.append(max((i for i in avail if i not in picks), key=gain))
    return picks


@pytest.mark.parametrize("case", range(6))
def test_information_gain_equals_exhaustive_greedy(case):
    """Per-candidate noise (0.05 to 0.6 eV/A per component), comparable to the per-component spreads."""
    r = np.random.default_rng(case)
    n, k = 14, 4
    mask = np.ones(n, dtype=np.int8)
    mask[r.choice(n, size=case % 3 + 1, replace=False)] = 0
    obs = _obs(r.normal(size=(n, 3)), r.uniform(0.2, 1.0, n), mask, r.uniform(0.05, 0.6, n))
    got = make_agent("information-gain").act(obs, {}, k, np.random.default_rng(0))
    assert got.tolist() == _info_gain_reference(obs, k)


def _cluster_and_outlier(noise: float) -> dict:
    """Three near-duplicates with the largest spreads, one distinct candidate with a smaller spread,
    and a ring of low-spread candidates, all with label noise ``noise``."""
    X = np.array([[0, 0], [1e-3, 0], [0, 1e-3], [4, 0], [0, 4], [4, 4], [-4, 0], [0, -4]], dtype=float)
    spread = np.array([1.0, 0.99, 0.98, 0.8, 0.05, 0.05, 0.05, 0.05])
    return _obs(X, spread, np.ones(8, dtype=np.int8), noise)


def test_information_gain_noise_changes_the_picks():
    """Near-zero noise: a label of one duplicate explains the others, so the distinct candidate comes
    next. Noise larger than the per-component spreads (2 eV/A against at most 1 / sqrt 3): one noisy
    label explains little, and the second duplicate still has the larger posterior variance."""
    agent = make_agent("information-gain")
    quiet = agent.act(_cluster_and_outlier(1e-4), {}, 2, np.random.default_rng(0))
    noisy = agent.act(_cluster_and_outlier(2.0), {}, 2, np.random.default_rng(0))
    assert quiet.tolist() == [0, 3] == _info_gain_reference(_cluster_and_outlier(1e-4), 2)  # floored at 0.01
    assert noisy.tolist() == [0, 1] == _info_gain_reference(_cluster_and_outlier(2.0), 2)
    # a noise level of zero (or none) is floored at noise_floor
    floor = make_agent("information-gain", noise_floor=2.0).act(_cluster_and_outlier(0.0), {}, 2, np.random.default_rng(0))
    assert floor.tolist() == [0, 1]


def test_information_gain_prefers_the_quieter_of_equal_spreads():
    """Two far-apart candidates with the same spread: the one with the quieter label is worth more, by
    exactly 0.5 log(1 + s^2 / 3 sigma^2) per component each; top-k uncertainty cannot tell them apart."""
    X = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    obs = _obs(X, np.array([0.6, 0.6, 0.1]), np.ones(3, dtype=np.int8), np.array([0.5, 0.05, 0.05]))
    assert make_agent("information-gain").act(obs, {}, 1, np.random.default_rng(0)).tolist() == [1]
    gain = information_gain(0.01)(obs, {})
    np.testing.assert_allclose(gain[:2], 0.5 * np.log1p(0.6**2 / 3 / np.array([0.5, 0.05]) ** 2), rtol=1e-6)
    assert signal_to_noise(0.01).reads == {"force_std_mean", "noise_sigma"}


def _kmeanspp_first_picks(obs: dict, draws: int, seed: int) -> np.ndarray:
    agent, rng = make_agent("kmeans++"), np.random.default_rng(seed)
    counts = np.zeros(len(obs["mask"]), dtype=np.int64)
    for _ in range(draws):
        counts[agent.act(obs, {}, 1, rng)[0]] += 1
    return counts


def test_kmeanspp_first_pick_frequencies_follow_squared_distance():
    """4000 first picks, D the distance to the labelled set: frequencies match D^2 / sum D^2 (chi-square,
    p > 0.001) and not D / sum D (p < 1e-6), so the test tells D^2 sampling from D sampling, and from
    farthest point sampling (which always takes the largest D)."""
    D = np.array([0.2, 0.5, 1.0, 1.5, 2.0, 3.0])
    obs = _obs(np.random.default_rng(1).normal(size=(6, 2)), np.ones(6), np.ones(6, dtype=np.int8))
    obs["candidates"][:, CANDIDATE_FEATURES.index("dist_to_train")] = D
    draws = 4000
    counts = _kmeanspp_first_picks(obs, draws, seed=12345)
    assert chisquare(counts, draws * D**2 / (D**2).sum()).pvalue > 1e-3
    assert chisquare(counts, draws * D / D.sum()).pvalue < 1e-6


def test_kmeanspp_first_pick_is_uniform_without_labels():
    obs = _obs(np.random.default_rng(2).normal(size=(5, 2)), np.ones(5), np.ones(5, dtype=np.int8))
    obs["candidates"][:, CANDIDATE_FEATURES.index("dist_to_train")] = np.inf
    counts = _kmeanspp_first_picks(obs, 2000, seed=7)
    assert chisquare(counts, np.full(5, 400.0)).pvalue > 1e-3


@pytest.mark.parametrize("name", ["maxdet", "information-gain"])
def test_on_the_fly_empty_slots_are_not_labels(name, make_obs):
    """On the fly a mask of 0 marks an empty slot, not a labelled candidate: what such a slot holds must not
    change the picks (in pool mode the labelled candidates condition the kernel)."""
    obs = make_obs(1, n=20, available=1.0)
    obs["mask"][[3, 11]] = 0
    info = {"any_subset": True}
    agent = make_agent(name)
    picks = agent.act(obs, info, 4, np.random.default_rng(0))
    moved = {key: v.copy() for key, v in obs.items()}
    moved["embedding"][[3, 11]] = moved["embedding"][[5, 6]]  # empty slots placed onto available candidates
    np.testing.assert_array_equal(agent.act(moved, info, 4, np.random.default_rng(0)), picks)
    pool = agent.act(moved, {}, 4, np.random.default_rng(0))  # pool mode: now 3 and 11 are labels beside 5, 6
    assert not {5, 6} <= set(pool.tolist())
