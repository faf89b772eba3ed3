"""Peak memory of a task, this code next to an earlier revision's, side by side in one run.

    python -m benchmarks.memory                                  # rMD17 aspirin, 1,000 + 1,000 frames
    python -m benchmarks.memory --before e0916f0                 # also the code at that revision
    python -m benchmarks.memory --molecule ethanol --rounds 2
    python -m benchmarks.memory --molecule water                 # 96-atom periodic water box, 2,000-frame pool
    python -m benchmarks.memory --layout flat                    # aspirin on the flat layout

Each measurement runs in a fresh process: it builds the Dataset task on the shipped rMD17 molecule (the
1,000 training frames as pool, the 1,000 test frames as test set; validation drawn from the pool), plays
``--rounds`` rounds of random picks, and prints its peak resident memory (``ru_maxrss``), the seconds to
build the task and per round, its layout and which reference sets it streamed. ``--before REV`` checks REV
out into a temporary git worktree and measures it the same way, alternating with the current code. The
target for aspirin is a peak under 2.5 GB (the dense descriptor Jacobians of 2,000 frames of 21 atoms are
2.5 GB).

``--molecule water`` measures a condensed phase: 32 rigid TIP3P water molecules (96 atoms) in a periodic
cubic cell of 9.86 Angstrom (1 g/cm^3). Its frames come from Langevin MD at 300 K with ASE's TIP3P
calculator (``rc`` 4.5 Angstrom, molecules kept rigid by RATTLE), labelled with TIP3P's energies and
unconstrained forces: a classical force field, good enough to measure memory and time, not a reference
potential energy surface. 2,750 frames are made once and cached (``--water-dir``): a pool file of 2,250
(pool 2,000, reserve 50, validation 200) and a test file of 500. Dense Jacobians of these frames would take
39 GB; the task takes the flat layout (``alenv.descriptors.flat``). The target is a peak under 4 GB. The
ensemble trains with ``--model-kwargs`` (default for water: 4 frames per minibatch, short fits), since a
flat training step on 96-atom frames costs seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

from benchmarks.worktree import ROOT, checkout

CHILD = r"""
import json, resource, sys, time
import numpy as np, gymnasium as gym
import alenv
from alenv.datasets import rmd17
from alenv.tasks import get_task
molecule, rounds, files, extra = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
pool, test = files or (str(rmd17(molecule, "train")), str(rmd17(molecule, "test")))
t0 = time.perf_counter()
settings = {"reserve_size": 10, "n_initial": 10, "budget": 20 * rounds, "batch_size": 20, **extra}
env = gym.make(get_task("Dataset").id, pool=pool, test=test, wall_times=True, **settings)
build = time.perf_counter() - t0
rng = np.random.default_rng(0)
obs, info = env.reset(seed=0)
per_round = []
done = False
while not done:
    t1 = time.perf_counter()
    picks = np.flatnonzero(obs["mask"])
    action = np.sort(rng.choice(picks, size=info["max_picks"], replace=False))
    obs, _, done, _, info = env.step(action)
    env.unwrapped.test_metrics()  # as the benchmark harness does every round
    per_round.append(time.perf_counter() - t1)
u = env.unwrapped
print(json.dumps({"peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "build_s": build,
                  "round_s": per_round, "streamed": sorted(getattr(u, "streamed", ())),
                  "layout": getattr(u, "layout", "dense"), "pool": u.n_pool, "atoms": sorted({len(a) for a in u.pool_frames}),
                  "timings": info.get("timings", {})}))
"""

WATER_MOLECULES = 32
WATER_FRAMES = {"pool": 2250, "test": 500}


def water_box(rng: np.random.Generator, n_mol: int = WATER_MOLECULES) -> Atoms:
    """Rigid TIP3P molecules at random sites of a periodic cubic cell at 1 g/cm^3 (``alenv.tasks.water``)."""
    from alenv.tasks.water import water_box as box

    return box(rng, n_mol)


class _RigidWater:
    """RATTLE for rigid water (atoms O, H, H per molecule, molecules kept whole): ASE's FixBondLengths,
    with the bonds of one kind (O-H1, O-H2, H1-H2) of all molecules updated at once instead of one by one."""

    def __init__(self, atoms: Atoms, tolerance: float = 1e-10):
        n = len(atoms) // 3
        self.kinds = [(3 * np.arange(n) + a, 3 * np.arange(n) + b) for a, b in ((0, 1), (0, 2), (1, 2))]
        self.lengths = [np.linalg.norm(atoms.positions[a] - atoms.positions[b], axis=1) for a, b in self.kinds]
        self.tolerance = tolerance

    def get_removed_dof(self, atoms: Atoms) -> int:
        return 3 * (len(atoms) // 3)

    def adjust_positions(self, atoms: Atoms, new: np.ndarray) -> None:
        old, masses = atoms.positions, atoms.get_masses()
        for _ in range(500):
            done = True
            for (a, b), cd in zip(self.kinds, self.lengths):
                d0 = old[a] - old[b]
                d1 = new[a] - new[b]
                m = 1 / (1 / masses[a] + 1 / masses[b])
                x = 0.5 * (cd**2 - (d1 * d1).sum(1)) / (d0 * d1).sum(1)
                new[a] += (x * m / masses[a])[:, None] * d0
                new[b] -= (x * m / masses[b])[:, None] * d0
                done &= bool(np.all(np.abs(x) <= self.tolerance))
            if done:
                return
        raise RuntimeError("RATTLE (positions) did not converge")

    def adjust_momenta(self, atoms: Atoms, p: np.ndarray) -> None:
        old, masses = atoms.positions, atoms.get_masses()
        for _ in range(500):
            done = True
            for (a, b), cd in zip(self.kinds, self.lengths):
                d = old[a] - old[b]
                dv = p[a] / masses[a][:, None] - p[b] / masses[b][:, None]
                m = 1 / (1 / masses[a] + 1 / masses[b])
                x = -(dv * d).sum(1) / cd**2
                p[a] += (x * m)[:, None] * d
                p[b] -= (x * m)[:, None] * d
                done &= bool(np.all(np.abs(x) <= self.tolerance))
            if done:
                return
        raise RuntimeError("RATTLE (momenta) did not converge")

    def adjust_forces(self, atoms: Atoms, forces: np.ndarray) -> None:
        self.adjust_momenta(atoms, forces)

    def todict(self) -> dict:
        return {"name": "RigidWater"}

    def copy(self) -> "_RigidWater":
        return self


def water_frames(n_frames: int, rng: np.random.Generator, stride: int = 10, equilibration: int = 2000) -> list[Atoms]:
    """Frames of Langevin MD at 300 K (1 fs steps) of a rigid TIP3P water box, labelled with TIP3P's energy
    and unconstrained forces."""
    from ase import units
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.calculators.tip3p import TIP3P
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    atoms = water_box(rng)
    atoms.constraints = [_RigidWater(atoms)]
    atoms.calc = TIP3P(rc=4.5)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=rng)
    md = Langevin(atoms, 1.0 * units.fs, temperature_K=300, friction=0.01 / units.fs, fixcm=False, rng=rng)
    md.run(equilibration)
    out = []
    for _ in range(n_frames):
        md.run(stride)
        frame = Atoms(atoms.numbers, atoms.positions.copy(), cell=atoms.cell.array.copy(), pbc=True)
        frame.calc = SinglePointCalculator(
            frame, energy=atoms.get_potential_energy(), forces=atoms.get_forces(apply_constraint=False)
        )
        out.append(frame)
    return out


def water_files(directory: Path) -> tuple[str, str]:
    """The water pool and test files (made once: two independent MD runs)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {part: directory / f"water96_tip3p_{part}.extxyz" for part in WATER_FRAMES}
    for k, (part, n) in enumerate(WATER_FRAMES.items()):
        if not paths[part].exists():
            t0 = time.perf_counter()
            frames = water_frames(n, np.random.default_rng([11, k]))
            ase.io.write(paths[part], frames, format="extxyz")
            print(f"made {n} water frames ({part}) in {time.perf_counter() - t0:.0f} s: {paths[part]}", flush=True)
    return str(paths["pool"]), str(paths["test"])


# Settings of the water measurement: pool 2,000 (the file's 2,250 less reserve 50 and validation 200), the
# ensemble trained on 4 frames per minibatch and for a few steps per fit (a flat step on 96 atoms costs seconds)
WATER_SETTINGS = {"reserve_size": 50, "validation_size": 200, "n_initial": 10}
WATER_MODEL = {"batch_size": 4, "min_steps": 20, "epochs_initial": 1, "epochs_per_round": 1}


def run(code: Path, molecule: str, rounds: int, files: tuple[str, str] | None = None, extra: dict | None = None) -> dict:
    """Measure in a fresh process importing alenv from ``code``."""
    env = {**os.environ, "PYTHONPATH": str(code), "ALENV_TORCH_THREADS": os.environ.get("ALENV_TORCH_THREADS", "1")}
    args = [molecule, str(rounds), json.dumps(files), json.dumps(extra or {})]
    out = subprocess.run([sys.executable, "-c", CHILD, *args], env=env, cwd=code, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"measurement with {code} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--molecule", default="aspirin", help="an rMD17 molecule, or 'water' (TIP3P box, see above)")
    p.add_argument("--water-dir", default=str(Path(tempfile.gettempdir()) / "alenv_water96"),
                   help="where the water frames are made once and kept")
    p.add_argument("--layout", default=None, choices=["auto", "dense", "flat"], help="the descriptor's layout setting")
    p.add_argument("--model-kwargs", default=None, help="JSON model settings (water default: %s)" % json.dumps(WATER_MODEL))
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--before", default=None, help="git revision to measure beside the current code")
    p.add_argument("--repeats", type=int, default=1, help="alternating measurements of each")
    args = p.parse_args()
    files, extra = None, {}
    if args.molecule == "water":
        files = water_files(Path(args.water_dir))
        extra = {**WATER_SETTINGS, "model_kwargs": WATER_MODEL}
    if args.model_kwargs is not None:
        extra["model_kwargs"] = json.loads(args.model_kwargs)
    if args.layout is not None:
        extra["descriptor"] = {"layout": args.layout}
    codes = {"current": ROOT}
    with ExitStack() as stack:
        if args.before:
            codes = {f"before ({args.before})": stack.enter_context(checkout(args.before)), **codes}
        rows = []
        for _ in range(args.repeats):
            for name, code in codes.items():
                res = run(code, args.molecule, args.rounds, files, extra)
                rows.append((name, res))
                print(f"{name:>22}: peak {res['peak_gb']:.2f} GB, build {res['build_s']:.1f} s, rounds "
                      f"{', '.join(f'{s:.1f}' for s in res['round_s'])} s, layout {res.get('layout', 'dense')}, "
                      f"streamed {res['streamed'] or 'none'}", flush=True)
    print(json.dumps([{"code": n, **r} for n, r in rows], indent=1))


if __name__ == "__main__":
    main()
