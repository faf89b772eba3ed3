"""One batch of DFT labels computed in-process and on a local process pool, side by side in one run.

    python -m benchmarks.executors                      # 8 rMD17 ethanol frames, PBE/def2-SVP, 2 workers
    python -m benchmarks.executors --n 4 --workers 2 --oracle xtb --out benchmarks/results/executors

Each setting labels the same frames through a :class:`~alenv.oracles.CachedOracle` with a fresh, empty label
cache, so every label is computed: in-process with one OpenMP thread, in-process with ``--workers`` threads
(PySCF's own parallelism over the same cores), and on a ``--workers``-process pool of one thread each. Prints
wall time, the ratio to in-process on one thread, and whether every label agrees with the first setting's
(energies and forces bit for bit); writes the same as ``executors.md`` and ``executors.json`` under ``--out``.
Needs PySCF for ``--oracle dft`` (``pip install "alenv[dft]"``). State on the line printed first whether the
machine was idle: the ratios mean nothing on a loaded one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ORACLES = {"dft": ("dft", {"xc": "PBE", "basis": "def2-SVP"}), "xtb": ("xtb", {}), "emt": ("emt", {})}


def frames(n: int, oracle: str) -> list:
    """``n`` frames: rMD17 ethanol (shipped) for the molecular oracles, perturbed Cu cells for EMT."""
    if oracle == "emt":
        from ase.build import bulk

        rng = np.random.default_rng(0)
        out = []
        for _ in range(n):
            atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
            atoms.positions += rng.normal(0.0, 0.1, atoms.positions.shape)
            out.append(atoms)
        return out
    import ase.io

    from alenv.datasets import rmd17

    picked = ase.io.read(rmd17("ethanol", "train"), index=f":{n}")
    for atoms in picked:
        atoms.calc = None
    return picked


def label_batch(structures: list, oracle: str, threads: int, executor: dict | None) -> tuple[float, list]:
    """Wall seconds and labels of ``structures`` through a fresh cache, computed as ``executor`` says."""
    from alenv.oracles import CachedOracle, LabelCache, make_executor, make_oracle

    name, kwargs = ORACLES[oracle]
    if name == "dft":
        kwargs = {**kwargs, "num_threads": threads}
    with tempfile.TemporaryDirectory() as tmp:
        pool = make_executor(executor)
        cached = CachedOracle(make_oracle(name, **kwargs), LabelCache(Path(tmp) / "labels.sqlite"), executor=pool)
        try:
            t0 = time.perf_counter()
            labels = cached.label(structures)
            seconds = time.perf_counter() - t0
        finally:
            if pool is not None:
                pool.shutdown()
    return seconds, labels


def busy_share(seconds: float = 2.0) -> float | None:
    """The share of all cores that were busy over ``seconds`` (from /proc/stat; None where it is missing):
    the load average lags by a minute, so it cannot say whether the machine is idle now."""
    def read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        t0, i0 = read()
        time.sleep(seconds)
        t1, i1 = read()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=8, help="frames in the batch (default 8)")
    ap.add_argument("--workers", type=int, default=2, help="pool processes, and threads of the threaded row")
    ap.add_argument("--oracle", choices=sorted(ORACLES), default="dft")
    ap.add_argument("--out", type=Path, default=None, help="folder for executors.md and executors.json")
    args = ap.parse_args(argv)
    if args.n < 1 or args.workers < 1:
        ap.error("--n and --workers must be positive")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # workers inherit it: one thread each
    structures = frames(args.n, args.oracle)
    busy = busy_share()
    state = "unknown" if busy is None else f"{100 * busy:.0f}% busy" + (" (idle)" if busy < 0.1 else
                                                                       " (loaded: ratios are unreliable)")
    print(f"{args.n} {args.oracle} labels of {structures[0].get_chemical_formula()}; {os.cpu_count()} cores, "
          f"{state} in the 2 s before the run")
    settings = [
        ("in-process, 1 thread", 1, None),
        (f"in-process, {args.workers} threads", args.workers, None),
        (f"process pool, {args.workers} workers x 1 thread", 1, {"kind": "process", "workers": args.workers}),
    ]
    if args.oracle != "dft":  # only PySCF takes a thread count here
        settings.pop(1)
    rows, first = [], None
    for what, threads, executor in settings:
        seconds, labels = label_batch(structures, args.oracle, threads, executor)
        if first is None:
            first = labels
        same = all(a.energy == b.energy and np.array_equal(a.forces, b.forces) for a, b in zip(first, labels))
        de = max(abs(a.energy - b.energy) for a, b in zip(first, labels))
        df = max(float(np.abs(a.forces - b.forces).max()) for a, b in zip(first, labels))
        failed = sum(lab.failed for lab in labels)
        rows.append({"setting": what, "seconds": seconds, "per_label": seconds / args.n,
                     "oracle_seconds": float(sum(lab.seconds for lab in labels)), "identical": same,
                     "max_energy_diff": de, "max_force_diff": df, "failed": failed, "executor": executor})
        print(f"  {what:<40} {seconds:8.1f} s  ({seconds / args.n:.2f} s per label, x{rows[0]['seconds'] / seconds:.2f} "
              f"the speed of the first row)  bit-identical to the first row: {same} (max |dE| {de:.1e} eV, "
              f"|dF| {df:.1e} eV/A)", flush=True)
    result = {"oracle": args.oracle, "n": args.n, "workers": args.workers, "cores": os.cpu_count(),
              "busy_before": busy, "python": sys.version.split()[0], "machine": platform.machine(), "rows": rows}
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "executors.json").write_text(json.dumps(result, indent=2) + "\n")
        lines = [f"# {args.n} {args.oracle} labels: in-process against a {args.workers}-worker process pool", "",
                 f"`python -m benchmarks.executors --n {args.n} --workers {args.workers} --oracle {args.oracle}`; "
                 f"{os.cpu_count()} cores, {state} in the 2 s before the run.", "",
                 "| setting | wall s | s per label | speed vs row 1 | bit-identical to row 1 | max abs dE (eV) | max abs dF (eV/A) |",
                 "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['setting']} | {r['seconds']:.1f} | {r['per_label']:.2f} | x{rows[0]['seconds'] / r['seconds']:.2f} "
                  f"| {r['identical']} | {r['max_energy_diff']:.1e} | {r['max_force_diff']:.1e} |" for r in rows]
        lines += ["", "Threads change the order of PySCF's sums, so the threaded row may differ in the last bits; "
                  "the pool's workers run one thread each, as row 1, and must agree bit for bit."]
        (args.out / "executors.md").write_text("\n".join(lines) + "\n")
    if not all(r["identical"] for r in rows if r["executor"] is not None):
        raise SystemExit("labels computed on the process pool differ from those computed in-process")
    return result


if __name__ == "__main__":
    main()
