"""The shell shared by every environment mode: task set-up, reset and step sequencing over the round engine.

A mode subclasses ``RoundEnv`` and supplies only what differs: where candidates come from
(``_candidate_frames``, ``_start_sampling``, ``_after_round``), how an action is decoded
(``validate_action``), which rows of featurised data its labels use (``_rows``) and its own observation
parts (``_candidate_view``, ``_extra_globals``, ``_extra_metrics``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from ase import Atoms

from alenv import keys, loop
from alenv.descriptors.representation import Featurized, Representation, choose_layout
from alenv.observe import episode_globals, gaussian_sketch, make_observation, project_features
from alenv.oracles.executors import executor_spec, make_executor
from alenv.rewards import get_reward, round_reward
from alenv.tasks import ENTRY_POINTS, TaskData, default_cache_dir, get_task, load_task_data, task_oracle
from alenv.tasks.spec import TaskSpec
from alenv.threads import configure_torch


class RoundEnv(gym.Env):
    """Common base of the environments: one step is one round of active learning (see the subclasses)."""

    metadata = {"render_modes": []}
    mode = "pool"
    default_task = "Ethanol-GFN2-tiny"

    def __init__(
        self,
        task: str | None = None,
        cache_dir: str | Path | None = None,
        progress: bool = False,
        wall_times: bool = False,
        render_mode: str | None = None,
        jacobian_limit_gb: float = 2.0,
        oracle_executor: str | dict[str, Any] | None = None,
        **overrides: Any,
    ):
        # Nothing renders; the keyword is accepted (and kept) because RL tooling passes it to every env,
        # e.g. SB3's make_vec_env asks for "rgb_array". render() returns None.
        self.render_mode = render_mode
        spec = get_task(task or self.default_task).with_overrides(**file_overrides(overrides))
        if spec.mode != self.mode:
            other = ENTRY_POINTS[spec.mode].replace(":", ".")
            raise ValueError(f"task {spec.name} is a {spec.mode}-mode task; use {other} (or its id)")
        self.task: TaskSpec = spec
        if spec.model_features:
            from alenv.models import MODELS

            if not hasattr(MODELS[spec.model][0], "features"):
                raise ValueError(
                    f"model_features={spec.model_features} needs a model with features(); {spec.model!r} has none"
                )
        executor_spec(oracle_executor)  # a bad spec fails before anything is built
        self.torch_threads = configure_torch()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.wall_times, self.progress = wall_times, progress
        data = load_task_data(spec, self.cache_dir, progress=progress)
        self.reserve_frames, self.test_frames, self.validation_frames = data.reserve, data.test, data.validation
        self.oracle = task_oracle(spec, data, self.cache_dir, make_executor(oracle_executor, self.cache_dir))
        self.representation = Representation.for_frames(
            data.pool + data.reserve + data.validation + data.test, spec.descriptor, spec.embedding_dim
        )
        # The layout of every featurised set, decided once (alenv.descriptors.representation.choose_layout):
        # dense for frames of one size whose Jacobians fit (streaming the test, then validation set if
        # needed), flat for mixed sizes or sets too big for dense Jacobians.
        self.layout, self.streamed = self._choose_layout(data, jacobian_limit_gb)
        self.representation.layout = self.layout
        t0 = time.perf_counter()
        self._prepare(data)
        # The validation set is what the reward, the observation and info see; the test set is sealed:
        # only test_metrics() reads it, for reports.
        self.validation = loop.Reference.of(
            self.validation_frames, self.representation, stream="validation" in self.streamed
        )
        self._test = loop.Reference.of(self.test_frames, self.representation, stream="test" in self.streamed)
        self.featurize_seconds = time.perf_counter() - t0
        self.reward_fn = get_reward(spec.reward)
        self.episode: loop.Episode | None = None
        self._done = True

    def close(self) -> None:
        """Release the oracle's workers, if it has any (a process pool, a local Ray)."""
        executor = getattr(getattr(self, "oracle", None), "executor", None)
        if executor is not None:
            executor.shutdown()
        super().close()

    def _choose_layout(self, data: TaskData, limit_gb: float) -> tuple[str, frozenset[str]]:
        """The task's layout and the reference sets to stream (``choose_layout``): the descriptor setting
        ``layout`` ("auto" by default) and the atom counts of what needs forces. Dense Jacobians past
        ``limit_gb`` first stream the test set (then the validation set too), which costs a featurisation
        per evaluation, never a result; training data that still does not fit takes the flat layout."""
        if not limit_gb > 0:
            raise ValueError(f"jacobian_limit_gb must be positive, got {limit_gb!r}")
        if self.mode in ("pool", "mf"):  # the whole pool and reserve are featurised for training
            train = [len(a) for a in data.pool + data.reserve]
        else:  # on the fly: at most the initial labels and the budget are featurised for training
            train = [len(data.reserve[0])] * (self.task.n_initial + self.task.budget)
            train += [len(a) for a in data.reserve[1:]] if len({len(a) for a in data.reserve}) > 1 else []
        sizes = {"train": train, "validation": [len(a) for a in data.validation], "test": [len(a) for a in data.test]}
        return choose_layout(sizes, self.representation.spec.n_features, self.representation.layout, limit_gb * 2**30)

    # ------------------------------------------------------------------------------- mode hooks
    def _prepare(self, data: TaskData) -> None:
        """Featurise what the mode needs once, fit normalisation and embedding, define the spaces."""
        raise NotImplementedError

    def _training_data(self) -> Featurized | None:
        """Featurised frames that labelled rows index (pool mode); None to featurise labels as they come."""
        return None

    def _rows(self, chosen: np.ndarray, initial: bool = False) -> list[int] | None:
        """Rows in ``_training_data()`` of the chosen candidates (or of the initial reserve frames)."""
        return None

    def _start_sampling(self, rng: np.random.Generator, initial: list[Atoms]) -> None:
        """After the initial fit: set up the candidates of the first round."""

    def _on_labelled(self, chosen: np.ndarray | None, ok_frames: list[Atoms]) -> None:
        """After labels were recorded and the potential refitted; ``chosen`` is None for the initial labels."""

    def _after_round(self, terminated: bool, rng: np.random.Generator) -> float | None:
        """After the refit: prepare the next candidates; return the fraction of MD survived, if any."""
        return None

    def _candidate_frames(self, chosen: np.ndarray) -> list[Atoms]:
        raise NotImplementedError

    def _candidate_view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidate features (C, F), embedding (C, D) and mask (C,) of the current candidates."""
        raise NotImplementedError

    def _extra_globals(self) -> dict[str, float]:
        return {}

    def _model_view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ``MODEL_KEYS`` arrays of the current candidates (only called when ``model_features`` is on)."""
        raise NotImplementedError

    def _extra_metrics(self) -> dict[str, float]:
        return {}

    def _max_picks(self) -> int:
        return int(self.task.batch_size)

    def _terminated(self) -> bool:
        return self.episode.budget_used >= self.task.budget

    def validate_action(self, action: Any) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        rng, spec = self.np_random, self.task
        t0 = time.perf_counter()
        self._done, self.episode = True, None  # a reset that raises leaves no episode to step
        # The model-feature sketch: drawn once per episode (at its first use, when the features' dimension is
        # known) from its own stream of the run seed, so that turning it on changes no other draw.
        self._sketch = None
        self._sketch_rng = np.random.default_rng([SKETCH_STREAM, int(self.np_random_seed) % 2**63])
        self._reset_mode()
        init = np.sort(rng.choice(len(self.reserve_frames), size=spec.n_initial, replace=False))
        frames = [self.reserve_frames[i] for i in init]
        rows = self._rows(init, initial=True)
        self.episode, ok = loop.start(
            spec, self.representation, self.oracle, frames, rows, self.validation, rng, self._training_data()
        )
        self._on_labelled(None, ok)
        self._start_sampling(rng, ok)
        self._done = False
        return self._observe(), self._info([], [], time.perf_counter() - t0)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if self._done:
            raise RuntimeError("the episode is over (or was never started); call reset()")
        rng, spec, ep = self.np_random, self.task, self.episode
        t0 = time.perf_counter()
        chosen = self.validate_action(action)
        frames = self._candidate_frames(chosen)
        rows = self._rows(chosen)
        before, failed, labels = loop.play_round(
            ep, self.oracle, frames, chosen.tolist(), rows, self.representation, self.validation, rng
        )
        self._on_labelled(chosen, [f for f, lab in zip(frames, labels) if not lab.failed])
        terminated = self._terminated()
        survived = self._after_round(terminated, rng)
        cost = sum(lab.seconds for lab in labels)
        reward = round_reward(
            self.reward_fn, before, ep.metrics, cost, spec.reward_per_cost,
            survived_fraction=survived, stability_weight=self._stability_weight(),
        )
        self._done = terminated
        t1 = time.perf_counter()
        obs = self._observe()
        ep.timings["observe"] = time.perf_counter() - t1
        return obs, reward, terminated, False, self._info(chosen, failed, time.perf_counter() - t0)

    def render(self) -> None:
        """Nothing to draw: the learning curves are in ``info["metrics"]`` (the runner plots them)."""
        return None

    # ------------------------------------------------------------------------------- shared parts
    def _reset_mode(self) -> None:
        """Clear the mode's per-episode state before the initial labels."""

    def _stability_weight(self) -> float:
        return 0.0

    def _observe(self) -> dict[str, np.ndarray]:
        cand, emb, mask = self._candidate_view()
        values = {**episode_globals(self.episode, self.task), **self._extra_globals()}
        model = self._model_view() if self.task.model_features else None
        return make_observation(cand, emb, mask, self.global_features, values, model)

    def _model_features(self, data: Featurized, idx: np.ndarray | None = None) -> np.ndarray:
        """The current potential's features of frames ``idx`` of ``data`` as the observation holds them,
        (F, model_features): sketched by the episode's Gaussian sketch where the model has more dimensions,
        zero-padded where it has fewer (``alenv.observe.project_features``)."""
        raw = self.episode.potential.features(data, idx)
        dim = self.task.model_features
        if raw.shape[1] > dim and self._sketch is None:
            self._sketch = gaussian_sketch(raw.shape[1], dim, self._sketch_rng)
        return project_features(raw, dim, self._sketch)

    def _info(self, chosen: Any, failed: list[int], seconds: float) -> dict[str, Any]:
        out = loop.info(
            self.episode, list(np.asarray(chosen, dtype=np.int64)), failed, seconds,
            max_picks=0 if self._done else self._max_picks(),
            any_subset=self.mode == "otf",
            wall_times=self.wall_times,
            extra_metrics=self._extra_metrics(),
        )
        return out

    @property
    def potential(self):
        """The episode's current potential (``as_calculator()`` gives an ASE calculator)."""
        return None if self.episode is None else self.episode.potential

    @property
    def labelled(self):
        """Every label paid for in this episode, failures included."""
        return None if self.episode is None else self.episode.labelled

    def test_metrics(self) -> dict[str, float]:
        """Errors of the current potential on the sealed test set, for reports: every metric of
        ``keys.TEST_METRICS`` over the whole set, and again per subset of its frames under
        ``keys.per_subset(metric, subset)`` keys such as ``force_mae[T=300K]`` (MD tasks: one subset per
        temperature; Dataset files: their ``subset`` or ``config_type`` tags).

        ``n_energy_frames`` and ``n_force_frames`` say which frames counted: energy errors use every frame,
        force errors the frames with forces (NaN where a set or subset has none). Nothing the agent is
        given (observation, reward, ``info``) comes from the test set; a benchmark harness calls this after
        each step to record what it reports.
        """
        if self.episode is None:
            raise RuntimeError("no episode: call reset() first")
        return loop.evaluate(self.episode.potential, self._test, by_subset=True)

    def refit_test_metrics(self, seed: int = 0, **settings: Any) -> dict[str, float]:
        """Test errors (as ``test_metrics``) of a potential trained from scratch on this episode's labels.

        The reference for the in-loop potential: at a checkpoint, the two should be close (the loop trains
        enough) and a report can quote both. ``settings`` override the model's settings for the refit (e.g.
        ``min_steps=`` the in-loop potential's ``n_updates``, so that both had the same number of optimiser
        steps). Costs one from-scratch fit; the episode is not changed.
        """
        if self.episode is None:
            raise RuntimeError("no episode: call reset() first")
        potential = loop.refit(self.episode, self.task, self.representation, seed, **settings)
        return loop.evaluate(potential, self._test, by_subset=True)

    @property
    def budget_used(self) -> int:
        """Labels requested after the initial ones, failures included."""
        return 0 if self.episode is None else self.episode.budget_used

    @property
    def round(self) -> int:
        """Rounds played in this episode."""
        return 0 if self.episode is None else self.episode.round

    @property
    def metrics(self) -> dict[str, float]:
        """The current test metrics of the potential (as in ``info["metrics"]``, without counters)."""
        return {} if self.episode is None else dict(self.episode.metrics)

    def save_labels(self, path: str | Path) -> None:
        """Write every successful label of this episode to extxyz (candidate index and round in info)."""
        self.episode.labelled.write(path)


SKETCH_STREAM = 0x5CE7C4  # the model-feature sketch's stream of the run seed (independent of np_random)


def file_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``gymnasium.make`` as TaskSpec fields (the Dataset task's ``pool=``/``test=``
    become ``pool_path``/``test_path``)."""
    out = dict(overrides)
    for short, field_name in (("pool", "pool_path"), ("test", "test_path"), ("validation", "validation_path")):
        if short in out:
            out[field_name] = str(out.pop(short))
    return out


__all__ = ["RoundEnv", "keys"]
