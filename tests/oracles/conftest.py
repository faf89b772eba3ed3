"""Small systems shared by the oracle tests."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.cluster import Icosahedron


def cu_bulk() -> Atoms:
    """8-atom Cu cell, slightly rattled so forces are non-zero."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.05, seed=1)
    return atoms


def cu_cluster() -> Atoms:
    atoms = Icosahedron("Cu", 2)
    atoms.rattle(0.05, seed=2)
    return atoms


def ar_cluster() -> Atoms:
    atoms = Icosahedron("Ar", 2, latticeconstant=5.3)
    atoms.rattle(0.05, seed=3)
    return atoms


def water_box(n_side: int, a: float, seed: int = 0) -> Atoms:
    """``n_side**3`` water molecules on a cubic grid in a periodic cubic cell of edge ``a`` Angstrom.

    Each molecule (ASE's gas-phase geometry) sits at the centre of its grid cell, turned by a random angle
    about a random axis drawn from ``np.random.default_rng(seed)``: the same box for the same arguments.
    ``water_box(2, 6.2)`` is 8 molecules at 1.00 g/cm3.
    """
    rng = np.random.default_rng(seed)
    water = molecule("H2O")
    water.translate(-water.get_center_of_mass())
    box = Atoms(cell=[a, a, a], pbc=True)
    spacing = a / n_side
    for i in range(n_side):
        for j in range(n_side):
            for k in range(n_side):
                m = water.copy()
                m.rotate(rng.uniform(0.0, 360.0), rng.normal(size=3))
                m.translate((np.array([i, j, k]) + 0.5) * spacing)
                box += m
    return box


@pytest.fixture
def ethanol() -> Atoms:
    return molecule("CH3CH2OH")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def cu_frames(n: int) -> list[Atoms]:
    """``n`` different rattles of the 8-atom Cu cell."""
    frames = []
    for seed in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
        atoms.rattle(0.05, seed=100 + seed)
        frames.append(atoms)
    return frames


class Counting:
    """Passes through to a real oracle and records what it was asked: batch sizes and the structures."""

    def __init__(self, oracle):
        self.oracle, self.calls, self.asked = oracle, [], []
        self.name = oracle.name

    def fingerprint(self):
        return self.oracle.fingerprint()

    def check(self, structures):
        self.oracle.check(structures)

    def label(self, structures):
        self.calls.append(len(structures))
        self.asked += [a.copy() for a in structures]
        return self.oracle.label(structures)
