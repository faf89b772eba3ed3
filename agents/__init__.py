"""Acquisition strategies as compositions: a score per candidate, a batch selector, and optionally a
prefilter and a schedule (``agents.strategy``).

``STRATEGIES`` (alias ``AGENTS``) maps a name to its composition; ``make_agent(name, **kwargs)`` builds
one. Every agent has ``act(obs, info, k, rng) -> int64 indices`` with ``k = info["max_picks"]``: k
distinct candidates with obs["mask"] == 1 (at most k where ``info["any_subset"]``). Selectors share one
signature, ``select(obs, info, scores, k, mask, rng) -> (k,) int64`` (``agents.selectors``). Agents see
only obs, info and an rng; reference points that read the environment live in ``benchmarks.references``.
"""

__alenv__ = True  # marks this top-level ``agents`` as alenv's (the name is generic; see README)

from agents.algorithms import fps_select, kmeanspp_select, lcmd_select, maxdet_select, topk_select
from agents.bandit import HeuristicBandit
from agents.learned import PolicyAgent, greedy_policy
from agents.multifidelity import MultiFidelityStrategy
from agents.registry import AGENTS, ALIASES, MF_STRATEGIES, OTF_ONLY, STRATEGIES, make_agent, resolve_name
from agents.scores import (
    feature,
    feature_score,
    global_feature,
    information_gain,
    noise_level,
    signal_to_noise,
    unit_score,
    window_score,
)
from agents.selectors import (
    SELECTORS,
    FarthestPoint,
    FixedInterval,
    LCMD,
    InformationGain,
    KMeansPP,
    MaxDet,
    RandomSubset,
    Selector,
    TopK,
)
from agents.strategy import Agent, Linear, MostUncertain, Strategy, TrustWindow

__all__ = [
    "HeuristicBandit",
    "AGENTS",
    "ALIASES",
    "Agent",
    "FarthestPoint",
    "FixedInterval",
    "InformationGain",
    "KMeansPP",
    "LCMD",
    "Linear",
    "MaxDet",
    "MF_STRATEGIES",
    "MultiFidelityStrategy",
    "MostUncertain",
    "OTF_ONLY",
    "PolicyAgent",
    "RandomSubset",
    "SELECTORS",
    "STRATEGIES",
    "Selector",
    "Strategy",
    "TopK",
    "TrustWindow",
    "feature",
    "feature_score",
    "fps_select",
    "global_feature",
    "greedy_policy",
    "information_gain",
    "kmeanspp_select",
    "lcmd_select",
    "make_agent",
    "maxdet_select",
    "noise_level",
    "resolve_name",
    "signal_to_noise",
    "topk_select",
    "unit_score",
    "window_score",
]
