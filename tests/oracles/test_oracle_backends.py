"""Real backends: reference energies, failures as labels, configuration errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.units import Hartree

from alenv.oracles import (
    ORACLES,
    CalculatorOracle,
    EMTOracle,
    LennardJonesOracle,
    PySCFOracle,
    XTBOracle,
    make_oracle,
)
from alenv.types import Label
from tests.oracles.conftest import cu_bulk


def test_gfn2_ethanol_reference_energy(ethanol):
    (lab,) = XTBOracle().label([ethanol])
    assert not lab.failed
    assert abs(lab.energy / Hartree - (-11.3914246)) < 1e-5
    assert lab.forces.shape == (9, 3)
    assert lab.seconds > 0


def test_xtb_labels_do_not_depend_on_history(ethanol):
    """Each structure starts from a fresh guess: same label alone, after another molecule, after a failure."""
    oracle = XTBOracle()
    alone = oracle.label([ethanol])[0]
    squashed = ethanol.copy()
    squashed.positions *= 0.55  # all distances > 0.5 A, but chemistry is nonsense
    after = oracle.label([molecule("H2O"), squashed, ethanol])[2]
    assert after.energy == pytest.approx(alone.energy, abs=1e-8)
    np.testing.assert_allclose(after.forces, alone.forces, atol=1e-7)


def test_xtb_charge_and_spin_change_the_result(ethanol):
    neutral = XTBOracle().label([ethanol])[0]
    cation = XTBOracle(charge=1, uhf=1).label([ethanol])[0]
    assert not cation.failed
    assert cation.energy - neutral.energy > 5.0  # ionisation costs several eV
    assert XTBOracle(charge=1, uhf=1).fingerprint() != XTBOracle().fingerprint()


def test_overlapping_atoms_fail_without_raising(ethanol):
    bad = ethanol.copy()
    bad.positions[1] = bad.positions[0] + [0.1, 0.0, 0.0]
    before = bad.positions.copy()
    for oracle in (XTBOracle(), EMTOracle(), LennardJonesOracle()):
        good, failed = oracle.label([ethanol, bad])
        assert isinstance(failed, Label) and failed.failed
        assert failed.error.startswith("atoms overlap: min distance 0.1 A < 0.5 A"), failed.error
        assert np.isnan(failed.energy) and failed.forces.shape == (9, 3) and np.isnan(failed.forces).all()
        assert failed.seconds >= 0
        assert not good.failed
    np.testing.assert_array_equal(bad.positions, before)  # the caller's atoms are untouched


def test_overlap_with_own_periodic_image():
    """Minimum image: a 1-atom cell of 0.3 A overlaps with itself."""
    atoms = Atoms("Cu", cell=[0.3, 5.0, 5.0], pbc=True)
    (lab,) = EMTOracle().label([atoms])
    assert lab.failed and "atoms overlap" in lab.error


def test_xtb_scf_failure_is_a_failed_label(ethanol):
    (lab,) = XTBOracle(max_iterations=1).label([ethanol])
    assert lab.failed
    assert "CalculationFailed" in lab.error and "did not converge" in lab.error, lab.error
    assert "\n" not in lab.error
    assert lab.seconds > 0


def test_backend_exception_is_a_failed_label():
    """EMT has no parameters for uranium: the backend raises, the oracle reports."""
    atoms = Atoms("U2", positions=[[0, 0, 0], [0, 0, 2.5]])
    (lab,) = EMTOracle().label([atoms])
    assert lab.failed and lab.error.startswith("NotImplementedError"), lab.error


def test_xtb_rejects_periodic_structures():
    with pytest.raises(ValueError, match="tblite"):
        XTBOracle().label([bulk("Si")])


def test_pyscf_rejects_periodic_structures():
    with pytest.raises(ValueError, match="molecules only"):
        PySCFOracle().label([bulk("Si")])


def test_programmer_errors_raise():
    oracle = EMTOracle()
    with pytest.raises(ValueError, match="no atoms"):
        oracle.label([Atoms()])
    with pytest.raises(TypeError, match="single Atoms"):
        oracle.label(cu_bulk())
    with pytest.raises(ValueError, match="unknown xtb method"):
        XTBOracle(method="GFN3-xTB")


def test_make_oracle_unknown_name_lists_known_ones():
    with pytest.raises(ValueError) as info:
        make_oracle("vasp")
    for name in ORACLES:
        assert name in str(info.value)


def test_calculator_oracle_over_any_ase_calculator():
    from ase.calculators.emt import EMT

    built = []

    def factory():
        built.append(1)
        return EMT()

    oracle = CalculatorOracle(factory, name="my-emt", settings={"flavour": "plain"})
    assert built == []  # lazy
    labels = oracle.label([cu_bulk(), cu_bulk()]) + oracle.label([cu_bulk()])
    assert built == [1]  # built once, reused
    assert labels[0].energy == labels[2].energy
    assert oracle.fingerprint() == {"flavour": "plain", "min_distance": 0.5}


def test_oracles_pickle_without_their_backend(ethanol):
    oracle = XTBOracle()
    first = oracle.label([ethanol])[0]
    clone = pickle.loads(pickle.dumps(oracle))
    assert clone._calc is None
    assert clone.label([ethanol])[0].energy == pytest.approx(first.energy, abs=1e-8)


def test_pyscf_scf_failure_is_a_failed_label():
    (lab,) = PySCFOracle(basis="sto-3g", max_cycle=1, num_threads=1).label([molecule("H2O")])
    assert lab.failed and "SCF not converged after 1 cycles" in lab.error, lab.error
    assert lab.seconds > 0


@pytest.mark.slow
def test_pyscf_default_level_on_ethanol(ethanol):
    """PBE/def2-SVP (rMD17's level of theory): seconds per molecule, forces consistent with energy."""
    from alenv.oracles import check_oracle

    check_oracle(PySCFOracle(), [ethanol], force_atol=2e-3)
