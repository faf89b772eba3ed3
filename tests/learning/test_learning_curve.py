"""Active learning learns: labels acquired over an episode lower the test force error.

Only the public API: ``gymnasium.make`` with task overrides, ``reset``, ``step`` and ``info["metrics"]``.
Candidates are picked uniformly at random (seeded), so no strategy's merit is under test here, only that the
labels themselves make the model better.

The control of each episode is an episode of the same task, seed and training schedule (the same initial
labels and model, the same number of warm-started refits of the same length) that labels one candidate per
round instead of ``batch_size``: 3 labels instead of 15. Over five seeds, the episode must beat its control
on every seed: under the null hypothesis that the extra labels do not help, each paired comparison is a coin
flip, and five of five happen with probability 1/32 (a one-sided sign test at p = 0.031).
"""

from __future__ import annotations

import numpy as np
import pytest

SEEDS = (0, 1, 2, 3, 4)
# Twice the warm-start training per round of the shipped tiny task: a second, independent setting.
SETTINGS = {"shipped": {}, "trained": {"ensemble": {"epochs_per_round": 80}}}


def _random_episode(env, seed: int) -> list[float]:
    """Test force MAE after reset and after each round of an episode of uniformly random picks."""
    obs, info = env.reset(seed=seed)
    curve = [info["metrics"]["force_mae"]]
    rng = np.random.default_rng([seed, 1])
    k = env.unwrapped.task.batch_size
    terminated = False
    while not terminated:
        action = rng.choice(np.flatnonzero(obs["mask"]), size=k, replace=False)
        obs, _, terminated, _, info = env.step(action)
        curve.append(info["metrics"]["force_mae"])
    return curve


class _Curves(dict):
    """Per setting, played on first use: the episodes' curves and their controls' curves, one per seed."""

    def __init__(self, make_env):
        super().__init__()
        self.make_env = make_env

    def __missing__(self, name: str) -> dict[str, list[list[float]]]:
        overrides = SETTINGS[name]
        env = self.make_env("alenv/Ethanol-GFN2-tiny-v3", **overrides)
        task = env.unwrapped.task
        rounds = task.budget // task.batch_size
        control = self.make_env("alenv/Ethanol-GFN2-tiny-v3", batch_size=1, budget=rounds, **overrides)
        self[name] = {
            "episode": [_random_episode(env, s) for s in SEEDS],
            "control": [_random_episode(control, s) for s in SEEDS],
        }
        return self[name]


@pytest.fixture(scope="module")
def curves(make_env) -> _Curves:
    return _Curves(make_env)


# The second setting doubles the fixture's 25 s: slow, the shipped schedule is checked in the default run.
SETTING_PARAMS = [pytest.param(s, marks=pytest.mark.slow) if s == "trained" else s for s in sorted(SETTINGS)]


@pytest.mark.parametrize("setting", SETTING_PARAMS)
def test_control_shares_the_start_and_the_schedule(curves, setting):
    """The pairing is sound: same initial model per seed, and the same number of refits."""
    for episode, control in zip(curves[setting]["episode"], curves[setting]["control"]):
        assert episode[0] == control[0]
        assert len(episode) == len(control)


@pytest.mark.parametrize("setting", SETTING_PARAMS)
def test_improvement_comes_from_the_labels(curves, setting):
    """Five times the labels at the same training cost wins on every one of five seeds (sign test, p = 1/32)."""
    finals = [(e[-1], c[-1]) for e, c in zip(curves[setting]["episode"], curves[setting]["control"])]
    assert all(e < c for e, c in finals), finals


@pytest.mark.parametrize("setting", SETTING_PARAMS)
def test_every_round_lowers_the_test_force_error(curves, setting):
    """Each round adds 5 labels to the 5 to 15 already held (a third or more of the data) and refits from the
    current weights: the test force MAE after every round is below the one before it."""
    for seed, curve in zip(SEEDS, curves[setting]["episode"]):
        assert all(b < a for a, b in zip(curve, curve[1:])), (seed, curve)
