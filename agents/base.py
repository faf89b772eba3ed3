"""The agent interface and the registry of named strategies."""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

from agents.scores import _unit, aleatoric_noise, feature, feature_score, global_feature
from agents.selectors import fps_select, kmeanspp_select, maxdet_select, topk_select


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


class PrefilterAgent:
    """Uncertainty prefilter, then a diverse batch: keep the ``factor * k`` candidates with the largest
    ``uncertainty`` feature, and choose k of them with ``selector`` (``fps``, ``kmeans++`` or ``maxdet``)."""

    def __init__(self, uncertainty: str = "force_std_max", selector: str = "fps", factor: int = 5):
        if selector not in ("fps", "kmeans++", "maxdet"):
            raise ValueError(f"prefilter selector must be fps, kmeans++ or maxdet, got {selector!r}")
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        self.uncertainty, self.selector, self.factor = uncertainty, selector, int(factor)
        self.name = f"prefilter-{selector}"

    def act(self, obs: dict, info: dict, k: int, rng: np.random.Generator) -> np.ndarray:
        mask = obs["mask"]
        keep = topk_select(feature(obs, self.uncertainty), min(self.factor * k, int(mask.sum())), mask, rng)
        sub = np.zeros_like(mask)
        sub[keep] = 1
        return _diverse(self.selector, obs, k, sub, rng)


class DiverseAgent:
    """A batch selector on its own: ``kmeans++`` (distance-weighted sampling) or ``maxdet`` (greedy
    maximum determinant of a kernel on descriptor embeddings, scaled by the ensemble force spread)."""

    def __init__(self, selector: str = "maxdet"):
        if selector not in ("kmeans++", "maxdet"):
            raise ValueError(f"selector must be kmeans++ or maxdet, got {selector!r}")
        self.selector = selector
        self.name = selector

    def act(self, obs: dict, info: dict, k: int, rng: np.random.Generator) -> np.ndarray:
        return _diverse(self.selector, obs, k, obs["mask"], rng)


def _diverse(selector: str, obs: dict, k: int, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    emb = obs["embedding"]
    dist = feature(obs, "dist_to_train")
    if selector == "fps":
        return fps_select(emb, k, mask, rng, initial_distance=dist)
    if selector == "kmeans++":
        return kmeanspp_select(emb, k, mask, rng, initial_distance=dist)
    # maxdet: condition on the labelled pool entries, scale the kernel by the force spread
    labelled = np.flatnonzero(obs["mask"] == 0)
    return maxdet_select(emb, k, mask, rng, scale=feature(obs, "force_std_mean"), conditioned=labelled)


class InformationGainAgent:
    """Greedy batch information gain: maximise ``0.5 log det(I + K_B / s_al^2)`` over the batch B, with K a
    kernel on descriptor embeddings scaled by the ensemble force spread (epistemic), conditioned on the
    labelled candidates, and ``s_al`` the aleatoric noise level (see ``agents.scores.aleatoric_noise``).

    Each greedy step picks the largest posterior variance given the labelled data and the picks so far,
    observed with noise ``s_al^2``: where the noise dominates the spread, a label teaches little, and
    candidates that resemble one another share their gain.
    """

    name = "information-gain"

    def __init__(self, noise_floor: float = 0.01):
        self.noise_floor = float(noise_floor)

    def act(self, obs: dict, info: dict, k: int, rng: np.random.Generator) -> np.ndarray:
        s_al = aleatoric_noise(info, self.noise_floor)
        labelled = np.flatnonzero(obs["mask"] == 0)
        return maxdet_select(
            obs["embedding"], k, obs["mask"], rng, scale=feature(obs, "force_std_mean"),
            conditioned=labelled, noise=s_al**2,
        )


class TrustWindowAgent:
    """Label only candidates whose spread lies between ``lower`` and ``upper`` (eV/Angstrom), as on-the-fly
    codes do: below, the model is trusted; above, the configuration is taken as unphysical.

    Pool mode needs exactly k picks: the largest spreads inside the window first; if the window holds
    fewer than k, the rest are those closest to the window (below it before above it). Where the
    environment allows any subset (``info["any_subset"]``, on-the-fly mode), only candidates inside the
    window are labelled, largest spreads first, up to k; none if the window is empty.
    """

    def __init__(self, feature: str = "force_std_max", lower: float = 0.05, upper: float = 1.0):
        if not 0 <= lower < upper:
            raise ValueError(f"need 0 <= lower < upper, got {lower}, {upper}")
        self.feature, self.lower, self.upper = feature, float(lower), float(upper)
        self.name = "trust-window"

    def act(self, obs: dict, info: dict, k: int, rng: np.random.Generator) -> np.ndarray:
        x = feature(obs, self.feature)
        inside = (x >= self.lower) & (x <= self.upper)
        # inside: rank by spread (2 + x / upper in (2, 3]); outside: closeness to the window, below first
        below = 1.0 - (self.lower - x) / max(self.lower, 1e-12)
        above = -(x - self.upper) / self.upper
        score = np.where(inside, 2.0 + x / self.upper, np.where(x < self.lower, below, above))
        if info.get("any_subset"):
            window = (inside & (obs["mask"] == 1)).astype(np.int8)
            if not window.any():
                return np.zeros(0, dtype=np.int64)
            return topk_select(score, min(k, int(window.sum())), window, rng)
        return topk_select(score, k, obs["mask"], rng)


AGENTS: dict[str, Callable[..., Agent]] = {
    "random": RandomAgent,
    "uncertainty": lambda feature="force_std_max": ScoreSelect("uncertainty", feature_score(feature)),
    "qbc-energy": lambda: ScoreSelect("qbc-energy", feature_score("energy_std")),
    "qbc-force-mean": lambda: ScoreSelect("qbc-force-mean", feature_score("force_std_mean")),
    "qbc-force-rel": lambda: ScoreSelect("qbc-force-rel", feature_score("force_std_rel")),
    "distance": lambda: ScoreSelect("distance", feature_score("dist_to_train")),
    "information-gain": lambda noise_floor=0.01: InformationGainAgent(noise_floor),
    "fps": FPSAgent,
    "kmeans++": lambda: DiverseAgent("kmeans++"),
    "maxdet": lambda: DiverseAgent("maxdet"),
    "hybrid": HybridAgent,
    "prefilter-fps": lambda uncertainty="force_std_max", factor=5: PrefilterAgent(uncertainty, "fps", factor),
    "prefilter-maxdet": lambda uncertainty="force_std_max", factor=5: PrefilterAgent(uncertainty, "maxdet", factor),
    "trust-window": TrustWindowAgent,
}


def make_agent(name: str, **kwargs: Any) -> Agent:
    """Build a registered strategy by name; an unknown name lists the known ones."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; known agents: {', '.join(sorted(AGENTS))}")
    return AGENTS[name](**kwargs)
