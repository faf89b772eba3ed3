"""Oracles: label configurations with energies (eV) and forces (eV/Angstrom).

``ORACLES`` maps a name to a constructor; :func:`make_oracle` builds one by name. Wrap any oracle in
:class:`CachedOracle` (persistent SQLite cache) or :class:`NoisyOracle` (seeded aleatoric noise, by
region if wanted; ``make_oracle("noisy", oracle="emt", force_sigma=0.05)``, see ``alenv.oracles.noise``);
adapt any ASE calculator with :class:`CalculatorOracle`. A cached oracle computes its misses in this process or,
given an executor (:func:`make_executor`: a local process pool, Slurm through submitit, Ray), on workers. Heavy backends are imported only when first
used (xtb) or when the oracle is built (PySCF, to check the functional and basis; tblite, to read its
version for the cache key). ``python -m alenv.cache`` checks, salvages and copies label caches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alenv.oracles.analytic import EMTOracle, LennardJonesOracle
from alenv.oracles.base import CacheCorruptError, CalculatorOracle, Oracle, OracleError, TransientOracleError
from alenv.oracles.cache import DamagedRowWarning, LabelCache
from alenv.oracles.conformance import check_oracle, conformance_structures
from alenv.oracles.dft import PySCFCalculator, PySCFOracle, SCFNotConverged
from alenv.oracles.executors import LabelExecutor, make_executor
from alenv.oracles.lookup import LookupOracle
from alenv.oracles.noise import NoiseRegion, NoisyOracle, noisy_oracle
from alenv.oracles.tblite import TBLiteOracle
from alenv.oracles.wrappers import CachedOracle
from alenv.oracles.xtb import XTBOracle

ORACLES: dict[str, Callable[..., Oracle]] = {
    "xtb": XTBOracle,
    "tblite": TBLiteOracle,  # GFN2-xTB (or GFN1) for periodic cells too; pip install "alenv[water]"
    "dft": PySCFOracle,
    "emt": EMTOracle,
    "lj": LennardJonesOracle,
    "lookup": LookupOracle,
    "noisy": noisy_oracle,  # any of the above under seeded noise: oracle=<name>, force_sigma, energy_sigma, seed, regions
}


def make_oracle(name: str, **kwargs: Any) -> Oracle:
    """Build a registered oracle by name, e.g. ``make_oracle("xtb", accuracy=0.1)``."""
    try:
        factory = ORACLES[name]
    except KeyError:
        raise ValueError(f"unknown oracle {name!r}; known oracles: {', '.join(sorted(ORACLES))}") from None
    return factory(**kwargs)


__all__ = [
    "ORACLES",
    "CacheCorruptError",
    "CachedOracle",
    "CalculatorOracle",
    "DamagedRowWarning",
    "EMTOracle",
    "LabelCache",
    "LabelExecutor",
    "LennardJonesOracle",
    "LookupOracle",
    "NoiseRegion",
    "NoisyOracle",
    "Oracle",
    "OracleError",
    "PySCFCalculator",
    "PySCFOracle",
    "SCFNotConverged",
    "TBLiteOracle",
    "TransientOracleError",
    "XTBOracle",
    "check_oracle",
    "conformance_structures",
    "make_executor",
    "make_oracle",
]
