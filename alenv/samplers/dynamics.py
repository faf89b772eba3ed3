"""What every MD in the package shares: Langevin settings, bare copies of structures, thermalised starts.

Oracle MD (pool building), model MD (on-the-fly mode) and the speed benchmark all set MD up through these,
so velocities, Langevin parameters and copies are made one way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, ZeroRotation

try:  # ASE >= 3.29
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # older ASE
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    def thermalize_momenta(atoms: Atoms, temperature_K: float, *, rng=None) -> None:
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)


@dataclass(frozen=True)
class MDSettings:
    """Langevin MD settings (fs, K, 1/fs)."""

    timestep: float = 0.5  # fs
    friction: float = 0.01  # 1/fs
    stride: int = 20  # MD steps between kept frames
    equilibration: int = 200  # MD steps before the first kept frame


def bare_copy(atoms: Atoms, **info: float) -> Atoms:
    """A copy with numbers, positions, cell and pbc only (no calculator, constraints or momenta)."""
    a = Atoms(atoms.numbers, atoms.positions.copy(), cell=atoms.cell.array.copy(), pbc=atoms.pbc.copy())
    a.info.update(info)
    return a


def set_velocities(atoms: Atoms, temperature: float, rng: np.random.Generator) -> None:
    """Maxwell-Boltzmann velocities at ``temperature`` K in place, no net momentum (and, for a molecule,
    no net rotation)."""
    thermalize_momenta(atoms, temperature, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)


def thermalise(atoms: Atoms, temperature: float, rng: np.random.Generator) -> Atoms:
    """A bare copy of ``atoms`` with velocities at ``temperature`` K (see ``set_velocities``)."""
    a = bare_copy(atoms)
    set_velocities(a, temperature, rng)
    return a


def langevin(atoms: Atoms, settings: MDSettings, temperature: float, rng: np.random.Generator) -> Langevin:
    """ASE Langevin dynamics of ``atoms`` (calculator attached) with the task's timestep and friction.

    No centre-of-mass constraint: in ASE 3.29 ``FixCom`` changes what ``get_forces()`` returns, which would
    make recorded labels wrong; a slow centre-of-mass drift is harmless here.
    """
    return Langevin(
        atoms,
        timestep=settings.timestep * units.fs,
        temperature_K=temperature,
        friction=settings.friction / units.fs,
        fixcm=False,
        rng=rng,
    )
