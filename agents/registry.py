"""The table of named strategies: each name is a composition of a score, a selector and optionally a
prefilter and a schedule (``agents.strategy.Strategy``), built from the keyword arguments of its
``conf/agent/<name>.yaml`` (the keyword defaults below are the parameters and their defaults).

Names resolve through dictionaries only: ``make_agent`` also accepts ``_`` for ``-`` and ``pp`` for
``++`` (``information_gain``, ``kmeanspp``, ``kmeans_pp``), and names the closest spelling otherwise.
``learned`` is the trained query policy of ``agents.policy`` (``agent.kwargs.checkpoint=PATH``; the default
is the checkpoint shipped in ``agents/checkpoints/``, see its README for how it was trained). Other callable
policies are wrapped by ``agents.learned.PolicyAgent``.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable

from agents.bandit import DEFAULT_ARMS, HeuristicBandit
from agents.multifidelity import MF_STRATEGIES as _MF
from agents.scores import energy_spread_score, feature_score, signal_to_noise, unit_score, window_score
from agents.policy import DEFAULT_CHECKPOINT, LearnedPolicy
from agents.selectors import LCMD, FarthestPoint, FixedInterval, InformationGain, KMeansPP, MaxDet, RandomSubset, TopK
from agents.strategy import Agent, Linear, MostUncertain, Strategy, TrustWindow

SPREAD = "force_std_max"  # the default uncertainty: largest per-atom ensemble force spread [eV/Angstrom]
KERNEL_AMPLITUDE = "force_std_mean"  # scales the maxdet kernel; over sqrt(3) x noise, the information-gain one


def _top(name: str, feature: str) -> Strategy:
    return Strategy(name, TopK(), score=feature_score(feature))


STRATEGIES: dict[str, Callable[..., Strategy]] = {
    # the baseline every strategy must beat
    "random": lambda: Strategy("random", RandomSubset()),
    # query by committee: the k largest ensemble spreads
    "uncertainty": lambda feature=SPREAD: _top("uncertainty", feature),
    # the energy spread as it is (default), per atom or per sqrt(atoms) (ANI's criterion; frames of several sizes)
    "qbc-energy": lambda normalise="none": Strategy("qbc-energy", TopK(), score=energy_spread_score(str(normalise))),
    "qbc-force-mean": lambda: _top("qbc-force-mean", "force_std_mean"),
    "qbc-force-rel": lambda: _top("qbc-force-rel", "force_std_rel"),
    # the k farthest from the labelled set in embedding space (not greedy within the batch)
    "distance": lambda: _top("distance", "dist_to_train"),
    # diversity: greedy farthest points, k-means++ seeding, maximum determinant scaled by the spread
    "fps": lambda: Strategy("fps", FarthestPoint()),
    "kmeans++": lambda: Strategy("kmeans++", KMeansPP()),
    "maxdet": lambda: Strategy("maxdet", MaxDet(), score=feature_score(KERNEL_AMPLITUDE)),
    # batch-aware selection on the model's own features (opt-in observation key model_features; the runner's
    # conf/agent/lcmd.yaml turns it on): largest cluster maximum distance (bmdal's LCMD-TP)
    "lcmd": lambda: Strategy("lcmd", LCMD()),
    # greedy batch information gain: the spread per force component against each candidate's label noise
    "information-gain": lambda noise_floor=0.01: Strategy(
        "information-gain", InformationGain(), score=signal_to_noise(float(noise_floor), KERNEL_AMPLITUDE)
    ),
    # uncertainty (scaled to [0, 1]) plus a distance bonus whose weight goes from start to end over the budget
    "hybrid": lambda uncertainty=SPREAD, weight_start=1.0, weight_end=0.0: Strategy(
        "hybrid", FarthestPoint(), score=unit_score(feature_score(uncertainty)),
        schedule=Linear(float(weight_start), float(weight_end)),
    ),
    # the factor * k most uncertain, then a diverse k of them
    "prefilter-fps": lambda uncertainty=SPREAD, factor=5: Strategy(
        "prefilter-fps", FarthestPoint(), prefilter=MostUncertain(uncertainty, factor)
    ),
    "prefilter-maxdet": lambda uncertainty=SPREAD, factor=5: Strategy(
        "prefilter-maxdet", MaxDet(), score=feature_score(KERNEL_AMPLITUDE), prefilter=MostUncertain(uncertainty, factor)
    ),
    # on the fly: every walker's newest frame, whatever its spread (labelling at a fixed MD interval)
    "fixed-interval": lambda: Strategy("fixed-interval", FixedInterval()),
    # spreads inside [lower, upper] first; in any-subset mode only those
    "trust-window": lambda feature=SPREAD, lower=0.05, upper=1.0: Strategy(
        "trust-window", TopK(), score=window_score(feature, lower, upper), prefilter=TrustWindow(feature, lower, upper)
    ),
    # EXP3 over heuristics: each round one of them labels the batch, weighted by the validation-error drops
    # that followed its earlier rounds (agents.bandit)
    "bandit": lambda arms=DEFAULT_ARMS, gamma=0.3, eta=1.0: HeuristicBandit(arms, float(gamma), float(eta)),
    # a trained policy (agents.policy, trained by python -m agents.train): greedy picks of its scores
    "learned": lambda checkpoint=None, temperature=0.0: LearnedPolicy.load(
        DEFAULT_CHECKPOINT if checkpoint is None else checkpoint, float(temperature)
    ),
}

AGENTS = STRATEGIES  # the name the runner and older callers use
# Strategies that need on-the-fly candidates (MD order, ``info["slot_walker"]``); in pool mode they raise.
OTF_ONLY = frozenset({"fixed-interval"})
# Strategies for multi-fidelity tasks only (they choose a level as well as a frame; agents.multifidelity):
# built by make_agent like the others, kept out of STRATEGIES, which every single-level task can play.
MF_STRATEGIES: dict[str, Callable[..., Any]] = dict(_MF)
_ALL: dict[str, Callable[..., Any]] = {**STRATEGIES, **MF_STRATEGIES}  # every name make_agent builds


def _spellings(name: str) -> set[str]:
    out = {name}
    for n in list(out):
        out |= {n.replace("-", "_"), n.replace("++", "pp"), n.replace("++", "-pp"), n.replace("++", "_pp")}
    return out


ALIASES: dict[str, str] = {alias: name for name in _ALL for alias in _spellings(name)}


def resolve_name(name: str) -> str:
    """The registered name for ``name`` or one of its accepted spellings; ValueError naming the closest."""
    key = ALIASES.get(name, ALIASES.get(str(name).strip().lower()))
    if key is not None:
        return key
    close = difflib.get_close_matches(str(name).lower(), list(ALIASES), n=1, cutoff=0.6)
    hint = f" (did you mean {ALIASES[close[0]]!r}?)" if close else ""
    raise ValueError(f"unknown agent {name!r}{hint}; known agents: {', '.join(sorted(_ALL))}")


def make_agent(name: str, **kwargs: Any) -> Agent:
    """Build the registered strategy ``name`` with its keyword parameters (see ``STRATEGIES``)."""
    return _ALL[resolve_name(name)](**kwargs)
