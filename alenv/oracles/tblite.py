"""GFN-xTB tight binding through tblite: the oracle for periodic cells (liquid water) and molecules.

xtb-python cannot do periodic GFN2-xTB ("Multipoles not available with PBC"); tblite's ASE calculator
(``tblite.ase.TBLite``) can, with analytic forces and stress. Install it with ``pip install "alenv[water]"``,
which pins ``tblite==0.8.0``.

Labels depend on the tblite release. Molecular energies agree with xtb-python and across tblite releases
to 1e-5 eV, but periodic ones do not: tblite changed its periodic electrostatics between 0.7.0 and 0.8.0,
and the GFN2-xTB energy of the same 96-atom water box moved by 6.8 eV. The oracle's fingerprint therefore
carries the tblite version (that of the loaded library, not of the package metadata), so the label cache
never serves a label of one release to another.

tblite samples the Brillouin zone at the Gamma point only (tblite/tblite issue #4, "Implement k-points
sampling"), so a periodic energy is size-consistent only when the cell is large enough that the bands are
flat. For liquid water at about 1 g/cm3 (GFN2-xTB, tblite 0.8.0), a 2x1x1 supercell gives twice the
energy of its cell to 14.6 meV per molecule in a 6.2 A cell (8 molecules), 2.3 meV in a 7 A cell and
0.007 meV in a 9.86 A cell (32 molecules). Use cells of about 9 A or more.
"""

from __future__ import annotations

import warnings
from importlib import metadata

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from alenv.oracles.base import CalculatorOracle, check_electrons, valence_electrons

METHODS = ("GFN2-xTB", "GFN1-xTB")
# The release this oracle was checked against (forces and stress against finite differences, supercells,
# molecules against xtb-python). Another release runs, with a warning, and its labels are kept apart.
TESTED_TBLITE = "0.8.0"
INSTALL = 'pip install "alenv[water]"'


def tblite_version() -> str:
    """The version of the tblite library that computes the labels ("0.8.0"); ImportError if it is missing.

    It is read from the loaded library (``tblite.library.get_version()``), which is what computes, rather
    than from the package metadata; the two differ in a build from source.
    """
    try:
        from tblite.library import get_version
    except ImportError as exc:  # not installed, or its C extension does not load
        try:
            installed = f"tblite {metadata.version('tblite')} is installed but does not load"
        except metadata.PackageNotFoundError:
            installed = "tblite is not installed"
        raise ImportError(
            f"TBLiteOracle (GFN-xTB for periodic cells) needs the tblite package: {installed} ({exc}). "
            f"Install it with `{INSTALL}` (tblite=={TESTED_TBLITE})."
        ) from exc
    return ".".join(str(part) for part in get_version())


class TBLiteOracle(CalculatorOracle):
    """GFN-xTB energies and forces of periodic cells and molecules via ``tblite.ase.TBLite``.

    A structure is either fully periodic (pbc all True: 3D lattice sums, Gamma point only; see the module
    docstring for the cell size this needs) or a molecule (pbc all False); tblite treats a partly
    periodic structure (a slab, a wire) as periodic in all three directions, so it is refused.

    Args:
        method: "GFN2-xTB" (default) or "GFN1-xTB".
        accuracy: tblite numerical accuracy (lower is tighter; it scales the SCC convergence thresholds).
        electronic_temperature: Fermi smearing temperature, K.
        max_iterations: SCC iterations; an SCC that does not converge gives a failed Label.
        charge: total charge (e); it must leave valence electrons.
        uhf: number of unpaired electrons; its parity must be that of the valence electron count. Both are
            checked on every structure before tblite runs (ValueError), and both are passed to tblite
            explicitly, so initial charges or magnetic moments on the Atoms never change a label.
        min_distance: Angstrom; closer atoms (periodic images included) give a failed Label without
            calling tblite.

    The fingerprint (the cache key with the name "tblite") holds these settings and ``tblite_version``.
    Constructing the oracle loads the tblite library (ImportError naming the extra to install if it is
    missing); the ASE calculator is built on first use.

    The API calculator is not reused between structures (``cache_api=False``): tblite would otherwise
    start each SCC from the previous structure's result, so a label would depend on what was labelled
    before it (and a failed SCC would poison the next guess). Rebuilding it costs well under a millisecond
    for a molecule and nothing that shows beside a periodic cell's lattice sums.
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
        if method not in METHODS:
            raise ValueError(f"unknown tblite method {method!r}; use {' or '.join(METHODS)}")
        if uhf < 0 or int(uhf) != uhf or int(charge) != charge:
            raise ValueError(f"charge and uhf must be integers (uhf >= 0), got charge={charge}, uhf={uhf}")
        if not accuracy > 0 or not electronic_temperature >= 0 or int(max_iterations) < 1:
            raise ValueError(
                "accuracy must be > 0, electronic_temperature >= 0 K and max_iterations >= 1, got "
                f"{accuracy}, {electronic_temperature}, {max_iterations}"
            )
        version = tblite_version()
        if version != TESTED_TBLITE:
            warnings.warn(
                f"tblite {version} is installed; TBLiteOracle was checked against {TESTED_TBLITE}, and periodic "
                f"energies differ between releases by eV per cell. Its labels are cached apart from those of "
                f"other releases; `{INSTALL}` installs {TESTED_TBLITE}.",
                UserWarning,
                stacklevel=2,
            )
        settings = {
            "method": method,
            "accuracy": float(accuracy),
            "electronic_temperature": float(electronic_temperature),
            "max_iterations": int(max_iterations),
            "charge": int(charge),
            "uhf": int(uhf),
            "tblite_version": version,
        }
        super().__init__(self._make_tblite, name="tblite", settings=settings, min_distance=min_distance)

    def _make_tblite(self) -> Calculator:
        try:
            from tblite.ase import TBLite
        except ImportError as exc:
            raise ImportError(f"TBLiteOracle cannot import tblite.ase ({exc}); install it with `{INSTALL}`") from exc

        s = self.settings
        return TBLite(
            method=s["method"],
            accuracy=s["accuracy"],
            electronic_temperature=s["electronic_temperature"],
            max_iterations=s["max_iterations"],
            charge=s["charge"],
            multiplicity=s["uhf"] + 1,
            cache_api=False,
            verbosity=0,  # 1 (tblite's default) prints every SCC to stdout
        )

    def prepare(self, atoms: Atoms) -> Atoms:
        pbc = np.asarray(atoms.pbc, dtype=bool)
        if pbc.any() and not pbc.all():
            raise ValueError(
                f"TBLiteOracle takes fully periodic cells or molecules, got pbc={pbc.tolist()}: tblite would "
                "treat this structure as periodic in all three directions (for a slab, add vacuum and set "
                "pbc=True, or use pbc=False for a cluster)"
            )
        s = self.settings
        check_electrons(atoms, s["charge"], s["uhf"], "TBLiteOracle", electrons=valence_electrons(atoms.numbers))
        return atoms
