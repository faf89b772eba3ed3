"""Aggregate finished runs into a tidy table, learning curves and a Markdown summary.

    python -m benchmarks.report multirun/2026-11-24_12-00-00 [more dirs...] [--out DIR] [--checkpoint LABELS]

Reads every ``results.json`` below the given directories (runs without ``"complete": true`` are skipped
and listed), and writes into ``--out`` (default: ``report/`` inside the first directory):
``runs.csv`` (one row per run and round, every error metric the records hold), ``curves_<task>.png``
(test force and energy MAE against labels: mean over units with a 95% t confidence band, log scale),
``otf_<task>.png`` for on-the-fly tasks (model-MD steps, failures, stability, torsion coverage against
rounds) and ``report.md``.

A run is identified by (task, agent, data seed, seed); results recorded without a data seed count as data
seed 0. The independent unit is a (data seed, seed) pair: each strategy's run is paired with random's run
of the same task and unit, never by seed alone. Per task, ``report.md`` gives at the end of the budget
(and at each ``--checkpoint``): the mean and 95% t confidence interval of every error metric per strategy,
the maximum force error as a median over units, the ratio to random with its 95% confidence interval and
Holm-corrected paired-test p value, per-subset ratios where the records hold subset metrics, what the
units can resolve (minimum detectable effects, inconclusive comparisons), then mean rank, area under the
learning curve, labels to a target error, wall and oracle seconds. The methods are in
:mod:`benchmarks.stats`.

Runs of one task are compared only if their configs differ in nothing but agent, seed and the keys their
sweep varied (its override dirname): runs made with another budget, say, stop the report with the key
named, unless ``--allow-mixed-configs`` is given.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

# The numbers are computed in benchmarks.report_metrics and the Markdown is built in
# benchmarks.report_tables; their public names are importable from here as well.
from benchmarks.report_metrics import (
    ALPHA, HEADLINE, MAX_KEY, NAMES, POWER, Unit, compare, curves, data_seed, error_keys, labels_to_target,
    metric_name, metric_unit, metrics_at, resolution, run_stats, unit,
)
from benchmarks.report_tables import NOTES, markdown, units_line

__all__ = [
    "ALPHA", "HEADLINE", "MAX_KEY", "NAMES", "NOTES", "POWER", "Unit", "compare", "curves", "data_seed",
    "error_keys", "labels_to_target", "load_runs", "main", "markdown", "metric_name", "metric_unit",
    "metrics_at", "plot", "resolution", "run_stats", "tidy_rows", "unit", "units_line", "write_csv",
]


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
    """One row per run and round: identity, labels, every error metric (empty where not recorded), oracle
    and training seconds."""
    keys = error_keys(runs)
    rows = []
    for r in runs:
        for rnd, m in [(0, r["initial"]["metrics"])] + [(s["round"], s["metrics"]) for s in r["steps"]]:
            rows.append(
                {
                    "task": r["task"], "agent": r["agent"], "data_seed": data_seed(r), "seed": r["seed"],
                    "round": rnd, "n_labels": m["n_labels"],
                    **{k: m.get(k) for k in keys},
                    "oracle_seconds": m["oracle_seconds"], "train_seconds": m.get("train_seconds"),
                }
            )
    return rows


def plot(runs: list[dict], out: Path) -> list[Path]:
    """``curves_<task>.png`` for every task; ``otf_<task>.png`` for on-the-fly tasks too."""
    from benchmarks.plots import is_otf, plot_task_curves, plot_task_otf

    paths = []
    f_curves, e_curves = curves(runs, "force_mae"), curves(runs, "energy_mae")
    for task in sorted({t for t, _ in f_curves}):
        name = task.split("/")[-1]
        paths.append(plot_task_curves(task, f_curves, e_curves, out / f"curves_{name}.png"))
        otf = [r for r in runs if r["task"] == task and is_otf(r)]
        if otf:
            paths.append(plot_task_otf(task, otf, out / f"otf_{name}.png"))
    return paths


def _check_mixing(runs: list[dict], allow: bool) -> None:
    """Stop (or, allowed, warn) where runs to be compared were made with settings their sweep did not vary."""
    from benchmarks.resume import mixed_configs

    problems = mixed_configs(runs)
    if not problems:
        return
    more = f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else ""
    text = "\n  ".join(problems[:5]) + more
    if allow:
        print(f"warning: comparing runs made with different settings (--allow-mixed-configs):\n  {text}")
        return
    raise SystemExit(
        "error: these runs differ in settings that their sweep did not vary, so the report would average or\n"
        "compare them as if alike (an earlier sweep into the same folder with another preset leaves such runs):\n"
        f"  {text}\nReport them separately (one folder each), rerun them with one config, or pass "
        "--allow-mixed-configs."
    )


def write_csv(rows: list[dict], path: Path) -> None:
    """``rows`` as CSV, with every key any row has (in first-seen order) as a column."""
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def main() -> None:
    """``python -m benchmarks.report DIR [DIR ...] [--out OUT]``: check, aggregate, write and print the report."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--target", type=float, default=None, help="force MAE target in meV/A for 'labels to target'")
    p.add_argument("--checkpoint", type=int, action="append", default=[], metavar="LABELS",
                   help="also report the error tables at this many labels (repeatable)")
    p.add_argument("--allow-mixed-configs", action="store_true",
                   help="compare runs of a task even where their configs differ in keys their sweep did not vary")
    args = p.parse_args()
    runs, skipped = load_runs(args.dirs)
    if not runs:
        raise SystemExit(f"no complete results.json below {', '.join(map(str, args.dirs))}")
    _check_mixing(runs, args.allow_mixed_configs)
    out = args.out or (args.dirs[0] / "report")
    out.mkdir(parents=True, exist_ok=True)
    write_csv(tidy_rows(runs), out / "runs.csv")
    plot(runs, out)
    md = markdown(runs, None if args.target is None else args.target / 1000, args.checkpoint)
    (out / "report.md").write_text(md)
    print(md)
    if skipped:
        print(f"skipped {len(skipped)} incomplete or unreadable runs: " + ", ".join(map(str, skipped)))
    print(f"report written to {out}")


if __name__ == "__main__":
    main()
