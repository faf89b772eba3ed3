"""Thin wrappers that add one cross-cutting behaviour to any oracle: noise, caching.

Order matters: ``CachedOracle(NoisyOracle(o), cache)`` stores noisy labels, so a structure always gets
the same noise (replayable); ``NoisyOracle(CachedOracle(o, cache))`` draws fresh noise on every call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from ase import Atoms

from alenv.oracles.base import Oracle, OracleError, check_structures
from alenv.oracles.cache import LabelCache
from alenv.types import Label


class NoisyOracle:
    """Adds Gaussian noise to successful labels (aleatoric-noise studies).

    Energy noise has standard deviation ``energy_sigma`` eV per structure; every force component gets
    independent noise of ``force_sigma`` eV/Angstrom. Failed labels pass through unchanged.
    """

    def __init__(self, oracle: Oracle, energy_sigma: float, force_sigma: float, rng: np.random.Generator) -> None:
        if energy_sigma < 0 or force_sigma < 0:
            raise ValueError(f"noise sigmas must be >= 0, got {energy_sigma}, {force_sigma}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError("rng must be a numpy.random.Generator")
        self.oracle = oracle
        self.energy_sigma = float(energy_sigma)
        self.force_sigma = float(force_sigma)
        self.rng = rng
        self.name = f"{oracle.name}+noise"

    def fingerprint(self) -> dict:
        return {"inner": self.oracle.fingerprint(), "energy_sigma": self.energy_sigma, "force_sigma": self.force_sigma}

    def label(self, structures: Sequence[Atoms]) -> list[Label]:
        out = []
        for lab in self.oracle.label(structures):
            if not lab.failed:
                lab = replace(
                    lab,
                    energy=lab.energy + self.energy_sigma * self.rng.standard_normal(),
                    forces=lab.forces + self.force_sigma * self.rng.standard_normal(lab.forces.shape),
                )
            out.append(lab)
        return out


class CachedOracle:
    """Serves labels from a :class:`LabelCache`, sending only misses to the inner oracle (in one call).

    Hits come back with ``cached=True`` and the seconds originally spent. Every computed label is stored,
    failures included (they were paid for). A structure repeated within one call is computed once; its
    later copies are marked cached. ``name`` and ``fingerprint()`` are the inner oracle's.
    """

    def __init__(self, oracle: Oracle, cache: LabelCache) -> None:
        self.oracle = oracle
        self.cache = cache

    @property
    def name(self) -> str:
        return self.oracle.name

    def fingerprint(self) -> dict:
        return self.oracle.fingerprint()

    def keys(self, structures: Sequence[Atoms]) -> list[str]:
        """Cache keys of ``structures`` under the inner oracle."""
        name, fp = self.oracle.name, self.oracle.fingerprint()
        return [self.cache.key(name, fp, atoms) for atoms in structures]

    def label(self, structures: Sequence[Atoms]) -> list[Label]:
        structures = check_structures(structures)
        keys = self.keys(structures)
        found = self.cache.get_many(keys)
        miss_keys: list[str] = []
        miss_structures: list[Atoms] = []
        miss_keys_set: set[str] = set()
        for key, atoms in zip(keys, structures):
            if key not in found and key not in miss_keys_set:
                miss_keys_set.add(key)
                miss_keys.append(key)
                miss_structures.append(atoms)
        fresh: dict[str, Label] = {}
        if miss_structures:
            computed = self.oracle.label(miss_structures)
            if len(computed) != len(miss_structures):
                raise OracleError(
                    f"oracle {self.oracle.name!r} returned {len(computed)} labels for {len(miss_structures)} structures"
                )
            self.cache.put_many(list(zip(miss_keys, computed)))
            fresh = dict(zip(miss_keys, computed))
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

    def store(self, structures: Sequence[Atoms], labels: Sequence[Label]) -> None:
        """Prefill the cache, e.g. with labels computed during oracle-driven MD."""
        structures = check_structures(structures)
        if len(structures) != len(labels):
            raise ValueError(f"store() got {len(structures)} structures but {len(labels)} labels")
        self.cache.put_many(list(zip(self.keys(structures), labels)))
