"""Malonaldehyde proton transfer with GFN2-xTB: a reactive target shift and its in-distribution control.

Enol malonaldehyde (HO-CH=CH-CH=O, 9 atoms) holds its hydroxyl proton in an intramolecular hydrogen bond and
can pass it to the other oxygen. The reaction coordinate is ``delta = d(O_a-H) - d(O_b-H)`` (Angstrom): about
-0.72 in the GFN2-xTB minimum the structures start from, 0 at the symmetric transition state (0.163 eV
higher) and +0.72 in the mirror-image minimum.

GFN2-xTB's barrier is low enough that plain Langevin MD transfers the proton on its own (measured in 10 ps at
300, 500, 700, 1000 K: 1, 8, 10 and 14 transfers, with 0.2, 1.1, 1.3 and 1.7% of frames at |delta| < 0.2).
So the pool, the reserve and the control's target run oracle MD with a flat-bottom wall that keeps the proton
on its own oxygen (``delta <= -0.5``; at 300 K plain MD has 5% of its frames beyond that). The transfer
target runs umbrella-restrained oracle MD in windows of delta from one minimum to the other. Bias potentials
only steer sampling: every stored label is the oracle's own, unbiased energy and forces at the frame.

Every random stream is seeded from ``spec.data_seed``; the pool and reserve of the two tasks use the same
streams, so at equal settings and data seed they are the same frames. Changing a constant below changes the
data: bump the tasks' ``data_version``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.optimize import BFGS
from tqdm.auto import tqdm

from alenv.data import attach_label
from alenv.oracles import make_oracle
from alenv.samplers.dynamics import MDSettings
from alenv.samplers.oracle_md import langevin_frames
from alenv.tasks.build import TaskData, register_builder, split_evenly
from alenv.tasks.spec import TaskSpec
from alenv.types import Label

# Enol malonaldehyde at its GFN2-xTB minimum (planar, Cs), centre of mass at the origin, Angstrom.
_ENOL = """
C -1.186600 -0.464889 0.000000
C -0.002752 -1.128283 0.000000
C 1.226902 -0.389289 0.000000
O -1.302729 0.840660 0.000000
O 1.296004 0.834202 0.000000
H -0.378940 1.222056 0.000000
H -2.137179 -0.988540 0.000000
H 0.025727 -2.202893 0.000000
H 2.149696 -0.991711 0.000000
"""
O_A, O_B, H_T = 3, 4, 5  # the hydroxyl oxygen (donor) in the start structure, the acceptor, the proton

WALL = -0.5  # Angstrom: pool, reserve and control target keep delta <= WALL (flat-bottom harmonic wall)
K_WALL = 20.0  # eV/Angstrom^2
WINDOWS = (-0.8, -0.6, -0.4, -0.2, 0.0, 0.2, 0.4, 0.6, 0.8)  # umbrella centres of the transfer target, Angstrom
K_UMBRELLA = 5.0  # eV/Angstrom^2


def enol_malonaldehyde() -> Atoms:
    """Enol malonaldehyde (C3H4O2) at its GFN2-xTB minimum, proton on atom ``O_A`` (delta about -0.72 A)."""
    rows = [line.split() for line in _ENOL.strip().splitlines()]
    return Atoms([r[0] for r in rows], positions=[[float(x) for x in r[1:]] for r in rows])


def proton_coordinate(atoms: Atoms) -> float:
    """The transfer coordinate ``delta = d(O_a-H) - d(O_b-H)`` of a malonaldehyde frame, Angstrom."""
    if atoms.get_chemical_symbols() != list("CCCOOHHHH"):
        raise ValueError(
            f"proton_coordinate needs a malonaldehyde frame ordered as enol_malonaldehyde() (C C C O O H H H H), "
            f"got {atoms.get_chemical_formula()} ordered {''.join(atoms.get_chemical_symbols())}"
        )
    return _delta(atoms.positions)[0]


def _delta(positions: np.ndarray) -> tuple[float, np.ndarray]:
    """delta and its gradient with respect to all positions (n, 3)."""
    va = positions[H_T] - positions[O_A]
    vb = positions[H_T] - positions[O_B]
    da, db = np.linalg.norm(va), np.linalg.norm(vb)
    grad = np.zeros_like(positions)
    grad[H_T] = va / da - vb / db
    grad[O_A] = -va / da
    grad[O_B] = vb / db
    return float(da - db), grad


@dataclass(frozen=True)
class Restraint:
    """A harmonic bias on delta: ``k/2 (delta - centre)^2`` (eV; k in eV/Angstrom^2, centre in Angstrom).

    ``upper_wall=True`` makes it flat-bottomed: zero for ``delta <= centre``, so it only pushes delta back
    below ``centre``.
    """

    centre: float
    k: float
    upper_wall: bool = False

    def __post_init__(self) -> None:
        if not self.k > 0:
            raise ValueError(f"a restraint needs a positive force constant k (eV/Angstrom^2), got {self.k}")

    def __call__(self, positions: np.ndarray) -> tuple[float, np.ndarray]:
        """Bias energy (eV) and forces (n, 3) (eV/Angstrom) at ``positions``."""
        delta, grad = _delta(positions)
        x = delta - self.centre
        if self.upper_wall and x <= 0.0:
            return 0.0, np.zeros_like(positions)
        return 0.5 * self.k * x * x, -self.k * x * grad


class RestrainedCalculator(Calculator):
    """The oracle's calculator plus a bias on delta, for steering MD only.

    MD sees oracle + bias; ``unbiased`` holds the oracle's own (energy, forces) of the last calculation,
    computed exactly as the oracle labels a structure (calculator reset first, no state carried over).
    """

    implemented_properties = ["energy", "forces"]

    def __init__(self, oracle_calculator: Calculator, restraint: Restraint) -> None:
        super().__init__()
        self.oracle_calculator = oracle_calculator
        self.restraint = restraint
        self.unbiased: tuple[float, np.ndarray] | None = None

    def calculate(self, atoms: Atoms | None = None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        a = self.atoms.copy()  # keeps the oracle's preparation (initial charges and magnetic moments)
        self.oracle_calculator.reset()
        a.calc = self.oracle_calculator
        try:
            energy = float(a.get_potential_energy())
            forces = np.array(a.get_forces(), dtype=np.float64)
        finally:
            a.calc = None
        bias_energy, bias_forces = self.restraint(a.positions)
        self.unbiased = (energy, forces)
        self.results = {"energy": energy + bias_energy, "forces": forces + bias_forces}


def restrained_frames(
    start: Atoms,
    calculator: Calculator,
    restraint: Restraint,
    temperature: float,
    n_frames: int,
    settings: MDSettings,
    rng: np.random.Generator,
    on_step: Callable[[int], None] | None = None,
) -> tuple[list[Atoms], list[Label]]:
    """Langevin MD at ``temperature`` K under ``restraint``; ``n_frames`` frames, one every ``settings.stride``
    steps after ``settings.equilibration``, each with the oracle's unbiased label.

    Raises RuntimeError naming the temperature, restraint and step if the oracle fails.
    """
    restrained = RestrainedCalculator(calculator, restraint)

    def unbiased(atoms: Atoms) -> tuple[float, np.ndarray]:
        atoms.get_forces()  # the calculator's last calculation is at these positions (cached or computed now)
        return restrained.unbiased

    try:
        return langevin_frames(start, restrained, temperature, n_frames, settings, rng, on_step, label_of=unbiased)
    except RuntimeError as exc:
        raise RuntimeError(f"restrained oracle MD ({restraint}): {exc}") from exc


def window_name(centre: float) -> str:
    """Subset tag of an umbrella window: ``delta=-0.4``, ``delta=+0.0``, ..."""
    return f"delta={centre + 0.0:+.1f}"


def _window_starts(start: Atoms, calculator: Calculator) -> dict[float, Atoms]:
    """A start structure per window: a relaxed scan (BFGS under each window's restraint, from the previous
    window's optimum outwards from the start structure), so equilibration only thermalises."""
    d0 = proton_coordinate(start)
    starts: dict[float, Atoms] = {}
    current = start.copy()
    for centre in sorted(WINDOWS, key=lambda c: abs(c - d0)):
        current.calc = RestrainedCalculator(calculator, Restraint(centre, K_UMBRELLA))
        BFGS(current, logfile=None).run(fmax=0.05, steps=200)
        current.calc = None
        starts[centre] = current.copy()
    return starts


def _build(spec: TaskSpec, progress: bool, transfer: bool) -> TaskData:
    oracle = make_oracle(spec.oracle, **spec.oracle_kwargs)
    start = enol_malonaldehyde()
    start = oracle.prepare(start) if hasattr(oracle, "prepare") else start
    calc = oracle.calculator
    T = spec.temperatures
    wall = Restraint(WALL, K_WALL, upper_wall=True)
    # pool and reserve: the same streams in both tasks (jobs 0 .. len(T)), as in alenv.tasks.build._md_data
    jobs = [("pool", t, c, 0, wall, start) for t, c in zip(T, split_evenly(spec.pool_size, len(T)))]
    jobs += [("reserve", min(T), spec.reserve_size, 1, wall, start)]
    if transfer:  # umbrella windows at the lowest pool temperature (or target_temperatures): a shift in delta only
        target_t = spec.target_temperatures or (min(T),)
        cells = [(c, t) for c in WINDOWS for t in target_t]
        for what, n in (("test_size", spec.test_size), ("validation_size", spec.validation_size)):
            if n < len(cells):
                raise ValueError(
                    f"{spec.name}: {what} {n} is smaller than the {len(WINDOWS)} umbrella windows x "
                    f"{len(target_t)} temperature(s) of the transfer target; each window needs a frame"
                )
        starts = _window_starts(start, calc)
        for part, stream, n in (("test", 2, spec.test_size), ("validation", 3, spec.validation_size)):
            jobs += [(part, t, k, stream, Restraint(c, K_UMBRELLA), starts[c]) for (c, t), k in zip(cells, split_evenly(n, len(cells)))]
    else:
        target_t = spec.target_temperatures or T
        for part, stream, n in (("test", 2, spec.test_size), ("validation", 3, spec.validation_size)):
            jobs += [(part, t, k, stream, wall, start) for t, k in zip(target_t, split_evenly(n, len(target_t)))]
    total = sum(spec.md.equilibration + job[2] * spec.md.stride for job in jobs if job[2] > 0)
    out: dict[str, list[Atoms]] = {"pool": [], "reserve": [], "test": [], "validation": []}
    bar = tqdm(total=total, desc=f"{spec.name}: oracle MD", unit="step", disable=not progress, leave=False)
    try:
        for k, (part, t, count, stream, restraint, first) in enumerate(jobs):
            rng = np.random.default_rng([spec.data_seed, stream, k])
            frames, labels = restrained_frames(first, calc, restraint, t, count, spec.md, rng, on_step=bar.update)
            for f, lab in zip(frames, labels):
                a = attach_label(f, lab)
                a.info["temperature"] = float(t)
                a.info["delta"] = proton_coordinate(a)
                if not restraint.upper_wall:
                    a.info["subset"] = window_name(restraint.centre)
                out[part].append(a)
    finally:
        bar.close()
    return TaskData(out["pool"], out["reserve"], out["test"], out["validation"])


def _examples() -> list[Atoms]:
    return [enol_malonaldehyde()]


@register_builder("malonaldehyde", examples=_examples)
def malonaldehyde_data(spec: TaskSpec, progress: bool, directory: Path | None = None) -> TaskData:
    """Pool, reserve, validation and test set from wall-restrained oracle MD near the enol minimum."""
    return _build(spec, progress, transfer=False)


@register_builder("malonaldehyde_transfer", examples=_examples)
def malonaldehyde_transfer_data(spec: TaskSpec, progress: bool, directory: Path | None = None) -> TaskData:
    """Pool and reserve as ``malonaldehyde_data``; validation and test set in umbrella windows along delta."""
    return _build(spec, progress, transfer=True)


_MD = MDSettings(timestep=0.5, friction=0.01, stride=20, equilibration=200)
_HISTORY = ("v0: first release (the learner and metrics of the v3 tasks).",)

ROWS: list[TaskSpec] = [
    TaskSpec(
        name="Malonaldehyde-GFN2",
        version=0,
        description=(
            "Enol malonaldehyde with GFN2-xTB near equilibrium. Pool: 2,000 frames of oracle Langevin MD at 300 "
            "and 500 K with a flat-bottom wall keeping the proton on its oxygen (delta = d(O_a-H) - d(O_b-H) <= "
            "-0.5 A; plain MD transfers it: 1 and 8 times in 10 ps at 300 and 500 K); validation and test set "
            "from independent trajectories of the same MD (in distribution). Control of "
            "Malonaldehyde-GFN2-Transfer."
        ),
        history=_HISTORY,
        system="malonaldehyde",
        oracle="xtb",
        temperatures=(300.0, 500.0),
        md=_MD,
    ),
    TaskSpec(
        name="Malonaldehyde-GFN2-Transfer",
        version=0,
        description=(
            "Enol malonaldehyde with GFN2-xTB, trained near equilibrium and tested along the proton transfer. "
            "Pool and reserve as Malonaldehyde-GFN2 (delta = d(O_a-H) - d(O_b-H) <= -0.5 A, 300 and 500 K); "
            "validation and test set from umbrella-restrained oracle MD at 300 K in 9 windows of delta from -0.8 "
            "to +0.8 A (subsets delta=-0.8 ... delta=+0.8; the transition state is at 0, 0.163 eV up), labelled "
            "with the unbiased oracle energies and forces (a target shift along a reaction coordinate). "
            "In-distribution control: Malonaldehyde-GFN2."
        ),
        history=_HISTORY,
        system="malonaldehyde_transfer",
        oracle="xtb",
        temperatures=(300.0, 500.0),
        md=_MD,
    ),
]
