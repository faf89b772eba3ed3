"""Where a round's labels are computed: in the episode's process, a local process pool, Slurm (submitit) or Ray.

A :class:`~alenv.oracles.wrappers.CachedOracle` given a :class:`LabelExecutor` sends each structure it has
to compute (its cache misses) to the executor as one task, stores each label the moment it comes back, and
resubmits a task that failed with a transient error; a worker lost mid-batch (a killed pool process, a
preempted Slurm job, a dead Ray actor) counts as such an error. Labels depend only on the structure and the
oracle's settings, so an episode's results are the same whichever executor computed them; only the
wall-clock time changes (``Label.seconds`` is the time the oracle took, wherever it ran).

Chosen by a spec, ``make_executor(spec)``, as a string (the kind) or a mapping with ``kind`` and its settings:

- ``inline`` (default, or None): one structure after another in this process; no executor object at all.
- ``{"kind": "process", "workers": 2}``: a local pool of processes (started by ``forkserver``, so no
  worker inherits the parent's threads or open handles); ``workers`` defaults to the number of cores.
- ``{"kind": "submitit", "folder": "...", "cluster": "slurm", "parameters": {...}}``: one submitit job per
  structure (``pip install submitit``); ``cluster`` is ``slurm``, ``local`` (subprocesses: for trying a set-up)
  or None (submitit decides: Slurm where ``sbatch`` exists); ``parameters`` go to
  ``AutoExecutor.update_parameters`` (``timeout_min``, ``slurm_partition``, ``cpus_per_task``, ...).
  ``folder`` holds submitit's logs and pickles; default ``<cache_dir>/submitit``.
- ``{"kind": "ray", "address": None, "num_cpus": 1}``: one Ray task per structure (``pip install ray``), on
  the cluster at ``address`` or on a local Ray started here.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ase import Atoms

from alenv.types import Label

KINDS = ("inline", "process", "submitit", "ray")
_SETTINGS = {
    "inline": set(),
    "process": {"workers"},
    "submitit": {"folder", "cluster", "parameters"},
    "ray": {"address", "num_cpus"},
}

# In a worker process: the oracles it has built, by (name, fingerprint), so that a backend (an xtb or PySCF
# calculator) is built once per worker, not once per structure.
_WORKER_ORACLES: dict[tuple[str, str], Any] = {}


def label_one(oracle: Any, atoms: Atoms) -> Label:
    """The oracle's label of one structure; what a worker runs for each task (module level: picklable)."""
    import json

    key = (oracle.name, json.dumps(oracle.fingerprint(), sort_keys=True, default=str))
    oracle = _WORKER_ORACLES.setdefault(key, oracle)
    labels = oracle.label([atoms])
    if len(labels) != 1:
        raise RuntimeError(f"oracle {oracle.name!r} returned {len(labels)} labels for 1 structure")
    return labels[0]


class LabelExecutor:
    """A pool of workers that label structures: ``submit`` returns a handle, ``wait`` the finished ones.

    Handles are ``concurrent.futures.Future`` objects (process pool, Ray) or submitit jobs; both answer
    ``done()`` and ``result()``. A broken process pool (a worker died) is replaced by a fresh one at the next
    ``submit``.
    """

    kind = "base"
    # Errors of the executor itself (besides alenv's TRANSIENT_ERRORS, which cover a broken process pool):
    # a job lost or failed on the cluster. Resubmitted like any transient error.
    lost_errors: tuple[type[BaseException], ...] = ()
    hint = ""  # what to check when every try of a structure was lost

    def submit(self, oracle: Any, atoms: Atoms) -> Any:
        """Start labelling ``atoms``; a handle whose ``result()`` is its :class:`Label` (or raises)."""
        raise NotImplementedError

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        """Block until at least one of ``handles`` is done; the done ones."""
        futures = [h for h in handles if isinstance(h, cf.Future)]
        if len(futures) == len(handles):
            done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
            return [h for h in handles if h in done]
        while True:  # handles without a waitable (submitit jobs): poll
            done = [h for h in handles if h.done()]
            if done:
                return done
            time.sleep(self.poll)

    poll = 0.5  # seconds between polls of handles that cannot be waited on

    def shutdown(self) -> None:
        """Release the workers (pending tasks are cancelled)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ProcessExecutor(LabelExecutor):
    """A local pool of ``workers`` processes (``forkserver``)."""

    kind = "process"
    hint = ("; a worker that dies at once is often a script without a main guard: worker processes import the "
            "script that started them, so a script that makes environments must do so under "
            "`if __name__ == '__main__':`")

    def __init__(self, workers: int | None = None) -> None:
        if workers is None:
            workers = os.cpu_count() or 1
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"process executor: workers must be a positive integer, got {workers!r}")
        self.workers = workers
        self._pool: cf.ProcessPoolExecutor | None = None
        self.restarts = 0  # pools replaced after a worker died

    def __repr__(self) -> str:
        return f"ProcessExecutor(workers={self.workers})"

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        return cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx)

    def submit(self, oracle: Any, atoms: Atoms) -> cf.Future:
        if self._pool is None:
            self._pool = self._new_pool()
        try:
            return self._pool.submit(label_one, oracle, atoms)
        except cf.BrokenExecutor:  # a worker died: its tasks failed (and are resubmitted); start afresh
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            self.restarts += 1
            return self._pool.submit(label_one, oracle, atoms)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class SubmititExecutor(LabelExecutor):
    """One submitit job per structure: Slurm on a cluster, subprocesses with ``cluster="local"``."""

    kind = "submitit"

    def __init__(self, folder: str | os.PathLike, cluster: str | None = None,
                 parameters: Mapping[str, Any] | None = None) -> None:
        try:
            import submitit
        except ImportError as exc:
            raise ImportError("the submitit executor needs submitit: pip install submitit") from exc
        if cluster not in (None, "slurm", "local", "debug"):
            raise ValueError(f"submitit executor: cluster must be slurm, local, debug or null, got {cluster!r}")
        from submitit.core.utils import FailedJobError, UncompletedJobError

        # A job that raised arrives as FailedJobError, whatever it raised: configuration errors were checked
        # here before submitting and per-structure failures are labels, so what is left is transient.
        self.lost_errors = (FailedJobError, UncompletedJobError)
        self.folder = Path(folder)
        self.cluster = cluster
        self.parameters = dict(parameters or {})
        self._executor = submitit.AutoExecutor(folder=str(self.folder), cluster=cluster)
        if self.parameters:
            self._executor.update_parameters(**self.parameters)

    def __repr__(self) -> str:
        return f"SubmititExecutor(folder={str(self.folder)!r}, cluster={self.cluster!r})"

    def submit(self, oracle: Any, atoms: Atoms) -> Any:
        return self._executor.submit(label_one, oracle, atoms)

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        self.poll = 0.1 if self.cluster in ("local", "debug") else 5.0
        return super().wait(handles)


class RayExecutor(LabelExecutor):
    """One Ray task per structure, each holding ``num_cpus`` cores."""

    kind = "ray"

    def __init__(self, address: str | None = None, num_cpus: float = 1) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ImportError("the ray executor needs ray: pip install 'ray[default]'") from exc
        if not num_cpus > 0:
            raise ValueError(f"ray executor: num_cpus must be positive, got {num_cpus!r}")
        self.lost_errors = (ray.exceptions.RayError,)  # a crashed worker or node, a task that raised
        self.address, self.num_cpus = address, num_cpus
        self._started = False
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
            self._started = True
        self._remote = ray.remote(num_cpus=num_cpus, max_retries=0)(label_one)

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r}, num_cpus={self.num_cpus})"

    def submit(self, oracle: Any, atoms: Atoms) -> cf.Future:
        return self._remote.remote(oracle, atoms).future()

    def shutdown(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


def executor_spec(spec: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """The spec as a dict with ``kind``; raises ValueError naming what is wrong (checked before any build)."""
    if spec is None:
        return {"kind": "inline"}
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, Mapping):
        raise ValueError(f"oracle executor must be a kind ({', '.join(KINDS)}) or a mapping with 'kind', got {spec!r}")
    spec = {k: v for k, v in spec.items() if v is not None}  # null: the setting's default
    kind = spec.get("kind", "inline")
    if kind not in KINDS:
        raise ValueError(f"unknown oracle executor kind {kind!r}; known: {', '.join(KINDS)}")
    unknown = set(spec) - {"kind"} - _SETTINGS[kind]
    if unknown:
        allowed = ", ".join(sorted(_SETTINGS[kind])) or "none"
        raise ValueError(f"oracle executor {kind!r} has no setting {', '.join(sorted(unknown))}; its settings: {allowed}")
    return {**spec, "kind": kind}


def make_executor(spec: str | Mapping[str, Any] | None, cache_dir: str | os.PathLike | None = None
                  ) -> LabelExecutor | None:
    """The executor a spec describes (see the module docstring); None for ``inline``."""
    spec = executor_spec(spec)
    kind = spec.pop("kind")
    if kind == "inline":
        return None
    if kind == "process":
        return ProcessExecutor(spec.get("workers"))
    if kind == "submitit":
        folder = spec.get("folder") or Path(cache_dir or ".") / "submitit"
        return SubmititExecutor(folder, spec.get("cluster"), spec.get("parameters"))
    return RayExecutor(spec.get("address"), spec.get("num_cpus", 1))

