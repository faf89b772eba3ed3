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
        "task": "alenv/Toy-v2", "agent": agent, "seed": seed, "complete": complete,
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
    assert {row["data_seed"] for row in rows} == {0}  # recorded without a data seed: data seed 0
    c = curves(runs, "force_mae")
    x, mean, half, n = c[("alenv/Toy-v2", "random")]
    assert list(x) == [10, 20, 30] and n == 2
    assert mean == pytest.approx([1.0, 0.7, 0.5])
    # std of (0.6, 0.4) with ddof=1 is 0.1414; / sqrt(2) = 0.1; times t_{0.975,1} = 12.7062
    assert half[-1] == pytest.approx(0.1 * 12.7062, abs=1e-4)
    md = markdown(runs)
    assert "Units: **2** = 1 data seed (0) × 2 run seeds (0, 1)." in md
    # final fps mean 0.3 -> 300.0 meV/A, 95% half-width 12.7062 * 0.05 = 0.6353
    assert "| fps | 2 | 30 | 300.0 ± 635.3 |" in md
    # ratio to random: the geometric mean of 0.25 / 0.6 and 0.35 / 0.4, sqrt(0.364583) = 0.6038
    assert "| fps | 2 | 0.604 [" in md


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
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith("| fps |")]
    against, cost = rows[1], rows[2]  # the errors, against-random and cost tables, in that order
    assert cost[2] == "1.00"  # fps beats random on both seeds: rank 1
    # paired t-test on log final errors: differences log(0.25/0.6), log(0.35/0.4); one strategy, so Holm = p
    from scipy.stats import ttest_rel

    p = ttest_rel(np.log([0.25, 0.35]), np.log([0.6, 0.4])).pvalue
    assert against[3] == f"{p:.3f}"
    assert cost[4] == "20"  # target = random's final mean 0.5; fps's mean curve (1.0, 0.5, 0.3) hits it at 20


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
            "task": "alenv/Toy-OTF-v3", "agent": "trust", "seed": seed, "complete": True,
            "initial": {"metrics": ms[0]}, "steps": [{"round": i, "metrics": m} for i, m in enumerate(ms[1:], 1)],
            "summary": {"final_metrics": ms[-1], "wall_seconds": 1.0},
        }
        (d / "results.json").write_text(json.dumps(res))

    otf(0, [5, 5, 8, 10], [1.0, 0.9, 0.6, 0.5], (10, 50))
    otf(1, [5, 7, 10, 12], [1.0, 0.8, 0.4, 0.3], (20, 70))
    runs, _ = load_runs([tmp_path])
    x, mean, _, n = curves(runs, "force_mae")[("alenv/Toy-OTF-v3", "trust")]
    assert list(x) == [5, 7, 8, 10] and n == 2
    # seed 0 at 5, 7, 8, 10 labels: 0.9, 0.9, 0.6, 0.5; seed 1: 1.0, 0.8, 0.8, 0.4
    assert mean == pytest.approx([0.95, 0.85, 0.7, 0.45])
    md = markdown(runs)
    assert "## On-the-fly mode" in md
    assert "| alenv/Toy-OTF-v3 | trust | 2 | 11 | 15 → 60 | 3 | 320 | 0.50 | 0.25 |" in md, md


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

    base = {"task": "alenv/Toy-v2", "agent": "random", "seed": 0}
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
    # an agent setting added with the value that configs without it meant keeps their hash (runs resume)
    before = {**config, "agent": {"name": "qbc-energy", "kwargs": {}}}
    now = {**config, "agent": {"name": "qbc-energy", "kwargs": {"normalise": "none"}}}
    changed = {**config, "agent": {"name": "qbc-energy", "kwargs": {"normalise": "sqrt_atoms"}}}
    assert config_hash(before) == config_hash(now) != config_hash(changed) and config_diff(before, now) == []


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
    # a run recorded without its CPU time says so rather than showing 0 or nan
    lines = md.splitlines()
    head = next(i for i, line in enumerate(lines) if "| wall s | CPU s |" in line)
    cells = [c.strip() for c in lines[head].split("|")]
    row = [c.strip() for c in lines[head + 2].split("|")]
    assert row[1] == "random" and row[cells.index("CPU s")] == "-"
    assert "train s sum" in _header()
    d = tmp_path / "otf" / "seed0"
    d.mkdir(parents=True)
    ms = [dict(_metrics(5 + i, 1.0 / (i + 1), 1.0), md_steps=80 * (i + 1), md_failures_total=i,
               stability_steps=10.0 * i, torsion_coverage=0.1 * i, label_torsion_coverage=0.05 * i) for i in range(4)]
    res = {"task": "alenv/Toy-OTF-v3", "agent": "trust", "seed": 0, "complete": True, "initial": {"metrics": ms[0]},
           "steps": [{"round": i, "metrics": m} for i, m in enumerate(ms[1:], 1)], "summary": {"wall_seconds": 1.0}}
    (d / "results.json").write_text(json.dumps(res))
    runs, _ = load_runs([tmp_path / "otf"])
    out = tmp_path / "report"
    out.mkdir()
    paths = plot(runs, out)
    assert sorted(p.name for p in paths) == ["curves_Toy-OTF-v3.png", "otf_Toy-OTF-v3.png"]
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
    rows = [line for line in markdown(runs).splitlines() if line.startswith("| fps[model=ridge] |")]
    # the geometric mean of 0.2 / 0.5 and 0.3 / 0.5, sqrt(0.24) = 0.490, not of 0.2 / 0.9 and 0.3 / 0.9
    assert "| 0.490 [" in rows[1], rows


# ----------------------------------------------------------------------------------------- units and statistics
# Two data seeds x three run seeds. The data seed sets the error level (3x on data seed 1), so a strategy's
# run must be paired with random's run of the same (data seed, seed): paired across data seeds, the log
# ratios would carry that factor of 3.
LEVEL = {0: 1.0, 1: 3.0}
SEED = {0: 1.0, 1: 1.1, 2: 0.9}
FACTOR = {  # strategy / random, per unit
    "fps": {(0, 0): 0.80, (0, 1): 0.70, (0, 2): 0.88, (1, 0): 0.75, (1, 1): 0.86, (1, 2): 0.80},
    "qbc": {(0, 0): 1.05, (0, 1): 0.945, (0, 2): 1.2075, (1, 0): 1.155, (1, 1): 0.9975, (1, 2): 1.05},
    "random": {u: 1.0 for u in [(d, s) for d in (0, 1) for s in (0, 1, 2)]},
}
MAX = {"random": [2.0, 2.4, 2.2, 9.5, 2.6, 2.1], "fps": [0.5, 0.6, 0.7, 0.8, 0.9, 9.0], "qbc": [1, 1, 1, 1, 1, 1]}
UNITS = [(d, s) for d in (0, 1) for s in (0, 1, 2)]


def _final_force(agent: str, u: tuple[int, int]) -> float:
    return 0.1 * LEVEL[u[0]] * SEED[u[1]] * FACTOR[agent][u]


def _unit_run(root: Path, agent: str, u: tuple[int, int], data_seed_key: bool = True) -> dict:
    """A run of ``agent`` on unit ``u``: 10, 20 and 30 labels; at 20 labels twice the final errors."""
    f = _final_force(agent, u)
    extra = {"force_p95": 3 * f, "force_mae[T=300K]": 0.5 * f, "force_mae[T=800K]": 1.5 * f * (1.1 if agent == "fps" else 1)}
    final = {**_metrics(30, f, 0.4 * f), "force_max": MAX[agent][UNITS.index(u)], **extra}
    res = {
        "task": "alenv/Toy-v2", "agent": agent, "seed": u[1], "complete": True,
        "initial": {"metrics": _metrics(10, 1.0, 1.0)},
        "steps": [{"round": 1, "metrics": {**_metrics(20, 2 * f, 0.8 * f), **extra}}, {"round": 2, "metrics": final}],
        "summary": {"wall_seconds": 1.0},
    }
    if data_seed_key:
        res["data_seed"] = u[0]
    d = root / agent / f"data{u[0]}_seed{u[1]}"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(res))
    return res


def _grid(root: Path, agents: tuple[str, ...] = ("random", "fps", "qbc")) -> list[dict]:
    for agent in agents:
        for u in UNITS:
            _unit_run(root, agent, u)
    runs, skipped = load_runs([root])
    assert len(runs) == len(agents) * 6 and not skipped
    return runs


def _rows(md: str, agent: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith(f"| {agent} |")]


def _section(md: str, title: str) -> str:
    """The text of a report section, from its heading to the next one."""
    start = md.index(title)
    return md[start: md.find("\n#", start + 1)]


def test_units_are_data_seed_and_seed_pairs_and_the_tables_say_so(tmp_path: Path) -> None:
    """2 data seeds x 3 seeds x 3 agents: the units line, mean ± 95% t half-width, median max error,
    ratio to random with its interval, Holm-corrected p, all against numbers computed here."""
    from scipy.stats import ttest_rel

    runs = _grid(tmp_path)
    md = markdown(runs)
    assert "Units: **6** = 2 data seeds (0, 1) × 3 run seeds (0, 1, 2)." in md
    (errors,) = _rows(_section(md, "### Errors at the end"), "fps")
    (against,) = _rows(_section(md, "### Against random at the end"), "fps")
    (cost,) = _rows(_section(md, "### Learning curve and cost"), "fps")
    # mean ± t_{0.975,5} s / √6, t_{0.975,5} = 2.570582 from the table
    f = np.array([_final_force("fps", u) for u in UNITS])
    half = 2.570582 * f.std(ddof=1) / np.sqrt(6)
    assert errors[:4] == ["fps", "6", "30", f"{1000 * f.mean():.1f} ± {1000 * half:.1f}"]
    assert errors[4] == f"{2000 * f.mean():.1f} ± {2000 * half:.1f}"  # force RMSE = 2 x force MAE
    # the max force error: median 0.75 over units (the mean, 2.08, would be pulled up by the 9.0 outlier)
    assert errors[-1] == "750 (500–9000)"
    assert _rows(_section(md, "### Errors at the end"), "random")[0][-1] == "2300 (2000–9500)"
    # ratio to random: log ratios log(FACTOR) per unit
    d = {a: np.log([FACTOR[a][u] for u in UNITS]) for a in ("fps", "qbc")}
    ratio = np.exp(d["fps"].mean())
    hw = 2.570582 * d["fps"].std(ddof=1) / np.sqrt(6)
    assert against[2] == f"{ratio:.3f} [{np.exp(d['fps'].mean() - hw):.3f}, {np.exp(d['fps'].mean() + hw):.3f}]"
    # Holm over the two strategies: the smaller p doubled, the larger unchanged (if not below it)
    rf = np.log([_final_force("random", u) for u in UNITS])
    p = {a: ttest_rel(np.log([_final_force(a, u) for u in UNITS]), rf).pvalue for a in ("fps", "qbc")}
    assert 0.001 < p["fps"] < 0.002 and 0.1 < p["qbc"] < 0.2
    holm_fps, holm_qbc = min(1, 2 * p["fps"]), max(min(1, 2 * p["fps"]), p["qbc"])
    assert against[3] == f"{holm_fps:.3f}" != f"{p['fps']:.3f}"  # 0.002, not 0.001
    assert _rows(_section(md, "### Against random at the end"), "qbc")[0][3] == f"{holm_qbc:.3f}"
    assert cost[:2] == ["fps", "6"]
    # what the seeds can resolve: MDE from fps's and qbc's SD of log ratios, verdicts by Holm p
    from benchmarks.stats import mde

    mdes = sorted(mde(float(d[a].std(ddof=1)), 6) for a in d)
    res = _section(md, "### What the seeds can resolve")
    line = next(row for row in res.splitlines() if row.startswith("| force MAE |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:4] == ["force MAE", "2", "6", f"{100 * np.median(mdes):.1f}% ({100 * mdes[0]:.1f}%–{100 * mdes[1]:.1f}%)"]
    assert cells[5:] == ["fps", "-", "qbc"]  # fps resolved lower than random; qbc inconclusive
    assert "1 of 2 force MAE comparisons are inconclusive" in res


def test_pairing_is_by_data_seed_and_seed_not_by_seed_alone(tmp_path: Path) -> None:
    """Paired by seed alone, each of fps's runs would meet random's run of the other data seed (or only one
    of the two): the log ratios would carry log 3 and the comparison would come out another way."""
    from scipy.stats import ttest_rel

    runs = _grid(tmp_path, ("random", "fps"))
    against = _rows(_section(markdown(runs), "### Against random at the end"), "fps")[0]
    right = ttest_rel(np.log([_final_force("fps", u) for u in UNITS]), np.log([_final_force("random", u) for u in UNITS]))
    crossed = [(1 - d, s) for d, s in UNITS]  # the same seed, the other data seed
    wrong = ttest_rel(np.log([_final_force("fps", u) for u in UNITS]), np.log([_final_force("random", u) for u in crossed]))
    assert right.pvalue < 0.002 and wrong.pvalue > 0.5  # the two pairings disagree
    assert against[1] == "6" and against[3] == f"{right.pvalue:.3f}"  # one strategy: Holm leaves p as it is
    # a unit that one side lacks is left out of the pairs, not matched by its seed
    (tmp_path / "random" / "data1_seed2" / "results.json").unlink()
    (tmp_path / "fps" / "data0_seed1" / "results.json").unlink()
    runs, _ = load_runs([tmp_path])
    against = _rows(_section(markdown(runs), "### Against random at the end"), "fps")[0]
    kept = [u for u in UNITS if u not in ((1, 2), (0, 1))]
    ratio = np.exp(np.mean(np.log([FACTOR["fps"][u] for u in kept])))
    assert against[1] == "4" and against[2].startswith(f"{ratio:.3f} [")


def test_old_runs_without_a_data_seed_count_as_data_seed_0(tmp_path: Path) -> None:
    for agent in ("random", "fps"):
        for u in UNITS[:3]:
            _unit_run(tmp_path, agent, u, data_seed_key=False)
    runs, _ = load_runs([tmp_path])
    md = markdown(runs)
    assert "Units: **3** = 1 data seed (0) × 3 run seeds (0, 1, 2)." in md
    assert _rows(_section(md, "### Against random at the end"), "fps")[0][1] == "3"
    assert {row["data_seed"] for row in tidy_rows(runs)} == {0}


def test_extra_metrics_subsets_and_checkpoints_are_reported(tmp_path: Path) -> None:
    """Metric keys beyond the headline ones (force_p95) get mean ± CI, per-subset keys a ratio to random per
    subset; --checkpoint repeats the tables at that many labels; runs.csv carries every key."""
    runs = _grid(tmp_path, ("random", "fps"))
    md = markdown(runs, checkpoints=[20])
    f = np.array([_final_force("fps", u) for u in UNITS])
    other = _section(md, "### Other error metrics at the end of the budget")
    assert "| agent | units | labels | force_p95 (meV/Å) |" in other
    assert f"| fps | 6 | 30 | {3000 * f.mean():.1f} ± " in other
    subsets = _section(md, "### Subsets at the end of the budget")
    fps = {row[2]: row for row in _rows(subsets, "fps")}
    ratio = np.exp(np.mean(np.log([FACTOR["fps"][u] for u in UNITS])))
    assert fps["T=300K"][1] == "force MAE (meV/Å)" and fps["T=300K"][5].startswith(f"{ratio:.3f} [")
    assert fps["T=800K"][5].startswith(f"{1.1 * ratio:.3f} [")  # fps is 10% worse at 800 K only
    at20 = _section(md, "### Errors at 20 labels")
    assert f"| fps | 6 | 20 | {2000 * f.mean():.1f} ± " in at20
    assert "### Against random at 20 labels" in md
    rows = tidy_rows(runs)
    assert {"data_seed", "force_p95", "force_mae[T=300K]", "force_mae[T=800K]"} <= set(rows[0])
    assert {row["data_seed"] for row in rows} == {0, 1}


def test_the_command_line_reports_two_data_seeds_of_one_seed_as_two_units(tmp_path: Path) -> None:
    """``python -m benchmarks.report DIR --out OUT``: two runs of one seed on different data seeds are two
    units (not one run read twice, which stops the report); runs.csv says which data seed each row is."""
    import csv
    import subprocess
    import sys

    _grid(tmp_path / "sweep", ("random", "fps"))
    out = tmp_path / "report"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "benchmarks.report", str(tmp_path / "sweep"), "--out", str(out),
                           "--checkpoint", "20"], cwd=root, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "runs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 * 3 and {r["data_seed"] for r in rows} == {"0", "1"}
    md = (out / "report.md").read_text()
    assert "Units: **6**" in md and "### Errors at 20 labels" in md and (out / "curves_Toy-v2.png").exists()


def test_curves_carry_a_95_percent_t_band_and_say_so(tmp_path: Path) -> None:
    """The band is mean ± t_{0.975,n-1} s / √n (not one standard error), drawn so, and the figure says so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.plots import CAPTION, task_curves_figure

    runs = _grid(tmp_path, ("random", "fps"))
    f_curves, e_curves = curves(runs, "force_mae"), curves(runs, "energy_mae")
    _, mean, half, n = f_curves[("alenv/Toy-v2", "fps")]
    f = np.array([_final_force("fps", u) for u in UNITS])
    assert n == 6 and half[-1] == pytest.approx(2.570582 * f.std(ddof=1) / np.sqrt(6), rel=1e-6)
    fig = task_curves_figure("alenv/Toy-v2", f_curves, e_curves)
    ax = fig.axes[0]
    assert "95% t" in ax.get_legend().get_title().get_text() and "95% t" in CAPTION
    assert CAPTION in fig._suptitle.get_text()
    band = ax.collections[0]  # fps's band (strategies in name order): its top edge is mean + half
    top = band.get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(1000 * float(np.max(mean + half)), rel=1e-9)
    plt.close(fig)
