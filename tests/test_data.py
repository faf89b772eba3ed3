"""Labelled extxyz in and out (``alenv.data``): every documented way a file can be unusable is a clear error
naming the file and the frame, for ``read_labelled`` and for the Dataset task built on it."""

from __future__ import annotations

from pathlib import Path

import ase.io
import gymnasium
import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator

import alenv  # noqa: F401  (registers the tasks)
from alenv.data import LabelledSet, attach_label, read_labelled, write_labelled
from alenv.types import Label


def _water(i: int, energy: float | None = None, forces: np.ndarray | None = None, calc: bool = True) -> Atoms:
    """A slightly distorted water molecule carrying a label (energy -10 - i eV, forces 0.1-1 eV/Angstrom)."""
    atoms = molecule("H2O")
    atoms.positions[1, 0] += 0.01 * i
    if calc:
        e = -10.0 - i if energy is None else energy
        f = np.full((3, 3), 0.1 * (1 + i % 10)) if forces is None else forces
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f)
    return atoms


def _write(path: Path, frames: list[Atoms]) -> Path:
    ase.io.write(path, frames, format="extxyz")
    return path


def _bad_files(d: Path) -> dict[str, tuple[Path, type, str]]:
    """Unusable labelled files: path, expected error type and message fragment."""
    energy_only = _water(1, calc=False)
    energy_only.calc = SinglePointCalculator(energy_only, energy=-11.0)
    (d / "garbage.extxyz").write_text("this is not\nan extxyz file\n")
    (d / "empty.extxyz").write_text("")
    return {
        "no labels": (_write(d / "bare.extxyz", [_water(0, calc=False), _water(1, calc=False)]), ValueError,
                      "frame 0 has no energy and forces"),
        "no forces": (_write(d / "energy_only.extxyz", [_water(0), energy_only]), ValueError, "frame 1 has no forces"),
        "NaN energy": (_write(d / "nan_energy.extxyz", [_water(0), _water(1), _water(2, energy=float("nan"))]),
                       ValueError, "frame 2 has a non-finite energy or forces"),
        "inf forces": (_write(d / "inf_forces.extxyz", [_water(0, forces=np.full((3, 3), np.inf))]), ValueError,
                       "frame 0 has a non-finite energy or forces"),
        "mixed sizes": (_write(d / "mixed.extxyz", [_water(0), _water(1), _with_label(molecule("CH4"))]), ValueError,
                        "frame 2 has 5 atoms, frame 0 has 3; mixed sizes"),
        "unreadable": (d / "garbage.extxyz", ValueError, "cannot read"),
        "empty": (d / "empty.extxyz", ValueError, "cannot read"),
        "missing": (d / "missing.extxyz", FileNotFoundError, "no labelled file"),
    }


def test_read_labelled_frames_reads_mixed_sizes(tmp_path):
    """The ragged reader keeps every frame with its own forces; ``read_labelled`` (stacked) refuses them."""
    from alenv.data import read_labelled_frames

    path, _, fragment = _bad_files(tmp_path)["mixed sizes"]
    frames, E, F, seconds = read_labelled_frames(path)
    assert [len(a) for a in frames] == [3, 3, 5] and [f.shape for f in F] == [(3, 3), (3, 3), (5, 3)]
    assert E.shape == seconds.shape == (3,) and E[2] == -20.0
    with pytest.raises(ValueError, match=fragment):
        read_labelled_frames(path, same_size=True)


def _with_label(atoms: Atoms) -> Atoms:
    atoms.calc = SinglePointCalculator(atoms, energy=-20.0, forces=np.zeros((len(atoms), 3)))
    return atoms


@pytest.mark.parametrize(
    "case", ["no labels", "no forces", "NaN energy", "inf forces", "mixed sizes", "unreadable", "empty", "missing"]
)
def test_read_labelled_rejects_unusable_files(case, tmp_path):
    path, error, fragment = _bad_files(tmp_path)[case]
    with pytest.raises(error, match=fragment) as info:
        read_labelled(path)
    assert str(path) in str(info.value)  # the message names the file


@pytest.mark.parametrize(
    "case, role",
    [(c, r) for c in ["no labels", "NaN energy", "unreadable", "missing"] for r in ["pool", "test"]]
    + [("no forces", "pool")],
)
def test_dataset_task_rejects_unusable_files(case, role, tmp_path, rmd17_ethanol):
    """The same errors from ``gymnasium.make("alenv/Dataset-v3", pool=..., test=...)``, for either file; a
    frame without forces only in the pool (a test file may hold energy-only frames: tests/tasks/test_energy_only.py).
    Mixed sizes are no error for the Dataset task (the flat layout: tests/env/test_ragged_dataset.py)."""
    path, error, fragment = _bad_files(tmp_path)[case]
    pool, test = rmd17_ethanol
    files = {"pool": pool, "test": test, role: path}
    with pytest.raises(error, match=fragment) as info:
        gymnasium.make("alenv/Dataset-v3", cache_dir=tmp_path / "cache", **files)
    assert str(path) in str(info.value)


def test_dataset_task_rejects_files_that_do_not_fit(tmp_path, rmd17_ethanol):
    pool, test = rmd17_ethanol
    water = _write(tmp_path / "water.extxyz", [_water(i) for i in range(40)])
    with pytest.raises(ValueError, match="H2O, a composition that no frame of .* has .* another molecule") as info:
        gymnasium.make("alenv/Dataset-tiny-v3", cache_dir=tmp_path, pool=pool, test=water)
    assert str(pool) in str(info.value) and str(water) in str(info.value)
    few = _write(tmp_path / "few.extxyz", [_water(i) for i in range(100, 120)])
    with pytest.raises(ValueError, match=r"has 20 frames; reserve_size 12 \+ budget 15 \+ validation_size 20 = 47 are needed"):
        gymnasium.make("alenv/Dataset-tiny-v3", cache_dir=tmp_path, pool=few, test=water)
    # a pool file that gives one structure two different labels cannot serve as the lookup oracle
    frames = ase.io.read(pool, index=":")
    clash = frames[3].copy()
    clash.calc = SinglePointCalculator(clash, energy=frames[3].get_potential_energy() + 1.0, forces=frames[3].get_forces())
    clashing = _write(tmp_path / "clash.extxyz", frames + [clash])
    with pytest.raises(ValueError, match="repeats an earlier structure with different labels"):
        gymnasium.make("alenv/Dataset-tiny-v3", cache_dir=tmp_path, pool=clashing, test=test)


def test_labels_round_trip(tmp_path):
    """What ``LabelledSet.write`` saves, ``read_labelled`` reads back: successful labels only, with the
    pool index and round of each."""
    frames = [_water(i, calc=False) for i in range(4)]
    labels = [Label(-10.0 - i, np.full((3, 3), 0.1 * i), seconds=0.5 * i) for i in range(4)]
    labels[2] = Label.failure(3, 0.25, "SCF did not converge")
    record = LabelledSet()
    record.extend(frames[:2], labels[:2], [-1, -1], 0)
    record.extend(frames[2:], labels[2:], [17, 4], 1)
    assert record.n_failed == 1 and record.oracle_seconds == pytest.approx(0.0 + 0.5 + 0.25 + 1.5)
    record.write(tmp_path / "labels.extxyz")
    back, E, F, seconds = read_labelled(tmp_path / "labels.extxyz")
    assert [a.info["pool_index"] for a in back] == [-1, -1, 4]
    assert [a.info["round"] for a in back] == [0, 0, 1]
    np.testing.assert_array_equal(E, [-10.0, -11.0, -13.0])
    np.testing.assert_array_equal(F[2], np.full((3, 3), 0.3))
    np.testing.assert_array_equal(seconds, [0.0, 0.5, 1.5])
    np.testing.assert_allclose(back[2].positions, frames[3].positions, atol=1e-8)
    with pytest.raises(ValueError, match="same length"):
        record.extend(frames[:2], labels[:1], [0, 1], 2)
    # writing is atomic: a finished file replaces the old one, no temporary file stays behind
    write_labelled(tmp_path / "labels.extxyz", [attach_label(frames[0], labels[0])])
    assert len(read_labelled(tmp_path / "labels.extxyz")[0]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.extxyz"]


def test_non_finite_positions_are_named(tmp_path):
    import ase.io
    from ase.build import molecule
    from ase.calculators.singlepoint import SinglePointCalculator

    from alenv.data import read_labelled

    frames = []
    for k in range(3):
        a = molecule("H2O")
        a.calc = SinglePointCalculator(a, energy=-10.0 - k, forces=np.zeros((3, 3)))
        frames.append(a)
    frames[1].positions[2, 0] = np.nan
    frames[1].calc = SinglePointCalculator(frames[1], energy=-11.0, forces=np.zeros((3, 3)))
    path = tmp_path / "nan_position.extxyz"
    ase.io.write(path, frames, format="extxyz")
    with pytest.raises(ValueError, match=r"nan_position.extxyz frame 1 has non-finite positions \(atoms \[2\]\)"):
        read_labelled(path)
