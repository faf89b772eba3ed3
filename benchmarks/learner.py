"""Is the learner in the loop trained as well as a fit from scratch on the same labels? And at what cost?

    python -m benchmarks.learner                                   # the standard tasks and rMD17 ethanol
    python -m benchmarks.learner --tasks Cu-EMT rmd17-ethanol --every 5
    python -m benchmarks.learner --out benchmarks/results/learner  # also write results.json and README table

For each task one episode is played with random picks (``--seed``). At every ``--every`` rounds and at the
end, the sealed test set's errors of the in-loop potential (warm-started round after round) are printed
next to those of a potential of the same model refitted from scratch on the same labels
(``env.refit_test_metrics()``) with at least as many optimiser steps as the in-loop potential had over all
its rounds (its ``epochs_initial`` passes otherwise: 200 passes over 60 labels are too few to converge),
with the gap ``in-loop / refit - 1``, and the seconds each round spent training. The target is a gap of
about 10% or less at every checkpoint.

``rmd17-ethanol`` is the Dataset task on the shipped rMD17 ethanol split (PBE/def2-SVP): the 1,000 training
frames labelled as ``reserve_size=10, n_initial=10, budget=990, batch_size=90``, validation = the last 200
frames of the test file, test = its first 800; target in-loop force MAE <= 20 meV/A.

Results are written per task as they finish (``--out``): a rerun skips tasks already there with the same
settings and task version, so a long run resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

STANDARD = ["Ethanol-GFN2", "Cu-EMT", "rmd17-ethanol", "Ethanol-GFN2-OTF", "Cu-EMT-OTF", "AlanineDipeptide-GFN2-OTF"]
RMD17 = {"reserve_size": 10, "n_initial": 10, "budget": 990, "batch_size": 90}


def _rmd17_kwargs(tmp: Path) -> dict:
    """The Dataset task on rMD17 ethanol: the training split as pool, the test split as validation + test."""
    import ase.io

    from alenv.datasets import rmd17

    test = ase.io.read(rmd17("ethanol", "test"), index=":")
    ase.io.write(tmp / "test.extxyz", test[:800])
    ase.io.write(tmp / "validation.extxyz", test[800:])
    return {"pool": str(rmd17("ethanol", "train")), "test": str(tmp / "test.extxyz"),
            "validation": str(tmp / "validation.extxyz"), **RMD17}


def _spec(task: str):
    """The task spec behind a task name here (``rmd17-ethanol`` is the Dataset task)."""
    from alenv.tasks import get_task

    return get_task("Dataset" if task == "rmd17-ethanol" else task)


def _env_id(task: str) -> str:
    """The versioned environment id behind a task name here."""
    return _spec(task).id


def measure(task: str, seed: int, every: int, cache_dir: str | None, tmp: Path, model: dict | None = None,
            refits: int = 1) -> dict:
    """Play one random-pick episode of ``task`` and compare in-loop and refitted test errors at checkpoints;
    ``model`` overrides some of the task's model settings (both potentials get them). With ``refits`` > 1
    each checkpoint refits that many times from different seeds: the refit's own seed spread, against which
    a gap can be judged; the gap is then to their mean."""
    import gymnasium as gym
    import numpy as np

    import alenv  # noqa: F401
    from agents import make_agent
    from alenv.spaces import picks_to_action

    kwargs = _rmd17_kwargs(tmp) if task == "rmd17-ethanol" else {}
    env_id = _env_id(task)
    if model:
        kwargs["model_kwargs"] = {**_spec(task).model_kwargs, **model}
    env = gym.make(env_id, cache_dir=cache_dir, progress=sys.stderr.isatty(), wall_times=True, **kwargs)
    agent, rng = make_agent("random"), np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    rows, done, train_seconds = [], False, []
    print(f"{task}: {'round':>5} {'labels':>6} {'train s':>8} {'in-loop':>8} {'refit':>8} {'gap':>6}  (test force MAE, meV/A)",
          flush=True)
    while not done:
        picks = agent.act(obs, info, info["max_picks"], rng) if info["max_picks"] else np.zeros(0, dtype=np.int64)
        obs, _, done, _, info = env.step(picks_to_action(picks, obs, info))
        train_seconds.append(info["timings"].get("train", 0.0))
        if info["round"] % every and not done:
            continue
        t0 = time.perf_counter()
        # the refit gets at least as many optimiser steps as the in-loop potential had in all its rounds
        steps = getattr(env.unwrapped.potential, "n_updates", None)
        settings = {"min_steps": int(steps)} if steps is not None else {}
        inloop = env.unwrapped.test_metrics()
        fits = [env.unwrapped.refit_test_metrics(seed=seed + 1000 + j, **settings) for j in range(refits)]
        refit = {k: float(np.mean([f[k] for f in fits])) for k in fits[0]}
        row = {
            "round": info["round"], "labels": info["metrics"]["n_labels"], "train_seconds": train_seconds[-1],
            "refit_seconds": time.perf_counter() - t0, "in_loop_steps": steps,
            "in_loop": {k: inloop[k] for k in ("force_mae", "force_rmse", "energy_mae", "force_norm_p95")},
            "refit": {k: refit[k] for k in ("force_mae", "force_rmse", "energy_mae", "force_norm_p95")},
            # per test subset (temperatures, basins): a gap confined to one subset is a different story
            "subsets": {k[len("force_mae["):-1]: [inloop[k], refit[k]] for k in inloop if k.startswith("force_mae[")},
        }
        if refits > 1:
            row["refit_force_mae_each"] = [f["force_mae"] for f in fits]
        uncovered = _uncovered(env.unwrapped)
        if uncovered:
            row["uncovered"] = uncovered
        row["gap"] = row["in_loop"]["force_mae"] / row["refit"]["force_mae"] - 1
        rows.append(row)
        spread = ("  refits " + ", ".join(f"{1000 * v:.1f}" for v in row["refit_force_mae_each"])
                  if refits > 1 else "")
        print(f"{'':{len(task) + 1}} {row['round']:5d} {row['labels']:6d} {row['train_seconds']:8.1f} "
              f"{1000 * row['in_loop']['force_mae']:8.1f} {1000 * row['refit']['force_mae']:8.1f} {row['gap']:+6.0%}"
              f"{spread}", flush=True)
        if row["subsets"]:
            print(f"{'':{len(task) + 1}} per subset: {_subset_gaps(row)}", flush=True)
    env.close()
    return {"task": task, "id": env_id, "seed": seed, "every": every, "overrides": model or {}, "refits": refits,
            "checkpoints": rows,
            "train_seconds_per_round": train_seconds, "model": env.unwrapped.task.model_kwargs}


UNCOVERED_DEGREES = 60.0  # a test frame this far in torsion space from every label is outside their reach


def _uncovered(env) -> dict[str, float]:
    """For tasks with torsions: per test subset, the share of frames farther than ``UNCOVERED_DEGREES`` in
    torsion space from every successful label so far (where both potentials can only extrapolate)."""
    import numpy as np

    from alenv.data import subset_of
    from alenv.metrics import dihedrals, torsion_distance
    from alenv.tasks.build import TORSIONS

    quads = TORSIONS.get(env.task.system)
    if not quads:
        return {}
    labelled = env.episode.labelled
    frames = [f for f, ok in zip(labelled.frames, labelled.ok) if ok]
    far = torsion_distance(dihedrals(env.test_frames, quads), dihedrals(frames, quads)) > UNCOVERED_DEGREES
    names = np.array([str(subset_of(f)) for f in env.test_frames])
    return {str(name): float(far[names == name].mean()) for name in sorted(set(names))}


def _subset_gaps(row: dict) -> str:
    """``T=300K +5%, T=600K +250% (68% uncovered)``: each subset's gap, with its uncovered share if known."""
    parts = []
    for name, (inloop, refit) in row.get("subsets", {}).items():
        far = row.get("uncovered", {}).get(name)
        parts.append(f"{name} {inloop / refit - 1:+.0%}" + (f" ({far:.0%} uncovered)" if far else ""))
    return ", ".join(parts)


def _refit_cell(row: dict) -> str:
    """``542.4`` or, with several refits, their mean and range: ``542.4 (480.1-610.0)``."""
    each = row.get("refit_force_mae_each")
    cell = f"{1000 * row['refit']['force_mae']:.1f}"
    return cell + (f" ({1000 * min(each):.1f}-{1000 * max(each):.1f})" if each else "")


def table(results: dict) -> str:
    """Markdown table of every task's checkpoints."""
    lines = ["| task (version) | round | labels | train s (round) | in-loop force MAE | refit force MAE (range) | gap | "
             "in-loop / refit force RMSE | gap per test subset |", "|---|---|---|---|---|---|---|---|---|"]
    for task, res in results.items():
        for r in res["checkpoints"]:
            lines.append(
                f"| {task} ({res['id'].split('/')[-1] if 'id' in res else 'v2'}) | {r['round']} | {r['labels']} | {r['train_seconds']:.1f} | "
                f"{1000 * r['in_loop']['force_mae']:.1f} | {_refit_cell(r)} | {r['gap']:+.0%} | "
                f"{1000 * r['in_loop']['force_rmse']:.1f} / {1000 * r['refit']['force_rmse']:.1f} | {_subset_gaps(r)} |"
            )
    return "\n".join(lines) + (
        "\n\nForce errors in meV/A on the sealed test set; gap = in-loop / refit - 1, overall and per test subset. "
        f"Uncovered: the share of a subset's frames farther than {UNCOVERED_DEGREES:g} degrees in torsion space "
        "from every label (tasks with torsions), where both potentials extrapolate.\n"
    )


def parse_settings(pairs: list[str]) -> dict:
    """``["scratch_growth=1.5", "hidden=[64,64]"]`` -> model settings (values parsed as YAML)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"model settings are KEY=VALUE pairs, got {pair!r}")
        value = yaml.safe_load(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=STANDARD)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--every", type=int, default=5, help="checkpoint every this many rounds (and at the end)")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default=None, help="folder for results.json and table.md (resumes from them)")
    p.add_argument("--refits", type=int, default=1,
                   help="refits from different seeds per checkpoint (their mean is the reference; the table shows their range)")
    p.add_argument("--model", nargs="+", default=[], metavar="KEY=VALUE",
                   help="model settings to try instead of the task's, e.g. scratch_growth=1.5 warm_lr=1e-3")
    args = p.parse_args(argv)
    if args.every < 1 or args.refits < 1:
        p.error("--every and --refits must be at least 1")
    try:
        model = parse_settings(args.model)
    except ValueError as err:
        p.error(str(err))
    out = Path(args.out) if args.out else None
    path = out / "results.json" if out else None
    results = json.loads(path.read_text()) if path and path.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            done = results.get(task)
            # (settings compared as results.json holds them: tuples read back as lists)
            same = done and (done.get("id"), done["seed"], done["every"], done.get("overrides", {}),
                             done.get("refits", 1)) == (_env_id(task), args.seed, args.every,
                                                        json.loads(json.dumps(model)), args.refits)
            if same:  # a new task version (another learner) is measured again
                print(f"{task}: already in {path}, skipped")
                continue
            results[task] = measure(task, args.seed, args.every, args.cache_dir, Path(tmp), model, args.refits)
            if out:
                out.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(results, indent=1))
                (out / "table.md").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
