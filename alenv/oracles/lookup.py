"""An oracle that answers from a labelled extxyz file: benchmark on your own DFT data.

A structure is looked up by exact match of atomic numbers and pbc, and of positions and cell to 1e-6
Angstrom: first by a hash of the values rounded to 1e-6 (instant), then, for a value that sits on a rounding
boundary (text files round positions, e.g. extxyz to 1e-8), by a scan of the structures with the same atoms
within 1e-6 Angstrom. A structure that is not in the file is a configuration error (KeyError), not a
physics failure.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from alenv.oracles.base import check_structures
from alenv.types import Label

_DECIMALS = 6  # 1e-6 Angstrom
_TOL = 1e-6  # Angstrom


def structure_key(atoms: Atoms) -> bytes:
    """Exact-match key: numbers, positions and cell rounded to 1e-6 Angstrom, pbc."""
    numbers = np.ascontiguousarray(atoms.numbers, dtype="<i8")
    positions = np.round(np.asarray(atoms.positions, dtype=np.float64), _DECIMALS) + 0.0  # -0.0 -> 0.0
    cell = np.round(np.asarray(atoms.cell.array, dtype=np.float64), _DECIMALS) + 0.0
    pbc = np.ascontiguousarray(atoms.pbc, dtype=bool)
    return b"|".join(
        [
            len(numbers).to_bytes(8, "little"),
            numbers.tobytes(),
            np.ascontiguousarray(positions, dtype="<f8").tobytes(),
            np.ascontiguousarray(cell, dtype="<f8").tobytes(),
            pbc.tobytes(),
        ]
    )


def _species_key(atoms: Atoms) -> bytes:
    return np.ascontiguousarray(atoms.numbers, dtype="<i8").tobytes() + b"|" + atoms.pbc.astype(bool).tobytes()


def _read_label(atoms: Atoms, energy_key: str, forces_key: str, where: str) -> tuple[float, np.ndarray]:
    results = atoms.calc.results if atoms.calc is not None else {}
    if energy_key in results:
        energy = results[energy_key]
    elif energy_key in atoms.info:
        energy = atoms.info[energy_key]
    else:
        raise ValueError(f"{where} has no energy (looked for {energy_key!r} in calculator results and info)")
    if forces_key in results:
        forces = results[forces_key]
    elif forces_key in atoms.arrays:
        forces = atoms.arrays[forces_key]
    else:
        raise ValueError(f"{where} has no forces (looked for {forces_key!r} in calculator results and arrays)")
    forces = np.array(forces, dtype=np.float64)
    if forces.shape != (len(atoms), 3):
        raise ValueError(f"{where} has forces of shape {forces.shape}, expected ({len(atoms)}, 3)")
    return float(energy), forces


class LookupOracle:
    """Labels from a labelled extxyz file (or a list of Atoms carrying energy and forces).

    Args:
        path_or_frames: extxyz path (read with ``ase.io.read(path, index=":")``) or a sequence of Atoms.
        energy_key, forces_key: where the labels live; calculator results first, then ``info``/``arrays``.

    ``fingerprint()`` holds the sha256 of the file (or of the frames' content), so a changed file never
    reuses old cache entries. Labels cost 0 seconds. A structure whose stored energy or forces are not finite
    gets a failed Label, as from any oracle whose calculation failed. A structure given twice must carry the
    same labels both times (ValueError otherwise) and counts once.
    """

    name = "lookup"

    def __init__(
        self,
        path_or_frames: str | os.PathLike | Sequence[Atoms],
        energy_key: str = "energy",
        forces_key: str = "forces",
    ) -> None:
        if isinstance(path_or_frames, (str, os.PathLike)):
            import ase.io

            path = Path(path_or_frames)
            if not path.is_file():
                raise FileNotFoundError(f"LookupOracle: no labelled file at {path}")
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            frames = ase.io.read(path, index=":")
            self.source = str(path)
        else:
            frames = check_structures(path_or_frames)
            digest = None
            self.source = f"<{len(frames)} frames>"
        if not frames:
            raise ValueError(f"LookupOracle: {self.source} holds no structures")
        self.energy_key, self.forces_key = energy_key, forces_key
        self._table: dict[bytes, tuple[float, np.ndarray]] = {}
        groups: dict[bytes, list[tuple[np.ndarray, tuple[float, np.ndarray]]]] = {}
        content = hashlib.sha256()
        for i, atoms in enumerate(frames):
            energy, forces = _read_label(atoms, energy_key, forces_key, f"{self.source} frame {i}")
            key = structure_key(atoms)
            if key in self._table:
                old_e, old_f = self._table[key]
                if not (np.array_equal(old_e, energy, equal_nan=True) and np.array_equal(old_f, forces, equal_nan=True)):
                    raise ValueError(f"{self.source} frame {i} repeats an earlier structure with different labels")
                continue
            self._table[key] = (energy, forces)
            geometry = np.concatenate([atoms.positions, atoms.cell.array]).astype(np.float64)
            groups.setdefault(_species_key(atoms), []).append((geometry, (energy, forces)))
            content.update(key + np.float64(energy).tobytes() + forces.astype("<f8").tobytes())
        # per composition: stacked geometries (positions and cell, (m, n + 3, 3)) for the tolerant scan
        self._groups = {k: (np.stack([g for g, _ in v]), [lab for _, lab in v]) for k, v in groups.items()}
        self._sha256 = digest if digest is not None else content.hexdigest()

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        return f"LookupOracle({self.source!r}, {len(self)} structures)"

    def _scan(self, atoms: Atoms) -> tuple[float, np.ndarray] | None:
        group = self._groups.get(_species_key(atoms))
        if group is None:
            return None
        geometries, labels = group
        query = np.concatenate([atoms.positions, atoms.cell.array])
        dev = np.abs(geometries - query).max(axis=(1, 2))
        best = int(np.argmin(dev))
        return labels[best] if dev[best] <= _TOL else None

    def fingerprint(self) -> dict:
        return {"sha256": self._sha256, "energy_key": self.energy_key, "forces_key": self.forces_key}

    def _find(self, i: int, atoms: Atoms) -> tuple[float, np.ndarray]:
        hit = self._table.get(structure_key(atoms)) or self._scan(atoms)
        if hit is None:
            raise KeyError(
                f"structure {i} ({atoms.get_chemical_formula()}) is not in {self.source}: a LookupOracle only "
                "labels structures from its file (positions must match to 1e-6 Angstrom)"
            )
        return hit

    def check(self, structures: Sequence[Atoms]) -> None:
        """KeyError for a structure that is not in the file (a configuration error)."""
        for i, atoms in enumerate(check_structures(structures)):
            self._find(i, atoms)

    def label(self, structures: Sequence[Atoms]) -> list[Label]:
        out = []
        for i, atoms in enumerate(check_structures(structures)):
            energy, forces = self._find(i, atoms)
            if not (np.isfinite(energy) and np.all(np.isfinite(forces))):  # a calculation that failed back then
                out.append(Label.failure(len(atoms), 0.0, f"the label in {self.source} is not finite"))
            else:
                out.append(Label(energy=energy, forces=forces.copy(), seconds=0.0))
        return out
