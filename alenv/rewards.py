"""Reward functions: pure functions of the metrics before and after a round, and their registry."""

from __future__ import annotations

import math
from typing import Callable, Mapping

RewardFn = Callable[[Mapping[str, float], Mapping[str, float]], float]


def log_force_mae(before: Mapping[str, float], after: Mapping[str, float]) -> float:
    """Decrease of log validation force MAE: scale-free, so rounds early and late weigh alike."""
    return math.log(before["force_mae"]) - math.log(after["force_mae"])


def log_energy_mae(before: Mapping[str, float], after: Mapping[str, float]) -> float:
    """Decrease of log validation energy MAE."""
    return math.log(before["energy_mae"]) - math.log(after["energy_mae"])


def force_mae(before: Mapping[str, float], after: Mapping[str, float]) -> float:
    """Decrease of validation force MAE in eV/Angstrom."""
    return before["force_mae"] - after["force_mae"]


def round_reward(
    fn: RewardFn,
    before: Mapping[str, float],
    after: Mapping[str, float],
    cost_seconds: float,
    per_cost: bool,
    survived_fraction: float | None = None,
    stability_weight: float = 0.0,
) -> float:
    """The reward of one round, every mode: ``fn(before, after)``, divided by the round's oracle seconds
    when ``per_cost`` (and the round cost anything), plus ``stability_weight`` times the fraction of the
    next MD round's steps that model MD survived (on-the-fly mode; ``None`` where no MD followed)."""
    reward = float(fn(before, after))
    reward = reward / cost_seconds if per_cost and cost_seconds > 0 else reward
    if survived_fraction is not None:
        if not 0.0 <= survived_fraction <= 1.0:
            raise ValueError(f"survived_fraction must lie in [0, 1], got {survived_fraction}")
        reward += stability_weight * survived_fraction
    return reward


REWARDS: dict[str, RewardFn] = {
    "log_force_mae": log_force_mae,
    "log_energy_mae": log_energy_mae,
    "force_mae": force_mae,
}


def get_reward(name: str) -> RewardFn:
    """The reward function registered as ``name``; unknown names list the known ones."""
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; known: {', '.join(sorted(REWARDS))}")
    return REWARDS[name]
