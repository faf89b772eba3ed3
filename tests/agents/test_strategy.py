"""Each strategy does what its documentation says: the top-k of its own score, the hybrid's weight
schedule, the prefilters, the trust window. References are written out the slow, obvious way."""

from __future__ import annotations

import numpy as np
import pytest

from agents import FarthestPoint, Linear, Strategy, TopK, feature_score, make_agent
from alenv.observe import CANDIDATE_FEATURES

# The documented score of every top-k strategy (README, agents.registry).
DOCUMENTED_SCORE = {
    "uncertainty": "force_std_max",
    "qbc-energy": "energy_std",
    "qbc-force-mean": "force_std_mean",
    "qbc-force-rel": "force_std_rel",
    "distance": "dist_to_train",
}


def _f(obs: dict, name: str) -> np.ndarray:
    return obs["candidates"][:, CANDIDATE_FEATURES.index(name)].astype(np.float64)


def _top(obs: dict, name: str, k: int) -> list[int]:
    """The k available candidates with the largest feature, largest first."""
    x, avail = _f(obs, name), np.flatnonzero(obs["mask"])
    return avail[np.argsort(-x[avail])[:k]].tolist()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("name", sorted(DOCUMENTED_SCORE))
def test_score_strategy_picks_top_k_of_its_own_score(name, seed, make_obs):
    obs, k = make_obs(seed), 5
    own = DOCUMENTED_SCORE[name]
    tops = {f: _top(obs, f, k) for f in CANDIDATE_FEATURES}
    # the test can tell the scores apart: no other feature has the same top k
    assert all(set(tops[own]) != set(t) for f, t in tops.items() if f != own)
    got = make_agent(name).act(obs, {}, k, np.random.default_rng(seed))
    assert got.tolist() == tops[own]


@pytest.mark.parametrize("feature", CANDIDATE_FEATURES)
def test_uncertainty_follows_its_feature_parameter(feature, make_obs):
    obs = make_obs(11)
    got = make_agent("uncertainty", feature=feature).act(obs, {}, 4, np.random.default_rng(0))
    assert got.tolist() == _top(obs, feature, 4)


def test_qbc_energy_normalises_the_spread_as_asked(make_obs):
    """Per atom, and per square root of the atom count (ANI's criterion): sigma_E / sqrt(n), with n the
    frame's atom count recovered as energy_std / energy_std_per_atom."""
    obs = make_obs(3)
    sigma, per_atom = _f(obs, "energy_std"), _f(obs, "energy_std_per_atom")
    avail = np.flatnonzero(obs["mask"])
    rho = sigma / np.sqrt(sigma / per_atom)
    want = avail[np.argsort(-rho[avail])[:4]].tolist()
    assert set(want) != set(_top(obs, "energy_std", 4)) and set(want) != set(_top(obs, "energy_std_per_atom", 4))
    got = make_agent("qbc-energy", normalise="sqrt_atoms").act(obs, {}, 4, np.random.default_rng(0))
    assert got.tolist() == want
    assert make_agent("qbc-energy", normalise="atom").act(obs, {}, 4, np.random.default_rng(0)).tolist() == _top(
        obs, "energy_std_per_atom", 4)
    with pytest.raises(ValueError, match="normalise must be none, atom or sqrt_atoms"):
        make_agent("qbc-energy", normalise="log")


def _hybrid_reference(obs: dict, k: int, w: float, feature: str = "force_std_max") -> list[int]:
    """Greedy: maximise unit(uncertainty) + w * d / d_max, d the distance to the labelled set and to the
    picks so far, d_max the largest dist_to_train among available candidates (top-k when w <= 0)."""
    avail = np.flatnonzero(obs["mask"])
    x = _f(obs, feature)
    unc = (x - x[avail].min()) / (x[avail].max() - x[avail].min())
    d0 = _f(obs, "dist_to_train")
    d_max = d0[avail].max()
    X = obs["embedding"].astype(np.float64)
    picks: list[int] = []
    for _ in range(k):
        def value(i: int) -> float:
            d = min([d0[i]] + [float(np.linalg.norm(X[i] - X[j])) for j in picks])
            return unc[i] + (w * d / d_max if w > 0 else 0.0)

        picks.append(max((i for i in avail if i not in picks), key=value))
    return [int(i) for i in picks]


def test_hybrid_with_weight_zero_is_uncertainty(make_obs):
    for seed in range(5):
        obs = make_obs(seed)
        hybrid = make_agent("hybrid", weight_start=0.0, weight_end=0.0).act(obs, {}, 5, np.random.default_rng(seed))
        unc = make_agent("uncertainty").act(obs, {}, 5, np.random.default_rng(seed))
        assert hybrid.tolist() == unc.tolist() == _top(obs, "force_std_max", 5)


def test_hybrid_weight_follows_budget_used(make_obs):
    """weight = start + (end - start) * budget_used, each round; checked against the greedy reference,
    on observations where a constant weight or a reversed schedule would pick differently."""
    start, end, k = 1.5, 0.1, 6
    differs_over_budget = differs_from_reversed = False
    for seed in range(4):
        per_budget = []
        for used in (0.0, 0.25, 0.6, 1.0):
            obs = make_obs(seed, budget_used=used)
            w = start + (end - start) * used
            got = make_agent("hybrid", weight_start=start, weight_end=end).act(obs, {}, k, np.random.default_rng(0))
            assert got.tolist() == _hybrid_reference(obs, k, w)
            per_budget.append(got.tolist())
            reversed_w = end + (start - end) * used
            differs_from_reversed |= _hybrid_reference(obs, k, reversed_w) != got.tolist()
        differs_over_budget |= len({tuple(p) for p in per_budget}) > 1
    assert differs_over_budget and differs_from_reversed


def test_hybrid_at_budget_end_is_uncertainty_and_at_start_spreads_out(make_obs):
    obs = make_obs(2, budget_used=1.0)
    assert make_agent("hybrid").act(obs, {}, 5, np.random.default_rng(0)).tolist() == _top(obs, "force_std_max", 5)
    # a fixed weight without a schedule is the same greedy rule
    obs = make_obs(2, budget_used=0.0)
    fixed = Strategy("w1", FarthestPoint(weight=1.0), score=make_agent("hybrid").score)
    assert make_agent("hybrid").act(obs, {}, 5, np.random.default_rng(0)).tolist() == fixed.act(
        obs, {}, 5, np.random.default_rng(0)
    ).tolist()


def test_schedule_needs_a_weighted_selector():
    with pytest.raises(ValueError, match="weight"):
        Strategy("bad", TopK(), score=feature_score("force_std_max"), schedule=Linear())


def _anti_correlated(make_obs, seed: int) -> dict:
    """Uncertainty falls with distance from the labelled set: diversity alone would pick the
    candidates the prefilter removes."""
    obs = make_obs(seed, n=40)
    d = _f(obs, "dist_to_train")
    obs["candidates"][:, CANDIDATE_FEATURES.index("force_std_max")] = 1.0 / (1.0 + d) + 1e-3 * np.arange(40) / 40
    return obs


def _fps_reference(X: np.ndarray, d0: np.ndarray, allowed: np.ndarray, k: int) -> list[int]:
    picks: list[int] = []
    for _ in range(k):
        def dist(i: int) -> float:
            return min([d0[i]] + [float(np.linalg.norm(X[i] - X[j])) for j in picks])

        picks.append(max((i for i in allowed if i not in picks), key=dist))
    return [int(i) for i in picks]


@pytest.mark.parametrize("seed", range(3))
def test_prefilter_fps_keeps_only_the_most_uncertain(seed, make_obs):
    obs, k, factor = _anti_correlated(make_obs, seed), 3, 2
    keep = _top(obs, "force_std_max", factor * k)
    got = make_agent("prefilter-fps", factor=factor).act(obs, {}, k, np.random.default_rng(0))
    X, d0 = obs["embedding"].astype(np.float64), _f(obs, "dist_to_train")
    assert set(got.tolist()) <= set(keep)
    assert got.tolist() == _fps_reference(X, d0, np.array(sorted(keep)), k)
    # without the prefilter FPS would take candidates outside the kept set
    plain = make_agent("fps").act(obs, {}, k, np.random.default_rng(0))
    assert not set(plain.tolist()) <= set(keep)


def _maxdet_reference(obs: dict, allowed: list[int], k: int, noise: float = 1e-6) -> list[int]:
    """Greedy max log det(K_S + noise I) over S = labelled + picks + [i], kernel on embeddings scaled by
    force_std_mean, length scale the median pairwise distance of the allowed candidates."""
    X, s = obs["embedding"].astype(np.float64), _f(obs, "force_std_mean")
    sub = X[sorted(allowed)]
    pd = np.sqrt(((sub[:, None] - sub[None]) ** 2).sum(-1))
    length = float(np.median(pd[np.triu_indices(len(sub), 1)]))
    K = np.outer(s, s) * np.exp(-((X[:, None] - X[None]) ** 2).sum(-1) / (2 * length**2))
    labelled = np.flatnonzero(obs["mask"] == 0).tolist()
    picks: list[int] = []
    for _ in range(k):
        def logdet(i: int) -> float:
            S = labelled + picks + [i]
            return np.linalg.slogdet(K[np.ix_(S, S)] + noise * np.eye(len(S)))[1]

        picks.append(max((i for i in sorted(allowed) if i not in picks), key=logdet))
    return [int(i) for i in picks]


@pytest.mark.parametrize("seed", range(3))
def test_prefilter_maxdet_keeps_only_the_most_uncertain(seed, make_obs):
    obs, k, factor = _anti_correlated(make_obs, seed), 3, 2
    obs["mask"][20:] = 0  # keep the brute force small
    keep = _top(obs, "force_std_max", factor * k)
    got = make_agent("prefilter-maxdet", factor=factor).act(obs, {}, k, np.random.default_rng(0))
    assert set(got.tolist()) <= set(keep)
    assert got.tolist() == _maxdet_reference(obs, keep, k)


def test_prefilter_with_room_for_everything_keeps_everything(make_obs):
    obs = make_obs(5, n=20)
    k = 2
    big = make_agent("prefilter-fps", factor=100).act(obs, {}, k, np.random.default_rng(0))
    avail = np.flatnonzero(obs["mask"])
    assert big.tolist() == _fps_reference(obs["embedding"].astype(np.float64), _f(obs, "dist_to_train"), avail, k)
    with pytest.raises(ValueError, match="factor"):
        make_agent("prefilter-fps", factor=0)


def _window_obs(spreads) -> dict:
    n = len(spreads)
    obs = {
        "candidates": np.zeros((n, len(CANDIDATE_FEATURES)), dtype=np.float32),
        "embedding": np.zeros((n, 2), dtype=np.float32),
        "mask": np.ones(n, dtype=np.int8),
        "globals": np.zeros(5, dtype=np.float32),
    }
    obs["candidates"][:, CANDIDATE_FEATURES.index("force_std_max")] = spreads
    return obs


def test_trust_window_in_any_subset_mode_labels_only_inside():
    obs = _window_obs([0.01, 0.2, 0.5, 3.0, 0.04, 1.2, 0.7])
    agent, rng = make_agent("trust-window", lower=0.05, upper=1.0), np.random.default_rng(0)
    info = {"any_subset": True}
    assert agent.act(obs, info, 2, rng).tolist() == [6, 2]  # inside, largest spread first
    assert agent.act(obs, info, 5, rng).tolist() == [6, 2, 1]  # only the three inside
    obs["mask"][[1, 2]] = 0
    assert agent.act(obs, info, 5, rng).tolist() == [6]
    obs["mask"][6] = 0
    assert agent.act(obs, info, 3, rng).tolist() == []  # the window is empty: no labels
    # where exactly k picks are required, the closest outside the window fill the batch
    assert agent.act(obs, {"any_subset": False}, 3, rng).tolist() == [4, 0, 5]
