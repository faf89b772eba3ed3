"""AEV descriptors: exact Jacobian, invariances, periodic images, unknown elements, smooth cutoff."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase import Atoms
from scipy.spatial.transform import Rotation

from alenv.datasets import rmd17
from alenv.descriptors.aev import AEV, AEVSpec, build_neighbours
from alenv.tasks.build import SYSTEMS

RMD17 = str(rmd17("ethanol", "train"))
ETHANOL_SPEC = AEVSpec(species=(1, 6, 8))
CU_SPEC = AEVSpec(species=(29,))


@pytest.fixture(scope="module")
def ethanol_frames() -> list[Atoms]:
    return ase.io.read(RMD17, index=":3")


@pytest.fixture(scope="module")
def cu_cell() -> Atoms:
    atoms = SYSTEMS["cu_vacancy"]()
    atoms.positions += np.random.default_rng(7).normal(0.0, 0.05, atoms.positions.shape)
    return atoms


def _fd_jacobian(aev: AEV, atoms: Atoms, coords: list[tuple[int, int]], h: float) -> np.ndarray:
    """Central finite differences of the descriptors (n, D) along the given (atom, xyz) coordinates."""
    out = []
    for a, c in coords:
        p, m = atoms.copy(), atoms.copy()
        p.positions[a, c] += h
        m.positions[a, c] -= h
        out.append((aev.descriptors([p])[0] - aev.descriptors([m])[0]) / (2 * h))
    return np.stack(out, axis=-1)  # (n, D, len(coords))


# Central differences with h = 1e-5 Angstrom in float64: truncation error ~ h^2 |G'''| / 6 (measured 6e-9 for
# ethanol, shrinking 100x per 10x smaller h, as it must for a correct Jacobian), rounding ~ 1e-16 / h = 1e-11.
# A tolerance of 1e-6 absolute (max |J| is ~7 per Angstrom) leaves a 100x margin yet catches any missing or
# misplaced term, which shows up at O(|J|).
FD_STEP = 1e-5
FD_ATOL = 1e-6


def test_jacobian_matches_finite_differences_ethanol(ethanol_frames):
    aev = AEV(ETHANOL_SPEC)
    G, J = aev.descriptors_and_jacobian(ethanol_frames)
    n, D = len(ethanol_frames[0]), ETHANOL_SPEC.n_features
    assert G.shape == (3, n, D) and J.shape == (3, n, D, n, 3)
    np.testing.assert_allclose(G, aev.descriptors(ethanol_frames), rtol=0, atol=1e-12)
    for f in (0, 2):
        coords = [(a, c) for a in range(n) for c in range(3)]
        fd = _fd_jacobian(aev, ethanol_frames[f], coords, FD_STEP)
        exact = J[f].reshape(n, D, n * 3)
        assert np.abs(exact).max() > 1.0  # non-trivial
        np.testing.assert_allclose(exact, fd, rtol=0, atol=FD_ATOL)


def test_jacobian_matches_finite_differences_periodic_cu(cu_cell):
    aev = AEV(CU_SPEC)
    G, J = aev.descriptors_and_jacobian([cu_cell])
    n = len(cu_cell)
    rng = np.random.default_rng(3)
    flat = rng.choice(n * 3, size=18, replace=False)
    coords = [(int(i) // 3, int(i) % 3) for i in flat]
    fd = _fd_jacobian(aev, cu_cell, coords, FD_STEP)
    exact = J[0][:, :, [a for a, _ in coords], [c for _, c in coords]]
    assert np.abs(exact).max() > 0.1
    np.testing.assert_allclose(exact, fd, rtol=0, atol=FD_ATOL)
    # Translating the whole cell rigidly changes nothing: each Jacobian row sums to zero over atoms.
    np.testing.assert_allclose(J[0].sum(axis=2), 0.0, atol=1e-10)


def _random_rotation(seed: int) -> np.ndarray:
    return Rotation.random(random_state=seed).as_matrix()


def test_translation_rotation_invariance_molecule(ethanol_frames):
    aev = AEV(ETHANOL_SPEC)
    atoms = ethanol_frames[1]
    G = aev.descriptors([atoms])[0]
    assert np.abs(G).max() > 0.1
    moved = atoms.copy()
    moved.positions += np.array([3.7, -12.1, 0.45])
    np.testing.assert_allclose(aev.descriptors([moved])[0], G, rtol=0, atol=1e-10)
    for seed in range(3):
        R = _random_rotation(seed)
        rot = atoms.copy()
        rot.positions = (atoms.positions - atoms.positions.mean(0)) @ R.T + 1.3
        np.testing.assert_allclose(aev.descriptors([rot])[0], G, rtol=0, atol=1e-10)


def test_permutation_of_like_atoms_permutes_rows(ethanol_frames):
    aev = AEV(ETHANOL_SPEC)
    atoms = ethanol_frames[0]
    G = aev.descriptors([atoms])[0]
    z = atoms.numbers
    rng = np.random.default_rng(11)
    perm = np.arange(len(atoms))
    for e in np.unique(z):  # shuffle only within each element
        idx = np.flatnonzero(z == e)
        perm[idx] = rng.permutation(idx)
    assert not np.array_equal(perm, np.arange(len(atoms)))
    permuted = atoms[perm]
    np.testing.assert_array_equal(permuted.numbers, z)
    np.testing.assert_allclose(aev.descriptors([permuted])[0], G[perm], rtol=0, atol=1e-12)
    # Descriptors are not trivially permutation-symmetric: the rows of two H atoms differ.
    h = np.flatnonzero(z == 1)
    assert np.abs(G[h[0]] - G[h[1]]).max() > 1e-3
    # An arbitrary permutation (elements mixed) also just permutes the rows.
    any_perm = rng.permutation(len(atoms))
    np.testing.assert_allclose(aev.descriptors([atoms[any_perm]])[0], G[any_perm], rtol=0, atol=1e-12)


def test_periodic_translation_wrap_and_rotation_invariance(cu_cell):
    aev = AEV(CU_SPEC)
    G = aev.descriptors([cu_cell])[0]
    shifted = cu_cell.copy()
    shifted.positions += np.array([0.9, -2.3, 5.1])
    np.testing.assert_allclose(aev.descriptors([shifted])[0], G, rtol=0, atol=1e-10)
    shifted.wrap()
    assert not np.allclose(shifted.positions, cu_cell.positions + np.array([0.9, -2.3, 5.1]))  # wrap moved atoms
    np.testing.assert_allclose(aev.descriptors([shifted])[0], G, rtol=0, atol=1e-10)
    # Translating one atom by a lattice vector is the same configuration.
    jumped = cu_cell.copy()
    jumped.positions[4] += cu_cell.cell.array[1] - cu_cell.cell.array[2]
    np.testing.assert_allclose(aev.descriptors([jumped])[0], G, rtol=0, atol=1e-10)
    # Rotating cell and positions together.
    R = _random_rotation(5)
    rot = cu_cell.copy()
    rot.set_cell(cu_cell.cell.array @ R.T, scale_atoms=False)
    rot.positions = cu_cell.positions @ R.T
    np.testing.assert_allclose(aev.descriptors([rot])[0], G, rtol=0, atol=1e-10)
    # Sanity: the periodic images matter (the same atoms without pbc give other descriptors).
    open_cell = cu_cell.copy()
    open_cell.pbc = False
    assert np.abs(aev.descriptors([open_cell])[0] - G).max() > 0.1


def test_periodic_descriptors_equal_explicit_supercell(cu_cell):
    """An atom of the cell sees the same environment as the same atom inside a 2x1x1 supercell."""
    aev = AEV(CU_SPEC)
    G = aev.descriptors([cu_cell])[0]
    G2 = aev.descriptors([cu_cell.repeat((2, 1, 1))])[0]
    n = len(cu_cell)
    np.testing.assert_allclose(G2[:n], G, rtol=0, atol=1e-10)
    np.testing.assert_allclose(G2[n:], G, rtol=0, atol=1e-10)


def test_unknown_element_raises(ethanol_frames):
    spec = AEVSpec(species=(1, 6))  # no oxygen
    with pytest.raises(ValueError, match=r"\[8\]"):
        AEV(spec).descriptors(ethanol_frames[:1])
    with pytest.raises(ValueError):
        AEV(spec).descriptors_and_jacobian(ethanol_frames[:1])


def test_spec_and_batch_validation(ethanol_frames):
    with pytest.raises(ValueError):
        AEVSpec(species=(6, 1))  # not sorted
    with pytest.raises(ValueError):
        AEVSpec(species=())
    with pytest.raises(ValueError):
        AEVSpec(species=(1,), angular_cutoff=6.0, radial_cutoff=5.0)
    with pytest.raises(ValueError, match="same number of atoms"):
        build_neighbours([ethanol_frames[0], ethanol_frames[0][:5]], ETHANOL_SPEC)


def _line(z: list[int], distances: list[float]) -> Atoms:
    return Atoms(numbers=z, positions=[[d, 0.0, 0.0] for d in distances])


def test_radial_cutoff_is_smooth():
    """A neighbour crossing the radial cutoff changes the descriptor continuously (fc and fc' vanish at Rc)."""
    spec = AEVSpec(species=(1, 6))
    aev = AEV(spec)
    Rc = spec.radial_cutoff
    G = lambda r: aev.descriptors([_line([6, 1], [0.0, r])])[0]  # noqa: E731
    inside, outside = G(Rc - 1e-4), G(Rc + 1e-4)
    np.testing.assert_array_equal(outside, 0.0)  # beyond the cutoff: no neighbour at all
    # fc(Rc - d) = (pi d / Rc)^2 / 4 + O(d^4) ~ 1e-9 for d = 1e-4: the jump is second order in d.
    assert np.abs(inside - outside).max() < 1e-8
    assert np.abs(G(Rc - 0.5)).max() > 1e-4  # the term is alive inside the cutoff
    # Continuity, refined: halving the distance to the cutoff quarters the descriptor.
    a, b = np.abs(G(Rc - 2e-2)).max(), np.abs(G(Rc - 1e-2)).max()
    assert a > 0 and 3.5 < a / b < 4.5


def test_angular_cutoff_is_smooth():
    """A third atom crossing the angular cutoff changes the angular block continuously."""
    spec = AEVSpec(species=(1, 6))
    aev = AEV(spec)
    Ra = spec.angular_cutoff

    def G(r: float) -> np.ndarray:
        atoms = Atoms(numbers=[6, 1, 1], positions=[[0, 0, 0], [1.1, 0, 0], [0, r, 0]])
        return aev.descriptors([atoms])[0][0, spec.n_radial :]  # angular block of the carbon

    inside, outside = G(Ra - 1e-4), G(Ra + 1e-4)
    np.testing.assert_array_equal(outside, 0.0)
    assert np.abs(inside - outside).max() < 1e-8
    assert np.abs(G(Ra - 1.0)).max() > 1e-4


def test_periodic_pair_search_matches_ase_neighbour_list():
    """The vectorised periodic search finds exactly ASE's pairs (unwrapped, skewed and small cells)."""
    from ase.build import bulk
    from ase.neighborlist import neighbor_list

    from alenv.descriptors.aev import _periodic_pairs
    from alenv.tasks.build import SYSTEMS

    rng = np.random.default_rng(3)
    cu = SYSTEMS["cu_vacancy"]()
    cu.positions += rng.normal(0, 0.1, cu.positions.shape)
    cu.positions[3] += cu.cell.array[0] * 2 - cu.cell.array[2]  # an atom far outside the cell
    tri = bulk("Cu", "hcp", a=2.6, c=4.2) * (2, 1, 1)  # skewed cell smaller than the cutoff
    slab = cu.copy()
    slab.pbc = (True, True, False)
    for atoms in (cu, tri, slab):
        i, j, shift = _periodic_pairs(atoms, 5.2)
        d = np.linalg.norm(atoms.positions[j] + shift - atoms.positions[i], axis=1)
        ours = sorted(zip(i.tolist(), j.tolist(), np.round(d, 8).tolist()))
        ai, aj, ad = neighbor_list("ijd", atoms, 5.2)
        ref = sorted(zip(ai.tolist(), aj.tolist(), np.round(ad, 8).tolist()))
        assert ours == ref
        assert np.all(np.diff(i) >= 0)  # grouped by centre atom, as the triplet builder needs
