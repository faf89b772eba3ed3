"""Failure classes: permanent failures are cached and charged; transient ones are retried, never cached,
and raise when they persist; configuration errors (impossible charge or spin, unknown basis or
functional) raise before anything is computed or charged."""

from __future__ import annotations

import errno
from concurrent.futures.process import BrokenProcessPool

import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.calculator import CalculatorSetupError
from ase.calculators.emt import EMT

from alenv.oracles import (
    CachedOracle,
    CalculatorOracle,
    EMTOracle,
    LabelCache,
    PySCFOracle,
    TransientOracleError,
    XTBOracle,
)
from tests.oracles.conftest import Counting, cu_frames

FULL_DISK = OSError(errno.ENOSPC, "No space left on device")


def _flaky_emt(fail: int, error: BaseException) -> tuple[CalculatorOracle, list[int]]:
    """EMT whose first ``fail`` calculations raise ``error`` (then it works); and the count of tries.

    Same name and settings as EMTOracle, so its labels share keys with EMT's."""
    tries: list[int] = []

    class Flaky(EMT):
        def calculate(self, *args, **kwargs):
            tries.append(1)
            if len(tries) <= fail:
                raise error
            super().calculate(*args, **kwargs)

    return CalculatorOracle(Flaky, name="emt", settings={}), tries


@pytest.mark.parametrize(
    "error",
    [FULL_DISK, BrokenProcessPool("a worker died"), TimeoutError("no answer in 600 s")],
    ids=lambda e: type(e).__name__,
)
def test_transient_error_is_retried_and_stored_once(tmp_path, error):
    inner, tries = _flaky_emt(fail=1, error=error)
    cache = LabelCache(tmp_path / "c.sqlite")
    oracle = CachedOracle(inner, cache, wait=0.0)
    (lab,) = oracle.label(cu_frames(1))
    (ref,) = EMTOracle().label(cu_frames(1))
    assert not lab.failed and lab.energy == ref.energy
    assert len(tries) == 2 and len(cache) == 1
    assert not cache.get(oracle.keys(cu_frames(1))[0]).failed  # stored as the label, not as a failure
    assert [(r.attempt, type(error).__name__ in r.reason) for r in oracle.retries] == [(1, True)]


def test_persistent_transient_error_raises_and_stores_nothing(tmp_path):
    """A full disk on every try: three tries, then the episode stops; the label before it stays stored."""
    good, bad = cu_frames(2)
    inner, tries = _flaky_emt(fail=10**6, error=FULL_DISK)
    cache = LabelCache(tmp_path / "c.sqlite")
    CachedOracle(EMTOracle(), cache).label([good])
    oracle = CachedOracle(inner, cache, attempts=3, wait=0.0)
    with pytest.raises(TransientOracleError, match="failed 3 times.*No space left on device"):
        oracle.label([good, bad])
    assert len(tries) == 3 and len(oracle.retries) == 2
    assert len(cache) == 1  # the earlier label only: no failure was stored for the transient error
    with pytest.raises(OSError, match="No space left"):  # a bare oracle raises it, never a failed label
        inner.label([bad])


def test_backend_setup_error_raises_at_once(tmp_path):
    """An oracle that cannot run at all (ASE's CalculatorSetupError) raises: not retried, not cached."""
    inner, tries = _flaky_emt(fail=10**6, error=CalculatorSetupError("no executable"))
    cache = LabelCache(tmp_path / "c.sqlite")
    with pytest.raises(CalculatorSetupError):
        CachedOracle(inner, cache, wait=0.0).label(cu_frames(1))
    assert len(tries) == 1 and len(cache) == 0


def test_permanent_failure_is_cached_and_charged(tmp_path):
    """EMT has no parameters for uranium: a failed label, stored and served as a failure on a rerun."""
    u2 = Atoms("U2", positions=[[0, 0, 0], [0, 0, 2.5]])
    cache = LabelCache(tmp_path / "c.sqlite")
    (first,) = CachedOracle(EMTOracle(), cache, wait=0.0).label([u2])
    inner = Counting(EMTOracle())
    (again,) = CachedOracle(inner, cache).label([u2])
    assert first.failed and again.failed and again.cached and again.error == first.error
    assert inner.calls == []


def test_configuration_error_raises_before_anything_is_computed(tmp_path, ethanol):
    """The third structure is periodic (xtb-python cannot): nothing of the batch is computed or stored."""
    inner = Counting(XTBOracle())
    cache = LabelCache(tmp_path / "c.sqlite")
    with pytest.raises(ValueError, match="molecules only"):
        CachedOracle(inner, cache).label([ethanol, molecule("H2O"), bulk("Si")])
    assert inner.calls == [] and len(cache) == 0


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"charge": 100}, "charge 100 leaves -80 valence electrons on C2H6O"),
        ({"charge": 20}, "charge 20 leaves 0 valence electrons"),
        ({"uhf": 1}, "has 20 valence electrons, which cannot have 1 unpaired"),
        ({"charge": 1}, "has 19 valence electrons, which cannot have 0 unpaired.*odd"),
        ({"charge": -2, "uhf": 30}, "30 unpaired electrons but C2H6O with charge -2 has 22"),
    ],
)
def test_xtb_impossible_charge_or_spin_raises(tmp_path, ethanol, settings, match):
    """xtb would answer these (charge 100 on ethanol: +1,663 eV; uhf ignored): ValueError before it runs."""
    inner = Counting(XTBOracle(**settings))
    cache = LabelCache(tmp_path / "c.sqlite")
    with pytest.raises(ValueError, match=match):
        CachedOracle(inner, cache).label([ethanol])
    with pytest.raises(ValueError, match=match):
        inner.oracle.label([ethanol])
    assert inner.calls == [] and len(cache) == 0


def test_xtb_open_shell_settings_that_fit_run(ethanol):
    (cation,) = XTBOracle(charge=1, uhf=1).label([ethanol])
    (triplet,) = XTBOracle(uhf=2).label([ethanol])
    assert not cation.failed and not triplet.failed


def test_pyscf_unknown_functional_or_basis_raises_at_construction():
    with pytest.raises(ValueError, match="unknown or unsupported functional xc='PBEE'"):
        PySCFOracle(xc="PBEE")
    with pytest.raises(ValueError, match="unknown basis 'def2-svq'"):
        PySCFOracle(basis="def2-svq")
    with pytest.raises(ValueError, match="max_cycle >= 1"):
        PySCFOracle(max_cycle=0)


def test_pyscf_impossible_spin_or_missing_basis_raises_before_running(tmp_path):
    water = molecule("H2O")
    cache = LabelCache(tmp_path / "c.sqlite")
    with pytest.raises(ValueError, match="has 10 electrons, which cannot have 1 unpaired"):
        CachedOracle(PySCFOracle(basis="sto-3g", spin=1, num_threads=1), cache).label([water])
    with pytest.raises(ValueError, match="charge 10 leaves 0 electrons"):
        CachedOracle(PySCFOracle(basis="sto-3g", charge=10, spin=0, num_threads=1), cache).label([water])
    gold = Atoms("Au2", positions=[[0, 0, 0], [0, 0, 2.5]])
    with pytest.raises(ValueError, match="basis 'sto-3g' has no functions for Au"):
        CachedOracle(PySCFOracle(basis="sto-3g", num_threads=1), cache).label([water, gold])
    assert len(cache) == 0
