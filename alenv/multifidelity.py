"""MultiFidelityEnv: pool-based active learning where each candidate can be labelled at several levels of
theory, each at its own cost, under a budget in seconds.

Why: a DFT label costs about 1,800 GFN2-xTB labels on ethanol, and GFN2-xTB forces correlate with PBE's at
0.94. Which frames deserve the expensive level when the cheap one is nearly free is a decision a strategy
can get right or wrong; this environment lets it make that decision and charges it honestly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from ase import Atoms
from gymnasium import spaces

from alenv import keys, loop
from alenv.data import LabelledSet
from alenv.env import ActiveLearningEnv
from alenv.models.multilevel import MultiLevelPotential
from alenv.observe import candidate_features, make_observation, nearest_distance, noise_estimate, observation_space
from alenv.oracles import CachedOracle, LabelCache, make_oracle
from alenv.rewards import round_reward
from alenv.spaces import LabelMask
from alenv.tasks import TaskData
from alenv.types import Label

COST_SLACK = 1e-6  # relative: a round may spend its capacity to rounding (agents see float32 costs)


class CostMask(LabelMask):
    """A multi-fidelity action: a 0/1 vector over the N x L virtual candidates whose costs (``costs``,
    seconds) add up to at most ``capacity``, using only available ones (``available``). ``sample()`` takes
    available candidates in a random order, each one that still fits."""

    def __init__(self, costs: np.ndarray, seed: int | np.random.Generator | None = None):
        super().__init__(len(costs), len(costs), seed=seed)
        self.costs = np.asarray(costs, dtype=np.float64)
        self.capacity = 0.0  # the environment sets it at reset and after each step

    def sample(self, mask: Any | None = None, probability: Any | None = None) -> np.ndarray:
        avail = np.flatnonzero(self.available if mask is None else np.asarray(mask))
        out = np.zeros(self.n, dtype=np.int8)
        left = self.capacity * (1 + COST_SLACK)
        for i in self.np_random.permutation(avail):
            if self.costs[i] <= left:
                out[i], left = 1, left - self.costs[i]
        return out

    def contains(self, x: Any) -> bool:
        x = np.asarray(x)
        if not spaces.MultiBinary.contains(self, x):
            return False
        picked = x.astype(bool)
        return (bool(picked.any()) and bool(np.all(self.available[picked] == 1))
                and float(self.costs[picked].sum()) <= self.capacity * (1 + COST_SLACK))

    def __repr__(self) -> str:
        return f"CostMask(n={self.n})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, CostMask) and self.n == other.n and np.array_equal(self.costs, other.costs)


@dataclass
class Level:
    """One fidelity level of an episode: every label paid for at it, and the rows of the training data."""

    labelled: LabelledSet = field(default_factory=LabelledSet)
    train: loop.TrainingSet = field(default_factory=loop.TrainingSet)


@dataclass
class MultiFidelityEpisode:
    """What a multi-fidelity episode accumulates (the top level is ``levels[-1]``)."""

    potential: MultiLevelPotential
    levels: list[Level]
    metrics: dict[str, float] = field(default_factory=dict)
    cost_used: float = 0.0  # seconds charged after the initial labels (declared costs)
    round: int = 0
    train_force_rmse: float = float("nan")
    train_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


class MultiFidelityEnv(ActiveLearningEnv):
    """Pool-based active learning with L levels of theory (``TaskSpec.levels`` below the task's oracle).

    **Candidates.** The pool's N frames at each level make N x L *virtual candidates*, level-major: index
    ``level * N + i`` is pool frame i at that level (level 0 the cheapest, L - 1 the task's oracle).

    **Episode.** ``reset`` labels ``n_initial`` reserve frames at the top level (free, as in pool mode) and
    fits the learner: a :class:`~alenv.models.multilevel.MultiLevelPotential` (a committee of the task's
    model for level 0 plus one for each correction above it; a level without labels contributes zero, so
    until a cheap label is bought it is the plain committee). Each ``step`` labels the chosen virtual
    candidates at their levels, refits the levels whose labels changed (and those above them), and
    evaluates the top level on the validation set. The test set is sealed (``test_metrics()``).

    **Cost.** Each level's cost per label is declared in seconds (``levels[i]["cost"]``, ``top_cost``), so
    budgets mean the same on every machine. The budget is ``budget x top_cost`` seconds; a round may spend at
    most ``batch_size x top_cost`` seconds and never more than is left (``info["max_cost"]``). Failed
    labels are charged and kept, as everywhere.

    **Observation** (``Dict``, fixed shapes, V = N x L rows, level-major): ``candidates`` (V, F): the
    features of pool mode (``candidate_features``) from the committee of each row's level (the sum of the
    levels up to it; a level not fitted yet shows the top level's), its distance in the embedding to the
    frames labelled at that level (to the top level's while it has none); ``embedding`` (V, D); ``mask``
    (V,): 1 where the virtual candidate is unlabelled and affordable; ``level`` (V,) int64; ``cost`` (V,)
    float32 seconds; ``globals``: pool mode's, with ``budget_used`` the fraction of the cost budget spent.

    **Action.** A 0/1 vector over the V virtual candidates (``CostMask``): any subset of available ones whose
    costs add up to at most ``info["max_cost"]`` seconds, at least one. A masked candidate, an empty action
    or one over the round's capacity raises ``ValueError``.

    **Reward.** As pool mode (``reward``, ``reward_per_cost`` divides by the round's charged seconds), on the
    top level's validation errors.

    **Episode end.** ``terminated`` once no available candidate fits in what is left of the budget.

    **Info.** Pool mode's keys; ``metrics`` adds ``cost_used`` (seconds charged after the initial labels),
    ``budget_used`` in top-label equivalents (float), ``n_labels[level=l]`` per level, and ``oracle_seconds`` is
    the declared cost of every label, the initial ones included; ``max_cost`` (seconds the next action may
    spend). The global ``n_labels`` counts top-level labels. The pool-mode instruments that read one level
    (``true_labels``, ``predict_candidates``, ``lookahead``, ``refit_test_metrics``) raise here.
    """

    mode = "mf"
    default_task = "Ethanol-MF-tiny"

    # ------------------------------------------------------------------------------- set-up
    def _prepare(self, data: TaskData) -> None:
        if self.task.model_features:
            raise ValueError("model_features is not available on multi-fidelity tasks yet")
        super()._prepare(data)
        spec, N = self.task, self.n_pool
        self.n_levels = L = len(spec.levels) + 1
        self.level_costs = np.array([lv["cost"] for lv in spec.levels] + [spec.top_cost], dtype=np.float64)
        executor = getattr(self.oracle, "executor", None)
        self.level_oracles: list[Any] = []
        for lv in spec.levels:
            inner = make_oracle(lv["oracle"], **lv["kwargs"])
            cache = LabelCache(Path(self.cache_dir) / "labels" / f"{inner.name}.sqlite")
            self.level_oracles.append(CachedOracle(inner, cache, executor=executor))
        self.level_oracles.append(self.oracle)
        self.costs = np.repeat(self.level_costs, N)  # (V,) level-major
        self.levels_of = np.repeat(np.arange(L), N)
        base = observation_space(N * L, spec.embedding_dim)
        self.observation_space = spaces.Dict({
            **base.spaces,
            "level": spaces.Box(0, L - 1, (N * L,), np.int64),
            "cost": spaces.Box(0, np.float32(np.inf), (N * L,), np.float32),
        })
        self.action_space = CostMask(self.costs)
        self.mask = np.ones(N * L, dtype=np.int8)
        self.cost_budget = spec.budget * spec.top_cost
        self.round_capacity = spec.batch_size * spec.top_cost

    # ------------------------------------------------------------------------------- episode
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        gym.Env.reset(self, seed=seed)
        rng, spec = self.np_random, self.task
        t0 = time.perf_counter()
        self._done, self.episode = True, None
        self.mask = np.ones(self.n_pool * self.n_levels, dtype=np.int8)
        init = np.sort(rng.choice(len(self.reserve_frames), size=spec.n_initial, replace=False))
        frames = [self.reserve_frames[i] for i in init]
        labels = self.level_oracles[-1].label(frames)
        if all(lab.failed for lab in labels):
            errs = sorted({lab.error for lab in labels})
            raise RuntimeError(f"every initial label failed; the top-level oracle cannot label this reserve: {errs}")
        potential = MultiLevelPotential(self.representation, spec.model, dict(spec.model_kwargs), self.n_levels,
                                        seed=int(rng.integers(2**31)))
        levels = [Level(train=loop.TrainingSet(data=self.candidates)) for _ in range(self.n_levels)]
        ep = MultiFidelityEpisode(potential=potential, levels=levels)
        self._record(ep, self.n_levels - 1, frames, labels, [-1] * len(frames), [self.n_pool + int(i) for i in init])
        self.episode = ep
        self._fit([False] * (self.n_levels - 1) + [True])
        ep.metrics = loop.evaluate(ep.potential, self.validation)
        self._update_mask()
        self._done = False
        return self._observe(), self._info([], [], time.perf_counter() - t0)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if self._done:
            raise RuntimeError("the episode is over (or was never started); call reset()")
        ep, spec = self.episode, self.task
        t0 = time.perf_counter()
        chosen = self.validate_action(action)
        before, failed, cost, changed = ep.metrics, [], 0.0, [False] * self.n_levels
        ep.round += 1
        ep.timings = {}
        t_label = time.perf_counter()
        for level in range(self.n_levels):
            picked = chosen[self.levels_of[chosen] == level]
            if not len(picked):
                continue
            pool_idx = picked - level * self.n_pool
            frames = [self.pool_frames[i] for i in pool_idx]
            labels = self.level_oracles[level].label(frames)
            self._record(ep, level, frames, labels, pool_idx.tolist(), pool_idx.tolist())
            failed += [int(v) for v, lab in zip(picked, labels) if lab.failed]
            changed[level] = any(not lab.failed for lab in labels)
            spent = len(picked) * float(self.level_costs[level])
            cost += spent
            ep.cost_used += spent  # at once: a later level's oracle raising leaves this level charged
        ep.timings["label"] = time.perf_counter() - t_label
        if any(changed):
            t1 = time.perf_counter()
            self._fit(changed)
            t2 = time.perf_counter()
            ep.metrics = loop.evaluate(ep.potential, self.validation)
            ep.timings.update(train=t2 - t1, evaluate=time.perf_counter() - t2)
        self._update_mask()
        terminated = self._terminated()
        reward = round_reward(self.reward_fn, before, ep.metrics, cost, spec.reward_per_cost)
        self._done = terminated
        t3 = time.perf_counter()
        obs = self._observe()
        ep.timings["observe"] = time.perf_counter() - t3
        return obs, reward, terminated, False, self._info(chosen, failed, time.perf_counter() - t0)

    def _record(self, ep: MultiFidelityEpisode, level: int, frames: list[Atoms], labels: list[Label],
                index: list[int], rows: list[int]) -> None:
        """Keep every label paid for at ``level``; the successful ones join that level's training set."""
        lv = ep.levels[level]
        lv.labelled.extend(frames, labels, index, ep.round)
        ok = [k for k, lab in enumerate(labels) if not lab.failed]
        lv.train.add([labels[k] for k in ok], [rows[k] for k in ok])

    def _fit(self, changed: list[bool]) -> None:
        ep = self.episode
        parts = []
        for lv in ep.levels:
            if not lv.train.rows:
                parts.append(None)
                continue
            E, F = lv.train.labels()
            parts.append((E, F, np.array(lv.train.rows, dtype=np.int64)))
        t0 = time.perf_counter()
        ep.potential.fit_levels(self.candidates, parts, self.np_random, changed)
        ep.train_seconds += time.perf_counter() - t0
        E, F, idx = parts[-1]
        _, Fp = ep.potential.predict(self.candidates, idx=idx)
        ep.train_force_rmse = float(np.sqrt(((Fp.mean(0) - F) ** 2).mean()))

    def _update_mask(self) -> None:
        """Unavailable: labelled (any outcome), or dearer than what is left of the budget."""
        left = self.cost_budget - self.episode.cost_used
        labelled = np.zeros(len(self.mask), dtype=bool)
        for level, lv in enumerate(self.episode.levels):
            idx = np.array([i for i in lv.labelled.index if i >= 0], dtype=np.int64)
            labelled[level * self.n_pool + idx] = True
        self.mask = (~labelled & (self.costs <= left * (1 + COST_SLACK))).astype(np.int8)
        self.action_space.available = self.mask
        self.action_space.capacity = self._max_cost()

    def _terminated(self) -> bool:
        return not self.mask.any()

    def _max_cost(self) -> float:
        return max(0.0, min(self.round_capacity, self.cost_budget - self.episode.cost_used))

    # ------------------------------------------------------------------------------- actions
    def validate_action(self, action: Any) -> np.ndarray:
        """Indices of the virtual candidates the 0/1 action vector selects, or ValueError."""
        V = len(self.mask)
        a = np.asarray(action)
        if a.shape != (V,):
            raise ValueError(f"a multi-fidelity action is a 0/1 vector over the {V} virtual candidates "
                             f"(N x L = {self.n_pool} x {self.n_levels}), got shape {a.shape}")
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.bool_) or np.issubdtype(a.dtype, np.floating)):
            raise ValueError(f"action must be numeric 0/1, got dtype {a.dtype}")
        if not np.all((a == 0) | (a == 1)):
            raise ValueError(f"action entries must be 0 or 1, got values {np.unique(a).tolist()}")
        chosen = np.flatnonzero(a).astype(np.int64)
        if not len(chosen):
            raise ValueError("the action labels nothing; pick at least one virtual candidate")
        masked = chosen[self.mask[chosen] == 0]
        if len(masked):
            raise ValueError(f"virtual candidates {masked.tolist()} are masked (labelled already, or dearer than "
                             "the budget left); see obs['mask']")
        spend, cap = float(self.costs[chosen].sum()), self._max_cost()
        if spend > cap * (1 + COST_SLACK):
            raise ValueError(f"the action costs {spend:.6g} s; at most {cap:.6g} s this round (batch_size x top_cost "
                             f"= {self.round_capacity:g} s, {self.cost_budget - self.episode.cost_used:.6g} s left)")
        return chosen

    def _max_picks(self) -> int:
        return int(self.mask.sum())

    # ------------------------------------------------------------------------------- observation
    def _candidate_view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ep, N = self.episode, self.n_pool
        pool = np.arange(N)
        top_rows = np.array(ep.levels[-1].train.rows, dtype=np.int64)
        noise = noise_estimate(self.embeddings[:N], self.embeddings[top_rows],
                               ep.levels[-1].labelled.noise_sigmas, ep.train_force_rmse)
        ptr = self.candidates.atom_ptr(pool) if self.layout == "flat" else None
        top_E, top_F = ep.potential.predict(self.candidates, idx=pool)
        parts = []
        for level, lv in enumerate(ep.levels):
            if level == self.n_levels - 1 or not ep.potential.fitted[level]:
                E, F = top_E, top_F
            else:
                E, F = ep.potential.predict_level(self.candidates, level, idx=pool)
            rows = np.array(lv.train.rows + [int(i) for i in lv.labelled.index if i >= 0], dtype=np.int64)
            ref = np.unique(rows) if len(rows) else np.unique(top_rows)
            dist = nearest_distance(self.embeddings[:N], self.embeddings[ref])
            parts.append(candidate_features(E, F, dist, noise, ptr))
        emb = np.tile(self.embeddings[:N], (self.n_levels, 1))
        return np.concatenate(parts), emb, self.mask

    def _observe(self) -> dict[str, np.ndarray]:
        cand, emb, mask = self._candidate_view()
        obs = make_observation(cand, emb, mask, self.global_features, self._global_values())
        obs["level"] = self.levels_of.astype(np.int64)
        obs["cost"] = self.costs.astype(np.float32)
        return obs

    def _global_values(self) -> dict[str, float]:
        ep, spec = self.episode, self.task
        n = sum(len(lv.labelled) for lv in ep.levels)
        failed = sum(lv.labelled.n_failed for lv in ep.levels)
        return {
            "budget_used": ep.cost_used / self.cost_budget,
            "n_labels": len(ep.levels[-1].labelled) / (spec.n_initial + spec.budget),  # top-level labels
            "log10_force_mae": float(np.log10(ep.metrics["force_mae"])),
            "log10_energy_mae": float(np.log10(ep.metrics["energy_mae"])),
            "failed_fraction": failed / max(n, 1),
        }

    def _info(self, chosen: Any, failed: list[int], seconds: float) -> dict[str, Any]:
        ep = self.episode
        metrics = dict(ep.metrics)
        metrics.update({
            keys.N_LABELS: sum(len(lv.labelled) for lv in ep.levels),
            keys.N_FAILED: sum(lv.labelled.n_failed for lv in ep.levels),
            keys.BUDGET_USED: ep.cost_used / self.task.top_cost,
            keys.ORACLE_SECONDS: ep.cost_used + self.task.n_initial * self.task.top_cost,  # declared, initial included
            keys.TRAIN_FORCE_RMSE: ep.train_force_rmse,
            "cost_used": ep.cost_used,
        })
        for level, lv in enumerate(ep.levels):
            metrics[f"n_labels[level={level}]"] = len(lv.labelled)
        if self.wall_times:
            metrics.update({keys.TRAIN_SECONDS: ep.train_seconds, keys.ROUND_SECONDS: seconds})
        out = {
            keys.METRICS_KEY: metrics,
            keys.ROUND: ep.round,
            keys.CHOSEN: [int(i) for i in chosen],
            keys.FAILED: [int(i) for i in failed],
            keys.MAX_PICKS: 0 if self._done else self._max_picks(),
            keys.ANY_SUBSET: True,
            keys.N_MEMBERS: int(ep.potential.n_members),
            "max_cost": 0.0 if self._done else self._max_cost(),
        }
        if self.wall_times:
            out[keys.TIMINGS] = dict(ep.timings)
        return out

    # ------------------------------------------------------------------------------- instruments
    @property
    def budget_used(self) -> float:
        """Top-label equivalents charged after the initial labels (cost used / top_cost)."""
        return 0.0 if self.episode is None else self.episode.cost_used / self.task.top_cost

    @property
    def labelled(self):
        """The top level's labels (``level_labels(l)`` for the others)."""
        return None if self.episode is None else self.episode.levels[-1].labelled

    def level_labels(self, level: int) -> LabelledSet:
        """Every label paid for at ``level`` in this episode, failures included."""
        return self.episode.levels[level].labelled

    def refit_test_metrics(self, seed: int = 0, **settings: Any) -> dict[str, float]:
        raise NotImplementedError("a refit from scratch is not defined for the multi-level learner yet")

    def lookahead(self, batches, seed: int = 0) -> np.ndarray:
        raise NotImplementedError("the look-ahead expert reads one level's labels; not defined for multi-fidelity tasks")

    def predict_candidates(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError(
            "multi-fidelity candidates are (frame, level) pairs: the pool-mode instruments (true-error references, "
            "predict_candidates) are not defined here; see env.potential.predict_level"
        )

    def true_labels(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError(
            "the cheating references read one level's pool labels: not defined for multi-fidelity tasks"
        )

    def save_labels(self, path: str | Path) -> None:
        """The top level's successful labels to ``path`` (extxyz), each cheaper level's beside it as
        ``<stem>.level<l><suffix>`` (the tools that read ``labels.extxyz`` see the task's own level)."""
        p = Path(path)
        for level, lv in enumerate(self.episode.levels):
            lv.labelled.write(p if level == self.n_levels - 1 else p.with_name(f"{p.stem}.level{level}{p.suffix}"))
