"""The Oracle protocol and an adapter that turns any ASE calculator into an oracle.

An oracle labels configurations with energies (eV) and forces (eV/Angstrom). Failures fall in three classes:

- permanent: the calculation itself failed on that structure (SCF not converged, overlapping atoms, the
  backend's own error, non-finite output). It becomes a failed :class:`~alenv.types.Label` that carries
  the seconds spent: paid for, cached and charged.
- transient (:data:`TRANSIENT_ERRORS`: an OSError such as a full disk, a broken worker pool, a time-out):
  says nothing about the structure, so it raises; :class:`~alenv.oracles.wrappers.CachedOracle` retries
  it a few times and never stores it.
- configuration (ValueError, TypeError, ImportError, ASE's CalculatorSetupError: an impossible charge or
  spin, an unknown basis, a structure the backend cannot handle at all): raises, from :meth:`check`
  before anything is computed.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor
from typing import Any, Protocol, runtime_checkable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, CalculatorSetupError
from ase.neighborlist import neighbor_list

from alenv.types import Label


class OracleError(RuntimeError):
    """An oracle or its cache cannot work as configured (not a per-structure physics failure)."""


class CacheCorruptError(OracleError):
    """The on-disk label cache is damaged as a whole (not SQLite, malformed pages); nothing from it is used."""


class TransientOracleError(OracleError):
    """An oracle failed with a transient error on every try; nothing was stored for that structure."""


# Errors that say nothing about the structure: raised (never a failed label), retried by CachedOracle.
# TimeoutError covers concurrent.futures.TimeoutError; BrokenExecutor covers BrokenProcessPool.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, BrokenExecutor, subprocess.TimeoutExpired)
# Errors of the set-up, not of the structure: raised at once, never retried, never a failed label.
CONFIGURATION_ERRORS: tuple[type[BaseException], ...] = (CalculatorSetupError, ImportError)


@runtime_checkable
class Oracle(Protocol):
    """Labels configurations with energies (eV) and forces (eV/Angstrom).

    ``name`` and ``fingerprint()`` together identify the results: two oracles with the same name and
    fingerprint must give the same labels (they form the cache key).
    """

    name: str

    def fingerprint(self) -> dict:
        """JSON-serialisable settings that change results (method, accuracy, basis, ...)."""
        ...

    def label(self, structures: Sequence[Atoms]) -> list[Label]:
        """One Label per structure, same order. Never raises for a per-structure physics failure."""
        ...


# An oracle may also define ``check(structures) -> None``: raise for a configuration error on any of the
# structures without computing anything. CachedOracle calls it on a batch's misses before the first label.


def check_structures(structures: Sequence[Atoms]) -> list[Atoms]:
    """Validate the argument of ``label``: a sequence of non-empty, finite ``ase.Atoms``.

    Raises TypeError for a wrong type (a single Atoms is a common slip) and ValueError for an empty
    structure, non-finite positions or cell, or a periodic direction without a cell vector.
    """
    if isinstance(structures, Atoms):
        raise TypeError("label() takes a sequence of ase.Atoms, got a single Atoms; wrap it in a list")
    out = list(structures)
    for i, atoms in enumerate(out):
        if not isinstance(atoms, Atoms):
            raise TypeError(f"structure {i} is {type(atoms).__name__}, expected ase.Atoms")
        if len(atoms) == 0:
            raise ValueError(f"structure {i} has no atoms")
        if not np.all(np.isfinite(atoms.positions)):
            raise ValueError(f"structure {i} has non-finite positions")
        if not np.all(np.isfinite(atoms.cell.array)):
            raise ValueError(f"structure {i} has a non-finite cell")
        pbc = atoms.pbc
        lengths = atoms.cell.lengths()
        if np.any(pbc & (lengths == 0.0)):
            raise ValueError(f"structure {i} is periodic along a direction with a zero cell vector")
    return out


def min_interatomic_distance(atoms: Atoms, cutoff: float) -> float | None:
    """Smallest interatomic distance below ``cutoff`` (Angstrom), minimum image for pbc, else None.

    Uses a neighbour list, so periodic images of an atom itself count too (a too-small cell).
    """
    if cutoff <= 0.0 or (len(atoms) < 2 and not atoms.pbc.any()):
        return None
    d = neighbor_list("d", atoms, cutoff)
    return float(d.min()) if len(d) else None


def check_electrons(
    atoms: Atoms, charge: int, unpaired: int | None, who: str, electrons: int | None = None
) -> None:
    """Raise ValueError unless ``charge`` leaves electrons and ``unpaired`` fits their number and parity.

    ``electrons`` is the count before the charge (default: sum of atomic numbers; a valence-only method
    passes its valence electrons). ``unpaired`` is N_alpha - N_beta (xtb's ``uhf``, PySCF's ``spin``);
    None checks the charge only.
    """
    formula = atoms.get_chemical_formula()
    total = int(atoms.numbers.sum()) if electrons is None else int(electrons)
    what = "electrons" if electrons is None else "valence electrons"
    n = total - int(charge)
    if n <= 0:
        raise ValueError(f"{who}: charge {charge} leaves {n} {what} on {formula} ({total} before the charge)")
    if unpaired is None:
        return
    if abs(unpaired) > n:
        raise ValueError(f"{who}: {abs(unpaired)} unpaired electrons but {formula} with charge {charge} has {n} {what}")
    if (n - unpaired) % 2:
        fix = "an odd" if n % 2 else "an even"
        raise ValueError(
            f"{who}: {formula} with charge {charge} has {n} {what}, which cannot have {unpaired} unpaired "
            f"electrons; set {fix} number of unpaired electrons (e.g. {n % 2})"
        )


def valence_electrons(numbers: np.ndarray) -> int:
    """Electrons outside the noble-gas core of each atom (an upper bound on a valence-only method's count)."""
    cores = np.array([0, 2, 10, 18, 36, 54, 86])
    z = np.asarray(numbers, dtype=int)
    return int(sum(int(k) - int(cores[cores < k].max()) for k in z))


def describe_exception(exc: BaseException) -> str:
    """One line naming the exception and, when it wraps another, the original cause."""

    def one(e: BaseException) -> str:
        text = " | ".join(line.strip() for line in str(e).splitlines() if line.strip())
        return f"{type(e).__name__}: {text}" if text else type(e).__name__

    msg = one(exc)
    inner = exc.__cause__ or exc.__context__
    if inner is not None and inner is not exc:
        msg += f" (caused by {one(inner)})"
    return msg


class CalculatorOracle:
    """An oracle over any ASE calculator.

    The calculator is built lazily, once, by ``make_calculator`` and reused for every structure (it is
    dropped when the oracle is pickled, so the oracle can be sent to spawned workers). Each structure is
    copied (the caller's Atoms are never mutated) and the calculator is reset before it, so a label never
    depends on what was labelled before (xtb, for one, otherwise starts its SCC from the previous
    structure's wavefunction when only positions changed); a structure with two atoms closer than
    ``min_distance`` Angstrom fails without calling the backend, because most backends either crash or
    return garbage there.

    Subclasses adapt the copy to the backend by overriding :meth:`prepare` (raise ValueError there for a
    structure the backend cannot handle at all, e.g. periodic cells for a molecular code, or an impossible
    charge or spin). A transient or configuration error of the backend raises (see the module docstring);
    after a transient one the calculator is rebuilt for the next structure.
    """

    def __init__(
        self,
        make_calculator: Callable[[], Calculator],
        name: str,
        settings: dict[str, Any],
        min_distance: float = 0.5,
    ) -> None:
        if not callable(make_calculator):
            raise TypeError("make_calculator must be a callable returning an ASE calculator")
        if not isinstance(name, str) or not name:
            raise ValueError("an oracle needs a non-empty name")
        if min_distance < 0:
            raise ValueError(f"min_distance must be >= 0, got {min_distance}")
        self.name = name
        self.settings = dict(settings)
        self.min_distance = float(min_distance)
        self._make_calculator = make_calculator
        self._calc: Calculator | None = None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"{type(self).__name__}({args})"

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_calc"] = None  # backend objects often hold C handles; rebuild in the new process
        return state

    @property
    def calculator(self) -> Calculator:
        """The backend ASE calculator (built on first use), e.g. for oracle-driven MD."""
        if self._calc is None:
            self._calc = self._make_calculator()
        return self._calc

    def fingerprint(self) -> dict:
        return {**self.settings, "min_distance": self.min_distance}

    def prepare(self, atoms: Atoms) -> Atoms:
        """Adapt a copy of a structure for the backend (charges, spin); raise ValueError if impossible."""
        return atoms

    def check(self, structures: Sequence[Atoms]) -> None:
        """Raise for a configuration error on any structure (what :meth:`prepare` rejects); computes nothing."""
        for atoms in check_structures(structures):
            self.prepare(atoms.copy())

    def label(self, structures: Sequence[Atoms]) -> list[Label]:
        structures = check_structures(structures)
        prepared = [self.prepare(atoms.copy()) for atoms in structures]  # configuration errors first
        return [self._label_one(atoms) for atoms in prepared]

    def _label_one(self, atoms: Atoms) -> Label:
        n = len(atoms)
        calc = self.calculator  # outside the try: a backend that cannot be built is a configuration error
        start = time.perf_counter()
        dmin = min_interatomic_distance(atoms, self.min_distance)
        if dmin is not None:
            return Label.failure(
                n,
                time.perf_counter() - start,
                f"atoms overlap: min distance {dmin:.3g} A < {self.min_distance:.3g} A",
            )
        try:
            calc.reset()  # no state (wavefunction guess, neighbour lists) carries over from the last structure
            atoms.calc = calc
            energy = float(atoms.get_potential_energy())
            forces = np.array(atoms.get_forces(), dtype=np.float64)
        except CONFIGURATION_ERRORS:
            raise
        except TRANSIENT_ERRORS:
            self._calc = None  # a fresh backend for the next try (a broken pool, a dead worker)
            raise
        except Exception as exc:  # the calculation failed on this structure: a failed label, paid for
            return Label.failure(n, time.perf_counter() - start, describe_exception(exc))
        finally:
            atoms.calc = None
        seconds = time.perf_counter() - start
        if forces.shape != (n, 3):
            return Label.failure(n, seconds, f"backend returned forces of shape {forces.shape}, expected ({n}, 3)")
        if not (np.isfinite(energy) and np.all(np.isfinite(forces))):
            return Label.failure(n, seconds, "backend returned non-finite energy or forces")
        return Label(energy=energy, forces=forces, seconds=seconds)
