"""ActiveLearningEnv: one step is one round of pool-based active learning of an interatomic potential."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from ase import Atoms

from alenv import loop
from alenv.descriptors.representation import Featurized
from alenv.models import make_potential
from alenv.observe import (
    CANDIDATE_FEATURES, GLOBAL_FEATURES, candidate_features, nearest, nearest_distance, noise_estimate,
    observation_space,
)
from alenv.round_env import RoundEnv
from alenv.spaces import CandidateSubset, MaskedDiscrete
from alenv.tasks import TaskData


class ActiveLearningEnv(RoundEnv):
    """Pool-based active learning of a committee interatomic potential under a labelling budget.

    **Episode.** ``reset`` draws ``n_initial`` configurations from the task's reserve (not part of the pool),
    labels them with the oracle and trains the task's model (``TaskSpec.model``, default a 5-member
    ensemble of atomic neural networks) from scratch. Each ``step`` sends the chosen pool candidates to the
    oracle, refits the model (warm start) on every successful label, and evaluates it on the validation
    set. The test set is sealed: only ``test_metrics()`` reads it, for reports.

    **Observation** (``Dict``, fixed shapes; N = pool size):

    - ``candidates`` (N, F) float32: per-candidate features named in ``candidate_features``:
      energy spread (eV), per-atom energy spread, mean and max per-atom force spread (eV/Angstrom), relative
      force spread, distance in embedding space to the nearest labelled configuration, and the expected
      label noise per force component (eV/Angstrom: the sigma the nearest noise-reporting label records,
      else the training force RMSE; ``alenv.observe.noise_estimate``).
    - ``embedding`` (N, D) float32: invariant descriptor of each candidate (per-element mean of normalised
      atomic descriptors, projected on the pool's leading principal axes).
    - ``mask`` (N,) int8: 1 where a candidate may still be chosen (0 once labelled, failures included).
    - ``globals`` (G,) float32: named in ``global_features`` (budget used, labels held, log10 validation errors,
      fraction failed).
    - Only with ``model_features=P'`` (off by default): ``model_features`` (N, P') float32, the current
      model's own features of each candidate (``Potential.features``: for the default ensemble, the gradient
      of each member's energy by its last layer, eV), recomputed after each fit and projected to P'
      dimensions by a Gaussian sketch drawn once per episode from the run seed (zero-padded if the model
      has fewer); ``model_dist_to_train`` (N,) float32, the distance in that space to the nearest labelled
      configuration (initial labels included), and ``model_nearest_train`` (N,) int64, which one (its
      index among the successful labels, in the order labelled), so that feature-space selectors such as
      LCMD can take the labelled set as centres.

    **Action.** ``batch_size`` = k distinct indices of unmasked candidates: ``Discrete(N)`` when k = 1,
    else an int array of shape (k,). A masked, repeated or out-of-range index raises ``ValueError``.
    The action space's ``sample()`` follows the live mask, so it always returns a valid action.
    ``alenv.spaces.picks_to_action(picks, obs, info)`` turns k indices into an action of either mode.

    **Reward.** By default the decrease of log validation force MAE over the round (``reward="log_force_mae"``);
    with ``reward_per_cost=True`` it is divided by the round's oracle seconds (``alenv.rewards``).

    **Episode end.** ``terminated`` once ``budget`` labels were requested (failed calculations count:
    they were paid for). ``truncated`` is never set by the environment itself.

    **Info** (every key and unit in ``alenv.keys``). ``metrics``: ``energy_mae``, ``energy_rmse`` (eV per
    structure), ``force_mae``, ``force_rmse``, ``force_max`` (eV/Angstrom per component), ``n_labels``,
    ``n_failed``, ``budget_used``, ``train_force_rmse`` (force RMSE of the ensemble mean on its own training
    labels, eV/Angstrom), ``oracle_seconds`` (charged cost of all labels so far, the original compute time
    for cached ones) and, with ``wall_times=True``, ``train_seconds`` (cumulative) and ``round_seconds``.
    Also ``round``, ``chosen`` (list of pool indices labelled this round), ``failed`` (those whose
    calculation failed), ``max_picks`` (picks the next action must hold: ``batch_size``, 0 once over) and
    ``any_subset`` (False: exactly ``max_picks``).

    **Arguments.** ``task``: a name from ``alenv.tasks.TASKS``; ``cache_dir``: where pools, validation and test sets and
    labels live (default ``$ALENV_CACHE`` or ``~/.cache/alenv``); ``progress``: show progress bars;
    ``wall_times``: put wall-clock timings in ``info`` (off by default: they differ between otherwise
    identical runs, which Gymnasium's ``check_env`` rejects); ``render_mode``: accepted and kept, nothing
    renders; ``jacobian_limit_gb`` (default 2): when the task's descriptor Jacobians would take more, the test
    set (then the validation set) is featurised again at each evaluation instead of held (``env.streamed``),
    and training data that still does not fit takes the flat layout; ``oracle_executor``: where labels the cache
    lacks are computed, ``"inline"`` (default), ``{"kind": "process", "workers": 2}``, submitit (Slurm) or Ray
    (``alenv.oracles.executors``; same results, other wall time; ``env.close()`` releases the workers); any other keyword overrides a ``TaskSpec`` field (``budget``, ``batch_size``, ``pool_size``,
    ``n_initial``, ``model="ridge"``, ``model_kwargs={"n_members": 3}``, ...); ``pool``, ``test`` (and optionally ``validation``) are
    the Dataset task's labelled extxyz files.

    **Frames of several sizes.** A Dataset file may mix them (molecules, boxes). The task then takes the
    flat layout (``env.layout == "flat"``, see ``alenv.descriptors.representation.choose_layout``; also for
    training data too big for dense Jacobians, or the descriptor setting ``layout="flat"``): the
    observation keeps its shapes (spreads over each frame's own atoms, ``energy_std_per_atom`` by its own
    count), and ``predict_candidates``/``true_labels`` return forces with the atoms of all frames
    concatenated (``pool_ptr``). Fixed-size tasks keep the dense layout, bit for bit.

    **Determinism.** All randomness comes from ``self.np_random`` (seeded by ``reset(seed=...)``): the
    initial labels, the model's initial weights and the minibatch order. Same seed, same episode (CPU, with
    the same number of torch threads: a different thread count sums in another order, see ``alenv.threads``).

    **Version history.** Each task's ``history`` (``alenv.tasks.TASKS[name].history``).
    """

    mode = "pool"
    default_task = "Ethanol-GFN2-tiny"

    def _prepare(self, data: TaskData) -> None:
        """Featurise pool and reserve once; normalisation from their geometry, embedding axes from the pool."""
        self.pool_frames = data.pool
        self.pool_labelled = data.pool_labelled
        self.n_pool = len(self.pool_frames)
        rep = self.representation
        self.candidates = rep.featurize(self.pool_frames + self.reserve_frames, memo=True)  # rows: pool, then reserve
        rep.set_normalisation([self.candidates])
        per_element = rep.per_element(self.candidates)
        rep.fit_embedding(per_element[: self.n_pool])
        self.embeddings = rep.embedder(per_element).astype(np.float64)  # (N + R, D)
        self.candidate_features = CANDIDATE_FEATURES
        self.global_features = GLOBAL_FEATURES
        self.observation_space = observation_space(
            self.n_pool, self.task.embedding_dim, model_features=self.task.model_features
        )
        k = self.task.batch_size
        self.action_space = MaskedDiscrete(self.n_pool) if k == 1 else CandidateSubset(self.n_pool, k)
        self.mask = np.ones(self.n_pool, dtype=np.int8)

    # ------------------------------------------------------------------------------- mode hooks
    def _reset_mode(self) -> None:
        self.mask = np.ones(self.n_pool, dtype=np.int8)
        self.action_space.available = self.mask

    def _training_data(self) -> Featurized:
        return self.candidates

    def _rows(self, chosen: np.ndarray, initial: bool = False) -> list[int]:
        return [int(i) + (self.n_pool if initial else 0) for i in chosen]

    def _candidate_frames(self, chosen: np.ndarray) -> list[Atoms]:
        return [self.pool_frames[i] for i in chosen]

    def _on_labelled(self, chosen: np.ndarray | None, ok_frames: list[Atoms]) -> None:
        if chosen is not None:
            self.mask[chosen] = 0
        if self.task.model_features and (chosen is None or ok_frames):  # refitted: the features changed
            self._refresh_model_view()

    def _refresh_model_view(self) -> None:
        """Model features of the pool and of the labelled frames (pool and reserve rows) after a fit, and
        each candidate's nearest labelled frame in that space; kept until the next fit."""
        train_rows = np.array(self.episode.train.rows, dtype=np.int64)
        reserve_rows = np.unique(train_rows[train_rows >= self.n_pool])
        rows = np.concatenate([np.arange(self.n_pool), reserve_rows])
        phi = self._model_features(self.candidates, rows)
        where = np.empty(len(self.candidates), dtype=np.int64)
        where[rows] = np.arange(len(rows))
        dist, nearest_row = nearest(phi[: self.n_pool], phi[where[train_rows]])
        self._model_obs = (phi[: self.n_pool], dist, nearest_row)

    def _model_view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._model_obs

    def _candidate_view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        E, F = self.predict_candidates()
        ep = self.episode
        train_rows = np.array(ep.train.rows + [int(i) for i in np.flatnonzero(self.mask == 0)], dtype=np.int64)
        dist = nearest_distance(self.embeddings[: self.n_pool], self.embeddings[np.unique(train_rows)])
        noise = noise_estimate(
            self.embeddings[: self.n_pool], self.embeddings[ep.train.rows], ep.labelled.noise_sigmas, ep.train_force_rmse
        )
        ptr = self.candidates.atom_ptr(np.arange(self.n_pool)) if self.layout == "flat" else None
        return candidate_features(E, F, dist, noise, ptr), self.embeddings[: self.n_pool], self.mask

    def validate_action(self, action: Any) -> np.ndarray:
        """The action as an int array of k distinct unmasked pool indices, or ValueError."""
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

    # ------------------------------------------------------------------------------- for instruments
    def predict_candidates(self) -> tuple[np.ndarray, np.ndarray]:
        """The current potential's member predictions on the pool: energies (M, N) eV, forces (M, N, n, 3)
        eV/Angstrom, or (M, A, 3) for the flat layout (atoms of the pool concatenated: ``pool_ptr``)."""
        return self.potential.predict(self.candidates, idx=np.arange(self.n_pool))

    @property
    def pool_ptr(self) -> np.ndarray:
        """Atom pointer (N + 1,) of the pool's frames: frame i owns atom rows ``ptr[i]:ptr[i + 1]`` of
        flat forces (``alenv.ragged``)."""
        return self.candidates.atom_ptr(np.arange(self.n_pool))

    def true_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Reference energies (N,) and forces (N, n, 3) of the pool, where the task data holds them; for
        the flat layout forces (A, 3), atoms concatenated (``pool_ptr``).

        For cheating references only (benchmark instruments): a fair agent never sees these. A task whose
        pool is stored unlabelled (labels paid when picked: ``Water-GFN2``) has none: ValueError.
        """
        if not self.pool_labelled:
            raise ValueError(
                f"{self.task.name}'s pool is unlabelled (its oracle labels a frame only when it is picked), so "
                "the true-error references cannot run on it; use them on tasks with labelled pools"
            )
        E = np.array([a.get_potential_energy() for a in self.pool_frames])
        forces = [a.get_forces() for a in self.pool_frames]
        F = np.concatenate(forces) if self.layout == "flat" else np.stack(forces)
        return E, F

    def lookahead(self, batches: Sequence[Sequence[int]], seed: int = 0) -> np.ndarray:
        """Validation force MAE (eV/Angstrom) after fitting the task's model from scratch on this episode's
        training labels plus each batch of pool candidates with its reference labels, one fit per batch.

        A look-ahead expert for policy training and a cheating reference: it reads pool labels that no
        strategy may see (like ``true_labels``), and it uses the validation set, never the sealed test set.
        Each fit is seeded by ``seed``, so batches are compared on equal terms; the episode is not changed.
        Cheap with a fast learner (``model="ridge"``): one closed-form fit per batch.
        """
        if self.episode is None:
            raise RuntimeError("no episode: call reset() first")
        E, F = self.true_labels()
        ptr = self.pool_ptr if self.layout == "flat" else None
        ep, spec = self.episode, self.task
        out = []
        for batch in batches:
            batch = [int(i) for i in batch]
            if not batch or min(batch) < 0 or max(batch) >= self.n_pool or len(set(batch)) != len(batch):
                raise ValueError(f"a look-ahead batch must hold distinct pool indices in [0, {self.n_pool}), got {batch}")
            forces = list(ep.train.forces) + [F[ptr[i] : ptr[i + 1]] if ptr is not None else F[i] for i in batch]
            energies = np.array(list(ep.train.energies) + [E[i] for i in batch])
            idx = np.array(list(ep.train.rows) + self._rows(np.array(batch)), dtype=np.int64)
            potential = make_potential(spec.model, self.representation, seed=int(seed), **spec.model_kwargs)
            potential.fit(self.candidates, energies, np.concatenate(forces) if ptr is not None else np.stack(forces),
                          np.random.default_rng([int(seed), 3]), idx=idx)
            out.append(loop.evaluate(potential, self.validation)["force_mae"])
        return np.array(out)
