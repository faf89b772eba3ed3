"""ActiveLearningEnv: one step is one round of pool-based active learning of an interatomic potential."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from alenv.data import LabelledSet, read_labelled
from alenv.descriptors.aev import AEVSpec
from alenv.metrics import errors
from alenv.models.ensemble import EnsemblePotential, FeaturizedFrames
from alenv.observe import (
    CANDIDATE_FEATURES,
    GLOBAL_FEATURES,
    Embedder,
    nearest_distance,
    observation_space,
    per_element_means,
    spreads,
)
from alenv.oracles import CachedOracle, LabelCache, LookupOracle, make_oracle
from alenv.rewards import get_reward, round_reward
from alenv.spaces import CandidateSubset, MaskedDiscrete
from alenv.tasks import default_cache_dir, get_task, load_task_data
from alenv.types import Label


class ActiveLearningEnv(gym.Env):
    """Pool-based active learning of an ensemble interatomic potential under a labelling budget.

    **Episode.** ``reset`` draws ``n_initial`` configurations from the task's reserve (not part of the pool),
    labels them with the oracle and trains the ensemble from scratch. Each ``step`` sends the chosen pool
    candidates to the oracle, retrains the ensemble (warm start) on every successful label, and evaluates
    it on the task's test set.

    **Observation** (``Dict``, fixed shapes; N = pool size):

    - ``candidates`` (N, F) float32: per-candidate features named in ``candidate_features``:
      energy spread (eV), per-atom energy spread, mean and max per-atom force spread (eV/Angstrom), relative
      force spread, and distance in embedding space to the nearest labelled configuration.
    - ``embedding`` (N, D) float32: invariant descriptor of each candidate (per-element mean of normalised
      atomic descriptors, projected on the pool's leading principal axes).
    - ``mask`` (N,) int8: 1 where a candidate may still be chosen (0 once labelled, failures included).
    - ``globals`` (G,) float32: named in ``global_features`` (budget used, labels held, log10 test errors,
      fraction failed).

    **Action.** ``batch_size`` = k distinct indices of unmasked candidates: ``Discrete(N)`` when k = 1,
    else an int array of shape (k,). A masked, repeated or out-of-range index raises ``ValueError``.
    The action space's ``sample()`` follows the live mask, so it always returns a valid action.

    **Reward.** By default the decrease of log test force MAE over the round (``reward="log_force_mae"``);
    with ``reward_per_cost=True`` it is divided by the round's oracle seconds.

    **Episode end.** ``terminated`` once ``budget`` labels were requested (failed calculations count:
    they were paid for). ``truncated`` is never set by the environment itself.

    **Info.** ``metrics``: ``energy_mae``, ``energy_rmse`` (eV per structure), ``force_mae``, ``force_rmse``,
    ``force_max`` (eV/Angstrom per component), ``n_labels``, ``n_failed``, ``budget_used``,
    ``train_force_rmse`` (force RMSE of the ensemble mean on its own training labels, eV/Angstrom),
    ``oracle_seconds`` (charged cost of all labels so far, the original compute time for cached ones) and,
    when ``wall_times`` is on, ``train_seconds`` and ``round_seconds`` (wall clock). Also ``round``,
    ``chosen`` (pool indices labelled this round) and ``failed`` (those whose calculation failed).

    **Arguments.** ``task``: a name from ``alenv.tasks.TASKS``; ``cache_dir``: where pools, test sets and
    labels live (default ``$ALENV_CACHE`` or ``~/.cache/alenv``); ``progress``: show progress bars;
    ``wall_times``: put wall-clock timings in ``info`` (they differ between otherwise identical runs, so
    gymnasium's ``check_env`` needs ``wall_times=False``); any other keyword overrides a ``TaskSpec``
    field (``budget``, ``batch_size``, ``pool_size``, ``n_initial``, ``ensemble={"n_members": 3}``, ...);
    ``pool`` and ``test`` are the Dataset task's labelled extxyz files.

    **Determinism.** All randomness comes from ``self.np_random`` (seeded by ``reset(seed=...)``): the
    initial labels, the ensemble's initial weights and the minibatch order. Same seed, same episode (CPU).

    **Version history.** Each task's ``history`` (``alenv.tasks.TASKS[name].history``).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        task: str = "Ethanol-GFN2-tiny",
        cache_dir: str | Path | None = None,
        progress: bool = False,
        wall_times: bool = True,
        **overrides: Any,
    ):
        if "pool" in overrides:
            overrides["pool_path"] = str(overrides.pop("pool"))
        if "test" in overrides:
            overrides["test_path"] = str(overrides.pop("test"))
        self.task = get_task(task).with_overrides(**overrides)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.wall_times = wall_times
        self.progress = progress
        spec = self.task
        data = load_task_data(spec, self.cache_dir, progress=progress)
        self.pool_frames, self.reserve_frames = data.pool, data.reserve
        self.test_frames = data.test
        n_atoms = {len(a) for a in self.pool_frames + self.reserve_frames + self.test_frames}
        if len(n_atoms) != 1:
            raise ValueError(f"all configurations of a task must have the same number of atoms, got {sorted(n_atoms)}")

        # Oracle with its persistent label cache; MD tasks prefill it with the labels their MD computed.
        if spec.oracle == "lookup":
            inner = LookupOracle(self.pool_frames + self.reserve_frames)
        else:
            inner = make_oracle(spec.oracle, **spec.oracle_kwargs)
        cache = LabelCache(self.cache_dir / "labels" / f"{inner.name}.sqlite")
        self.oracle = CachedOracle(inner, cache)
        if spec.oracle != "lookup":
            frames = self.pool_frames + self.reserve_frames
            self.oracle.store(frames, [_label_of(a) for a in frames])
        _, self.test_energy, self.test_forces, _ = _labels_of(self.test_frames)

        # Descriptors of every configuration, once: candidates (pool then reserve) and test set.
        species = sorted({int(z) for a in self.pool_frames + self.reserve_frames + self.test_frames for z in a.numbers})
        self.aev_spec = AEVSpec(species=tuple(species), **spec.descriptor)
        probe = EnsemblePotential(self.aev_spec, spec.ensemble, seed=0)
        t0 = time.perf_counter()
        self.candidates = FeaturizedFrames(self.pool_frames + self.reserve_frames, probe.aev)
        self.test = FeaturizedFrames(self.test_frames, probe.aev)
        self.featurize_seconds = time.perf_counter() - t0
        probe.set_normalisation([self.candidates])
        self._normalisation = (probe.feature_mean.clone(), probe.feature_scale.clone())
        self.n_pool = len(self.pool_frames)
        G_norm = ((self.candidates.G - probe.feature_mean[self.candidates.species]) / probe.feature_scale[self.candidates.species]).numpy()
        pem = per_element_means(G_norm, self.candidates.species.numpy(), self.aev_spec.n_species)
        self.embedder = Embedder(pem[: self.n_pool], spec.embedding_dim)
        self.embeddings = self.embedder(pem).astype(np.float64)  # (N + R, D)

        self.reward_fn = get_reward(spec.reward)
        self.candidate_features = CANDIDATE_FEATURES
        self.global_features = GLOBAL_FEATURES
        self.observation_space = observation_space(self.n_pool, spec.embedding_dim)
        k = spec.batch_size
        self.action_space = MaskedDiscrete(self.n_pool) if k == 1 else CandidateSubset(self.n_pool, k)
        self.potential: EnsemblePotential | None = None
        self.labelled = LabelledSet()
        self._done = True

    # ------------------------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        spec = self.task
        rng = self.np_random
        self.mask = np.ones(self.n_pool, dtype=np.int8)
        self.action_space.available = self.mask
        self.labelled = LabelledSet()
        self.train_idx: list[int] = []  # rows of self.candidates with a successful label
        self.budget_used = 0
        self.round = 0
        self.train_seconds = 0.0
        self.timings: dict[str, float] = {}
        t0 = time.perf_counter()
        init = np.sort(rng.choice(len(self.reserve_frames), size=spec.n_initial, replace=False))
        labels = self.oracle.label([self.reserve_frames[i] for i in init])
        self.labelled.extend([self.reserve_frames[i] for i in init], labels, [-1] * len(init), 0)
        self.train_idx += [self.n_pool + int(i) for i, lab in zip(init, labels) if not lab.failed]
        if not self.train_idx:
            raise RuntimeError("every initial label failed; the oracle cannot label this task's reserve")
        self.potential = EnsemblePotential(self.aev_spec, spec.ensemble, seed=int(rng.integers(2**31)))
        self.potential.feature_mean, self.potential.feature_scale = (t.clone() for t in self._normalisation)
        self.potential.normalised = True
        self._train(rng)
        self.metrics = self._evaluate()
        obs = self._observe()
        self._done = False
        info = self._info(np.zeros(0, dtype=np.int64), [], time.perf_counter() - t0)
        return obs, info

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if self._done:
            raise RuntimeError("the episode is over (or was never started); call reset()")
        t0 = time.perf_counter()
        chosen = self.validate_action(action)
        frames = [self.pool_frames[i] for i in chosen]
        labels = self.oracle.label(frames)
        self.round += 1
        self.timings = {"label": time.perf_counter() - t0}
        self.labelled.extend(frames, labels, chosen, self.round)
        self.mask[chosen] = 0
        self.budget_used += len(chosen)
        failed = [int(i) for i, lab in zip(chosen, labels) if lab.failed]
        self.train_idx += [int(i) for i, lab in zip(chosen, labels) if not lab.failed]
        before = self.metrics
        if len(failed) < len(chosen):
            t1 = time.perf_counter()
            self._train(self.np_random)
            t2 = time.perf_counter()
            self.metrics = self._evaluate()
            self.timings.update(train=t2 - t1, evaluate=time.perf_counter() - t2)
        cost = sum(lab.seconds for lab in labels)
        reward = round_reward(self.reward_fn, before, self.metrics, cost, self.task.reward_per_cost)
        terminated = self.budget_used >= self.task.budget
        self._done = terminated
        t3 = time.perf_counter()
        obs = self._observe()
        self.timings["observe"] = time.perf_counter() - t3
        info = self._info(chosen, failed, time.perf_counter() - t0)
        return obs, reward, terminated, False, info

    # ------------------------------------------------------------------------------------- stages
    def validate_action(self, action: Any) -> np.ndarray:
        """The action as a sorted-free int array of k distinct unmasked pool indices, or ValueError."""
        k = self.task.batch_size
        a = np.asarray(action)
        if a.ndim == 0:
            a = a.reshape(1)
        if a.ndim != 1 or len(a) != k:
            raise ValueError(f"action must hold exactly {k} candidate indices, got shape {np.shape(action)}")
        if not np.issubdtype(a.dtype, np.integer):
            if np.issubdtype(a.dtype, np.floating) and np.all(a == np.round(a)):
                a = a.astype(np.int64)
            else:
                raise ValueError(f"action indices must be integers, got {a.dtype}")
        a = a.astype(np.int64)
        bad = a[(a < 0) | (a >= self.n_pool)]
        if len(bad):
            raise ValueError(f"action indices {bad.tolist()} are out of range [0, {self.n_pool})")
        if len(np.unique(a)) != k:
            raise ValueError(f"action repeats candidates: {a.tolist()}")
        masked = a[self.mask[a] == 0]
        if len(masked):
            raise ValueError(f"candidates {masked.tolist()} are masked (already labelled); see obs['mask']")
        return a

    def _train(self, rng: np.random.Generator) -> None:
        ok = [lab for lab in self.labelled.labels if not lab.failed]
        E = np.array([lab.energy for lab in ok])
        F = np.stack([lab.forces for lab in ok])
        idx = np.array(self.train_idx, dtype=np.int64)
        t0 = time.perf_counter()
        self.last_fit = self.potential.fit(self.candidates, E, F, rng, idx=idx)
        self.train_seconds += time.perf_counter() - t0
        # How well the ensemble mean fits its own labels: an estimate of the noise it cannot learn.
        _, Fp = self.potential.predict(self.candidates, idx=idx)
        self.train_force_rmse = float(np.sqrt(((Fp.mean(0) - F) ** 2).mean()))

    def _evaluate(self) -> dict[str, float]:
        E, F = self.potential.predict(self.test)
        return errors(E.mean(0), F.mean(0), self.test_energy, self.test_forces).as_dict()

    def _observe(self) -> dict[str, np.ndarray]:
        E, F = self.potential.predict(self.candidates, idx=np.arange(self.n_pool))
        train_rows = np.array(self.train_idx + [int(i) for i in np.flatnonzero(self.mask == 0)], dtype=np.int64)
        dist = nearest_distance(self.embeddings[: self.n_pool], self.embeddings[np.unique(train_rows)])
        cand = np.concatenate([spreads(E, F), dist[:, None]], axis=1)
        spec = self.task
        n_labels = len(self.labelled)
        glob = np.array(
            [
                self.budget_used / spec.budget,
                n_labels / (spec.n_initial + spec.budget),
                np.log10(self.metrics["force_mae"]),
                np.log10(self.metrics["energy_mae"]),
                self.labelled.n_failed / max(n_labels, 1),
            ]
        )
        return {
            "candidates": cand.astype(np.float32),
            "embedding": self.embeddings[: self.n_pool].astype(np.float32),
            "mask": self.mask.copy(),
            "globals": glob.astype(np.float32),
        }

    def _info(self, chosen: np.ndarray, failed: list[int], seconds: float) -> dict[str, Any]:
        metrics = dict(self.metrics)
        metrics.update(
            n_labels=len(self.labelled),
            n_failed=self.labelled.n_failed,
            budget_used=self.budget_used,
            oracle_seconds=self.labelled.oracle_seconds,
            train_force_rmse=self.train_force_rmse,
        )
        info = {
            "metrics": metrics,
            "round": self.round,
            "chosen": np.array(chosen, dtype=np.int64),
            "failed": list(failed),
            "max_picks": 0 if self._done else int(self.task.batch_size),
            "any_subset": False,
        }
        if self.wall_times:
            metrics.update(train_seconds=self.train_seconds, round_seconds=seconds)
            info["timings"] = dict(self.timings)  # this round's wall seconds per stage
        return info

    # ------------------------------------------------------------------------------------- helpers
    def save_labels(self, path: str | Path) -> None:
        """Write every successful label of this episode to extxyz (pool index and round in info)."""
        self.labelled.write(path)

    def predict_candidates(self) -> tuple[np.ndarray, np.ndarray]:
        """The current potential's member predictions on the pool: energies (M, N) eV, forces (M, N, n, 3)."""
        return self.potential.predict(self.candidates, idx=np.arange(self.n_pool))

    def true_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Reference energies (N,) and forces (N, n, 3) of the pool, where the task data holds them.

        For cheating references (upper bounds) only: a fair agent never sees these.
        """
        _, E, F, _ = _labels_of(self.pool_frames)
        return E, F


def _label_of(atoms) -> Label:
    return Label(
        energy=float(atoms.get_potential_energy()),
        forces=np.array(atoms.get_forces(), dtype=np.float64),
        seconds=float(atoms.info.get("oracle_seconds", 0.0)),
    )


def _labels_of(frames) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    E = np.array([a.get_potential_energy() for a in frames])
    F = np.stack([a.get_forces() for a in frames])
    s = np.array([a.info.get("oracle_seconds", 0.0) for a in frames])
    return frames, E, F, s
