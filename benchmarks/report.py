"""Aggregate finished runs into a tidy table, learning curves and a Markdown summary.

    python -m benchmarks.report multirun/2026-11-24_12-00-00 [more dirs...] [--out DIR]

Reads every ``results.json`` below the given directories (runs without ``"complete": true`` are skipped
and listed), and writes into ``--out`` (default: ``report/`` inside the first directory):
``runs.csv`` (one row per run and round), ``curves_<task>.png`` (test force and energy MAE against
labels: mean over seeds with a band of one standard error, log scale), ``otf_<task>.png`` for on-the-fly
tasks (model-MD steps, failures, stability, torsion coverage against rounds) and ``report.md`` (per task
and strategy: final errors with standard errors, ratio to random at equal budget, paired test against
random, mean rank, max force error, area under the learning curve, labels needed to reach a target error,
wall and oracle seconds).

Runs of one task are compared only if their configs differ in nothing but agent, seed and the keys their
sweep varied (its override dirname): runs made with another budget, say, stop the report with the key
named, unless ``--allow-mixed-configs`` is given.
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
        xs = [np.array([m["n_labels"] for m in s]) for s in series]
        ys = [np.array([m[key] for m in s], dtype=float) for s in series]
        n = min(len(x) for x in xs)
        if all(np.array_equal(x[:n], xs[0][:n]) for x in xs):  # pool mode: the same labels every round
            labels = xs[0][:n]
            vals = np.stack([y[:n] for y in ys])
        else:  # on-the-fly mode: rounds label different numbers; compare at equal labels
            labels = np.unique(np.concatenate(xs))
            labels = labels[labels <= min(x[-1] for x in xs)]
            # the error after the last round that held at most that many labels
            vals = np.stack([y[np.searchsorted(x, labels, side="right") - 1] for x, y in zip(xs, ys)])
        se = vals.std(0, ddof=1) / np.sqrt(len(vals)) if len(vals) > 1 else np.zeros(len(labels))
        out[k] = (labels, vals.mean(0), se, len(vals))
    return out


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


def run_stats(r: dict) -> dict:
    """Per-run numbers: final errors, area under the log learning curve, wall and oracle seconds."""
    series = [r["initial"]["metrics"]] + [st["metrics"] for st in r["steps"]]
    x = np.array([m["n_labels"] for m in series], dtype=float)
    y = np.log10([m["force_mae"] for m in series])
    auc = float(np.trapezoid(y, x) / (x[-1] - x[0])) if x[-1] > x[0] else float(y[-1])
    return {
        "force_mae": series[-1]["force_mae"],
        "energy_mae": series[-1]["energy_mae"],
        "force_max": series[-1].get("force_max") or float("nan"),
        "auc_log10_force": auc,
        "wall_seconds": r.get("summary", {}).get("wall_seconds", float("nan")),
        "oracle_seconds": series[-1]["oracle_seconds"],
        "label_seconds": _label_seconds(r),
        "curve": (x, np.array([m["force_mae"] for m in series])),
    }


def _label_seconds(r: dict) -> float:
    """Wall time this run spent getting its rounds' labels (cache hits cost next to nothing); NaN for
    results recorded without per-round timings."""
    times = [st.get("timings", {}).get("label") for st in r["steps"]]
    return float(sum(times)) if times and all(t is not None for t in times) else float("nan")


def labels_to_target(x: np.ndarray, y: np.ndarray, target: float) -> float:
    """First label count at which the curve ``y`` is at or below ``target`` (NaN if never)."""
    hit = np.flatnonzero(y <= target)
    return float(x[hit[0]]) if len(hit) else float("nan")


def _paired_p(a: dict[int, float], b: dict[int, float]) -> float:
    """Two-sided paired t-test on log errors over the seeds both have (NaN with fewer than 2)."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return float("nan")
    from scipy.stats import ttest_rel

    d = np.log([a[s] for s in seeds]), np.log([b[s] for s in seeds])
    if np.allclose(d[0], d[1]):
        return 1.0
    return float(ttest_rel(d[0], d[1]).pvalue)


def _final(r: dict) -> dict:
    return r["steps"][-1]["metrics"] if r["steps"] else r["initial"]["metrics"]


def _otf_section(runs: list[dict]) -> list[str]:
    """On-the-fly runs: stability of model MD, failures and torsion coverage, per task and strategy."""
    otf = [r for r in runs if "md_steps" in r["initial"]["metrics"]]
    if not otf:
        return []
    lines = [
        "## On-the-fly mode",
        "",
        (
            "| task | agent | seeds | labels | stable MD steps, start → end | MD failures | MD steps "
            "| torsion coverage (MD) | torsion coverage (labels) |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in otf:
        groups[(r["task"], r["agent"])].append(r)

    def mean(rs: list[dict], key: str, where: str = "final") -> str:
        ms = [(r["initial"]["metrics"] if where == "initial" else _final(r)) for r in rs]
        v = [m[key] for m in ms if m.get(key) is not None]
        return f"{np.mean(v):.{0 if 'steps' in key or 'failures' in key or key == 'n_labels' else 2}f}" if v else "-"

    for (task, agent), rs in sorted(groups.items()):
        lines.append(
            f"| {task} | {agent} | {len(rs)} | {mean(rs, 'n_labels')} | {mean(rs, 'stability_steps', 'initial')} → "
            f"{mean(rs, 'stability_steps')} | {mean(rs, 'md_failures_total')} | {mean(rs, 'md_steps')} | "
            f"{mean(rs, 'torsion_coverage')} | {mean(rs, 'label_torsion_coverage')} |"
        )
    lines += [
        "",
        "Stable MD steps: steps that MD with the model survives from fresh test-set starting points before a",
        "failure (mean over starts; capped by the task's stability test length), after the initial labels and at",
        "the end. Torsion coverage: share of the torsion-space cells that the test set's oracle MD visits which",
        "model MD (or the labelled frames) visited during the episode.",
        "",
    ]
    return lines


def _baseline(agent: str) -> str:
    """The random line an agent's line is compared with: ``random``, or ``random[v]`` for a line with the
    sweep variant ``v`` (the same other settings)."""
    return "random" + (agent[agent.index("["):] if "[" in agent else "")


def _ranks(stats: dict[str, dict[int, dict]], cheats: set[str]) -> dict[str, list[float]]:
    """Rank of each agent among all agents run with a seed, by final force MAE, one entry per seed."""
    ranks: dict[str, list[float]] = defaultdict(list)
    for seed in sorted({seed for st in stats.values() for seed in st}):
        have = {a: st[seed]["force_mae"] for a, st in stats.items() if seed in st and a not in cheats}
        for i, a in enumerate(sorted(have, key=have.get)):
            ranks[a].append(i + 1)
    return ranks


TABLE_HEAD = [
    (
        "| agent | seeds | labels | force MAE (meV/Å) | energy MAE (meV) | force MAE / random | p vs random "
        "| mean rank | max force error (meV/Å) | AUC log10 force MAE | labels to target | wall s | oracle s charged "
        "| oracle s paid here |"
    ),
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def _task_table(task: str, runs: list[dict], f_curves: dict, e_curves: dict, cheats: set[str],
                target: float | None) -> list[str]:
    """One task's section: a line per strategy, and the target used for 'labels to target'."""
    stats: dict[str, dict[int, dict]] = defaultdict(dict)
    for r in runs:
        if r["task"] == task:
            stats[r["agent"]][r["seed"]] = run_stats(r)
    randoms = sorted(a for a in stats if _baseline(a) == a)
    first = f_curves.get((task, randoms[0])) if randoms else None
    tgt = target if target is not None else (float(first[1][-1]) if first is not None else None)
    ranks = _ranks(stats, cheats)
    lines = [f"## {task}", "", *TABLE_HEAD]
    for (t, agent), (x, mean, se, n) in sorted(f_curves.items()):
        if t != task:
            continue
        _, emean, ese, _ = e_curves[(t, agent)]
        st = stats[agent]
        rnd = f_curves.get((task, _baseline(agent)))
        ratio = f"{mean[-1] / rnd[1][min(len(rnd[1]), len(mean)) - 1]:.3f}" if rnd is not None else "n/a"
        random_final = {k: v["force_mae"] for k, v in stats.get(_baseline(agent), {}).items()}
        p = _paired_p({k: v["force_mae"] for k, v in st.items()}, random_final)
        rank = f"{np.mean(ranks[agent]):.2f}" if ranks.get(agent) else "-"
        to_target = labels_to_target(x, mean, tgt) if tgt is not None else float("nan")
        mean_of = lambda key, st=st: float(np.mean([v[key] for v in st.values()]))
        label = f"{agent} (cheating reference)" if agent in cheats else agent
        lines.append(
            f"| {label} | {n} | {x[-1]} | {1000 * mean[-1]:.1f} ± {1000 * se[-1]:.1f} | "
            f"{1000 * emean[-1]:.1f} ± {1000 * ese[-1]:.1f} | {ratio} | "
            f"{'-' if agent == _baseline(agent) or np.isnan(p) else f'{p:.3f}'} | {rank} | "
            f"{1000 * mean_of('force_max'):.0f} | {mean_of('auc_log10_force'):.3f} | "
            f"{'-' if np.isnan(to_target) else int(to_target)} | {mean_of('wall_seconds'):.0f} | "
            f"{_seconds(mean_of('oracle_seconds'))} | {_seconds(mean_of('label_seconds'))} |"
        )
    lines.append("")
    if tgt is not None:
        lines.append(f"Target for 'labels to target': {1000 * tgt:.1f} meV/Å (the final mean force MAE of "
                     f"{randoms[0] if target is None else 'the --target'}).")
    return lines + [""]


NOTES = [
    "Mean ± standard error over seeds, at the end of the budget. p: two-sided paired t-test of log final",
    "force MAE against random (with the same sweep settings) over common seeds. Rank: by final force MAE",
    "among the strategies run with that seed (cheating references excluded), averaged over seeds. AUC: mean",
    "of log10 force MAE (eV/Å) over the labels axis (lower is better). Wall s: the whole episode. Oracle s",
    "charged: the oracle's original compute time of every label the run holds, initial ones included, as the",
    "budget counts it (a label from the cache is charged what it cost when it was first computed, which may",
    "have been on a busier machine). Oracle s paid here: wall time this run spent obtaining its rounds' labels",
    "(cache hits cost next to nothing; '-' for runs recorded without per-round timings).",
]


def markdown(runs: list[dict], target: float | None = None) -> str:
    """The report: a table per task, the on-the-fly table, notes on the columns."""
    f_curves, e_curves = curves(runs, "force_mae"), curves(runs, "energy_mae")
    cheats = {r["agent"] for r in runs if r.get("cheating")}
    lines = ["# Results", ""]
    for task in sorted({t for t, _ in f_curves}):
        lines += _task_table(task, runs, f_curves, e_curves, cheats, target)
    lines += _otf_section(runs)
    lines += NOTES
    return "\n".join(lines) + "\n"


def _seconds(v: float) -> str:
    """Seconds to three significant figures (an xtb label takes milliseconds), '-' if unknown."""
    return "-" if np.isnan(v) else f"{v:.3g}"


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--target", type=float, default=None, help="force MAE target in meV/A for 'labels to target'")
    p.add_argument("--allow-mixed-configs", action="store_true",
                   help="compare runs of a task even where their configs differ in keys their sweep did not vary")
    args = p.parse_args()
    runs, skipped = load_runs(args.dirs)
    if not runs:
        raise SystemExit(f"no complete results.json below {', '.join(map(str, args.dirs))}")
    _check_mixing(runs, args.allow_mixed_configs)
    out = args.out or (args.dirs[0] / "report")
    out.mkdir(parents=True, exist_ok=True)
    rows = tidy_rows(runs)
    with open(out / "runs.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot(runs, out)
    md = markdown(runs, None if args.target is None else args.target / 1000)
    (out / "report.md").write_text(md)
    print(md)
    if skipped:
        print(f"skipped {len(skipped)} incomplete or unreadable runs: " + ", ".join(map(str, skipped)))
    print(f"report written to {out}")


if __name__ == "__main__":
    main()
