"""Labelled configurations: extxyz in and out, and the append-only record of an episode's labels."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import ase.io
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from alenv.types import Label


def attach_label(atoms: Atoms, label: Label) -> Atoms:
    """A copy of ``atoms`` carrying the label as a single-point calculator (eV, eV/Angstrom)."""
    out = Atoms(atoms.numbers, atoms.positions.copy(), cell=atoms.cell.array.copy(), pbc=atoms.pbc.copy())
    out.calc = SinglePointCalculator(out, energy=label.energy, forces=np.array(label.forces))
    out.info["oracle_seconds"] = float(label.seconds)
    return out


def write_labelled(path: str | os.PathLike, frames: Sequence[Atoms]) -> None:
    """Write labelled frames to extxyz atomically (a reader never sees a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    ase.io.write(tmp, list(frames), format="extxyz")
    os.replace(tmp, path)


def read_labelled(
    path: str | os.PathLike, forces_required: bool = True
) -> tuple[list[Atoms], np.ndarray, np.ndarray, np.ndarray]:
    """Frames, energies (F,) eV, forces (F, n, 3) eV/Angstrom and oracle seconds (F,) from extxyz.

    Every frame must carry a finite energy, and all frames the same number of atoms (the forces are
    stacked); otherwise a ValueError names the file and the frame. ``read_labelled_frames`` reads files
    whose frames differ in size. Forces are required too (training data: the models learn from them)
    unless ``forces_required=False`` (validation and test sets, which may hold energy-only frames such as
    bond scans): a frame without forces then has NaN forces, and forces that are present must be finite.
    """
    frames, energies, forces, seconds = read_labelled_frames(path, forces_required, same_size=True)
    return frames, energies, np.stack(forces), seconds


def read_labelled_frames(
    path: str | os.PathLike, forces_required: bool = True, same_size: bool = False
) -> tuple[list[Atoms], np.ndarray, list[np.ndarray], np.ndarray]:
    """Frames, energies (F,) eV, per-frame forces (a list of (n_f, 3) eV/Angstrom arrays) and oracle
    seconds (F,) from extxyz, with the checks of ``read_labelled``; frames may differ in their number of
    atoms unless ``same_size``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no labelled file at {path}")
    try:
        frames = ase.io.read(path, index=":")
    except Exception as exc:
        raise ValueError(f"cannot read {path} as extxyz: {exc}") from exc
    if not frames:
        raise ValueError(f"{path} holds no frames")
    n0 = len(frames[0])
    energies, forces, seconds = [], [], []
    for i, atoms in enumerate(frames):
        n = len(atoms)
        if same_size and n != n0:
            raise ValueError(
                f"{path} frame {i} has {n} atoms, frame 0 has {n0}; mixed sizes are not supported here "
                "(read_labelled_frames reads them)"
            )
        if n == 0:
            raise ValueError(f"{path} frame {i} has no atoms")
        if not (np.all(np.isfinite(atoms.positions)) and np.all(np.isfinite(atoms.cell.array))):
            bad = np.flatnonzero(~np.isfinite(atoms.positions).all(axis=1))
            raise ValueError(f"{path} frame {i} has non-finite positions (atoms {bad.tolist()}) or cell")
        e, f = frame_labels(atoms)
        if e is None or (f is None and forces_required):
            missing = "energy and forces (eV, eV/Angstrom)" if e is None and f is None else (
                "energy (eV)" if e is None else "forces (eV/Angstrom)"
            )
            raise ValueError(f"{path} frame {i} has no {missing} to learn from")
        if not (np.isfinite(e) and (f is None or np.all(np.isfinite(f)))):
            raise ValueError(f"{path} frame {i} has a non-finite energy or forces")
        energies.append(float(e))
        forces.append(np.full((n, 3), np.nan) if f is None else f)
        seconds.append(float(atoms.info.get("oracle_seconds", 0.0)))
    return frames, np.array(energies), forces, np.array(seconds)


def frame_labels(atoms: Atoms) -> tuple[float | None, np.ndarray | None]:
    """A frame's reference energy (eV) and forces (n, 3) eV/Angstrom, each None where the frame has none.

    An extxyz frame with only an energy reads back with a single-point calculator holding only the energy:
    its forces are None here, not an error (``atoms.get_forces()`` would raise).
    """
    e, f = _result(atoms, "energy"), _result(atoms, "forces")
    return (None if e is None else float(e)), (None if f is None else np.array(f, dtype=np.float64))


def subset_of(atoms: Atoms) -> str | None:
    """The subset a reference frame belongs to, for per-subset metrics: its ``subset`` or ``config_type``
    tag in ``atoms.info`` (Dataset files), else ``T=<temperature>K`` (frames of MD-built tasks), else None."""
    for tag in ("subset", "config_type"):
        if atoms.info.get(tag) is not None and str(atoms.info[tag]) != "":
            return str(atoms.info[tag])
    t = atoms.info.get("temperature")
    return None if t is None else f"T={float(t):g}K"


def _result(atoms: Atoms, name: str):
    """``energy`` or ``forces`` of a frame: its calculator's results, else ``info``/``arrays``; None if absent."""
    if atoms.calc is not None and name in atoms.calc.results:
        return atoms.calc.results[name]
    return atoms.info.get(name) if name == "energy" else atoms.arrays.get(name)


@dataclass
class LabelledSet:
    """Append-only record of the labels paid for in an episode (failures included, never dropped).

    ``index`` is the pool index of each label (-1 for initial labels from the reserve), so that every
    label can be traced back to the configuration it belongs to.
    """

    frames: list[Atoms] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    index: list[int] = field(default_factory=list)
    round: list[int] = field(default_factory=list)

    def extend(self, frames: Sequence[Atoms], labels: Sequence[Label], index: Sequence[int], round_: int) -> None:
        if not (len(frames) == len(labels) == len(index)):
            raise ValueError("frames, labels and index must have the same length")
        self.frames.extend(frames)
        self.labels.extend(labels)
        self.index.extend(int(i) for i in index)
        self.round.extend([round_] * len(labels))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of successful labels."""
        return np.array([not lab.failed for lab in self.labels], dtype=bool)

    @property
    def n_failed(self) -> int:
        return int((~self.ok).sum())

    @property
    def oracle_seconds(self) -> float:
        return float(sum(lab.seconds for lab in self.labels))

    @property
    def noise_sigmas(self) -> np.ndarray:
        """The recorded force-noise sigma (eV/Angstrom per component) of each successful label, in label
        order (the order of the training set); NaN where a label records none."""
        return np.array(
            [np.nan if lab.noise_sigma is None else lab.noise_sigma for lab in self.labels if not lab.failed],
            dtype=np.float64,
        )

    def write(self, path: str | os.PathLike) -> None:
        """Save every successful label as extxyz (pool index and round in each frame's info, and the
        noise sigmas where the oracle recorded them: ``noise_sigma`` eV/Angstrom, ``energy_noise_sigma`` eV)."""
        frames = []
        for atoms, lab, idx, rnd in zip(self.frames, self.labels, self.index, self.round):
            if lab.failed:
                continue
            a = attach_label(atoms, lab)
            a.info["pool_index"] = idx
            a.info["round"] = rnd
            if lab.noise_sigma is not None:
                a.info["noise_sigma"] = float(lab.noise_sigma)
            if lab.energy_noise_sigma is not None:
                a.info["energy_noise_sigma"] = float(lab.energy_noise_sigma)
            frames.append(a)
        write_labelled(path, frames)
