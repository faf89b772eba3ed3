"""A small conformance check for oracles, run over every registered oracle in the tests.

``check_oracle`` asserts the contract (one Label per structure, in order: each one equals the label of the
structure asked alone; shapes, finite values on sane structures, inputs not mutated, a JSON-serialisable
stable fingerprint) and the physics invariants (forces = -dE/dx by central finite differences, translation
invariance). The exact structures it sends to the oracle are given by :func:`conformance_structures`, so a
lookup oracle can be prepared to answer them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
from ase import Atoms

from alenv.oracles.base import Oracle
from alenv.types import Label

TRANSLATION = np.array([0.37, -0.21, 0.53])  # Angstrom


def _fd_coordinates(n_atoms: int, n_coords: int) -> list[tuple[int, int]]:
    """Deterministic (atom, axis) pairs spread over the structure."""
    atoms_idx = np.linspace(0, n_atoms - 1, num=n_coords).round().astype(int)
    return [(int(a), k % 3) for k, a in enumerate(atoms_idx)]


def conformance_structures(structures: Sequence[Atoms], step: float = 1e-3, n_coords: int = 2) -> list[Atoms]:
    """Every structure :func:`check_oracle` labels: the inputs, their +-step displacements, translations."""
    out = [a.copy() for a in structures]
    for atoms in structures:
        for i, k in _fd_coordinates(len(atoms), n_coords):
            for sign in (1.0, -1.0):
                d = atoms.copy()
                d.positions[i, k] += sign * step
                out.append(d)
        t = atoms.copy()
        t.positions += TRANSLATION
        out.append(t)
    return out


def _assert_label(lab: Label, n: int, what: str) -> None:
    assert isinstance(lab, Label), f"{what}: expected a Label, got {type(lab).__name__}"
    assert not lab.failed, f"{what}: failed on a sane structure: {lab.error}"
    assert np.shape(lab.forces) == (n, 3), f"{what}: forces shape {np.shape(lab.forces)}, expected ({n}, 3)"
    assert np.isfinite(lab.energy), f"{what}: non-finite energy {lab.energy}"
    assert np.all(np.isfinite(lab.forces)), f"{what}: non-finite forces"
    assert np.isfinite(lab.seconds) and lab.seconds >= 0, f"{what}: seconds {lab.seconds} not a finite cost >= 0"


def _check_order(oracle: Oracle, structures: list[Atoms], labels: list[Label], who: str, energy_atol: float) -> None:
    """Answers follow the order of the questions and do not depend on what else is in the call."""
    # The answers follow the order of the questions: each structure, labelled alone, gets the label it
    # got in the batch (a batch answered in any other order, reversed for one, fails here as soon as
    # two of its structures differ in energy by more than energy_atol).
    for j, (atoms, lab) in enumerate(zip(structures, labels)):
        alone = oracle.label([atoms])
        assert len(alone) == 1, f"{who}: {len(alone)} labels for 1 structure"
        _assert_label(alone[0], len(atoms), f"{who}, structure {j} alone")
        assert abs(alone[0].energy - lab.energy) <= energy_atol, (
            f"{who}: structure {j} labelled {alone[0].energy} eV alone but {lab.energy} eV as item {j} of a "
            "batch: answers are not in the order of the structures"
        )
    # ... and do not depend on what was labelled before them in the same call.
    rev = oracle.label(structures[::-1])[::-1]
    for j, (a, b) in enumerate(zip(labels, rev)):
        assert abs(a.energy - b.energy) <= energy_atol, (
            f"{who}: structure {j} labelled {a.energy} eV in order and {b.energy} eV in reverse order"
        )


def check_oracle(
    oracle: Oracle,
    structures: Sequence[Atoms],
    *,
    step: float = 1e-3,
    n_coords: int = 2,
    force_atol: float = 1e-3,
    force_rtol: float = 1e-3,
    energy_atol: float = 1e-5,
) -> None:
    """Assert that ``oracle`` honours the Oracle contract on ``structures`` (sane, unique structures;
    give at least two of clearly different energy, so that answers in the wrong order are caught).

    Args:
        step: finite-difference step, Angstrom.
        n_coords: coordinates checked by finite differences per structure.
        force_atol, force_rtol: finite-difference force tolerance, |F_fd - F| <= atol + rtol |F| (eV/Angstrom);
            loosen for backends with numerical noise (SCF convergence, DFT grids).
        energy_atol: tolerance (eV) of energy translation invariance and label-order independence.

    Raises AssertionError with a message saying what broke.
    """
    name = getattr(oracle, "name", None)
    assert isinstance(name, str) and name, f"oracle {oracle!r} needs a non-empty str name"
    who = f"oracle {name!r}"
    fp = oracle.fingerprint()
    assert isinstance(fp, dict), f"{who}: fingerprint() must return a dict"
    try:
        dumped = json.dumps(fp, sort_keys=True)
    except TypeError as exc:
        raise AssertionError(f"{who}: fingerprint is not JSON-serialisable: {exc}") from None
    assert json.dumps(oracle.fingerprint(), sort_keys=True) == dumped, f"{who}: fingerprint() is not stable"

    structures = list(structures)
    assert structures, "check_oracle needs at least one structure"
    before = [(a.numbers.copy(), a.positions.copy(), a.cell.array.copy(), a.pbc.copy()) for a in structures]
    labels = oracle.label(structures)
    assert isinstance(labels, list), f"{who}: label() must return a list, got {type(labels).__name__}"
    assert len(labels) == len(structures), f"{who}: {len(labels)} labels for {len(structures)} structures"
    for j, (atoms, (z, r, c, p)) in enumerate(zip(structures, before)):
        assert (
            np.array_equal(atoms.numbers, z)
            and np.array_equal(atoms.positions, r)
            and np.array_equal(atoms.cell.array, c)
            and np.array_equal(atoms.pbc, p)
        ), f"{who}: label() mutated input structure {j}"
    for j, (atoms, lab) in enumerate(zip(structures, labels)):
        _assert_label(lab, len(atoms), f"{who}, structure {j}")

    if len(structures) > 1:
        _check_order(oracle, structures, labels, who, energy_atol)

    extra = conformance_structures(structures, step=step, n_coords=n_coords)[len(structures) :]
    extra_labels = oracle.label(extra)
    assert len(extra_labels) == len(extra), f"{who}: {len(extra_labels)} labels for {len(extra)} structures"
    pos = 0
    for j, (atoms, lab) in enumerate(zip(structures, labels)):
        n = len(atoms)
        for i, k in _fd_coordinates(n, n_coords):
            plus, minus = extra_labels[pos], extra_labels[pos + 1]
            pos += 2
            _assert_label(plus, n, f"{who}, structure {j} displaced")
            _assert_label(minus, n, f"{who}, structure {j} displaced")
            fd = -(plus.energy - minus.energy) / (2 * step)
            analytic = lab.forces[i, k]
            assert abs(fd - analytic) <= force_atol + force_rtol * abs(analytic), (
                f"{who}, structure {j}: force on atom {i} axis {'xyz'[k]} is {analytic:.6g} eV/A but "
                f"-dE/dx by finite differences is {fd:.6g} eV/A (step {step} A)"
            )
        moved = extra_labels[pos]
        pos += 1
        _assert_label(moved, n, f"{who}, structure {j} translated")
        assert abs(moved.energy - lab.energy) <= energy_atol, (
            f"{who}, structure {j}: energy changes by {moved.energy - lab.energy:.3g} eV under translation"
        )
        assert np.allclose(moved.forces, lab.forces, atol=force_atol, rtol=force_rtol), (
            f"{who}, structure {j}: forces change under translation "
            f"(max {np.abs(moved.forces - lab.forces).max():.3g} eV/A)"
        )
