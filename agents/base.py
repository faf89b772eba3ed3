"""The agent interface and the registry of named strategies."""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

from agents.scores import _unit, feature, feature_score, global_feature
from agents.selectors import fps_select, topk_select


class Agent(Protocol):
    """Sees only what the environment returns; never reaches into it."""

    name: str

    def act(self, obs: dict, info: dict, k: int, rng: np.random.Generator) -> np.ndarray:
        """k distinct indices of candidates with obs["mask"] == 1."""
        ...


class ScoreSelect:
    """A score function composed with the top-k selector."""

    def __init__(self, name: str, score: Callable[[dict, dict], np.ndarray]):
        self.name = name
        self.score = score

    def act(self, obs: dict, info: dict, k: int, rng: np.random.Generator) -> np.ndarray:
        return topk_select(self.score(obs, info), k, obs["mask"], rng)


class RandomAgent:
    """Uniformly random distinct candidates: the baseline every strategy must beat."""

    name = "random"

    def act(self, obs: dict, info: dict, k: int, rng: np.random.Generator) -> np.ndarray:
        avail = np.flatnonzero(obs["mask"])
        return np.sort(rng.choice(avail, size=k, replace=False)).astype(np.int64)


class FPSAgent:
    """Farthest point sampling in descriptor-embedding space from the labelled set, greedy in a batch."""

    name = "fps"

    def act(self, obs: dict, info: dict, k: int, rng: np.random.Generator) -> np.ndarray:
        return fps_select(obs["embedding"], k, obs["mask"], rng, initial_distance=feature(obs, "dist_to_train"))


class HybridAgent:
    """Uncertainty plus a distance bonus, greedy within the batch so picks also keep apart.

    The bonus weight moves linearly from ``weight_start`` (exploration: FPS-like) to ``weight_end``
    (exploitation: uncertainty) as the budget is spent. Both terms are scaled to [0, 1] over the pool.
    """

    name = "hybrid"

    def __init__(self, uncertainty: str = "force_std_max", weight_start: float = 1.0, weight_end: float = 0.0):
        self.uncertainty = uncertainty
        self.weight_start, self.weight_end = weight_start, weight_end

    def act(self, obs: dict, info: dict, k: int, rng: np.random.Generator) -> np.ndarray:
        used = global_feature(obs, "budget_used")
        w = self.weight_start + (self.weight_end - self.weight_start) * used
        mask = obs["mask"]
        dist = feature(obs, "dist_to_train")
        avail = dist[mask.astype(bool)]
        scale = float(avail.max()) if len(avail) and np.isfinite(avail.max()) and avail.max() > 0 else 1.0
        unc = _unit(feature(obs, self.uncertainty), mask)
        # fps_select maximises bonus + distance; dividing the distance by w keeps its weight at w.
        if w <= 0:
            return topk_select(unc, k, mask, rng)
        return fps_select(obs["embedding"] / (scale / w), k, mask, rng, initial_distance=dist / (scale / w), bonus=unc)


AGENTS: dict[str, Callable[..., Agent]] = {
    "random": RandomAgent,
    "uncertainty": lambda feature="force_std_max": ScoreSelect("uncertainty", feature_score(feature)),
    "fps": FPSAgent,
    "hybrid": HybridAgent,
}


def make_agent(name: str, **kwargs: Any) -> Agent:
    """Build a registered strategy by name; an unknown name lists the known ones."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; known agents: {', '.join(sorted(AGENTS))}")
    return AGENTS[name](**kwargs)
