"""Batch selection algorithms on plain arrays: ``xxx_select(values, k, mask, rng, ...) -> (k,)`` int64,
k distinct indices where ``mask`` is 1, in the order picked. ``agents.selectors`` wraps them for strategies."""

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


def kmeanspp_select(
    embedding: np.ndarray,
    k: int,
    mask: np.ndarray,
    rng: np.random.Generator,
    initial_distance: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Diverse batch by k-means++ seeding: each pick drawn with probability proportional to
    ``weight * D^2``, D the distance to the labelled set (``initial_distance``) and to the picks so far.

    Unlike FPS it does not always take the extreme point, so outliers are less over-sampled.
    """
    avail = _check(k, mask)
    X = embedding.astype(np.float64)
    d = np.full(len(X), np.inf) if initial_distance is None else initial_distance.astype(np.float64).copy()
    w = np.ones(len(X)) if weights is None else np.clip(weights.astype(np.float64), 0.0, None)
    free = np.zeros(len(X), dtype=bool)
    free[avail] = True
    picks = []
    for _ in range(k):
        cand = np.flatnonzero(free)
        if np.isinf(d[cand]).any():  # nothing to measure from yet: weights alone
            p = w[cand] * np.isinf(d[cand])
        else:
            p = w[cand] * d[cand] ** 2
        if not np.isfinite(p).all() or p.sum() <= 0:
            p = np.ones(len(cand))
        i = int(rng.choice(cand, p=p / p.sum()))
        picks.append(i)
        free[i] = False
        d = np.minimum(d, np.linalg.norm(X - X[i], axis=1))
    return np.array(picks, dtype=np.int64)


def median_distance(X: np.ndarray) -> float:
    """Median pairwise Euclidean distance between the rows of ``X``; 1.0 if undefined or zero."""
    pd = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    med = float(np.median(pd[np.triu_indices(len(X), 1)])) if len(X) > 1 else 1.0
    return med if med > 0 else 1.0


def maxdet_select(
    features: np.ndarray,
    k: int,
    mask: np.ndarray,
    rng: np.random.Generator,
    scale: np.ndarray | None = None,
    conditioned: np.ndarray | None = None,
    length_scale: float | None = None,
    noise: float = 1e-6,
) -> np.ndarray:
    """Greedy maximum-determinant batch (in the spirit of MaxDet / LCMD): each pick maximises the posterior
    variance of a Gaussian-process kernel given the labelled points (``conditioned``, rows of ``features``)
    and the picks so far, which greedily maximises log det of the batch's kernel matrix.

    Kernel: ``s_i s_j exp(-|x_i - x_j|^2 / (2 l^2))`` with ``s = scale`` (e.g. ensemble spread, so
    uncertain and mutually different candidates win) and ``l`` the median pairwise distance by default.
    Ties are broken by ``rng``.
    """
    avail = _check(k, mask)
    X = features.astype(np.float64)
    s = np.ones(len(X)) if scale is None else scale.astype(np.float64)
    if length_scale is None:
        length_scale = median_distance(X[avail[: min(len(avail), 500)]])

    def kernel_col(j: int) -> np.ndarray:
        return s * s[j] * np.exp(-((X - X[j]) ** 2).sum(1) / (2 * length_scale**2))

    var = s**2 + noise
    # Incremental pivoted Cholesky: after conditioning on rows c_1..c_m, var = diag of the posterior.
    basis: list[np.ndarray] = []

    def condition_on(j: int) -> None:
        nonlocal var
        col = kernel_col(j)
        for b in basis:
            col = col - b * b[j]
        pivot = col[j] + noise
        if pivot <= noise:
            return
        b = col / np.sqrt(pivot)
        basis.append(b)
        var = np.maximum(var - b**2, 0.0)

    for j in ([] if conditioned is None else np.asarray(conditioned, dtype=np.int64)):
        condition_on(int(j))
    free = np.zeros(len(X), dtype=bool)
    free[avail] = True
    tiebreak = rng.random(len(X)) * 1e-12
    picks = []
    for _ in range(k):
        i = int(np.argmax(np.where(free, var + tiebreak, -np.inf)))
        picks.append(i)
        free[i] = False
        condition_on(i)
    return np.array(picks, dtype=np.int64)


def lcmd_select(
    features: np.ndarray,
    k: int,
    mask: np.ndarray,
    conditioned: np.ndarray | None = None,
    initial_distance: np.ndarray | None = None,
    initial_centre: np.ndarray | None = None,
) -> np.ndarray:
    """Largest-cluster maximum-distance batch (LCMD, Holzmueller et al. 2023, TP mode): deterministic.

    Centres are the labelled points: the rows ``conditioned`` of ``features``, and centres given only through
    each row's distance ``initial_distance`` to its nearest one and that centre's id ``initial_centre``
    (any integers, -1 for none; e.g. the labelled set outside the candidates). Every available candidate
    (``mask``) belongs to its nearest centre (Euclidean distance between rows of ``features``). Each pick is
    taken from the cluster whose members' squared distances to their centre sum highest: the member
    farthest from that centre. The pick becomes a centre and its cluster splits. With no centre at all the
    first pick is the candidate of largest norm (so is any pick while candidates without a centre, infinitely
    far from everything, are left). Ties go to the lowest index. As bmdal_reg's
    ``LargestClusterMaxDistSelectionMethod`` (``bmdal_reg/bmdal/selection.py``, ``dist_weight_mode="sq-dist"``),
    except that cluster sizes sum over the available candidates only.
    """
    avail = _check(k, mask)
    X = np.asarray(features, dtype=np.float64)[avail]
    n = len(avail)
    sq = np.full(n, np.inf)
    centre = np.full(n, -1, dtype=np.int64)
    if initial_distance is not None:
        if initial_centre is None:
            raise ValueError("initial_distance needs initial_centre: the id of each candidate's nearest centre")
        d = np.asarray(initial_distance, dtype=np.float64)[avail]
        c = np.asarray(initial_centre, dtype=np.int64)[avail]
        known = (c >= 0) & np.isfinite(d)
        sq[known], centre[known] = d[known] ** 2, c[known]
    next_id = int(centre.max(initial=-1)) + 1  # ids of row centres and picks follow the given ones
    rows = [] if conditioned is None else np.asarray(conditioned, dtype=np.int64)
    if len(rows):
        C = np.asarray(features, dtype=np.float64)[rows]
        d2 = (X**2).sum(1)[:, None] + (C**2).sum(1)[None, :] - 2.0 * X @ C.T  # (n, L), chunk-free: L is small
        d2 = np.maximum(d2, 0.0)
        j = d2.argmin(1)
        closer = d2[np.arange(n), j] < sq
        sq[closer], centre[closer] = d2[np.arange(n), j][closer], next_id + j[closer]
        next_id += len(rows)
    free = np.ones(n, dtype=bool)
    norm = (X**2).sum(1)
    picks = []
    for _ in range(k):
        unassigned = free & (centre < 0)
        if unassigned.any():  # no centre to measure from (infinitely far): the largest norm
            i = int(np.argmax(np.where(unassigned, norm, -np.inf)))
        else:
            size = np.bincount(centre[free], weights=sq[free], minlength=next_id)
            largest = free & (size[centre] == size.max())
            i = int(np.argmax(np.where(largest, sq, -np.inf)))
        picks.append(int(avail[i]))
        free[i] = False
        d2 = ((X - X[i]) ** 2).sum(1)
        closer = d2 < sq
        sq[closer], centre[closer] = d2[closer], next_id
        next_id += 1
    return np.array(picks, dtype=np.int64)
