"""Damage costs only the rows it touched: a damaged row is recomputed, never served; ``python -m alenv.cache``
checks a cache and salvages every intact row of a damaged file, naming what was lost."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alenv.cache import main
from alenv.oracles import CacheCorruptError, CachedOracle, DamagedRowWarning, EMTOracle, LabelCache
from alenv.oracles.salvage import check_cache, salvage_cache
from alenv.types import Label
from tests.oracles.conftest import Counting, cu_frames

ROOT = Path(__file__).resolve().parents[2]
N = 20


def _cache_of_20(tmp_path) -> tuple[Path, list, list[str]]:
    """A cache of 20 EMT labels; its frames and keys."""
    path = tmp_path / "emt.sqlite"
    frames = cu_frames(N)
    oracle = CachedOracle(EMTOracle(), LabelCache(path))
    oracle.label(frames)
    oracle.cache.close()
    return path, frames, oracle.keys(frames)


def _damage(path: Path, key: str, what: str) -> None:
    con = sqlite3.connect(path)
    if what == "blob":  # one force component flipped, same length: only the checksum can tell
        (forces,) = con.execute("SELECT forces FROM labels WHERE key = ?", (key,)).fetchone()
        forces = bytearray(forces)
        forces[5] ^= 0x40
        con.execute("UPDATE labels SET forces = ? WHERE key = ?", (bytes(forces), key))
    else:
        # its first character changed (a checksum that already starts with 0 gets a 1: the row records its
        # oracle seconds, so its checksum differs from run to run and starts with 0 one time in 16)
        con.execute("UPDATE labels SET checksum = (CASE WHEN substr(checksum, 1, 1) = '0' THEN '1' ELSE '0' END) "
                    "|| substr(checksum, 2) WHERE key = ?", (key,))
    con.commit()
    con.close()


@pytest.mark.parametrize("what", ["blob", "checksum"])
def test_one_damaged_row_is_recomputed_the_rest_served(tmp_path, what):
    path, frames, keys = _cache_of_20(tmp_path)
    _damage(path, keys[7], what)
    inner = Counting(EMTOracle())
    cache = LabelCache(path)
    with pytest.warns(DamagedRowWarning, match=keys[7][:16]):
        labels = CachedOracle(inner, cache).label(frames)
    assert inner.calls == [1]  # the damaged label only, recomputed once
    assert inner.asked[0].positions.tobytes() == frames[7].positions.tobytes()
    assert [lab.cached for lab in labels] == [j != 7 for j in range(N)]
    for lab, ref in zip(labels, EMTOracle().label(frames)):  # none of them is the damaged one
        assert lab.energy == ref.energy and np.array_equal(lab.forces, ref.forces)
    assert list(cache.damaged) == [keys[7]]
    assert check_cache(path).ok  # the recomputed label replaced the damaged row
    again = Counting(EMTOracle())
    assert all(lab.cached for lab in CachedOracle(again, LabelCache(path)).label(frames)) and again.calls == []


def test_check_and_salvage_name_what_was_lost(tmp_path, capsys):
    path, frames, keys = _cache_of_20(tmp_path)
    _damage(path, keys[3], "blob")
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{N - 1} labels intact, 1 lost" in out and f"lost {keys[3]}: checksum mismatch" in out
    assert "python -m alenv.cache salvage" in out
    assert main(["salvage", str(path)]) == 1
    out = capsys.readouterr().out
    salvaged = tmp_path / "emt.salvaged.sqlite"
    assert f"wrote {N - 1} labels to {salvaged}" in out and f"mv '{path}' '{path}.corrupt'" in out
    inner = Counting(EMTOracle())
    CachedOracle(inner, LabelCache(salvaged)).label(frames)
    assert inner.calls == [1] and inner.asked[0].positions.tobytes() == frames[3].positions.tobytes()
    assert main(["salvage", str(path)]) == 2  # never over an existing output
    assert "exists already" in capsys.readouterr().err


def test_salvage_of_a_damaged_page_keeps_every_readable_row(tmp_path):
    """Bytes overwritten in the middle of the file: SQLite refuses the whole file; salvage keeps every
    row it can still read, and names the keys of the rows on the damaged page."""
    path = tmp_path / "big.sqlite"
    rng = np.random.default_rng(0)
    labels = {f"key{j:03d}": Label(energy=float(j), forces=rng.normal(size=(20, 3)), seconds=0.1) for j in range(400)}
    cache = LabelCache(path)
    cache.put_many(list(labels.items()))
    cache.close()
    data = bytearray(path.read_bytes())
    page = data.find(labels["key200"].forces.tobytes()) // 4096  # a page of the labels table
    data[page * 4096 : (page + 1) * 4096] = b"\xab" * 4096
    path.write_bytes(bytes(data))
    with pytest.raises(CacheCorruptError, match="python -m alenv.cache salvage"):
        LabelCache(path).get_many(["key000"])
    report, out = salvage_cache(path, tmp_path / "kept.sqlite")
    assert "key200" in report.lost and len(report.lost) < 20 and len(report.intact) + len(report.lost) == 400
    kept = LabelCache(out).get_many(labels)
    assert sorted(kept) == sorted(set(labels) - set(report.lost))
    for key, lab in kept.items():
        assert lab.forces.tobytes() == labels[key].forces.tobytes()


def test_cli_on_a_file_that_is_not_sqlite(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_text("these are not labels\n" * 100)
    run = subprocess.run(
        [sys.executable, "-m", "alenv.cache", "check", str(path)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert run.returncode == 2 and str(path) in run.stdout and "not a database" in run.stdout
    assert main(["salvage", str(path)]) == 2


def test_check_of_an_empty_file(tmp_path, capsys):
    """A 0-byte file holds no labels: nothing to lose, alenv opens it as a fresh cache."""
    path = tmp_path / "empty.sqlite"
    path.write_bytes(b"")
    assert main(["check", str(path)]) == 0
    assert "0 labels intact, 0 lost" in capsys.readouterr().out


def test_copy_is_a_verified_copy(tmp_path, capsys):
    path, frames, _ = _cache_of_20(tmp_path)
    assert main(["copy", str(path), str(tmp_path / "copy.sqlite")]) == 0
    inner = Counting(EMTOracle())
    CachedOracle(inner, LabelCache(tmp_path / "copy.sqlite")).label(frames)
    assert inner.calls == []
