"""OnTheFlyEnv: one step is one round of on-the-fly active learning, candidates from model-driven MD."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np
from ase import Atoms

from alenv import keys
from alenv.metrics import dihedrals, torsion_coverage
from alenv.models.calculator import UncertaintyBiasedCalculator
from alenv.observe import (
    CANDIDATE_FEATURES, OTF_GLOBAL_FEATURES, candidate_features, nearest, nearest_distance, noise_estimate,
    observation_space,
)
from alenv.round_env import RoundEnv
from alenv.samplers.failures import check_structure, fragments_reference
from alenv.samplers.dynamics import thermalise
from alenv.samplers.model_md import ModelMD, RoundResult, Walker
from alenv.spaces import LabelMask
from alenv.tasks import TaskData
from alenv.tasks.build import TORSIONS


class OnTheFlyEnv(RoundEnv):
    """On-the-fly active learning: MD driven by the current ensemble proposes the candidates.

    **Episode.** ``reset`` labels ``n_initial`` configurations drawn from the task's reserve, trains the
    ensemble from scratch, starts ``otf.walkers`` MD walkers from them (walker w at the task temperature
    ``temperatures[w % len]``), and runs the first round of model MD. Each ``step`` labels the chosen
    candidates, retrains (warm start) if any label succeeded, evaluates on the validation set, and runs the next
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
    With ``model_features=P'`` also ``model_features`` (C, P'), ``model_dist_to_train`` (C,) and
    ``model_nearest_train`` (C,) as in pool mode, for the round's candidates after the model that ran
    their MD was fitted (zeros and -1 in empty slots); the labelled set is every successful label.

    **Action.** A 0/1 vector of shape (C,): 1 sends that candidate to the oracle. Any subset of the
    unmasked candidates with at most ``batch_size`` entries (and at most the labels left in the budget) is
    valid, the empty one included (label nothing, keep exploring). Anything else raises ``ValueError``.
    ``action_space.sample()`` follows the live mask and limits.

    **Reward.** The decrease of log validation force MAE over the round (``reward`` of the task), plus
    ``otf.stability_weight`` times the fraction of the next MD round's steps that the walkers survived
    before their first failure (``alenv.rewards.round_reward``).

    **Episode end.** ``terminated`` once ``budget`` labels were requested or the MD-step budget
    ``otf.md_step_budget`` has no room for another round; the final observation then has every candidate
    masked. ``truncated`` is never set by the environment.

    **Info.** ``metrics`` as in pool mode plus ``md_steps`` (model-MD steps so far), ``md_failures`` (this
    round), ``md_failures_total``, ``md_survived`` (mean steps before a walker's first failure this round),
    ``stability_steps`` and ``stability_min`` (mean and least steps to failure of fresh MD runs from validation-set
    starting points, capped at ``otf.stability_steps``; measured at reset, every ``otf.stability_every``
    rounds and at the end), and for molecules with torsions ``torsion_coverage`` (share of the torsion-space
    cells visited by the validation set's oracle MD that model MD has visited so far) and
    ``label_torsion_coverage`` (the same for the labelled frames). Also ``round``, ``chosen`` (candidate
    indices labelled, a list), ``failed`` (labels that failed), ``md_failure_kinds`` (counts by kind this
    round), ``max_picks`` (the most candidates the next action may label: batch size, labels left and
    unmasked candidates) and ``any_subset`` = True (agents may choose fewer, none included). Every key and
    unit: ``alenv.keys``. The sealed test set is read only by ``test_metrics()``, for reports.

    **Arguments.** As ``ActiveLearningEnv``: ``task`` (an on-the-fly task, mode ``"otf"``), ``cache_dir``,
    ``progress``, ``wall_times`` (off by default), ``render_mode`` (accepted, nothing renders),
    ``jacobian_limit_gb`` (reference sets featurised per evaluation above it), ``oracle_executor`` (each round's
    labels on a process pool, Slurm or Ray; see ``alenv.oracles.executors``), and overrides of any ``TaskSpec`` field (``otf={"walkers": 2}``, ...).

    **Determinism.** All randomness (initial labels, weights, minibatches, velocities, Langevin noise,
    restarts) comes from ``self.np_random``. Same seed, same episode (CPU, with the same number of torch
    threads: a different thread count sums in another order, see ``alenv.threads``).
    """

    mode = "otf"
    default_task = "Ethanol-GFN2-OTF-tiny"

    def _prepare(self, data: TaskData) -> None:
        spec, rep = self.task, self.representation
        reserve = rep.featurize(self.reserve_frames, jacobian=False)
        validation = rep.featurize(self.validation_frames, jacobian=False)
        # Normalisation and embedding axes come from the geometries of the reserve and the validation set
        # (never labels, never the sealed test set): fixed coordinates for the episode, for every strategy.
        rep.set_normalisation([reserve, validation])
        rep.fit_embedding(np.concatenate([rep.per_element(reserve), rep.per_element(validation)]))
        self.sampler = ModelMD(spec.md, spec.otf)
        self.n_candidates = spec.otf.n_candidates
        # fragments of the start structure, per composition when the reserve holds several
        self.n_fragments_ref = fragments_reference(self.reserve_frames, spec.otf.checks.bond_factor)
        n_starts = min(spec.otf.stability_starts, len(self.validation_frames))
        picks = np.linspace(0, len(self.validation_frames) - 1, n_starts).round().astype(int) if n_starts else []
        self.stability_starts = [self.validation_frames[i] for i in picks]
        self.torsions = TORSIONS.get(spec.system)
        # torsion coverage is measured against the target distribution's validation frames
        self.target_torsions = dihedrals(self.validation_frames, self.torsions) if self.torsions else None
        self.candidate_features = CANDIDATE_FEATURES
        self.global_features = OTF_GLOBAL_FEATURES
        self.observation_space = observation_space(
            self.n_candidates, spec.embedding_dim, len(OTF_GLOBAL_FEATURES), spec.model_features
        )
        self.action_space = LabelMask(self.n_candidates, spec.batch_size)
        self.mask = np.zeros(self.n_candidates, dtype=np.int8)

    # ------------------------------------------------------------------------------- mode hooks
    def _reset_mode(self) -> None:
        self.safe_starts: list[Atoms] = []
        self.train_embeddings = np.zeros((0, self.task.embedding_dim))
        self.md_steps = 0
        self.md_failures_total = 0
        self.explored_torsions: list[np.ndarray] = []

    def _on_labelled(self, chosen: np.ndarray | None, ok_frames: list[Atoms]) -> None:
        """Embeddings of the new labels, safe restart points and the labelled energy window for MD checks."""
        if not ok_frames:
            return
        train = self.episode.train
        new_rows = np.arange(len(train.data) - len(ok_frames), len(train.data))
        self.train_embeddings = np.concatenate([self.train_embeddings, self.representation.embed(train.data, new_rows)])
        checks = self.task.otf.checks
        self.safe_starts += [f for f in ok_frames if check_structure(f, checks, self.n_fragments_ref) is None]
        e = np.array(train.energies) / np.array([len(f) for f in train.forces])  # each label per its own atom
        self.energy_window = (float(e.min()), float(e.max()))
        if self.task.model_features:  # refitted: the labelled frames' model features, until the next fit
            self.train_model_features = self._model_features(train.data)

    def _start_sampling(self, rng: np.random.Generator, initial: list[Atoms]) -> None:
        spec = self.task
        self.stability = self._stability_test(rng)
        temps = spec.otf.walker_temperatures or spec.temperatures
        self.walkers = [
            Walker(thermalise(initial[w % len(initial)], temps[w % len(temps)], rng), float(temps[w % len(temps)]))
            for w in range(spec.otf.walkers)
        ]
        self._run_md(rng)

    def _terminated(self) -> bool:
        o, ep = self.task.otf, self.episode
        return ep.budget_used >= self.task.budget or self.md_steps + o.walkers * o.steps_per_round > o.md_step_budget

    def _after_round(self, terminated: bool, rng: np.random.Generator) -> float | None:
        """Stability test when scheduled, then the next round of model MD (none once the episode ends)."""
        o, ep = self.task.otf, self.episode
        if terminated or (o.stability_every and ep.round % o.stability_every == 0):
            t0 = time.perf_counter()
            self.stability = self._stability_test(rng)
            ep.timings["stability"] = time.perf_counter() - t0
        if terminated:
            self.mask = np.zeros(self.n_candidates, dtype=np.int8)
            self.action_space.available = self.mask
            self.action_space.limit = 0
            self.last_round = RoundResult(list(self.offered), [], np.zeros(0, dtype=np.int64), 0)
            return None
        t1 = time.perf_counter()
        self._run_md(rng)
        ep.timings["md"] = time.perf_counter() - t1
        return float(self.last_round.survived.mean()) / o.steps_per_round

    def _stability_weight(self) -> float:
        return self.task.otf.stability_weight

    def _candidate_frames(self, chosen: np.ndarray) -> list[Atoms]:
        return [self.offered[i] for i in chosen]

    def _candidate_view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.cand_features, self.cand_embedding, self.mask

    def _max_picks(self) -> int:
        """How many candidates may be labelled this round: batch size, labels left, unmasked candidates."""
        return int(min(self.task.batch_size, self.task.budget - self.episode.budget_used, int(self.mask.sum())))

    max_picks = _max_picks

    def _extra_globals(self) -> dict[str, float]:
        o, res = self.task.otf, self.last_round
        return {
            "md_budget_used": self.md_steps / o.md_step_budget,
            "md_failure_rate": len(res.failures) / o.walkers,
            "md_survived": float(res.survived.mean()) / o.steps_per_round if len(res.survived) else 1.0,
        }

    def _extra_metrics(self) -> dict[str, float]:
        res = self.last_round
        out = {
            keys.MD_STEPS: self.md_steps,
            keys.MD_FAILURES: len(res.failures),
            keys.MD_FAILURES_TOTAL: self.md_failures_total,
            keys.MD_SURVIVED: float(res.survived.mean()) if len(res.survived) else float("nan"),
        }
        if len(self.stability):
            out.update({keys.STABILITY_STEPS: float(self.stability.mean()), keys.STABILITY_MIN: float(self.stability.min())})
        if self.torsions:
            explored = np.concatenate(self.explored_torsions) if self.explored_torsions else np.zeros((0, len(self.torsions)))
            ep = self.episode
            ok = [a for a, lab in zip(ep.labelled.frames, ep.labelled.labels) if not lab.failed]
            out[keys.TORSION_COVERAGE] = torsion_coverage(explored, self.target_torsions)
            out[keys.LABEL_TORSION_COVERAGE] = torsion_coverage(dihedrals(ok, self.torsions), self.target_torsions)
        return out

    def _info(self, chosen: Any, failed: list[int], seconds: float) -> dict[str, Any]:
        out = super()._info(chosen, failed, seconds)
        out[keys.MD_FAILURE_KINDS] = dict(Counter(kind for _, _, kind in self.last_round.failures))
        out[keys.SLOT_WALKER] = np.repeat(np.arange(self.task.otf.walkers), self.task.otf.candidates_per_walker)
        return out

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
        limit = self._max_picks()
        if len(chosen) > limit:
            raise ValueError(
                f"action labels {len(chosen)} candidates; at most {limit} allowed now "
                f"(batch_size {self.task.batch_size}, {self.task.budget - self.episode.budget_used} labels left)"
            )
        return chosen

    # ------------------------------------------------------------------------------- model MD
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
        """One round of model MD; the offered frames become the candidates, with their features."""
        res = self.sampler.run_round(
            self.walkers, self.calculator(), rng, self.safe_starts, self.energy_window, self.n_fragments_ref
        )
        self.last_round = res
        self.md_steps += res.steps
        self.md_failures_total += len(res.failures)
        self.offered = res.frames
        self.mask = np.array([f is not None for f in res.frames], dtype=np.int8)
        self.action_space.available = self.mask.copy()
        self.action_space.limit = self._max_picks()
        if self.torsions and res.visited:
            self.explored_torsions.append(dihedrals(res.visited, self.torsions))
        C, D, P = self.n_candidates, self.task.embedding_dim, self.task.model_features
        self.cand_features = np.zeros((C, len(CANDIDATE_FEATURES)))
        self.cand_embedding = np.zeros((C, D))
        self.cand_model = (np.zeros((C, P)), np.zeros(C), np.full(C, -1, dtype=np.int64))  # empty slots
        idx = np.flatnonzero(self.mask)
        if len(idx):
            data = self.representation.featurize([res.frames[i] for i in idx])
            E, F = self.potential.predict(data)
            emb = self.representation.embed(data)
            ep = self.episode
            noise = noise_estimate(emb, self.train_embeddings, ep.labelled.noise_sigmas, ep.train_force_rmse)
            ptr = data.atom_ptr() if data.layout == "flat" else None
            dist = nearest_distance(emb, self.train_embeddings)
            self.cand_features[idx] = candidate_features(E, F, dist, noise, ptr)
            self.cand_embedding[idx] = emb
            if P:
                phi = self._model_features(data)
                model_dist, model_row = nearest(phi, self.train_model_features)
                for part, value in zip(self.cand_model, (phi, model_dist, model_row)):
                    part[idx] = value

    def _model_view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.cand_model
