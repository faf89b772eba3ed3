"""CachedOracle over real oracles; LookupOracle. (NoisyOracle: tests/oracles/test_noise.py.)"""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator

from alenv.oracles import CachedOracle, EMTOracle, LabelCache, LookupOracle, XTBOracle
from alenv.oracles.lookup import structure_key
from alenv.types import Label
from tests.oracles.conftest import Counting, cu_bulk, cu_cluster


def test_cached_oracle_second_call_is_all_hits(tmp_path, ethanol):
    inner = Counting(XTBOracle())
    oracle = CachedOracle(inner, LabelCache(tmp_path / "c.sqlite"))
    bad = ethanol.copy()
    bad.positions[1] = bad.positions[0]
    water = molecule("H2O")
    first = oracle.label([ethanol, bad, water])
    assert inner.calls == [1, 1, 1]  # one structure at a time, each stored as soon as it is computed
    assert [lab.cached for lab in first] == [False, False, False]
    assert first[1].failed
    second = oracle.label([water, ethanol, bad])
    assert inner.calls == [1, 1, 1]  # not called again: failures are cached too
    assert all(lab.cached for lab in second)
    for a, b in zip([first[2], first[0], first[1]], second):
        assert a.seconds == b.seconds  # original cost
        assert a.error == b.error
        assert np.array_equal(a.forces, b.forces, equal_nan=True)
    # a fresh wrapper over the same file (a later run) also hits
    again = CachedOracle(Counting(XTBOracle()), LabelCache(tmp_path / "c.sqlite"))
    assert all(lab.cached for lab in again.label([ethanol]))
    assert again.oracle.calls == []
    assert oracle.name == "xtb" and oracle.fingerprint() == XTBOracle().fingerprint()


def test_cached_oracle_sends_only_misses_and_dedupes(tmp_path):
    inner = Counting(EMTOracle())
    oracle = CachedOracle(inner, LabelCache(tmp_path / "c.sqlite"))
    a, b, c = cu_bulk(), cu_cluster(), cu_bulk()
    c.positions[0, 0] += 0.01
    oracle.label([a])
    labels = oracle.label([b, a, b, c])
    assert inner.calls == [1, 1, 1]  # a; then b once, c once (a was a hit)
    assert [lab.cached for lab in labels] == [False, True, True, False]
    assert labels[0].energy == labels[2].energy


def test_cached_oracle_settings_change_misses(tmp_path, ethanol):
    cache = LabelCache(tmp_path / "c.sqlite")
    CachedOracle(XTBOracle(), cache).label([ethanol])
    inner = Counting(XTBOracle(accuracy=0.1))
    CachedOracle(inner, cache).label([ethanol])
    assert inner.calls == [1]
    assert len(cache) == 2


def test_store_prefills(tmp_path):
    inner = Counting(EMTOracle())
    oracle = CachedOracle(inner, LabelCache(tmp_path / "c.sqlite"))
    frames = [cu_bulk(), cu_cluster()]
    computed = EMTOracle().label(frames)  # e.g. labels produced during oracle-driven MD
    oracle.store(frames, computed)
    labels = oracle.label(frames)
    assert inner.calls == []
    assert [lab.energy for lab in labels] == [lab.energy for lab in computed]
    with pytest.raises(ValueError):
        oracle.store(frames, computed[:1])


def _labelled_frames():
    frames = [cu_bulk(), cu_cluster()]
    for atoms, lab in zip(frames, EMTOracle().label(frames)):
        atoms.calc = SinglePointCalculator(atoms, energy=lab.energy, forces=lab.forces)
    return frames


def test_lookup_oracle_answers_from_file(tmp_path):
    frames = _labelled_frames()
    path = tmp_path / "data.extxyz"
    ase.io.write(path, frames, format="extxyz")
    oracle = LookupOracle(path)
    labels = oracle.label([cu_cluster(), cu_bulk()])
    assert labels[0].energy == pytest.approx(frames[1].get_potential_energy(), abs=1e-9)
    np.testing.assert_allclose(labels[1].forces, frames[0].get_forces(), atol=1e-8)
    assert all(lab.seconds == 0.0 and not lab.failed for lab in labels)
    # within 1e-6 A is the same structure, even across a rounding boundary of the exact-match hash
    near = cu_bulk()
    near.positions[0, 0] = np.round(near.positions[0, 0], 6) + 0.5e-6 + 1e-12
    query = _shift(near, -2e-12)
    assert structure_key(query) != structure_key(near)  # the hash misses: only the tolerant scan can answer
    other = _shift(near, 0.1)  # same atoms, another geometry and label: the scan must pick the match
    (lab,) = LookupOracle([_with_label(near, 1.0), _with_label(other, 2.0)]).label([query])
    assert lab.energy == 1.0 and np.array_equal(lab.forces, np.zeros((len(near), 3))) and not lab.failed


def _with_label(atoms, energy):
    atoms = atoms.copy()
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.zeros((len(atoms), 3)))
    return atoms


def _shift(atoms, dx):
    atoms = atoms.copy()
    atoms.positions[0, 0] += dx
    return atoms


def test_lookup_unknown_structure_is_a_key_error(tmp_path):
    oracle = LookupOracle(_labelled_frames())
    moved = cu_bulk()
    moved.positions[0, 0] += 1e-3
    with pytest.raises(KeyError, match="not in"):
        oracle.label([moved])


def test_lookup_fingerprint_tracks_file_content(tmp_path):
    frames = _labelled_frames()
    path = tmp_path / "data.extxyz"
    ase.io.write(path, frames, format="extxyz")
    fp1 = LookupOracle(path).fingerprint()
    frames[0].calc.results["energy"] += 1.0
    ase.io.write(path, frames, format="extxyz")
    fp2 = LookupOracle(path).fingerprint()
    assert fp1["sha256"] != fp2["sha256"]


def test_lookup_reads_info_and_arrays(tmp_path):
    atoms = cu_bulk()
    atoms.info["REF_energy"] = -3.5
    atoms.arrays["REF_forces"] = np.ones((len(atoms), 3))
    (lab,) = LookupOracle([atoms], energy_key="REF_energy", forces_key="REF_forces").label([cu_bulk()])
    assert lab.energy == -3.5 and np.all(lab.forces == 1.0)
    assert isinstance(lab, Label)
    with pytest.raises(ValueError, match="no energy"):
        LookupOracle([cu_bulk()])
