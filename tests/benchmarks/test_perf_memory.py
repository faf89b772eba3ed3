"""benchmarks.perf plays each task in a fresh process, so the peak memory it reports is that task's own and
not an earlier task's (Linux keeps ru_maxrss across exec, so the parent must stay small: it does)."""

from __future__ import annotations

import os

from benchmarks.perf import _peak_gb, isolated


def _allocate_and_peak(gb: float) -> float:
    block = bytearray(int(gb * 2**30))  # zero-filled: every page is touched
    peak = _peak_gb()
    del block
    return peak


def test_each_isolated_task_reports_its_own_peak():
    assert isolated(os.getpid) != os.getpid()
    baseline = isolated(_peak_gb)
    assert isolated(_allocate_and_peak, 1.0) > max(baseline, 0.95)
    assert isolated(_peak_gb) < baseline + 0.2  # the next task does not inherit the last one's peak


def test_rl_rate_counts_steps_episodes_and_the_pool(alenv_cache) -> None:
    """The RL step rate of benchmarks.perf --rl-tasks: random single picks on the ridge learner, resets
    counted (Cu-EMT-tiny: 5 rounds of 5 picks an episode), rates positive, the pool size reported."""
    from benchmarks.fast_learner import rl_rate

    r = rl_rate("Cu-EMT-tiny", 40, str(alenv_cache))
    assert r["task"] == "Cu-EMT-tiny" and r["pool"] == 60 and r["steps"] == 40
    assert r["episodes"] == 40 // 15  # budget 15, one pick a step
    assert r["steps_per_second"] > 0 and r["steps_per_cpu_second"] > 0
