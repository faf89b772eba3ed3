"""The Dataset task refuses data it would silently get wrong: each case names the file, the frame and the cause."""

from __future__ import annotations

import ase.io
import gymnasium as gym
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

import alenv  # noqa: F401
from alenv.datasets import rmd17
from alenv.tasks.dataset import HARTREE, BOHR, KCAL_MOL

SMALL = {"pool_size": 30, "test_size": 10, "budget": 10, "batch_size": 5, "reserve_size": 10, "n_initial": 5}


def _write(path, frames, e_scale=1.0, f_scale=1.0, drop=None):
    out = []
    for a in frames:
        b = a.copy()
        b.calc = SinglePointCalculator(b, energy=a.get_potential_energy() * e_scale, forces=a.get_forces() * f_scale)
        out.append(b)
    ase.io.write(path, out, format="extxyz")
    return path


@pytest.fixture(scope="module")
def ethanol(tmp_path_factory):
    d = tmp_path_factory.mktemp("dataset")
    pool = ase.io.read(rmd17("ethanol", "train"), index=":60")
    test = ase.io.read(rmd17("ethanol", "test"), index=":20")
    return d, pool, test, _write(d / "pool.extxyz", pool), _write(d / "test.extxyz", test)


def _make(cache, pool, test, **kw):
    return gym.make("alenv/Dataset-tiny-v3", cache_dir=cache, pool=pool, test=test, **{**SMALL, **kw})


def test_clean_files_run(ethanol, alenv_cache):
    _, _, _, pool, test = ethanol
    _, info = _make(alenv_cache, pool, test).reset(seed=0)
    assert 0.01 < info["metrics"]["force_mae"] < 5.0


def test_another_molecule_as_test_set(ethanol, alenv_cache):
    _, _, _, pool, _ = ethanol
    with pytest.raises(ValueError, match=r"malonaldehyde_test_01.extxyz frame 0 is C3H4O2.*another molecule"):
        _make(alenv_cache, pool, rmd17("malonaldehyde", "test"))


def test_test_element_missing_from_pool(ethanol, alenv_cache):
    d, _, _, pool, test = ethanol
    odd = ase.io.read(test, index=":")
    odd[3].numbers[0] = 7  # a nitrogen where the pool has none
    path = d / "nitrogen.extxyz"
    ase.io.write(path, odd, format="extxyz")
    with pytest.raises(ValueError, match=r"nitrogen.extxyz frame 3 has elements \[7\].*never sees"):
        _make(alenv_cache, pool, path)


@pytest.mark.parametrize(
    "unit, e_scale, f_scale", [("kcal/mol", 1 / KCAL_MOL, 1 / KCAL_MOL), ("Hartree", 1 / HARTREE, BOHR / HARTREE)]
)
def test_files_in_other_units_are_named_and_convert(ethanol, alenv_cache, unit, e_scale, f_scale):
    d, pool_frames, test_frames, _, _ = ethanol
    pool = _write(d / f"pool_{unit[:4]}.extxyz", pool_frames, e_scale, f_scale)
    test = _write(d / f"test_{unit[:4]}.extxyz", test_frames, e_scale, f_scale)
    with pytest.raises(ValueError, match=rf"pool_{unit[:4]}.extxyz: forces have an RMS.*looks like {unit}.*units="):
        _make(alenv_cache, pool, test)
    env = _make(alenv_cache, pool, test, units=unit)
    env.reset(seed=0)
    E, F = env.unwrapped.true_labels()
    ref = {tuple(np.round(a.positions[0], 6)): a for a in pool_frames}
    a = ref[tuple(np.round(env.unwrapped.pool_frames[0].positions[0], 6))]
    # converted back to eV (to the 8 to 10 digits that extxyz keeps)
    assert E[0] == pytest.approx(a.get_potential_energy(), rel=1e-9)
    np.testing.assert_allclose(F[0], a.get_forces(), rtol=1e-6, atol=1e-6)


def test_mixed_units_between_pool_and_test(ethanol, alenv_cache):
    d, _, test_frames, pool, _ = ethanol
    test = _write(d / "test_kjmol_forces.extxyz", test_frames, 1.0, 8.0)  # forces x8, still in the plausible band
    with pytest.raises(ValueError, match=r"differ [0-9.]+-fold between .*pool.extxyz.*test_kjmol_forces.extxyz.*same units"):
        _make(alenv_cache, pool, test)


def test_pool_as_test_set_is_refused(ethanol, alenv_cache):
    _, _, _, pool, _ = ethanol
    with pytest.raises(ValueError, match=r"60 frames of .*pool.extxyz are also in .*unseen.*allow_overlap"):
        _make(alenv_cache, pool, pool)
    _make(alenv_cache, pool, pool, allow_overlap=True)  # on purpose: allowed


def test_unknown_units(ethanol, alenv_cache):
    _, _, _, pool, test = ethanol
    with pytest.raises(ValueError, match="unknown units 'kcal'.*kcal/mol"):
        _make(alenv_cache, pool, test, units="kcal")
