"""Paper-style ratios from runs.csv: geometric means over paired units, at the end and over the curve."""

from __future__ import annotations

import csv
import math

import pytest

from benchmarks.paper_ratios import METRICS, _compare, read, table


def _write(path, rows):
    cols = ["task", "agent", "data_seed", "seed", "round", "n_labels", *METRICS]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        for r in rows:
            w.writerow(r)


def test_ratios_are_geometric_means_over_units_and_rounds(tmp_path):
    rows = []
    factors = {0: 0.5, 1: 0.8, 2: 0.6}  # the strategy's error / random's, per unit, at every round after 0
    for seed, f in factors.items():
        for rnd, base in enumerate([1.0, 0.4, 0.2]):
            for agent, scale in (("random", 1.0), ("lcmd", f if rnd else 1.0)):
                rows.append({"task": "T", "agent": agent, "data_seed": 0, "seed": seed, "round": rnd, "n_labels": 10 + rnd,
                             **{m: base * scale for m in METRICS}})
    _write(tmp_path / "runs.csv", rows)
    runs = read(tmp_path / "runs.csv")
    geo = math.exp(sum(math.log(f) for f in factors.values()) / 3)
    end = _compare(runs["T"]["lcmd"], runs["T"]["random"], "force_mae", 0)
    curve = _compare(runs["T"]["lcmd"], runs["T"]["random"], "force_rmse", 1)
    assert end.n == 3 and end.ratio == pytest.approx(geo) and end.lo < geo < end.hi
    assert curve.ratio == pytest.approx(geo)  # round 0 (the shared initial fit) is left out of the curve
    md = table(runs, "random", [("lcmd", "random")])
    assert "| lcmd / random | 3 | " in md and "mean over rounds of log error" in md


def test_bad_arguments_are_refused_with_the_reason(tmp_path, capsys):
    from benchmarks.paper_ratios import main

    _write(tmp_path / "runs.csv", [{"task": "T", "agent": a, "data_seed": 0, "seed": 0, "round": 0, "n_labels": 10,
                                    **{m: 1.0 for m in METRICS}} for a in ("random", "lcmd")])
    for argv, message in (
        ([str(tmp_path / "runs.csv"), "--pairs", "lcmd"], "pairs are written a:b"),
        ([str(tmp_path / "runs.csv"), "--pairs", "lcmd:uncertainy"], "no runs of uncertainy"),
        ([str(tmp_path / "runs.csv"), "--baseline", "randm"], "no runs of randm"),
        ([str(tmp_path / "missing.csv")], "no such file"),
    ):
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err
