"""The ensemble potential as an ASE calculator."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

if TYPE_CHECKING:
    from alenv.models.ensemble import EnsemblePotential


class EnsembleCalculator(Calculator):
    """Mean energy (eV) and forces (eV/Angstrom) of the ensemble, with its spreads.

    Results: ``energy``, ``free_energy``, ``forces`` (ensemble means), ``energy_std`` (eV) and
    ``forces_std`` (n_atoms, 3) eV/Angstrom (standard deviations over members), and ``energies_members``.
    """

    implemented_properties = ["energy", "free_energy", "forces", "energy_std", "forces_std"]

    def __init__(self, potential: "EnsemblePotential", **kwargs):
        super().__init__(**kwargs)
        self.potential = potential

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        E, F = self.potential.evaluate_atoms(self.atoms)
        self.results = {
            "energy": float(E.mean()),
            "free_energy": float(E.mean()),
            "forces": F.mean(0),
            "energy_std": float(E.std()),
            "forces_std": F.std(0),
            "energies_members": E,
        }
