"""Batch selectors: ``select(..., k, mask, rng) -> (k,)`` distinct indices where mask is 1."""

from __future__ import annotations

import numpy as np


def _check(k: int, mask: np.ndarray) -> np.ndarray:
    avail = np.flatnonzero(np.asarray(mask).astype(bool))
    if k < 1 or k > len(avail):
        raise ValueError(f"cannot select {k} of {len(avail)} available candidates")
    return avail


def topk_select(scores: np.ndarray, k: int, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The k highest-scoring available candidates; ties broken at random (by ``rng``)."""
    avail = _check(k, mask)
    shuffled = rng.permutation(avail)
    order = np.argsort(-scores[shuffled], kind="stable")
    return shuffled[order[:k]].astype(np.int64)


def fps_select(
    embedding: np.ndarray,
    k: int,
    mask: np.ndarray,
    rng: np.random.Generator,
    initial_distance: np.ndarray | None = None,
    bonus: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy farthest point sampling in embedding space.

    Each pick is the available candidate farthest from everything labelled (``initial_distance``, the
    distance to the labelled set; infinite if None) and from the picks so far. With ``bonus`` the pick
    maximises ``bonus + distance`` instead (uncertainty plus a diversity term). Ties go to ``rng``.
    """
    avail = _check(k, mask)
    X = embedding.astype(np.float64)
    d = np.full(len(X), np.inf) if initial_distance is None else initial_distance.astype(np.float64).copy()
    extra = np.zeros(len(X)) if bonus is None else bonus.astype(np.float64)
    free = np.zeros(len(X), dtype=bool)
    free[avail] = True
    tiebreak = rng.random(len(X)) * 1e-12
    picks = []
    for _ in range(k):
        unseen = free & np.isinf(d)
        if unseen.any():  # nothing labelled or picked yet: the bonus (and the rng) decide among these
            value = np.where(unseen, extra + tiebreak, -np.inf)
        else:
            value = np.where(free, extra + d + tiebreak, -np.inf)
        i = int(np.argmax(value))
        picks.append(i)
        free[i] = False
        d = np.minimum(d, np.linalg.norm(X - X[i], axis=1))
    return np.array(picks, dtype=np.int64)


SELECTORS = {"topk": topk_select, "fps": fps_select}
