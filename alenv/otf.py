"""OnTheFlyEnv: one step is one round of on-the-fly active learning, candidates from model-driven MD."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from ase import Atoms

from alenv.data import LabelledSet
from alenv.descriptors.aev import AEVSpec
from alenv.env import _label_of, _labels_of
from alenv.metrics import dihedrals, errors, torsion_coverage
from alenv.models.calculator import UncertaintyBiasedCalculator
from alenv.models.ensemble import EnsemblePotential, FeaturizedFrames
from alenv.observe import (
    CANDIDATE_FEATURES,
    OTF_GLOBAL_FEATURES,
    Embedder,
    nearest_distance,
    observation_space,
    per_element_means,
    spreads,
)
from alenv.oracles import CachedOracle, LabelCache, make_oracle
from alenv.rewards import get_reward, round_reward
from alenv.samplers.failures import check_structure, n_fragments
from alenv.samplers.model_md import ModelMD, RoundResult, Walker, thermalise
from alenv.spaces import LabelMask
from alenv.tasks import default_cache_dir, get_task, load_task_data
from alenv.tasks.build import TORSIONS


class OnTheFlyEnv(gym.Env):
    """On-the-fly active learning: MD driven by the current ensemble proposes the candidates.

    **Episode.** ``reset`` labels ``n_initial`` configurations drawn from the task's reserve, trains the
    ensemble from scratch, starts ``otf.walkers`` MD walkers from them (walker w at the task temperature
    ``temperatures[w % len]``), and runs the first round of model MD. Each ``step`` labels the chosen
    candidates, retrains (warm start) if any label succeeded, evaluates on the test set, and runs the next
    round of MD with the new model. Each round, every walker runs ``otf.steps_per_round`` Langevin steps
    and leaves ``otf.candidates_per_walker`` evenly spaced frames as candidates.

    **Failures.** Every MD step is checked (``alenv.samplers.failures``): non-finite or exploding energy,
    close contact, force spread above a ceiling, fragmentation. A failed walker restarts from a safe labelled
    structure (one that passed the geometric checks) with fresh velocities and finishes the round; after
    ``otf.max_restarts`` failures in one round it gives up until the next round, and its empty candidate slots
    are masked. Labels are never lost: they are cached on disk and kept in the episode's labelled set.

    **Observation** (``Dict``, fixed shapes; C = walkers x candidates_per_walker): ``candidates`` (C, F),
    ``embedding`` (C, D) and ``mask`` (C,) as in pool mode (features in ``candidate_features``; mask 0 marks
    an empty slot), and ``globals`` named in ``global_features``: those of pool mode plus the fraction of
    the MD-step budget spent, the last round's failures per walker and the fraction of its steps survived.

    **Action.** A 0/1 vector of shape (C,): 1 sends that candidate to the oracle. Any subset of the
    unmasked candidates with at most ``batch_size`` entries (and at most the labels left in the budget) is
    valid, the empty one included (label nothing, keep exploring). Anything else raises ``ValueError``.
    ``action_space.sample()`` follows the live mask and limits.

    **Reward.** The decrease of log test force MAE over the round (``reward`` of the task), plus
    ``otf.stability_weight`` times the fraction of the next MD round's steps that the walkers survived
    before their first failure.

    **Episode end.** ``terminated`` once ``budget`` labels were requested or the MD-step budget
    ``otf.md_step_budget`` has no room for another round; the final observation then has every candidate
    masked. ``truncated`` is never set by the environment.

    **Info.** ``metrics`` as in pool mode plus ``md_steps`` (model-MD steps so far), ``md_failures`` (this
    round), ``md_failures_total``, ``md_survived`` (mean steps before a walker's first failure this round),
    ``stability_steps`` and ``stability_min`` (mean and least steps to failure of fresh MD runs from test-set
    starting points, capped at ``otf.stability_steps``; measured at reset, every ``otf.stability_every``
    rounds and at the end), and for molecules with torsions ``torsion_coverage`` (share of the torsion-space
    cells visited by the test set's oracle MD that model MD has visited so far) and
    ``label_torsion_coverage`` (the same for the labelled frames). Also ``round``, ``chosen`` (candidate
    indices labelled), ``failed`` (labels that failed), ``md_failure_kinds`` (counts by kind this round),
    and ``any_subset`` = True (agents may choose fewer than ``batch_size``).

    **Arguments.** As ``ActiveLearningEnv``: ``task`` (an on-the-fly task, mode ``"otf"``), ``cache_dir``,
    ``progress``, ``wall_times``, and overrides of any ``TaskSpec`` field (``otf={"walkers": 2}``, ...).

    **Determinism.** All randomness (initial labels, weights, minibatches, velocities, Langevin noise,
    restarts) comes from ``self.np_random``. Same seed, same episode (CPU).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        task: str = "Ethanol-GFN2-OTF-tiny",
        cache_dir: str | Path | None = None,
        progress: bool = False,
        wall_times: bool = True,
        **overrides: Any,
    ):
        self.task = spec = get_task(task).with_overrides(**overrides)
        if spec.mode != "otf":
            raise ValueError(f"task {spec.name} is a pool-mode task; use alenv.env.ActiveLearningEnv (or its id)")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.wall_times, self.progress = wall_times, progress
        data = load_task_data(spec, self.cache_dir, progress=progress)
        self.reserve_frames, self.test_frames = data.reserve, data.test
        inner = make_oracle(spec.oracle, **spec.oracle_kwargs)
        self.oracle = CachedOracle(inner, LabelCache(self.cache_dir / "labels" / f"{inner.name}.sqlite"))
        self.oracle.store(self.reserve_frames, [_label_of(a) for a in self.reserve_frames])
        _, self.test_energy, self.test_forces, _ = _labels_of(self.test_frames)

        species = sorted({int(z) for a in self.reserve_frames + self.test_frames for z in a.numbers})
        self.aev_spec = AEVSpec(species=tuple(species), **spec.descriptor)
        probe = EnsemblePotential(self.aev_spec, spec.ensemble, seed=0)
        self.aev = probe.aev
        t0 = time.perf_counter()
        self.test = FeaturizedFrames(self.test_frames, self.aev)
        reserve = FeaturizedFrames(self.reserve_frames, self.aev, jacobian=False)
        self.featurize_seconds = time.perf_counter() - t0
        # Normalisation and embedding axes come from the geometries of the reserve and the test set (never
        # their labels): fixed coordinates for the whole episode, the same for every strategy.
        probe.set_normalisation([reserve, self.test])
        self._normalisation = (probe.feature_mean.clone(), probe.feature_scale.clone())
        ref = np.concatenate([self._per_element(reserve), self._per_element(self.test)])
        self.embedder = Embedder(ref, spec.embedding_dim)

        self.sampler = ModelMD(spec.md, spec.otf)
        self.n_candidates = spec.otf.n_candidates
        self.n_fragments_ref = n_fragments(self.reserve_frames[0], spec.otf.checks.bond_factor)
        n_starts = min(spec.otf.stability_starts, len(self.test_frames))
        picks = np.linspace(0, len(self.test_frames) - 1, n_starts).round().astype(int) if n_starts else []
        self.stability_starts = [self.test_frames[i] for i in picks]
        self.torsions = TORSIONS.get(spec.system)
        self.test_torsions = dihedrals(self.test_frames, self.torsions) if self.torsions else None

        self.reward_fn = get_reward(spec.reward)
        self.candidate_features = CANDIDATE_FEATURES
        self.global_features = OTF_GLOBAL_FEATURES
        self.observation_space = observation_space(self.n_candidates, spec.embedding_dim, len(OTF_GLOBAL_FEATURES))
        self.action_space = LabelMask(self.n_candidates, spec.batch_size)
        self.potential: EnsemblePotential | None = None
        self.labelled = LabelledSet()
        self._done = True

    # ------------------------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        spec, rng = self.task, self.np_random
        t0 = time.perf_counter()
        self.labelled = LabelledSet()
        self.train_data: FeaturizedFrames | None = None
        self.train_E: list[float] = []
        self.train_F: list[np.ndarray] = []
        self.safe_starts: list[Atoms] = []
        self.train_embeddings = np.zeros((0, spec.embedding_dim))
        self.budget_used = 0
        self.round = 0
        self.md_steps = 0
        self.md_failures_total = 0
        self.train_seconds = 0.0
        self.timings: dict[str, float] = {}
        self.explored_torsions: list[np.ndarray] = []
        init = np.sort(rng.choice(len(self.reserve_frames), size=spec.n_initial, replace=False))
        frames = [self.reserve_frames[i] for i in init]
        labels = self.oracle.label(frames)
        self._add_labels(frames, labels, [-1] * len(frames), 0)
        if not self.train_E:
            raise RuntimeError("every initial label failed; the oracle cannot label this task's reserve")
        self.potential = EnsemblePotential(self.aev_spec, spec.ensemble, seed=int(rng.integers(2**31)))
        self.potential.feature_mean, self.potential.feature_scale = (t.clone() for t in self._normalisation)
        self.potential.normalised = True
        self._train(rng)
        self.metrics = self._evaluate()
        self.stability = self._stability_test(rng)
        temps = spec.temperatures
        ok = [f for f, lab in zip(frames, labels) if not lab.failed]
        self.walkers = [
            Walker(thermalise(ok[w % len(ok)], temps[w % len(temps)], rng), float(temps[w % len(temps)]))
            for w in range(spec.otf.walkers)
        ]
        self._run_md(rng)
        self._done = False
        return self._observe(), self._info([], [], time.perf_counter() - t0)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if self._done:
            raise RuntimeError("the episode is over (or was never started); call reset()")
        spec, rng = self.task, self.np_random
        t0 = time.perf_counter()
        chosen = self.validate_action(action)
        frames = [self.offered[i] for i in chosen]
        labels = self.oracle.label(frames)
        self.round += 1
        self.timings = {"label": time.perf_counter() - t0}
        self._add_labels(frames, labels, chosen.tolist(), self.round)
        self.budget_used += len(chosen)
        failed = [int(i) for i, lab in zip(chosen, labels) if lab.failed]
        before = self.metrics
        if len(failed) < len(chosen):
            t1 = time.perf_counter()
            self._train(rng)
            t2 = time.perf_counter()
            self.metrics = self._evaluate()
            self.timings.update(train=t2 - t1, evaluate=time.perf_counter() - t2)
        cost = sum(lab.seconds for lab in labels)
        reward = round_reward(self.reward_fn, before, self.metrics, cost, spec.reward_per_cost)
        o = spec.otf
        terminated = self.budget_used >= spec.budget or self.md_steps + o.walkers * o.steps_per_round > o.md_step_budget
        if terminated or (o.stability_every and self.round % o.stability_every == 0):
            t3 = time.perf_counter()
            self.stability = self._stability_test(rng)
            self.timings["stability"] = time.perf_counter() - t3
        if terminated:
            self.mask = np.zeros(self.n_candidates, dtype=np.int8)
            self.action_space.available = self.mask
            self.action_space.limit = 0
            self.last_round = RoundResult(list(self.offered), [], np.zeros(0, dtype=np.int64), 0)
        else:
            t4 = time.perf_counter()
            self._run_md(rng)
            self.timings["md"] = time.perf_counter() - t4
            reward += o.stability_weight * float(self.last_round.survived.mean()) / o.steps_per_round
        self._done = terminated
        t5 = time.perf_counter()
        obs = self._observe()
        self.timings["observe"] = time.perf_counter() - t5
        return obs, reward, terminated, False, self._info(chosen, failed, time.perf_counter() - t0)

    # ------------------------------------------------------------------------------------- stages
    def max_picks(self) -> int:
        """How many candidates may be labelled this round: batch size, labels left, unmasked candidates."""
        return int(min(self.task.batch_size, self.task.budget - self.budget_used, int(self.mask.sum())))

    def validate_action(self, action: Any) -> np.ndarray:
        """Indices of the candidates the 0/1 action vector selects, or ValueError."""
        a = np.asarray(action)
        if a.shape != (self.n_candidates,):
            raise ValueError(
                f"an on-the-fly action is a 0/1 vector of shape ({self.n_candidates},), got shape {a.shape}"
            )
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.bool_) or np.issubdtype(a.dtype, np.floating)):
            raise ValueError(f"action must be numeric 0/1, got dtype {a.dtype}")
        if not np.all((a == 0) | (a == 1)):
            raise ValueError(f"action entries must be 0 or 1, got values {np.unique(a).tolist()}")
        chosen = np.flatnonzero(a).astype(np.int64)
        masked = chosen[self.mask[chosen] == 0]
        if len(masked):
            raise ValueError(f"candidates {masked.tolist()} are masked (no frame in that slot); see obs['mask']")
        if len(chosen) > self.max_picks():
            raise ValueError(
                f"action labels {len(chosen)} candidates; at most {self.max_picks()} allowed now "
                f"(batch_size {self.task.batch_size}, {self.task.budget - self.budget_used} labels left)"
            )
        return chosen

    def _per_element(self, data: FeaturizedFrames) -> np.ndarray:
        mean, scale = self._normalisation
        G = ((data.G - mean[data.species]) / scale[data.species]).numpy()
        return per_element_means(G, data.species.numpy(), self.aev_spec.n_species)

    def _add_labels(self, frames: list[Atoms], labels: list, index: list[int], round_: int) -> None:
        self.labelled.extend(frames, labels, index, round_)
        ok = [(f, lab) for f, lab in zip(frames, labels) if not lab.failed]
        if not ok:
            return
        new = FeaturizedFrames([f for f, _ in ok], self.aev)
        if self.train_data is None:
            self.train_data = new
        else:
            self.train_data.extend(new)
        self.train_E += [lab.energy for _, lab in ok]
        self.train_F += [np.asarray(lab.forces) for _, lab in ok]
        self.train_embeddings = np.concatenate([self.train_embeddings, self.embedder(self._per_element(new))])
        checks = self.task.otf.checks
        self.safe_starts += [f for f, _ in ok if check_structure(f, checks, self.n_fragments_ref) is None]
        e = np.array(self.train_E) / len(frames[0])
        self.energy_window = (float(e.min()), float(e.max()))

    def _train(self, rng: np.random.Generator) -> None:
        E, F = np.array(self.train_E), np.stack(self.train_F)
        t0 = time.perf_counter()
        self.last_fit = self.potential.fit(self.train_data, E, F, rng)
        self.train_seconds += time.perf_counter() - t0
        _, Fp = self.potential.predict(self.train_data)
        self.train_force_rmse = float(np.sqrt(((Fp.mean(0) - F) ** 2).mean()))

    def _evaluate(self) -> dict[str, float]:
        E, F = self.potential.predict(self.test)
        return errors(E.mean(0), F.mean(0), self.test_energy, self.test_forces).as_dict()

    def calculator(self):
        """The ASE calculator that drives MD now: the ensemble, with the uncertainty bias if ``otf.bias > 0``."""
        o = self.task.otf
        if o.bias > 0:
            return UncertaintyBiasedCalculator(self.potential, o.bias, o.bias_width)
        return self.potential.as_calculator()

    def _stability_test(self, rng: np.random.Generator) -> np.ndarray:
        o = self.task.otf
        if not self.stability_starts or o.stability_steps <= 0:
            return np.zeros(0)
        survived, _ = self.sampler.time_to_failure(
            self.stability_starts, self.task.temperatures, self.potential.as_calculator(), o.stability_steps, rng,
            self.energy_window, self.n_fragments_ref,
        )
        return survived

    def _run_md(self, rng: np.random.Generator) -> None:
        res = self.sampler.run_round(
            self.walkers, self.calculator(), rng, self.safe_starts, self.energy_window, self.n_fragments_ref
        )
        self.last_round = res
        self.md_steps += res.steps
        self.md_failures_total += len(res.failures)
        self.offered = res.frames
        self.mask = np.array([f is not None for f in res.frames], dtype=np.int8)
        self.action_space.available = self.mask.copy()
        self.action_space.limit = self.max_picks()
        if self.torsions and res.visited:
            self.explored_torsions.append(dihedrals(res.visited, self.torsions))
        # features of the offered frames
        C, D = self.n_candidates, self.task.embedding_dim
        self.cand_features = np.zeros((C, len(CANDIDATE_FEATURES)))
        self.cand_embedding = np.zeros((C, D))
        idx = np.flatnonzero(self.mask)
        if len(idx):
            data = FeaturizedFrames([res.frames[i] for i in idx], self.aev)
            E, F = self.potential.predict(data)
            emb = self.embedder(self._per_element(data))
            dist = nearest_distance(emb, self.train_embeddings)
            self.cand_features[idx] = np.concatenate([spreads(E, F), dist[:, None]], axis=1)
            self.cand_embedding[idx] = emb

    def _observe(self) -> dict[str, np.ndarray]:
        spec, o = self.task, self.task.otf
        n_labels = len(self.labelled)
        res = self.last_round
        glob = np.array(
            [
                self.budget_used / spec.budget,
                n_labels / (spec.n_initial + spec.budget),
                np.log10(self.metrics["force_mae"]),
                np.log10(self.metrics["energy_mae"]),
                self.labelled.n_failed / max(n_labels, 1),
                self.md_steps / o.md_step_budget,
                len(res.failures) / o.walkers,
                float(res.survived.mean()) / o.steps_per_round if len(res.survived) else 1.0,
            ]
        )
        return {
            "candidates": self.cand_features.astype(np.float32),
            "embedding": self.cand_embedding.astype(np.float32),
            "mask": self.mask.copy(),
            "globals": glob.astype(np.float32),
        }

    def _info(self, chosen, failed: list[int], seconds: float) -> dict[str, Any]:
        res = self.last_round
        metrics = dict(self.metrics)
        metrics.update(
            n_labels=len(self.labelled),
            n_failed=self.labelled.n_failed,
            budget_used=self.budget_used,
            oracle_seconds=self.labelled.oracle_seconds,
            train_force_rmse=self.train_force_rmse,
            md_steps=self.md_steps,
            md_failures=len(res.failures),
            md_failures_total=self.md_failures_total,
            md_survived=float(res.survived.mean()) if len(res.survived) else float("nan"),
        )
        if len(self.stability):
            metrics.update(stability_steps=float(self.stability.mean()), stability_min=float(self.stability.min()))
        if self.torsions:
            explored = np.concatenate(self.explored_torsions) if self.explored_torsions else np.zeros((0, len(self.torsions)))
            ok = [a for a, lab in zip(self.labelled.frames, self.labelled.labels) if not lab.failed]
            metrics.update(
                torsion_coverage=torsion_coverage(explored, self.test_torsions),
                label_torsion_coverage=torsion_coverage(dihedrals(ok, self.torsions), self.test_torsions),
            )
        info = {
            "metrics": metrics,
            "round": self.round,
            "chosen": np.array(chosen, dtype=np.int64),
            "failed": list(failed),
            "md_failure_kinds": dict(Counter(kind for _, _, kind in res.failures)),
            "any_subset": True,
            "max_picks": 0 if self._done else self.max_picks(),
        }
        if self.wall_times:
            metrics.update(train_seconds=self.train_seconds, round_seconds=seconds)
            info["timings"] = dict(self.timings)
        return info

    # ------------------------------------------------------------------------------------- helpers
    def save_labels(self, path: str | Path) -> None:
        """Write every successful label of this episode to extxyz (candidate index and round in info)."""
        self.labelled.write(path)
