"""Target shifts: a task's validation and test set may come from another distribution than its pool.

MD tasks take ``target_temperatures`` (oracle MD there for validation and test, at ``temperatures`` for pool
and reserve); the Dataset task takes ``target_subsets`` (validation and test keep only frames of those
subsets). Each test is written as the failure it prevents: a shifted test set that still held pool
temperatures, a target subset that silently matched nothing, a target rewarded through a validation set
drawn from the pool, and data made before target shifts existed losing its cache key.
"""

from __future__ import annotations

import ase.io
import gymnasium as gym
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

import alenv  # noqa: F401  (registers the tasks)
from alenv.datasets import rmd17
from alenv.tasks import get_task

SMALL = {"pool_size": 40, "test_size": 0, "budget": 10, "batch_size": 5, "reserve_size": 10, "n_initial": 5,
         "model": "ridge"}


def test_shifted_md_task_tests_at_its_target_temperature(make_env):
    env = make_env("alenv/Ethanol-GFN2-Shift-tiny-v0")
    u = env.unwrapped
    assert {a.info["temperature"] for a in u.pool_frames + u.reserve_frames} <= {300.0, 600.0}
    assert {a.info["temperature"] for a in u.pool_frames} == {300.0, 600.0}
    assert {a.info["temperature"] for a in u.test_frames + u.validation_frames} == {1000.0}
    env.reset(seed=0)
    metrics = u.test_metrics()
    assert "force_mae[T=1000K]" in metrics and not any("T=300K" in k or "T=600K" in k for k in metrics)


def test_in_distribution_tasks_keep_their_data_keys():
    # made before target shifts existed: the same key, so cached data (and results) stay valid
    assert get_task("Ethanol-GFN2").data_key() == "Ethanol-GFN2-v1-seed0-57ce5d34c160"
    assert get_task("Cu-EMT").data_key() == "Cu-EMT-v1-seed0-577cd29b0a1e"
    shifted = get_task("Ethanol-GFN2").with_overrides(target_temperatures=[1000])
    assert shifted.target_temperatures == (1000.0,) and shifted.data_key() != get_task("Ethanol-GFN2").data_key()


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"target_temperatures": (300.0, 600.0, 900.0), "test_size": 2}, "test_size 2 is smaller than the 3 target"),
        ({"target_temperatures": (1000.0,), "validation_size": 0}, "validation_size"),
        ({"target_temperatures": (-5.0,)}, "positive temperatures"),
        ({"target_temperatures": ()}, "positive temperatures"),
        ({"target_subsets": ("hot",)}, "applies to the Dataset task"),
    ],
)
def test_bad_md_targets_are_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        get_task("Ethanol-GFN2").with_overrides(**overrides)


def test_dataset_refuses_target_temperatures():
    with pytest.raises(ValueError, match="takes target_subsets"):
        get_task("Dataset").with_overrides(target_temperatures=(1000.0,))


def _tagged(frames, tags):
    out = []
    for a, tag in zip(frames, tags):
        b = a.copy()
        b.calc = SinglePointCalculator(b, energy=a.get_potential_energy(), forces=a.get_forces())
        b.info["config_type"] = tag
        out.append(b)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("target_shift")
    pool = ase.io.read(rmd17("ethanol", "train"), index=":80")
    test = _tagged(ase.io.read(rmd17("ethanol", "test"), index=":30"), ["near"] * 20 + ["far"] * 10)
    val = _tagged(ase.io.read(rmd17("ethanol", "test"), index="30:50"), ["near"] * 12 + ["far"] * 8)
    paths = {}
    for name, frames in (("pool", pool), ("test", test), ("validation", val)):
        paths[name] = d / f"{name}.extxyz"
        ase.io.write(paths[name], frames, format="extxyz")
    return paths


def test_dataset_target_subsets_keep_only_target_frames(files, tmp_path):
    env = gym.make("alenv/Dataset-tiny-v3", cache_dir=tmp_path, pool=files["pool"], test=files["test"],
                   validation=files["validation"], target_subsets=["far"], **SMALL)
    u = env.unwrapped
    assert len(u.test_frames) == 10 and len(u.validation_frames) == 8
    assert {a.info["config_type"] for a in u.test_frames + u.validation_frames} == {"far"}
    env.reset(seed=0)
    assert "force_mae[far]" in u.test_metrics() and "force_mae[near]" not in u.test_metrics()


def test_dataset_target_subset_without_frames_is_refused(files, tmp_path):
    with pytest.raises(ValueError, match=r"target subset\(s\) \['hot'\] have no frames.*far \(10 frames\), near \(20 frames\)"):
        gym.make("alenv/Dataset-tiny-v3", cache_dir=tmp_path, pool=files["pool"], test=files["test"],
                 validation=files["validation"], target_subsets=["far", "hot"], **SMALL)


def test_dataset_target_subsets_need_a_validation_file(files, tmp_path):
    with pytest.raises(ValueError, match="needs a validation file"):
        gym.make("alenv/Dataset-tiny-v3", cache_dir=tmp_path, pool=files["pool"], test=files["test"],
                 target_subsets=["far"], **SMALL)
