"""Molecular dynamics driven by the model being trained: the sampler of on-the-fly mode.

Several walkers run Langevin MD (ASE) with an ensemble calculator, each at one of the task's
temperatures. A round runs ``steps_per_round`` steps per walker and keeps a frame every ``stride`` steps
as a candidate. Every step is checked (``alenv.samplers.failures``); a failed walker restarts from a safe
labelled structure with fresh Maxwell-Boltzmann velocities and goes on with the round's remaining steps.
A walker that keeps failing right after its restarts gives up for the round: its remaining candidate
slots stay empty (``None``), which the environment masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.md.langevin import Langevin

from alenv.samplers.dynamics import MDSettings, bare_copy, langevin, thermalise
from alenv.samplers.failures import FailureChecks, MDFailure, check_geometry, check_prediction


@dataclass(frozen=True)
class OTFSettings:
    """On-the-fly mode: walkers, steps, candidates per round, budgets, failure checks and stability test."""

    walkers: int = 4  # independent MD trajectories; walker w runs at temperatures[w % len(temperatures)]
    steps_per_round: int = 200  # MD steps per walker per round
    candidates_per_walker: int = 5  # frames kept per walker per round (every steps_per_round // this steps)
    md_step_budget: int = 40_000  # total model-MD steps (all walkers) of an episode
    max_restarts: int = 5  # restarts of one walker within one round before it gives up for the round
    checks: FailureChecks = FailureChecks()
    bias: float = 0.0  # eV; > 0 turns on uncertainty-biased MD (height of the bias well)
    bias_width: float = 0.02  # eV; energy spread per sqrt(atom) at which the bias takes effect
    stability_starts: int = 4  # fresh starting points (test-set frames) of the stability test
    stability_steps: int = 1000  # MD steps of each stability run (the cap on time to failure)
    stability_every: int = 5  # rounds between stability tests (also at reset and at the episode's end; 0: only then)
    stability_weight: float = 0.0  # reward += weight * fraction of this round's MD steps survived
    # K; the walkers' MD temperatures (walker w at [w % len]); None: the task's temperatures, those of its
    # validation and test sets. Hotter walkers than the target are the control for uncertainty-biased MD.
    walker_temperatures: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.walker_temperatures is not None:
            temps = tuple(float(t) for t in self.walker_temperatures)
            if not temps or any(not t > 0 for t in temps):
                raise ValueError(f"walker_temperatures must be positive temperatures in K, got {temps}")
            object.__setattr__(self, "walker_temperatures", temps)
        if self.walkers <= 0 or self.steps_per_round <= 0 or self.candidates_per_walker <= 0:
            raise ValueError("walkers, steps_per_round and candidates_per_walker must be positive")
        if self.steps_per_round % self.candidates_per_walker:
            raise ValueError(
                f"steps_per_round {self.steps_per_round} must be a multiple of candidates_per_walker "
                f"{self.candidates_per_walker}"
            )
        if self.md_step_budget < self.walkers * self.steps_per_round:
            raise ValueError("md_step_budget is smaller than one round of MD")

    @property
    def n_candidates(self) -> int:
        return self.walkers * self.candidates_per_walker

    @property
    def stride(self) -> int:
        return self.steps_per_round // self.candidates_per_walker


@dataclass
class Walker:
    """One MD trajectory: its current state, temperature and steps since its last (re)start."""

    atoms: Atoms
    temperature: float
    age: int = 0


@dataclass
class RoundResult:
    """What one round of model MD produced.

    ``frames``: walkers * candidates_per_walker slots, walker-major, ``None`` where a walker gave up;
    ``failures``: (walker, step within the round, kind) for each failure; ``survived``: per walker, steps
    run before its first failure of the round (``steps_per_round`` if none); ``steps``: MD steps run.
    ``visited``: every ``stride``-th configuration reached, failed ones excluded (for coverage metrics).
    """

    frames: list[Atoms | None]
    failures: list[tuple[int, int, str]]
    survived: np.ndarray
    steps: int
    visited: list[Atoms] = field(default_factory=list)


class ModelMD:
    """Runs the walkers of on-the-fly mode with a given calculator, checking every step.

    ``energy_window`` (eV/atom, lowest and highest labelled energy per atom) and ``n_fragments_ref`` set
    the failure checks; ``safe_starts`` are the labelled structures a failed walker restarts from.
    """

    def __init__(self, md: MDSettings, settings: OTFSettings):
        self.md = md
        self.settings = settings

    def _dynamics(self, atoms: Atoms, calc: Calculator, temperature: float, rng: np.random.Generator) -> Langevin:
        atoms.calc = calc
        return langevin(atoms, self.md, temperature, rng)

    def _check(self, atoms: Atoms, energy_window: tuple[float, float], n_fragments_ref: int) -> None:
        calc = atoms.calc
        res = calc.results
        energy = res.get("energy_unbiased", res["energy"])
        check_prediction(
            energy, res["forces"], res.get("forces_std"), len(atoms), energy_window, self.settings.checks
        )
        check_geometry(atoms, self.settings.checks, n_fragments_ref)

    def run_steps(
        self,
        walker: Walker,
        calc: Calculator,
        n_steps: int,
        rng: np.random.Generator,
        energy_window: tuple[float, float],
        n_fragments_ref: int,
        on_record: Callable[[int, Atoms], None] | None = None,
        stride: int = 0,
        offset: int = 0,
    ) -> tuple[int, MDFailure | None]:
        """Advance ``walker`` by up to ``n_steps``; stop at the first failure.

        Returns the steps run (the failing one included) and the failure, or None. ``on_record(step,
        atoms)`` is called where ``(offset + step) % stride == 0``, on configurations that passed the checks.
        """
        atoms = walker.atoms
        dyn = self._dynamics(atoms, calc, walker.temperature, rng)
        for step in range(1, n_steps + 1):
            try:
                with np.errstate(all="ignore"):
                    dyn.step()
                    atoms.get_potential_energy()  # cached with the forces of the step
                self._check(atoms, energy_window, n_fragments_ref)
            except MDFailure as exc:
                return step, exc
            except (FloatingPointError, ValueError, RuntimeError) as exc:  # a model that broke down
                return step, MDFailure("non_finite", f"{type(exc).__name__}: {exc}")
            walker.age += 1
            if on_record is not None and stride and (offset + step) % stride == 0:
                on_record(offset + step, atoms)
        return n_steps, None

    def run_round(
        self,
        walkers: list[Walker],
        calc: Calculator,
        rng: np.random.Generator,
        safe_starts: Sequence[Atoms],
        energy_window: tuple[float, float],
        n_fragments_ref: int,
    ) -> RoundResult:
        """One round: every walker runs ``steps_per_round`` steps; failed ones restart from ``safe_starts``."""
        s = self.settings
        per = s.candidates_per_walker
        frames: list[Atoms | None] = [None] * (len(walkers) * per)
        failures: list[tuple[int, int, str]] = []
        survived = np.full(len(walkers), s.steps_per_round, dtype=np.int64)
        visited: list[Atoms] = []
        steps_total = 0
        for w, walker in enumerate(walkers):

            def record(round_step: int, atoms: Atoms, w: int = w) -> None:
                snap = bare_copy(
                    atoms, walker=w, temperature=walkers[w].temperature, round_step=round_step,
                    energy_std=float(atoms.calc.results.get("energy_std", np.nan)),
                )
                frames[w * per + round_step // s.stride - 1] = snap
                visited.append(snap)

            done, restarts, first = 0, 0, True
            while done < s.steps_per_round:
                n, failure = self.run_steps(
                    walker, calc, s.steps_per_round - done, rng, energy_window, n_fragments_ref,
                    on_record=record, stride=s.stride, offset=done,
                )
                steps_total += n
                done += n
                if failure is None:
                    break
                failures.append((w, done, failure.kind))
                if first:
                    survived[w] = done - 1
                    first = False
                restarts += 1
                if restarts > s.max_restarts or not safe_starts:
                    break
                start = safe_starts[int(rng.integers(len(safe_starts)))]
                walker.atoms = thermalise(start, walker.temperature, rng)
                walker.age = 0
        return RoundResult(frames, failures, survived, steps_total, visited)

    def time_to_failure(
        self,
        starts: Sequence[Atoms],
        temperatures: Sequence[float],
        calc: Calculator,
        n_steps: int,
        rng: np.random.Generator,
        energy_window: tuple[float, float],
        n_fragments_ref: int,
    ) -> tuple[np.ndarray, list[str]]:
        """The stability test: MD from each start (start i at ``temperatures[i % len]``) for up to
        ``n_steps``; the steps each run survived (``n_steps`` if it never failed) and the failure kinds."""
        survived = np.empty(len(starts), dtype=np.int64)
        kinds: list[str] = []
        for i, start in enumerate(starts):
            T = float(temperatures[i % len(temperatures)])
            walker = Walker(thermalise(start, T, rng), T)
            n, failure = self.run_steps(walker, calc, n_steps, rng, energy_window, n_fragments_ref)
            survived[i] = n if failure is None else n - 1
            if failure is not None:
                kinds.append(failure.kind)
        return survived, kinds
