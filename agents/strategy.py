"""The agent interface, and a strategy as a composition: score x selector x optional prefilter x optional
schedule.

Every agent has ``act(obs, info, k, rng) -> int64 indices``. Callers pass ``k = info["max_picks"]``, the
number of candidates the next action may label. The result holds k distinct candidates with
``obs["mask"] == 1``, except where the environment allows any subset (``info["any_subset"]``, on-the-fly
mode): there a strategy may return fewer, even none. ``k == 0`` returns the empty selection; k larger
than the number of available candidates raises ValueError. ``alenv.spaces.picks_to_action`` turns the
indices into an action for either action space.

Components (all pure functions of what they are given; ``rng`` is the only source of randomness):

- score ``score(obs, info) -> (N,)`` (``agents.scores``), or None;
- selector ``select(obs, info, scores, k, mask, rng) -> (k,)`` (``agents.selectors``);
- prefilter ``prefilter(obs, info, k, mask, rng) -> mask``: the subset of candidates the selector may
  pick (in any-subset mode it may keep fewer than k; the strategy then picks all it kept);
- schedule ``schedule(obs, info) -> float``: sets the selector's ``weight`` for the round.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from agents.algorithms import topk_select
from agents.scores import SPREAD_FEATURES, ScoreFn, feature, global_feature, reads, window_score
from agents.selectors import Selector

Prefilter = Callable[[dict, dict, int, np.ndarray, np.random.Generator], np.ndarray]
Schedule = Callable[[dict, dict], float]


class Agent(Protocol):
    """Sees only what the environment returns (obs, info) and an rng; never reaches into it."""

    name: str

    def act(self, obs: dict, info: dict, k: int, rng: np.random.Generator) -> np.ndarray:
        """Up to k (exactly k unless ``info["any_subset"]``) distinct indices with obs["mask"] == 1."""
        ...


def no_picks() -> np.ndarray:
    """The empty selection."""
    return np.zeros(0, dtype=np.int64)


def check_k(k: int, mask: np.ndarray) -> int:
    """``k`` as int if ``0 <= k <=`` the number of available candidates, else ValueError."""
    n = int(np.count_nonzero(mask))
    if not 0 <= int(k) <= n:
        raise ValueError(f"cannot select {k} of {n} available candidates")
    return int(k)


@dataclass(frozen=True)
class Strategy:
    """A named composition: scores from ``score``, candidates kept by ``prefilter``, a batch chosen by
    ``selector`` whose ``weight`` follows ``schedule``. Order of use: score, prefilter, schedule,
    selector (so the rng is consumed by the prefilter first, then by the selector)."""

    name: str
    selector: Selector
    score: ScoreFn | None = None
    prefilter: Prefilter | None = None
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        if self.schedule is not None and not hasattr(self.selector, "weight"):
            raise ValueError(f"{self.name}: a schedule needs a selector with a weight, got {self.selector!r}")

    @property
    def reads_spread(self) -> bool:
        """True where a component reads a committee spread (which needs at least two members)."""
        used = reads(self.score) | reads(self.prefilter) | reads(self.selector)
        return bool(used & SPREAD_FEATURES)

    def act(self, obs: dict, info: dict, k: int, rng: np.random.Generator) -> np.ndarray:
        """Up to k picks as an int64 array (exactly k unless ``info["any_subset"]``); see the module doc."""
        if self.reads_spread and info.get("n_members", 2) < 2:
            raise ValueError(
                f"strategy {self.name!r} ranks by the committee's spread, which needs at least 2 members; "
                f"the model has {info['n_members']} (set model_kwargs={{'n_members': 2 or more}})"
            )
        k = check_k(k, obs["mask"])
        if k == 0:
            return no_picks()
        scores = None if self.score is None else self.score(obs, info)
        mask = obs["mask"]
        if self.prefilter is not None:
            mask = self.prefilter(obs, info, k, mask, rng)
            if info.get("any_subset", False):
                k = min(k, int(np.count_nonzero(mask)))
                if k == 0:
                    return no_picks()
        selector = self.selector
        if self.schedule is not None:
            selector = dataclasses.replace(selector, weight=self.schedule(obs, info))
        return selector(obs, info, scores, k, mask, rng)


@dataclass(frozen=True)
class Linear:
    """Schedule: ``start + (end - start) * budget_used``, budget_used the fraction of the label budget
    spent (``obs["globals"]``): from ``start`` at the first round to ``end`` when the budget is spent."""

    start: float = 1.0
    end: float = 0.0

    def __call__(self, obs: dict, info: dict) -> float:
        return self.start + (self.end - self.start) * global_feature(obs, "budget_used")


@dataclass(frozen=True)
class MostUncertain:
    """Prefilter: keep the ``factor * k`` available candidates with the largest feature ``name`` (all if
    fewer are available); ties broken by ``rng``."""

    name: str = "force_std_max"
    factor: int = 5

    def __post_init__(self) -> None:
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        object.__setattr__(self, "factor", int(self.factor))

    def __call__(self, obs: dict, info: dict, k: int, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        keep = topk_select(feature(obs, self.name), min(self.factor * k, int(mask.sum())), mask, rng)
        sub = np.zeros_like(mask)
        sub[keep] = 1
        return sub


@dataclass(frozen=True)
class TrustWindow:
    """Prefilter, in any-subset mode only: keep the candidates whose feature ``name`` lies within
    ``[lower, upper]`` (eV/Angstrom for spreads). Where exactly k picks are required it keeps all."""

    name: str = "force_std_max"
    lower: float = 0.05
    upper: float = 1.0

    def __post_init__(self) -> None:
        window_score(self.name, self.lower, self.upper)  # validates the name and the bounds

    def __call__(self, obs: dict, info: dict, k: int, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not info.get("any_subset", False):
            return mask
        x = feature(obs, self.name)
        return ((x >= self.lower) & (x <= self.upper) & (mask == 1)).astype(np.int8)
