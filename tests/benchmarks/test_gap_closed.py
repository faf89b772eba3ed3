"""The report's share of the gap from the best heuristic to the cheating reference closed by a learned agent."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.report_metrics import gap_closed
from benchmarks.report_tables import _gap_section


def _by_unit(errors: dict[str, float], n: int = 10, seed: int = 0) -> dict:
    """Every agent's force MAE per unit: its level times a unit factor shared by all (paired units)."""
    unit_factor = np.exp(np.random.default_rng(seed).normal(0, 0.1, n))
    return {a: {(0, u): {"force_mae": level * unit_factor[u]} for u in range(n)} for a, level in errors.items()}


def test_halfway_in_log_error_is_a_share_of_one_half():
    levels = {"random": 1.3, "uncertainty": 1.0, "fps": 1.1, "true-error": 0.5, "learned": math.sqrt(0.5),
              "bandit": 1.2}
    rows = {g["agent"]: g for g in gap_closed(_by_unit(levels), "force_mae", {"true-error"})}
    assert set(rows) == {"bandit", "learned"}  # random and the heuristics are not learned agents
    g = rows["learned"]
    assert g["best_heuristic"] == "uncertainty" and g["reference"] == "true-error" and g["units"] == 10
    assert g["share"] == pytest.approx(0.5) and g["low"] == pytest.approx(0.5) and g["high"] == pytest.approx(0.5)
    assert g["heuristic_over_reference"] == pytest.approx(2.0) and g["agent_over_heuristic"] == pytest.approx(math.sqrt(0.5))
    assert rows["bandit"]["share"] == pytest.approx(math.log(1 / 1.2) / math.log(2))  # worse than the best heuristic
    text = "\n".join(_gap_section(_by_unit(levels), {"true-error"}))
    assert "| learned | force MAE | true-error | 10 | uncertainty | 2.000 | 0.707 | 0.50 [0.50, 0.50] |" in text


def test_noise_widens_the_interval_and_a_useless_reference_leaves_it_undefined():
    rng = np.random.default_rng(3)
    by_unit = _by_unit({"uncertainty": 1.0, "fps": 1.0, "true-error": 0.8, "learned": 0.9})
    for u in by_unit["learned"]:
        by_unit["learned"][u]["force_mae"] *= float(np.exp(rng.normal(0, 0.1)))
    (g,) = gap_closed(by_unit, "force_mae", {"true-error"})
    assert g["low"] < g["share"] < g["high"] and g["high"] - g["low"] > 0.2
    worse = _by_unit({"uncertainty": 1.0, "true-error": 1.2, "learned": 0.9})
    (g,) = gap_closed(worse, "force_mae", {"true-error"})
    assert math.isnan(g["share"]) and g["undefined"] == 1.0
    assert "undefined: the reference is not better" in "\n".join(_gap_section(worse, {"true-error"}))
    # without a reference or a heuristic there is nothing to report
    assert gap_closed(_by_unit({"uncertainty": 1.0, "learned": 0.9}), "force_mae", set()) == []
    assert gap_closed(_by_unit({"random": 1.0, "true-error": 0.5, "learned": 0.9}), "force_mae", {"true-error"}) == []
