"""Candidate pools from molecular dynamics driven by the oracle itself.

The benchmark's pool mode needs a fixed set of realistic configurations: Langevin MD with the reference
method at several temperatures, one frame kept every ``stride`` steps. The oracle computed energies and
forces for every kept frame anyway, so those labels are returned too (and later prefill the label cache:
the agent still pays for each label it asks for, at the seconds it originally cost).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation

from alenv.types import Label


@dataclass(frozen=True)
class MDSettings:
    """Langevin MD settings (fs, K, 1/fs)."""

    timestep: float = 0.5  # fs
    friction: float = 0.01  # 1/fs
    stride: int = 20  # MD steps between kept frames
    equilibration: int = 200  # MD steps before the first kept frame


def langevin_frames(
    start: Atoms,
    calculator: Calculator,
    temperature: float,
    n_frames: int,
    settings: MDSettings,
    rng: np.random.Generator,
    on_step: Callable[[int], None] | None = None,
) -> tuple[list[Atoms], list[Label]]:
    """Run Langevin MD at ``temperature`` K and keep ``n_frames`` frames with their oracle labels.

    Raises RuntimeError naming the temperature and step if the oracle fails during the trajectory (a
    task whose reference MD cannot run is misconfigured).
    """
    if n_frames <= 0:
        return [], []
    atoms = start.copy()
    # No FixCom constraint: in ASE 3.29 it changes what get_forces() returns (by up to 3 eV/A for ethanol),
    # which would make the recorded labels wrong. A slow centre-of-mass drift is harmless here.
    atoms.set_constraint()
    atoms.calc = calculator
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)
    dyn = Langevin(
        atoms,
        timestep=settings.timestep * units.fs,
        temperature_K=temperature,
        friction=settings.friction / units.fs,
        fixcm=False,
        rng=rng,
    )
    frames: list[Atoms] = []
    labels: list[Label] = []
    step = 0

    def run(n: int) -> float:
        nonlocal step
        t0 = time.perf_counter()
        try:
            dyn.run(n)
        except Exception as exc:  # the backend's own error type varies
            raise RuntimeError(
                f"oracle MD failed at {temperature} K after {step} steps: {type(exc).__name__}: {exc}"
            ) from exc
        step += n
        if on_step is not None:
            on_step(n)
        return (time.perf_counter() - t0) / max(n, 1)

    run(settings.equilibration)
    for _ in range(n_frames):
        seconds = run(settings.stride)
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces(apply_constraint=False)
        if not (np.isfinite(energy) and np.all(np.isfinite(forces))):
            raise RuntimeError(f"oracle MD at {temperature} K gave non-finite energy or forces at step {step}")
        frame = Atoms(atoms.numbers, atoms.positions.copy(), cell=atoms.cell.array.copy(), pbc=atoms.pbc.copy())
        frames.append(frame)
        labels.append(Label(energy=float(energy), forces=np.array(forces, dtype=np.float64), seconds=seconds))
    return frames, labels
