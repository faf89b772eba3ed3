"""A normal (non-editable) install carries the environment with its rMD17 files, the strategies (``agents``),
the harness (``benchmarks``) and the Hydra configs, and the runner finds its configs from anywhere.

The wheel is built from a copy of the repository's files (no network, no build isolation) and installed with
``pip install --target`` into a folder put first on PYTHONPATH; every command runs from a folder outside
the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _repository_files() -> list[str]:
    """Files of the repository (tracked, and new ones git does not ignore)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return sorted(f for f in out.decode().split("\0") if f and (ROOT / f).is_file())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built in a copy so that build/ and *.egg-info stay out of the checkout."""
    src = tmp_path_factory.mktemp("src")
    for f in _repository_files():
        if not f.startswith("tests/"):
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    dist = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(dist)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = dist.glob("alenv-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed (without dependencies: the test environment has them) into its own folder."""
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return target


def _outside(target: Path, cwd: Path, cache: Path, *args: str, path: list[Path] | None = None) -> subprocess.CompletedProcess:
    """Run this interpreter with ``args`` in ``cwd``, the installed folder (after ``path``) first on PYTHONPATH."""
    assert ROOT not in cwd.resolve().parents
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in [*(path or []), target]),
           "ALENV_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_wheel_carries_strategies_harness_configs_and_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    files = _repository_files()
    modules = {f for f in files if f.endswith(".py") and f.split("/")[0] in ("alenv", "agents", "benchmarks")}
    assert modules and not modules - names, sorted(modules - names)  # every module of the three packages
    configs = {"benchmarks/" + f for f in files if f.startswith("conf/") and f.endswith(".yaml")}
    assert "benchmarks/conf/config.yaml" in configs and not configs - names, sorted(configs - names)
    data = {f for f in files if f.startswith("alenv/datasets/rmd17/")}
    assert "alenv/datasets/rmd17/ethanol_train_01.extxyz" in data and "alenv/datasets/rmd17/README.md" in data
    assert not data - names, sorted(data - names)
    shipped = {f for f in files if f.startswith("agents/checkpoints/")}  # agent=learned's default policy
    assert "agents/checkpoints/learned-v1.pt" in shipped and not shipped - names, sorted(shipped - names)
    tops = {n.split("/")[0] for n in names if "/" in n and ".dist-info/" not in n}
    assert tops == {"alenv", "agents", "benchmarks"}, tops  # no tests/, no top-level conf/


def test_installed_wheel_runs_outside_the_repository(installed: Path, tmp_path: Path, alenv_cache: Path) -> None:
    """Strategies import, the runner composes its configs (the Dataset task reads the installed rMD17 files)
    and plays an episode, all from the installed copy."""
    proc = _outside(
        installed, tmp_path, alenv_cache, "-c",
        "import agents, alenv, benchmarks.run as r; agents.make_agent('fps'); "
        "print(agents.__file__, alenv.__file__, r.__file__, r.CONFIG_DIR, sep='\\n')",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    paths = [Path(p) for p in proc.stdout.split()]
    assert len(paths) == 4 and all(installed in p.parents for p in paths), paths
    assert paths[3] == installed / "benchmarks" / "conf"

    proc = _outside(installed, tmp_path, alenv_cache, "-m", "benchmarks.run", "--cfg", "job", "task=ethanol_gfn2_tiny", "agent=fps")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "name: Ethanol-GFN2-tiny" in proc.stdout and "name: fps" in proc.stdout, proc.stdout

    proc = _outside(installed, tmp_path, alenv_cache, "-m", "benchmarks.run", "--cfg", "job", "--resolve", "task=dataset_tiny")
    assert proc.returncode == 0, proc.stderr[-3000:]
    pool = installed / "alenv" / "datasets" / "rmd17" / "ethanol_train_01.extxyz"
    assert f"pool: {pool}" in proc.stdout, proc.stdout

    out = tmp_path / "run"
    proc = _outside(
        installed, tmp_path, alenv_cache, "-m", "benchmarks.run", "task=dataset_tiny", "agent=fps", "model=ridge",
        "seed=0", "progress=false", f"hydra.run.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "results.json").is_file() and not (tmp_path / "outputs").exists()


def test_a_foreign_agents_package_is_reported(installed: Path, tmp_path: Path, alenv_cache: Path) -> None:
    """Another distribution's top-level ``agents`` ahead on the path: a clear error, not a confusing one."""
    foreign = tmp_path / "foreign"
    (foreign / "agents").mkdir(parents=True)
    (foreign / "agents" / "__init__.py").write_text('"""Someone else\'s agents."""\n')
    proc = _outside(
        installed, tmp_path, alenv_cache, "-m", "benchmarks.run", "task=dataset_tiny", "agent=fps", "progress=false",
        f"hydra.run.dir={tmp_path / 'run'}", path=[foreign],
    )
    assert proc.returncode != 0
    assert "not alenv's strategies package" in proc.stderr and "own virtual environment" in proc.stderr, proc.stderr[-3000:]
