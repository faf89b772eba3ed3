"""Model-driven MD: failure detection on constructed bad geometries, restarts, determinism, the biased
calculator's forces, and torsion metrics."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.calculator import Calculator, all_changes

from alenv.metrics import dihedrals, torsion_coverage
from alenv.samplers.failures import (
    FAILURE_KINDS,
    FailureChecks,
    MDFailure,
    check_prediction,
    check_structure,
    n_fragments,
)
from alenv.samplers.model_md import ModelMD, OTFSettings, Walker, thermalise
from alenv.samplers.oracle_md import MDSettings
from alenv.tasks.build import SYSTEMS, TORSIONS

CHECKS = FailureChecks()
WINDOW = (-10.0, -9.0)  # eV/atom


def _ethanol() -> Atoms:
    return molecule("CH3CH2OH")


def _kind(fn, *args) -> str | None:
    try:
        fn(*args)
    except MDFailure as exc:
        assert exc.kind in FAILURE_KINDS
        return exc.kind
    return None


def test_sound_structures_pass() -> None:
    for name in ("ethanol", "alanine_dipeptide", "cu_vacancy"):
        atoms = SYSTEMS[name]()
        assert n_fragments(atoms) == 1, name
        assert check_structure(atoms, CHECKS, 1) is None, name
    n = 9
    assert _kind(check_prediction, -9.5 * n, np.zeros((n, 3)), np.full((n, 3), 0.1), n, WINDOW, CHECKS) is None


def test_close_contact_detected() -> None:
    a = _ethanol()
    a.positions[6] = a.positions[0] + [0.2, 0.0, 0.0]  # a methyl H 0.2 Angstrom from its carbon
    assert check_structure(a, CHECKS, 1) == "close_contact"


def test_fragmentation_detected() -> None:
    a = _ethanol()
    a.positions[3] += [-4.0, 0.0, 0.0]  # the hydroxyl H leaves
    assert n_fragments(a) == 2
    assert check_structure(a, CHECKS, 1) == "fragmentation"
    # a structure that started as two molecules is not a failure when it still has two
    assert check_structure(a, CHECKS, 2) is None
    assert check_structure(a, FailureChecks(check_fragments=False), 1) is None


def test_non_finite_detected() -> None:
    a = _ethanol()
    a.positions[0, 1] = np.nan
    assert check_structure(a, CHECKS, 1) == "non_finite"
    n = 9
    assert _kind(check_prediction, np.nan, np.zeros((n, 3)), None, n, WINDOW, CHECKS) == "non_finite"
    bad_f = np.zeros((n, 3))
    bad_f[2, 0] = np.inf
    assert _kind(check_prediction, -9.5 * n, bad_f, None, n, WINDOW, CHECKS) == "non_finite"


def test_energy_explosion_detected_both_ways() -> None:
    n = 9
    f = np.zeros((n, 3))
    assert _kind(check_prediction, (-9.0 + 1.01) * n, f, None, n, WINDOW, CHECKS) == "energy_explosion"
    assert _kind(check_prediction, (-10.0 - 1.01) * n, f, None, n, WINDOW, CHECKS) == "energy_explosion"
    assert _kind(check_prediction, (-9.0 + 0.99) * n, f, None, n, WINDOW, CHECKS) is None


def test_spread_ceiling_detected() -> None:
    n = 9
    std = np.zeros((n, 3))
    std[4] = [2.0, 2.0, 2.0]  # per-atom spread 3.46 eV/Angstrom > 3.0
    assert _kind(check_prediction, -9.5 * n, np.zeros((n, 3)), std, n, WINDOW, CHECKS) == "spread_ceiling"
    std[4] = [1.0, 1.0, 1.0]
    assert _kind(check_prediction, -9.5 * n, np.zeros((n, 3)), std, n, WINDOW, CHECKS) is None


class _Harmonic(Calculator):
    """Springs to a reference geometry, and optionally a constant pull on one atom (a model gone wrong)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, reference: Atoms, k: float = 20.0, pull: float = 0.0, atom: int = 3):
        super().__init__()
        self.ref, self.k, self.pull, self.atom = reference.positions.copy(), k, pull, atom

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        d = self.atoms.positions - self.ref
        e = 0.5 * self.k * (d**2).sum() - self.pull * d[self.atom, 0]
        f = -self.k * d
        f[self.atom, 0] += self.pull
        self.results = {"energy": float(e) - 9.5 * len(self.atoms), "forces": f}


def _sampler(**kw) -> ModelMD:
    return ModelMD(MDSettings(timestep=0.5, friction=0.01), OTFSettings(walkers=2, steps_per_round=40, candidates_per_walker=4, **kw))


def test_sampler_same_seed_same_frames() -> None:
    ref = _ethanol()
    md = _sampler()

    def one(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        walkers = [Walker(thermalise(ref, T, rng), T) for T in (300.0, 600.0)]
        res = md.run_round(walkers, _Harmonic(ref), rng, [ref], (-10.0, -9.0), 1)
        assert not res.failures and all(f is not None for f in res.frames)
        assert [f.info["round_step"] for f in res.frames] == [10, 20, 30, 40] * 2
        assert res.steps == 80
        return np.stack([f.positions for f in res.frames])

    a, b, c = one(1), one(1), one(2)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_failed_walker_restarts_from_a_safe_structure() -> None:
    ref = _ethanol()
    md = _sampler(max_restarts=100)
    rng = np.random.default_rng(0)
    walkers = [Walker(thermalise(ref, 300.0, rng), 300.0), Walker(thermalise(ref, 300.0, rng), 300.0)]
    # a pull of 40 eV/A on the hydroxyl H tears it off within the round
    res = md.run_round(walkers, _Harmonic(ref, pull=40.0), rng, [ref], (-10.0, -9.0), 1)
    assert res.failures and {k for _, _, k in res.failures} <= {"fragmentation", "energy_explosion"}
    assert res.steps == 80  # every walker finished its steps after restarting
    assert np.all(res.survived < 40)
    # the recorded frames passed the checks; the walkers are sound after the round
    for f in res.frames:
        if f is not None:
            assert check_structure(f, CHECKS, 1) is None


def test_walker_gives_up_after_max_restarts_and_leaves_empty_slots() -> None:
    ref = _ethanol()
    md = _sampler(max_restarts=1)
    rng = np.random.default_rng(0)
    walkers = [Walker(thermalise(ref, 300.0, rng), 300.0) for _ in range(2)]
    # an energy window the harmonic model is always outside of: every step fails
    res = md.run_round(walkers, _Harmonic(ref), rng, [ref], (-100.0, -99.0), 1)
    assert all(f is None for f in res.frames)
    assert len(res.failures) == 4  # first failure and one restart's failure, per walker
    assert res.steps == 4 and list(res.survived) == [0, 0]


def test_time_to_failure_is_capped_and_counts_steps() -> None:
    ref = _ethanol()
    md = _sampler()
    rng = np.random.default_rng(0)
    ok, kinds = md.time_to_failure([ref, ref], [300.0], _Harmonic(ref), 30, rng, (-10.0, -9.0), 1)
    assert list(ok) == [30, 30] and kinds == []
    bad, kinds = md.time_to_failure([ref], [300.0], _Harmonic(ref, pull=40.0), 500, rng, (-10.0, -9.0), 1)
    assert 0 < bad[0] < 500 and len(kinds) == 1


def test_otf_settings_validate() -> None:
    with pytest.raises(ValueError, match="multiple"):
        OTFSettings(steps_per_round=50, candidates_per_walker=4)
    with pytest.raises(ValueError, match="md_step_budget"):
        OTFSettings(walkers=4, steps_per_round=200, md_step_budget=100)


def test_dihedrals_match_ase_and_coverage_by_hand() -> None:
    a = SYSTEMS["alanine_dipeptide"]()
    rng = np.random.default_rng(0)
    a.positions += rng.normal(scale=0.05, size=a.positions.shape)
    got = dihedrals([a], TORSIONS["alanine_dipeptide"])[0]
    for value, quad in zip(got, TORSIONS["alanine_dipeptide"]):
        want = ((a.get_dihedral(*quad) + 180.0) % 360.0) - 180.0
        assert value == pytest.approx(want, abs=1e-6)
    # L-alanine in the extended region: phi < 0, psi > 0
    assert got[0] < -90 and got[1] > 90
    ref = np.array([[-170.0, 10.0], [-100.0, 10.0], [50.0, 50.0], [55.0, 55.0]])  # 3 cells of 30 degrees
    assert torsion_coverage(np.array([[-175.0, 5.0]]), ref) == pytest.approx(1 / 3)
    assert torsion_coverage(np.array([[-175.0, 5.0], [59.0, 31.0], [0.0, 0.0]]), ref) == pytest.approx(2 / 3)
    assert torsion_coverage(np.zeros((0, 2)), ref) == 0.0
