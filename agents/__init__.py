"""Acquisition strategies: a score per candidate, composed with a batch selector.

``AGENTS`` maps a name to a factory; ``make_agent(name, **kwargs)`` builds one. Every agent has
``act(obs, info, k, rng) -> (k,) int64``: k distinct unmasked candidate indices.
"""

from agents.base import AGENTS, Agent, ScoreSelect, make_agent
from agents.scores import SCORES
from agents.selectors import SELECTORS, fps_select, kmeanspp_select, maxdet_select, topk_select

__all__ = ["AGENTS", "Agent", "SCORES", "SELECTORS", "ScoreSelect", "fps_select", "kmeanspp_select", "make_agent", "maxdet_select", "topk_select"]
