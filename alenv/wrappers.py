"""Wrappers for RL libraries: one pick at a time (``Discrete`` actions with masks, or without masks for
algorithms that cannot use them) and candidate features on one scale across tasks."""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import gymnasium as gym
import numpy as np

from alenv.spaces import LabelMask, MaskedDiscrete

INVALID_PICKS = ("raise", "penalty", "nearest")  # what SinglePick does with a pick that is not allowed


class SinglePick(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Builds each round's batch of k candidates from k single picks.

    The action space is ``Discrete(N)`` (its ``sample()`` follows the live mask) and ``action_masks()``
    returns the boolean mask of candidates that may be picked now, as masked-action libraries such as
    sb3-contrib's MaskablePPO expect. Picks before the k-th return the same observation with the picked
    candidates masked, reward 0 and ``info["pending"]``; the k-th pick sends the batch to the wrapped
    environment and returns its observation, reward, termination and info. An invalid pick (masked,
    already pending, out of range) raises ``ValueError`` by default (``invalid="raise"``), which is what
    masked algorithms (sb3-contrib's MaskablePPO) need. For algorithms that cannot mask (plain PPO, DQN):
    ``invalid="penalty"`` makes an invalid pick a no-op step with reward ``penalty`` (the same observation;
    the episode goes on, so an agent that only picks invalid candidates never ends it: cap the episode length
    with ``gymnasium.wrappers.TimeLimit``), and ``invalid="nearest"`` replaces it by the allowed candidate
    nearest in ``obs["embedding"]`` to the one asked for (the lowest allowed index when that one is out of
    range). Either way ``info["invalid_pick"]`` is True for that step.

    Discounting: every pick but a round's last returns reward 0, and the round's reward comes with its last
    pick, so a discount below 1 per step weighs rounds by how many picks they took; use ``gamma = 1`` or
    ``gamma ** (1 / k)`` per pick for a per-round discount ``gamma``.

    On-the-fly environments (any subset may be labelled) get ``Discrete(N + 1)``: action ``N`` means "stop"
    and sends the picks made so far, none included; once the round's limit is reached only "stop" is
    allowed. ``action_masks()`` then has N + 1 entries.

    How many picks a round takes comes from ``info["max_picks"]`` and ``info["any_subset"]``, so any
    environment with this contract can be wrapped. Before the first ``reset`` every action is shown as
    allowed (``step`` still raises until ``reset``), so that vectorised workers that ask for masks early do
    not fail. Through further wrappers, reach the masks with ``alenv.wrappers.action_masks(env)`` (or
    ``env.get_wrapper_attr("action_masks")()``, as sb3-contrib does).
    """

    def __init__(self, env: gym.Env, invalid: str = "raise", penalty: float = -1.0):
        if invalid not in INVALID_PICKS:
            raise ValueError(f"invalid must be one of {INVALID_PICKS}, got {invalid!r}")
        if not np.isfinite(penalty):
            raise ValueError(f"penalty must be finite, got {penalty}")
        gym.utils.RecordConstructorArgs.__init__(self, invalid=invalid, penalty=penalty)
        gym.Wrapper.__init__(self, env)
        self.invalid, self.penalty = invalid, float(penalty)
        # On-the-fly mode labels any subset: one more action, ``n`` ("stop"), sends the picks made so far.
        self.any_subset = isinstance(env.action_space, LabelMask)
        self.n = int(env.observation_space["mask"].n)
        self.k = 0  # picks of the current round, from info["max_picks"]
        self.action_space = MaskedDiscrete(self.n + 1 if self.any_subset else self.n)
        self.pending: list[int] = []
        self._over = False  # the wrapped episode ended: no pick is valid until reset
        self._obs: dict[str, np.ndarray] | None = None
        self._info: dict[str, Any] = {}

    def _view(self) -> dict[str, np.ndarray]:
        obs = {key: value.copy() for key, value in self._obs.items()}
        obs["mask"][self.pending] = 0
        self.action_space.available = self.action_masks().astype(np.int8)
        return obs

    def action_masks(self) -> np.ndarray:
        """Boolean (N,) (on-the-fly: (N + 1,), the last entry "stop"): True where a pick is allowed now."""
        if self._obs is None:  # before the first reset: nothing is known yet, nothing can be stepped
            return np.ones(self.n + 1 if self.any_subset else self.n, dtype=bool)
        mask = self._obs["mask"].astype(bool)
        mask[self.pending] = False
        if self._over:
            mask[:] = False
        if self.any_subset:
            if len(self.pending) >= self.k:
                mask[:] = False
            mask = np.append(mask, not self._over)
        return mask

    def reset(self, **kwargs: Any) -> tuple[dict, dict]:
        obs, info = self.env.reset(**kwargs)
        self.pending = []
        self._over = False
        self._obs, self._info = obs, deepcopy(info)
        self.k = int(info["max_picks"])
        return self._view(), dict(info, pending=[])

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        if self._over:
            raise RuntimeError("the episode is over; call reset()")
        a = np.asarray(action)
        if a.size != 1 or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"a single-pick action is one integer index, got {action!r}")
        i = int(a.reshape(-1)[0])
        n_actions = self.n + 1 if self.any_subset else self.n
        allowed = self.action_masks()
        bad = not 0 <= i < n_actions or not allowed[i]
        if bad and self.invalid == "raise":
            if not 0 <= i < n_actions:
                raise ValueError(f"candidate {i} is out of range [0, {n_actions})")
            raise ValueError(f"candidate {i} is masked (labelled or already picked this round)")
        if bad and self.invalid == "penalty":
            info = deepcopy(self._info)
            return self._view(), self.penalty, False, False, dict(info, pending=list(self.pending), invalid_pick=True)
        if bad:  # "nearest"
            i = self._nearest_allowed(i, allowed)
        stop = self.any_subset and i == self.n
        if not stop:
            self.pending.append(i)
        if not stop and len(self.pending) < (self.k if not self.any_subset else n_actions):
            info = deepcopy(self._info)  # fresh objects on every call: callers keep what they are given
            return self._view(), 0.0, False, False, dict(info, pending=list(self.pending), invalid_pick=bad)
        if self.any_subset:
            batch = np.zeros(self.n, dtype=np.int8)
            batch[self.pending] = 1
        else:
            batch = np.array(self.pending, dtype=np.int64)
        self.pending = []
        obs, reward, terminated, truncated, info = self.env.step(batch)
        self._obs, self._info = obs, deepcopy(info)
        self.k = int(info["max_picks"])
        self._over = bool(terminated or truncated)
        return self._view(), reward, terminated, truncated, dict(info, pending=[], invalid_pick=bad)

    def _nearest_allowed(self, i: int, allowed: np.ndarray) -> int:
        """The allowed candidate nearest in the embedding to candidate ``i`` ("stop" when nothing else is)."""
        rows = np.flatnonzero(allowed[: self.n])
        if len(rows) == 0:
            return self.n  # on the fly with the round full: only "stop" is left
        if not 0 <= i < self.n:
            return int(rows[0])
        emb = np.asarray(self._obs["embedding"], dtype=np.float64)
        return int(rows[np.argmin(np.linalg.norm(emb[rows] - emb[i], axis=1))])


class ScaledCandidates(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """``obs["candidates"]`` standardised within each round, so that one network sees the same scale on
    every task: each column becomes the z-score of log(value + 1e-8) over the available candidates
    (``mask == 1``; the others are set to 0). The spreads are heavy-tailed and their scale differs by two
    orders of magnitude between tasks (``force_std_max`` from about 0.2 to 23 eV/Angstrom), which is what
    this removes; the raw values are gone from the observation, so keep the unwrapped environment's
    observation if a policy needs absolute spreads (a trust window does). Other keys pass unchanged. A
    column that is constant over the round becomes 0. Shapes and dtypes do not change; the space of
    ``candidates`` is the same unbounded Box.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)

    def observation(self, obs: dict) -> dict:
        out = dict(obs)
        cand = np.asarray(obs["candidates"], dtype=np.float64)
        live = np.asarray(obs["mask"]).astype(bool)
        scaled = np.zeros_like(cand)
        if live.any():
            x = np.log(np.maximum(cand[live], 0.0) + 1e-8)
            sd = x.std(0)
            scaled[live] = np.where(sd > 1e-12, (x - x.mean(0)) / np.where(sd > 1e-12, sd, 1.0), 0.0)
        out["candidates"] = scaled.astype(obs["candidates"].dtype)
        return out


def action_masks(env: gym.Env) -> np.ndarray:
    """The masks of the outermost wrapper that offers ``action_masks()``, through any Gymnasium wrappers."""
    return env.get_wrapper_attr("action_masks")()
