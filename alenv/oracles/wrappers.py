"""Thin wrappers that add one cross-cutting behaviour to any oracle: caching, and (``alenv.oracles.noise``)
noise.

Noise always sits outside the cache: ``CachedOracle(NoisyOracle(o), cache)`` caches ``o``'s clean labels
(under ``o``'s keys, so they are shared with the clean oracle and with the labels its oracle MD computed)
and adds the noise on the way out, exactly as ``NoisyOracle(CachedOracle(o, cache))`` does. The noise is a
deterministic function of (seed, structure), so a cache hit and a fresh label of a structure agree, and
the sigmas recorded with each label (``Label.noise_sigma``) are recomputed rather than stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ase import Atoms

from alenv.oracles.base import (
    TRANSIENT_ERRORS,
    Oracle,
    OracleError,
    TransientOracleError,
    check_structures,
    describe_exception,
)
from alenv.oracles.cache import LabelCache
from alenv.oracles.executors import LabelExecutor
from alenv.oracles.noise import NoisyOracle
from alenv.types import Label

log = logging.getLogger(__name__)


def check_config(oracle: Oracle, structures: Sequence[Atoms]) -> None:
    """Run the oracle's optional ``check`` (configuration errors raise; nothing is computed)."""
    check = getattr(oracle, "check", None)
    if callable(check):
        check(structures)


@dataclass(frozen=True)
class Retry:
    """One transient failure that was retried: the structure's cache key, the try (1-based), the reason."""

    key: str
    attempt: int
    reason: str


class CachedOracle:
    """Serves labels from a :class:`LabelCache`; misses go to the inner oracle one structure at a time.

    Each computed label is stored (committed) as soon as the inner oracle returns it, failures included
    (they were paid for), so a run killed mid-batch pays again only for what it had not finished. Before
    the first miss is computed, the inner oracle's optional ``check`` sees every miss of the batch, so a
    configuration error raises before anything is computed or charged. A transient error (an OSError such
    as a full disk, a broken worker pool, a time-out) is retried up to ``attempts`` tries in all, ``wait``
    seconds times the try number apart, each retry recorded in ``retries`` and logged; it is never stored,
    and if every try fails :class:`~alenv.oracles.base.TransientOracleError` raises (labels stored before
    it stay stored).

    With an ``executor`` (:mod:`alenv.oracles.executors`: a local process pool, Slurm, Ray) the misses of a
    call are computed at once, one task each, and each label is stored as soon as its task returns; a worker
    lost mid-batch is a transient error of that structure (resubmitted, counted in ``retries``); labels that
    came back before an error raises are stored. Results are those of the in-process path.

    Hits come back with ``cached=True`` and the seconds originally spent. A structure repeated within one
    call is computed once; its later copies are marked cached. ``name`` and ``fingerprint()`` are the
    inner oracle's.

    A :class:`~alenv.oracles.noise.NoisyOracle` given as the inner oracle is applied outside the cache (see
    the module docstring): the cache holds, and :meth:`store` takes, the clean labels of the oracle it wraps.
    """

    def __init__(self, oracle: Oracle, cache: LabelCache, attempts: int = 3, wait: float = 1.0,
                 executor: LabelExecutor | None = None) -> None:
        if int(attempts) < 1 or wait < 0:
            raise ValueError(f"attempts must be >= 1 and wait >= 0, got {attempts}, {wait}")
        self.executor = executor
        self.oracle = oracle
        # the oracle whose labels are cached: under a noisy oracle, the clean one it wraps
        self.noise = oracle if isinstance(oracle, NoisyOracle) else None
        self.labeller: Oracle = oracle.oracle if isinstance(oracle, NoisyOracle) else oracle
        self.cache = cache
        self.attempts = int(attempts)
        self.wait = float(wait)
        self.retries: list[Retry] = []

    @property
    def name(self) -> str:
        return self.oracle.name

    def fingerprint(self) -> dict:
        return self.oracle.fingerprint()

    def check(self, structures: Sequence[Atoms]) -> None:
        check_config(self.oracle, structures)

    def keys(self, structures: Sequence[Atoms]) -> list[str]:
        """Cache keys of ``structures`` under the inner oracle (the clean one, under a noisy oracle)."""
        name, fp = self.labeller.name, self.labeller.fingerprint()
        return [self.cache.key(name, fp, atoms) for atoms in structures]

    def label(self, structures: Sequence[Atoms]) -> list[Label]:
        structures = check_structures(structures)
        if self.noise is not None:
            self.noise.check(structures)  # its configuration errors (a region naming a missing atom) first
            return self.noise.perturb(structures, self._label_clean(structures))
        return self._label_clean(structures)

    def _label_clean(self, structures: list[Atoms]) -> list[Label]:
        """The labeller's labels of ``structures``: hits from the cache, misses computed and stored."""
        keys = self.keys(structures)
        found = self.cache.get_many(keys)
        misses: dict[str, Atoms] = {}  # each missing structure once, in order of first appearance
        for key, atoms in zip(keys, structures):
            if key not in found:
                misses.setdefault(key, atoms)
        if misses:
            check_config(self.labeller, list(misses.values()))
        fresh: dict[str, Label] = {}
        if self.executor is None:
            for key, atoms in misses.items():
                fresh[key] = self._compute(key, atoms)
                self.cache.put(key, fresh[key])  # durable before the next one is computed
        elif misses:
            fresh = self._compute_on_executor(misses)
        out = []
        for key in keys:
            if key in fresh:
                lab = fresh.pop(key)  # first occurrence: the computed label
                found[key] = replace(lab, forces=lab.forces.copy(), cached=True)  # later copies: cached
                out.append(lab)
            else:
                lab = found[key]
                out.append(replace(lab, forces=lab.forces.copy(), cached=True))
        return out

    def _compute(self, key: str, atoms: Atoms) -> Label:
        """The inner oracle's label of one structure, retrying transient errors."""
        reasons = []
        for attempt in range(1, self.attempts + 1):
            try:
                labels = self.labeller.label([atoms])
            except TRANSIENT_ERRORS as exc:
                reasons.append(describe_exception(exc))
                if attempt < self.attempts:
                    self.retries.append(Retry(key, attempt, reasons[-1]))
                    log.warning("oracle %r, try %d of %d on %s failed: %s; retrying", self.name, attempt,
                                self.attempts, atoms.get_chemical_formula(), reasons[-1])
                    time.sleep(self.wait * attempt)
                continue
            if len(labels) != 1:
                raise OracleError(f"oracle {self.labeller.name!r} returned {len(labels)} labels for 1 structure")
            return labels[0]
        raise TransientOracleError(
            f"oracle {self.name!r} failed {self.attempts} times on {atoms.get_chemical_formula()} (key {key[:16]}) "
            f"with transient errors; nothing was stored for it: {'; '.join(reasons)}"
        )

    def _compute_on_executor(self, misses: dict[str, Atoms]) -> dict[str, Label]:
        """Every miss as one task of the executor; each label stored the moment its task returns."""
        executor = self.executor
        transient = TRANSIENT_ERRORS + executor.lost_errors
        tries = dict.fromkeys(misses, 0)
        reasons: dict[str, list[str]] = {key: [] for key in misses}
        pending: dict[Any, str] = {}  # handle -> key
        fresh: dict[str, Label] = {}

        def submit(key: str) -> None:
            tries[key] += 1
            pending[executor.submit(self.labeller, misses[key])] = key

        try:
            for key in misses:
                submit(key)
            while pending:
                for handle in executor.wait(list(pending)):
                    key = pending.pop(handle)
                    try:
                        label = handle.result()
                    except transient as exc:
                        reasons[key].append(describe_exception(exc))
                        atoms = misses[key]
                        if tries[key] >= self.attempts:
                            raise TransientOracleError(
                                f"oracle {self.name!r} failed {self.attempts} times on {atoms.get_chemical_formula()} "
                                f"(key {key[:16]}) on {executor!r} with transient errors (a lost worker counts); "
                                f"nothing was stored for it: {'; '.join(reasons[key])}{executor.hint}"
                            ) from exc
                        self.retries.append(Retry(key, tries[key], reasons[key][-1]))
                        log.warning("oracle %r on %r, try %d of %d on %s failed: %s; resubmitting", self.name,
                                    executor, tries[key], self.attempts, atoms.get_chemical_formula(),
                                    reasons[key][-1])
                        time.sleep(self.wait * tries[key])
                        submit(key)
                        continue
                    if not isinstance(label, Label):
                        raise OracleError(f"oracle {self.labeller.name!r} returned {type(label).__name__}, not a Label")
                    self.cache.put(key, label)  # durable before anything else is waited for
                    fresh[key] = label
        except Exception:
            self._drain(pending)  # labels already computed elsewhere are paid for: keep them
            raise
        except BaseException:  # Ctrl-C: stop at once; what was stored stays stored
            for handle in pending:
                getattr(handle, "cancel", lambda: None)()
            raise
        return fresh

    def _drain(self, pending: dict[Any, str]) -> None:
        """Store the labels of tasks still running when another task's error ends the call."""
        for handle, key in pending.items():
            try:
                label = handle.result()
            except BaseException:  # noqa: BLE001 - this task failed too; the first error is the one raised
                continue
            if isinstance(label, Label):
                self.cache.put(key, label)

    def store(self, structures: Sequence[Atoms], labels: Sequence[Label]) -> None:
        """Prefill the cache, e.g. with labels computed during oracle-driven MD (clean labels: under a noisy
        oracle, those of the oracle it wraps, whose calculator ran the MD)."""
        structures = check_structures(structures)
        if len(structures) != len(labels):
            raise ValueError(f"store() got {len(structures)} structures but {len(labels)} labels")
        self.cache.put_many(list(zip(self.keys(structures), labels)))
