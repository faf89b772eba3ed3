"""What a rerun into the same folder does, what a failed run leaves behind, and the checks that stop a bad
config before anything is built. Each test is written as the failure it prevents:

- a rerun with another budget skipped the run as "already complete" and kept the old results;
- ``python -m benchmarks.report`` averaged runs made with different budgets;
- a failed run left an empty folder (``run.log`` was empty even for runs that worked);
- ``seed=1.7`` ran as seed 1, ``seed=abc`` and ``seed=-1`` failed with raw errors after the task's set-up;
- ``task=Ethanol-GFN2`` and ``agent=kmeans++`` were refused by Hydra.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException

from benchmarks.jobs import ConfigError, canonical_argv
from benchmarks.run import CONFIG_DIR as CONF
from benchmarks.run import run

ROOT = Path(__file__).resolve().parents[2]


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=["task=ethanol_gfn2_tiny", "agent=random", "seed=0", "progress=false", *overrides])


# ----------------------------------------------------------------------------------------- resume
def test_a_rerun_with_another_budget_reruns_and_keeps_the_earlier_results(tmp_path: Path, alenv_cache: Path,
                                                                           capsys) -> None:
    out = tmp_path / "run"
    cache = f"cache_dir={alenv_cache}"
    run(_cfg(cache, "+task.overrides.budget=10"), out)
    first = json.loads((out / "results.json").read_text())
    assert len(first["steps"]) == 2 and first["config_hash"]
    # the same config (progress, cache_dir and torch_threads do not count): skipped, file untouched
    stamp = (out / "results.json").stat().st_mtime_ns
    run(_cfg(cache, "+task.overrides.budget=10", "progress=true", "torch_threads=1"), out)
    assert (out / "results.json").stat().st_mtime_ns == stamp
    assert "already complete with this config" in capsys.readouterr().out
    # another budget: run again, saying why, and the earlier results kept aside
    run(_cfg(cache, "+task.overrides.budget=5"), out)
    said = capsys.readouterr().out
    assert "task.overrides.budget changed: 10 -> 5; rerunning" in said, said
    second = json.loads((out / "results.json").read_text())
    assert len(second["steps"]) == 1 and second["config_hash"] != first["config_hash"]
    kept = out / f"results.{first['config_hash']}.json"
    assert json.loads(kept.read_text())["steps"] == first["steps"]
    log = (out / "run.log").read_text()
    assert log.count("final: test force MAE") == 2 and "rerunning" in log


@pytest.mark.slow  # two sweeps (15 s); a rerun with another config is also tested in-process
def test_a_sweep_rerun_with_another_preset_reruns_its_jobs(tmp_path: Path, alenv_cache: Path) -> None:
    """As met: the same sweep folder, ``+experiment=`` swapped for a preset with another budget (presets
    are not part of the job folders' names)."""
    presets = tmp_path / "conf" / "experiment"
    presets.mkdir(parents=True)
    for budget in (10, 5):
        (presets / f"budget{budget}.yaml").write_text(f"# @package _global_\ntask:\n  overrides:\n    budget: {budget}\n")
    sweep = tmp_path / "sweep"
    env = {**os.environ, "ALENV_CACHE": str(alenv_cache)}
    said = []
    for preset in ("budget10", "budget5"):
        cmd = [sys.executable, "-m", "benchmarks.run", "--multirun", f"hydra.searchpath=[file://{presets.parent}]",
               f"+experiment={preset}", "task=ethanol_gfn2_tiny", "agent=random,fps", "seed=0", f"hydra.sweep.dir={sweep}"]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        said.append(proc.stdout)
    assert said[1].count("task.overrides.budget changed: 10 -> 5; rerunning") == 2, said[1]
    for job in ("random", "fps"):
        folder = sweep / "Ethanol-GFN2-tiny" / job / "seed0"
        assert len(json.loads((folder / "results.json").read_text())["steps"]) == 1
        (kept,) = folder.glob("results.*.json")
        assert len(json.loads(kept.read_text())["steps"]) == 2


def test_the_report_refuses_runs_made_with_different_budgets(tmp_path: Path, alenv_cache: Path) -> None:
    """Two folders of the same task, agent, seed and variant, one with budget 10, one with 5."""
    for budget in (10, 5):
        run(_cfg(f"cache_dir={alenv_cache}", f"+task.overrides.budget={budget}"), tmp_path / f"b{budget}" / "seed0")
    report = [sys.executable, "-m", "benchmarks.report", str(tmp_path), "--out", str(tmp_path / "report")]
    proc = subprocess.run(report, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "task.overrides.budget" in proc.stderr, proc.stderr
    assert "--allow-mixed-configs" in proc.stderr and not (tmp_path / "report" / "report.md").exists()
    proc = subprocess.run(report + ["--allow-mixed-configs"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warning: comparing runs made with different settings" in proc.stdout


# ----------------------------------------------------------------------------------------- failures
def test_a_failed_run_leaves_its_error_and_runs_again(tmp_path: Path, alenv_cache: Path, monkeypatch) -> None:
    import benchmarks.episode

    real = benchmarks.episode.run_episode

    def broken(*args, **kwargs):
        raise RuntimeError("the oracle went away")

    out = tmp_path / "run"
    cfg = _cfg(f"cache_dir={alenv_cache}")
    monkeypatch.setattr(benchmarks.episode, "run_episode", broken)
    with pytest.raises(RuntimeError, match="the oracle went away"):
        run(cfg, out)
    failed = json.loads((out / "failed.json").read_text())
    assert failed["error"] == "RuntimeError: the oracle went away" and not (out / "results.json").exists()
    assert "Traceback" in (out / "run.log").read_text() and "the oracle went away" in (out / "run.log").read_text()
    monkeypatch.setattr(benchmarks.episode, "run_episode", real)
    run(cfg, out)
    assert json.loads((out / "results.json").read_text())["complete"] and not (out / "failed.json").exists()
    log = (out / "run.log").read_text()
    assert "an earlier attempt failed (RuntimeError: the oracle went away); rerunning" in log
    # the per-round table and the final line, as printed
    assert "round labels" in log and log.rstrip().splitlines()[-1].startswith("final: test force MAE")


def test_a_run_killed_outright_leaves_a_record_that_it_did_not_finish(tmp_path: Path, alenv_cache: Path,
                                                                      monkeypatch) -> None:
    """While the episode plays, ``failed.json`` already says the run has not finished: a process killed with
    SIGKILL (a sweep's launcher tears its workers down so on Ctrl-C) cannot write its own error."""
    import benchmarks.episode
    from benchmarks.resume import NOT_FINISHED

    out = tmp_path / "run"
    seen = {}

    def killed(*args, **kwargs):
        seen.update(json.loads((out / "failed.json").read_text()))
        raise SystemExit(137)  # leaves no error of its own, as SIGKILL would

    monkeypatch.setattr(benchmarks.episode, "run_episode", killed)
    with pytest.raises(SystemExit):
        run(_cfg(f"cache_dir={alenv_cache}"), out)
    assert seen["error"] == NOT_FINISHED and seen["pid"] == os.getpid() and not seen["complete"]
    assert json.loads((out / "failed.json").read_text())["error"] == NOT_FINISHED
    assert not (out / "results.json").exists()


# ----------------------------------------------------------------------------------------- config checks
@pytest.mark.parametrize(
    "override, message",
    [
        ("seed=1.7", "seed must be a non-negative integer"),
        ("seed=abc", "seed must be a non-negative integer"),
        ("seed=-1", "seed must be a non-negative integer"),
        ("seed=true", "seed must be a non-negative integer"),
        ("data_seed=-1", "data_seed must be a non-negative integer"),
        ("data_seed=1.5", "data_seed must be a non-negative integer"),
        ("data_seed=abc", "data_seed must be a non-negative integer"),
        ("data_seed=true", "data_seed must be a non-negative integer"),
        ("data_seed=null", "data_seed must be a non-negative integer"),
        ("+task.overrides.data_seed=1", "data_seed=N, not task.overrides.data_seed"),
        ("+task.overrides.pool_seed=1", "data_seed=N, not task.overrides.pool_seed"),
        ("torch_threads=0", "torch_threads must be a positive integer"),
        ("progress=maybe", "progress must be true, false or null"),
        ("agent.name=foo", "unknown agent 'foo'"),
        ("+agent.kwargs.bogus=1", "its settings \\(agent.kwargs\\): none"),
        ("+task.overrides.model=foo", "unknown model 'foo'"),
        ("oracle.name=foo", "unknown oracle 'foo'"),
        ("reward.name=foo", "unknown reward 'foo'"),
        ("+task.overrides.budget=7", "budget 7 must be a multiple of batch_size 5"),
        ("+task.overrides.nope=1", "unknown task setting"),
        ("oracle_executor.kind=gpu", "oracle_executor: unknown oracle executor kind 'gpu'"),
        ("+oracle_executor.threads=2", "oracle_executor: oracle executor 'inline' has no setting threads"),
    ],
)
def test_a_bad_setting_fails_before_anything_is_built(tmp_path: Path, override: str, message: str) -> None:
    """A clear error naming the setting, and the (fresh) cache still empty: no task data, no env."""
    cache = tmp_path / "cache"
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=message):
        run(_cfg(f"cache_dir={cache}", override), tmp_path / "run")
    assert time.perf_counter() - t0 < 10
    assert not cache.exists() or not any(cache.iterdir())
    assert "error" in json.loads((tmp_path / "run" / "failed.json").read_text())


@pytest.mark.parametrize("override", ["task=nope", "agent=nope", "model=nope", "oracle=nope", "reward=nope"])
def test_an_unknown_config_name_lists_the_choices(override: str) -> None:
    with pytest.raises(MissingConfigException, match=f"Could not find '{override.replace('=', '/')}'"):
        _cfg(override)


def test_the_command_line_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "ALENV_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "benchmarks.run", "task=ethanol_gfn2_tiny", "seed=1.7", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: seed must be a non-negative integer (seed=0, seed=1, ...), got seed=1.7"
    assert not (tmp_path / "cache").exists()
    # a sweep's jobs: the message, not a traceback through Hydra's launcher
    cmd = [sys.executable, "-m", "benchmarks.run", "--multirun", "task=ethanol_gfn2_tiny", "agent=random,fps",
           "seed=-1", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "seed must be a non-negative integer (seed=0, seed=1, ...), got seed=-1" in proc.stderr


# ----------------------------------------------------------------------------------------- spellings
@pytest.mark.parametrize(
    "typed, meant",
    [
        ("task=Ethanol-GFN2", "task=ethanol_gfn2"),
        ("task=alenv/Ethanol-GFN2-v3", "task=ethanol_gfn2"),
        ("task=Ethanol-GFN2-tiny-v3", "task=ethanol_gfn2_tiny"),
        ("task=AlanineDipeptide-GFN2-OTF", "task=alanine_dipeptide_gfn2_otf"),
        ("task=ethanol_gfn2", "task=ethanol_gfn2"),
        ("agent=kmeans++", "agent=kmeanspp"),
        ("agent=kmeanspp", "agent=kmeanspp"),
        ("agent=qbc-energy,prefilter-fps,random", "agent=qbc_energy,prefilter_fps,random"),
        ("agent=true-error", "agent=true_error"),
        ("model=bp-ensemble", "model=bp_ensemble"),
        ("reward=log-force-mae", "reward=log_force_mae"),
        ("task=nope", "task=nope"),  # no config fits: Hydra lists the choices
        ("seed=0,1", "seed=0,1"),
        ("hydra/launcher=ray_local", "hydra/launcher=ray_local"),
    ],
)
def test_every_spelling_of_a_name_finds_its_config(typed: str, meant: str) -> None:
    assert canonical_argv([typed], CONF) == [meant]


def test_the_command_line_accepts_the_task_and_agent_names(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "benchmarks.run", "task=Ethanol-GFN2", "agent=kmeans++", "--cfg", "job"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "name: Ethanol-GFN2\n" in proc.stdout and "name: kmeans++\n" in proc.stdout, proc.stdout


# ----------------------------------------------------------------------------------------- progress
def test_progress_bars_only_on_a_terminal(monkeypatch) -> None:
    from benchmarks.jobs import show_progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert show_progress(None, multirun=False) is False  # captured: quiet
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert show_progress(None, multirun=False) is True
    assert show_progress(None, multirun=True) is False  # parallel jobs' bars would overwrite each other
    assert show_progress(False, multirun=False) is False and show_progress(True, multirun=True) is True
