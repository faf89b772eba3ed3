"""The processes of a run and of a sweep, as a user meets them. Written as the failures they prevent:

- after ``kill -9`` of a sweep's process, its joblib workers lived on for minutes and wrote results;
- Ctrl-C printed a long traceback (and, in a sweep, a "leaked semaphore" warning);
- the Ray launcher kept its session files in /tmp/ray, apart from the sweep.

A slow setting (many optimiser steps per round of the tiny task) keeps the jobs busy while they are killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SLOW = "+task.overrides.model_kwargs.epochs_per_round=3000"  # about 10 s per round on one core


def _as_from_a_terminal() -> None:
    """Ctrl-C's default meaning in the child, even where the test suite itself was started in the
    background (a shell starts background jobs with SIGINT ignored, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(cache: Path, *args: str) -> subprocess.Popen:
    """``python -m benchmarks.run ARGS`` in its own process group (as a terminal runs a command)."""
    env = {**os.environ, "ALENV_CACHE": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "benchmarks.run", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=_as_from_a_terminal)


def _wait_for_episodes(proc: subprocess.Popen, folder: Path, n: int, timeout: float = 300) -> None:
    """Until ``n`` runs below ``folder`` have printed their table's first row (their episodes started)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        logs = [p.read_text() for p in folder.rglob("run.log")]
        if sum("round labels" in text for text in logs) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError(f"no {n} episodes started within {timeout} s")


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_sweep_workers_end_when_the_sweep_process_is_killed(tmp_path: Path, alenv_cache: Path) -> None:
    proc = _start(alenv_cache, "--multirun", "task=ethanol_gfn2_tiny", "agent=random,fps", "seed=0", SLOW,
                  f"hydra.sweep.dir={tmp_path}")
    try:
        _wait_for_episodes(proc, tmp_path, 2)
        workers = _children(proc.pid)
        assert len(workers) >= 2, workers
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        killed = time.monotonic()
        while any(_alive(w) for w in workers) and time.monotonic() - killed < 10:
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "workers outlived their sweep"
        assert time.monotonic() - killed < 5
        assert not list(tmp_path.rglob("results.json"))
        from benchmarks.resume import NOT_FINISHED  # the killed runs say so

        failed = [json.loads(p.read_text())["error"] for p in tmp_path.rglob("failed.json")]
        assert failed == [NOT_FINISHED] * 2, failed
    finally:
        for w in _children(proc.pid) + [proc.pid]:
            if _alive(w):
                os.kill(w, signal.SIGKILL)


# The sweep's Ctrl-C (22 s) is slow; a single run's (10 s) checks the same one-line ending by default.
@pytest.mark.parametrize("sweep", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["run", "multirun"])
def test_ctrl_c_ends_with_one_line(tmp_path: Path, alenv_cache: Path, sweep: bool) -> None:
    """SIGINT to the command's process group, as Ctrl-C sends it: exit 130, one line, no traceback; the
    run's failed.json says it was interrupted, and progress bars stayed off (output captured)."""
    args = ["--multirun", "agent=random,fps", f"hydra.sweep.dir={tmp_path}"] if sweep else [f"hydra.run.dir={tmp_path}"]
    proc = _start(alenv_cache, *args, "task=ethanol_gfn2_tiny", "seed=0", SLOW)
    try:
        _wait_for_episodes(proc, tmp_path, 2 if sweep else 1)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted; labels paid so far are cached; rerun the same command to resume"
    for bad in ("Traceback", "KeyboardInterrupt", "leaked semaphore"):
        assert bad not in err and bad not in out, err
    assert "it/s]" not in err and "s/it]" not in err  # no progress bars in captured output
    # a sweep's workers may be killed by the launcher before they write their own error: the record made
    # at the run's start then stands
    failed = [json.loads(p.read_text()) for p in tmp_path.rglob("failed.json")]
    assert len(failed) == (2 if sweep else 1), failed
    assert all(f["error"].startswith("interrupted") and not f["complete"] for f in failed), failed


def test_ray_keeps_its_files_in_the_sweep_folder(tmp_path: Path) -> None:
    """The composed Ray launcher config puts Ray's temporary folder in the sweep folder (directly, or
    through a short link where the folder's path is too long for Ray's sockets)."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    from hydra import compose, initialize_config_dir

    from benchmarks.run import CONFIG_DIR

    for sweep in (tmp_path / "s", tmp_path / ("a-long-folder-name-" * 4) / "s"):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("config", overrides=["hydra/launcher=ray_local", f"hydra.sweep.dir={sweep}"],
                          return_hydra_config=True)
        temp = Path(cfg.hydra.launcher.ray.init._temp_dir)
        assert temp.resolve() == (sweep / ".ray").resolve() and temp.is_dir()
        assert len(str(temp)) <= 37  # room for Ray's socket paths below it (107 bytes)
        if temp.is_symlink():
            temp.unlink()
