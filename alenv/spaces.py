"""Action spaces whose ``sample()`` only returns what the environment would accept right now."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces


class CandidateSubset(spaces.Space):
    """k distinct candidate indices out of n, as an int64 array of shape (k,).

    ``available`` is the environment's live mask (1 = may be chosen); ``sample()`` draws k distinct
    available indices, so a sampled action is always valid for the current state.
    """

    def __init__(self, n: int, k: int, seed: int | np.random.Generator | None = None):
        if not 1 <= k <= n:
            raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
        self.n, self.k = int(n), int(k)
        self.available = np.ones(n, dtype=np.int8)
        super().__init__((k,), np.int64, seed)

    @property
    def is_np_flattenable(self) -> bool:
        return True

    def sample(self, mask: Any | None = None, probability: Any | None = None) -> np.ndarray:
        avail = np.flatnonzero(self.available if mask is None else np.asarray(mask))
        if len(avail) < self.k:
            raise ValueError(f"only {len(avail)} candidates available, cannot pick {self.k}")
        return self.np_random.choice(avail, size=self.k, replace=False).astype(np.int64)

    def contains(self, x: Any) -> bool:
        x = np.asarray(x)
        return (
            x.shape == (self.k,)
            and np.issubdtype(x.dtype, np.integer)
            and bool(np.all((x >= 0) & (x < self.n)))
            and len(np.unique(x)) == self.k
        )

    def __repr__(self) -> str:
        return f"CandidateSubset(n={self.n}, k={self.k})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, CandidateSubset) and (self.n, self.k) == (other.n, other.k)


class MaskedDiscrete(spaces.Discrete):
    """``Discrete(n)`` whose ``sample()`` respects the environment's live mask (k = 1)."""

    def __init__(self, n: int, seed: int | np.random.Generator | None = None):
        super().__init__(n, seed=seed)
        self.available = np.ones(n, dtype=np.int8)

    def sample(self, mask: Any | None = None, probability: Any | None = None) -> np.int64:
        if mask is None and probability is None:
            mask = self.available.astype(np.int8)
            if not mask.any():
                raise ValueError("no candidate is available to sample")
        return super().sample(mask=mask, probability=probability)


class LabelMask(spaces.MultiBinary):
    """On-the-fly mode's action: a 0/1 vector over the n offered candidates, 1 = send to the oracle.

    Any subset is allowed, the empty one included, as long as it holds at most ``limit`` candidates (``k``
    unless the environment lowers it, e.g. when few labels are left) and only available ones
    (``available``: the live mask). ``sample()`` draws a random number of picks between 0 and the largest
    allowed, then that many distinct available candidates.
    """

    def __init__(self, n: int, k: int, seed: int | np.random.Generator | None = None):
        if not 1 <= k:
            raise ValueError(f"need k >= 1, got {k}")
        super().__init__(n, seed=seed)
        self.k = self.limit = int(k)
        self.available = np.ones(n, dtype=np.int8)

    def sample(self, mask: Any | None = None, probability: Any | None = None) -> np.ndarray:
        avail = np.flatnonzero(self.available if mask is None else np.asarray(mask))
        m = int(self.np_random.integers(0, min(self.limit, len(avail)) + 1))
        out = np.zeros(self.n, dtype=np.int8)
        out[self.np_random.choice(avail, size=m, replace=False)] = 1
        return out

    def contains(self, x: Any) -> bool:
        x = np.asarray(x)
        return super().contains(x) and int(x.sum()) <= self.limit

    def __repr__(self) -> str:
        return f"LabelMask(n={self.n}, k={self.k})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, LabelMask) and (self.n, self.k) == (other.n, other.k)


def picks_to_action(picks: Any, obs: dict, info: dict) -> np.ndarray:
    """Turn candidate indices into a valid action for either action space.

    Pool mode (``info["any_subset"]`` false): the int64 array of indices itself. On-the-fly mode (any
    subset may be labelled): a 0/1 int8 vector over ``obs["mask"]`` with the picks set to 1. Callers
    learn how many picks a round takes from ``info["max_picks"]``, never from the environment.
    """
    idx = np.asarray(picks, dtype=np.int64).reshape(-1)
    if not info.get("any_subset", False):
        return idx
    action = np.zeros(len(obs["mask"]), dtype=np.int8)
    action[idx] = 1
    return action
