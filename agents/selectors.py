"""Selectors: how a strategy turns the round's scores into a batch, all with one signature

    select(obs, info, scores, k, mask, rng) -> (k,) int64

``obs`` and ``info`` are what the environment returned; ``scores`` is the strategy's score per candidate
(``(N,)`` float64, or None for strategies without one); ``mask`` (``(N,)`` 0/1) marks the candidates the
selector may pick, which is ``obs["mask"]`` or a prefilter's subset of it; ``rng`` is the only source of
randomness. The result holds k distinct indices with ``mask == 1``, in the order picked; an impossible
request (k < 1 or more than the mask offers) raises ValueError.

A selector reads from ``obs`` what it needs: the descriptor embedding (``obs["embedding"]``), the distance
to the labelled set (feature ``dist_to_train``) and the labelled candidates (``obs["mask"] == 0``). The
scores mean what the selector says: the ranking (``TopK``), a bonus added to the distance
(``FarthestPoint``), sampling weights (``KMeansPP``) or the kernel amplitude: the ensemble force spread
(``MaxDet``) or the epistemic-to-noise ratio per force component (``InformationGain``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from agents.algorithms import _check, fps_select, kmeanspp_select, maxdet_select, topk_select
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


def _maxdet(obs: dict, scores: Scores, k: int, mask: np.ndarray, rng: Generator, noise: float) -> np.ndarray:
    labelled = np.flatnonzero(obs["mask"] == 0)
    return maxdet_select(obs["embedding"], k, mask, rng, scale=scores, conditioned=labelled, noise=noise)


@dataclass(frozen=True)
class MaxDet:
    """Greedy maximum determinant of an RBF kernel on the embeddings, scaled by the scores
    (``s_i s_j exp(-|x_i - x_j|^2 / 2 l^2)``, l the median pairwise distance of the available
    candidates), conditioned on the labelled candidates (``obs["mask"] == 0``) with noise variance
    ``noise`` (eV/Angstrom)^2 when the scores are force spreads."""

    noise: float = 1e-6

    def __call__(self, obs: dict, info: dict, scores: Scores, k: int, mask: np.ndarray, rng: Generator) -> np.ndarray:
        return _maxdet(obs, scores, k, mask, rng, self.noise)


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
        return _maxdet(obs, _need(scores, "information-gain"), k, mask, rng, 1.0)


SELECTORS: dict[str, Selector] = {
    "topk": TopK(),
    "random": RandomSubset(),
    "fps": FarthestPoint(),
    "kmeans++": KMeansPP(),
    "maxdet": MaxDet(),
    "information-gain": InformationGain(),
}
