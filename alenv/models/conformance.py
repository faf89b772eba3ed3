"""A conformance check for potentials, run over every registered model in the tests.

``check_potential`` trains a fresh potential on labelled structures and asserts the contract (shapes,
finite values, ``predict`` on featurised frames equal to single-structure evaluation, the ASE calculator's
mean and spreads) and the physics (forces = -dE/dx by central finite differences for every member;
energy invariant and forces covariant under translation and rotation; invariance under permutation of
like atoms; for periodic cells, invariance under moving an atom by a lattice vector), and that members
differ (a committee whose spread is zero cannot rank candidates).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from ase import Atoms

from alenv.descriptors.representation import Representation
from alenv.models.base import Potential

# Descriptor small enough for a quick check, large enough to be a real AEV (radial and angular terms).
CHECK_DESCRIPTOR = {"radial_shells": 8, "angular_shells": 4, "angle_sections": 4}


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _close(a: np.ndarray, b: np.ndarray, tol: float, what: str) -> None:
    err = float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) if np.size(a) else 0.0
    assert err <= tol, f"{what}: max deviation {err:.3g} > {tol:.3g}"


def _check_fd(pot: Potential, atoms: Atoms, step: float, rtol: float) -> None:
    """Every member's forces against central differences of its energy, on every coordinate."""
    _, F = pot.evaluate_atoms(atoms)
    fd = np.zeros_like(F)
    for i in range(len(atoms)):
        for c in range(3):
            p, m = atoms.copy(), atoms.copy()
            p.positions[i, c] += step
            m.positions[i, c] -= step
            fd[:, i, c] = -(pot.evaluate_atoms(p)[0] - pot.evaluate_atoms(m)[0]) / (2 * step)
    for member in range(len(F)):
        rel = np.linalg.norm(fd[member] - F[member]) / max(np.linalg.norm(F[member]), 1e-12)
        assert rel < rtol, f"member {member}: forces differ from -dE/dx by {rel:.2e} (relative)"


def _check_symmetry(pot: Potential, atoms: Atoms, rng: np.random.Generator, tol_e: float, tol_f: float) -> None:
    E, F = pot.evaluate_atoms(atoms)
    moved = atoms.copy()
    moved.positions += np.array([0.37, -0.21, 0.53])
    Em, Fm = pot.evaluate_atoms(moved)
    _close(Em, E, tol_e, "energy after a translation")
    _close(Fm, F, tol_f, "forces after a translation")
    if not atoms.pbc.any():  # a rotation of a periodic cell changes nothing only with its cell; keep it simple
        R = _rotation(rng)
        rotated = atoms.copy()
        rotated.positions = atoms.positions @ R.T
        Er, Fr = pot.evaluate_atoms(rotated)
        _close(Er, E, tol_e, "energy after a rotation")
        _close(Fr, F @ R.T, tol_f, "forces after a rotation (must rotate with the structure)")
    perm = np.arange(len(atoms))
    for z in np.unique(atoms.numbers):
        same = np.flatnonzero(atoms.numbers == z)
        perm[same] = rng.permutation(same)
    Ep, Fp = pot.evaluate_atoms(atoms[perm])
    _close(Ep, E, tol_e, "energy after permuting like atoms")
    _close(Fp, F[:, perm], tol_f, "forces after permuting like atoms")
    if atoms.pbc.any():
        image = atoms.copy()
        image.positions[0] += image.cell.array[int(np.flatnonzero(atoms.pbc)[0])]
        Ei, Fi = pot.evaluate_atoms(image)
        _close(Ei, E, tol_e, "energy after moving an atom by a lattice vector")
        _close(Fi, F, tol_f, "forces after moving an atom by a lattice vector")


def check_potential(
    make: Callable[[Representation, int], Potential],
    structures: Sequence[Atoms],
    *,
    n_train: int | None = None,
    step: float = 1e-3,
    fd_rtol: float = 2e-3,
    descriptor: dict | None = None,
) -> Potential:
    """Check ``make(representation, seed)`` on labelled ``structures`` (each carrying energy and forces,
    eV and eV/Angstrom, e.g. from an oracle's calculator); returns the trained potential.

    The first ``n_train`` structures (default all but two) train it; the checks run on the others.
    Tolerances allow float32 models: energies to 1e-4 eV, forces to 1e-4 of the largest component.
    """
    frames = list(structures)
    n_train = len(frames) - 2 if n_train is None else n_train
    assert 2 <= n_train < len(frames), "need at least 2 training structures and 1 to check"
    train, held = frames[:n_train], frames[n_train:]
    rep = Representation.for_frames(frames, CHECK_DESCRIPTOR if descriptor is None else descriptor, embedding_dim=4)
    data = rep.featurize(train)
    rep.set_normalisation([data])
    pot = make(rep, 0)
    assert isinstance(pot, Potential), f"{type(pot).__name__} does not follow the Potential protocol"
    E = np.array([a.get_potential_energy() for a in train])
    F = np.stack([a.get_forces() for a in train])
    pot.fit(data, E, F, np.random.default_rng(0))
    M = pot.n_members
    test = pot.prepare(held)
    Ep, Fp = pot.predict(test)
    n = len(held[0])
    assert Ep.shape == (M, len(held)) and Fp.shape == (M, len(held), n, 3), f"shapes {Ep.shape}, {Fp.shape}"
    assert np.all(np.isfinite(Ep)) and np.all(np.isfinite(Fp)), "non-finite predictions"
    tol_f = 1e-4 * max(float(np.abs(Fp).max()), 1.0)
    for k, atoms in enumerate(held):
        Ea, Fa = pot.evaluate_atoms(atoms)
        _close(Ea, Ep[:, k], 1e-4 * max(1.0, float(np.abs(Ea).max()) / 1e3), "predict vs evaluate_atoms energy")
        _close(Fa, Fp[:, k], tol_f, "predict vs evaluate_atoms forces")
    E0, _ = pot.predict(test, forces=False)
    _close(E0, Ep, 1e-4 * max(1.0, float(np.abs(Ep).max()) / 1e3), "energy-only prediction vs the force path")
    rng = np.random.default_rng(1)
    atoms = held[0]
    _check_fd(pot, atoms, step, fd_rtol)
    _check_symmetry(pot, atoms, rng, 1e-4 * max(1.0, abs(float(Ep[0, 0])) / 1e3), tol_f)
    atoms = atoms.copy()
    atoms.calc = pot.as_calculator()
    Ea, Fa = pot.evaluate_atoms(atoms)
    _close(atoms.get_potential_energy(), Ea.mean(), 1e-9, "calculator energy is the members' mean")
    _close(atoms.get_forces(), Fa.mean(0), 1e-9, "calculator forces are the members' mean")
    if M >= 2:
        spread = atoms.calc.get_property("forces_std", atoms)
        assert np.shape(spread) == (n, 3) and float(np.max(spread)) > 0, "members do not differ: no spread"
        assert atoms.calc.get_property("energy_std", atoms) > 0, "members do not differ in energy"
    return pot
