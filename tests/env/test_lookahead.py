"""The look-ahead instrument of pool mode: the validation error a batch would leave, without taking it."""

from __future__ import annotations

import numpy as np
import pytest

from alenv.spaces import picks_to_action


def test_lookahead_predicts_the_round_it_looks_at_and_changes_nothing(make_env):
    # a deterministic closed-form learner: the look-ahead fit and the round's own fit must agree exactly
    env = make_env("alenv/Ethanol-GFN2-tiny-v3", model="ridge", model_kwargs={"bootstrap": False, "n_members": 2})
    obs, info = env.reset(seed=0)
    u = env.unwrapped
    free = np.flatnonzero(obs["mask"])
    batches = [free[:5], free[5:10], free[-5:]]
    before = dict(u.episode.metrics)
    maes = u.lookahead(batches)
    assert maes.shape == (3,) and np.all(maes > 0) and len(set(maes.round(12))) == 3
    assert u.episode.metrics == before and len(u.episode.train) == u.task.n_initial  # the episode is untouched
    obs, _, _, _, info = env.step(picks_to_action(batches[1], obs, info))
    assert u.episode.metrics["force_mae"] == pytest.approx(maes[1], rel=1e-9)
    with pytest.raises(ValueError, match="distinct pool indices"):
        u.lookahead([[0, 0]])
    with pytest.raises(ValueError, match="distinct pool indices"):
        u.lookahead([[u.n_pool]])
