"""Kohn-Sham DFT through PySCF: the reference-quality oracle for molecules.

PySCF has no maintained ASE calculator, so this module carries a small one (:class:`PySCFCalculator`),
and :class:`PySCFOracle` runs it through the generic :class:`~alenv.oracles.base.CalculatorOracle`. The
defaults (PBE/def2-SVP) are the level of theory of rMD17, so labels are comparable to that data set. A
small molecule such as ethanol takes a few seconds per label (energy and gradient); a coarse grid
(``grid_level=1``) halves the gradient cost at about 1e-4 Hartree.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from importlib import metadata
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed, Calculator, all_changes
from ase.units import Bohr, Hartree

from alenv.oracles.base import CalculatorOracle, check_electrons


class SCFNotConverged(CalculationFailed):
    """PySCF's SCF stopped at max_cycle without meeting conv_tol."""


class PySCFCalculator(Calculator):
    """Minimal ASE calculator for molecular Kohn-Sham DFT with PySCF (energy, forces; eV, eV/Angstrom).

    RKS for closed shells, UKS when ``spin`` (= N_alpha - N_beta) is non-zero. Density fitting is applied
    after the functional is set (setting ``xc`` after ``density_fit()`` is a known PySCF pitfall). Forces
    include the grid response, so they are the exact derivative of the returned energy even on a coarse grid.
    Raises :class:`SCFNotConverged` when the SCF does not converge, ValueError for periodic cells.
    """

    implemented_properties = ["energy", "free_energy", "forces"]
    default_parameters: dict[str, Any] = {
        "xc": "PBE",
        "basis": "def2-SVP",
        "density_fit": True,
        "grid_level": 1,
        "max_cycle": 100,
        "conv_tol": 1e-8,
        "charge": 0,
        "spin": 0,
        "num_threads": None,
    }

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        from pyscf import lib

        threads = self.parameters.get("num_threads")
        if threads:
            with lib.with_omp_threads(int(threads)):
                self._run()
        else:
            self._run()

    def _run(self) -> None:
        from pyscf import dft, gto

        atoms = self.atoms
        if atoms.pbc.any():
            raise ValueError("PySCFCalculator handles molecules only (no periodic boundary conditions)")
        p = self.parameters
        mol = gto.M(
            atom=[(s, tuple(float(x) for x in xyz)) for s, xyz in zip(atoms.get_chemical_symbols(), atoms.positions)],
            unit="Angstrom",
            basis=p["basis"],
            charge=int(p["charge"]),
            spin=int(p["spin"]),
            verbose=0,
        )
        mol.verbose = 0
        mf = dft.UKS(mol) if int(p["spin"]) != 0 else dft.RKS(mol)
        mf.xc = p["xc"]  # before density_fit()
        if p["density_fit"]:
            mf = mf.density_fit()
        mf.grids.level = int(p["grid_level"])
        mf.max_cycle = int(p["max_cycle"])
        mf.conv_tol = float(p["conv_tol"])
        mf.verbose = 0
        energy = mf.kernel()
        if not mf.converged:
            raise SCFNotConverged(f"SCF not converged after {mf.max_cycle} cycles")
        grad = mf.nuc_grad_method()
        grad.verbose = 0
        # include the response of the atom-centred grid: without it, forces on a coarse grid differ from
        # -dE/dx of the very energy returned by ~1e-2 eV/Angstrom (grid level 1); with it, by ~1e-5, at
        # about the same cost
        grad.grid_response = True
        gradient = np.asarray(grad.kernel(), dtype=np.float64)  # Hartree/Bohr
        self.results["energy"] = float(energy) * Hartree
        self.results["free_energy"] = self.results["energy"]
        self.results["forces"] = -gradient * (Hartree / Bohr)


class PySCFOracle(CalculatorOracle):
    """Kohn-Sham DFT energies and forces of molecules via PySCF.

    Args:
        xc: exchange-correlation functional (PySCF/libxc name).
        basis: Gaussian basis set name.
        density_fit: use density fitting (RI-J) for the Coulomb term; much faster, ~1e-5 Hartree error.
        grid_level: DFT integration grid (0-9); 1 is coarse but adequate for training labels.
        max_cycle, conv_tol: SCF limits; a non-converged SCF gives a failed Label.
        charge: total charge. spin: N_alpha - N_beta (2S); non-zero selects UKS. Checked on every
            structure before PySCF runs: the charge must leave electrons, the spin fit their parity.
        min_distance: Angstrom; closer atoms give a failed Label without calling PySCF.
        num_threads: OpenMP threads for PySCF (None: PySCF's default, all cores). Does not change results,
            so it is not part of the fingerprint. Use 1 in parallel workers or on a busy machine: on two
            cores shared with another busy process, two threads ran a water sto-3g label ~20x slower
            than one.

    The default, PBE/def2-SVP, matches rMD17's level of theory; expect seconds per molecule. An unknown
    functional or basis raises ValueError here (this imports PySCF), a basis without functions for an
    element of a structure raises before that structure is computed.
    """

    def __init__(
        self,
        xc: str = "PBE",
        basis: str = "def2-SVP",
        density_fit: bool = True,
        grid_level: int = 1,
        max_cycle: int = 100,
        conv_tol: float = 1e-8,
        charge: int = 0,
        spin: int = 0,
        min_distance: float = 0.5,
        num_threads: int | None = None,
    ) -> None:
        if int(spin) != spin or int(charge) != charge:
            raise ValueError(f"charge and spin must be integers, got charge={charge}, spin={spin}")
        if int(max_cycle) < 1 or not float(conv_tol) > 0 or not 0 <= int(grid_level) <= 9:
            raise ValueError(
                f"PySCFOracle needs max_cycle >= 1, conv_tol > 0 and 0 <= grid_level <= 9, "
                f"got {max_cycle}, {conv_tol}, {grid_level}"
            )
        _check_xc(xc)
        _check_basis(basis, ("H", "C", "N", "O"), every=False)
        try:
            version = metadata.version("pyscf")
        except metadata.PackageNotFoundError:
            version = "unknown"
        settings = {
            "xc": xc,
            "basis": basis,
            "density_fit": bool(density_fit),
            "grid_level": int(grid_level),
            "max_cycle": int(max_cycle),
            "conv_tol": float(conv_tol),
            "charge": int(charge),
            "spin": int(spin),
            "grid_response": True,
            "pyscf_version": version,
        }
        self.num_threads = num_threads
        super().__init__(self._make_pyscf, name="dft", settings=settings, min_distance=min_distance)

    def _make_pyscf(self) -> Calculator:
        params = {k: v for k, v in self.settings.items() if k not in ("pyscf_version", "grid_response")}
        return PySCFCalculator(**params, num_threads=self.num_threads)

    def prepare(self, atoms: Atoms) -> Atoms:
        if atoms.pbc.any():
            raise ValueError(
                f"PySCFOracle handles molecules only (got pbc={atoms.pbc.tolist()}); "
                "periodic DFT needs another backend wrapped in CalculatorOracle"
            )
        check_electrons(atoms, self.settings["charge"], self.settings["spin"], "PySCFOracle")
        _check_basis(self.settings["basis"], set(atoms.get_chemical_symbols()))
        return atoms


def _import_pyscf():
    try:
        import pyscf
    except ImportError as exc:
        raise ImportError("PySCFOracle needs PySCF: pip install -e '.[dft]'") from exc
    return pyscf


def _check_xc(xc: str) -> None:
    """ValueError for a functional PySCF does not know (the name as ``mf.xc`` takes it)."""
    _import_pyscf()
    from pyscf.dft import libxc

    try:
        try:
            from pyscf.dft.dft_parser import parse_dft
        except ImportError:  # PySCF < 2.5: no dispersion suffixes
            code = xc
        else:
            code = parse_dft(xc)[0]
        libxc.parse_xc(code)
    except (KeyError, ValueError, NotImplementedError) as exc:
        raise ValueError(f"PySCFOracle: unknown or unsupported functional xc={xc!r} ({exc})") from None


_BASIS_OK: set[tuple[str, str]] = set()  # (basis, element) pairs found in PySCF's library


def _check_basis(basis: str, elements: Iterable[str], every: bool = True) -> None:
    """ValueError unless PySCF has ``basis`` for every element (``every=False``: for at least one).

    A basis given as anything but a name (PySCF also takes per-element dicts) is left to PySCF.
    """
    if not isinstance(basis, str):
        return
    _import_pyscf()
    from pyscf import gto

    elements = sorted(set(elements))
    missing = []
    for el in elements:
        if (basis, el) in _BASIS_OK:
            continue
        try:
            with warnings.catch_warnings():  # PySCF suggests basis-set-exchange for any name it lacks
                warnings.simplefilter("ignore")
                found = bool(gto.basis.load(basis, el))
        except (RuntimeError, KeyError, ValueError, OSError):  # BasisNotFoundError is a RuntimeError
            found = False
        if found:
            _BASIS_OK.add((basis, el))
        else:
            missing.append(el)
    if every and missing:
        raise ValueError(f"PySCFOracle: basis {basis!r} has no functions for {', '.join(missing)}")
    if not every and len(missing) == len(elements):
        raise ValueError(f"PySCFOracle: unknown basis {basis!r} (PySCF has it for none of {', '.join(missing)})")
