"""Benchmark instruments that are not strategies: they read what a real strategy cannot.

``true-error`` is a CHEATING reference: greedy top-k by the current model's true error. It knows the
oracle's label of every pool candidate and picks the k candidates where the current ensemble mean's force
error is largest. It shows how a selection rule compares with ranking by the current true error, and
nothing more: it is NOT an upper bound on what a strategy can reach, and strategies can beat it, because

- it is greedy, not batch-optimal: the k largest errors may sit on near-duplicates that one label would
  have fixed together (a diverse batch teaches more);
- it ranks by the error now, not by the error reduction after retraining: a large error on an outlier may
  teach the model little about the validation distribution, and what the error of the validation set
  becomes after the refit is not what it looks at;
- its labels carry the oracle's noise like any strategy's (with a noisy oracle, ``true_labels()`` are the
  task data's clean references).

It never competes; its results are marked ``cheating``.

``lookahead`` is a second CHEATING reference: the look-ahead expert of policy training (``LookaheadAgent``);
``lookahead-greedy`` a third, the same expert with a batch of its own built pick by pick
(``GreedyLookaheadAgent``).

Built by the runner from the environment (``make_reference(name, env)``), never by an agent. It uses only
``env.unwrapped.true_labels()`` -> energies (N,) eV, forces (N, n, 3) eV/Angstrom, and
``env.unwrapped.predict_candidates()`` -> member predictions, energies (M, N), forces (M, N, n, 3), which
pool-mode environments provide (flat layout: forces (A, 3) and (M, A, 3), atoms concatenated, with
``env.unwrapped.pool_ptr``).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from agents import topk_select
from alenv.ragged import segment_mean


class TrueErrorAgent:
    """Greedy top-k by the current ensemble mean's true force error (mean absolute per component): a
    cheating reference, neither batch-optimal nor an error-reduction oracle, so not an upper bound."""

    name = "true-error"
    cheating = True

    def __init__(
        self, true_forces: np.ndarray, predict_forces: Callable[[], np.ndarray], ptr: np.ndarray | None = None
    ):
        self.true_forces = true_forces  # (N, n, 3) eV/Angstrom, the oracle's labels of the pool
        self.predict_forces = predict_forces  # () -> (N, n, 3) current ensemble-mean forces
        self.ptr = ptr  # flat layout: forces (A, 3), frame i's atoms at rows ptr[i]:ptr[i+1]

    def act(self, obs: dict, info: dict, k: int, rng: np.random.Generator) -> np.ndarray:
        """The k available candidates with the largest true force error; ties broken by ``rng``."""
        if self.ptr is None:
            error = np.abs(self.predict_forces() - self.true_forces).mean(axis=(1, 2))
        else:  # per frame over its own atoms
            error = segment_mean(np.abs(self.predict_forces() - self.true_forces).mean(1), self.ptr)
        return topk_select(error, k, obs["mask"], rng)


def true_error(env: Any) -> TrueErrorAgent:
    """The ``true-error`` reference (greedy top-k by current true error) wired to a pool-mode environment."""
    u = env.unwrapped
    if not (hasattr(u, "true_labels") and hasattr(u, "predict_candidates")):
        raise ValueError(
            "the true-error reference needs the labels of every candidate in advance, which only pool mode "
            "has; this environment makes new candidates every round"
        )
    _, forces = u.true_labels()

    def predict() -> np.ndarray:
        _, F = u.predict_candidates()
        return F.mean(0)

    return TrueErrorAgent(forces, predict, u.pool_ptr if getattr(u, "layout", "dense") == "flat" else None)


class LookaheadAgent:
    """The look-ahead expert that ``agents.train`` imitates, as a CHEATING reference: each round it asks
    every heuristic in ``proposers`` for a batch and keeps the one with the lowest validation force MAE after
    a fit from scratch on the labels plus that batch's reference labels (``env.lookahead``). It reads pool
    labels no strategy may see, and is one-step greedy over a handful of proposals: not an upper bound
    either. Costs one fit of the task's model per proposal per round (cheap with ``model=ridge``)."""

    name = "lookahead"
    cheating = True

    def __init__(self, lookahead: Callable[[list], np.ndarray], proposers: tuple[str, ...]):
        self.lookahead, self.proposers = lookahead, proposers
        self.winners: list[str] = []  # which proposer won each round

    def act(self, obs: dict, info: dict, k: int, rng: np.random.Generator) -> np.ndarray:
        from agents.train import best_batch

        batch, winner, _ = best_batch(obs, info, k, rng, self.lookahead, self.proposers)
        self.winners.append(winner)
        return batch


class GreedyLookaheadAgent(LookaheadAgent):
    """A stronger look-ahead expert, as a CHEATING reference: besides the heuristics' batches it builds one
    batch pick by pick, each pick the candidate (of ``shortlist`` drawn anew, or all) whose addition leaves
    the lowest validation force MAE after a fit from scratch (``agents.train.greedy_batch``), and keeps the
    best of all by that same measure, so it is never worse than ``lookahead`` on what both optimise. Still
    one round deep, and the validation set it optimises is small on tiny tasks (20 frames): its test error
    is what tells whether it teaches more. Costs about ``k x shortlist`` fits per round (``model=ridge``)."""

    name = "lookahead-greedy"

    def __init__(self, lookahead: Callable[[list], np.ndarray], proposers: tuple[str, ...], shortlist: int | None = 30):
        super().__init__(lookahead, proposers)
        self.shortlist = shortlist

    def act(self, obs: dict, info: dict, k: int, rng: np.random.Generator) -> np.ndarray:
        from agents.train import best_batch, greedy_batch

        available = np.flatnonzero(obs["mask"])
        greedy, _ = greedy_batch(available, k, self.lookahead, self.shortlist, rng)
        batch, winner, _ = best_batch(obs, info, k, rng, self.lookahead, self.proposers, [("greedy", greedy)])
        self.winners.append(winner)
        return batch


def _pool_lookahead(env: Any) -> Callable[[list], np.ndarray]:
    u = env.unwrapped
    if not hasattr(u, "lookahead"):
        raise ValueError(
            "the look-ahead references refit on the reference labels of proposed batches, which only pool mode "
            "has; this environment makes new candidates every round"
        )
    return lambda batches: u.lookahead(batches, seed=0)


def lookahead_greedy(env: Any) -> GreedyLookaheadAgent:
    """The ``lookahead-greedy`` reference wired to a pool-mode environment."""
    from agents.train import EXPERT_PROPOSERS

    return GreedyLookaheadAgent(_pool_lookahead(env), EXPERT_PROPOSERS)


def lookahead(env: Any) -> LookaheadAgent:
    """The ``lookahead`` reference wired to a pool-mode environment (``env.unwrapped.lookahead``)."""
    from agents.train import EXPERT_PROPOSERS

    return LookaheadAgent(_pool_lookahead(env), EXPERT_PROPOSERS)


REFERENCES: dict[str, Callable[[Any], Any]] = {"true-error": true_error, "lookahead": lookahead,
                                               "lookahead-greedy": lookahead_greedy}


def make_reference(name: str, env: Any) -> Any:
    """Build the reference ``name`` (underscores accepted for hyphens) for ``env``."""
    key = str(name).replace("_", "-")
    if key not in REFERENCES:
        raise ValueError(f"unknown reference {name!r}; known: {', '.join(sorted(REFERENCES))}")
    return REFERENCES[key](env)
