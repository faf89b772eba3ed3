"""Water-GFN2: the flexible-TIP3P sampler, the box, and a small build with real GFN2-xTB (tblite) labels.

The build here is the 8-molecule box of the -tiny task cut to a few frames (GFN2-xTB takes seconds per
periodic box); the full task and its -tiny variant run check_env with -m slow.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from ase.calculators.tip3p import rOH

from alenv.tasks import TASKS, get_task, load_task_data
from alenv.tasks.water import FlexibleTIP3P, box_length, water_box

pytest.importorskip("tblite")

SMALL = dict(pool_size=6, test_size=2, validation_size=2, reserve_size=3, n_initial=2, budget=2, batch_size=2)


def _flexible(n: int = 8, seed: int = 1):
    atoms = water_box(np.random.default_rng(seed), n)
    atoms.calc = FlexibleTIP3P(rc=min(5.0, atoms.cell[0, 0] / 2 - 0.01), width=1.0)
    return atoms


def test_box_has_the_density_and_spacing_asked_for():
    a, b = water_box(np.random.default_rng(3), 32), water_box(np.random.default_rng(3), 32)
    assert np.array_equal(a.positions, b.positions)  # the generator decides everything
    assert not np.array_equal(a.positions, water_box(np.random.default_rng(4), 32).positions)
    L = a.cell[0, 0]
    assert L == pytest.approx(box_length(32)) and L == pytest.approx(9.86, abs=0.01)
    density = 32 * 18.015 / 6.02214076e23 / (L * 1e-8) ** 3
    assert density == pytest.approx(1.0, rel=1e-3)
    centres = a.positions.reshape(-1, 3, 3).mean(1)
    d = centres[:, None] - centres[None]
    d -= L * np.round(d / L)
    r = np.linalg.norm(d, axis=-1)[np.triu_indices(32, 1)]
    assert r.min() > 2.7
    assert np.allclose(np.linalg.norm(a.positions[1::3] - a.positions[::3], axis=1), rOH)


def test_flexible_tip3p_forces_are_the_negative_gradient():
    atoms = _flexible()
    atoms.rattle(0.05, seed=2)  # bonds and angles off their minimum, so the intramolecular terms act
    F = atoms.get_forces()
    h = 1e-5
    for i in (0, 1, 5, 13, 23):
        for d in range(3):
            p = atoms.positions.copy()
            p[i, d] += h
            atoms.positions = p
            ep = atoms.get_potential_energy()
            p[i, d] -= 2 * h
            atoms.positions = p
            em = atoms.get_potential_energy()
            p[i, d] += h
            atoms.positions = p
            assert -(ep - em) / (2 * h) == pytest.approx(F[i, d], abs=1e-6)
    assert np.abs(F.sum(0)).max() < 1e-8  # no net force
    E = atoms.get_potential_energy()
    atoms.translate([0.3, -1.1, 2.0])
    assert atoms.get_potential_energy() == pytest.approx(E, abs=1e-9)


def test_intramolecular_terms_vanish_at_the_tip3p_geometry():
    from ase.calculators.tip3p import TIP3P

    atoms = _flexible()  # rigid TIP3P molecules: bonds and angles at their reference values
    rigid = atoms.copy()
    rigid.calc = TIP3P(rc=atoms.calc.rc, width=1.0)
    assert atoms.get_potential_energy() == pytest.approx(rigid.get_potential_energy(), abs=1e-9)
    assert np.allclose(atoms.get_forces(), rigid.get_forces(), atol=1e-9)


def test_tasks_registered_with_the_tblite_oracle():
    full, tiny = TASKS["Water-GFN2"], TASKS["Water-GFN2-tiny"]
    assert full.oracle == tiny.oracle == "tblite"
    assert full.system == "water_32" and tiny.system == "water_8"
    assert full.pool_size == 1000 and tiny.pool_size == 60
    assert get_task("alenv/Water-GFN2-v1") is full


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A few frames of the 8-molecule box built into an empty cache (about 10 tblite labels)."""
    cache = tmp_path_factory.mktemp("water-cache")
    spec = get_task("Water-GFN2-tiny").with_overrides(**SMALL)
    return spec, cache, load_task_data(spec, cache, progress=False)


def test_pool_is_unlabelled_and_the_target_labelled(built):
    spec, cache, data = built
    assert len(data.pool) == 6 and not data.pool_labelled
    assert all(a.calc is None for a in data.pool)
    assert json.loads((data.directory / "meta.json").read_text())["pool_labelled"] is False
    for part in (data.reserve, data.test, data.validation):
        for a in part:
            F = a.get_forces()
            assert F.shape == (24, 3) and np.isfinite(F).all() and np.isfinite(a.get_potential_energy())
            assert a.info["temperature"] == 300.0 and a.pbc.all()
    # the labels are GFN2-xTB's: recomputed, one frame agrees
    from alenv.oracles import make_oracle

    (label,) = make_oracle("tblite").label([data.test[0]])
    assert label.energy == pytest.approx(data.test[0].get_potential_energy(), abs=1e-6)
    # frames of the sampler's MD hold molecules whole, near the TIP3P geometry
    for a in data.pool:
        R = a.positions.reshape(-1, 3, 3)
        r = np.linalg.norm(R[:, 1:] - R[:, :1], axis=-1)
        assert 0.8 < r.min() and r.max() < 1.15


@pytest.mark.slow
def test_an_interrupted_build_pays_no_label_twice(built, monkeypatch):
    from alenv.oracles.tblite import TBLiteOracle

    spec, cache, data = built
    calls = []
    original = TBLiteOracle.label
    monkeypatch.setattr(TBLiteOracle, "label", lambda self, s: calls.append(len(s)) or original(self, s))
    shutil.rmtree(data.directory)  # as if the build died after labelling, before writing its files
    again = load_task_data(spec, cache, progress=False)
    assert calls == []  # every label came from the label cache
    assert [a.get_potential_energy() for a in again.test] == [a.get_potential_energy() for a in data.test]


def test_an_episode_labels_its_picks_and_refuses_true_labels(built):
    import gymnasium as gym

    spec, cache, _ = built
    env = gym.make("alenv/Water-GFN2-tiny-v1", cache_dir=str(cache), progress=False, **SMALL)
    obs, info = env.reset(seed=0)
    u = env.unwrapped
    assert not u.pool_labelled and u.n_pool == 6
    obs, reward, terminated, _, info = env.step(np.flatnonzero(obs["mask"])[:2])
    assert terminated and np.isfinite(reward) and info["metrics"]["n_labels"] == 4
    assert "force_mae[T=300K]" in u.test_metrics()
    with pytest.raises(ValueError, match="unlabelled"):
        u.true_labels()


def test_shipped_data_has_a_labelled_pool_and_is_unpacked_instead_of_built(built, tmp_path, monkeypatch):
    import lzma

    import alenv.tasks.build as build
    from alenv.tasks.ship import ship

    spec, cache, data = built
    folder = ship(spec, cache, out_dir=tmp_path / "shipped", progress=False)  # labels the 6 pool frames
    meta = json.loads((folder / "meta.json").read_text())
    assert folder.name == spec.data_key() and meta["pool_labelled"] is True
    assert meta["counts"] == {"pool": 6, "reserve": 3, "test": 2, "validation": 2}
    monkeypatch.setattr(build, "SHIPPED_DIR", tmp_path / "shipped")
    monkeypatch.setattr(build, "_build", lambda *a: pytest.fail("shipped data was built again"))
    fresh = load_task_data(spec, tmp_path / "cache", progress=False)
    assert fresh.pool_labelled and len(fresh.pool) == 6
    assert [a.get_positions().tolist() for a in fresh.pool] == [a.get_positions().tolist() for a in data.pool]
    assert [a.get_potential_energy() for a in fresh.test] == [a.get_potential_energy() for a in data.test]
    # the pool's labels are GFN2-xTB's: recomputed, one frame agrees
    from alenv.oracles import make_oracle

    (label,) = make_oracle("tblite").label([fresh.pool[3]])
    assert label.energy == pytest.approx(fresh.pool[3].get_potential_energy(), abs=1e-6)
    assert np.allclose(label.forces, fresh.pool[3].get_forces(), atol=1e-6)
    # a damaged shipped file is refused with a clear message, never used
    packed = folder / "test.extxyz.xz"
    raw = lzma.decompress(packed.read_bytes()).replace(b"O ", b"N ", 1)
    packed.write_bytes(lzma.compress(raw))
    with pytest.raises(ValueError, match="shipped task data .* is damaged .*test.extxyz: checksum mismatch"):
        load_task_data(spec, tmp_path / "other-cache", progress=False)
    assert not (tmp_path / "other-cache" / "tasks" / spec.data_key()).exists()  # nothing damaged left cached
    packed.write_bytes(b"not xz")
    with pytest.raises(ValueError, match="shipped task data .*test.extxyz.xz is damaged"):
        load_task_data(spec, tmp_path / "third-cache", progress=False)


def test_a_failed_pool_label_stops_shipping_and_keeps_the_label_made(built, tmp_path, monkeypatch):
    from alenv.oracles.tblite import TBLiteOracle
    from alenv.tasks.ship import label_pool
    from alenv.types import Label

    spec, _, data = built
    calls = []

    def flaky(self, structures):  # the first pool frame labels, the second fails
        calls.append(len(structures))
        if len(calls) == 2:
            return [Label.failure(len(a), 0.1, "SCC did not converge") for a in structures]
        return original(self, structures)

    original = TBLiteOracle.label
    monkeypatch.setattr(TBLiteOracle, "label", flaky)
    with pytest.raises(RuntimeError, match="failed on pool frame 1 .*SCC did not converge.*rerun to resume"):
        label_pool(spec, data, tmp_path, progress=False)
    # the label paid before the failure is kept: frame 0 comes from the label cache, with no oracle call
    from alenv.tasks.build import task_oracle

    oracle = task_oracle(spec, data, tmp_path)
    assert oracle.keys([data.pool[0]])[0] in oracle.cache


def test_the_standard_task_ships_its_labelled_pool():
    from alenv.tasks.build import shipped_data

    spec = TASKS["Water-GFN2"]
    folder = shipped_data(spec)
    assert folder is not None, f"no shipped data for {spec.data_key()}: python -m alenv.tasks.ship Water-GFN2"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["pool_labelled"] is True and meta["counts"] == {
        "pool": spec.pool_size, "reserve": spec.reserve_size, "test": spec.test_size, "validation": spec.validation_size,
    }
    assert shipped_data(spec.with_overrides(data_seed=1)) is None  # other data seeds are built


def test_a_failed_build_label_says_so_and_builds_nothing(tmp_path, monkeypatch):
    from alenv.oracles.tblite import TBLiteOracle
    from alenv.types import Label

    monkeypatch.setattr(TBLiteOracle, "label", lambda self, s: [Label.failure(len(a), 0.1, "SCC did not converge") for a in s])
    spec = get_task("Water-GFN2-tiny").with_overrides(**{**SMALL, "pool_size": 2, "test_size": 1, "validation_size": 1})
    with pytest.raises(RuntimeError, match="oracle failed on a reserve frame.*SCC did not converge.*label cache"):
        load_task_data(spec, tmp_path, progress=False)
    assert not list((tmp_path / "tasks").glob("*/meta.json"))  # no half-made task data is taken as complete


def test_a_system_cannot_be_registered_twice():
    from alenv.tasks.build import register_builder

    with pytest.raises(ValueError, match="already defined"):
        register_builder("water_32", examples=list)(lambda spec, progress, directory=None: None)
    with pytest.raises(ValueError, match="already defined"):
        register_builder("ethanol", examples=list)(lambda spec, progress, directory=None: None)
