"""A label is durable the moment it is paid for: a run killed with SIGKILL mid-batch keeps every label it
finished, in the one ``.sqlite`` file, and a rerun pays only for the rest."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alenv.oracles import CachedOracle, EMTOracle, LabelCache
from tests.oracles.conftest import Counting, cu_frames

ROOT = Path(__file__).resolve().parents[2]
N_FRAMES = 6
KILL_AT = 4  # SIGKILL as the 4th structure starts: 3 labels were paid for

# EMT that takes 0.2 s per structure and says when it starts one (on stdout); the KILL_AT-th never ends,
# so the SIGKILL always lands while that one is being computed
CHILD = f"""
import sys, time
from alenv.oracles import CachedOracle, EMTOracle, LabelCache
from tests.oracles.conftest import cu_frames

class SlowEMT(EMTOracle):
    started = 0

    def label(self, structures):
        SlowEMT.started += 1
        print("computing", len(structures), flush=True)
        time.sleep(0.2 if SlowEMT.started < {KILL_AT} else 600)
        return super().label(structures)

CachedOracle(SlowEMT(), LabelCache(sys.argv[1])).label(cu_frames({N_FRAMES}))
print("finished", flush=True)
"""


def _killed_run(path: Path) -> int:
    """Label the frames in a child process, SIGKILL it as structure KILL_AT starts; the starts seen."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], cwd=ROOT, env=env, stdout=subprocess.PIPE)
    started = 0
    try:
        for line in proc.stdout:
            if line.startswith(b"computing"):
                started += 1
                if started == KILL_AT:
                    break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return started


def _side_files(path: Path) -> list[str]:
    """Files SQLite keeps beside the cache (journal, WAL, shared memory); the .lock file holds no data."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "-"))


@pytest.mark.parametrize("keep", ["the directory", "the .sqlite file only"])
def test_killed_run_keeps_every_label_it_paid_for(tmp_path, keep):
    path = tmp_path / "run" / "emt.sqlite"
    assert _killed_run(path) == KILL_AT
    assert _side_files(path) == []  # every committed label is in the one file
    if keep == "the .sqlite file only":  # e.g. copied to another machine
        shutil.copy(path, tmp_path / "emt.sqlite")
        path = tmp_path / "emt.sqlite"
    frames = cu_frames(N_FRAMES)
    inner = Counting(EMTOracle())
    labels = CachedOracle(inner, LabelCache(path)).label(frames)
    # the rerun pays for the unfinished structures only: 0 repeated oracle calls
    assert inner.calls == [1] * (N_FRAMES - KILL_AT + 1)
    assert [a.positions.tobytes() for a in inner.asked] == [a.positions.tobytes() for a in frames[KILL_AT - 1 :]]
    assert [lab.cached for lab in labels] == [True] * (KILL_AT - 1) + [False] * (N_FRAMES - KILL_AT + 1)
    for lab, ref in zip(labels, EMTOracle().label(frames)):
        assert lab.energy == ref.energy and np.array_equal(lab.forces, ref.forces)
    assert len(LabelCache(path)) == N_FRAMES


def test_cache_has_no_side_file_while_open(tmp_path):
    """Rollback journal: nothing beside the .sqlite file between commits, even with the connection open."""
    path = tmp_path / "emt.sqlite"
    oracle = CachedOracle(EMTOracle(), LabelCache(path))
    oracle.label(cu_frames(3))
    assert _side_files(path) == []
    assert oracle.cache._conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert oracle.cache._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_wal_cache_of_an_older_version_is_switched_to_one_file(tmp_path):
    """A cache an older alenv left in WAL mode keeps its labels and becomes a single-file cache."""
    path = tmp_path / "emt.sqlite"
    frames = cu_frames(3)
    oracle = CachedOracle(EMTOracle(), LabelCache(path))
    oracle.label(frames[:2])
    oracle.cache.close()
    import sqlite3

    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    con.close()
    inner = Counting(EMTOracle())
    again = CachedOracle(inner, LabelCache(path))
    assert [lab.cached for lab in again.label(frames)] == [True, True, False]
    assert inner.calls == [1]
    assert again.cache._conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert _side_files(path) == []


def test_empty_file_is_a_fresh_cache(tmp_path):
    """A 0-byte file cannot hold labels: it is used as a new cache, labels are stored in it."""
    path = tmp_path / "emt.sqlite"
    path.write_bytes(b"")
    inner = Counting(EMTOracle())
    CachedOracle(inner, LabelCache(path)).label(cu_frames(2))
    assert inner.calls == [1, 1] and len(LabelCache(path)) == 2
