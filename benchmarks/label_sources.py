"""Where each strategy's labels came from: the share of acquired labels per pool subset (MD temperature).

    python -m benchmarks.label_sources multirun/leaderboard
    python -m benchmarks.label_sources benchmarks/results/leaderboard_shift/partial --cache-dir ~/.cache/alenv

Reads every complete run below the given folders (``results.json`` and ``labels.extxyz``), maps each label
acquired after the initial ones (round > 0) to its pool frame (``pool_index``) and that frame's subset in
the task's pool of the run's data seed (``T=300K`` for MD-built tasks), and prints, per task and strategy,
the share of labels from each subset over all runs, with the number of labels. Pool-mode runs only (the
initial labels come from the reserve and on-the-fly labels have no pool frame). The pools are read from the
task cache (built first if missing).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable

from benchmarks.report import load_runs
from benchmarks.report_metrics import data_seed


def pool_subsets(task_id: str, seed: int, cache_dir: Path | None) -> list[str]:
    """The subset name of every pool frame of ``task_id`` with data seed ``seed``."""
    from alenv.data import subset_of
    from alenv.tasks import default_cache_dir, get_task
    from alenv.tasks.build import load_task_data

    spec = dataclasses.replace(get_task(task_id), data_seed=int(seed))
    data = load_task_data(spec, Path(cache_dir) if cache_dir else default_cache_dir(), progress=False)
    return [str(subset_of(frame)) for frame in data.pool]


def shares(runs: list[dict], subsets_of: Callable[[str, int], list[str]]) -> dict[str, dict[str, Counter]]:
    """counts[task][agent][subset]: acquired labels (round > 0) of each run, by their pool frame's subset."""
    import ase.io

    counts: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for r in runs:
        path = Path(r["_path"]).parent / "labels.extxyz"
        if not path.exists():
            raise FileNotFoundError(f"{path}: the run's labels are missing, so their sources cannot be read")
        names = subsets_of(r["task"], data_seed(r))
        for atoms in ase.io.read(path, index=":"):
            i = int(atoms.info.get("pool_index", -1))
            if int(atoms.info["round"]) > 0 and i >= 0:
                counts[r["task"]][r["agent"]][names[i]] += 1
    return counts


def table(counts: dict[str, dict[str, Counter]]) -> str:
    """Markdown: per task, one row per strategy with the share of labels per subset."""
    lines = []
    for task in sorted(counts):
        subsets = sorted({s for c in counts[task].values() for s in c}, key=_temperature_order)
        lines += [f"## {task}", "", "| strategy | " + " | ".join(subsets) + " | labels |",
                  "|---|" + "---|" * (len(subsets) + 1)]
        for agent, c in sorted(counts[task].items()):
            total = sum(c.values())
            lines.append(f"| {agent} | " + " | ".join(f"{100 * c[s] / total:.0f}%" for s in subsets) + f" | {total} |")
        lines.append("")
    return "\n".join(lines)


def _temperature_order(name: str) -> tuple[float, str]:
    """``T=300K`` before ``T=1000K``; other names after, alphabetically."""
    if name.startswith("T=") and name.endswith("K"):
        try:
            return float(name[2:-1]), name
        except ValueError:
            pass
    return float("inf"), name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--cache-dir", type=Path, default=None)
    args = p.parse_args()
    runs, _ = load_runs(args.dirs)
    cache: dict[tuple[str, int], list[str]] = {}

    def subsets_of(task: str, seed: int) -> list[str]:
        if (task, seed) not in cache:
            cache[(task, seed)] = pool_subsets(task, seed, args.cache_dir)
        return cache[(task, seed)]

    print(table(shares(runs, subsets_of)))


if __name__ == "__main__":
    main()
