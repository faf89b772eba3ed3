"""How model-driven MD goes wrong, and how to tell: the failure checks of on-the-fly mode.

A trajectory driven by a poor potential fails in a few recognisable ways. Each check here names one:

- ``non_finite``: energy, forces or positions are NaN or infinite;
- ``energy_explosion``: the model's energy per atom leaves the window spanned by the labelled energies
  by more than ``max_energy_change`` eV/atom (up: the system heats without bound; down: a hole in the
  potential that atoms fall into);
- ``close_contact``: two atoms closer than ``contact_factor`` times the sum of their covalent radii;
- ``spread_ceiling``: the largest per-atom force spread of the ensemble above ``max_force_std``
  eV/Angstrom (the model is guessing);
- ``fragmentation``: more bonded fragments than the starting structure (bonds: distance below
  ``bond_factor`` times the sum of covalent radii; periodic images by the minimum image).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

FAILURE_KINDS: tuple[str, ...] = ("non_finite", "energy_explosion", "close_contact", "spread_ceiling", "fragmentation")


@dataclass(frozen=True)
class FailureChecks:
    """Thresholds of the failure checks (eV/atom, eV/Angstrom, dimensionless factors)."""

    max_energy_change: float = 1.0  # eV/atom outside [min, max] of the labelled energies per atom
    contact_factor: float = 0.5  # close contact below this fraction of the covalent-radius sum
    max_force_std: float = 3.0  # eV/Angstrom, largest per-atom force spread
    bond_factor: float = 1.6  # bonded below this multiple of the covalent-radius sum
    check_fragments: bool = True


class MDFailure(Exception):
    """Raised inside an MD run when a check fails; ``kind`` is one of ``FAILURE_KINDS``."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def _distances(atoms: Atoms) -> np.ndarray:
    if atoms.pbc.any():
        return atoms.get_all_distances(mic=True)
    d = atoms.positions[:, None, :] - atoms.positions[None, :, :]
    return np.sqrt((d**2).sum(-1))


def _radius_sums(numbers: np.ndarray) -> np.ndarray:
    r = covalent_radii[numbers]
    return r[:, None] + r[None, :]


def n_fragments(atoms: Atoms, bond_factor: float = 1.6) -> int:
    """Number of bonded fragments (connected components of the covalent-bond graph)."""
    d = _distances(atoms)
    bonded = d < bond_factor * _radius_sums(atoms.numbers)
    np.fill_diagonal(bonded, False)
    i, j = np.nonzero(bonded)
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(len(atoms), len(atoms)))
    n, _ = connected_components(graph, directed=False)
    return int(n)


def fragments_reference(frames: Sequence[Atoms], bond_factor: float = 1.6) -> int | dict[str, int]:
    """The fragment count that MD structures are checked against: ``n_fragments`` of the first frame when
    every frame has one composition (an int), else per composition (chemical formula) that of its first
    frame."""
    first: dict[str, Atoms] = {}
    for atoms in frames:
        first.setdefault(atoms.get_chemical_formula(), atoms)
    if len(first) <= 1:
        return n_fragments(frames[0], bond_factor)
    return {formula: n_fragments(atoms, bond_factor) for formula, atoms in first.items()}


def reference_fragments(atoms: Atoms, n_fragments_ref: int | Mapping[str, int]) -> int:
    """The reference fragment count of ``atoms``: the int itself, or its composition's entry (for a
    composition without one, the largest entry)."""
    if isinstance(n_fragments_ref, Mapping):
        formula = atoms.get_chemical_formula()
        return int(n_fragments_ref[formula]) if formula in n_fragments_ref else max(n_fragments_ref.values())
    return n_fragments_ref


def check_geometry(atoms: Atoms, checks: FailureChecks, n_fragments_ref: int | Mapping[str, int]) -> None:
    """Raise ``MDFailure`` for non-finite positions, a close contact or a molecule that fell apart
    (more fragments than ``n_fragments_ref``, an int or per composition: ``fragments_reference``)."""
    pos = atoms.positions
    if not np.all(np.isfinite(pos)):
        raise MDFailure("non_finite", "positions are not finite")
    d = _distances(atoms)
    ratio = d / (_radius_sums(atoms.numbers) * checks.contact_factor)
    np.fill_diagonal(ratio, np.inf)
    if ratio.min() < 1.0:
        i, j = np.unravel_index(int(np.argmin(ratio)), ratio.shape)
        raise MDFailure("close_contact", f"atoms {i} and {j} are {d[i, j]:.3f} Angstrom apart")
    if checks.check_fragments:
        n = n_fragments(atoms, checks.bond_factor)
        n_fragments_ref = reference_fragments(atoms, n_fragments_ref)
        if n > n_fragments_ref:
            raise MDFailure("fragmentation", f"{n} fragments, the start had {n_fragments_ref}")


def check_prediction(
    energy: float,
    forces: np.ndarray,
    forces_std: np.ndarray | None,
    n_atoms: int,
    energy_window: tuple[float, float],
    checks: FailureChecks,
) -> None:
    """Raise ``MDFailure`` for non-finite or exploding energies, or a force spread above the ceiling.

    ``energy_window`` is (lowest, highest) labelled energy per atom in eV/atom.
    """
    if not (np.isfinite(energy) and np.all(np.isfinite(forces))):
        raise MDFailure("non_finite", f"energy {energy} or forces are not finite")
    lo, hi = energy_window
    e = energy / n_atoms
    if e > hi + checks.max_energy_change or e < lo - checks.max_energy_change:
        raise MDFailure(
            "energy_explosion",
            f"{e:.3f} eV/atom is more than {checks.max_energy_change} eV/atom outside the labelled [{lo:.3f}, {hi:.3f}]",
        )
    if forces_std is not None:
        per_atom = np.sqrt((np.asarray(forces_std) ** 2).sum(-1))
        if not np.all(np.isfinite(per_atom)):
            raise MDFailure("non_finite", "force spread is not finite")
        if per_atom.max() > checks.max_force_std:
            raise MDFailure(
                "spread_ceiling", f"force spread {per_atom.max():.2f} eV/Angstrom above {checks.max_force_std}"
            )


def check_structure(atoms: Atoms, checks: FailureChecks, n_fragments_ref: int | Mapping[str, int]) -> str | None:
    """The kind of the first geometric failure of ``atoms``, or None: for vetting restart structures."""
    try:
        check_geometry(atoms, checks, n_fragments_ref)
    except MDFailure as exc:
        return exc.kind
    return None
