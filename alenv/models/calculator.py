"""The ensemble potential as an ASE calculator."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

if TYPE_CHECKING:
    from alenv.models.base import Potential


class EnsembleCalculator(Calculator):
    """Mean energy (eV) and forces (eV/Angstrom) of a committee potential, with its spreads.

    Results: ``energy``, ``free_energy``, ``forces`` (ensemble means), ``energy_std`` (eV) and
    ``forces_std`` (n_atoms, 3) eV/Angstrom (standard deviations over members), and ``energies_members``.
    A single member has no spread: ``energy_std`` and ``forces_std`` are then NaN, not zero.
    """

    implemented_properties = ["energy", "free_energy", "forces", "energy_std", "forces_std"]

    def __init__(self, potential: "Potential", **kwargs):
        super().__init__(**kwargs)
        self.potential = potential

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        E, F = self.potential.evaluate_atoms(self.atoms)
        self._members_forces = F
        self.results = {
            "energy": float(E.mean()),
            "free_energy": float(E.mean()),
            "forces": F.mean(0),
            "energy_std": float(E.std()) if len(E) > 1 else float("nan"),
            "forces_std": F.std(0) if len(E) > 1 else np.full(F.shape[1:], np.nan),
            "energies_members": E,
        }


class UncertaintyBiasedCalculator(EnsembleCalculator):
    """The ensemble calculator plus a bias that pulls MD towards configurations the ensemble disagrees on.

    Bias energy (uncertainty-driven dynamics): ``E_b = A * (exp(-s**2 / B**2) - 1)`` with ``s**2`` the
    variance of the members' energies per atom (eV**2/atom), ``A = height`` (eV) and ``B = width`` (eV).
    It is bounded (between -A and 0), so it lowers barriers towards uncertain regions without running
    away. Forces are its exact negative gradient, from the members' energies and forces:
    ``grad s**2 = -(2 / (M n)) sum_m (E_m - E)(F_m - F)``.
    ``energy`` and ``forces`` include the bias; ``energy_unbiased`` and ``forces_unbiased`` do not.
    """

    implemented_properties = EnsembleCalculator.implemented_properties + ["energy_unbiased", "forces_unbiased"]

    def __init__(self, potential: "Potential", height: float, width: float, **kwargs):
        if height < 0 or width <= 0:
            raise ValueError(f"bias height must be >= 0 and width > 0 (eV), got {height}, {width}")
        super().__init__(potential, **kwargs)
        self.height, self.width = float(height), float(width)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        E = self.results["energies_members"]
        F_members = self._members_forces
        n = len(self.atoms)
        dE = E - E.mean()
        var = float((dE**2).mean()) / n
        g = np.exp(-var / self.width**2)
        e_bias = self.height * (g - 1.0)
        grad_var = -(2.0 / (len(E) * n)) * np.einsum("m,mij->ij", dE, F_members - F_members.mean(0))
        f_bias = (self.height / self.width**2) * g * grad_var  # -dE_b/dx = (A/B^2) g grad(var)
        self.results.update(
            energy_unbiased=self.results["energy"],
            forces_unbiased=self.results["forces"],
            energy=self.results["energy"] + e_bias,
            free_energy=self.results["energy"] + e_bias,
            forces=self.results["forces"] + f_bias,
            bias_energy=e_bias,
        )
