"""The Dataset task's data: the user's labelled pool and test files, checked before anything trains on them.

A labelled file can be wrong in ways that still "run": another molecule in the test set, an element the pool
never shows, energies in kcal/mol or Hartree, pool and test mixed up or overlapping. Each is refused here
with the file, the frame and the likely cause; units can be converted explicitly (``units=``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from alenv.data import frame_labels, read_labelled_frames, subset_of
from alenv.oracles.lookup import structure_key
from alenv.tasks.spec import TaskSpec

# Conversion of (energy, force) to (eV, eV/Angstrom) for each accepted ``units`` value.
BOHR = 0.529177210903  # Angstrom
HARTREE = 27.211386245988  # eV
KCAL_MOL = 0.0433641043  # eV
KJ_MOL = 0.0103642697  # eV
UNITS: dict[str, tuple[float, float]] = {
    "eV": (1.0, 1.0),
    "kcal/mol": (KCAL_MOL, KCAL_MOL),
    "kJ/mol": (KJ_MOL, KJ_MOL),
    "Hartree": (HARTREE, HARTREE / BOHR),
}
# Plausible root-mean-square force component of a labelled set, eV/Angstrom: MD frames of molecules and
# materials lie between about 0.2 and 3; outside this range the units are the likely cause (a set of nearly
# relaxed structures in eV can fall below: units="eV" takes it as it is).
FORCE_RMS_RANGE = (0.1, 10.0)


def _likely_unit(force_rms: float) -> str:
    if force_rms > FORCE_RMS_RANGE[1]:
        return "kJ/mol" if force_rms > 60 else "kcal/mol"
    return "Hartree"


def target_frames(frames: Sequence[Atoms], subsets: Sequence[str], path: str | None) -> list[Atoms]:
    """The frames of ``subsets`` (``alenv.data.subset_of``), in file order; ValueError naming the subsets the
    file has (with their frame counts) when one of them has no frames."""
    have = Counter(subset_of(a) for a in frames)
    missing = [s for s in subsets if not have.get(s)]
    if missing:
        listed = ", ".join(f"{k} ({n} frames)" for k, n in sorted(have.items(), key=lambda kv: str(kv[0])))
        raise ValueError(
            f"{path}: target subset(s) {missing} have no frames; its subsets (subset or config_type tags, "
            f"else T=<t>K) are: {listed or 'none'}"
        )
    return [a for a in frames if subset_of(a) in set(subsets)]


def check_units(frames: Sequence[Atoms], forces: np.ndarray | Sequence[np.ndarray], path: str) -> float:
    """The RMS force component (eV/Angstrom) of a file read as eV; ValueError naming the likely unit when it
    is implausible for eV/Angstrom. ``forces`` (F, n, 3), or one (n_f, 3) array per frame. Frames without
    forces (NaN rows) are left out; with none, NaN (no check)."""
    per_frame = [np.asarray(f) for f in forces]
    rows = np.flatnonzero([np.isfinite(f).all() for f in per_frame])
    if len(rows) == 0:
        return float("nan")
    values = np.concatenate([per_frame[i].reshape(-1) for i in rows])
    rms = float(np.sqrt(np.mean(values**2)))
    lo, hi = FORCE_RMS_RANGE
    if not lo <= rms <= hi and rms > 0:
        largest = np.array([np.abs(per_frame[i]).max() for i in rows])
        worst = int(rows[np.argmax(largest if rms > hi else -largest)])
        unit = _likely_unit(rms)
        raise ValueError(
            f"{path}: forces have an RMS of {rms:.3g} per component (frame {worst} is the most extreme), outside "
            f"the {lo}-{hi} eV/Angstrom that labelled frames have; this looks like {unit}. Pass units="
            f"'{unit}' to convert (known: {', '.join(UNITS)}), or units='eV' to take the values as they are"
        )
    return rms


def _relabel(frames: list[Atoms], energies: np.ndarray, forces: Sequence[np.ndarray]) -> list[Atoms]:
    for atoms, e, f in zip(frames, energies, forces):
        if np.all(np.isfinite(f)):
            atoms.calc = SinglePointCalculator(atoms, energy=float(e), forces=f)
        else:  # an energy-only frame stays one
            atoms.calc = SinglePointCalculator(atoms, energy=float(e))
    return frames


def read_in_ev(path: str, units: str, forces_required: bool = True) -> list[Atoms]:
    """Frames of a labelled extxyz with energies and forces in eV and eV/Angstrom.

    ``units="auto"`` reads the values as eV and refuses implausible force magnitudes (judged on the frames
    with forces); a name of ``UNITS`` converts from that unit without a check. Without ``forces_required``
    (validation and test files) energy-only frames are kept as they are: they count in energy errors only.
    A pool file needs forces on every frame, since the model trains on them.
    """
    if units != "auto" and units not in UNITS:
        raise ValueError(f"unknown units {units!r}; known: 'auto', {', '.join(repr(u) for u in UNITS)}")
    frames, E, F, _ = read_labelled_frames(path, forces_required=False)  # frames may differ in size
    has = np.array([np.isfinite(f).all() for f in F], dtype=bool)
    if forces_required and not has.all():
        i = int(np.flatnonzero(~has)[0])
        raise ValueError(
            f"{path} frame {i} has no forces (eV/Angstrom): pool frames are trained on and the model learns from "
            f"forces ({int((~has).sum())} of {len(frames)} frames have only an energy). Energy-only frames (bond "
            "scans, normal-mode paths) can go into the validation or test file, where they count in energy errors"
        )
    if units == "auto":
        check_units(frames, F, path)
        return frames
    e_scale, f_scale = UNITS[units]
    return _relabel(frames, E * e_scale, [f * f_scale for f in F])


def _force_rms(frames: Sequence[Atoms]) -> float:
    """RMS force component (eV/Angstrom) over the frames that carry forces; NaN if none does."""
    forces = [f for f in (frame_labels(a)[1] for a in frames) if f is not None]
    return float(np.sqrt(np.mean([np.mean(f**2) for f in forces]))) if forces else float("nan")


def check_pair(pool: Sequence[Atoms], test: Sequence[Atoms], spec: TaskSpec) -> None:
    """Refuse a test set that the pool cannot serve: unseen elements, another molecule than a pool of one
    composition holds, mixed units, overlap. A pool of several compositions (frames of several sizes or
    molecules) may be tested on any composition of its elements."""
    pool_elements = {int(z) for a in pool for z in a.numbers}
    pool_formulas = Counter(a.get_chemical_formula() for a in pool)
    for i, atoms in enumerate(test):
        missing = sorted({int(z) for z in atoms.numbers} - pool_elements)
        if missing:
            raise ValueError(
                f"{spec.test_path} frame {i} has elements {missing} that no frame of {spec.pool_path} has; "
                "a potential cannot learn an element it never sees"
            )
        if len(pool_formulas) == 1 and atoms.get_chemical_formula() not in pool_formulas:
            raise ValueError(
                f"{spec.test_path} frame {i} is {atoms.get_chemical_formula()}, a composition that no frame of "
                f"{spec.pool_path} has (it holds {', '.join(sorted(pool_formulas))}): is it another molecule?"
            )
    f_pool, f_test = _force_rms(pool), _force_rms(test)  # NaN (no comparison) where a file has only energies
    if np.isfinite(f_pool) and np.isfinite(f_test) and max(f_pool, f_test) > 5 * min(f_pool, f_test):
        raise ValueError(
            f"force magnitudes differ {max(f_pool, f_test) / min(f_pool, f_test):.1f}-fold between "
            f"{spec.pool_path} (RMS {f_pool:.3g}) and {spec.test_path} (RMS {f_test:.3g}): are they in the same units?"
        )
    if not spec.allow_overlap:
        keys = {structure_key(a): j for j, a in enumerate(pool)}
        shared = [(i, keys[k]) for i, k in enumerate(structure_key(a) for a in test) if k in keys]
        if shared:
            i, j = shared[0]
            raise ValueError(
                f"{len(shared)} frames of {spec.test_path} are also in {spec.pool_path} (e.g. test frame {i} = pool "
                f"frame {j}): a test set must be unseen. Pass allow_overlap=True to measure on them anyway"
            )


def dataset_data(spec: TaskSpec) -> tuple[list[Atoms], list[Atoms], list[Atoms], list[Atoms]]:
    """Pool, reserve (initial labels), test and validation frames of the Dataset task, in eV and checked.

    The validation set comes from ``validation_path``, or else ``validation_size`` frames drawn (seeded)
    from the pool file and removed from the pool; never from the test file. Pool frames need forces; test
    and validation files may hold energy-only frames (force errors count the others), but a validation set
    needs some frames with forces: its force errors drive the observation and the reward.
    """
    if spec.pool_path is None or spec.test_path is None:
        raise ValueError(
            "the Dataset task needs labelled extxyz files: gymnasium.make('alenv/Dataset-v3', pool=PATH, test=PATH)"
        )
    pool = read_in_ev(spec.pool_path, spec.units)
    test = read_in_ev(spec.test_path, spec.units, forces_required=False)
    check_pair(pool, test, spec)
    validation = None
    if spec.validation_path is not None:
        validation = read_in_ev(spec.validation_path, spec.units, forces_required=False)
        if not any(frame_labels(a)[1] is not None for a in validation):
            raise ValueError(
                f"{spec.validation_path}: no frame has forces (all {len(validation)} have only an energy); the "
                f"validation force errors drive the observation (log10_force_mae) and the reward "
                f"({spec.reward!r}), so a validation set needs frames with forces. Energy-only frames "
                "may stand beside them (they count in energy errors), or go into the test file"
            )
        check_pair(pool, validation, dataclasses.replace(spec, test_path=spec.validation_path))
        check_pair(test, validation, dataclasses.replace(spec, pool_path=spec.test_path, test_path=spec.validation_path))
    if spec.target_subsets is not None:
        if validation is None:
            raise ValueError(
                f"target_subsets {list(spec.target_subsets)} needs a validation file with frames of those subsets "
                "(validation=PATH): a validation set drawn from the pool would reward the pool's distribution, "
                "not the target's"
            )
        test = target_frames(test, spec.target_subsets, spec.test_path)
        validation = target_frames(validation, spec.target_subsets, spec.validation_path)
    n_val = 0 if validation is not None else spec.validation_size
    need = spec.reserve_size + spec.budget + n_val
    if len(pool) < need:
        raise ValueError(
            f"{spec.pool_path} has {len(pool)} frames; reserve_size {spec.reserve_size} + budget {spec.budget} "
            + (f"+ validation_size {n_val} " if n_val else "") + f"= {need} are needed"
        )
    if spec.reserve_size < spec.n_initial:
        raise ValueError(f"reserve_size {spec.reserve_size} is smaller than n_initial {spec.n_initial}")
    left = len(pool) - spec.reserve_size - n_val
    n_pool = left if not spec.pool_size else min(spec.pool_size, left)
    if n_pool < spec.budget:
        raise ValueError(f"the pool would hold {n_pool} candidates, fewer than the budget {spec.budget}")
    rng = np.random.default_rng(spec.data_seed)
    order = rng.permutation(len(pool))
    reserve = [pool[i] for i in sorted(order[: spec.reserve_size])]
    rest = sorted(order[spec.reserve_size : len(pool) - n_val])
    if validation is None:  # the last n_val of the permutation: the pool and reserve draws stay as they were
        validation = [pool[i] for i in sorted(order[len(pool) - n_val :])]
    if spec.pool_size and spec.pool_size < len(rest):
        rest = sorted(rng.choice(rest, size=spec.pool_size, replace=False))
    test_frames = test if not spec.test_size or spec.test_size >= len(test) else test[: spec.test_size]
    return [pool[i] for i in rest], reserve, test_frames, validation
