"""LabelCache: round trip, keys, concurrent writers, damaged rows and files."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

import numpy as np
import pytest
from ase.build import molecule

from alenv.oracles import CacheCorruptError, DamagedRowWarning, LabelCache
from alenv.types import Label


def _label(i: int, n: int = 3) -> Label:
    rng = np.random.default_rng(i)
    return Label(energy=float(rng.normal()) * 100, forces=rng.normal(size=(n, 3)), seconds=0.1 * i + 1e-3)


def test_round_trip_is_bit_exact(tmp_path):
    cache = LabelCache(tmp_path / "deep" / "dir" / "labels.sqlite")  # parent dirs are created
    ok = _label(1)
    failed = Label.failure(3, seconds=2.5, error="SCF not converged after 100 cycles")
    cache.put_many([("a", ok), ("b", failed)])
    got = cache.get_many(["a", "b", "missing"])
    assert set(got) == {"a", "b"}
    assert got["a"].energy == ok.energy
    assert got["a"].forces.tobytes() == ok.forces.tobytes()
    assert got["a"].seconds == ok.seconds and got["a"].error is None and got["a"].cached
    assert got["b"].failed and got["b"].error == failed.error and got["b"].seconds == 2.5
    assert np.isnan(got["b"].energy) and np.isnan(got["b"].forces).all() and got["b"].forces.shape == (3, 3)
    assert len(cache) == 2
    got["a"].forces[0, 0] = 1e9  # a returned array is the caller's to change
    assert cache.get("a").forces[0, 0] == ok.forces[0, 0]
    # a new object (another process would do this) sees the same data
    assert LabelCache(cache.path).get("b").error == failed.error


def test_first_write_wins(tmp_path):
    cache = LabelCache(tmp_path / "c.sqlite")
    cache.put_many([("k", _label(1))])
    cache.put_many([("k", _label(2))])
    assert cache.get("k").energy == _label(1).energy
    assert len(cache) == 1


def test_key_depends_on_everything_that_changes_the_label():
    atoms = molecule("H2O")
    fp = {"method": "GFN2-xTB", "accuracy": 1.0}
    k = LabelCache.key("xtb", fp, atoms)
    assert len(k) == 64 and k == LabelCache.key("xtb", dict(reversed(fp.items())), atoms.copy())
    moved = atoms.copy()
    moved.positions[0, 0] += 1e-9
    celled = atoms.copy()
    celled.cell = [10, 10, 10]
    periodic = celled.copy()
    periodic.pbc = [True, False, False]
    swapped = atoms.copy()
    swapped.numbers = swapped.numbers[::-1]
    variants = [
        LabelCache.key("xtb", fp, moved),
        LabelCache.key("xtb", fp, celled),
        LabelCache.key("xtb", fp, periodic),
        LabelCache.key("xtb", fp, swapped),
        LabelCache.key("xtb", {**fp, "accuracy": 0.1}, atoms),
        LabelCache.key("dft", fp, atoms),
    ]
    assert len({k, *variants}) == len(variants) + 1


def _writer(path: str, start: int) -> None:
    cache = LabelCache(path)
    for chunk in range(0, 200, 20):  # several transactions, interleaving with the other writers
        cache.put_many([(f"key{j}", _label(j)) for j in range(start + chunk, start + chunk + 20)])


def test_concurrent_writers(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, start)) for start in (0, 100, 200, 300)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    cache = LabelCache(path)
    assert len(cache) == 500  # overlapping ranges 0..499
    got = cache.get_many([f"key{j}" for j in range(500)])
    assert len(got) == 500
    for j in (0, 99, 150, 333, 499):
        assert got[f"key{j}"].forces.tobytes() == _label(j).forces.tobytes()


def test_simultaneous_first_open(tmp_path):
    """Parallel jobs of a sweep creating the same new cache at once must not fail with 'database is locked'."""
    ctx = mp.get_context("spawn")
    for attempt in range(2):
        path = str(tmp_path / f"new{attempt}.sqlite")
        barrier = ctx.Barrier(4)
        procs = [ctx.Process(target=_opener_at_barrier, args=(path, 2000 * i, barrier)) for i in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0]
        assert len(LabelCache(path)) == 4 * 2000


def _opener_at_barrier(path: str, start: int, barrier) -> None:
    labels = [(f"key{j}", _label(j)) for j in range(start, start + 2000)]
    barrier.wait(timeout=60)
    cache = LabelCache(path)
    cache.put_many(labels)  # one long write transaction while the others open the file


def test_reconnects_after_fork(tmp_path):
    """A connection is never shared across processes: the cache reconnects when the pid changes."""
    cache = LabelCache(tmp_path / "f.sqlite")
    cache.put_many([("a", _label(1))])
    cache._pid = -1  # what a forked child sees
    old = cache._conn
    assert cache.get("a").energy == _label(1).energy
    assert cache._conn is not old


def test_garbage_file_is_corrupt(tmp_path):
    """A file that is not SQLite at all: a clear error naming the file and the salvage command."""
    path = tmp_path / "garbage.sqlite"
    path.write_bytes(b"this is not a database at all\x00\xff" * 200)
    with pytest.raises(CacheCorruptError, match="garbage.sqlite") as info:
        LabelCache(path).get_many(["x"])
    assert f"python -m alenv.cache salvage '{path}'" in str(info.value)
    assert "move it aside" in str(info.value).lower()


def _filled(path, n=400) -> None:
    cache = LabelCache(path)
    cache.put_many([(f"key{j}", _label(j, n=20)) for j in range(n)])
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    cache.close()


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_file_is_corrupt(tmp_path, keep):
    path = tmp_path / "trunc.sqlite"
    _filled(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CacheCorruptError, match="trunc.sqlite"):
        LabelCache(path).get_many([f"key{j}" for j in range(400)])


@pytest.mark.parametrize(
    "damage",
    [
        "UPDATE labels SET forces = zeroblob(480) WHERE key = 'key3'",  # right length, wrong content
        "UPDATE labels SET checksum = 'x' || substr(checksum, 2) WHERE key = 'key3'",
        "UPDATE labels SET forces = substr(forces, 1, 100) WHERE key = 'key3'",  # wrong length
        "UPDATE labels SET seconds = 'soon' WHERE key = 'key3'",  # wrong type
    ],
)
def test_damaged_row_is_never_served(tmp_path, damage):
    """A row that does not verify is left out (a miss), named in ``damaged`` with a warning; the other
    rows are served; the next label stored under its key replaces it."""
    path = tmp_path / "tamper.sqlite"
    _filled(path, n=10)
    con = sqlite3.connect(path)
    con.execute(damage)
    con.commit()
    con.close()
    cache = LabelCache(path)
    with pytest.warns(DamagedRowWarning, match="key3"):
        got = cache.get_many([f"key{j}" for j in range(10)])
    assert sorted(got) == sorted(f"key{j}" for j in range(10) if j != 3)
    assert got["key2"].forces.tobytes() == _label(2, n=20).forces.tobytes()
    assert list(cache.damaged) == ["key3"]
    cache.put_many([("key3", _label(3, n=20))])
    assert cache.get("key3").forces.tobytes() == _label(3, n=20).forces.tobytes()
    assert len(cache) == 10


def test_foreign_sqlite_file_is_rejected(tmp_path):
    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute("INSERT INTO meta VALUES ('format', 'something-else')")
    con.commit()
    con.close()
    with pytest.raises(CacheCorruptError, match="other.sqlite is not an alenv label cache"):
        len(LabelCache(path))
