"""Replay one episode's labels round by round: does the warm-started learner stay near a refit from scratch?

    python -m benchmarks.replay --task AlanineDipeptide-GFN2-OTF --labels 110 --out runs/replay
    python -m benchmarks.replay --task AlanineDipeptide-GFN2-OTF --labels 110 --out runs/replay --model warm_lr=1e-3

The first call plays an episode of the task with random picks (``--seed``) until ``--labels`` labels are held
and writes them, in the order they were labelled, to ``OUT/labels.extxyz`` (later calls reuse that file). Then
a potential of the task's model (with ``--model`` settings) is trained on that fixed stream as the loop would:
a fit from scratch on the initial labels, then one warm-started fit per round of ``--batch`` more labels. At
each checkpoint (``--checkpoints``) its sealed-test force MAE is printed beside that of a fit from scratch on
the same labels with at least as many optimiser steps. Unlike ``benchmarks.learner``, every setting sees the
same labels: on the on-the-fly tasks, where the model drives the MD that proposes candidates, a whole episode
with other settings would also label other frames, and one episode's spread hides the learner's effect.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def capture(task: str, n_labels: int, seed: int, path: Path, settings: dict | None = None) -> None:
    """Play ``task`` with random picks until ``n_labels`` labels are held; write them in labelling order.
    ``settings`` change the task's model settings for this episode."""
    import gymnasium as gym

    import alenv  # noqa: F401
    from alenv.spaces import picks_to_action
    from alenv.tasks import get_task

    env = gym.make(get_task(task).id, progress=False, **({"model_kwargs": settings} if settings else {}))
    u = env.unwrapped
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    done = False
    while len(u.episode.train.rows) < n_labels and not done:
        picks = rng.choice(np.flatnonzero(obs["mask"]), size=int(info["max_picks"]), replace=False)
        obs, _, terminated, truncated, info = env.step(picks_to_action(picks, obs, info))
        done = terminated or truncated
    path.parent.mkdir(parents=True, exist_ok=True)
    u.save_labels(path)
    env.close()


def replay(task: str, path: Path, settings: dict, checkpoints: list[int], batch: int, seed: int) -> list[dict]:
    """In-loop and from-scratch test force MAE (eV/Angstrom) at each checkpoint of the label stream in ``path``."""
    import ase.io
    import gymnasium as gym

    import alenv  # noqa: F401
    from alenv import loop
    from alenv.descriptors.representation import FeaturizedFrames
    from alenv.models import make_potential
    from alenv.tasks import get_task

    spec = get_task(task)
    env = gym.make(spec.id, progress=False)
    u = env.unwrapped
    env.reset(seed=seed)
    frames = ase.io.read(path, index=":")
    E = np.array([f.get_potential_energy() for f in frames])
    F = np.stack([f.get_forces() for f in frames])
    data = FeaturizedFrames(frames, u.representation.aev)
    kwargs = {**spec.model_kwargs, **settings}
    pot = make_potential(spec.model, u.representation, seed=seed, **kwargs)
    fit_rng = np.random.default_rng([seed, 3])
    out = []
    t0 = time.perf_counter()
    for K in range(spec.n_initial, min(len(frames), max(checkpoints)) + 1, batch):
        pot.fit(data, E[:K], F[:K], fit_rng, idx=np.arange(K))
        if K in checkpoints:
            ref = make_potential(spec.model, u.representation, seed=seed + 1, **{**kwargs, "min_steps": pot.n_updates})
            ref.fit(data, E[:K], F[:K], np.random.default_rng([seed + 1, 2]), idx=np.arange(K))
            row = {"labels": K, "in_loop": loop.evaluate(pot, u._test)["force_mae"],
                   "refit": loop.evaluate(ref, u._test)["force_mae"], "seconds": time.perf_counter() - t0}
            out.append(row)
            print(f"{K:5d} labels  in-loop {1000 * row['in_loop']:7.1f}  refit {1000 * row['refit']:7.1f} meV/A  "
                  f"gap {row['in_loop'] / row['refit'] - 1:+.0%}  ({row['seconds']:.0f} s)", flush=True)
    env.close()
    return out


def main(argv: list[str] | None = None) -> None:
    from benchmarks.learner import parse_settings

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="AlanineDipeptide-GFN2-OTF")
    p.add_argument("--labels", type=int, default=110, help="labels of the captured episode")
    p.add_argument("--checkpoints", type=int, nargs="+", default=[30, 60, 90, 110])
    p.add_argument("--batch", type=int, default=10, help="labels added per replayed round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", nargs="+", default=[], metavar="KEY=VALUE", help="model settings to try")
    p.add_argument("--capture-model", nargs="+", default=[], metavar="KEY=VALUE",
                   help="model settings of the captured episode (default: the task's)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    from alenv.tasks import get_task

    n0 = get_task(args.task).n_initial
    bad = [c for c in args.checkpoints if c < n0 or c > args.labels or (c - n0) % args.batch]
    if args.batch < 1 or bad:
        p.error(f"checkpoints must lie on the replayed rounds ({n0} initial labels, then --batch {args.batch} "
                f"more per round, up to --labels {args.labels}); not on them: {bad}")
    settings = parse_settings(args.model)
    labels = args.out / "labels.extxyz"
    if not labels.exists():
        capture(args.task, args.labels, args.seed, labels, parse_settings(args.capture_model))
    rows = replay(args.task, labels, settings, args.checkpoints, args.batch, args.seed)
    name = "-".join(f"{k}={v}" for k, v in settings.items()) or "task-settings"
    (args.out / f"{name}.json").write_text(json.dumps({"task": args.task, "settings": settings, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
