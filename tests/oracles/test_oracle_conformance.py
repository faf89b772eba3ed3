"""check_oracle over every registered oracle, on real backends and small systems."""

from __future__ import annotations

import ase.io
import pytest
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator

from alenv.oracles import ORACLES, EMTOracle, check_oracle, conformance_structures, make_oracle
from tests.oracles.conftest import ar_cluster, cu_bulk, cu_cluster, water_box


def _lookup_case(tmp_path):
    """A lookup oracle over an extxyz of EMT labels for exactly the structures check_oracle asks about."""
    base = [cu_cluster(), cu_bulk()]
    frames = conformance_structures(base)
    for atoms, lab in zip(frames, EMTOracle().label(frames)):
        atoms.calc = SinglePointCalculator(atoms, energy=lab.energy, forces=lab.forces)
    path = tmp_path / "labels.extxyz"
    ase.io.write(path, frames, format="extxyz")
    return make_oracle("lookup", path_or_frames=path), base, {}


def _tblite_case(tmp_path):
    """A molecule and a small periodic cell (two waters in 8 x 4 x 4 A; ~0.1 s a label)."""
    pytest.importorskip("tblite", reason='tblite is an optional backend: pip install "alenv[water]"')
    return make_oracle("tblite"), [molecule("CH3CH2OH"), water_box(1, 4.0, seed=1).repeat((2, 1, 1))], {}


CASES = {
    "emt": lambda tmp_path: (make_oracle("emt"), [cu_bulk(), cu_cluster()], {}),
    "lj": lambda tmp_path: (make_oracle("lj", sigma=3.4, epsilon=0.0104), [ar_cluster()], {}),
    "xtb": lambda tmp_path: (make_oracle("xtb"), [molecule("CH3CH2OH"), molecule("H2O")], {}),
    "tblite": _tblite_case,
    "lookup": _lookup_case,
    # PBE/sto-3g on water: ~2 s; grid response keeps the forces consistent with the energy on a coarse grid
    "dft": lambda tmp_path: (make_oracle("dft", basis="sto-3g", num_threads=1), [molecule("H2O")], {}),
    # the wrapper's plumbing at zero noise (finite differences of noisy energies are noise); with noise on,
    # tests/oracles/test_noise.py checks order independence and the noise itself
    "noisy": lambda tmp_path: (make_oracle("noisy", oracle="emt"), [cu_bulk(), cu_cluster()], {}),
}


def test_every_registered_oracle_has_a_conformance_case():
    assert set(CASES) == set(ORACLES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_oracle(name, tmp_path):
    oracle, structures, tolerances = CASES[name](tmp_path)
    check_oracle(oracle, structures, **tolerances)


def test_check_oracle_catches_wrong_forces():
    """The check is not vacuous: an oracle whose forces are off by a sign fails it."""

    class Flipped(EMTOracle):
        def label(self, structures):
            labels = super().label(structures)
            for lab in labels:
                lab.forces = -lab.forces
            return labels

    with pytest.raises(AssertionError, match="finite differences"):
        check_oracle(Flipped(), [cu_bulk()])


def _two_cu_cells() -> list:
    """Two 8-atom Cu cells of the same shape, rattled differently: only their energies tell them apart."""
    a, b = cu_bulk(), cu_bulk()
    b.rattle(0.08, seed=7)
    return [a, b]


class Reversed(EMTOracle):
    """EMT that answers a batch in reversed order (a real oracle with a bookkeeping bug)."""

    def label(self, structures):
        return super().label(structures)[::-1]


def test_check_oracle_catches_answers_in_reversed_order():
    """Same-size structures, so shapes cannot give the reversal away: the order check itself must."""
    structures = _two_cu_cells()
    energies = [lab.energy for lab in EMTOracle().label(structures)]
    assert abs(energies[0] - energies[1]) > 0.01  # clearly different: a swap is visible
    check_oracle(EMTOracle(), structures)  # the correct oracle passes on the same structures
    with pytest.raises(AssertionError, match="not in the order"):
        check_oracle(Reversed(), structures)
