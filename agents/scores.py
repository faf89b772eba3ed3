"""Score functions: ``score(obs, info) -> (N,)``, higher means more worth labelling."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from alenv.observe import CANDIDATE_FEATURES, GLOBAL_FEATURES

ScoreFn = Callable[[dict, dict], np.ndarray]


def feature(obs: dict, name: str) -> np.ndarray:
    """One named column of obs["candidates"] as float64."""
    return obs["candidates"][:, CANDIDATE_FEATURES.index(name)].astype(np.float64)


def global_feature(obs: dict, name: str) -> float:
    return float(obs["globals"][GLOBAL_FEATURES.index(name)])


def feature_score(name: str) -> ScoreFn:
    """Score = one candidate feature (e.g. ``force_std_max`` for query by committee)."""
    if name not in CANDIDATE_FEATURES:
        raise ValueError(f"unknown candidate feature {name!r}; known: {CANDIDATE_FEATURES}")

    def score(obs: dict, info: dict) -> np.ndarray:
        return feature(obs, name)

    return score


def _unit(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] over the available candidates (so differently scaled scores can be added)."""
    avail = x[mask.astype(bool)]
    if len(avail) == 0:
        return np.zeros_like(x)
    lo, hi = avail.min(), avail.max()
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def aleatoric_noise(info: dict, noise_floor: float) -> float:
    """Aleatoric noise level (eV/Angstrom): the ensemble mean's force RMSE on its own training labels
    (``info["metrics"]["train_force_rmse"]``), what the model cannot fit even where it has data; floored
    at ``noise_floor``, which is also used when the estimate is absent."""
    metrics = info.get("metrics", {}) if isinstance(info, dict) else {}
    return max(float(metrics.get("train_force_rmse", noise_floor)), noise_floor)


SCORES: dict[str, Callable[..., ScoreFn]] = {
    "feature": feature_score,
}


def make_score(name: str, **kwargs: Any) -> ScoreFn:
    if name not in SCORES:
        raise ValueError(f"unknown score {name!r}; known: {', '.join(sorted(SCORES))}")
    return SCORES[name](**kwargs)
