"""Thread limits, set by the package: xTB's OpenMP runs on one thread, torch on the cores this job has.

On a shared or loaded machine an OpenMP runtime that spins on every core slows xTB by two orders of
magnitude, and two jobs that each start one torch thread per core slow each other several-fold. So
``import alenv`` sets ``OMP_NUM_THREADS=1`` unless it is already set (before xTB or torch load), and every
environment sizes torch's intra-op threads to the cores of this process divided by the jobs sharing them
(``ALENV_JOBS``, set by the sweep launchers). A user's explicit choice wins: ``OMP_NUM_THREADS`` set before
import, or ``ALENV_TORCH_THREADS``.
"""

from __future__ import annotations

import os

_MARK = "ALENV_OMP_DEFAULT"  # set beside OMP_NUM_THREADS when alenv chose it (inherited by child processes)
# OMP_NUM_THREADS as the user left it (None where unset or set by alenv, here or in a parent process)
USER_OMP_THREADS = None if os.environ.get(_MARK) else os.environ.get("OMP_NUM_THREADS")


def limit_openmp() -> None:
    """One OpenMP thread for the oracles' native code, unless the user chose a number (call before import)."""
    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = "1"
        os.environ[_MARK] = "1"


def cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a Slurm or container limit)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _positive_int(name: str, value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if n < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return n


def torch_threads() -> int:
    """Torch intra-op threads for this job: ``ALENV_TORCH_THREADS``, else the user's ``OMP_NUM_THREADS``,
    else cores // ``ALENV_JOBS`` (at least 1)."""
    explicit = os.environ.get("ALENV_TORCH_THREADS")
    if explicit:
        return _positive_int("ALENV_TORCH_THREADS", explicit)
    if USER_OMP_THREADS:
        return _positive_int("OMP_NUM_THREADS", USER_OMP_THREADS)
    jobs = _positive_int("ALENV_JOBS", os.environ.get("ALENV_JOBS", "1"))
    return max(1, cores() // jobs)


def configure_torch() -> int:
    """Set torch's intra-op threads to ``torch_threads()``; returns the number set."""
    import torch

    n = torch_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
