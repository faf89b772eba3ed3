"""Does the fast ridge committee rank candidates like the neural ensemble? And how fast does RL run on it?

    python -m benchmarks.fast_learner                         # Ethanol-GFN2 and Cu-EMT, 2 seeds
    python -m benchmarks.fast_learner --tasks Cu-EMT --seeds 0 --out benchmarks/results/fast_learner

Policies for query selection are trained on the ridge committee (``model="ridge"``, a refit in
milliseconds) and then run with the neural ensemble, so the ridge committee must say *where* the neural one
is uncertain and wrong. For each task and seed, two environments, one per learner, play the same random
picks (same seed, same initial labels) and at every ``--every`` rounds the script reports, over the
candidates still available:

- the Spearman rank correlation of the ridge and neural force spreads (``force_std_max``);
- the Spearman rank correlation of their true force errors (mean absolute component error per candidate,
  from the pool's reference labels: a benchmark instrument, not something an agent sees);
- for each learner, the rank correlation of its own spread with its own error.

Then the RL step rate: single picks (``SinglePick``) with random valid actions on the tiny variant of
each task with the ridge learner, resets included, in steps per second of one process (one torch thread).
Machines here are shared: the load average is printed beside the rates.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from alenv.observe import CANDIDATE_FEATURES

SPREAD = CANDIDATE_FEATURES.index("force_std_max")


def _errors(env) -> np.ndarray:
    """Per pool candidate, the mean absolute force error of the ensemble mean (dense layouts)."""
    u = env.unwrapped
    _, F = u.true_labels()
    _, Fp = u.predict_candidates()
    return np.abs(Fp.mean(0) - F).mean(axis=(1, 2))


def compare(task: str, seed: int, every: int, cache_dir: str | None) -> list[dict]:
    """Play the same random picks with both learners; rank correlations at checkpoints."""
    import gymnasium as gym

    import alenv  # noqa: F401
    from alenv.spaces import picks_to_action
    from alenv.tasks import get_task

    spec = get_task(task)
    envs = {"neural": gym.make(spec.id, cache_dir=cache_dir), "ridge": gym.make(spec.id, model="ridge", cache_dir=cache_dir)}
    obs = {k: e.reset(seed=seed)[0] for k, e in envs.items()}
    rng = np.random.default_rng([seed, 11])
    rows, rnd, done = [], 0, False
    while not done:
        np.testing.assert_array_equal(obs["neural"]["mask"], obs["ridge"]["mask"])  # the same labelled set
        if rnd % every == 0:
            free = obs["neural"]["mask"].astype(bool)
            spread = {k: o["candidates"][free, SPREAD] for k, o in obs.items()}
            err = {k: _errors(e)[free] for k, e in envs.items()}
            row = {"task": task, "seed": seed, "round": rnd, "labels": len(envs["ridge"].unwrapped.episode.train),
                   "spread_rho": float(spearmanr(spread["neural"], spread["ridge"])[0]),
                   "error_rho": float(spearmanr(err["neural"], err["ridge"])[0]),
                   **{f"{k}_spread_error_rho": float(spearmanr(spread[k], err[k])[0]) for k in envs},
                   **{f"{k}_force_mae": float(e.unwrapped.episode.metrics["force_mae"]) for k, e in envs.items()}}
            rows.append(row)
            print(json.dumps(row), flush=True)
        k = spec.batch_size
        picks = rng.choice(np.flatnonzero(obs["neural"]["mask"]), size=k, replace=False)
        for name, e in envs.items():
            obs[name], _, terminated, truncated, _ = e.step(picks_to_action(picks, obs[name], {"max_picks": k}))
        done = terminated or truncated
        rnd += 1
    return rows


def rl_rate(task: str, steps: int, cache_dir: str | None) -> dict:
    """Random valid single picks on the ridge learner: RL steps per second, resets included."""
    import gymnasium as gym

    import alenv  # noqa: F401
    from alenv.tasks import get_task
    from alenv.wrappers import SinglePick

    env = SinglePick(gym.make(get_task(task).id, model="ridge", cache_dir=cache_dir))
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    t0, c0, episodes = time.perf_counter(), time.process_time(), 0
    for _ in range(steps):
        action = int(rng.choice(np.flatnonzero(env.action_masks())))
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset(seed=int(rng.integers(2**31)))
            episodes += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"task": task, "pool": len(env.unwrapped.pool_frames), "steps": steps, "episodes": episodes, "steps_per_second": steps / wall,
            "steps_per_cpu_second": steps / cpu, "load_average": os.getloadavg()[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["Ethanol-GFN2", "Cu-EMT"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--every", type=int, default=5, help="compare every this many rounds")
    p.add_argument("--rl-steps", type=int, default=2000, help="single picks timed per tiny task")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default=None, help="folder for results.json")
    args = p.parse_args()
    rows = [r for task in args.tasks for seed in args.seeds for r in compare(task, seed, args.every, args.cache_dir)]
    rates = [rl_rate(task if task.endswith("-tiny") else f"{task}-tiny", args.rl_steps, args.cache_dir) for task in args.tasks]
    for r in rates:
        print(json.dumps(r), flush=True)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "results.json").write_text(json.dumps({"comparisons": rows, "rl_rates": rates}, indent=1))


if __name__ == "__main__":
    main()
