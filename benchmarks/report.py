"""Aggregate finished runs into a tidy table, learning curves and a Markdown summary.

    python -m benchmarks.report multirun/2026-11-24_12-00-00 [more dirs...] [--out DIR]

Reads every ``results.json`` below the given directories (runs without ``"complete": true`` are skipped
and listed), and writes into ``--out`` (default: ``report/`` inside the first directory):
``runs.csv`` (one row per run and round), ``curves_<task>.png`` (test force and energy MAE against
labels: mean over seeds with a band of one standard error, log scale) and ``report.md`` (final errors
per task and strategy, mean and standard error over seeds, and the ratio to random at equal budget).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def load_runs(dirs: list[Path]) -> tuple[list[dict], list[Path]]:
    """Complete runs below ``dirs`` and the paths of incomplete or unreadable ones."""
    runs, skipped = [], []
    for d in dirs:
        for path in sorted(Path(d).rglob("results.json")):
            try:
                res = json.loads(path.read_text())
            except (json.JSONDecodeError, OSError):
                skipped.append(path)
                continue
            if not res.get("complete"):
                skipped.append(path)
                continue
            res["_path"] = str(path)
            if res.get("variant"):  # runs with other settings are another line, never averaged in
                res["agent"] = f"{res['agent']}[{res['variant']}]"
            runs.append(res)
    return runs, skipped


def tidy_rows(runs: list[dict]) -> list[dict]:
    rows = []
    for r in runs:
        series = [(0, r["initial"]["metrics"])] + [(s["round"], s["metrics"]) for s in r["steps"]]
        for rnd, m in series:
            rows.append(
                {
                    "task": r["task"], "agent": r["agent"], "seed": r["seed"], "round": rnd,
                    "n_labels": m["n_labels"], "force_mae": m["force_mae"], "force_rmse": m["force_rmse"],
                    "energy_mae": m["energy_mae"], "energy_rmse": m["energy_rmse"],
                    "force_max": m.get("force_max"), "oracle_seconds": m["oracle_seconds"],
                    "train_seconds": m.get("train_seconds"),
                }
            )
    return rows


def curves(runs: list[dict], key: str) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """(task, agent) -> (labels, mean, standard error, seeds) of metric ``key`` over seeds."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in runs:
        groups[(r["task"], r["agent"])].append(r)
    out = {}
    for k, rs in groups.items():
        series = [[r["initial"]["metrics"]] + [s["metrics"] for s in r["steps"]] for r in rs]
        n = min(len(s) for s in series)
        labels = np.array([m["n_labels"] for m in series[0][:n]])
        vals = np.array([[m[key] for m in s[:n]] for s in series])
        se = vals.std(0, ddof=1) / np.sqrt(len(vals)) if len(vals) > 1 else np.zeros(n)
        out[k] = (labels, vals.mean(0), se, len(vals))
    return out


def plot(runs: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    f_curves, e_curves = curves(runs, "force_mae"), curves(runs, "energy_mae")
    for task in sorted({t for t, _ in f_curves}):
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for ax, cv, unit, name in ((axes[0], f_curves, "meV/Å", "test force MAE"), (axes[1], e_curves, "meV", "test energy MAE")):
            for (t, agent), (x, mean, se, n) in sorted(cv.items()):
                if t != task:
                    continue
                ax.plot(x, 1000 * mean, marker="o", ms=2.5, label=f"{agent} (n={n})")
                ax.fill_between(x, 1000 * (mean - se), 1000 * (mean + se), alpha=0.2)
            ax.set_yscale("log")
            ax.set_xlabel("labels")
            ax.set_ylabel(f"{name} ({unit})")
            ax.grid(True, which="both", alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(task)
        fig.tight_layout()
        path = out / f"curves_{task.split('/')[-1]}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def markdown(runs: list[dict]) -> str:
    f_curves, e_curves = curves(runs, "force_mae"), curves(runs, "energy_mae")
    lines = ["# Results", ""]
    for task in sorted({t for t, _ in f_curves}):
        lines += [f"## {task}", "", "| agent | seeds | labels | force MAE (meV/Å) | energy MAE (meV) | force MAE / random |", "|---|---|---|---|---|---|"]
        rnd = f_curves.get((task, "random"))
        cheats = {r["agent"] for r in runs if r.get("cheating")}
        for (t, agent), (x, mean, se, n) in sorted(f_curves.items()):
            if t != task:
                continue
            _, emean, ese, _ = e_curves[(t, agent)]
            agent = f"{agent} (cheating reference)" if agent in cheats else agent
            ratio = f"{mean[-1] / rnd[1][min(len(rnd[1]), len(mean)) - 1]:.3f}" if rnd is not None else "n/a"
            lines.append(
                f"| {agent} | {n} | {x[-1]} | {1000 * mean[-1]:.1f} ± {1000 * se[-1]:.1f} | "
                f"{1000 * emean[-1]:.1f} ± {1000 * ese[-1]:.1f} | {ratio} |"
            )
        lines.append("")
    lines.append("Mean ± standard error over seeds, at the end of the budget.")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    runs, skipped = load_runs(args.dirs)
    if not runs:
        raise SystemExit(f"no complete results.json below {', '.join(map(str, args.dirs))}")
    out = args.out or (args.dirs[0] / "report")
    out.mkdir(parents=True, exist_ok=True)
    rows = tidy_rows(runs)
    with open(out / "runs.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot(runs, out)
    md = markdown(runs)
    (out / "report.md").write_text(md)
    print(md)
    if skipped:
        print(f"skipped {len(skipped)} incomplete or unreadable runs: " + ", ".join(map(str, skipped)))
    print(f"report written to {out}")


if __name__ == "__main__":
    main()
