"""Figures of the harness: one run's learning curve, a report's curves per task (the mean over units with
a 95% t confidence band), and the on-the-fly metrics (model-MD steps, failures, stability, torsion
coverage) of on-the-fly runs.

Strategies are told apart by colour (a qualitative palette of ten), line style and marker together;
log axes carry labelled ticks at 1-2-5 steps (finer where the range is narrow), never a lone decade.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

# Okabe-Ito's colour-blind-safe palette, then the darker tab10 colours it lacks
COLORS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#8C564B",
          "#7F7F7F", "#BCBD22")
LINES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")

# on-the-fly metrics against rounds: (metric key, axis label)
OTF_PANELS = (
    ("md_steps", "model-MD steps (total)"),
    ("md_failures_total", "MD failures (total)"),
    ("stability_steps", "stable MD steps from test starts"),
    ("torsion_coverage", "torsion coverage"),
)


def style(i: int) -> dict[str, Any]:
    """Colour, line style and marker of the ``i``-th strategy of a figure: no two of the first 40 alike."""
    return {"color": COLORS[i % len(COLORS)], "ls": LINES[(i + i // len(COLORS)) % len(LINES)],
            "marker": MARKERS[i % len(MARKERS)]}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def log_ticks(ax: Any, axis: str = "y") -> None:
    """Labelled ticks on a log axis: 1-2-5 steps, or finer steps where the range spans less than that."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    if not (lo > 0 and hi > lo):
        return
    ticks: list[float] = []
    for subs in ((1.0,), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)):
        ticks = [s * 10.0**k for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
                 for s in subs if lo <= s * 10.0**k <= hi]
        if len(ticks) >= 3:
            break
    if len(ticks) < 3:  # a narrow range: round linear steps (10, 20, 25, 50 ...) inside it
        from matplotlib.ticker import MaxNLocator

        ticks = [t for t in MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi) if lo <= t <= hi]
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_ticks(ticks)
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())
    (ax.set_ylim if axis == "y" else ax.set_xlim)(lo, hi)


def _integer_x(ax: Any, label: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(label)


def _error_axes(ax: Any, name: str, unit: str) -> None:
    ax.set_yscale("log")
    _integer_x(ax, "labels")
    ax.set_ylabel(f"{name} ({unit})")
    ax.grid(True, which="both", alpha=0.3)


def _series(record: dict) -> list[dict]:
    return [record["initial"]["metrics"]] + [s["metrics"] for s in record["steps"]]


def _finite(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """The points of ``(x, y)`` with a finite ``y`` (metrics measured only in some rounds are None)."""
    y = np.array([np.nan if v is None else v for v in y], dtype=float)
    keep = np.isfinite(y)
    return np.asarray(list(x), dtype=float)[keep], y[keep]


def is_otf(record: dict) -> bool:
    return "md_steps" in record["initial"]["metrics"]


def plot_learning_curve(record: dict, path: Path, title: str) -> None:
    """Test force and energy MAE against labels held (log scale); for an on-the-fly run, its model-MD
    steps, failures, stability and torsion coverage against rounds below them. As PNG."""
    plt = _pyplot()
    rows = _series(record)
    n = [m["n_labels"] for m in rows]
    otf = is_otf(record)
    fig, axes = plt.subplots(2 if otf else 1, 2 if not otf else 3, figsize=(12, 7) if otf else (9, 3.6), squeeze=False)
    for ax, key, unit, name in ((axes[0][0], "force_mae", "meV/Å", "test force MAE"),
                                (axes[0][1], "energy_mae", "meV", "test energy MAE")):
        ax.plot(n, [1000 * m[key] for m in rows], **style(0), ms=3)
        _error_axes(ax, name, unit)
        log_ticks(ax)
    if otf:
        rounds = list(range(len(rows)))
        panels = [axes[0][2], axes[1][0], axes[1][1], axes[1][2]]
        for ax, (key, label) in zip(panels, OTF_PANELS):
            ax.plot(*_finite(rounds, [m.get(key) for m in rows]), **style(0), ms=3, label="model MD")
            if key == "torsion_coverage" and "label_torsion_coverage" in rows[0]:
                ax.plot(*_finite(rounds, [m.get("label_torsion_coverage") for m in rows]), **style(1), ms=3,
                        label="labels")
                ax.legend(fontsize=8)
            _integer_x(ax, "round")
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


BAND = "95% t confidence interval of the mean"
CAPTION = f"mean over units (data seed, seed); band: {BAND}"


def axis_range(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """The y range of a log axis of ``(mean, half)`` curves: the bands' extent, but no lower than a tenth
    of the smallest mean and no higher than three times the largest (a wide interval of few units would
    otherwise flatten every curve); a band beyond it runs off the plot's edge."""
    means = np.concatenate([m for m, _ in curves])
    positive = means[means > 0]
    if not len(positive):
        return 1e-12, 1.0
    lows = np.concatenate([m - h for m, h in curves])
    highs = np.concatenate([m + h for m, h in curves])
    return max(float(lows.min()), 0.1 * float(positive.min())), min(float(highs.max()), 3.0 * float(positive.max()))


def task_curves_figure(task: str, f_curves: dict, e_curves: dict) -> Any:
    """The figure of :func:`plot_task_curves`: each strategy's mean over units with its 95% t band."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    items: list = []
    for ax, cv, unit, name in ((axes[0], f_curves, "meV/Å", "test force MAE"), (axes[1], e_curves, "meV", "test energy MAE")):
        items = [(agent, v) for (t, agent), v in sorted(cv.items()) if t == task]
        if not items:
            continue
        lo, hi = axis_range([(mean, half) for _, (_, mean, half, _) in items])
        for i, (agent, (x, mean, half, n)) in enumerate(items):
            st = style(i)
            ax.plot(x, 1000 * mean, ms=3.5, lw=1.6, label=f"{agent} (n={n})", **st)
            ax.fill_between(x, 1000 * np.clip(mean - half, lo, None), 1000 * (mean + half), color=st["color"],
                            alpha=0.12)
        _error_axes(ax, name, unit)
        ax.set_ylim(1000 * lo / 1.05, 1000 * hi * 1.05)
        log_ticks(ax)
    axes[0].legend(fontsize=7, ncol=2 if len(items) > 8 else 1, title="mean, 95% t band", title_fontsize=7)
    fig.suptitle(f"{task}\n{CAPTION}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_task_curves(task: str, f_curves: dict, e_curves: dict, path: Path) -> Path:
    """One task's learning curves of every strategy, as PNG: the mean over units (one run each) with a band
    of the 95% t confidence interval of the mean (``curves`` of ``benchmarks.report`` gives its half-width),
    said so in the legend and the title."""
    plt = _pyplot()
    fig = task_curves_figure(task, f_curves, e_curves)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_task_otf(task: str, runs: list[dict], path: Path) -> Path:
    """One on-the-fly task: each strategy's model-MD steps, failures, stability and torsion coverage
    against rounds (mean over units, over the rounds all its runs reached), as PNG."""
    plt = _pyplot()
    agents = sorted({r["agent"] for r in runs})
    fig, axes = plt.subplots(1, len(OTF_PANELS), figsize=(4 * len(OTF_PANELS), 3.8))
    for ax, (key, label) in zip(axes, OTF_PANELS):
        for i, agent in enumerate(agents):
            series = [[m.get(key) for m in _series(r)] for r in runs if r["agent"] == agent]
            n = min(len(s) for s in series)
            vals = np.array([[np.nan if v is None else v for v in s[:n]] for s in series], dtype=float)
            have = np.isfinite(vals).any(0)  # e.g. the stability test runs every few rounds only
            mean = np.array([np.nanmean(col) if ok else np.nan for col, ok in zip(vals.T, have)])
            ax.plot(*_finite(range(n), mean), ms=3, label=f"{agent} (n={len(series)})", **style(i))
        _integer_x(ax, "round")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{task}: on-the-fly metrics")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
