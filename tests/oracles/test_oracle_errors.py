"""Documented error paths of the oracles: each raises the documented type with a message that says what
to fix, before any backend or cache is touched; and what a lookup file's duplicates and failures become."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from alenv.oracles import (
    CachedOracle,
    CalculatorOracle,
    EMTOracle,
    LabelCache,
    LennardJonesOracle,
    LookupOracle,
    NoisyOracle,
    OracleError,
)
from tests.oracles.conftest import cu_bulk, cu_cluster


def _labelled(atoms: Atoms, energy: float, forces: np.ndarray | None = None) -> Atoms:
    atoms = atoms.copy()
    f = np.zeros((len(atoms), 3)) if forces is None else forces
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=f)
    return atoms


# ------------------------------------------------------------------------------------- bad structures
def _oracles(tmp_path) -> dict:
    lookup = LookupOracle([_labelled(cu_bulk(), -1.0), _labelled(cu_cluster(), -2.0)])
    return {
        "emt": EMTOracle(),
        "lj": LennardJonesOracle(sigma=2.3, epsilon=0.4),
        "lookup": lookup,
        "cached": CachedOracle(EMTOracle(), LabelCache(tmp_path / "c.sqlite")),
        "noisy": NoisyOracle(EMTOracle(), force_sigma=0.1, energy_sigma=0.1, seed=0),
    }


@pytest.mark.parametrize("name", ["emt", "lj", "lookup", "cached", "noisy"])
def test_non_finite_structures_are_rejected(name, tmp_path):
    oracle = _oracles(tmp_path)[name]
    for value in (np.nan, np.inf):
        bad = cu_bulk()
        bad.positions[3, 1] = value
        with pytest.raises(ValueError, match="structure 1 has non-finite positions"):
            oracle.label([cu_bulk(), bad])
    bad = cu_cluster()
    bad.cell = [[np.nan, 0, 0], [0, 10, 0], [0, 0, 10]]
    with pytest.raises(ValueError, match="structure 0 has a non-finite cell"):
        oracle.label([bad])
    if name == "cached":
        assert len(oracle.cache) == 0  # nothing was computed or stored


@pytest.mark.parametrize("name", ["emt", "lookup", "cached"])
def test_wrong_arguments_are_rejected(name, tmp_path):
    oracle = _oracles(tmp_path)[name]
    with pytest.raises(TypeError, match="wrap it in a list"):
        oracle.label(cu_bulk())
    with pytest.raises(TypeError, match="structure 1 is str"):
        oracle.label([cu_bulk(), "Cu8"])
    with pytest.raises(ValueError, match="no atoms"):
        oracle.label([Atoms()])
    flat = cu_bulk()
    flat.cell[2] = 0.0
    with pytest.raises(ValueError, match="periodic along a direction with a zero cell vector"):
        oracle.label([flat])


def test_misconfigured_oracles_raise():
    with pytest.raises(TypeError, match="callable"):
        CalculatorOracle(None, "x", {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty name"):
        CalculatorOracle(lambda: None, "", {})
    with pytest.raises(ValueError, match="min_distance must be >= 0"):
        EMTOracle(min_distance=-0.1)
    with pytest.raises(ValueError, match="must be positive"):
        LennardJonesOracle(sigma=0.0)
    with pytest.raises(ValueError, match="energy_sigma must be a finite number >= 0"):
        NoisyOracle(EMTOracle(), force_sigma=0.1, energy_sigma=-0.1)
    with pytest.raises(TypeError):
        NoisyOracle(EMTOracle(), 0.1)  # type: ignore[misc]  # noise levels are keyword-only


def test_cached_oracle_rejects_an_inner_oracle_that_loses_labels(tmp_path):
    """An inner oracle that answers fewer structures than asked breaks the contract: OracleError, and
    nothing of the broken answer is cached."""

    class Lossy(EMTOracle):
        def label(self, structures):
            return super().label(structures)[:-1]

    cache = LabelCache(tmp_path / "c.sqlite")
    with pytest.raises(OracleError, match="returned 0 labels for 1 structure"):
        CachedOracle(Lossy(), cache).label([cu_bulk(), cu_cluster()])
    assert len(cache) == 0


# ------------------------------------------------------------------------------------- lookup files
def test_lookup_duplicates_must_agree(tmp_path):
    a = cu_bulk()
    same = LookupOracle([_labelled(a, -1.0), _labelled(cu_cluster(), -2.0), _labelled(a, -1.0)])
    assert len(same) == 2  # a repeat with the same labels counts once
    (lab,) = same.label([a])
    assert lab.energy == -1.0
    with pytest.raises(ValueError, match="frame 2 repeats an earlier structure with different labels"):
        LookupOracle([_labelled(a, -1.0), _labelled(cu_cluster(), -2.0), _labelled(a, -1.5)])
    with pytest.raises(ValueError, match="frame 1 repeats an earlier structure with different labels"):
        LookupOracle([_labelled(a, -1.0), _labelled(a, -1.0, forces=np.ones((len(a), 3)))])


def test_lookup_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no labelled file"):
        LookupOracle(tmp_path / "missing.extxyz")
    with pytest.raises(ValueError, match="holds no structures"):
        LookupOracle([])
    with pytest.raises(ValueError, match="frame 1 has no forces"):
        LookupOracle([_labelled(cu_bulk(), -1.0), _with_energy_only(cu_cluster())])
    with pytest.raises(ValueError, match=r"frame 0 has forces of shape \(2, 3\)"):
        LookupOracle([_labelled(cu_bulk(), -1.0, forces=np.zeros((2, 3)))])


def _with_energy_only(atoms: Atoms) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0)
    return atoms


def test_lookup_non_finite_label_is_a_failed_label():
    """A file may record a calculation that failed as NaN: that structure gets a failed Label (paid for,
    never trained on), as from any oracle, not a 'successful' label holding NaN."""
    a, b = cu_bulk(), cu_cluster()
    oracle = LookupOracle([_labelled(a, float("nan")), _labelled(b, -2.0), _labelled(a, float("nan"))])
    bad, good = oracle.label([a, b])
    assert bad.failed and "not finite" in bad.error and np.isnan(bad.energy) and bad.forces.shape == (len(a), 3)
    assert not good.failed and good.energy == -2.0
