"""Label a task's whole pool once and pack its data to ship with the package.

Liquid water's pool is stored unlabelled when built (a GFN2-xTB label of 96 atoms costs seconds), so every
clone would pay the build's labels and every episode its own picks. Packing the data of one data seed with
every pool frame labelled makes that task as cheap to start as the rMD17 ones: ``load_task_data`` unpacks a
shipped folder instead of building (``alenv.tasks.build.shipped_data``). Labels go through the persistent
label cache, so an interrupted run resumes where it stopped::

    python -m alenv.tasks.ship Water-GFN2 --data-seed 0
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import tempfile
import time
from pathlib import Path

from tqdm.auto import tqdm

from alenv.data import attach_label, write_labelled
from alenv.tasks.build import PARTS, SHIPPED_DIR, TaskData, load_task_data, task_oracle
from alenv.tasks.spec import TaskSpec, default_cache_dir


def label_pool(spec: TaskSpec, data: TaskData, cache_dir: Path, progress: bool = True) -> TaskData:
    """``data`` with every pool frame labelled by the task's oracle (through the label cache)."""
    if data.pool_labelled:
        return data
    oracle = task_oracle(spec, data, cache_dir)
    pool = []
    for i, frame in enumerate(tqdm(data.pool, desc=f"{spec.name}: {oracle.name} labels (pool)", unit="frame",
                                   disable=not progress)):
        (label,) = oracle.label([frame])
        if label.failed:
            raise RuntimeError(
                f"{spec.name}: the oracle failed on pool frame {i} ({label.error}); the labels already made are "
                f"kept in the label cache under {cache_dir}: rerun to resume"
            )
        labelled = attach_label(frame, label)
        labelled.info["temperature"] = frame.info.get("temperature")
        pool.append(labelled)
    return TaskData(pool, data.reserve, data.test, data.validation, data.directory, pool_labelled=True)


def ship(spec: TaskSpec, cache_dir: Path | None = None, out_dir: Path = SHIPPED_DIR, progress: bool = True) -> Path:
    """Build (or read) ``spec``'s data, label its pool, and write ``out_dir/<data key>/``: each part as
    ``<part>.extxyz.xz`` and ``meta.json`` with the checksums of the uncompressed files. Returns the folder."""
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    t0 = time.perf_counter()
    data = label_pool(spec, load_task_data(spec, cache_dir, progress), cache_dir, progress)
    folder = Path(out_dir) / spec.data_key()
    folder.mkdir(parents=True, exist_ok=True)
    sums, counts = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for part in PARTS:
            frames = getattr(data, part)
            counts[part] = len(frames)
            if not frames:
                sums[part] = None
                continue
            plain = Path(tmp) / f"{part}.extxyz"
            write_labelled(plain, frames)
            raw = plain.read_bytes()
            sums[part] = hashlib.sha256(raw).hexdigest()
            (folder / f"{part}.extxyz.xz").write_bytes(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))
    oracle_seconds = sum(float(a.info.get("oracle_seconds", 0.0)) for p in PARTS for a in getattr(data, p))
    meta = {
        "task": spec.id,
        "data_seed": spec.data_seed,
        "seconds": time.perf_counter() - t0,
        "oracle_seconds": oracle_seconds,
        "pool_labelled": True,
        "counts": counts,
        "sha256": sums,
        "shipped": f"python -m alenv.tasks.ship {spec.name} --data-seed {spec.data_seed}",
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return folder


def main(argv: list[str] | None = None) -> None:
    from alenv.tasks import TASKS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", help="a task name, e.g. Water-GFN2")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR, help="folder of shipped data (the package's)")
    args = parser.parse_args(argv)
    if args.task not in TASKS:
        parser.error(f"unknown task {args.task!r}; known: {', '.join(sorted(TASKS))}")
    spec = TASKS[args.task].with_overrides(data_seed=args.data_seed)
    folder = ship(spec, out_dir=args.out)
    size = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
    print(f"{spec.name} data seed {spec.data_seed}: {folder} ({size:.1f} MB)")


if __name__ == "__main__":
    main()
