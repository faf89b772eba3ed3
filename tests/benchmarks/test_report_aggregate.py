"""benchmarks.report aggregates runs correctly (checked against numbers computed by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.report import curves, load_runs, markdown, tidy_rows


def _metrics(n: int, f: float, e: float) -> dict:
    return {
        "n_labels": n, "force_mae": f, "force_rmse": 2 * f, "energy_mae": e, "energy_rmse": 2 * e,
        "force_max": 5 * f, "oracle_seconds": 0.1 * n, "train_seconds": 1.0,
    }


def _write(root: Path, agent: str, seed: int, forces: list[float], complete: bool = True) -> None:
    d = root / agent / f"seed{seed}"
    d.mkdir(parents=True)
    res = {
        "task": "alenv/Toy-v1", "agent": agent, "seed": seed, "complete": complete,
        "initial": {"metrics": _metrics(10, forces[0], 1.0)},
        "steps": [{"round": i, "metrics": _metrics(10 + 10 * i, f, 1.0 / (i + 1))} for i, f in enumerate(forces[1:], 1)],
    }
    (d / "results.json").write_text(json.dumps(res))


def test_report_numbers(tmp_path: Path) -> None:
    _write(tmp_path, "random", 0, [1.0, 0.8, 0.6])
    _write(tmp_path, "random", 1, [1.0, 0.6, 0.4])
    _write(tmp_path, "fps", 0, [1.0, 0.5, 0.25])
    _write(tmp_path, "fps", 1, [1.0, 0.5, 0.35])
    _write(tmp_path, "fps", 2, [1.0, 0.1, 0.1], complete=False)  # a killed run is skipped
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{not json")
    runs, skipped = load_runs([tmp_path])
    assert len(runs) == 4 and len(skipped) == 2
    rows = tidy_rows(runs)
    assert len(rows) == 4 * 3
    c = curves(runs, "force_mae")
    x, mean, se, n = c[("alenv/Toy-v1", "random")]
    assert list(x) == [10, 20, 30] and n == 2
    assert mean == pytest.approx([1.0, 0.7, 0.5])
    assert se[-1] == pytest.approx(0.1)  # std of (0.6, 0.4) with ddof=1 is 0.1414; / sqrt(2) = 0.1
    md = markdown(runs)
    # final fps mean 0.3 -> 300.0 meV/A; ratio to random 0.3 / 0.5 = 0.6
    assert "| fps | 2 | 30 | 300.0 ± 50.0 |" in md
    assert "| 0.600 |" in md


def test_report_statistics(tmp_path: Path) -> None:
    """AUC, labels to target, ranks and the paired test, against hand-computed values."""
    from benchmarks.report import labels_to_target, run_stats

    _write(tmp_path, "random", 0, [1.0, 0.8, 0.6])
    _write(tmp_path, "random", 1, [1.0, 0.6, 0.4])
    _write(tmp_path, "fps", 0, [1.0, 0.5, 0.25])
    _write(tmp_path, "fps", 1, [1.0, 0.5, 0.35])
    runs, _ = load_runs([tmp_path])
    fps0 = next(r for r in runs if r["agent"] == "fps" and r["seed"] == 0)
    st = run_stats(fps0)
    # trapezoid of log10 (1, 0.5, 0.25) over labels (10, 20, 30), divided by the 20-label span
    y = np.log10([1.0, 0.5, 0.25])
    assert st["auc_log10_force"] == pytest.approx(((y[0] + y[1]) / 2 * 10 + (y[1] + y[2]) / 2 * 10) / 20)
    assert st["force_max"] == pytest.approx(5 * 0.25) and st["oracle_seconds"] == pytest.approx(3.0)
    assert labels_to_target(np.array([10, 20, 30]), np.array([1.0, 0.5, 0.3]), 0.5) == 20
    assert np.isnan(labels_to_target(np.array([10, 20]), np.array([1.0, 0.9]), 0.5))
    md = markdown(runs)
    row = next(line for line in md.splitlines() if line.startswith("| fps |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[7] == "1.00"  # fps beats random on both seeds: rank 1
    # paired t-test on log final errors: differences log(0.25/0.6), log(0.35/0.4)
    from scipy.stats import ttest_rel

    p = ttest_rel(np.log([0.25, 0.35]), np.log([0.6, 0.4])).pvalue
    assert cells[6] == f"{p:.3f}"
    assert cells[10] == "20"  # target = random's final mean 0.5; fps's mean curve (1.0, 0.5, 0.3) hits it at 20


def test_report_compares_on_the_fly_runs_at_equal_labels(tmp_path: Path) -> None:
    """On-the-fly rounds label different numbers: curves are compared at equal label counts (the error
    after the last round holding at most that many labels), and the on-the-fly table appears."""
    def otf(seed: int, labels: list[int], forces: list[float], stab: tuple[float, float]) -> None:
        d = tmp_path / "trust" / f"seed{seed}"
        d.mkdir(parents=True)
        ms = [dict(_metrics(n, f, 1.0), md_steps=80 * (i + 1), md_failures_total=i, stability_steps=stab[0],
                   torsion_coverage=0.5, label_torsion_coverage=0.25) for i, (n, f) in enumerate(zip(labels, forces))]
        ms[-1]["stability_steps"] = stab[1]
        res = {
            "task": "alenv/Toy-OTF-v1", "agent": "trust", "seed": seed, "complete": True,
            "initial": {"metrics": ms[0]}, "steps": [{"round": i, "metrics": m} for i, m in enumerate(ms[1:], 1)],
            "summary": {"final_metrics": ms[-1], "wall_seconds": 1.0},
        }
        (d / "results.json").write_text(json.dumps(res))

    otf(0, [5, 5, 8, 10], [1.0, 0.9, 0.6, 0.5], (10, 50))
    otf(1, [5, 7, 10, 12], [1.0, 0.8, 0.4, 0.3], (20, 70))
    runs, _ = load_runs([tmp_path])
    x, mean, se, n = curves(runs, "force_mae")[("alenv/Toy-OTF-v1", "trust")]
    assert list(x) == [5, 7, 8, 10] and n == 2
    # seed 0 at 5, 7, 8, 10 labels: 0.9, 0.9, 0.6, 0.5; seed 1: 1.0, 0.8, 0.8, 0.4
    assert mean == pytest.approx([0.95, 0.85, 0.7, 0.45])
    md = markdown(runs)
    assert "## On-the-fly mode" in md
    assert "| alenv/Toy-OTF-v1 | trust | 2 | 11 | 15 → 60 | 3 | 320 | 0.50 | 0.25 |" in md, md


# ----------------------------------------------------------------------------------------- mixed configs
def _with_config(run: dict, budget: int, variant: str = "", model: str | None = None, feature: str = "a") -> dict:
    config = {"task": {"name": "Toy", "id": run["task"], "overrides": {"budget": budget}},
              "agent": {"name": run["agent"], "kwargs": {"feature": feature}}, "seed": run["seed"],
              "model": {"name": model, "kwargs": {}}, "progress": True, "cache_dir": None, "torch_threads": None}
    return {**run, "config": config, "variant": variant, "_path": f"{run['agent']}/{budget}/{variant}"}


def test_runs_that_differ_in_an_unswept_setting_are_not_compared() -> None:
    """Budgets differ: refused, naming the key; model swept (in the variant): fine; seeds, progress and the
    cache folder never count; an agent's settings count within its report line only."""
    from benchmarks.resume import mixed_configs

    base = {"task": "alenv/Toy-v1", "agent": "random", "seed": 0}
    a, b = _with_config(base, 100), _with_config({**base, "seed": 1}, 50)
    problems = mixed_configs([a, b])
    assert len(problems) == 1 and "task.overrides.budget = 100 in random/100/ but 50 in random/50/" in problems[0]
    ridge = _with_config({**base, "agent": "random[model=ridge]"}, 100, "model=ridge", model="ridge")
    later = _with_config({**base, "seed": 1}, 100)
    later["config"].update(progress=False, cache_dir="/elsewhere", torch_threads=1)
    assert mixed_configs([a, ridge, later]) == []
    fps, fps_b = _with_config({**base, "agent": "fps"}, 100, feature="b"), _with_config({**base, "agent": "fps", "seed": 1}, 100)
    assert mixed_configs([a, fps]) == []  # other strategies have other settings
    assert "agent.kwargs.feature" in mixed_configs([a, fps, fps_b])[0]
    assert mixed_configs([{**base, "initial": {}}]) == []  # results without a config are not checked
    twice = mixed_configs([a, {**a, "_path": "copy/results.json"}])  # one run read from two folders
    assert len(twice) == 1 and "read twice" in twice[0] and "copy/results.json" in twice[0]


def test_config_hash_ignores_what_does_not_change_results() -> None:
    from benchmarks.resume import config_diff, config_hash

    config = {"seed": 0, "progress": None, "cache_dir": None, "torch_threads": None, "task": {"overrides": {}}}
    same = {**config, "progress": False, "cache_dir": "/x", "torch_threads": 2}
    assert config_hash(config) == config_hash(same)
    other = {**config, "task": {"overrides": {"budget": 50}}}
    assert config_hash(other) != config_hash(config)
    assert config_diff(config, other) == ["task.overrides.budget changed: (unset) -> 50"]


# ----------------------------------------------------------------------------------------- figures
def test_strategies_get_distinct_styles_and_log_axes_labelled_ticks() -> None:
    """Neighbouring strategies were drawn in two near-identical blues; log axes showed one or two labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb

    from benchmarks.plots import log_ticks, style

    styles = [style(i) for i in range(20)]
    assert len({(s["color"], s["ls"], s["marker"]) for s in styles}) == 20
    colors = [np.array(to_rgb(s["color"])) for s in styles[:10]]
    assert min(np.abs(c1 - c2).sum() for i, c1 in enumerate(colors) for c2 in colors[i + 1:]) > 0.3
    for lo, hi in ((20.0, 700.0), (150.0, 215.0), (0.5, 5000.0), (301.0, 309.0)):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [lo, hi])
        ax.set_yscale("log")
        log_ticks(ax)
        fig.canvas.draw()
        labels = [t.get_text() for t in ax.get_yticklabels() if lo * 0.95 <= t.get_position()[1] <= hi * 1.05]
        assert len([t for t in labels if t]) >= 3, (lo, hi, labels)
        plt.close(fig)


def test_the_report_writes_its_columns_and_on_the_fly_figures(tmp_path: Path) -> None:
    """Oracle time is labelled as what it is (charged, and what this run paid); the training time of the
    per-round table says it is a running total; on-the-fly metrics get their own figure."""
    from benchmarks.episode import _header
    from benchmarks.report import plot

    _write(tmp_path, "random", 0, [1.0, 0.8, 0.6])
    runs, _ = load_runs([tmp_path])
    md = markdown(runs)
    assert "| oracle s charged | oracle s paid here |" in md and "original" in md
    assert "train s sum" in _header()
    d = tmp_path / "otf" / "seed0"
    d.mkdir(parents=True)
    ms = [dict(_metrics(5 + i, 1.0 / (i + 1), 1.0), md_steps=80 * (i + 1), md_failures_total=i,
               stability_steps=10.0 * i, torsion_coverage=0.1 * i, label_torsion_coverage=0.05 * i) for i in range(4)]
    res = {"task": "alenv/Toy-OTF-v1", "agent": "trust", "seed": 0, "complete": True, "initial": {"metrics": ms[0]},
           "steps": [{"round": i, "metrics": m} for i, m in enumerate(ms[1:], 1)], "summary": {"wall_seconds": 1.0}}
    (d / "results.json").write_text(json.dumps(res))
    runs, _ = load_runs([tmp_path / "otf"])
    out = tmp_path / "report"
    out.mkdir()
    paths = plot(runs, out)
    assert sorted(p.name for p in paths) == ["curves_Toy-OTF-v1.png", "otf_Toy-OTF-v1.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_a_swept_setting_is_compared_with_random_under_the_same_setting(tmp_path: Path) -> None:
    """``model=ridge`` lines were shown as 'n/a' against random: each line is compared with the random line
    of its own sweep settings, not with random under other ones."""
    for agent, seed, forces, variant in (("random", 0, [1.0, 0.5], "model=ridge"), ("random", 1, [1.0, 0.5], "model=ridge"),
                                         ("fps", 0, [1.0, 0.2], "model=ridge"), ("fps", 1, [1.0, 0.3], "model=ridge"),
                                         ("random", 2, [1.0, 0.9], "")):
        _write(tmp_path / (variant or "plain"), agent, seed, forces)
        path = tmp_path / (variant or "plain") / agent / f"seed{seed}" / "results.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "variant": variant}))
    runs, _ = load_runs([tmp_path])
    row = next(line for line in markdown(runs).splitlines() if line.startswith("| fps[model=ridge] |"))
    assert "| 0.500 |" in row, row  # mean 0.25 / 0.5, not 0.25 / 0.9
