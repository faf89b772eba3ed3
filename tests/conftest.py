"""Shared fixtures of the alenv test suite (oracle tests have their own conftest in tests/oracles).

OpenMP busy-waiting makes xtb about 50x slower on a loaded 2-core machine, so threads are limited here,
before anything imports xtb or torch.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import ase.io  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

# rMD17 reference data lives in shared/ beside the repository (or wherever $ALENV_SHARED points).
RMD17 = Path(os.environ.get("ALENV_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data" / "rmd17"

@pytest.fixture(scope="session")
def alenv_cache(tmp_path_factory) -> Path:
    """One fresh cache directory (pools, test sets, labels) for the whole session."""
    return tmp_path_factory.mktemp("alenv_cache")


def _make(env_id: str, cache: Path, **kwargs):
    import gymnasium

    import alenv  # noqa: F401  (registers the tasks)

    return gymnasium.make(env_id, cache_dir=cache, wall_times=kwargs.pop("wall_times", False), **kwargs)


@pytest.fixture(scope="session")
def make_env(alenv_cache):
    """Factory: ``make_env(env_id, **overrides)`` -> gymnasium env on the session cache."""

    def factory(env_id: str, **kwargs):
        return _make(env_id, alenv_cache, **kwargs)

    return factory


@pytest.fixture(scope="session")
def ethanol_tiny_env(alenv_cache):
    """Ethanol-GFN2-tiny built once per session (the first build runs GFN2-xTB MD). Reset it before use."""
    return _make("alenv/Ethanol-GFN2-tiny-v0", alenv_cache)


@pytest.fixture(scope="session")
def cu_tiny_env(alenv_cache):
    """Cu-EMT-tiny (periodic, EMT) built once per session. Reset it before use."""
    return _make("alenv/Cu-EMT-tiny-v0", alenv_cache)


@pytest.fixture(scope="session")
def rmd17_ethanol(tmp_path_factory) -> tuple[Path, Path]:
    """Small labelled extxyz files from rMD17 ethanol: 80 pool frames, 30 test frames."""
    d = tmp_path_factory.mktemp("rmd17")
    pool = ase.io.read(RMD17 / "ethanol_train_01.extxyz", index=":80")
    test = ase.io.read(RMD17 / "ethanol_test_01.extxyz", index=":30")
    ase.io.write(d / "pool.extxyz", pool, format="extxyz")
    ase.io.write(d / "test.extxyz", test, format="extxyz")
    return d / "pool.extxyz", d / "test.extxyz"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
