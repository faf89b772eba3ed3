"""Ratios to a baseline in the form papers report them, from a report's ``runs.csv``.

    python -m benchmarks.paper_ratios benchmarks/papers/bmdal/results/runs.csv
    python -m benchmarks.paper_ratios runs.csv --baseline random --pairs lcmd:uncertainty --out ratios.md

For every task and strategy: the geometric-mean ratio to the baseline over paired units (same task, data
seed and run seed) with its 95% t interval and Holm-corrected paired-test p (over the strategies compared,
per task, metric and column), for each metric at the end of the budget and as the mean over rounds of log
error (bmdal_reg's "mean of ln(error) over acquisition steps", which weighs the whole learning curve).
Metrics: force MAE, RMSE, 95th and 99th percentile of per-atom force-error norms, maximum force-component
error. ``--pairs a:b`` adds direct comparisons of strategy a with strategy b, Holm-corrected among
themselves.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.stats import holm, paired_log_ratio

METRICS = {"force_mae": "force MAE", "force_rmse": "force RMSE", "force_norm_p95": "force error p95",
           "force_norm_p99": "force error p99", "force_max": "max force error"}


def read(path: Path) -> dict:
    """runs[task][agent][(data_seed, seed)] = {metric: (end value, mean over rounds of log value)}."""
    series: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            key = (int(row["data_seed"] or 0), int(row["seed"]))
            series[row["task"]][row["agent"]][key].append(row)
    out: dict = defaultdict(lambda: defaultdict(dict))
    for task, agents in series.items():
        for agent, units in agents.items():
            for key, rows in units.items():
                rows = sorted(rows, key=lambda r: int(r["round"]))
                vals = {}
                for m in METRICS:
                    xs = [float(r[m]) for r in rows if r.get(m) not in (None, "")]
                    logs = [math.log(x) for x in xs[1:] if x > 0]  # the rounds after the initial fit
                    vals[m] = (xs[-1] if xs else math.nan, float(np.mean(logs)) if logs else math.nan)
                out[task][agent][key] = vals
    return out


def _compare(a: dict, b: dict, metric: str, column: int) -> tuple:
    keys = sorted(set(a) & set(b))
    if column == 0:
        return paired_log_ratio([a[k][metric][0] for k in keys], [b[k][metric][0] for k in keys])
    # mean log errors: compare on exp(mean log), the geometric mean over rounds
    return paired_log_ratio([math.exp(a[k][metric][1]) for k in keys], [math.exp(b[k][metric][1]) for k in keys])


def table(runs: dict, baseline: str, pairs: list[tuple[str, str]]) -> str:
    """Markdown: one table per task, rows of (strategy vs reference), columns per metric."""
    lines: list[str] = []
    for task in sorted(runs):
        agents = runs[task]
        if baseline not in agents:
            continue
        comparisons = [(a, baseline) for a in sorted(agents) if a != baseline]
        groups = [("vs " + baseline, comparisons), ("direct", [p for p in pairs if p[0] in agents and p[1] in agents])]
        lines += [f"## {task}", ""]
        for title, comps in groups:
            if not comps:
                continue
            for column, name in ((0, "at the end of the budget"), (1, "mean over rounds of log error")):
                res = {(a, b, m): _compare(agents[a], agents[b], m, column) for a, b in comps for m in METRICS}
                adj = {m: holm([res[(a, b, m)].p for a, b in comps]) for m in METRICS}
                lines += [f"### {title}, {name}", "",
                          "| comparison | units | " + " | ".join(f"{v} [95% CI], p Holm" for v in METRICS.values()) + " |",
                          "|---|---|" + "---|" * len(METRICS)]
                for i, (a, b) in enumerate(comps):
                    cells = []
                    for m in METRICS:
                        r = res[(a, b, m)]
                        p = adj[m][i]
                        cells.append(f"{r.ratio:.3f} [{r.lo:.3f}, {r.hi:.3f}], {'<0.001' if p < 1e-3 else f'{p:.3f}'}")
                    lines.append(f"| {a} / {b} | {res[(a, b, 'force_mae')].n} | " + " | ".join(cells) + " |")
                lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, help="runs.csv written by python -m benchmarks.report")
    p.add_argument("--baseline", default="random")
    p.add_argument("--pairs", nargs="*", default=[], help="direct comparisons a:b")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    pairs = [tuple(s.split(":", 1)) for s in args.pairs]
    if any(len(x) != 2 for x in pairs):
        p.error("pairs are written a:b")
    if not args.runs.is_file():
        p.error(f"{args.runs}: no such file (a runs.csv written by python -m benchmarks.report)")
    runs = read(args.runs)
    known = {a for agents in runs.values() for a in agents}
    unknown = sorted({name for pair in pairs for name in pair} - known | ({args.baseline} - known))
    if unknown:
        p.error(f"no runs of {', '.join(unknown)} in {args.runs}; strategies there: {', '.join(sorted(known))}")
    md = table(runs, args.baseline, pairs)
    if args.out:
        args.out.write_text(md)
    print(md)


if __name__ == "__main__":
    main()
