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
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.stats import Paired, holm, mde, mean_ci, paired_log_ratio, t_half_width

# The error metrics every table shows, in this order; the largest error is shown as a median.
HEADLINE: tuple[str, ...] = ("force_mae", "force_rmse", "energy_mae", "energy_rmse")
MAX_KEY = "force_max"
NAMES: dict[str, str] = {"force_mae": "force MAE", "force_rmse": "force RMSE", "energy_mae": "energy MAE",
                         "energy_rmse": "energy RMSE", "force_max": "max force error"}
ALPHA = 0.05  # significance level of every test and 1 - the confidence level of every interval
POWER = 0.8  # of the minimum detectable effect
# Error metrics of a record are the keys that start so (force_p95, energy_mae_centred, force_mae[T=300K], ...)
_ERROR = re.compile(r"^(force|energy)_")
_SUBSET = re.compile(r"^(?P<base>[^\[\]]+)\[(?P<subset>[^\]]+)\]$")

Unit = tuple[int, int]


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


def data_seed(r: dict) -> int:
    """The run's data seed: recorded beside ``seed``, else in its config, else 0 (results made before
    data seeds existed)."""
    value = r.get("data_seed")
    if value is None:
        config = r.get("config")
        value = config.get("data_seed") if isinstance(config, dict) else None
    return 0 if value is None else int(value)


def unit(r: dict) -> Unit:
    """The independent unit a run belongs to: ``(data_seed, seed)``."""
    return data_seed(r), int(r["seed"])


def _series(r: dict) -> list[dict]:
    return [r["initial"]["metrics"]] + [s["metrics"] for s in r["steps"]]


def _is_number(v: object) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def error_keys(runs: list[dict]) -> list[str]:
    """Every error metric the runs' records hold: the headline metrics, the max, then the others by name,
    then the per-subset ones (``force_mae[T=300K]``) by base metric and subset."""
    found: set[str] = set()
    for r in runs:
        for m in _series(r):
            found.update(k for k, v in m.items() if _ERROR.match(k) and _is_number(v))
    first = [k for k in (*HEADLINE, MAX_KEY) if k in found]
    subsets = sorted((k for k in found if _SUBSET.match(k)), key=_subset_order)
    return first + sorted(found - set(first) - set(subsets)) + subsets


def _subset_order(key: str) -> tuple:
    m = _SUBSET.match(key)
    base = m["base"]
    return (HEADLINE.index(base) if base in HEADLINE else len(HEADLINE), base, m["subset"])


def metric_name(key: str) -> str:
    """``force_mae`` -> ``force MAE``; other keys as they are recorded."""
    return NAMES.get(key, key)


def metric_unit(key: str) -> str:
    """The reported unit: meV/Å for force metrics, meV for energy metrics (recorded in eV/Å and eV)."""
    return "meV/Å" if key.startswith("force") else "meV"


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


def curves(runs: list[dict], key: str) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """(task, agent) -> (labels, mean, half-width of the 95% t confidence interval of the mean, units) of
    metric ``key`` over the units (one run each)."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in runs:
        groups[(r["task"], r["agent"])].append(r)
    out = {}
    for k, rs in groups.items():
        series = [_series(r) for r in rs]
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
        out[k] = (labels, vals.mean(0), t_half_width(vals, 1 - ALPHA), len(vals))
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
    series = _series(r)
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


def metrics_at(r: dict, labels: int | None = None) -> dict | None:
    """The run's recorded metrics at the end (``labels`` None), or after the last round that held at most
    ``labels`` labels; None where the run never got that far or started above it."""
    series = _series(r)
    if labels is None:
        return series[-1]
    if series[-1]["n_labels"] < labels or series[0]["n_labels"] > labels:
        return None
    return [m for m in series if m["n_labels"] <= labels][-1]


def _final(r: dict) -> dict:
    return _series(r)[-1]


def _baseline(agent: str) -> str:
    """The random line an agent's line is compared with: ``random``, or ``random[v]`` for a line with the
    sweep variant ``v`` (the same other settings)."""
    return "random" + (agent[agent.index("["):] if "[" in agent else "")


def _by_unit(runs: list[dict], task: str, labels: int | None) -> dict[str, dict[Unit, dict]]:
    """agent -> unit -> metrics of that run (at the end, or at ``labels``)."""
    out: dict[str, dict[Unit, dict]] = defaultdict(dict)
    for r in runs:
        if r["task"] == task:
            m = metrics_at(r, labels)
            if m is not None:
                out[r["agent"]][unit(r)] = m
    return dict(out)


def _value(m: dict, key: str) -> float:
    v = m.get(key)
    return float("nan") if v is None else float(v)


def compare(by_unit: dict[str, dict[Unit, dict]], key: str, cheats: set[str]) -> dict[str, tuple[Paired, float]]:
    """agent -> (paired comparison of ``key`` with its random line over their common units, Holm-adjusted p).

    The Holm family is every line of the task but random and the cheating references, for this metric;
    a cheating reference gets its unadjusted p.
    """
    res: dict[str, Paired] = {}
    for agent, ms in by_unit.items():
        base = _baseline(agent)
        if agent == base or base not in by_unit:
            continue
        common = sorted(set(ms) & set(by_unit[base]))
        res[agent] = paired_log_ratio([_value(ms[u], key) for u in common],
                                      [_value(by_unit[base][u], key) for u in common])
    family = sorted(a for a in res if a not in cheats)
    adjusted = dict(zip(family, holm([res[a].p for a in family])))
    return {a: (c, adjusted.get(a, c.p)) for a, c in res.items()}


def _ranks(by_unit: dict[str, dict[Unit, dict]], cheats: set[str]) -> dict[str, list[float]]:
    """Rank of each agent among all agents run on a unit, by final force MAE, one entry per unit."""
    ranks: dict[str, list[float]] = defaultdict(list)
    for u in sorted({u for ms in by_unit.values() for u in ms}):
        have = {a: ms[u]["force_mae"] for a, ms in by_unit.items() if u in ms and a not in cheats}
        for i, a in enumerate(sorted(have, key=have.get)):
            ranks[a].append(i + 1)
    return ranks


# ----------------------------------------------------------------------------------------- formatting
def _mev(v: float, digits: int = 1) -> str:
    return "-" if not math.isfinite(v) else f"{1000 * v:.{digits}f}"


def _mean_ci_cell(values: list[float]) -> str:
    """``mean ± half-width of the 95% t interval`` in meV (``± n/a`` for one unit)."""
    mean, _, hi = mean_ci(values, 1 - ALPHA)
    if not math.isfinite(mean):
        return "-"
    return f"{_mev(mean)} ± {_mev(hi - mean) if math.isfinite(hi) else 'n/a'}"


def _median_cell(values: list[float]) -> str:
    """``median (min–max)`` in meV, over the finite values."""
    x = np.asarray([v for v in values if math.isfinite(v)])
    if len(x) == 0:
        return "-"
    return f"{_mev(float(np.median(x)), 0)} ({_mev(float(x.min()), 0)}–{_mev(float(x.max()), 0)})"


def _ratio_cell(c: Paired) -> str:
    if not math.isfinite(c.ratio):
        return "n/a"
    ci = f"[{c.lo:.3f}, {c.hi:.3f}]" if math.isfinite(c.lo) else "[n/a]"
    return f"{c.ratio:.3f} {ci}"


def _p_cell(p: float, reference: bool = False) -> str:
    if not math.isfinite(p):
        return "-"
    return ("<0.001" if p < 0.001 else f"{p:.3f}") + ("†" if reference else "")


def _pct(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{100 * v:.1f}%"


def _labels_cell(ms: list[dict]) -> str:
    n = sorted({m["n_labels"] for m in ms})
    return str(n[0]) if len(n) == 1 else f"{n[0]}–{n[-1]}"


def _label(agent: str, cheats: set[str]) -> str:
    return f"{agent} (cheating reference)" if agent in cheats else agent


def _seconds(v: float) -> str:
    """Seconds to three significant figures (an xtb label takes milliseconds), '-' if unknown."""
    return "-" if np.isnan(v) else f"{v:.3g}"


# ----------------------------------------------------------------------------------------- sections
def units_line(runs: list[dict]) -> str:
    """How many independent units the runs cover, and over which data seeds and run seeds."""
    units = sorted({unit(r) for r in runs})
    ds = sorted({d for d, _ in units})
    ss = sorted({s for _, s in units})
    seeds = (f"{len(ds)} data seed{'s' if len(ds) != 1 else ''} ({', '.join(map(str, ds))}) × {len(ss)} run "
             f"seed{'s' if len(ss) != 1 else ''} ({', '.join(map(str, ss))})")
    grid = len(units) == len(ds) * len(ss)
    return (f"Units: **{len(units)}** = {seeds}{'' if grid else ', not every pair run'}. A unit is a (data seed, "
            "seed) pair; each strategy's run is paired with random's run of the same unit.")


def _errors_table(by_unit: dict[str, dict[Unit, dict]], keys: list[str], cheats: set[str],
                  with_max: bool) -> list[str]:
    """A line per strategy: units, labels, mean ± 95% CI of each of ``keys``, the median max error."""
    head = ["agent", "units", "labels"] + [f"{metric_name(k)} ({metric_unit(k)})" for k in keys]
    head += [f"{NAMES[MAX_KEY]} ({metric_unit(MAX_KEY)}), median (min–max)"] if with_max else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for agent, ms in sorted(by_unit.items()):
        rows = list(ms.values())
        cells = [_label(agent, cheats), str(len(rows)), _labels_cell(rows)]
        cells += [_mean_ci_cell([_value(m, k) for m in rows]) for k in keys]
        cells += [_median_cell([_value(m, MAX_KEY) for m in rows])] if with_max else []
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _against_random_table(comparisons: dict[str, dict[str, tuple[Paired, float]]], keys: list[str],
                          cheats: set[str]) -> list[str]:
    """A line per strategy: paired units, and per metric its ratio to random [95% CI] and Holm p."""
    head = ["agent", "units"]
    for k in keys:
        head += [f"{metric_name(k)} / random [95% CI]", "p Holm"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    agents = sorted({a for c in comparisons.values() for a in c})
    for agent in agents:
        n = max(comparisons[k][agent][0].n for k in keys if agent in comparisons[k])
        cells = [_label(agent, cheats), str(n)]
        for k in keys:
            c, p = comparisons[k].get(agent, (None, math.nan))
            cells += [_ratio_cell(c) if c is not None else "n/a", _p_cell(p, agent in cheats)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _subset_table(by_unit: dict[str, dict[Unit, dict]], keys: list[str], cheats: set[str]) -> list[str]:
    """Per-subset metrics (``force_mae[T=300K]``), long format: a line per strategy, metric and subset."""
    lines = [
        "| agent | metric | subset | units | mean ± 95% CI | / random [95% CI] | p Holm |",
        "|---|---|---|---|---|---|---|",
    ]
    comps = {k: compare(by_unit, k, cheats) for k in keys}
    for agent, ms in sorted(by_unit.items()):
        for k in keys:
            vals = [_value(m, k) for m in ms.values()]
            if not any(math.isfinite(v) for v in vals):
                continue
            sub = _SUBSET.match(k)
            c, p = comps[k].get(agent, (None, math.nan))
            lines.append(
                f"| {_label(agent, cheats)} | {metric_name(sub['base'])} ({metric_unit(k)}) | {sub['subset']} | "
                f"{sum(math.isfinite(v) for v in vals)} | {_mean_ci_cell(vals)} | "
                f"{_ratio_cell(c) if c is not None else '-'} | {_p_cell(p, agent in cheats) if c is not None else '-'} |"
            )
    return lines + [""]


def resolution(comparisons: dict[str, dict[str, tuple[Paired, float]]], cheats: set[str]) -> dict[str, dict]:
    """Per metric, what its comparisons can resolve: the family size ``m``, units, minimum detectable
    effects (per comparison at α and, for Holm's first step, at α/m) and which strategies are resolved
    lower or higher than random (Holm p < α) or left inconclusive."""
    out = {}
    for key, comps in comparisons.items():
        family = {a: v for a, v in comps.items() if a not in cheats}
        m = sum(math.isfinite(c.p) for c, _ in family.values())
        mdes = [mde(c.sd_log, c.n, ALPHA, POWER) for c, _ in family.values()]
        first = [mde(c.sd_log, c.n, ALPHA / max(m, 1), POWER) for c, _ in family.values()]
        out[key] = {
            "m": m,
            "units": sorted({c.n for c, _ in family.values()}),
            "mde": [v for v in mdes if math.isfinite(v)],
            "mde_first": [v for v in first if math.isfinite(v)],
            "lower": sorted(a for a, (c, p) in family.items() if p < ALPHA and c.ratio < 1),
            "higher": sorted(a for a, (c, p) in family.items() if p < ALPHA and c.ratio > 1),
            "inconclusive": sorted(a for a, (c, p) in family.items() if not p < ALPHA),
        }
    return out


def _resolution_section(res: dict[str, dict]) -> list[str]:
    lines = [
        (
            "| metric | comparisons | units | MDE, median (range) | MDE at α/m, median | lower than random "
            "| higher than random | inconclusive |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, r in res.items():
        units = ", ".join(map(str, r["units"])) or "-"
        spread = f"{_pct(float(np.median(r['mde'])))} ({_pct(min(r['mde']))}–{_pct(max(r['mde']))})" if r["mde"] else "-"
        first = _pct(float(np.median(r["mde_first"]))) if r["mde_first"] else "-"
        lines.append(
            f"| {metric_name(key)} | {r['m']} | {units} | {spread} | {first} | {', '.join(r['lower']) or '-'} | "
            f"{', '.join(r['higher']) or '-'} | {', '.join(r['inconclusive']) or '-'} |"
        )
    lines.append("")
    f = res.get("force_mae")
    if f and f["mde"]:
        units = "/".join(map(str, f["units"]))
        text = (
            f"With {units} paired units, a strategy's final force MAE has to differ from random's by about "
            f"{_pct(float(np.median(f['mde'])))} (median over the {len(f['mde'])} strategies; "
            f"{_pct(min(f['mde']))} to {_pct(max(f['mde']))}, from each one's spread of log ratios) to be detected "
            f"{POWER:.0%} of the time by a paired t test at α = {ALPHA}; Holm tests the smallest p at "
            f"α/{f['m']}, which needs about {_pct(float(np.median(f['mde_first'])))}. "
            f"{len(f['inconclusive'])} of {len(f['inconclusive']) + len(f['lower']) + len(f['higher'])} force MAE "
            "comparisons are inconclusive: these units neither show a difference from random nor rule out one of "
            "that size; the 95% intervals above say which ratios remain possible."
        )
        lines += [text, ""]
    return lines


def _cost_table(task: str, by_unit: dict[str, dict[Unit, dict]], runs: list[dict], f_curves: dict,
                cheats: set[str], target: float | None) -> list[str]:
    """Mean rank, AUC, labels to target, wall and oracle seconds per strategy, and the target used."""
    stats: dict[str, dict[Unit, dict]] = defaultdict(dict)
    for r in runs:
        if r["task"] == task:
            stats[r["agent"]][unit(r)] = run_stats(r)
    randoms = sorted(a for a in stats if _baseline(a) == a)
    first = f_curves.get((task, randoms[0])) if randoms else None
    tgt = target if target is not None else (float(first[1][-1]) if first is not None else None)
    ranks = _ranks(by_unit, cheats)
    lines = [
        (
            "| agent | units | mean rank | AUC log10 force MAE | labels to target | wall s | oracle s charged "
            "| oracle s paid here |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for agent, st in sorted(stats.items()):
        x, mean, _, n = f_curves[(task, agent)]
        rank = f"{np.mean(ranks[agent]):.2f}" if ranks.get(agent) else "-"
        to_target = labels_to_target(x, mean, tgt) if tgt is not None else float("nan")
        mean_of = lambda key, st=st: float(np.mean([v[key] for v in st.values()]))
        lines.append(
            f"| {_label(agent, cheats)} | {n} | {rank} | {mean_of('auc_log10_force'):.3f} | "
            f"{'-' if np.isnan(to_target) else int(to_target)} | {mean_of('wall_seconds'):.0f} | "
            f"{_seconds(mean_of('oracle_seconds'))} | {_seconds(mean_of('label_seconds'))} |"
        )
    lines.append("")
    if tgt is not None:
        lines.append(f"Target for 'labels to target': {1000 * tgt:.1f} meV/Å (the final mean force MAE of "
                     f"{randoms[0] if target is None else 'the --target'}).")
    return lines + [""]


def _point_sections(task: str, runs: list[dict], keys: list[str], cheats: set[str], labels: int | None,
                    level: str) -> tuple[list[str], dict]:
    """Errors, other metrics, ratios to random and subsets at the end (``labels`` None) or at ``labels``;
    the comparisons of the headline metrics."""
    by_unit = _by_unit(runs, task, labels)
    where = "at the end of the budget" if labels is None else f"at {labels} labels"
    headline = [k for k in HEADLINE if k in keys]
    extras = [k for k in keys if k not in HEADLINE and k != MAX_KEY and not _SUBSET.match(k)]
    subsets = [k for k in keys if _SUBSET.match(k)]
    lines = [f"{level} Errors {where}", ""]
    lines += _errors_table(by_unit, headline, cheats, with_max=MAX_KEY in keys)
    if extras:
        lines += [f"{level} Other error metrics {where}", ""] + _errors_table(by_unit, extras, cheats, with_max=False)
    comparisons = {k: compare(by_unit, k, cheats) for k in headline}
    if any(comparisons.values()):
        lines += [f"{level} Against random {where}", ""] + _against_random_table(comparisons, headline, cheats)
    if subsets:
        lines += [f"{level} Subsets {where}", ""] + _subset_table(by_unit, subsets, cheats)
    return lines, comparisons


def _task_section(task: str, runs: list[dict], f_curves: dict, cheats: set[str], target: float | None,
                  checkpoints: list[int]) -> list[str]:
    """One task: its units, the tables at the end and at each checkpoint, what the units can resolve, and
    the curve and cost table."""
    task_runs = [r for r in runs if r["task"] == task]
    keys = error_keys(task_runs)
    lines = [f"## {task}", "", units_line(task_runs), ""]
    final, comparisons = _point_sections(task, task_runs, keys, cheats, None, "###")
    lines += final
    if any(comparisons.values()):
        lines += ["### What the seeds can resolve", ""] + _resolution_section(resolution(comparisons, cheats))
    for labels in checkpoints:
        lines += _point_sections(task, task_runs, keys, cheats, labels, "###")[0]
    lines += ["### Learning curve and cost", ""]
    lines += _cost_table(task, _by_unit(task_runs, task, None), task_runs, f_curves, cheats, target)
    return lines


def _otf_section(runs: list[dict]) -> list[str]:
    """On-the-fly runs: stability of model MD, failures and torsion coverage, per task and strategy."""
    otf = [r for r in runs if "md_steps" in r["initial"]["metrics"]]
    if not otf:
        return []
    lines = [
        "## On-the-fly mode",
        "",
        (
            "| task | agent | units | labels | stable MD steps, start → end | MD failures | MD steps "
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


NOTES = [
    "## How to read these tables",
    "",
    "Errors are the sealed test set's, recorded per round. A unit is a (data seed, seed) pair (results without",
    "a data seed count as data seed 0); runs that share a seed are not independent across strategies, so every",
    "comparison is of one strategy with random (with the same sweep settings) over the units both ran.",
    "",
    "- Mean ± 95% CI: the mean over units and the half-width of its 95% t confidence interval",
    "  (t_{0.975, n-1} · s / √n); one unit gives no interval (n/a).",
    "- Max force error: the largest force-component error of each run's test set, as the median over units",
    "  with the least and largest in parentheses: a maximum is too heavy-tailed to average.",
    "- / random [95% CI]: exp(mean of the per-unit log ratios log(strategy / random)), i.e. the ratio of the",
    "  geometric means over the paired units, with the back-transformed 95% t interval of the mean log ratio.",
    "  Intervals are per comparison, not adjusted for multiplicity.",
    "- p Holm: two-sided paired t test on the per-unit log ratios, Holm-Bonferroni adjusted over the strategies",
    "  of the task (random and cheating references left out), separately for each metric. † a cheating",
    "  reference: unadjusted p, not in the family.",
    f"- MDE (minimum detectable effect): the relative difference from random that the paired t test at α = {ALPHA}",
    f"  (two-sided) detects with {POWER:.0%} power over n units: exp(λ* · s_d / √n) − 1, where s_d is the SD of",
    f"  the strategy's per-unit log ratios and λ* solves power(λ, n − 1) = {POWER} for the noncentral t",
    "  distribution (a ratio below 1 / (1 + MDE) is detected as often). 'MDE at α/m': the same at the level",
    "  Holm applies to the smallest of m p values. Inconclusive: Holm p ≥ 0.05.",
    "- Rank: by final force MAE among the strategies run on that unit (cheating references excluded), averaged",
    "  over units. AUC: mean of log10 force MAE (eV/Å) over the labels axis (lower is better). Wall s: the whole",
    "  episode. Oracle s charged: the oracle's original compute time of every label the run holds, initial ones",
    "  included, as the budget counts it (a label from the cache is charged what it cost when it was first",
    "  computed, which may have been on a busier machine). Oracle s paid here: wall time this run spent",
    "  obtaining its rounds' labels (cache hits cost next to nothing; '-' for runs recorded without per-round",
    "  timings).",
    "- Figures (curves_<task>.png): mean over units with a 95% t confidence band.",
]


def markdown(runs: list[dict], target: float | None = None, checkpoints: list[int] | None = None) -> str:
    """The report: a section per task, the on-the-fly table, notes on the methods and columns."""
    f_curves = curves(runs, "force_mae")
    cheats = {r["agent"] for r in runs if r.get("cheating")}
    lines = ["# Results", ""]
    for task in sorted({t for t, _ in f_curves}):
        lines += _task_section(task, runs, f_curves, cheats, target, list(checkpoints or []))
    lines += _otf_section(runs)
    lines += NOTES
    return "\n".join(lines) + "\n"


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
