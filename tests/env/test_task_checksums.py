"""Cached task files are checksummed: an edited force or a shifted position is refused, never used."""

from __future__ import annotations

import json

import pytest

from alenv.tasks import get_task, load_task_data


def _edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("part", ["test", "pool"])
def test_edited_task_file_is_refused(tmp_path, part, built_cache):
    spec = get_task("Cu-EMT-tiny")
    data = load_task_data(spec, built_cache("Cu-EMT-tiny", tmp_path), progress=False)
    path = data.directory / f"{part}.extxyz"
    line = path.read_text().splitlines()[2]  # the first atom of the first frame: species, position, forces
    fields = line.split()
    fields[-1] = f"{float(fields[-1]) + 0.5:.8f}" if part == "test" else fields[-1]  # a force component
    fields[1] = f"{float(fields[1]) + 0.01:.8f}" if part == "pool" else fields[1]  # a position
    _edit(path, line, " ".join(fields))
    with pytest.raises(ValueError, match=rf"{part}.extxyz: checksum mismatch.*delete that directory"):
        load_task_data(spec, tmp_path, progress=False)


def test_cache_made_before_checksums_gets_them(tmp_path, built_cache):
    spec = get_task("Cu-EMT-tiny")
    data = load_task_data(spec, built_cache("Cu-EMT-tiny", tmp_path), progress=False)
    meta_path = data.directory / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert set(meta["sha256"]) == {"pool", "reserve", "test", "validation"}
    del meta["sha256"]
    meta_path.write_text(json.dumps(meta))
    load_task_data(spec, tmp_path, progress=False)
    recorded = json.loads(meta_path.read_text())["sha256"]
    assert recorded["test"] is not None and len(recorded["test"]) == 64
