"""A conformance check for potentials, run over every registered model in the tests.

``check_potential`` trains a fresh potential on labelled structures and asserts the contract (shapes,
finite values, ``predict`` on featurised frames equal to single-structure evaluation, the ASE calculator's
mean and spreads) and the physics (forces = -dE/dx by central finite differences for every member;
energy invariant and forces covariant under translation and rotation; invariance under permutation of
like atoms; for periodic cells, invariance under moving an atom by a lattice vector), and that members
differ (a committee whose spread is zero cannot rank candidates).

Both layouts of featurised frames are checked: the dense one (frames of one size, with Jacobians) where the
structures have one size, and always the flat one (``FlatFrames``, atoms concatenated, forces by automatic
differentiation) on a ragged batch, where the same physics must hold: energies invariant to translation,
rotation and permutation of like atoms, forces that rotate and permute with the structure, and forces equal
to -dE/dx by central differences of the flat energies. Structures of several sizes train on flat frames.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from ase import Atoms

from alenv import ragged
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


def _transformed(atoms: Atoms, rng: np.random.Generator) -> tuple[list[Atoms], list[np.ndarray], list[np.ndarray]]:
    """Copies of ``atoms`` moved rigidly or with like atoms permuted, with the rotation R (forces of copy
    = F[perm] @ R.T) and permutation of each (the first is ``atoms`` itself)."""
    out, rots, perms = [atoms.copy()], [np.eye(3)], [np.arange(len(atoms))]
    moved = atoms.copy()
    moved.positions += np.array([0.37, -0.21, 0.53])
    out.append(moved), rots.append(np.eye(3)), perms.append(np.arange(len(atoms)))
    if not atoms.pbc.any():
        R = _rotation(rng)
        rotated = atoms.copy()
        rotated.positions = atoms.positions @ R.T
        out.append(rotated), rots.append(R), perms.append(np.arange(len(atoms)))
    perm = np.arange(len(atoms))
    for z in np.unique(atoms.numbers):
        same = np.flatnonzero(atoms.numbers == z)
        perm[same] = rng.permutation(same)
    out.append(atoms[perm]), rots.append(np.eye(3)), perms.append(perm)
    return out, rots, perms


def _check_flat_batch(
    pot: Potential, rep: Representation, held: Sequence[Atoms], rng: np.random.Generator, step: float, fd_rtol: float
) -> None:
    """The flat layout on a ragged batch: predictions against ``evaluate_atoms``, the symmetries of the
    energy and forces, and forces against central differences of the flat energies."""
    base = held[0]
    smaller = base[: len(base) - 1]  # another size in the same batch, whatever the structures
    copies, rots, perms = _transformed(base, rng)
    batch = [base, smaller] + list(held[1:]) + copies[1:]
    data = rep.featurize(batch, layout="flat")
    assert data.layout == "flat"
    E, F = pot.predict(data)
    M, ptr = pot.n_members, data.atom_ptr()
    assert E.shape == (M, len(batch)) and F.shape == (M, int(ptr[-1]), 3), f"flat shapes {E.shape}, {F.shape}"
    assert np.all(np.isfinite(E)) and np.all(np.isfinite(F)), "non-finite flat predictions"
    tol_e = 1e-4 * max(1.0, float(np.abs(E).max()) / 1e3)
    tol_f = 1e-4 * max(float(np.abs(F).max()), 1.0)
    forces = ragged.split(F.transpose(1, 0, 2), ptr)  # per frame (n_f, M, 3)
    for k, atoms in enumerate(batch):
        Ea, Fa = pot.evaluate_atoms(atoms)
        _close(Ea, E[:, k], tol_e, f"flat predict vs evaluate_atoms energy (batch frame {k}, {len(atoms)} atoms)")
        _close(Fa, forces[k].transpose(1, 0, 2), tol_f, f"flat predict vs evaluate_atoms forces (batch frame {k})")
    E0, F0 = pot.predict(data, forces=False)
    assert F0 is None
    _close(E0, E, tol_e, "flat energy-only prediction vs the force path")
    first = 2 + len(held) - 1  # the transformed copies follow base, smaller and the other held frames
    for c, (R, perm) in enumerate(zip(rots[1:], perms[1:])):
        k = first + c
        _close(E[:, k], E[:, 0], tol_e, f"flat energy after a rigid move or permutation (copy {c + 1})")
        _close(forces[k].transpose(1, 0, 2), forces[0].transpose(1, 0, 2)[:, perm] @ R.T, tol_f,
               f"flat forces after a rigid move or permutation (copy {c + 1})")
    # forces = -dE/dx of the flat energies, every coordinate of the smaller frame, in one ragged batch
    shifted = []
    for i in range(len(smaller)):
        for c in range(3):
            for sign in (1.0, -1.0):
                a = smaller.copy()
                a.positions[i, c] += sign * step
                shifted.append(a)
    Es, _ = pot.predict(rep.featurize(shifted + [base], layout="flat"), forces=False)
    fd = -(Es[:, 0:-1:2] - Es[:, 1:-1:2]).reshape(M, len(smaller), 3) / (2 * step)
    Fs = forces[1].transpose(1, 0, 2)
    for member in range(M):
        rel = np.linalg.norm(fd[member] - Fs[member]) / max(np.linalg.norm(Fs[member]), 1e-12)
        assert rel < fd_rtol, f"member {member}: flat forces differ from -dE/dx by {rel:.2e} (relative)"


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
    Structures of one size train on dense frames and are checked in both layouts; structures of several
    sizes train and are checked on flat frames. Tolerances allow float32 models: energies to 1e-4 eV,
    forces to 1e-4 of the largest component.
    """
    frames = list(structures)
    n_train = len(frames) - 2 if n_train is None else n_train
    assert 2 <= n_train < len(frames), "need at least 2 training structures and 1 to check"
    train, held = frames[:n_train], frames[n_train:]
    rep = Representation.for_frames(frames, CHECK_DESCRIPTOR if descriptor is None else descriptor, embedding_dim=4)
    mixed = len({len(a) for a in frames}) > 1
    data = rep.featurize(train, layout="flat" if mixed else "dense")
    rep.set_normalisation([data])
    pot = make(rep, 0)
    assert isinstance(pot, Potential), f"{type(pot).__name__} does not follow the Potential protocol"
    E = np.array([a.get_potential_energy() for a in train])
    forces = [a.get_forces() for a in train]
    F = np.concatenate(forces) if mixed else np.stack(forces)
    pot.fit(data, E, F, np.random.default_rng(0))
    M = pot.n_members
    test = rep.featurize(held, layout="flat") if mixed else pot.prepare(held)
    Ep, Fp = pot.predict(test)
    ptr = test.atom_ptr()
    want = (M, int(ptr[-1]), 3) if test.layout == "flat" else (M, len(held), len(held[0]), 3)
    assert Ep.shape == (M, len(held)) and Fp.shape == want, f"shapes {Ep.shape}, {Fp.shape}"
    assert np.all(np.isfinite(Ep)) and np.all(np.isfinite(Fp)), "non-finite predictions"
    tol_f = 1e-4 * max(float(np.abs(Fp).max()), 1.0)
    for k, atoms in enumerate(held):
        Ea, Fa = pot.evaluate_atoms(atoms)
        Fk = Fp[:, ptr[k] : ptr[k + 1]] if test.layout == "flat" else Fp[:, k]
        _close(Ea, Ep[:, k], 1e-4 * max(1.0, float(np.abs(Ea).max()) / 1e3), "predict vs evaluate_atoms energy")
        _close(Fa, Fk, tol_f, "predict vs evaluate_atoms forces")
    E0, _ = pot.predict(test, forces=False)
    _close(E0, Ep, 1e-4 * max(1.0, float(np.abs(Ep).max()) / 1e3), "energy-only prediction vs the force path")
    if test.layout == "dense":  # the same frames in the flat layout give the same predictions
        Ef, Ff = pot.predict(rep.featurize(held, layout="flat"))
        _close(Ef, Ep, 1e-4 * max(1.0, float(np.abs(Ep).max()) / 1e3), "flat vs dense energies")
        _close(Ff, Fp.reshape(M, -1, 3), tol_f, "flat vs dense forces")
    rng = np.random.default_rng(1)
    atoms = held[0]
    _check_fd(pot, atoms, step, fd_rtol)
    _check_symmetry(pot, atoms, rng, 1e-4 * max(1.0, abs(float(Ep[0, 0])) / 1e3), tol_f)
    _check_flat_batch(pot, rep, held, rng, step, fd_rtol)
    n = len(atoms)
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
