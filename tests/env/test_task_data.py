"""Task data on disk: made once, reused, and damage reported clearly instead of used."""

from __future__ import annotations

import ase.io
import pytest
from ase.build import molecule

from alenv.tasks import get_task, load_task_data


def test_cached_task_data_is_reused_and_damage_is_reported(tmp_path, built_cache):
    spec = get_task("Cu-EMT-tiny")
    first = load_task_data(spec, built_cache("Cu-EMT-tiny", tmp_path), progress=False)
    assert (len(first.pool), len(first.reserve), len(first.test)) == (60, 12, 30)
    again = load_task_data(spec, tmp_path, progress=False)
    assert all((a.positions == b.positions).all() for a, b in zip(first.pool, again.pool))
    # same labels as the oracle gives for those frames
    from alenv.oracles import EMTOracle

    lab = EMTOracle().label(first.test[:2])
    # extxyz keeps positions to 1e-8 Angstrom: energies agree to ~1e-8 eV, far below any error that matters
    assert lab[0].energy == pytest.approx(first.test[0].get_potential_energy(), abs=1e-6)
    # truncate the cached pool: the next load says which directory to delete, instead of using it
    pool_file = first.directory / "pool.extxyz"
    text = pool_file.read_text()
    pool_file.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="delete"):
        load_task_data(spec, tmp_path, progress=False)


# Other data seeds (and the former name pool_seed) give other data: tests/tasks/test_data_seed.py.


def test_dataset_file_without_forces_is_rejected(tmp_path):
    frames = [molecule("H2O") for _ in range(3)]
    path = tmp_path / "unlabelled.extxyz"
    ase.io.write(path, frames, format="extxyz")
    spec = get_task("Dataset-tiny").with_overrides(pool_path=str(path), test_path=str(path))
    with pytest.raises(ValueError, match="no energy and forces"):
        load_task_data(spec, tmp_path)


def test_md_labels_equal_fresh_single_points(make_env):
    """Labels recorded during oracle MD are the oracle's own answers for those frames (GFN2-xTB)."""
    from alenv.oracles import XTBOracle

    env = make_env("alenv/Ethanol-GFN2-tiny-v3").unwrapped
    frames = [env.pool_frames[i] for i in (0, 17, 59)] + [env.test_frames[3]]
    for frame, lab in zip(frames, XTBOracle().label(frames)):
        assert lab.energy == pytest.approx(frame.get_potential_energy(), abs=1e-5)
        assert abs(lab.forces - frame.get_forces()).max() < 1e-3  # eV/A; SCF restarts differ ~1e-5
