"""Strategies for multi-fidelity tasks (``alenv.multifidelity.MultiFidelityEnv``): which frames, at which level.

They read what the environment gives every agent: ``obs["level"]`` and ``obs["cost"]`` (seconds) of each
virtual candidate, ``obs["mask"]``, the committee spreads in ``obs["candidates"]`` and ``info["max_cost"]``
(seconds the round may spend). Each fills the round greedily in its own order, skipping what no longer fits.

- ``mf-top``: the top level only, most uncertain first: the single-fidelity baseline.
- ``mf-cheap-first``: every frame at the cheapest level first (most uncertain first while they do not all
  fit), then the top level by uncertainty with what is left: "label everything with xTB, pick DFT frames".
- ``mf-cost-greedy``: uncertainty reduction per second: the squared spread of each candidate's level over
  its cost, largest first, across all levels.
- ``mf-random``: available candidates of any level in a random order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alenv.observe import CANDIDATE_FEATURES

SPREAD = "force_std_max"
SLACK = 1e-6  # relative: obs["cost"] is float32 (1.48 s is 1.4800000191), sums may exceed by rounding


def _fill(order: np.ndarray, costs: np.ndarray, capacity: float) -> np.ndarray:
    """Candidates taken in ``order`` while they fit in ``capacity`` seconds (each one that still fits)."""
    out, left = [], capacity * (1 + SLACK)
    for i in order:
        if costs[i] <= left:
            out.append(int(i))
            left -= costs[i]
    return np.array(out, dtype=np.int64)


def _check(obs: dict, info: dict) -> None:
    if "level" not in obs or "cost" not in obs or "max_cost" not in info:
        raise ValueError("this strategy is for multi-fidelity tasks (observation keys 'level' and 'cost'); "
                         "use a single-level strategy on this task")


@dataclass
class MultiFidelityStrategy:
    """A named order over the available virtual candidates, filled greedily up to the round's capacity."""

    name: str
    rule: str  # "top", "cheap-first", "cost-greedy" or "random"
    feature: str = SPREAD

    def act(self, obs: dict, info: dict, k: int, rng: np.random.Generator) -> np.ndarray:
        _check(obs, info)
        mask = np.asarray(obs["mask"]).astype(bool)
        level, cost = np.asarray(obs["level"]), np.asarray(obs["cost"], dtype=np.float64)
        spread = np.asarray(obs["candidates"][:, CANDIDATE_FEATURES.index(self.feature)], dtype=np.float64)
        top = level.max()
        avail = np.flatnonzero(mask)
        by_spread = avail[np.argsort(-spread[avail], kind="stable")]
        if self.rule == "top":
            order = by_spread[level[by_spread] == top]
        elif self.rule == "cheap-first":
            cheapest = level[avail].min() if len(avail) else 0
            order = by_spread[level[by_spread] == cheapest]
            if cheapest != top:  # (once the cheapest level is used up, the top level is the cheapest)
                order = np.concatenate([order, by_spread[level[by_spread] == top]])
        elif self.rule == "cost-greedy":
            score = spread[avail] ** 2 / cost[avail]
            order = avail[np.argsort(-score, kind="stable")]
        elif self.rule == "random":
            order = rng.permutation(avail)
        else:
            raise ValueError(f"unknown multi-fidelity rule {self.rule!r}")
        picks = _fill(order, cost, float(info["max_cost"]))
        if not len(picks) and len(avail):
            if self.rule == "top":
                raise ValueError(f"no top-level candidate fits in the {float(info['max_cost']):.6g} s this round may "
                                 "spend; mf-top buys nothing else (give the task a budget in whole top labels)")
            picks = _fill(avail[np.argsort(cost[avail], kind="stable")][:1], cost, float(info["max_cost"]))  # the cheapest
        return picks


MF_STRATEGIES = {
    "mf-top": lambda feature=SPREAD: MultiFidelityStrategy("mf-top", "top", str(feature)),
    "mf-cheap-first": lambda feature=SPREAD: MultiFidelityStrategy("mf-cheap-first", "cheap-first", str(feature)),
    "mf-cost-greedy": lambda feature=SPREAD: MultiFidelityStrategy("mf-cost-greedy", "cost-greedy", str(feature)),
    "mf-random": lambda: MultiFidelityStrategy("mf-random", "random"),
}
