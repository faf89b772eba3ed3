"""Reference points that are not strategies: they read what a real strategy cannot.

``true-error`` is a CHEATING upper bound: it knows the oracle's label of every candidate and picks those
where the current ensemble's force error is largest. It shows how far a selection rule is from ideal
error-driven selection with the same model; it never competes, and its results are marked as such.
It is built by the runner from the environment (``make_reference(name, env)``), never by an agent.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from agents.selectors import topk_select


class TrueErrorAgent:
    """Largest true force error of the current ensemble mean (mean absolute per component)."""

    name = "true-error"
    cheating = True

    def __init__(self, true_forces: np.ndarray, predict_forces: Callable[[], np.ndarray]):
        self.true_forces = true_forces  # (N, n, 3) eV/Angstrom, the oracle's labels of the pool
        self.predict_forces = predict_forces  # () -> (N, n, 3) current ensemble-mean forces

    def act(self, obs: dict, info: dict, k: int, rng: np.random.Generator) -> np.ndarray:
        error = np.abs(self.predict_forces() - self.true_forces).mean(axis=(1, 2))
        return topk_select(error, k, obs["mask"], rng)


def _true_error(env: Any) -> TrueErrorAgent:
    u = env.unwrapped
    if not hasattr(u, "true_labels"):
        raise ValueError(
            f"the true-error reference needs the labels of every candidate in advance, which only pool mode "
            f"has; {u.task.id} makes new candidates by MD every round"
        )
    _, forces = u.true_labels()

    def predict() -> np.ndarray:
        _, F = u.potential.predict(u.candidates, idx=np.arange(u.n_pool))
        return F.mean(0)

    return TrueErrorAgent(forces, predict)


REFERENCES: dict[str, Callable[..., Any]] = {"true-error": _true_error}


def make_reference(name: str, env: Any) -> Any:
    if name not in REFERENCES:
        raise ValueError(f"unknown reference {name!r}; known: {', '.join(sorted(REFERENCES))}")
    return REFERENCES[name](env)
