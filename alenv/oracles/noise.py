"""Aleatoric label noise for any oracle: seeded Gaussian noise on energies (eV) and forces (eV/Angstrom).

:class:`NoisyOracle` wraps an oracle and adds to each successful label ``energy_sigma * z_E`` (eV, one
draw per structure) and ``force_sigma * z_F`` (eV/Angstrom, an independent draw per force component),
``z`` standard normal. The draws are a deterministic function of ``(seed, structure)``: a generator
seeded from a sha256 of the seed, atomic numbers, positions rounded to ``1e-6`` Angstrom, cell and pbc.
So the noise does not depend on call order or batch, and a cache hit and a fresh label of the same
structure agree (the wrapper sits outside the label cache, see :class:`~alenv.oracles.wrappers.CachedOracle`).

Noise levels are homoscedastic (``force_sigma``, ``energy_sigma`` everywhere) or heteroscedastic by
region: ``regions`` is a list of rules, each a geometric coordinate of the structure compared with
thresholds; the first rule that holds sets the sigmas, otherwise the defaults apply. Coordinates
(Angstrom):

- ``distance``: between atoms ``atoms: [i, j]`` (minimum image where periodic);
- ``position``: Cartesian coordinate of atom ``atoms: [i]`` along ``axis`` (``x``, ``y``, ``z`` or 0-2);
- ``min_distance``: the smallest interatomic distance of the structure (minimum image), e.g. close
  contacts, where an electronic-structure method is least reliable.

A rule holds where the coordinate is ``> above`` and ``< below`` (give either or both). In YAML
(``conf/oracle/noisy.yaml``)::

    name: noisy
    kwargs:
      oracle: emt              # the oracle that computes the clean labels; its own kwargs go alongside
      force_sigma: 0.02        # eV/Angstrom per component, outside every region
      energy_sigma: 0.0        # eV per structure
      seed: 0
      regions:
        - {coordinate: min_distance, below: 2.3, force_sigma: 0.5, energy_sigma: 0.05}

In Python: ``NoisyOracle(EMTOracle(), force_sigma=0.02, regions=[NoiseRegion("position", (0,), 0.3,
axis="z", above=5.0)])``, or ``make_oracle("noisy", oracle="emt", force_sigma=0.02, regions=[...])``; a
callable ``sigma_fn(atoms) -> (energy_sigma, force_sigma)`` replaces the rules where a rule will not do.

Each noisy label records its sigmas (``Label.noise_sigma``: force, eV/Angstrom per component;
``Label.energy_noise_sigma``: eV), which an episode writes with its labels and the observation reads
(``alenv.observe``: feature ``noise_sigma``). Failed labels pass through unchanged.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from numbers import Real
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.geometry import get_distances

from alenv.oracles.base import Oracle, check_structures
from alenv.types import Label

COORDINATES = ("distance", "position", "min_distance")
_AXES = {"x": 0, "y": 1, "z": 2, 0: 0, 1: 1, 2: 2}
_ROUND = 6  # decimals of Angstrom kept when positions are hashed into the noise seed


def noise_level(value: Any, what: str) -> float:
    """``value`` as a finite float >= 0, else ValueError naming ``what`` (a negative, NaN, infinite or
    non-numeric noise level is a configuration error)."""
    if isinstance(value, bool) or not isinstance(value, (Real, np.floating, np.integer)):
        raise ValueError(f"{what} must be a number >= 0 (eV or eV/Angstrom), got {value!r}")
    out = float(value)
    if not math.isfinite(out) or out < 0:
        raise ValueError(f"{what} must be a finite number >= 0 (eV or eV/Angstrom), got {value!r}")
    return out


def _threshold(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (Real, np.floating, np.integer)) or not math.isfinite(float(value)):
        raise ValueError(f"{what} must be a finite number of Angstrom, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class NoiseRegion:
    """Where the noise is ``force_sigma`` (eV/Angstrom per component) and ``energy_sigma`` (eV): the
    structures whose ``coordinate`` (Angstrom, see the module docstring) is ``> above`` and ``< below``."""

    coordinate: str
    atoms: tuple[int, ...] = ()
    force_sigma: float = 0.0
    energy_sigma: float = 0.0
    above: float | None = None
    below: float | None = None
    axis: str | int | None = None

    def __post_init__(self) -> None:
        if self.coordinate not in COORDINATES:
            raise ValueError(f"unknown noise-region coordinate {self.coordinate!r}; known: {', '.join(COORDINATES)}")
        atoms = tuple(self.atoms) if self.atoms is not None else ()
        if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) and i >= 0 for i in atoms):
            raise ValueError(f"noise-region atoms must be atom indices >= 0, got {self.atoms!r}")
        need = {"distance": 2, "position": 1, "min_distance": 0}[self.coordinate]
        if len(atoms) != need:
            raise ValueError(f"a {self.coordinate!r} noise region needs {need} atom indices, got {list(atoms)}")
        object.__setattr__(self, "atoms", tuple(int(i) for i in atoms))
        if self.coordinate == "position":
            if self.axis not in _AXES:
                raise ValueError(f"a 'position' noise region needs axis x, y or z, got {self.axis!r}")
            object.__setattr__(self, "axis", "xyz"[_AXES[self.axis]])
        elif self.axis is not None:
            raise ValueError(f"axis applies to 'position' noise regions only, got axis={self.axis!r}")
        above = _threshold(self.above, "noise-region 'above'")
        below = _threshold(self.below, "noise-region 'below'")
        if above is None and below is None:
            raise ValueError("a noise region needs a threshold: 'above', 'below' or both (Angstrom)")
        if above is not None and below is not None and not above < below:
            raise ValueError(f"noise region: 'above' {above} must be smaller than 'below' {below}")
        object.__setattr__(self, "above", above)
        object.__setattr__(self, "below", below)
        object.__setattr__(self, "force_sigma", noise_level(self.force_sigma, "noise-region force_sigma"))
        object.__setattr__(self, "energy_sigma", noise_level(self.energy_sigma, "noise-region energy_sigma"))

    @classmethod
    def of(cls, rule: "NoiseRegion | Mapping[str, Any]") -> "NoiseRegion":
        """A region from itself or from a mapping of its fields (a YAML entry)."""
        if isinstance(rule, NoiseRegion):
            return rule
        if not isinstance(rule, Mapping):
            raise ValueError(f"a noise region is a mapping of {COORDINATES} rules, got {rule!r}")
        unknown = set(rule) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"unknown noise-region field(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**dict(rule))

    def value(self, atoms: Atoms) -> float:
        """The coordinate of ``atoms`` in Angstrom; ValueError where an atom index is out of range."""
        n = len(atoms)
        if any(i >= n for i in self.atoms):
            raise ValueError(f"noise region {self.coordinate} names atoms {list(self.atoms)}, but the structure has {n}")
        if self.coordinate == "position":
            return float(atoms.positions[self.atoms[0], _AXES[self.axis]])
        if self.coordinate == "distance":
            i, j = self.atoms
            _, d = get_distances(atoms.positions[i], atoms.positions[j], cell=atoms.cell, pbc=atoms.pbc)
            return float(d[0, 0])
        if n < 2 and not atoms.pbc.any():
            return math.inf
        _, d = get_distances(atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        d = d[np.triu_indices(n, 1)]
        return float(d.min()) if len(d) else math.inf

    def holds(self, atoms: Atoms) -> bool:
        """True where the coordinate lies strictly between the thresholds."""
        x = self.value(atoms)
        return (self.above is None or x > self.above) and (self.below is None or x < self.below)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields (for the fingerprint)."""
        return {
            "coordinate": self.coordinate, "atoms": list(self.atoms), "axis": self.axis, "above": self.above,
            "below": self.below, "force_sigma": self.force_sigma, "energy_sigma": self.energy_sigma,
        }


def noise_seed(seed: int, atoms: Atoms) -> np.random.SeedSequence:
    """The seed of a structure's noise: sha256 of ``seed``, numbers, positions rounded to 1e-6 Angstrom,
    cell and pbc (so equal structures get equal noise, whatever else is labelled and in which order)."""
    h = hashlib.sha256()
    h.update(struct.pack("<q", int(seed)))
    h.update(np.ascontiguousarray(atoms.numbers, dtype="<i8").tobytes())
    # + 0.0 maps -0.0 to 0.0, so a coordinate rounded to zero from either side gives one seed
    h.update(np.ascontiguousarray(np.round(atoms.positions, _ROUND) + 0.0, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(np.round(atoms.cell.array, _ROUND) + 0.0, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(atoms.pbc, dtype=bool).tobytes())
    return np.random.SeedSequence(np.frombuffer(h.digest(), dtype="<u4").tolist())


class NoisyOracle:
    """An oracle whose labels carry seeded Gaussian noise (see the module docstring).

    Args:
        oracle: the oracle that computes the clean labels.
        force_sigma: eV/Angstrom, standard deviation of each force component's noise (outside the regions).
        energy_sigma: eV, standard deviation of the energy noise per structure (outside the regions).
        seed: int >= 0; with the structure it fixes every draw.
        regions: :class:`NoiseRegion` rules (or mappings of their fields); the first that holds applies.
        sigma_fn: optional ``sigma_fn(atoms) -> (energy_sigma, force_sigma)``, replacing the defaults and
            the regions (a named, module-level function: its name goes into the fingerprint).

    A negative, NaN, infinite or non-numeric noise level raises ValueError here (or, from ``sigma_fn``,
    when the structure is labelled). ``name`` is ``"noisy"``; the fingerprint holds the inner oracle's
    name and fingerprint and the noise settings. ``calculator`` and ``prepare`` are the inner oracle's, so
    oracle MD (task data) runs on the clean potential-energy surface; the reference labels of validation
    and test sets made that way are clean.
    """

    name = "noisy"

    def __init__(
        self,
        oracle: Oracle,
        *,
        force_sigma: float = 0.0,
        energy_sigma: float = 0.0,
        seed: int = 0,
        regions: Sequence[NoiseRegion | Mapping[str, Any]] = (),
        sigma_fn: Callable[[Atoms], tuple[float, float]] | None = None,
    ) -> None:
        if not (hasattr(oracle, "label") and hasattr(oracle, "fingerprint") and hasattr(oracle, "name")):
            raise TypeError(f"NoisyOracle wraps an oracle (name, fingerprint(), label()), got {type(oracle).__name__}")
        self.force_sigma = noise_level(force_sigma, "force_sigma")
        self.energy_sigma = noise_level(energy_sigma, "energy_sigma")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if isinstance(regions, Mapping) or isinstance(regions, (str, bytes)):
            raise ValueError(f"regions must be a list of noise regions, got {regions!r}")
        self.regions = tuple(NoiseRegion.of(r) for r in (regions or ()))
        if sigma_fn is not None and not callable(sigma_fn):
            raise ValueError(f"sigma_fn must be callable, got {sigma_fn!r}")
        if sigma_fn is not None and self.regions:
            raise ValueError("give either regions or sigma_fn, not both")
        self.sigma_fn = sigma_fn
        self.seed = int(seed)
        self.oracle = oracle

    def __repr__(self) -> str:
        return (f"NoisyOracle({self.oracle!r}, force_sigma={self.force_sigma}, energy_sigma={self.energy_sigma}, "
                f"seed={self.seed}, regions={list(self.regions)})")

    def fingerprint(self) -> dict:
        fp: dict[str, Any] = {
            "inner": self.oracle.name,
            "inner_fingerprint": self.oracle.fingerprint(),
            "force_sigma": self.force_sigma,
            "energy_sigma": self.energy_sigma,
            "seed": self.seed,
            "regions": [r.as_dict() for r in self.regions],
        }
        if self.sigma_fn is not None:
            fp["sigma_fn"] = f"{getattr(self.sigma_fn, '__module__', '?')}.{getattr(self.sigma_fn, '__qualname__', repr(self.sigma_fn))}"
        return fp

    # -- what the wrapped oracle offers, passed through ----------------------------------------------
    @property
    def calculator(self) -> Calculator:
        """The inner oracle's ASE calculator (clean), e.g. for oracle MD."""
        try:
            return self.oracle.calculator  # type: ignore[attr-defined]
        except AttributeError:
            raise AttributeError(f"the oracle {self.oracle.name!r} under the noise has no ASE calculator") from None

    def prepare(self, atoms: Atoms) -> Atoms:
        """The inner oracle's preparation of a structure (charge, spin), if it has one."""
        prepare = getattr(self.oracle, "prepare", None)
        return prepare(atoms) if callable(prepare) else atoms

    def check(self, structures: Sequence[Atoms]) -> None:
        """Raise for a configuration error (the inner oracle's, or a region naming a missing atom)."""
        structures = check_structures(structures)
        for atoms in structures:
            self.sigmas(atoms)
        check = getattr(self.oracle, "check", None)
        if callable(check):
            check(structures)

    # -- the noise -------------------------------------------------------------------------------------
    def sigmas(self, atoms: Atoms) -> tuple[float, float]:
        """The declared noise of a structure: (energy sigma in eV, force sigma in eV/Angstrom per component)."""
        if self.sigma_fn is not None:
            out = self.sigma_fn(atoms)
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise ValueError(f"sigma_fn must return (energy_sigma, force_sigma), got {out!r}")
            return noise_level(out[0], "sigma_fn energy sigma"), noise_level(out[1], "sigma_fn force sigma")
        for region in self.regions:
            if region.holds(atoms):
                return region.energy_sigma, region.force_sigma
        return self.energy_sigma, self.force_sigma

    def perturb(self, structures: Sequence[Atoms], labels: Sequence[Label]) -> list[Label]:
        """``labels`` (the inner oracle's, of ``structures``) with this oracle's noise added and its sigmas
        recorded; failed labels unchanged."""
        if len(structures) != len(labels):
            raise ValueError(f"perturb() got {len(structures)} structures but {len(labels)} labels")
        out = []
        for atoms, lab in zip(structures, labels):
            if lab.failed:
                out.append(lab)
                continue
            e_sigma, f_sigma = self.sigmas(atoms)
            rng = np.random.default_rng(noise_seed(self.seed, atoms))
            z_e = rng.standard_normal()
            z_f = rng.standard_normal(np.shape(lab.forces))
            out.append(
                replace(
                    lab,
                    energy=float(lab.energy + e_sigma * z_e),
                    forces=np.asarray(lab.forces, dtype=np.float64) + f_sigma * z_f,
                    noise_sigma=f_sigma,
                    energy_noise_sigma=e_sigma,
                )
            )
        return out

    def label(self, structures: Sequence[Atoms]) -> list[Label]:
        structures = check_structures(structures)
        for atoms in structures:  # a region naming a missing atom raises before anything is computed
            self.sigmas(atoms)
        return self.perturb(structures, self.oracle.label(structures))


def noisy_oracle(
    oracle: str,
    force_sigma: float = 0.0,
    energy_sigma: float = 0.0,
    seed: int = 0,
    regions: Sequence[NoiseRegion | Mapping[str, Any]] = (),
    **kwargs: Any,
) -> NoisyOracle:
    """``make_oracle("noisy", oracle="emt", force_sigma=0.05, ...)``: the registered oracle ``oracle``,
    built with the remaining ``kwargs``, under seeded noise (the ``noisy`` entry of ``ORACLES``)."""
    from alenv.oracles import make_oracle

    if not isinstance(oracle, str) or oracle == "noisy":
        raise ValueError(f"oracle must name a registered oracle other than 'noisy', got {oracle!r}")
    return NoisyOracle(
        make_oracle(oracle, **kwargs), force_sigma=force_sigma, energy_sigma=energy_sigma, seed=seed, regions=regions
    )
