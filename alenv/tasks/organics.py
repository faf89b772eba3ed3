"""Organics-GFN2: a dozen small organic molecules of different sizes in one pool, labelled by GFN2-xTB.

Twelve closed-shell molecules of the G2 set (``ase.build.molecule``), 3 to 12 atoms of H, C, N and O, one
of each functional group a small organic data set has: water, ammonia, an alkane, alcohols, a nitrile, an
amine, an aldehyde, a carboxylic acid, an amide, a ketone and an ether. Every part of the data (pool,
reserve, validation, test) is split evenly over the molecules, then over the temperatures, and every
(part, molecule, temperature) cell is its own oracle Langevin MD trajectory, seeded by the task's
``data_seed``: pool and target come from the same distribution but independent trajectories. Each frame
is tagged ``info["subset"] = <molecule>`` (and ``info["temperature"]``), so ``test_metrics()`` reports
each molecule's errors (``force_mae[CH3COOH]``, ...).

The frames differ in size, so the environment takes the flat layout (``choose_layout``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import molecule
from tqdm.auto import tqdm

from alenv.data import attach_label
from alenv.oracles import make_oracle
from alenv.samplers.dynamics import MDSettings
from alenv.samplers.oracle_md import langevin_frames
from alenv.tasks.build import TaskData, register_builder, split_evenly
from alenv.tasks.spec import TaskSpec

# G2 names (ase.build.molecule), by size: 3, 4, 5, 6, 6, 7, 7, 8, 9, 9, 10 and 12 atoms. No linear
# molecule (HCN, C2H2): removing the rotation of a linear molecule's starting velocities is ill-defined.
MOLECULES: tuple[str, ...] = (
    "H2O",  # water
    "NH3",  # ammonia
    "CH4",  # methane
    "CH3OH",  # methanol
    "CH3CN",  # acetonitrile
    "H3CNH2",  # methylamine
    "CH3CHO",  # acetaldehyde
    "CH3COOH",  # acetic acid
    "CH3CH2OH",  # ethanol
    "CH3CONH2",  # acetamide
    "CH3COCH3",  # acetone
    "CH3CH2OCH3",  # methyl ethyl ether
)

# The data streams of each part (the same numbers as the single-molecule MD tasks use).
_STREAMS = {"pool": 0, "reserve": 1, "test": 2, "validation": 3}


def organic_molecules() -> list[Atoms]:
    """One structure of each molecule of the task (G2 geometry, ``info["subset"]`` its name), unlabelled."""
    out = []
    for name in MOLECULES:
        atoms = molecule(name)
        atoms.info["subset"] = name
        out.append(atoms)
    return out


def cell_counts(total: int, n_molecules: int, n_temperatures: int) -> list[list[int]]:
    """Frames of each (molecule, temperature) cell: ``total`` split evenly over the molecules, then each
    molecule's share over the temperatures.

    The remainder goes to the first molecules; within a molecule it is rotated by the molecule's index, so
    that no temperature is always the one short of a frame (a small part, such as a tiny task's test set,
    still covers every molecule before any molecule gets a second temperature).
    """
    if total < 0 or n_molecules <= 0 or n_temperatures <= 0:
        raise ValueError(
            f"need total >= 0 frames over at least one molecule and temperature, got total={total}, "
            f"n_molecules={n_molecules}, n_temperatures={n_temperatures}"
        )
    return [
        np.roll(split_evenly(count, n_temperatures), m).tolist() for m, count in enumerate(split_evenly(total, n_molecules))
    ]


def _jobs(spec: TaskSpec) -> list[tuple[str, int, int, float, int]]:
    """``(part, molecule index, temperature index, temperature K, frames)`` of every trajectory to run."""
    pool_t = tuple(spec.temperatures)
    target_t = tuple(spec.target_temperatures or spec.temperatures)
    # The reserve (initial labels) comes from the lowest temperature, as a practitioner's first data would.
    parts = (
        ("pool", spec.pool_size, pool_t),
        ("reserve", spec.reserve_size, (min(pool_t),)),
        ("test", spec.test_size, target_t),
        ("validation", spec.validation_size, target_t),
    )
    jobs = []
    for part, total, temps in parts:
        for m, counts in enumerate(cell_counts(total, len(MOLECULES), len(temps))):
            jobs += [(part, m, i, float(t), c) for i, (t, c) in enumerate(zip(temps, counts)) if c > 0]
    return jobs


@register_builder("organics", examples=organic_molecules)
def organics_data(spec: TaskSpec, progress: bool, directory: Path | None = None) -> TaskData:
    """Pool, reserve, test and validation frames of every molecule by oracle Langevin MD (labels attached).

    Each trajectory's generator is seeded with ``(data_seed, part stream, molecule, temperature index)``:
    the same data seed gives the same data, another gives other trajectories.
    """
    if not spec.temperatures:
        raise ValueError("the organics task needs at least one temperature (K)")
    oracle = make_oracle(spec.oracle, **spec.oracle_kwargs)
    calc = oracle.calculator
    # the oracle's own preparation (charge, spin, checks) applies to MD too
    starts = [oracle.prepare(a) if hasattr(oracle, "prepare") else a for a in organic_molecules()]
    md: MDSettings = spec.md
    jobs = _jobs(spec)
    total = sum(md.equilibration + c * md.stride for *_, c in jobs)
    out: dict[str, list[Atoms]] = {p: [] for p in _STREAMS}
    bar = tqdm(total=total, desc=f"{spec.name}: oracle MD", unit="step", disable=not progress, leave=False)
    try:
        for part, m, i, t, count in jobs:
            rng = np.random.default_rng([spec.data_seed, _STREAMS[part], m, i])
            try:
                frames, labels = langevin_frames(starts[m], calc, t, count, md, rng, on_step=bar.update)
            except RuntimeError as exc:
                raise RuntimeError(f"{spec.name}: {MOLECULES[m]} {part}: {exc}") from exc
            for f, lab in zip(frames, labels):
                a = attach_label(f, lab)
                a.info["subset"] = MOLECULES[m]
                a.info["temperature"] = t
                out[part].append(a)
    finally:
        bar.close()
    return TaskData(out["pool"], out["reserve"], out["test"], out["validation"])


ROWS: list[TaskSpec] = [
    TaskSpec(
        name="Organics-GFN2",
        version=0,
        description=(
            f"{len(MOLECULES)} small organic molecules of 3 to 12 atoms (H, C, N, O; G2 set: "
            f"{', '.join(MOLECULES)}) in one pool, with GFN2-xTB. Pool: 2,000 frames of oracle Langevin MD at "
            "300, 600 and 1000 K, split evenly over molecules and temperatures; validation (200) and test set "
            "(500) from independent trajectories at the same temperatures; initial labels from a 300 K reserve "
            "(50). Test errors per molecule (subset = G2 name)."
        ),
        history=("v0: first release.",),
        system="organics",
        oracle="xtb",
        temperatures=(300.0, 600.0, 1000.0),
        md=MDSettings(timestep=0.5, friction=0.01, stride=20, equilibration=200),
    ),
]
