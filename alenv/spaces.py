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
