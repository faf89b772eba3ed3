"""Liquid water, periodic: a box of 32 molecules at 1 g/cm3, labelled with GFN2-xTB through tblite.

Why this task: at equal training-set size random sampling matches or beats query by committee on bulk
liquid water (Stolte et al. 2025), so it is the benchmark's negative control for a condensed phase. Pool
and target share one distribution (Langevin MD at 300 K).

How its data is made: GFN2-xTB MD of 96 atoms would cost about 4 s per step here, so the configurations
come from classical Langevin MD with flexible TIP3P (``FlexibleTIP3P``: ASE's TIP3P between molecules,
CHARMM's harmonic O-H bonds and H-O-H angle within them), and the oracle labels reserve, validation and
test frames when the data is built, pool frames when an agent asks for them (the pool is stored
unlabelled). Build labels go through the persistent label cache, so an interrupted build resumes without
paying twice, and episodes reuse the labels of earlier episodes on the same pool. Data seed 0 ships with
the package with every pool frame labelled (``python -m alenv.tasks.ship Water-GFN2``: about 1.3 hours of
one core), so its episodes pay for training only and the true-error references run on it.

xtb-python refuses periodic GFN2-xTB, so the oracle is ``tblite`` (``pip install "alenv[water]"``;
Gamma point only, which is size-consistent for cells of about 9 Angstrom or more: 9.86 here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import all_changes
from ase.calculators.tip3p import TIP3P, angleHOH, rOH
from tqdm.auto import tqdm

from alenv.data import attach_label
from alenv.oracles import CachedOracle, LabelCache, make_oracle
from alenv.samplers.dynamics import MDSettings
from alenv.samplers.oracle_md import langevin_frames
from alenv.tasks.build import TaskData, register_builder, split_evenly
from alenv.tasks.spec import TaskSpec

WATER_MASS = 18.015  # g/mol
# CHARMM's flexible TIP3P (energies K (x - x0)^2): O-H 450 kcal/mol/A^2 at 0.9572 A, H-O-H 55 kcal/mol/rad^2
# at 104.52 degrees. The intermolecular part (charges, O-O Lennard-Jones) is TIP3P's.
K_BOND = 450.0 * units.kcal / units.mol  # eV/A^2
K_ANGLE = 55.0 * units.kcal / units.mol  # eV/rad^2
THETA0 = np.radians(angleHOH)


def box_length(n_molecules: int, density: float = 1.0) -> float:
    """Edge (Angstrom) of the cubic cell holding ``n_molecules`` waters at ``density`` g/cm3."""
    return float((n_molecules * WATER_MASS / units.mol / density * 1e24) ** (1 / 3))


def water_box(rng: np.random.Generator, n_molecules: int = 32, density: float = 1.0) -> Atoms:
    """Molecules (O, H, H each, TIP3P geometry) centred at random sites of a periodic cubic cell, the sites
    at least 2.7 Angstrom apart (minimum image), in random orientations; ``rng`` decides everything."""
    cell = box_length(n_molecules, density)
    half = THETA0 / 2
    shape = np.array([[0.0, 0.0, 0.0], [rOH * np.sin(half), 0.0, rOH * np.cos(half)],
                      [-rOH * np.sin(half), 0.0, rOH * np.cos(half)]])
    sites: list[np.ndarray] = []
    for _ in range(100_000):
        p = rng.uniform(0, cell, 3)
        if all(np.linalg.norm((p - q) - cell * np.round((p - q) / cell)) > 2.7 for q in sites):
            sites.append(p)
            if len(sites) == n_molecules:
                break
    else:
        raise ValueError(f"cannot place {n_molecules} waters 2.7 A apart in a {cell:.2f} A cell")
    positions = []
    for p in sites:
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        positions.append(p + (shape - shape.mean(0)) @ q.T)
    return Atoms("OH2" * n_molecules, positions=np.concatenate(positions), cell=[cell] * 3, pbc=True)


class FlexibleTIP3P(TIP3P):
    """TIP3P between molecules plus harmonic O-H bonds and H-O-H angles within them (eV, Angstrom).

    Atoms must come as O, H, H per molecule with each molecule whole (unwrapped), as MD keeps them. The
    cutoff ``rc`` (Angstrom) must be at most half the cell edge.
    """

    def calculate(self, atoms: Atoms | None = None, properties: list[str] = ["energy"],
                  system_changes: list[str] = all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        R = self.atoms.positions.reshape(-1, 3, 3)
        u, v = R[:, 1] - R[:, 0], R[:, 2] - R[:, 0]
        ru, rv = np.linalg.norm(u, axis=1), np.linalg.norm(v, axis=1)
        energy = K_BOND * ((ru - rOH) ** 2 + (rv - rOH) ** 2).sum()
        fu = (-2 * K_BOND * (ru - rOH) / ru)[:, None] * u  # force on H1 from its bond
        fv = (-2 * K_BOND * (rv - rOH) / rv)[:, None] * v
        cos = np.clip((u * v).sum(1) / (ru * rv), -1.0, 1.0)
        theta = np.arccos(cos)
        energy += K_ANGLE * ((theta - THETA0) ** 2).sum()
        sin = np.maximum(np.sqrt(1 - cos**2), 1e-12)
        # dE/dtheta * dtheta/du with dtheta/du = -(v / (|u||v|) - cos u / |u|^2) / sin
        g = (2 * K_ANGLE * (theta - THETA0) / sin)[:, None]
        fu += g * (v / (ru * rv)[:, None] - cos[:, None] * u / (ru**2)[:, None])
        fv += g * (u / (ru * rv)[:, None] - cos[:, None] * v / (rv**2)[:, None])
        forces = np.zeros_like(R)
        forces[:, 1], forces[:, 2], forces[:, 0] = fu, fv, -(fu + fv)
        self.results["energy"] += energy
        self.results["forces"] = self.results["forces"] + forces.reshape(-1, 3)


def _sampler(cell: float) -> FlexibleTIP3P:
    # the Coulomb cutoff as long as the cell allows (ASE's TIP3P needs rc <= L/2), switched off over 1 A
    return FlexibleTIP3P(rc=min(5.0, cell / 2 - 0.01), width=1.0)


def _water_data(spec: TaskSpec, progress: bool, directory: Path | None, n_molecules: int) -> TaskData:
    """Pool (unlabelled), reserve, validation and test frames of flexible-TIP3P MD; the last three labelled
    by the task's oracle through the label cache beside ``directory`` (``<cache>/labels``)."""
    start = water_box(np.random.default_rng([spec.data_seed, 99]), n_molecules)
    sampler = _sampler(float(start.cell[0, 0]))
    inner = make_oracle(spec.oracle, **spec.oracle_kwargs)
    if directory is not None:
        oracle = CachedOracle(inner, LabelCache(Path(directory).parent.parent / "labels" / f"{inner.name}.sqlite"))
    else:
        oracle = inner
    T = spec.temperatures
    target = spec.target_temperatures or T
    # the same streams as oracle-MD tasks (alenv.tasks.build._md_data): pool 0, reserve 1, test 2, validation 3
    jobs = [("pool", t, c, 0) for t, c in zip(T, split_evenly(spec.pool_size, len(T)))]
    jobs += [("reserve", min(T), spec.reserve_size, 1)]
    jobs += [("test", t, c, 2) for t, c in zip(target, split_evenly(spec.test_size, len(target)))]
    jobs += [("validation", t, c, 3) for t, c in zip(target, split_evenly(spec.validation_size, len(target)))]
    out: dict[str, list[Atoms]] = {"pool": [], "reserve": [], "test": [], "validation": []}
    steps = sum(spec.md.equilibration + c * spec.md.stride for _, _, c, _ in jobs if c > 0)
    with tqdm(total=steps, desc=f"{spec.name}: TIP3P MD", unit="step", disable=not progress, leave=False) as bar:
        for k, (part, t, count, stream) in enumerate(jobs):
            rng = np.random.default_rng([spec.data_seed, stream, k])
            frames, _ = langevin_frames(start, sampler, t, count, spec.md, rng, on_step=bar.update)
            for f in frames:
                f.info["temperature"] = float(t)
            out[part].extend(frames)
    for part in ("reserve", "test", "validation"):
        frames = out[part]
        labelled = []
        for f in tqdm(frames, desc=f"{spec.name}: {inner.name} labels ({part})", unit="frame",
                      disable=not progress, leave=False):
            (label,) = oracle.label([f])
            if label.failed:
                raise RuntimeError(
                    f"{spec.name}: the oracle failed on a {part} frame ({label.error}); the labels already "
                    "made are kept in the label cache: rerun to resume, or change data_seed"
                )
            a = attach_label(f, label)
            a.info["temperature"] = f.info["temperature"]
            labelled.append(a)
        out[part] = labelled
    return TaskData(out["pool"], out["reserve"], out["test"], out["validation"], pool_labelled=False)


@register_builder("water_32", examples=lambda: [water_box(np.random.default_rng(0), 32)])
def water_32(spec: TaskSpec, progress: bool, directory: Path | None = None) -> TaskData:
    """32 molecules (96 atoms) in a 9.86 A cell: the standard box."""
    return _water_data(spec, progress, directory, 32)


@register_builder("water_8", examples=lambda: [water_box(np.random.default_rng(0), 8)])
def water_8(spec: TaskSpec, progress: bool, directory: Path | None = None) -> TaskData:
    """8 molecules (24 atoms) in a 6.21 A cell: for fast tests only (Gamma-point GFN2-xTB is off by about
    15 meV per molecule at this size)."""
    return _water_data(spec, progress, directory, 8)


WATER = TaskSpec(
    name="Water-GFN2",
    version=1,
    description=(
        "Liquid water, periodic: 32 molecules (96 atoms) in a 9.86 A cubic cell (1 g/cm3), GFN2-xTB through "
        "tblite. Pool: 1,000 frames of flexible-TIP3P Langevin MD at 300 K (a frame every 20 fs, after 2 ps), "
        "labelled and shipped for data seed 0 (other data seeds: labelled by the oracle when picked); "
        "validation (50) and test (100) from independent trajectories at 300 K: in distribution, the "
        "negative control where random is expected to match query by committee."
    ),
    history=(
        "v0: first release (the learner and metrics of the v3 tasks).",
        "v1: pool of 1,000 frames (the first 1,000 of v0's), labelled and shipped with the package for data "
        "seed 0; the same reserve, validation and test frames.",
    ),
    system="water_32",
    oracle="tblite",
    temperatures=(300.0,),
    md=MDSettings(timestep=0.5, friction=0.01, stride=40, equilibration=4000),
    pool_size=1000,
    test_size=100,  # x 288 force components each; about 4 s of GFN2-xTB per frame on an idle core
    validation_size=50,
    reserve_size=20,
    budget=100,
    batch_size=10,
    model_kwargs={"batch_size": 4},  # frames of 96 atoms per minibatch
)

ROWS = [WATER]
# The -tiny variant: 8 molecules (GFN2-xTB about 4 times cheaper per frame), shorter strides, a liquid
# equilibrated from the random start before frames are kept.
TINY = {"Water-GFN2": {"system": "water_8", "test_size": 20, "validation_size": 10,
                       "md": MDSettings(timestep=0.5, friction=0.01, stride=20, equilibration=1000)}}
