"""Shared fixtures of the alenv test suite (oracle tests have their own conftest in tests/oracles).

OpenMP busy-waiting makes xtb about 50x slower on a loaded 2-core machine, so threads are limited here,
before anything imports xtb or torch.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import ase.io  # noqa: E402

from alenv.datasets import RMD17_DIR  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

# The README's test command runs one worker per core (pytest-xdist): each worker then keeps to one thread.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))

# rMD17 reference data ships with the package (alenv/datasets/rmd17, CC0).
RMD17 = RMD17_DIR

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
    return _make("alenv/Ethanol-GFN2-tiny-v3", alenv_cache)


@pytest.fixture(scope="session")
def cu_tiny_env(alenv_cache):
    """Cu-EMT-tiny (periodic, EMT) built once per session. Reset it before use."""
    return _make("alenv/Cu-EMT-tiny-v3", alenv_cache)


@pytest.fixture(scope="session")
def built_cache(alenv_cache):
    """``built_cache(name, dest)``: the cache folder ``dest`` holding a copy of task ``name``'s data, built
    once per session in the session cache (a copy, so that a test may damage it)."""
    import shutil

    from alenv.tasks import get_task, load_task_data

    def copy(name: str, dest: Path) -> Path:
        data = load_task_data(get_task(name), alenv_cache, progress=False)
        shutil.copytree(data.directory, Path(dest) / "tasks" / data.directory.name)
        return Path(dest)

    return copy


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


# check_env warns about unbounded Box spaces; the observation's features are unbounded by design.
ALLOWED_WARNINGS = ("observation space minimum value is -infinity", "observation space maximum value is infinity")


def _check_env_clean(env) -> None:
    """Gymnasium's check_env on ``env``, failing on any of its warnings but the allowed ones."""
    import warnings

    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)
    unexpected = [
        str(w.message) for w in caught if "gymnasium" in w.filename and not any(a in str(w.message) for a in ALLOWED_WARNINGS)
    ]
    assert not unexpected, unexpected


@pytest.fixture(scope="session")
def check_env_clean():
    """``check_env_clean(env)``: Gymnasium's check_env, failing on unexpected warnings."""
    return _check_env_clean


def _shipped_policy_plays_a_round(env) -> None:
    """The committed policy checkpoint (``agent=learned``) plays one round of ``env``: distinct available
    picks (exactly ``max_picks`` in pool mode, at most that on the fly) that the environment accepts."""
    import numpy as np

    from agents import make_agent
    from alenv.spaces import picks_to_action

    obs, info = env.reset(seed=4)
    picks = make_agent("learned").act(obs, info, info["max_picks"], np.random.default_rng(0))
    assert len(set(picks.tolist())) == len(picks) and np.all(obs["mask"][picks] == 1)
    assert len(picks) == info["max_picks"] or info["any_subset"]
    _, reward, _, _, info = env.step(picks_to_action(picks, obs, info))
    assert np.isfinite(reward) and info["round"] == 1


@pytest.fixture(scope="session")
def shipped_policy_plays_a_round():
    """``shipped_policy_plays_a_round(env)``: one round of ``env`` played by the committed policy."""
    return _shipped_policy_plays_a_round
