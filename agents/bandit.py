"""A bandit over the heuristics: each round one of them labels the whole batch, chosen by EXP3.

In the spirit of active learning by learning (Hsu and Lin, AAAI 2015): which heuristic suits a task is not
known in advance, so the agent treats the heuristics as arms and learns from the episode itself which one to
trust. The reward of the arm that chose a round is what the environment's reward measures, read one round
later from ``info["metrics"]`` (validation errors, never the test set): the log drop of validation force MAE,
``log(before / after)``, which means the same on tasks whose errors differ by orders of magnitude. EXP3
(Auer et al. 2002) keeps exponential weights of importance-weighted rewards and mixes in a uniform share
``gamma``, so no arm is starved and adversarial (here: shrinking) rewards are allowed.

The agent keeps state within an episode (weights, the arm and error of its last round); it starts again at
an observation of round 0. With the few rounds of a standard episode (5 in the leaderboards) it can only
lean towards an arm, not settle on one: that is part of what the benchmark measures.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from agents.strategy import Agent, check_k, no_picks

DEFAULT_ARMS = "random,uncertainty,fps,kmeans++"


class HeuristicBandit:
    """EXP3 over named heuristics (``arms``: names or one comma-separated string); ``gamma`` in (0, 1] is the
    uniform share of the arm probabilities, ``eta`` > 0 the step of the weights per unit of reward."""

    def __init__(self, arms: str | Sequence[str] = DEFAULT_ARMS, gamma: float = 0.3, eta: float = 1.0,
                 name: str = "bandit"):
        from agents.registry import make_agent, resolve_name

        names = [a.strip() for a in arms.split(",")] if isinstance(arms, str) else [str(a) for a in arms]
        names = [resolve_name(a) for a in names if a]
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"a bandit needs at least two distinct arms, got {names}")
        if "bandit" in names:
            raise ValueError("a bandit cannot be one of its own arms")
        if not 0 < gamma <= 1 or not eta > 0 or not math.isfinite(eta):
            raise ValueError(f"gamma must be in (0, 1] and eta positive, got gamma={gamma}, eta={eta}")
        self.arm_names: tuple[str, ...] = tuple(names)
        self.arms: list[Agent] = [make_agent(a) for a in names]
        self.gamma, self.eta, self.name = float(gamma), float(eta), name
        self.reset()

    def reset(self) -> None:
        """Forget the episode: equal weights, no pending reward."""
        self.log_weights = np.zeros(len(self.arms))
        self.history: list[dict] = []  # per round: arm, its probability, the validation MAE before, reward
        self._round: int | None = None

    def probabilities(self) -> np.ndarray:
        """EXP3's arm probabilities: softmax of the weights, mixed with the uniform share ``gamma``."""
        w = np.exp(self.log_weights - self.log_weights.max())
        return (1 - self.gamma) * w / w.sum() + self.gamma / len(w)

    def _update(self, info: dict) -> None:
        """Start again at round 0; otherwise credit the last round's arm with the drop it was followed by."""
        rnd = info.get("round")
        if rnd is None or rnd == 0 or (self._round is not None and rnd <= self._round):
            self.reset()
        self._round = rnd
        mae = info.get("metrics", {}).get("force_mae")
        last = self.history[-1] if self.history else None
        if last is None or last["reward"] is not None or mae is None or last["mae_before"] is None:
            return
        if not (mae > 0 and last["mae_before"] > 0 and math.isfinite(mae)):
            return
        reward = math.log(last["mae_before"] / mae)
        last["reward"] = reward
        self.log_weights[last["arm"]] += self.eta * reward / last["probability"]

    def act(self, obs: dict, info: dict, k: int, rng: np.random.Generator) -> np.ndarray:
        """The batch of one arm drawn from ``probabilities()`` (after crediting the last round's arm)."""
        self._update(info)
        k = check_k(k, obs["mask"])
        if k == 0:
            return no_picks()
        p = self.probabilities()
        arm = int(rng.choice(len(p), p=p))
        mae = info.get("metrics", {}).get("force_mae")
        self.history.append({"round": info.get("round"), "arm": arm, "name": self.arm_names[arm],
                             "probability": float(p[arm]), "mae_before": mae, "reward": None})
        return self.arms[arm].act(obs, info, k, rng)
