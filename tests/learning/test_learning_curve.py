"""Active learning learns: labels acquired over an episode lower the test force error."""

from __future__ import annotations

import numpy as np
import pytest

from agents import make_agent

SEEDS = (0, 1, 2)
# Enough warm-start training per round for new labels to show (measured on seeds 0-5 with the random, fps and
# uncertainty agents: final / initial force MAE 0.61-0.76; the same training without new labels: 0.93-0.99).
TRAINED = {"ensemble": {"epochs_per_round": 40}}


def _episode(env, agent_name: str, seed: int) -> tuple[float, float]:
    """Initial and final test force MAE of one episode."""
    obs, info = env.reset(seed=seed)
    initial = info["metrics"]["force_mae"]
    agent, rng = make_agent(agent_name), np.random.default_rng(seed)
    terminated = False
    while not terminated:
        obs, _, terminated, _, info = env.step(agent.act(obs, info, env.unwrapped.task.batch_size, rng))
    return initial, info["metrics"]["force_mae"]


@pytest.fixture(scope="module")
def trained_env(make_env):
    return make_env("alenv/Ethanol-GFN2-tiny-v0", **TRAINED)


@pytest.mark.parametrize("seed", SEEDS)
def test_episode_lowers_test_force_error(trained_env, seed):
    """Over an episode the force MAE drops by at least 20% (measured 28-37% on these seeds)."""
    initial, final = _episode(trained_env, "random", seed)
    assert final < 0.8 * initial, (initial, final)


@pytest.mark.parametrize("seed", SEEDS)
def test_improvement_comes_from_the_labels(trained_env, seed):
    """Same number of training steps without new labels: the episode's model is at least 15% better
    (measured: episode / control 0.66-0.77), so the gain is due to the acquired data, not extra training."""
    env = trained_env.unwrapped
    env.reset(seed=seed)
    rounds = env.task.budget // env.task.batch_size
    for _ in range(rounds):
        env._train(env.np_random)  # refit on the initial labels only, exactly as a round would
    control = env._evaluate()["force_mae"]
    _, final = _episode(trained_env, "random", seed)
    assert final < 0.85 * control, (control, final)


@pytest.mark.xfail(
    reason="Ethanol-GFN2-tiny as shipped trains too little per round (TINY_ENSEMBLE: epochs_per_round=4, "
    "min_steps_per_round=10, i.e. 10 optimiser steps at warm_lr): over the episode the force MAE falls only "
    "10-16% (final/initial 0.84-0.90 on seeds 0-2, up to 0.95 with the uncertainty agent), too little to tell "
    "acquisition strategies apart",
    strict=True,
)
def test_tiny_task_as_shipped_lowers_force_error_clearly(ethanol_tiny_env):
    ratios = [np.divide(*_episode(ethanol_tiny_env, "random", seed)[::-1]) for seed in SEEDS]
    assert max(ratios) < 0.8, ratios
