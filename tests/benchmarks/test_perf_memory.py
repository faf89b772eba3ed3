"""benchmarks.perf measures each task in a fresh process, so its peak memory is that task's own."""

from __future__ import annotations

import os

from benchmarks.perf import _peak_gb, isolated


def test_isolated_runs_in_another_process_and_reports_its_own_peak():
    big = bytearray(1536 * 2**20)  # this process now peaks 1.5 GB above what a fresh one needs
    assert isolated(os.getpid) != os.getpid()
    assert 0 < isolated(_peak_gb) < _peak_gb() - 1.0
    del big
