"""The numbers the benchmark report is built from, read out of the runs' records.

A run's independent unit (``(data seed, seed)``) and its per-round metrics; which error metrics the records
hold and what they are called; learning curves (mean and 95% t band over units); per-run numbers (final
errors, area under the curve, seconds); each strategy's paired comparison with its random line and what
those comparisons can resolve. :mod:`benchmarks.report_tables` turns them into Markdown, and
:mod:`benchmarks.report` reads the runs and writes the report.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

import numpy as np

from benchmarks.stats import Paired, holm, mde, paired_log_ratio, t_half_width

# The error metrics every table shows, in this order; the largest error is shown as a median.
HEADLINE: tuple[str, ...] = ("force_mae", "force_rmse", "energy_mae", "energy_rmse")
MAX_KEY = "force_max"
NAMES: dict[str, str] = {"force_mae": "force MAE", "force_rmse": "force RMSE", "energy_mae": "energy MAE",
                         "energy_rmse": "energy RMSE", "force_max": "max force error"}
ALPHA = 0.05  # significance level of every test and 1 - the confidence level of every interval
POWER = 0.8  # of the minimum detectable effect
# Error metrics of a record are the keys that start so (force_p95, energy_mae_centred, force_mae[T=300K], ...)
_ERROR = re.compile(r"^(force|energy)_")
SUBSET = re.compile(r"^(?P<base>[^\[\]]+)\[(?P<subset>[^\]]+)\]$")

Unit = tuple[int, int]


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
    subsets = sorted((k for k in found if SUBSET.match(k)), key=_subset_order)
    return first + sorted(found - set(first) - set(subsets)) + subsets


def _subset_order(key: str) -> tuple:
    m = SUBSET.match(key)
    base = m["base"]
    return (HEADLINE.index(base) if base in HEADLINE else len(HEADLINE), base, m["subset"])


def metric_name(key: str) -> str:
    """``force_mae`` -> ``force MAE``; other keys as they are recorded."""
    return NAMES.get(key, key)


def metric_unit(key: str) -> str:
    """The reported unit: meV/Å for force metrics, meV for energy metrics (recorded in eV/Å and eV)."""
    return "meV/Å" if key.startswith("force") else "meV"


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
        "cpu_seconds": r.get("summary", {}).get("cpu_seconds", float("nan")),
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


def baseline(agent: str) -> str:
    """The random line an agent's line is compared with: ``random``, or ``random[v]`` for a line with the
    sweep variant ``v`` (the same other settings)."""
    return "random" + (agent[agent.index("["):] if "[" in agent else "")


def group_by_unit(runs: list[dict], task: str, labels: int | None) -> dict[str, dict[Unit, dict]]:
    """agent -> unit -> metrics of that run (at the end, or at ``labels``)."""
    out: dict[str, dict[Unit, dict]] = defaultdict(dict)
    for r in runs:
        if r["task"] == task:
            m = metrics_at(r, labels)
            if m is not None:
                out[r["agent"]][unit(r)] = m
    return dict(out)


def metric_value(m: dict, key: str) -> float:
    """Metric ``key`` of the recorded metrics ``m`` as a float; NaN where it is not recorded."""
    v = m.get(key)
    return float("nan") if v is None else float(v)


def compare(by_unit: dict[str, dict[Unit, dict]], key: str, cheats: set[str]) -> dict[str, tuple[Paired, float]]:
    """agent -> (paired comparison of ``key`` with its random line over their common units, Holm-adjusted p).

    The Holm family is every line of the task but random and the cheating references, for this metric;
    a cheating reference gets its unadjusted p.
    """
    res: dict[str, Paired] = {}
    for agent, ms in by_unit.items():
        base = baseline(agent)
        if agent == base or base not in by_unit:
            continue
        common = sorted(set(ms) & set(by_unit[base]))
        res[agent] = paired_log_ratio([metric_value(ms[u], key) for u in common],
                                      [metric_value(by_unit[base][u], key) for u in common])
    family = sorted(a for a in res if a not in cheats)
    adjusted = dict(zip(family, holm([res[a].p for a in family])))
    return {a: (c, adjusted.get(a, c.p)) for a, c in res.items()}


def unit_ranks(by_unit: dict[str, dict[Unit, dict]], cheats: set[str]) -> dict[str, list[float]]:
    """Rank of each agent among all agents run on a unit, by final force MAE, one entry per unit."""
    ranks: dict[str, list[float]] = defaultdict(list)
    for u in sorted({u for ms in by_unit.values() for u in ms}):
        have = {a: ms[u]["force_mae"] for a, ms in by_unit.items() if u in ms and a not in cheats}
        for i, a in enumerate(sorted(have, key=have.get)):
            ranks[a].append(i + 1)
    return ranks


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


# Agents that learn what to pick (a trained policy, a bandit over heuristics): measured against the best
# heuristic and the cheating references, beside their comparison with random.
LEARNED = frozenset({"learned", "bandit"})


def _parts(agent: str) -> tuple[str, str]:
    """``learned[agent.kwargs.checkpoint=x]`` -> (``learned``, ``[agent.kwargs.checkpoint=x]``)."""
    i = agent.find("[")
    return (agent, "") if i < 0 else (agent[:i], agent[i:])


def gap_closed(by_unit: dict[str, dict[Unit, dict]], key: str, cheats: set[str], n_boot: int = 4000,
               seed: int = 0) -> list[dict]:
    """For each learned agent (``LEARNED``) and each cheating reference of the same sweep variant: the share
    of the gap from the best heuristic to the reference that the agent closes, on ``key``.

    On the units all of them ran, with ``L``, ``H`` and ``R`` the mean log errors of the agent, of the best
    heuristic (every fair agent but random and the learned ones; the one with the lowest mean) and of the
    reference: share = (H - L) / (H - R), so 0 is the best heuristic's error and 1 the reference's. The 95%
    interval is a percentile bootstrap over units that picks the best heuristic again in every resample
    (choosing it from the same data favours the heuristics). Where the reference is not better than the best
    heuristic (H <= R) the share is undefined (NaN); ``undefined`` is the fraction of resamples where it was.
    """
    rng = np.random.default_rng(seed)
    out = []
    for agent in sorted(by_unit):
        name, variant = _parts(agent)
        if name not in LEARNED:
            continue
        heuristics = [a for a in by_unit if a not in cheats and _parts(a)[1] == variant
                      and _parts(a)[0] not in LEARNED | {"random"}]
        for ref in sorted(a for a in cheats if a in by_unit and _parts(a)[1] == variant):
            units = sorted(set.intersection(*(set(by_unit[a]) for a in (agent, ref, *heuristics)))) if heuristics else []
            if len(units) < 2:
                continue
            logs = {a: np.log([metric_value(by_unit[a][u], key) for u in units]) for a in (agent, ref, *heuristics)}
            if not all(np.isfinite(v).all() for v in logs.values()):
                continue
            H_all = np.stack([logs[a] for a in heuristics])  # (heuristics, units)

            def share(idx: np.ndarray) -> tuple[float, int]:
                means = H_all[:, idx].mean(1)
                best = int(np.argmin(means))
                h, lo, r = means[best], logs[agent][idx].mean(), logs[ref][idx].mean()
                return ((h - lo) / (h - r) if h - r > 1e-12 else math.nan), best

            point, best = share(np.arange(len(units)))
            boot = np.array([share(rng.integers(0, len(units), len(units)))[0] for _ in range(n_boot)])
            ok = boot[np.isfinite(boot)]
            lo, hi = (np.percentile(ok, [2.5, 97.5]) if len(ok) else (math.nan, math.nan))
            out.append({
                "agent": agent, "reference": ref, "units": len(units), "best_heuristic": heuristics[best],
                "heuristic_over_reference": float(np.exp(H_all[best].mean() - logs[ref].mean())),
                "agent_over_heuristic": float(np.exp(logs[agent].mean() - H_all[best].mean())),
                "share": float(point), "low": float(lo), "high": float(hi),
                "undefined": float(np.mean(~np.isfinite(boot))),
            })
    return out
