"""Organics-GFN2: a dozen molecules of different sizes in one pool, with real GFN2-xTB oracle MD.

Each test is written as the failure it prevents:

- a pool of mixed atom counts that the cache, the layout or an agent could not handle;
- a molecule missing from the pool or the test set, or test errors not reported per molecule (the
  task reproduces query-by-committee-versus-random studies over many organics);
- data that a data seed does not decide (the same seed gave other frames, another seed the same ones).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import alenv  # noqa: F401  (registers the tasks)
from agents import make_agent
from alenv.tasks import TASKS, get_task, load_task_data
from alenv.tasks.build import example_frames
from alenv.tasks.organics import MOLECULES, _jobs, cell_counts

PARTS = ("pool", "reserve", "test", "validation")


@pytest.fixture(scope="module")
def organics_env(make_env):
    """Organics-GFN2-tiny on the session cache (the first build runs GFN2-xTB MD of every molecule)."""
    env = make_env("alenv/Organics-GFN2-tiny-v0")
    yield env
    env.close()


def _positions(frames) -> list[bytes]:
    return [a.positions.tobytes() for a in frames]


# ----------------------------------------------------------------------------------------- the table
def test_the_row_and_its_molecules() -> None:
    spec, tiny = TASKS["Organics-GFN2"], TASKS["Organics-GFN2-tiny"]
    assert spec.id == "alenv/Organics-GFN2-v0" and tiny.id == "alenv/Organics-GFN2-tiny-v0"
    assert (spec.pool_size, spec.test_size, spec.validation_size, spec.reserve_size) == (2000, 500, 200, 50)
    assert spec.oracle == "xtb" and spec.history
    examples = example_frames("organics")
    assert [a.info["subset"] for a in examples] == list(MOLECULES) and len(MOLECULES) >= 12
    sizes = [len(a) for a in examples]
    assert min(sizes) == 3 and max(sizes) >= 12 and len(set(sizes)) >= 8
    assert set().union(*(a.get_chemical_symbols() for a in examples)) == {"H", "C", "N", "O"}


def test_cell_counts_split_evenly_and_cover_every_molecule() -> None:
    for total, n_t in ((2000, 3), (500, 3), (50, 1), (30, 3), (20, 3), (12, 2)):
        cells = np.array(cell_counts(total, 12, n_t))
        assert cells.shape == (12, n_t) and cells.sum() == total
        assert cells.sum(1).max() - cells.sum(1).min() <= 1  # molecules even
        assert cells.max() - cells.min() <= 1  # cells even
        assert cells.sum(0).max() - cells.sum(0).min() <= 2  # no temperature left short throughout
        if total >= 12:
            assert (cells.sum(1) > 0).all()
    with pytest.raises(ValueError, match="total"):
        cell_counts(-1, 12, 3)


def test_a_target_shift_moves_validation_and_test_only() -> None:
    spec = get_task("Organics-GFN2").with_overrides(target_temperatures=[1000.0])
    temps = {part: {t for p, _, _, t, _ in _jobs(spec) if p == part} for part in PARTS}
    assert temps == {"pool": {300.0, 600.0, 1000.0}, "reserve": {300.0}, "test": {1000.0}, "validation": {1000.0}}
    frames = {part: sum(c for p, *_, c in _jobs(spec) if p == part) for part in PARTS}
    assert frames == {"pool": 2000, "reserve": 50, "test": 500, "validation": 200}


# ----------------------------------------------------------------------------------------- data seeds
def test_the_data_seed_decides_the_data(tmp_path: Path) -> None:
    # a small build of every molecule: 24 pool, 12 reserve, 12 validation, 12 test frames, short MD
    spec = get_task("Organics-GFN2-tiny").with_overrides(
        pool_size=24, test_size=12, validation_size=12, reserve_size=12, md={"equilibration": 10, "stride": 5},
    )
    a = load_task_data(spec, tmp_path / "one", progress=False)
    again = load_task_data(spec, tmp_path / "two", progress=False)  # built afresh
    other = load_task_data(spec.with_overrides(data_seed=1), tmp_path / "one", progress=False)
    for part in PARTS:
        fa, fb, fo = getattr(a, part), getattr(again, part), getattr(other, part)
        assert _positions(fa) == _positions(fb), part
        assert [f.get_potential_energy() for f in fa] == [f.get_potential_energy() for f in fb], part
        assert [f.info["subset"] for f in fa] == [f.info["subset"] for f in fo], part  # the same cells
        assert not set(_positions(fo)) & set(_positions(fa)), part  # other trajectories
        assert Counter(f.info["subset"] for f in fa) == Counter({m: len(fa) // 12 for m in MOLECULES}), part
    assert {f.info["temperature"] for f in a.reserve} == {min(spec.temperatures)}
    # pool and target from independent trajectories
    assert not set(_positions(a.pool)) & set(_positions(a.test + a.validation + a.reserve))


# ----------------------------------------------------------------------------------------- episodes
def test_tiny_pool_mixes_sizes_and_covers_every_molecule(organics_env) -> None:
    u = organics_env.unwrapped
    assert len({len(a) for a in u.pool_frames}) >= 8  # 3 to 12 atoms
    assert u.layout == "flat"
    assert np.diff(u.pool_ptr).tolist() == [len(a) for a in u.pool_frames]
    for part in ("pool", "test", "validation", "reserve"):
        frames = getattr(u, f"{part}_frames")
        assert {a.info["subset"] for a in frames} == set(MOLECULES), part
        for a in frames:
            assert len(a) == len(example_frames("organics")[MOLECULES.index(a.info["subset"])])
            assert a.info["temperature"] in u.task.temperatures
            assert np.isfinite(a.get_forces()).all()


@pytest.mark.parametrize("agent", ["random", "qbc-force-mean"])
def test_an_episode_reports_errors_per_molecule(organics_env, agent: str) -> None:
    env, u = organics_env, organics_env.unwrapped
    strategy, rng = make_agent(agent), np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    terminated, rounds = False, 0
    while not terminated:
        picks = strategy.act(obs, info, info["max_picks"], rng)
        assert obs["mask"][picks].all()
        obs, reward, terminated, truncated, info = env.step(picks)
        rounds += 1
        assert np.isfinite(reward) and u.observation_space.contains(obs)
    assert rounds == u.task.budget // u.task.batch_size
    assert info["metrics"]["n_labels"] == u.task.n_initial + u.task.budget
    metrics = u.test_metrics()
    for name in MOLECULES:
        assert np.isfinite(metrics[f"force_mae[{name}]"]) and metrics[f"force_mae[{name}]"] > 0, name
        assert np.isfinite(metrics[f"energy_mae[{name}]"]), name
    # the overall force error weighs each molecule by its atoms
    n_atoms = Counter()
    for a in u.test_frames:
        n_atoms[a.info["subset"]] += len(a)
    mean = sum(metrics[f"force_mae[{m}]"] * n for m, n in n_atoms.items()) / sum(n_atoms.values())
    assert metrics["force_mae"] == pytest.approx(mean, rel=1e-6)
