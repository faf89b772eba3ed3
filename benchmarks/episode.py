"""Play one active-learning episode and record it: plain Python, no Hydra (the runner wraps it)."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


def run_episode(
    env, agent, seed: int, progress: bool = True, echo: bool | Callable[[str], None] = True
) -> dict[str, Any]:
    """Reset ``env`` with ``seed``, let ``agent`` act until the episode ends, return the record.

    ``echo``: print the per-round table (True), or hand each of its lines to a function (the runner's
    log, which prints and writes ``run.log``).

    The agent's generator is seeded from ``seed`` too (a separate stream from the environment's). Each
    round the agent is asked for ``info["max_picks"]`` candidates (``agent.act(obs, info, k, rng)``);
    where ``info["any_subset"]`` (on-the-fly mode) it may return fewer, and with no picks allowed the
    action is the empty selection. ``alenv.spaces.picks_to_action`` makes the action for either space.

    Recorded ``metrics`` are what reports compare: the error metrics of the sealed test set
    (``env.unwrapped.test_metrics()``, read by the harness only), with the counters of ``info["metrics"]``;
    the validation errors that the agent and the reward saw are kept beside them under ``validation``.
    """
    from alenv.spaces import picks_to_action

    rng = np.random.default_rng([int(seed), 1])
    t0, c0 = time.perf_counter(), time.process_time()
    obs, info = env.reset(seed=int(seed))
    reset_seconds = time.perf_counter() - t0
    metrics, validation = _reported(env, info)
    record: dict[str, Any] = {
        "initial": {"metrics": metrics, "validation": validation, "seconds": reset_seconds},
        "steps": [],
    }
    say = echo if callable(echo) else (tqdm.write if echo else None)
    if say:
        say(_header(getattr(env.unwrapped, "mode", "pool") == "otf"))  # MD columns on the fly only
        say(_row(0, metrics, float("nan"), reset_seconds))
    bar = tqdm(desc="rounds", disable=not progress, leave=False)  # the number of rounds is the env's business
    done = False
    total_reward = 0.0
    while not done:
        ta = time.perf_counter()
        k = int(info["max_picks"])
        if k == 0 and info["any_subset"]:
            picks = np.zeros(0, dtype=np.int64)
        else:
            picks = agent.act(obs, info, k, rng)
        action = picks_to_action(picks, obs, info)
        agent_seconds = time.perf_counter() - ta
        te = time.perf_counter()
        obs, reward, terminated, truncated, info = env.step(action)
        env_seconds = time.perf_counter() - te
        done = terminated or truncated
        total_reward += reward
        metrics, validation = _reported(env, info)
        record["steps"].append(_step(info, metrics, validation, reward, agent_seconds, env_seconds))
        bar.update(1)
        if say:
            say(_row(info["round"], metrics, reward, agent_seconds + env_seconds))
    bar.close()
    record["summary"] = {
        "final_metrics": metrics,
        "return": total_reward,
        "wall_seconds": time.perf_counter() - t0,
        # CPU seconds of this process (all its threads): with one torch thread, about the wall time the
        # episode would take on an idle core, whatever else the machine was running
        "cpu_seconds": time.process_time() - c0,
    }
    return _jsonable(record)


def _reported(env: Any, info: dict) -> tuple[dict, dict]:
    """Test metrics with info's counters (what reports compare), and the validation errors from info.

    The test metrics hold the overall errors (``keys.TEST_METRICS``) and the same per subset of the test
    set, keyed ``keys.per_subset`` (``force_mae[T=300K]``); the validation record holds the overall ones.
    """
    from alenv.keys import TEST_METRICS

    metrics = dict(info["metrics"])
    validation = {k: metrics[k] for k in TEST_METRICS if k in metrics}
    test = getattr(getattr(env, "unwrapped", env), "test_metrics", None)
    if test is not None:
        metrics.update(test())
    return metrics, validation


def _step(
    info: dict, metrics: dict, validation: dict, reward: float, agent_seconds: float, env_seconds: float
) -> dict[str, Any]:
    """One round's record: test metrics (with counters), validation errors, reward, picks, failures,
    seconds (and the env's stage timings)."""
    step = {
        "round": info["round"],
        "metrics": metrics,
        "validation": validation,
        "reward": reward,
        "chosen": info["chosen"],
        "failed": info["failed"],
        "seconds": {"agent": agent_seconds, "env": env_seconds},
    }
    if "timings" in info:  # wall time of the round's stages; "label": what the oracle took now
        step["timings"] = info["timings"]
    return step


def _header(otf: bool = False) -> str:
    """The per-round table's header; ``train s`` is the training time so far (a running total)."""
    head = f"{'round':>5} {'labels':>6} {'test F meV/A':>12} {'test E meV':>10} {'reward':>8} {'train s sum':>11} {'round s':>8}"
    return head + (f" {'MD steps':>9} {'failures':>8} {'stable':>7}" if otf else "")


def _row(r: int, m: dict, reward: float, seconds: float) -> str:
    train = m.get("train_seconds", float("nan"))
    row = (
        f"{r:>5d} {m['n_labels']:>6d} {1000 * m['force_mae']:>12.1f} {1000 * m['energy_mae']:>10.1f} "
        f"{reward:>8.3f} {train:>11.2f} {seconds:>8.2f}"
    )
    if "md_steps" in m:  # on-the-fly mode: model-MD steps so far, this round's failures, stability test
        row += f" {m['md_steps']:>9d} {m['md_failures']:>8d} {m.get('stability_steps', float('nan')):>7.0f}"
    return row


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically: a crash never leaves a half-written results file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def plot_learning_curve(record: dict, path: Path, title: str) -> None:
    """Test force and energy MAE against labels held, log scale, as PNG (on-the-fly metrics too for an
    on-the-fly run; see ``benchmarks.plots``)."""
    from benchmarks.plots import plot_learning_curve as plot

    plot(record, path, title)
