"""Analytic potentials from ASE: instant oracles for tests, tutorials and method development.

EMT (effective medium theory) covers Al, Cu, Ag, Au, Ni, Pd, Pt (and, roughly, H, C, N, O): a metal
oracle with realistic many-body forces at no cost. Lennard-Jones is the simplest pair potential.
"""

from __future__ import annotations

from ase.calculators.calculator import Calculator

from alenv.oracles.base import CalculatorOracle


def _emt() -> Calculator:
    from ase.calculators.emt import EMT

    return EMT()


class EMTOracle(CalculatorOracle):
    """ASE's effective-medium-theory potential (``ase.calculators.emt.EMT``)."""

    def __init__(self, min_distance: float = 0.5) -> None:
        super().__init__(_emt, name="emt", settings={}, min_distance=min_distance)


class LennardJonesOracle(CalculatorOracle):
    """ASE's Lennard-Jones pair potential (``ase.calculators.lj.LennardJones``).

    Args:
        sigma: Angstrom. epsilon: eV. rc: cutoff in Angstrom (None: 3 sigma).
        smooth: taper the pair energy to zero between 0.66 rc and rc so energy and forces stay
            continuous at the cutoff (without it the energy jumps when a pair crosses rc, which breaks
            finite-difference checks and MD energy conservation).
        min_distance: Angstrom; closer atoms give a failed Label. With sigma = 1 (reduced units) lower it.
    """

    def __init__(
        self,
        sigma: float = 1.0,
        epsilon: float = 1.0,
        rc: float | None = None,
        smooth: bool = True,
        min_distance: float = 0.5,
    ) -> None:
        if sigma <= 0 or epsilon <= 0 or (rc is not None and rc <= 0):
            raise ValueError(f"sigma, epsilon and rc must be positive, got {sigma}, {epsilon}, {rc}")
        settings = {
            "sigma": float(sigma),
            "epsilon": float(epsilon),
            "rc": None if rc is None else float(rc),
            "smooth": bool(smooth),
        }
        super().__init__(self._make_lj, name="lj", settings=settings, min_distance=min_distance)

    def _make_lj(self) -> Calculator:
        from ase.calculators.lj import LennardJones

        s = self.settings
        return LennardJones(sigma=s["sigma"], epsilon=s["epsilon"], rc=s["rc"], smooth=s["smooth"])
