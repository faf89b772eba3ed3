"""The runner and the data seed: ``data_seed=N`` on the command line reaches the task, every record carries
it next to ``seed``, sweeps cross both into their own folders, and a rerun on another data seed is not
taken for the finished one. Each test is written as the failure it prevents:

- a sweep over data seeds wrote every job into one folder (or the report split them into variants);
- a rerun with another data seed skipped the run as "already complete" and kept the other data's results;
- ``data_seed=-1`` or ``task.overrides.data_seed`` failed after the task data was built, or not at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from benchmarks.resume import config_diff, config_hash, mixed_configs
from benchmarks.run import CONFIG_DIR as CONF
from benchmarks.run import run

ROOT = Path(__file__).resolve().parents[2]


def _cfg(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=["task=cu_emt_tiny", "agent=random", "seed=0", "progress=false", *overrides],
                       return_hydra_config=hydra)


def test_data_seeds_get_their_own_folders_outside_the_variant() -> None:
    for data_seed, tail in ((None, "/seed2"), (0, "/seed2"), (3, "/seed2-data_seed3")):
        extra = [] if data_seed is None else [f"data_seed={data_seed}"]
        cfg = _cfg("seed=2", "model=ridge", *extra, hydra=True)
        assert str(cfg.hydra.sweep.subdir) == f"Cu-EMT-tiny/random/model=ridge{tail}"
        assert str(cfg.hydra.run.dir).startswith(f"outputs/Cu-EMT-tiny/random{tail}/")
        assert cfg.data_seed == (data_seed or 0)


def test_the_resume_key_and_the_report_check_know_data_seeds() -> None:
    base = {"seed": 0, "progress": None, "cache_dir": None, "torch_threads": None, "task": {"name": "T", "overrides": {}}}
    recorded_before = dict(base)  # results.json of a run made before data seeds existed: data seed 0
    zero, one = {**base, "data_seed": 0}, {**base, "data_seed": 1}
    assert config_hash(zero) == config_hash(recorded_before) != config_hash(one)
    assert config_diff(one, zero) == ["data_seed changed: 1 -> 0"]
    assert config_diff(recorded_before, zero) == []
    run_ = {"task": "alenv/T-v2", "agent": "random", "seed": 0, "variant": ""}
    a = {**run_, "data_seed": 0, "config": zero, "_path": "a"}
    b = {**run_, "data_seed": 1, "config": one, "_path": "b"}
    assert mixed_configs([a, b]) == []  # data seeds are replicates, like seeds: comparable, not read twice
    twice = mixed_configs([b, {**b, "_path": "c"}])
    assert len(twice) == 1 and "seed 0, data seed 1: read twice" in twice[0]
    old = {k: v for k, v in a.items() if k != "data_seed"}  # a record without data_seed is data seed 0
    assert "read twice" in mixed_configs([old, a])[0]


@pytest.mark.slow  # two runs (8 s); data seeds in hashes are tested without running
def test_a_rerun_on_another_data_seed_reruns(tmp_path: Path, alenv_cache: Path, capsys) -> None:
    out = tmp_path / "run"
    cache = f"cache_dir={alenv_cache}"
    run(_cfg(cache, "data_seed=1"), out)
    first = json.loads((out / "results.json").read_text())
    assert (first["seed"], first["data_seed"]) == (0, 1)
    assert first["config"]["data_seed"] == 1 and first["overrides"]["data_seed"] == 1
    assert "data_seed=1" in (out / "run.log").read_text()
    stamp = (out / "results.json").stat().st_mtime_ns
    run(_cfg(cache, "data_seed=1"), out)  # the same data seed: skipped
    assert (out / "results.json").stat().st_mtime_ns == stamp
    assert "already complete with this config" in capsys.readouterr().out
    run(_cfg(cache), out)  # data seed 0 (the default): another run
    assert "data_seed changed: 1 -> 0; rerunning" in capsys.readouterr().out
    second = json.loads((out / "results.json").read_text())
    assert second["data_seed"] == 0 and second["config_hash"] != first["config_hash"]
    assert json.loads((out / f"results.{first['config_hash']}.json").read_text())["data_seed"] == 1
    # other test data, other test errors from the same run seed
    assert second["initial"]["metrics"]["force_mae"] != first["initial"]["metrics"]["force_mae"]


@pytest.mark.slow  # a sweep of its own (9 s); data-seed folders are checked by composing
def test_a_sweep_crosses_seeds_and_data_seeds(tmp_path: Path, alenv_cache: Path) -> None:
    """``seed=0 data_seed=0,1`` from the command line: two jobs, two folders, one report line."""
    env = {**os.environ, "ALENV_CACHE": str(alenv_cache)}
    cmd = [sys.executable, "-m", "benchmarks.run", "--multirun", "task=cu_emt_tiny", "agent=random", "seed=0",
           "data_seed=0,1", "progress=false", f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {}
    for path in sorted(tmp_path.rglob("results.json")):
        res = json.loads(path.read_text())
        runs[res["data_seed"]] = {**res, "_path": str(path)}
        assert res["seed"] == 0 and res["variant"] == "" and res["config"]["data_seed"] == res["data_seed"]
    assert sorted(runs) == [0, 1]
    assert Path(runs[0]["_path"]).parent == tmp_path / "Cu-EMT-tiny" / "random" / "seed0"
    assert Path(runs[1]["_path"]).parent == tmp_path / "Cu-EMT-tiny" / "random" / "seed0-data_seed1"
    assert mixed_configs(list(runs.values())) == []
    assert runs[0]["initial"]["metrics"]["force_mae"] != runs[1]["initial"]["metrics"]["force_mae"]
