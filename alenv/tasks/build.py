"""Making a task's data once: pool, reserve (initial labels), validation and test set, cached on disk.

MD tasks run Langevin MD with the oracle at each temperature: the pool and the reserve come from one set
of trajectories, the test and validation sets from independent ones (other random streams); every stream
is seeded with the task's ``data_seed``, so another data seed gives other trajectories, cached under their
own key. The Dataset task reads the user's labelled extxyz files. Building is guarded by a file lock, so parallel jobs of a sweep build a
task once and the others wait and read it.

Some task data is expensive to make (liquid water: hours of GFN2-xTB labels), so it ships with the package
under ``alenv/datasets/tasks/<data key>/`` (made by ``python -m alenv.tasks.ship``): a task whose data key is
shipped unpacks it into the cache instead of building, with the same checksums verified.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import lzma
import math
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import ase.io
import numpy as np
from ase import Atoms
from ase.build import bulk, molecule
from tqdm.auto import tqdm

from alenv.data import attach_label, read_labelled_frames, write_labelled
from alenv.oracles import CachedOracle, LabelCache, LabelExecutor, make_oracle
from alenv.samplers.oracle_md import langevin_frames
from alenv.tasks.spec import TaskSpec
from alenv.types import Label


def _ethanol() -> Atoms:
    return molecule("CH3CH2OH")


def _cu_vacancy() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    del atoms[0]
    return atoms


def _fcc_vacancy(symbol: str) -> Callable[[], Atoms]:
    """Periodic fcc ``symbol`` (2x2x2 cubic cells at ASE's reference lattice constant) less one atom."""

    def make() -> Atoms:
        atoms = bulk(symbol, "fcc", cubic=True).repeat((2, 2, 2))
        del atoms[0]
        return atoms

    return make


def _ar13() -> Atoms:
    """A 13-atom argon icosahedron (Lennard-Jones minimum), nearest neighbours at 2^(1/6) sigma = 3.82 Angstrom."""
    from ase.cluster import Icosahedron

    return Icosahedron("Ar", noshells=2, latticeconstant=3.82 * math.sqrt(2))


# Ace-Ala-NMe (22 atoms) in an extended backbone; oracle MD at the lowest temperature keeps it in one basin.
_ALANINE_DIPEPTIDE = """
H -2.060 0.018 0.016
C -1.506 -0.034 0.964
H -1.834 0.778 1.609
H -1.774 -0.979 1.458
C 0.000 0.000 0.692
O 0.627 -0.959 0.253
N 0.527 1.120 1.199
H -0.016 1.915 1.515
C 1.955 1.244 1.354
H 2.412 0.485 0.715
C 2.270 0.955 2.824
H 1.825 1.714 3.469
H 3.350 0.948 2.965
H 1.869 -0.022 3.102
C 2.468 2.632 0.949
O 1.694 3.586 0.826
N 3.771 2.755 0.730
H 4.366 1.944 0.817
C 4.343 4.057 0.369
H 5.352 3.897 0.003
H 3.741 4.532 -0.410
H 4.379 4.719 1.238
"""


def _alanine_dipeptide() -> Atoms:
    rows = [line.split() for line in _ALANINE_DIPEPTIDE.strip().splitlines()]
    pos = np.array([[float(x) for x in r[1:]] for r in rows])
    pos[:, 0] *= -1.0  # the table holds the D enantiomer; its mirror image is L-alanine (phi -138, psi 163)
    return Atoms([r[0] for r in rows], positions=pos)


SYSTEMS: dict[str, Callable[[], Atoms]] = {
    "ethanol": _ethanol,
    "cu_vacancy": _cu_vacancy,
    "alanine_dipeptide": _alanine_dipeptide,
    # systems of the policy-training family (agents.train.FAMILY), none of them a standard task
    "al_vacancy": _fcc_vacancy("Al"),
    "ni_vacancy": _fcc_vacancy("Ni"),
    "pt_vacancy": _fcc_vacancy("Pt"),
    "ar13": _ar13,
    "formic_acid": lambda: molecule("HCOOH"),
    "propane": lambda: molecule("C3H8"),
    "ethylamine": lambda: molecule("CH3CH2NH2"),
}

# Torsions that describe each molecule's conformations (atom indices a-b-c-d), for coverage metrics.
TORSIONS: dict[str, tuple[tuple[int, int, int, int], ...]] = {
    "ethanol": ((3, 2, 1, 0), (6, 0, 1, 2)),  # hydroxyl H-O-C-C, methyl H-C-C-O
    "alanine_dipeptide": ((4, 6, 8, 14), (6, 8, 14, 16)),  # backbone phi (C-N-CA-C), psi (N-CA-C-N)
}


# Builders of task data for systems that are not one structure under oracle MD (several molecules, a
# classical sampler with oracle labels, restrained MD along a reaction coordinate): system name ->
# function(spec, progress) -> TaskData, registered by the modules that define them (``register_builder``).
# ``examples`` gives structures of every species and size the system has, before any data is made
# (descriptor sizing, config checks).
BUILDERS: dict[str, Callable[..., "TaskData"]] = {}
EXAMPLES: dict[str, Callable[[], list[Atoms]]] = {}


def register_builder(system: str, examples: Callable[[], list[Atoms]]) -> Callable:
    """Decorator: ``fn(spec, progress, directory) -> TaskData`` makes the data of tasks whose ``system`` is
    ``system``; ``directory`` is where the data will be written (``<cache>/tasks/<key>``), for builders
    that keep resumable work beside it."""

    def add(fn: Callable) -> Callable:
        if system in BUILDERS or system in SYSTEMS:
            raise ValueError(f"system {system!r} is already defined")
        BUILDERS[system] = fn
        EXAMPLES[system] = examples
        return fn

    return add


def example_frames(system: str) -> list[Atoms]:
    """Structures of ``system`` (one for an MD system; one per molecule or size for a builder's), unlabelled."""
    if system in SYSTEMS:
        return [SYSTEMS[system]()]
    if system in EXAMPLES:
        return EXAMPLES[system]()
    raise ValueError(f"unknown system {system!r}; known: {sorted([*SYSTEMS, *BUILDERS])}")


@dataclass
class TaskData:
    """Labelled frames of a task (labels in each frame's calculator; ``oracle_seconds`` in info).

    ``pool_labelled`` False: the pool frames carry no labels (an oracle too slow to label a whole pool
    in advance); the agent's picks are labelled when asked for, and nothing may read pool labels.
    """

    pool: list[Atoms]
    reserve: list[Atoms]
    test: list[Atoms]
    validation: list[Atoms]
    directory: Path | None = None
    pool_labelled: bool = True


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def split_evenly(n: int, parts: int) -> list[int]:
    """``n`` items over ``parts`` groups, the first ones one larger where it does not divide."""
    base = [n // parts] * parts
    for i in range(n % parts):
        base[i] += 1
    return base


def _md_data(spec: TaskSpec, progress: bool, directory: Path | None = None) -> TaskData:
    oracle = make_oracle(spec.oracle, **spec.oracle_kwargs)
    # the oracle's own preparation (charge, spin) applies to MD too, or its labels would be for another state
    start = SYSTEMS[spec.system]()
    start = oracle.prepare(start) if hasattr(oracle, "prepare") else start
    calc = oracle.calculator
    T = spec.temperatures
    pool_counts = split_evenly(spec.pool_size, len(T))
    # The reserve (initial labels) comes from the lowest temperature, as a practitioner's first data would.
    jobs = [("pool", t, c, 0) for t, c in zip(T, pool_counts)]
    jobs += [("reserve", min(T), spec.reserve_size, 1)]
    # The target distribution: the pool's temperatures, or others (a target shift)
    target = spec.target_temperatures or T
    test_counts = split_evenly(spec.test_size, len(target))
    jobs += [("test", t, c, 2) for t, c in zip(target, test_counts)]
    # validation: more independent trajectories from the test set's target distribution (appended, so the
    # streams of pool, reserve and test are those of tasks made before validation sets existed)
    jobs += [("validation", t, c, 3) for t, c in zip(target, split_evenly(spec.validation_size, len(target)))]
    total = sum(spec.md.equilibration + c * spec.md.stride for _, _, c, _ in jobs if c > 0)
    out: dict[str, list[Atoms]] = {"pool": [], "reserve": [], "test": [], "validation": []}
    bar = tqdm(total=total, desc=f"{spec.name}: oracle MD", unit="step", disable=not progress, leave=False)
    try:
        for k, (part, t, count, stream) in enumerate(jobs):
            rng = np.random.default_rng([spec.data_seed, stream, k])
            frames, labels = langevin_frames(start, calc, t, count, spec.md, rng, on_step=bar.update)
            for f, lab in zip(frames, labels):
                a = attach_label(f, lab)
                a.info["temperature"] = float(t)
                out[part].append(a)
    finally:
        bar.close()
    return TaskData(out["pool"], out["reserve"], out["test"], out["validation"])


SHIPPED_DIR = Path(__file__).resolve().parent.parent / "datasets" / "tasks"
PARTS = ("pool", "reserve", "test", "validation")


def shipped_data(spec: TaskSpec) -> Path | None:
    """The folder of this task's shipped data (``alenv/datasets/tasks/<data key>``), or None if none ships."""
    folder = SHIPPED_DIR / spec.data_key()
    return folder if (folder / "meta.json").is_file() else None


def _unpack(folder: Path, files: dict[str, Path], meta_path: Path) -> None:
    """Decompress shipped parts (``<part>.extxyz.xz``) into the cache, then its ``meta.json`` (last: it marks
    the data complete); ``_verify`` then checks them against the checksums made when they were packed."""
    for part, path in files.items():
        packed = folder / f"{part}.extxyz.xz"
        if packed.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".unpacking")
            try:
                tmp.write_bytes(lzma.decompress(packed.read_bytes()))
            except lzma.LZMAError as exc:
                raise ValueError(f"shipped task data {packed} is damaged ({exc}); reinstall alenv") from exc
            tmp.replace(path)
    shutil.copyfile(folder / "meta.json", meta_path)


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _build(spec: TaskSpec, files: dict[str, Path], meta_path: Path, progress: bool) -> None:
    """Run the task's oracle MD and write its parts, then ``meta.json`` (last: it marks the data complete)."""
    t0 = time.perf_counter()
    data = BUILDERS.get(spec.system, _md_data)(spec, progress, meta_path.parent)
    for part, path in files.items():
        if getattr(data, part):  # on-the-fly tasks have no pool
            write_labelled(path, getattr(data, part))
    meta = {
        "task": spec.id,
        "data_seed": spec.data_seed,
        "seconds": time.perf_counter() - t0,
        "pool_labelled": data.pool_labelled,
        "counts": {p: len(getattr(data, p)) for p in files},
        "sha256": {p: _sha256(path) for p, path in files.items()},
    }
    meta_path.write_text(json.dumps(meta, indent=1))


def _verify(files: dict[str, Path], meta_path: Path, directory: Path) -> None:
    """Every part matches the checksum recorded when it was made; data cached before checksums existed
    gets its checksums recorded now."""
    meta = json.loads(meta_path.read_text())
    sums = {p: _sha256(path) for p, path in files.items()}
    if "sha256" not in meta:
        meta["sha256"] = sums
        meta_path.write_text(json.dumps(meta, indent=1))
        return
    changed = [p for p in files if meta["sha256"].get(p) != sums[p]]
    if changed:
        raise ValueError(
            f"cached task data in {directory} changed after it was made ({', '.join(f'{p}.extxyz' for p in changed)}: "
            "checksum mismatch); nothing was labelled or trained on it: delete that directory to rebuild it"
        )


def load_task_data(spec: TaskSpec, cache_dir: Path, progress: bool = True) -> TaskData:
    """The task's pool, reserve and test set: read from ``cache_dir`` (checksums verified) or made once
    and written there."""
    if spec.system == "dataset":
        from alenv.tasks.dataset import dataset_data

        return TaskData(*dataset_data(spec))
    if spec.system not in SYSTEMS and spec.system not in BUILDERS:
        raise ValueError(f"unknown system {spec.system!r}; known: {sorted([*SYSTEMS, *BUILDERS])}")
    directory = Path(cache_dir) / "tasks" / spec.data_key()
    files = {p: directory / f"{p}.extxyz" for p in PARTS}
    meta_path = directory / "meta.json"
    with _locked(directory.with_suffix(".lock")):
        if not meta_path.exists():
            folder = shipped_data(spec)
            if folder is not None:
                _unpack(folder, files, meta_path)
                try:
                    _verify(files, meta_path, directory)
                except ValueError as exc:  # nothing damaged stays in the cache; rebuilding would not mend it
                    shutil.rmtree(directory)
                    raise ValueError(f"shipped task data {folder} is damaged ({exc}); reinstall alenv") from exc
            else:
                _build(spec, files, meta_path, progress)
        _verify(files, meta_path, directory)
    pool_labelled = json.loads(meta_path.read_text()).get("pool_labelled", True)
    parts = {}
    expected = {
        "pool": spec.pool_size, "reserve": spec.reserve_size, "test": spec.test_size, "validation": spec.validation_size,
    }
    for part, path in files.items():
        if expected[part] == 0:
            parts[part] = []
            continue
        try:
            if part == "pool" and not pool_labelled:
                frames = _read_unlabelled(path)
            else:
                frames = read_labelled_frames(path)[0]
        except (ValueError, FileNotFoundError) as exc:
            raise ValueError(
                f"cached task data in {directory} is damaged ({exc}); delete that directory to rebuild it"
            ) from exc
        parts[part] = frames
    for part, n in expected.items():
        if len(parts[part]) != n:
            raise ValueError(
                f"cached {part} in {directory} has {len(parts[part])} frames, expected {n}; delete it to rebuild"
            )
    return TaskData(parts["pool"], parts["reserve"], parts["test"], parts["validation"], directory, pool_labelled)


def _read_unlabelled(path: Path) -> list[Atoms]:
    """Frames of an unlabelled pool file (any labels in it are dropped: nothing may read them)."""
    if not path.is_file():
        raise FileNotFoundError(f"no pool file at {path}")
    try:
        frames = ase.io.read(path, index=":")
    except Exception as exc:
        raise ValueError(f"cannot read {path} as extxyz: {exc}") from exc
    for a in frames:
        a.calc = None
    return frames


def task_oracle(spec: TaskSpec, data: TaskData, cache_dir: Path, executor: LabelExecutor | None = None) -> CachedOracle:
    """The task's oracle (built through the oracle registry) behind its persistent label cache; labels it
    computes run on ``executor`` (None: in this process, see ``alenv.oracles.executors``).

    The cache is prefilled with the labels the task data already carries (oracle MD computed them; a
    Dataset file holds them), so an agent pays for each label it asks for at the seconds it first cost.
    """
    frames = (data.pool if data.pool_labelled else []) + data.reserve  # of any sizes: oracles and their cache label one structure at a time
    kwargs = dict(spec.oracle_kwargs)
    if spec.system == "dataset":  # the lookup oracle answers from the user's frames (in eV, checked)
        kwargs.setdefault("path_or_frames", frames)
    inner = make_oracle(spec.oracle, **kwargs)
    oracle = CachedOracle(inner, LabelCache(Path(cache_dir) / "labels" / f"{inner.name}.sqlite"), executor=executor)
    oracle.store(frames, [Label.of(a) for a in frames])
    return oracle
