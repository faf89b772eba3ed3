"""The runner's process around each episode: the spellings a command line may use, checks of the config
before anything is built, progress bars on a terminal only, and sweep jobs that end with their sweep.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException

# The exit status of a job whose sweep process died (nothing written).
ORPHANED = 75
SWEEP_PID = "ALENV_SWEEP_PID"  # set by the command-line entry point; inherited by the sweep's job processes
INTERRUPTED = "interrupted; labels paid so far are cached; rerun the same command to resume"
GROUPS = ("task", "agent", "model", "oracle", "reward", "oracle_executor")

_parent: int | None = None  # the sweep process this job watches, once watching


class ConfigError(ValueError, CompactHydraException):
    """A setting of the run's config that cannot work, found before any task data is built (Hydra prints
    such an error as its message alone, also when a sweep's job raises it)."""


# ----------------------------------------------------------------------------------------- spellings
def _options(config_dir: Path, group: str) -> set[str]:
    names = {p.stem for p in (config_dir / group).glob("*.yaml")}
    if group == "task":
        from alenv.tasks import TASKS, snake_case

        names |= {snake_case(n) for n in TASKS}
    return names


def config_name(config_dir: Path, group: str, value: str) -> str:
    """The config name of ``group`` meant by ``value``, or ``value`` itself when none fits.

    Tasks by name, id or snake case (``Ethanol-GFN2``, ``alenv/Ethanol-GFN2-v3``, ``ethanol_gfn2``); agents,
    models, oracles and rewards by their registered names (``kmeans++``, ``qbc-energy``, ``bp-ensemble``)
    and, for agents, every spelling ``agents.resolve_name`` accepts.
    """
    from alenv.tasks import get_task, snake_case

    options = _options(config_dir, group)
    if value in options:
        return value
    guesses = [snake_case(value).replace("++", "pp")]
    try:
        if group == "task":
            guesses.insert(0, snake_case(get_task(value).name))
        elif group == "agent":
            from agents import resolve_name

            guesses.append(snake_case(resolve_name(value)).replace("++", "pp"))
    except (ValueError, ImportError):
        pass
    return next((g for g in guesses if g in options), value)


def canonical_argv(argv: list[str], config_dir: Path) -> list[str]:
    """Command-line overrides of the config groups rewritten to config names (comma lists of a sweep
    included); anything else, and any name that fits no config (Hydra lists the choices), unchanged."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+") in GROUPS and value and not any(c in value for c in "()[]{}'\"$"):
            group = key.lstrip("+")
            value = ",".join(config_name(config_dir, group, v.strip()) for v in value.split(","))
            arg = f"{key}={value}"
        out.append(arg)
    return out


# ----------------------------------------------------------------------------------------- config checks
def check_config(cfg: Any) -> None:
    """Settings the runner reads itself, checked before the expensive build (ConfigError naming them)."""
    for name in ("seed", "data_seed"):
        value = cfg.get(name, 0 if name == "data_seed" else None)  # configs without data_seed: data seed 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name} must be a non-negative integer ({name}=0, {name}=1, ...), got {name}={value!r}")
    task = cfg.get("task") or {}
    for name in ("data_seed", "pool_seed"):
        if name in (task.get("overrides") or {}):
            raise ConfigError(
                f"set the task data's seed as data_seed=N, not task.overrides.{name}: it is recorded next to seed "
                "and names the run's folder, not its variant"
            )
    threads = cfg.get("torch_threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"torch_threads must be a positive integer or null, got torch_threads={threads!r}")
    progress = cfg.get("progress")
    if progress is not None and not isinstance(progress, bool):
        raise ConfigError(f"progress must be true, false or null (on a terminal only), got progress={progress!r}")
    from omegaconf import OmegaConf

    from alenv.oracles.executors import executor_spec

    executor = cfg.get("oracle_executor")
    try:
        executor_spec(OmegaConf.to_container(executor) if OmegaConf.is_config(executor) else executor)
    except ValueError as err:
        raise ConfigError(f"oracle_executor: {err}") from None


def show_progress(setting: bool | None, multirun: bool) -> bool:
    """Progress bars: as set, or (``null``) only for a single run whose stderr is a terminal; never in
    captured logs, and not from the parallel jobs of a sweep, whose bars would overwrite each other."""
    if setting is not None:
        return bool(setting)
    return not multirun and sys.stderr.isatty()


# ----------------------------------------------------------------------------------------- sweep jobs
def plain_bar_lock() -> None:
    """Progress bars and table lines of a sweep job under a thread lock, not tqdm's default
    multiprocessing lock: a named semaphore that a job ended by Ctrl-C leaves behind (Python's resource
    tracker then warns of "leaked semaphore objects")."""
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


def mark_sweep() -> None:
    """Record this process as the sweep's, for the job processes it starts (:func:`follow_sweep`)."""
    os.environ[SWEEP_PID] = str(os.getpid())


def follow_sweep(interval: float = 0.5) -> bool:
    """In a job process started by the sweep process itself (the joblib launcher's workers, submitit's
    local jobs): end this process as soon as the sweep process is gone (``os._exit``, nothing written).

    Such workers otherwise outlive a killed sweep and finish their episodes unseen. Jobs started by
    another process (Ray's workers, cluster jobs) are left to their launcher. True if watching.
    """
    global _parent
    if _parent is not None:
        return True
    sweep = os.environ.get(SWEEP_PID)
    if sweep is None or not sweep.isdigit() or int(sweep) != os.getppid():
        return False
    _parent = int(sweep)

    def watch() -> None:
        while True:
            time.sleep(interval)
            if sweep_gone():
                os._exit(ORPHANED)

    threading.Thread(target=watch, name="alenv-follow-sweep", daemon=True).start()
    return True


def sweep_gone() -> bool:
    """True in a job whose sweep process died (it was re-parented)."""
    return _parent is not None and os.getppid() != _parent


# ----------------------------------------------------------------------------------------- Ray
# Ray puts Unix sockets at <temp>/session_<date>_<time>_<us>_<pid>/sockets/plasma_store (up to ~64
# characters below <temp>), and a socket's path may hold 107 bytes at most (103 on macOS).
_RAY_SOCKET_TAIL = 70


def ray_temp_dir(sweep_dir: str) -> str:
    """Ray's temporary folder for a sweep: ``<sweep dir>/.ray``, so that its logs and spilled objects stay
    with the sweep's results (not in /tmp/ray). Where that path is too long for Ray's sockets, a short link
    in the system's temporary folder points there (``/tmp/alenv-ray-<hash>`` -> ``<sweep dir>/.ray``)."""
    target = Path(sweep_dir).resolve() / ".ray"
    target.mkdir(parents=True, exist_ok=True)
    limit = (103 if sys.platform == "darwin" else 107) - _RAY_SOCKET_TAIL
    if len(str(target).encode()) <= limit:
        return str(target)
    link = ray_link(target)
    if not (link.is_symlink() and link.resolve() == target):
        tmp = link.with_name(f"{link.name}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target, target_is_directory=True)
        os.replace(tmp, link)
    return str(link)


def ray_link(target: Path) -> Path:
    """The short link in the system's temporary folder that stands for Ray's folder ``target``."""
    import hashlib
    import tempfile

    return Path(tempfile.gettempdir()) / f"alenv-ray-{hashlib.sha256(str(target).encode()).hexdigest()[:10]}"
