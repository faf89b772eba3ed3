"""Peak memory of a task, this code next to an earlier revision's, side by side in one run.

    python -m benchmarks.memory                                  # rMD17 aspirin, 1,000 + 1,000 frames
    python -m benchmarks.memory --before e0916f0                 # also the code at that revision
    python -m benchmarks.memory --molecule ethanol --rounds 2

Each measurement runs in a fresh process: it builds the Dataset task on the shipped rMD17 molecule (the
1,000 training frames as pool, the 1,000 test frames as test set; validation drawn from the pool), plays
``--rounds`` rounds of random picks, and prints its peak resident memory (``ru_maxrss``), the seconds to
build the task and per round, and which reference sets it streamed. ``--before REV`` checks REV out into a
temporary git worktree and measures it the same way, alternating with the current code. The target for
aspirin is a peak under 2.5 GB (the dense descriptor Jacobians of 2,000 frames of 21 atoms are 2.5 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
import numpy as np, gymnasium as gym
import alenv
from alenv.datasets import rmd17
from alenv.tasks import get_task
molecule, rounds = sys.argv[1], int(sys.argv[2])
t0 = time.perf_counter()
env = gym.make(get_task("Dataset").id, pool=str(rmd17(molecule, "train")), test=str(rmd17(molecule, "test")),
               reserve_size=10, n_initial=10, budget=20 * rounds, batch_size=20, wall_times=True)
build = time.perf_counter() - t0
rng = np.random.default_rng(0)
obs, info = env.reset(seed=0)
per_round = []
done = False
while not done:
    t1 = time.perf_counter()
    picks = np.flatnonzero(obs["mask"])
    action = np.sort(rng.choice(picks, size=info["max_picks"], replace=False))
    obs, _, done, _, info = env.step(action)
    env.unwrapped.test_metrics()  # as the benchmark harness does every round
    per_round.append(time.perf_counter() - t1)
print(json.dumps({"peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "build_s": build,
                  "round_s": per_round, "streamed": sorted(getattr(env.unwrapped, "streamed", ()))}))
"""


def run(code: Path, molecule: str, rounds: int) -> dict:
    """Measure in a fresh process importing alenv from ``code``."""
    env = {**os.environ, "PYTHONPATH": str(code), "ALENV_TORCH_THREADS": os.environ.get("ALENV_TORCH_THREADS", "1")}
    out = subprocess.run([sys.executable, "-c", CHILD, molecule, str(rounds)], env=env, cwd=code,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"measurement with {code} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--molecule", default="aspirin")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--before", default=None, help="git revision to measure beside the current code")
    p.add_argument("--repeats", type=int, default=1, help="alternating measurements of each")
    args = p.parse_args()
    codes = {"current": ROOT}
    with tempfile.TemporaryDirectory() as tmp:
        if args.before:
            old = Path(tmp) / "before"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.before],
                           check=True, capture_output=True)
            codes = {f"before ({args.before})": old, **codes}
        try:
            rows = []
            for _ in range(args.repeats):
                for name, code in codes.items():
                    res = run(code, args.molecule, args.rounds)
                    rows.append((name, res))
                    print(f"{name:>22}: peak {res['peak_gb']:.2f} GB, build {res['build_s']:.1f} s, rounds "
                          f"{', '.join(f'{s:.1f}' for s in res['round_s'])} s, streamed {res['streamed'] or 'none'}",
                          flush=True)
        finally:
            if args.before:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
    print(json.dumps([{"code": n, **r} for n, r in rows], indent=1))


if __name__ == "__main__":
    main()
