"""The Markdown of the benchmark report: per-task tables and sections, the on-the-fly table and the notes.

Per task: the units line, the error tables (mean ± 95% CI, median max error) at the end of the budget and
at each checkpoint, the ratios to random with Holm p values, the per-subset table, what the seeds can
resolve (minimum detectable effects, inconclusive comparisons), and the learning-curve and cost table;
then the on-the-fly table of all tasks and the notes on methods and columns. :func:`markdown` assembles
them. The numbers come from :mod:`benchmarks.report_metrics`; :mod:`benchmarks.report` writes the file.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from benchmarks.report_metrics import (
    ALPHA, HEADLINE, MAX_KEY, NAMES, POWER, SUBSET, Unit, baseline, compare, curves, error_keys, gap_closed,
    group_by_unit, labels_to_target, metric_name, metric_unit, metric_value, metrics_at, resolution,
    run_stats, unit, unit_ranks,
)
from benchmarks.stats import Paired, mean_ci


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
        cells += [_mean_ci_cell([metric_value(m, k) for m in rows]) for k in keys]
        cells += [_median_cell([metric_value(m, MAX_KEY) for m in rows])] if with_max else []
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
            vals = [metric_value(m, k) for m in ms.values()]
            if not any(math.isfinite(v) for v in vals):
                continue
            sub = SUBSET.match(k)
            c, p = comps[k].get(agent, (None, math.nan))
            lines.append(
                f"| {_label(agent, cheats)} | {metric_name(sub['base'])} ({metric_unit(k)}) | {sub['subset']} | "
                f"{sum(math.isfinite(v) for v in vals)} | {_mean_ci_cell(vals)} | "
                f"{_ratio_cell(c) if c is not None else '-'} | {_p_cell(p, agent in cheats) if c is not None else '-'} |"
            )
    return lines + [""]


def _resolution_section(res: dict[str, dict]) -> list[str]:
    """A line per metric of :func:`resolution`, then what the force MAE comparisons can and cannot show."""
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
    randoms = sorted(a for a in stats if baseline(a) == a)
    first = f_curves.get((task, randoms[0])) if randoms else None
    tgt = target if target is not None else (float(first[1][-1]) if first is not None else None)
    ranks = unit_ranks(by_unit, cheats)
    lines = [
        (
            "| agent | units | mean rank | AUC log10 force MAE | labels to target | wall s | CPU s | oracle s charged "
            "| oracle s paid here |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for agent, st in sorted(stats.items()):
        x, mean, _, n = f_curves[(task, agent)]
        rank = f"{np.mean(ranks[agent]):.2f}" if ranks.get(agent) else "-"
        to_target = labels_to_target(x, mean, tgt) if tgt is not None else float("nan")
        mean_of = lambda key, st=st: float(np.mean([v[key] for v in st.values()]))
        lines.append(
            f"| {_label(agent, cheats)} | {n} | {rank} | {mean_of('auc_log10_force'):.3f} | "
            f"{'-' if np.isnan(to_target) else int(to_target)} | {mean_of('wall_seconds'):.0f} | "
            f"{'-' if np.isnan(mean_of('cpu_seconds')) else format(mean_of('cpu_seconds'), '.0f')} | "
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
    by_unit = group_by_unit(runs, task, labels)
    where = "at the end of the budget" if labels is None else f"at {labels} labels"
    headline = [k for k in HEADLINE if k in keys]
    extras = [k for k in keys if k not in HEADLINE and k != MAX_KEY and not SUBSET.match(k)]
    subsets = [k for k in keys if SUBSET.match(k)]
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


def _gap_section(by_unit: dict[str, dict[Unit, dict]], cheats: set[str]) -> list[str]:
    """Learned agents between the best heuristic and each cheating reference, on force MAE and RMSE."""
    rows = [(k, g) for k in ("force_mae", "force_rmse") for g in gap_closed(by_unit, k, cheats)]
    if not rows:
        return []
    lines = ["| agent | metric | reference | units | best heuristic | best heuristic / reference | "
             "agent / best heuristic | share of the gap closed [95% CI] |", "|" + "---|" * 8]
    for key, g in rows:
        if math.isfinite(g["share"]):
            cell = f"{g['share']:.2f} [{g['low']:.2f}, {g['high']:.2f}]"
            if g["undefined"] > 0.025:
                cell += f" (the reference was not better in {100 * g['undefined']:.0f}% of resamples)"
        else:
            cell = "undefined: the reference is not better than the best heuristic"
        lines.append(f"| {g['agent']} | {metric_name(key)} | {g['reference']} | {g['units']} | {g['best_heuristic']} | "
                     f"{g['heuristic_over_reference']:.3f} | {g['agent_over_heuristic']:.3f} | {cell} |")
    return lines + ["", "Share 0: the best heuristic's error; 1: the reference's (geometric means over the units "
                    "all ran); the interval is a bootstrap over units that picks the best heuristic again in "
                    "each resample.", ""]


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
    gap = _gap_section(group_by_unit(task_runs, task, None), cheats)
    if gap:
        lines += ["### Learned agents: between the best heuristic and the reference", ""] + gap
    for labels in checkpoints:
        lines += _point_sections(task, task_runs, keys, cheats, labels, "###")[0]
    lines += ["### Learning curve and cost", ""]
    lines += _cost_table(task, group_by_unit(task_runs, task, None), task_runs, f_curves, cheats, target)
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
        ms = [(r["initial"]["metrics"] if where == "initial" else metrics_at(r)) for r in rs]
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
    "  episode. CPU s: its process's CPU time (with one torch thread, about its wall time on an idle core;",
    "  '-' for runs recorded without it). Oracle s charged: the oracle's original compute time of every label",
    "  the run holds, initial ones included, as the budget counts it (a label from the cache is charged what",
    "  it cost when it was first computed, which may have been on a busier machine). Oracle s paid here: wall",
    "  time this run spent",
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
