"""The task data seed: ``data_seed`` regenerates pool, reserve, validation and test set, the run seed
(``reset(seed=...)``) never does, and data seed 0 is the data (and cache key) the tasks had before.

Each test is written as the failure it prevents:

- every benchmark ran on one pool, so a strategy or a learned policy could be tuned to it;
- renaming the seed changed the cache key, so every cached task was built again;
- ``data_seed=-1`` or ``True`` reached numpy (or ran as seed 1) instead of being refused.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import ase.io
import gymnasium as gym
import numpy as np
import pytest

import alenv  # noqa: F401  (registers the tasks)
from alenv.tasks import TASKS, get_task, load_task_data

PARTS = ("pool", "reserve", "test", "validation")

# Cache keys as they were before ``pool_seed`` became ``data_seed`` (DATA_FORMAT 2, tasks v1). A deliberate
# change of a task's data (a new version, a DATA_FORMAT bump) changes them; a rename must not.
KEYS_BEFORE = {
    "Cu-EMT-tiny": "Cu-EMT-tiny-v1-seed0-55d3bf0e931e",
    "Cu-EMT": "Cu-EMT-v1-seed0-577cd29b0a1e",
    "Ethanol-GFN2": "Ethanol-GFN2-v1-seed0-57ce5d34c160",
    "Cu-EMT-OTF-tiny": "Cu-EMT-OTF-tiny-v1-seed0-ff4bcec4deee",
}


def _positions(frames) -> list[np.ndarray]:
    return [a.positions.copy() for a in frames]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and (x == y).all() for x, y in zip(a, b))


def _shared(a, b) -> int:
    """How many frames of ``a`` are also (same positions) in ``b``."""
    keys = {x.tobytes() for x in b}
    return sum(x.tobytes() in keys for x in a)


# ----------------------------------------------------------------------------------------- the spec
def test_data_seed_zero_keeps_the_cache_keys() -> None:
    for name, key in KEYS_BEFORE.items():
        assert TASKS[name].data_seed == 0 and TASKS[name].data_key() == key
    # another data seed: its own key; the former name gives the same one
    other = get_task("Cu-EMT-tiny").with_overrides(data_seed=1)
    assert other.data_key() == "Cu-EMT-tiny-v1-seed1-f9fd82bbde40"
    with pytest.warns(DeprecationWarning, match="pool_seed is deprecated: use data_seed"):
        assert get_task("Cu-EMT-tiny").with_overrides(pool_seed=1) == other
    assert len({get_task("Cu-EMT-tiny").with_overrides(data_seed=s).data_key() for s in range(4)}) == 4


@pytest.mark.parametrize("bad", [-1, 1.5, 1.0, True, False, "1", None, [1]])
def test_an_invalid_data_seed_is_refused(bad, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data_seed must be a non-negative integer"):
        get_task("Cu-EMT-tiny").with_overrides(data_seed=bad)
    with pytest.raises(ValueError, match="data_seed must be a non-negative integer"):
        gym.make("alenv/Cu-EMT-tiny-v3", cache_dir=tmp_path, data_seed=bad)
    assert not any(tmp_path.iterdir())  # refused before any data was made


def test_numpy_integers_and_the_former_name_are_accepted() -> None:
    spec = get_task("Cu-EMT-tiny").with_overrides(data_seed=np.int64(3))
    assert spec.data_seed == 3 and type(spec.data_seed) is int
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert get_task("Cu-EMT-tiny").with_overrides(pool_seed=2, data_seed=2).data_seed == 2
        with pytest.raises(ValueError, match="disagree"):
            get_task("Cu-EMT-tiny").with_overrides(pool_seed=2, data_seed=3)
    with pytest.warns(DeprecationWarning):
        assert spec.pool_seed == 3


# ----------------------------------------------------------------------------------------- MD tasks
@pytest.fixture(scope="module")
def cu_cache(alenv_cache: Path) -> Path:
    """The session cache: its Cu-EMT-tiny data (data seed 0) is built once for the whole suite; this module
    adds data seed 1 (each data seed builds in 6 to 12 s)."""
    return alenv_cache


def test_md_data_seeds_give_other_frames_and_the_same_seed_the_same(cu_cache: Path, tmp_path: Path) -> None:
    spec = get_task("Cu-EMT-tiny")
    a = load_task_data(spec, cu_cache, progress=False)
    b = load_task_data(spec.with_overrides(data_seed=1), cu_cache, progress=False)
    again = load_task_data(spec.with_overrides(data_seed=1), tmp_path / "two", progress=False)  # built afresh
    assert a.directory.name == KEYS_BEFORE["Cu-EMT-tiny"] and b.directory.name.startswith("Cu-EMT-tiny-v1-seed1-")
    for part in PARTS:
        pa, pb = _positions(getattr(a, part)), _positions(getattr(b, part))
        assert len(pa) == len(pb) > 0
        assert _shared(pb, pa) == 0, part  # other trajectories: no frame in common
        assert _same(pb, _positions(getattr(again, part))), part  # rebuilt from nothing: the same frames
        energies = [f.get_potential_energy() for f in getattr(b, part)]
        assert energies == [f.get_potential_energy() for f in getattr(again, part)]
    for data, seed in ((a, 0), (b, 1)):
        meta = json.loads((data.directory / "meta.json").read_text())
        assert meta["data_seed"] == seed and meta["task"] == "alenv/Cu-EMT-tiny-v3"


def test_on_the_fly_data_seeds_give_other_reserve_validation_and_test(tmp_path: Path) -> None:
    spec = get_task("Cu-EMT-OTF-tiny")
    a = load_task_data(spec, tmp_path, progress=False)
    b = load_task_data(spec.with_overrides(data_seed=2), tmp_path, progress=False)
    assert a.directory != b.directory and a.pool == b.pool == []
    for part in ("reserve", "test", "validation"):
        pa, pb = _positions(getattr(a, part)), _positions(getattr(b, part))
        assert len(pa) == len(pb) > 0 and _shared(pb, pa) == 0, part


def test_gym_make_takes_the_data_seed_and_reset_seed_leaves_the_data(cu_cache: Path) -> None:
    env = gym.make("alenv/Cu-EMT-tiny-v3", cache_dir=cu_cache, data_seed=1)
    u = env.unwrapped
    assert u.task.data_seed == 1
    data = {p: _positions(getattr(u, f"{p}_frames")) for p in ("pool", "reserve", "test", "validation")}
    standard = load_task_data(get_task("Cu-EMT-tiny"), cu_cache, progress=False)
    assert _shared(data["pool"], _positions(standard.pool)) == 0
    labelled = []
    for seed in (0, 1):
        env.reset(seed=seed)
        labelled.append(_positions(u.labelled.frames))
        for p, before in data.items():
            assert _same(_positions(getattr(u, f"{p}_frames")), before), p  # the run seed never moves the data
    assert not _same(*labelled)  # it draws other initial labels from the same reserve
    assert all(_shared(lab, data["reserve"]) == len(lab) for lab in labelled)
    env.close()
    with pytest.warns(DeprecationWarning):  # the former name still works through gym.make
        old = gym.make("alenv/Cu-EMT-tiny-v3", cache_dir=cu_cache, pool_seed=1)
    assert old.unwrapped.task.data_seed == 1 and _same(_positions(old.unwrapped.pool_frames), data["pool"])
    old.close()


# ----------------------------------------------------------------------------------------- Dataset task
def test_dataset_data_seed_redraws_reserve_and_validation_from_the_pool_file(rmd17_ethanol) -> None:
    pool_path, test_path = rmd17_ethanol
    spec = get_task("Dataset-tiny").with_overrides(pool_path=str(pool_path), test_path=str(test_path))
    file_pool = _positions(ase.io.read(pool_path, index=":"))
    a = load_task_data(spec, Path("unused"), progress=False)
    b = load_task_data(spec.with_overrides(data_seed=1), Path("unused"), progress=False)
    again = load_task_data(spec.with_overrides(data_seed=1), Path("unused"), progress=False)
    # data seed 0 is the draw the task made before data seeds existed: numpy's generator seeded with 0
    order = np.random.default_rng(0).permutation(len(file_pool))
    assert _same(_positions(a.reserve), [file_pool[i] for i in sorted(order[: spec.reserve_size])])
    assert _same(_positions(a.validation), [file_pool[i] for i in sorted(order[len(file_pool) - 20:])])
    assert _same(_positions(a.test), _positions(b.test))  # the test file is fixed
    for part in ("reserve", "validation", "pool"):
        assert not _same(_positions(getattr(a, part)), _positions(getattr(b, part))), part
        assert _same(_positions(getattr(b, part)), _positions(getattr(again, part))), part
    for data in (a, b):  # every frame from the pool file, each in one part only
        drawn = _positions(data.pool) + _positions(data.reserve) + _positions(data.validation)
        assert len(drawn) == len(file_pool) and _shared(drawn, file_pool) == len(file_pool)
        assert len({x.tobytes() for x in drawn}) == len(drawn)
