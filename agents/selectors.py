"""Selectors: how a strategy turns the round's scores into a batch, all with one signature

    select(obs, info, scores, k, mask, rng) -> (k,) int64

``obs`` and ``info`` are what the environment returned; ``scores`` is the strategy's score per candidate
(``(N,)`` float64, or None for strategies without one); ``mask`` (``(N,)`` 0/1) marks the candidates the
selector may pick, which is ``obs["mask"]`` or a prefilter's subset of it; ``rng`` is the only source of
randomness. The result holds k distinct indices with ``mask == 1``, in the order picked; an impossible
request (k < 1 or more than the mask offers) raises ValueError.

A selector reads from ``obs`` what it needs: the descriptor embedding (``obs["embedding"]``), the distance
to the labelled set (feature ``dist_to_train``) and the labelled candidates (``obs["mask"] == 0``); ``LCMD``
reads the model's own features (``obs["model_features"]`` and the labelled set in that space, opt-in keys of
``alenv.observe.MODEL_KEYS``). The
scores mean what the selector says: the ranking (``TopK``), a bonus added to the distance
(``FarthestPoint``), sampling weights (``KMeansPP``) or the kernel amplitude: the ensemble force spread
(``MaxDet``) or the epistemic-to-noise ratio per force component (``InformationGain``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from agents.algorithms import _check, fps_select, kmeanspp_select, lcmd_select, maxdet_select, topk_select
from agents.scores import feature


Scores = np.ndarray | None
Generator = np.random.Generator


class Selector(Protocol):
    """``select(obs, info, scores, k, mask, rng) -> (k,) int64``: see the module docstring."""

    def __call__(self, obs: dict, info: dict, scores: Scores, k: int, mask: np.ndarray, rng: Generator) -> np.ndarray:
        ...


def _need(scores: np.ndarray | None, who: str) -> np.ndarray:
    if scores is None:
        raise ValueError(f"the {who} selector needs scores")
    return scores


@dataclass(frozen=True)
class TopK:
    """The k highest scores; ties broken by ``rng``."""

    def __call__(self, obs: dict, info: dict, scores: Scores, k: int, mask: np.ndarray, rng: Generator) -> np.ndarray:
        return topk_select(_need(scores, "top-k"), k, mask, rng)


@dataclass(frozen=True)
class RandomSubset:
    """k distinct candidates uniformly at random, in increasing index order; ignores the scores."""

    def __call__(self, obs: dict, info: dict, scores: Scores, k: int, mask: np.ndarray, rng: Generator) -> np.ndarray:
        avail = _check(k, mask)
        return np.sort(rng.choice(avail, size=k, replace=False)).astype(np.int64)


@dataclass(frozen=True)
class FixedInterval:
    """On-the-fly mode: label MD frames at a fixed interval, whatever the model thinks of them. Each walker's
    newest available frame first (walkers in index order), then the next newest, until k: with k = walkers
    this labels every ``steps_per_round``-th frame of every walker, the schedule that uncertainty-gated
    labelling (``trust-window``) is compared with. Reads ``info["slot_walker"]``; ignores scores and rng."""

    def __call__(self, obs: dict, info: dict, scores: Scores, k: int, mask: np.ndarray, rng: Generator) -> np.ndarray:
        avail = _check(k, mask)
        if "slot_walker" not in info:
            raise ValueError("fixed-interval labelling needs on-the-fly candidates (info['slot_walker']); pool "
                             "candidates have no MD order")
        walker = np.asarray(info["slot_walker"])
        if walker.shape != mask.shape:
            raise ValueError(f"info['slot_walker'] has shape {walker.shape}, the mask {mask.shape}")
        rank: dict[int, int] = {}  # 0 for each walker's newest available slot, 1 for the next, ...
        for w in np.unique(walker[avail]):
            for r, i in enumerate(avail[walker[avail] == w][::-1]):
                rank[int(i)] = r
        picks = sorted(rank, key=lambda i: (rank[i], walker[i]))[:k]
        return np.sort(np.asarray(picks, dtype=np.int64))


def _finite_max(x: np.ndarray, mask: np.ndarray) -> float:
    """Largest available value of ``x`` if it is finite and positive, else 1.0."""
    avail = x[mask.astype(bool)]
    return float(avail.max()) if len(avail) and np.isfinite(avail.max()) and avail.max() > 0 else 1.0


@dataclass(frozen=True)
class FarthestPoint:
    """Greedy farthest point sampling in embedding space, from the labelled set and the picks so far.

    Without scores each pick is the farthest available candidate. With scores, each pick maximises
    ``scores + weight * d / d_max``, d the distance to the labelled set and the picks so far and d_max the
    largest finite ``dist_to_train`` of the available candidates; ``weight <= 0`` is the top-k of the
    scores. A strategy's schedule may set ``weight`` every round.
    """

    weight: float = 1.0

    def __call__(self, obs: dict, info: dict, scores: Scores, k: int, mask: np.ndarray, rng: Generator) -> np.ndarray:
        dist = feature(obs, "dist_to_train")
        if scores is None:
            return fps_select(obs["embedding"], k, mask, rng, initial_distance=dist)
        if self.weight <= 0:
            return topk_select(scores, k, mask, rng)
        # fps_select maximises bonus + distance; dividing the distance by d_max / weight weights it so.
        s = _finite_max(dist, mask) / self.weight
        return fps_select(obs["embedding"] / s, k, mask, rng, initial_distance=dist / s, bonus=scores)


@dataclass(frozen=True)
class KMeansPP:
    """k-means++ seeding: each pick drawn with probability proportional to ``D^2`` (times the scores,
    if given, as weights), D the distance to the labelled set and to the picks so far."""

    def __call__(self, obs: dict, info: dict, scores: Scores, k: int, mask: np.ndarray, rng: Generator) -> np.ndarray:
        dist = feature(obs, "dist_to_train")
        return kmeanspp_select(obs["embedding"], k, mask, rng, initial_distance=dist, weights=scores)


def _maxdet(obs: dict, info: dict, scores: Scores, k: int, mask: np.ndarray, rng: Generator, noise: float) -> np.ndarray:
    # pool mode: candidates already labelled carry mask 0; on the fly a 0 marks an empty slot (a walker that
    # gave up, its embedding zeros), not a label, so nothing there to condition on
    labelled = np.zeros(0, dtype=np.int64) if info.get("any_subset", False) else np.flatnonzero(obs["mask"] == 0)
    return maxdet_select(obs["embedding"], k, mask, rng, scale=scores, conditioned=labelled, noise=noise)


@dataclass(frozen=True)
class MaxDet:
    """Greedy maximum determinant of an RBF kernel on the embeddings, scaled by the scores
    (``s_i s_j exp(-|x_i - x_j|^2 / 2 l^2)``, l the median pairwise distance of the available
    candidates), conditioned on the labelled candidates (``obs["mask"] == 0``; pool mode) with noise variance
    ``noise`` (eV/Angstrom)^2 when the scores are force spreads."""

    noise: float = 1e-6

    def __call__(self, obs: dict, info: dict, scores: Scores, k: int, mask: np.ndarray, rng: Generator) -> np.ndarray:
        return _maxdet(obs, info, scores, k, mask, rng, self.noise)


@dataclass(frozen=True)
class InformationGain:
    """Greedy batch information gain ``0.5 log det(I + A K_B A)`` (nats per force component), ``K`` the RBF
    kernel on the embeddings (as ``MaxDet``) and ``A = diag(a)``, ``a`` the scores: the ratio of epistemic
    to aleatoric standard deviation per force component (``agents.scores.signal_to_noise``), so the noise
    may differ from candidate to candidate. This is ``MaxDet`` on the whitened kernel ``a_i a_j k_ij`` with
    unit noise, conditioned on the labelled candidates; its first pick maximises the single-label gain
    ``0.5 log(1 + a_i^2)``. Where the noise dominates the spread a label teaches little, and candidates
    that resemble one another share their gain."""

    def __call__(self, obs: dict, info: dict, scores: Scores, k: int, mask: np.ndarray, rng: Generator) -> np.ndarray:
        return _maxdet(obs, info, _need(scores, "information-gain"), k, mask, rng, 1.0)


_warned_fallback: set[str] = set()  # selectors that already said they fell back to the embedding


def model_space(obs: dict, who: str) -> tuple[np.ndarray, bool]:
    """The feature space of a model-feature selector: ``obs["model_features"]`` and True, or, where the
    environment was made without it (``model_features=0``, the default), ``obs["embedding"]`` and False,
    with a warning once per process and selector (the strategy then runs on descriptor embeddings, which
    is a different method: enable the key with ``gym.make(..., model_features=512)``)."""
    if "model_features" in obs:
        return obs["model_features"], True
    if who not in _warned_fallback:
        _warned_fallback.add(who)
        warnings.warn(
            f"{who}: the observation has no 'model_features' (make the environment with model_features=P, "
            "e.g. 512); falling back to the descriptor embedding obs['embedding']",
            UserWarning,
            stacklevel=4,
        )
    return obs["embedding"], False


@dataclass(frozen=True)
class LCMD:
    """Largest cluster maximum distance (Holzmueller et al. 2023, TP mode) on the model's features.

    The labelled configurations are cluster centres, every available candidate belongs to its nearest
    centre, and each pick is the member farthest from its centre in the cluster with the largest sum of
    squared distances; the pick becomes a centre (``agents.algorithms.lcmd_select``). Feature space:
    ``obs["model_features"]``, with the labelled set given by ``obs["model_dist_to_train"]`` and
    ``obs["model_nearest_train"]`` (every successful label, initial ones included, in either mode). Without
    them it falls back, with a warning, to ``obs["embedding"]`` with the labelled candidates
    (``obs["mask"] == 0``, pool mode only: on the fly a masked slot is empty) as centres. Ignores the
    scores; deterministic (ties to the lowest index), so it never draws from ``rng``.
    """

    def __call__(self, obs: dict, info: dict, scores: Scores, k: int, mask: np.ndarray, rng: Generator) -> np.ndarray:
        X, is_model = model_space(obs, "lcmd")
        if is_model and "model_nearest_train" in obs:
            return lcmd_select(
                X, k, mask, initial_distance=obs["model_dist_to_train"], initial_centre=obs["model_nearest_train"]
            )
        labelled = None if info.get("any_subset", False) else np.flatnonzero(obs["mask"] == 0)
        return lcmd_select(X, k, mask, conditioned=labelled)


SELECTORS: dict[str, Selector] = {
    "topk": TopK(),
    "random": RandomSubset(),
    "fps": FarthestPoint(),
    "kmeans++": KMeansPP(),
    "maxdet": MaxDet(),
    "fixed-interval": FixedInterval(),
    "information-gain": InformationGain(),
    "lcmd": LCMD(),
}
