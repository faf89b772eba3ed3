"""Golden episodes: the tiny control tasks replay bit for bit.

Recorded before the flat (ragged) layout was added, at branch ``issue11`` (1c42a8c), with one torch
thread: one episode of the random agent, seed 0, on Ethanol-GFN2-tiny, Cu-EMT-tiny, Dataset-tiny (rMD17
ethanol, 80 pool and 30 test frames as in ``conftest.rmd17_ethanol``) and Ethanol-GFN2-OTF-tiny, each with
the default model and with ``model="ridge"``. Every reward, action, ``info["metrics"]`` value (but the
wall-clock ``oracle_seconds`` of freshly computed on-the-fly labels), a checksum of every observation, and
the final ``test_metrics()`` must be equal (``==``, not close): the dense path of the fixed-size tasks
must not change at all.

The values are those of this machine's libraries (torch, numpy, xtb build): the task data is rebuilt in
the test session's cache, and xtb on another build can differ in the last digits. Where the recording's
own code fails here, record again on that machine with the unchanged code first.

Record again (only when a change of results is intended, and say so in the commit):

    ALENV_TORCH_THREADS=1 OMP_NUM_THREADS=1 python tests/env/test_golden_episodes.py --record
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden_episodes.json"
CASES = [
    (task, model)
    for task in ("Ethanol-GFN2-tiny", "Cu-EMT-tiny", "Dataset-tiny", "Ethanol-GFN2-OTF-tiny")
    for model in ("bp-ensemble", "ridge")
]
WALL_CLOCK = {"oracle_seconds", "train_seconds", "round_seconds"}


def _plain(x):
    """JSON-exact values: floats as floats (NaN as the string 'nan'), arrays as lists."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in sorted(x.items())}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else repr(float(x))
    return x


def _digest(obs: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(obs):
        a = np.ascontiguousarray(obs[k])
        h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def dataset_files(directory: Path) -> tuple[Path, Path]:
    """The rMD17 ethanol pool (80 frames) and test (30) files of ``conftest.rmd17_ethanol``."""
    import ase.io

    from alenv.datasets import RMD17_DIR

    directory.mkdir(parents=True, exist_ok=True)
    pool, test = directory / "pool.extxyz", directory / "test.extxyz"
    if not pool.exists():
        ase.io.write(pool, ase.io.read(RMD17_DIR / "ethanol_train_01.extxyz", index=":80"), format="extxyz")
        ase.io.write(test, ase.io.read(RMD17_DIR / "ethanol_test_01.extxyz", index=":30"), format="extxyz")
    return pool, test


def play(task: str, model: str, cache: Path, files: tuple[Path, Path]) -> dict:
    """One seeded episode of the random agent (as ``benchmarks.episode.run_episode`` plays it)."""
    import gymnasium

    import alenv  # noqa: F401  (registers the tasks)
    from agents import make_agent
    from alenv.spaces import picks_to_action
    from alenv.tasks import get_task

    kwargs = {"model": model} if model != "bp-ensemble" else {}
    if task.startswith("Dataset"):
        kwargs.update(pool=str(files[0]), test=str(files[1]))
    env = gymnasium.make(get_task(task).id, cache_dir=cache, **kwargs)
    agent = make_agent("random")
    rng = np.random.default_rng([0, 1])
    obs, info = env.reset(seed=0)
    record = {"layout": getattr(env.unwrapped, "layout", "dense"), "steps": []}
    record["initial"] = {"metrics": {k: v for k, v in info["metrics"].items() if k not in WALL_CLOCK}, "obs": _digest(obs)}
    done = False
    while not done:
        k = int(info["max_picks"])
        picks = np.zeros(0, dtype=np.int64) if k == 0 and info["any_subset"] else agent.act(obs, info, k, rng)
        action = picks_to_action(picks, obs, info)
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        record["steps"].append({
            "action": np.asarray(action).tolist(),
            "reward": float(reward),
            "chosen": info["chosen"],
            "metrics": {k: v for k, v in info["metrics"].items() if k not in WALL_CLOCK},
            "obs": _digest(obs),
        })
    record["test_metrics"] = env.unwrapped.test_metrics()
    env.close()
    return _plain(record)


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("task,model", CASES)
def test_golden_episode(task, model, golden, alenv_cache, tmp_path_factory, monkeypatch):
    import torch

    monkeypatch.setenv("ALENV_TORCH_THREADS", "1")  # the recording's thread count (sums depend on it)
    threads = torch.get_num_threads()
    try:
        got = play(task, model, alenv_cache, dataset_files(tmp_path_factory.getbasetemp() / "golden_rmd17"))
    finally:
        torch.set_num_threads(threads)
    want = golden[f"{task}/{model}"]
    assert got["layout"] == "dense"
    for r, (a, b) in enumerate(zip(got["steps"], want["steps"])):
        assert a["action"] == b["action"], f"round {r + 1}: actions differ"
        assert a["metrics"] == b["metrics"], f"round {r + 1}: metrics differ"
        assert a["reward"] == b["reward"], f"round {r + 1}: rewards differ"
        assert a["obs"] == b["obs"], f"round {r + 1}: observations differ"
    assert got == want


if __name__ == "__main__" and "--record" in sys.argv:
    if os.environ.get("ALENV_TORCH_THREADS") != "1":
        sys.exit("record with ALENV_TORCH_THREADS=1")
    cache = Path(os.environ.get("GOLDEN_CACHE", "/tmp/golden_cache"))
    files = dataset_files(cache / "golden_rmd17")
    out = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    only = [a for a in sys.argv[1:] if a != "--record"]
    for task, model in CASES:
        if only and task not in only:
            continue
        out[f"{task}/{model}"] = play(task, model, cache, files)
        print(task, model, out[f"{task}/{model}"]["test_metrics"]["force_mae"], flush=True)
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
