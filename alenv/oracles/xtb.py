"""GFN-xTB tight binding through xtb-python: a cheap quantum-chemical oracle for molecules.

GFN2-xTB labels an organic molecule in milliseconds, so tasks can run many rounds of active learning
against a real electronic-structure method. xtb-python handles molecules only; for periodic GFN2-xTB use
:class:`~alenv.oracles.tblite.TBLiteOracle` (``make_oracle("tblite")``, ``pip install "alenv[water]"``).
"""

from __future__ import annotations

from importlib import metadata

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from alenv.oracles.base import CalculatorOracle, check_electrons, valence_electrons


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


class XTBOracle(CalculatorOracle):
    """GFN-xTB energies and forces of molecules via ``xtb.ase.calculator.XTB``.

    Args:
        method: "GFN2-xTB", "GFN1-xTB", "GFN0-xTB" or "GFNFF".
        accuracy: xtb numerical accuracy (lower is tighter).
        electronic_temperature: Fermi smearing temperature, K.
        max_iterations: SCC iterations; an SCC that does not converge gives a failed Label.
        charge: total molecular charge (e); it must leave valence electrons.
        uhf: number of unpaired electrons; its parity must be that of the electron count (xtb would
            otherwise change it silently). Both are checked on every structure before xtb runs
            (ValueError); GFN-FF, a force field, checks the charge only.
        min_distance: Angstrom; closer atoms give a failed Label without calling xtb.

    The API calculator is not reused between structures (``cache_api=False``): xtb would otherwise start
    each SCC from the previous structure's wavefunction, making a label depend on what was labelled
    before it (and a failed SCC would poison the next guess). It costs about nothing.
    """

    def __init__(
        self,
        method: str = "GFN2-xTB",
        accuracy: float = 1.0,
        electronic_temperature: float = 300.0,
        max_iterations: int = 250,
        charge: int = 0,
        uhf: int = 0,
        min_distance: float = 0.5,
    ) -> None:
        from xtb.utils import get_method  # light import; fails early on a misspelled method

        if get_method(method) is None:
            raise ValueError(f"unknown xtb method {method!r}; use GFN2-xTB, GFN1-xTB, GFN0-xTB or GFNFF")
        if uhf < 0 or int(uhf) != uhf or int(charge) != charge:
            raise ValueError(f"charge and uhf must be integers (uhf >= 0), got charge={charge}, uhf={uhf}")
        settings = {
            "method": method,
            "accuracy": float(accuracy),
            "electronic_temperature": float(electronic_temperature),
            "max_iterations": int(max_iterations),
            "charge": int(charge),
            "uhf": int(uhf),
            "xtb_version": _version("xtb"),
        }
        super().__init__(self._make_xtb, name="xtb", settings=settings, min_distance=min_distance)

    def _make_xtb(self) -> Calculator:
        from xtb.ase.calculator import XTB

        s = self.settings
        return XTB(
            method=s["method"],
            accuracy=s["accuracy"],
            electronic_temperature=s["electronic_temperature"],
            max_iterations=s["max_iterations"],
            cache_api=False,
        )

    def prepare(self, atoms: Atoms) -> Atoms:
        if atoms.pbc.any():
            raise ValueError(
                "xtb-python handles molecules only (got a structure with pbc="
                f"{atoms.pbc.tolist()}); for periodic GFN2-xTB use the tblite oracle: "
                "make_oracle('tblite') (TBLiteOracle; pip install \"alenv[water]\")"
            )
        s = self.settings
        uhf = None if s["method"] == "GFNFF" else s["uhf"]
        check_electrons(atoms, s["charge"], uhf, "XTBOracle", electrons=valence_electrons(atoms.numbers))
        # xtb's ASE calculator reads the total charge from the initial charges and the number of
        # unpaired electrons from the initial magnetic moments; put both on the first atom.
        charges = np.zeros(len(atoms))
        charges[0] = self.settings["charge"]
        magmoms = np.zeros(len(atoms))
        magmoms[0] = self.settings["uhf"]
        atoms.set_initial_charges(charges)
        atoms.set_initial_magnetic_moments(magmoms)
        return atoms
