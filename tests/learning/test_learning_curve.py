"""Active learning learns: labels acquired over an episode lower the test force error."""

from __future__ import annotations

import numpy as np
import pytest

from agents import make_agent

SEEDS = (0, 1, 2)
# Enough warm-start training per round for new labels to show. Measured on the current task data (seeds 0-7,
# random agent): final / initial force MAE 0.68-0.83 (seeds 0-2: 0.69-0.81; fps and uncertainty agents on
# seeds 0-5: 0.63-0.77); the same training without new labels: 0.94-0.98 of the initial error.
TRAINED = {"ensemble": {"steps_per_round": 40}}


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
    """Over an episode the force MAE drops by at least 10% (measured 19-31% on these seeds)."""
    initial, final = _episode(trained_env, "random", seed)
    assert final < 0.9 * initial, (initial, final)


@pytest.mark.parametrize("seed", SEEDS)
def test_improvement_comes_from_the_labels(trained_env, seed):
    """Same number of training steps without new labels: the episode's model is at least 5% better
    (measured: episode / control 0.70-0.87 on seeds 0-7), so the gain is due to the acquired data."""
    env = trained_env.unwrapped
    env.reset(seed=seed)
    rounds = env.task.budget // env.task.batch_size
    for _ in range(rounds):
        env._train(env.np_random)  # refit on the initial labels only, exactly as a round would
    control = env._evaluate()["force_mae"]
    _, final = _episode(trained_env, "random", seed)
    assert final < 0.95 * control, (control, final)


def test_tiny_task_as_shipped_lowers_force_error_clearly(ethanol_tiny_env):
    """The shipped tiny task: final / initial force MAE measured 0.60-0.74 over seeds 0-5 and all four
    agents (random, seeds 0-2: 0.64, 0.66, 0.74)."""
    ratios = [np.divide(*_episode(ethanol_tiny_env, "random", seed)[::-1]) for seed in SEEDS]
    assert max(ratios) < 0.8, ratios
