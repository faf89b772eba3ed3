"""The package sets its own thread limits; a user's explicit setting wins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = "import os, torch, alenv; from alenv.threads import configure_torch, cores; " \
    "configure_torch(); print(os.environ['OMP_NUM_THREADS'], torch.get_num_threads(), cores())"


def _run(**env_vars: str) -> tuple[str, int, int]:
    """A fresh interpreter (nothing imported yet) with only the given thread settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "ALENV_JOBS", "ALENV_TORCH_THREADS")}
    env.update(env_vars)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    omp, torch_threads, n_cores = out.stdout.split()
    return omp, int(torch_threads), int(n_cores)


def test_defaults_and_user_settings():
    omp, torch_threads, n_cores = _run()
    assert omp == "1" and torch_threads == n_cores  # xTB on one thread, torch on this job's cores
    assert _run(ALENV_JOBS="2")[1] == max(1, n_cores // 2)  # two sweep jobs share the cores
    assert _run(OMP_NUM_THREADS="3")[:2] == ("3", 3)  # the user's choice wins
    assert _run(ALENV_TORCH_THREADS="2")[:2] == ("1", 2)


def test_environment_applies_the_limit(make_env):
    import torch

    from alenv.threads import torch_threads

    torch.set_num_threads(max(1, torch_threads() + 1))
    env = make_env("alenv/Ethanol-GFN2-tiny-v3")
    assert torch.get_num_threads() == torch_threads() == env.unwrapped.torch_threads


def test_bad_values_are_named(monkeypatch):
    from alenv import threads

    monkeypatch.setenv("ALENV_TORCH_THREADS", "two")
    with pytest.raises(ValueError, match="ALENV_TORCH_THREADS must be a positive integer, got 'two'"):
        threads.torch_threads()
    monkeypatch.delenv("ALENV_TORCH_THREADS")
    monkeypatch.setattr(threads, "USER_OMP_THREADS", None)
    monkeypatch.setenv("ALENV_JOBS", "0")
    with pytest.raises(ValueError, match="ALENV_JOBS"):
        threads.torch_threads()
