"""Ensemble potential: forces = -dE/dx, calculator, invariances, determinism, training and input checks."""

from __future__ import annotations

import dataclasses
import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from scipy.spatial.transform import Rotation

from alenv.datasets import rmd17
from alenv.descriptors.aev import AEVSpec
from alenv.descriptors.representation import FeaturizedFrames, Representation
from alenv.models.ensemble import EnsembleConfig, EnsemblePotential

RMD17 = str(rmd17("ethanol", "train"))
SPEC = AEVSpec(species=(1, 6, 8), radial_shells=8, angular_shells=4, angle_sections=4)
CONFIG = EnsembleConfig(n_members=3, hidden=(16, 16), epochs_initial=30, epochs_per_round=10, min_steps=0)


def _labels(frames: list[Atoms]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([a.get_potential_energy() for a in frames]), np.stack([a.get_forces() for a in frames])


@pytest.fixture(scope="module")
def frames() -> list[Atoms]:
    return ase.io.read(RMD17, index=":12")


@pytest.fixture(scope="module")
def trained(frames) -> tuple[EnsemblePotential, FeaturizedFrames]:
    pot = EnsemblePotential(Representation(SPEC), CONFIG, seed=0)
    data = FeaturizedFrames(frames[:8], pot.aev)
    E, F = _labels(frames[:8])
    pot.fit(data, E, F, np.random.default_rng(0))
    return pot, data


# forces = -dE/dx by finite differences, every member: check_potential (tests/models/test_potential_conformance.py)


def test_predict_equals_autograd_evaluation(trained, frames):
    pot, _ = trained
    test = FeaturizedFrames(frames[8:], pot.aev)
    E, F = pot.predict(test)
    M = CONFIG.n_members
    assert E.shape == (M, 4) and F.shape == (M, 4, 9, 3)
    assert E.dtype == np.float64 and F.dtype == np.float64
    for k, atoms in enumerate(frames[8:]):
        Ea, Fa = pot.evaluate_atoms(atoms)
        # float32 networks: 1e-5 relative accumulation error, evaluated along two different code paths.
        np.testing.assert_allclose(Ea, E[:, k], rtol=0, atol=1e-4)
        np.testing.assert_allclose(Fa, F[:, k], rtol=0, atol=1e-4 * np.abs(Fa).max())
    # Energy-only prediction agrees with the force path.
    E2, F2 = pot.predict(test, forces=False)
    assert F2 is None
    np.testing.assert_allclose(E2, E, rtol=0, atol=1e-4)


def test_predict_keeps_input_atom_order(trained, frames):
    """Frames with atoms in another order (element-sorted rows inside) give permuted forces, same energy."""
    pot, _ = trained
    atoms = frames[9]
    perm = np.random.default_rng(4).permutation(len(atoms))
    data = FeaturizedFrames([atoms, atoms[perm]], pot.aev)
    E, F = pot.predict(data)
    tol = 1e-4 * np.abs(F).max()
    np.testing.assert_allclose(E[:, 1], E[:, 0], rtol=0, atol=1e-4)
    np.testing.assert_allclose(F[:, 1], F[:, 0][:, perm], rtol=0, atol=tol)
    # Frames of different composition (same atom count) take the gather path instead of element blocks.
    other = atoms.copy()
    other.numbers[other.numbers == 8] = 6
    mixed = FeaturizedFrames([other, atoms[perm]], pot.aev)
    assert mixed.blocks is None
    Em, Fm = pot.predict(mixed)
    np.testing.assert_allclose(Em[:, 1], E[:, 1], rtol=0, atol=1e-4)
    np.testing.assert_allclose(Fm[:, 1], F[:, 1], rtol=0, atol=tol)
    Eo, Fo = pot.evaluate_atoms(other)
    np.testing.assert_allclose(Fm[:, 0], Fo, rtol=0, atol=1e-4 * np.abs(Fo).max())
    np.testing.assert_allclose(Em[:, 0], Eo, rtol=0, atol=1e-4)


def test_calculator_reports_ensemble_mean_and_spread(trained, frames):
    pot, _ = trained
    atoms = frames[10].copy()
    atoms.calc = pot.as_calculator()
    E, F = pot.evaluate_atoms(atoms)
    assert atoms.get_potential_energy() == pytest.approx(E.mean(), abs=1e-9)
    np.testing.assert_allclose(atoms.get_forces(), F.mean(0), rtol=0, atol=1e-9)
    calc = atoms.calc
    assert calc.get_property("energy_std", atoms) == pytest.approx(E.std(), abs=1e-9)
    np.testing.assert_allclose(calc.get_property("forces_std", atoms), F.std(0), rtol=0, atol=1e-9)
    assert calc.get_property("energy_std", atoms) > 0  # members differ
    assert calc.get_property("forces_std", atoms).shape == (9, 3)
    # Moving an atom invalidates the cached results.
    e0 = atoms.get_potential_energy()
    atoms.positions[0, 0] += 0.05
    assert atoms.get_potential_energy() != pytest.approx(e0, abs=1e-6)


def test_energy_invariant_forces_covariant(trained, frames):
    pot, _ = trained
    atoms = frames[11]
    E, F = pot.evaluate_atoms(atoms)
    R = Rotation.random(random_state=1).as_matrix()
    moved = atoms.copy()
    moved.positions = atoms.positions @ R.T + np.array([2.0, -1.0, 7.5])
    Em, Fm = pot.evaluate_atoms(moved)
    tol = 1e-4 * np.abs(F).max()  # float32
    np.testing.assert_allclose(Em, E, rtol=0, atol=1e-4)
    np.testing.assert_allclose(Fm, F @ R.T, rtol=0, atol=tol)
    # Permutation of like atoms (swap the two carbons and shuffle the hydrogens).
    z = atoms.numbers
    perm = np.arange(len(atoms))
    c, hyd = np.flatnonzero(z == 6), np.flatnonzero(z == 1)
    perm[c] = c[::-1]
    perm[hyd] = np.random.default_rng(2).permutation(hyd)
    Ep, Fp = pot.evaluate_atoms(atoms[perm])
    np.testing.assert_allclose(Ep, E, rtol=0, atol=1e-4)
    np.testing.assert_allclose(Fp, F[:, perm], rtol=0, atol=tol)


def _weights(pot: EnsemblePotential) -> list[torch.Tensor]:
    return [p.detach().clone() for p in pot.parameters()]


def test_same_seed_and_rng_give_identical_weights(frames):
    """Initial weights come from ``seed``, minibatch order from ``rng``: both fixed -> bit-identical results."""
    E, F = _labels(frames[:6])
    config = dataclasses.replace(CONFIG, batch_size=2)  # several minibatches, so the order matters
    pots = []
    for seed, rng_seed in [(3, 5), (3, 5), (4, 5), (3, 6)]:
        pot = EnsemblePotential(Representation(SPEC), config, seed=seed)
        data = FeaturizedFrames(frames[:6], pot.aev)
        pot.fit(data, E, F, np.random.default_rng(rng_seed), epochs=5)
        pots.append((pot, data))
    (a, da), (b, db), (c, _), (d, _) = pots
    for wa, wb in zip(_weights(a), _weights(b)):
        assert torch.equal(wa, wb)
    Ea, Fa = a.predict(da)
    Eb, Fb = b.predict(db)
    np.testing.assert_array_equal(Ea, Eb)
    np.testing.assert_array_equal(Fa, Fb)
    assert any(not torch.equal(wa, wc) for wa, wc in zip(_weights(a), _weights(c)))  # other seed
    assert any(not torch.equal(wa, wd) for wa, wd in zip(_weights(a), _weights(d)))  # other minibatch order
    # Untrained: the seed alone decides the weights.
    w3, w3b, w4 = (_weights(EnsemblePotential(Representation(SPEC), CONFIG, seed=s)) for s in (3, 3, 4))
    assert all(torch.equal(x, y) for x, y in zip(w3, w3b))
    assert any(not torch.equal(x, y) for x, y in zip(w3, w4))
    # Members of one ensemble start from different weights (else the spread would be zero).
    W0 = a.layers[0][0][0]
    assert not torch.equal(W0[0], W0[1])


def _train_force_rmse(pot: EnsemblePotential, data: FeaturizedFrames, F: np.ndarray) -> float:
    _, Fp = pot.predict(data)
    return float(np.sqrt(((Fp.mean(0) - F) ** 2).mean()))


def test_warm_started_fit_reduces_training_loss(frames):
    pot = EnsemblePotential(Representation(SPEC), CONFIG, seed=1)
    data = FeaturizedFrames(frames[:8], pot.aev)
    E, F = _labels(frames[:8])
    rng = np.random.default_rng(0)
    pot.fit(data, E, F, rng, epochs=20)
    before = _train_force_rmse(pot, data, F)
    baseline = pot.element_energy.clone()
    scale = pot.energy_scale
    weights = [p.detach().clone() for p in pot.parameters()]
    optimizer = pot.optimizer
    n_updates = pot.n_updates
    first = pot.fit(data, E, F, rng, epochs=1)
    moved = [(p.detach() - w).abs().max().item() for p, w in zip(pot.parameters(), weights)]
    assert max(moved) < 0.05 * max(w.abs().max().item() for w in weights)  # continued from the weights held
    assert pot.optimizer is not optimizer  # with a fresh optimiser state
    out = pot.fit(data, E, F, rng, epochs=39)
    assert torch.equal(pot.element_energy, baseline) and pot.energy_scale == scale
    assert pot.n_updates == n_updates + first["steps"] + out["steps"] and out["steps"] >= 39
    after = _train_force_rmse(pot, data, F)
    assert after < 0.9 * before, (before, after)


def test_fit_rejects_bad_labels(frames):
    pot = EnsemblePotential(Representation(SPEC), CONFIG, seed=0)
    data = FeaturizedFrames(frames[:4], pot.aev)
    E, F = _labels(frames[:4])
    rng = np.random.default_rng(0)
    E_nan = E.copy()
    E_nan[1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pot.fit(data, E_nan, F, rng)
    F_inf = F.copy()
    F_inf[2, 3, 1] = np.inf
    with pytest.raises(ValueError, match="NaN"):
        pot.fit(data, E, F_inf, rng)
    with pytest.raises(ValueError, match="shape"):
        pot.fit(data, E[:3], F, rng)
    with pytest.raises(ValueError, match="shape"):
        pot.fit(data, E, F[:, :8], rng)
    with pytest.raises(ValueError, match="shape"):
        pot.fit(data, E[:2], F[:2], rng, idx=np.array([0, 1, 2]))
    with pytest.raises(ValueError):
        pot.fit(data, E[:0], F[:0], rng, idx=np.array([], dtype=np.int64))
    assert pot.optimizer is None  # nothing was trained by the rejected calls


def test_forces_need_jacobian(frames):
    pot = EnsemblePotential(Representation(SPEC), CONFIG, seed=0)
    data = FeaturizedFrames(frames[:2], pot.aev, jacobian=False)
    E, _ = pot.predict(data, forces=False)
    assert E.shape == (CONFIG.n_members, 2)
    with pytest.raises(ValueError, match="Jacobian"):
        pot.predict(data)


def test_mixed_atom_counts_raise(frames):
    pot = EnsemblePotential(Representation(SPEC), CONFIG, seed=0)
    with pytest.raises(ValueError, match="same number of atoms"):
        FeaturizedFrames([frames[0], molecule("CH4"), frames[1]], pot.aev)


def test_mixed_atom_counts_raise_clearly_across_chunks(frames):
    pot = EnsemblePotential(Representation(SPEC), CONFIG, seed=0)
    with pytest.raises(ValueError, match="same number of atoms"):
        FeaturizedFrames([frames[0], frames[1], molecule("CH4")], pot.aev, chunk=2)
