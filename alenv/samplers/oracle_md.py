"""Candidate pools from molecular dynamics driven by the oracle itself.

The benchmark's pool mode needs a fixed set of realistic configurations: Langevin MD with the reference
method at several temperatures, one frame kept every ``stride`` steps. The oracle computed energies and
forces for every kept frame anyway, so those labels are returned too (and later prefill the label cache:
the agent still pays for each label it asks for, at the seconds it originally cost).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from alenv.samplers.dynamics import MDSettings, bare_copy, langevin, set_velocities
from alenv.types import Label


def langevin_frames(
    start: Atoms,
    calculator: Calculator,
    temperature: float,
    n_frames: int,
    settings: MDSettings,
    rng: np.random.Generator,
    on_step: Callable[[int], None] | None = None,
    label_of: Callable[[Atoms], tuple[float, np.ndarray]] | None = None,
) -> tuple[list[Atoms], list[Label]]:
    """Run Langevin MD at ``temperature`` K and keep ``n_frames`` frames with their oracle labels.

    ``label_of(atoms)`` gives the label kept for a frame (energy eV, forces eV/Angstrom) where it is not the
    energy and forces the MD ran on (a bias that only steers sampling); by default it is those.
    Raises RuntimeError naming the temperature and step if the oracle fails during the trajectory (a
    task whose reference MD cannot run is misconfigured).
    """
    if n_frames <= 0:
        return [], []
    atoms = start.copy()  # keeps what the oracle's preparation set (initial charges and magnetic moments)
    atoms.set_constraint()
    atoms.calc = calculator
    set_velocities(atoms, temperature, rng)
    dyn = langevin(atoms, settings, temperature, rng)
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
        if label_of is None:
            energy, forces = atoms.get_potential_energy(), atoms.get_forces(apply_constraint=False)
        else:
            energy, forces = label_of(atoms)
        if not (np.isfinite(energy) and np.all(np.isfinite(forces))):
            raise RuntimeError(f"oracle MD at {temperature} K gave non-finite energy or forces at step {step}")
        frames.append(bare_copy(atoms))
        labels.append(Label(energy=float(energy), forces=np.array(forces, dtype=np.float64, copy=True), seconds=seconds))
    return frames, labels
