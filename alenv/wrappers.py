"""Wrappers: one pick at a time for RL libraries that want ``Discrete`` actions with masks."""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import gymnasium as gym
import numpy as np

from alenv.spaces import MaskedDiscrete


class SinglePick(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Builds each round's batch of k candidates from k single picks.

    The action space is ``Discrete(N)`` (its ``sample()`` follows the live mask) and ``action_masks()``
    returns the boolean mask of candidates that may be picked now, as masked-action libraries such as
    sb3-contrib's MaskablePPO expect. Picks before the k-th return the same observation with the picked
    candidates masked, reward 0 and ``info["pending"]``; the k-th pick sends the batch to the wrapped
    environment and returns its observation, reward, termination and info. An invalid pick (masked,
    already pending, out of range) raises ``ValueError``.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self.k = int(env.unwrapped.task.batch_size)
        self.n = int(env.unwrapped.n_pool)
        self.action_space = MaskedDiscrete(self.n)
        self.pending: list[int] = []
        self._obs: dict[str, np.ndarray] | None = None
        self._info: dict[str, Any] = {}

    def _view(self) -> dict[str, np.ndarray]:
        obs = {key: value.copy() for key, value in self._obs.items()}
        obs["mask"][self.pending] = 0
        self.action_space.available = obs["mask"].copy()
        return obs

    def action_masks(self) -> np.ndarray:
        """Boolean (N,): True where a candidate may be picked now."""
        mask = self._obs["mask"].astype(bool)
        mask[self.pending] = False
        return mask

    def reset(self, **kwargs: Any) -> tuple[dict, dict]:
        obs, info = self.env.reset(**kwargs)
        self.pending = []
        self._obs, self._info = obs, deepcopy(info)
        return self._view(), dict(info, pending=[])

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(action)
        if a.size != 1 or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"a single-pick action is one integer index, got {action!r}")
        i = int(a.reshape(-1)[0])
        if not 0 <= i < self.n:
            raise ValueError(f"candidate {i} is out of range [0, {self.n})")
        if not self.action_masks()[i]:
            raise ValueError(f"candidate {i} is masked (labelled or already picked this round)")
        self.pending.append(i)
        if len(self.pending) < self.k:
            info = deepcopy(self._info)  # fresh objects on every call: callers keep what they are given
            return self._view(), 0.0, False, False, dict(info, pending=list(self.pending))
        batch = np.array(self.pending, dtype=np.int64)
        self.pending = []
        obs, reward, terminated, truncated, info = self.env.step(batch)
        self._obs, self._info = obs, deepcopy(info)
        return self._view(), reward, terminated, truncated, dict(info, pending=[])
