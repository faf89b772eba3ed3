"""Where labels came from: acquired labels counted by their pool frame's subset, initial ones left out."""

from __future__ import annotations

import ase.io
import pytest
from ase import Atoms

from benchmarks.label_sources import shares, table


def _run(folder, agent, picks):
    folder.mkdir(parents=True)
    frames = []
    for rnd, index in picks:
        a = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
        a.info.update(round=rnd, pool_index=index)
        frames.append(a)
    ase.io.write(folder / "labels.extxyz", frames)
    return {"_path": str(folder / "results.json"), "task": "alenv/T-v0", "agent": agent, "seed": 0, "data_seed": 1}


def test_acquired_labels_are_counted_by_pool_subset(tmp_path):
    names = ["T=300K", "T=300K", "T=1000K", "T=1000K"]
    seen = []

    def subsets_of(task, seed):
        seen.append((task, seed))
        return names

    runs = [_run(tmp_path / "a", "uncertainty", [(0, -1), (0, -1), (1, 2), (1, 3), (2, 0)]),
            _run(tmp_path / "b", "random", [(0, -1), (1, 0), (1, 2)])]
    counts = shares(runs, subsets_of)
    assert counts["alenv/T-v0"]["uncertainty"] == {"T=1000K": 2, "T=300K": 1}  # the reserve labels are left out
    assert counts["alenv/T-v0"]["random"] == {"T=300K": 1, "T=1000K": 1}
    assert seen == [("alenv/T-v0", 1), ("alenv/T-v0", 1)]  # each run's own data seed
    md = table(counts)
    assert "| strategy | T=300K | T=1000K | labels |" in md and "| uncertainty | 33% | 67% | 3 |" in md


def test_missing_labels_file_is_a_clear_error(tmp_path):
    run = {"_path": str(tmp_path / "gone" / "results.json"), "task": "alenv/T-v0", "agent": "random", "seed": 0}
    with pytest.raises(FileNotFoundError, match="labels are missing"):
        shares([run], lambda task, seed: [])
