"""A home for learned policies: an agent that builds its batch from single picks of a callable policy.

A policy is ``policy(obs, info, available, rng) -> int | None``: the index of one candidate with
``available == 1`` (``available`` is obs["mask"] less the picks made so far this round), or None to
stop. ``PolicyAgent`` asks it up to k times, masking each pick; stopping early is allowed only where the
environment allows any subset (``info["any_subset"]``). Any callable policy can be wrapped this way; the
project's own trained policy, loaded from a checkpoint, is ``agents.policy.LearnedPolicy``
(``agent=learned``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from agents.strategy import check_k

Policy = Callable[[dict, dict, np.ndarray, np.random.Generator], "int | None"]


class PolicyAgent:
    """Sequential picks of ``policy`` (see the module docstring), as an agent with
    ``act(obs, info, k, rng) -> int64 indices`` in the order picked."""

    def __init__(self, policy: Policy, name: str = "learned"):
        self.policy = policy
        self.name = name

    def act(self, obs: dict, info: dict, k: int, rng: np.random.Generator) -> np.ndarray:
        """Up to k picks (exactly k unless ``info["any_subset"]``), each one call of the policy."""
        k = check_k(k, obs["mask"])
        available = np.asarray(obs["mask"]).astype(np.int8)  # a copy: the observation stays as it is
        picks: list[int] = []
        for _ in range(k):
            i = self.policy(obs, info, available.copy(), rng)
            if i is None:
                if not info.get("any_subset", False):
                    raise ValueError(f"{self.name}: the policy stopped after {len(picks)} of {k} required picks")
                break
            i = int(i)
            if not 0 <= i < len(available) or available[i] != 1:
                raise ValueError(f"{self.name}: the policy picked {i}, which is not available")
            picks.append(i)
            available[i] = 0
        return np.array(picks, dtype=np.int64)


def greedy_policy(score: Callable[[dict, dict], np.ndarray]) -> Policy:
    """The policy that picks the available candidate with the largest ``score(obs, info)`` (the first
    such index on ties); with a spread feature as score it reproduces ``uncertainty`` on distinct values."""

    def policy(obs: dict, info: dict, available: np.ndarray, rng: np.random.Generator) -> int:
        s = np.asarray(score(obs, info), dtype=np.float64)
        return int(np.argmax(np.where(available == 1, s, -np.inf)))

    return policy
