"""Energy-only frames (bond scans, normal-mode paths) in the Dataset task's validation and test files: they
count in energy errors, force errors count the frames with forces, every subset (``config_type``) gets its
own metrics in ``test_metrics()``; a pool frame without forces, or a validation set without any, is refused.

Each test is written as the failure it prevents:

- an energy-only frame in a test file stopped the task ("has no forces");
- an energy-only frame entered the force errors as zeros or NaN, or was dropped from the energy errors;
- per-subset errors were computed over the wrong frames, or leaked into ``info``;
- a pool frame without forces was trained on, or a validation set without forces gave NaN rewards.
"""

from __future__ import annotations

import math

import ase.io
import gymnasium as gym
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

import alenv  # noqa: F401  (registers the tasks)
from alenv.datasets import rmd17
from alenv.tasks.dataset import KCAL_MOL

SMALL = {"pool_size": 40, "test_size": 0, "budget": 10, "batch_size": 5, "reserve_size": 10, "n_initial": 5,
         "model": "ridge"}
SCAN = range(0, 20, 4)  # frames of each file written with an energy only


def _tagged(frames, energy_only: set[int], e_scale: float = 1.0, f_scale: float = 1.0):
    """Copies labelled in another unit: frames in ``energy_only`` without forces and tagged ``scan``, the
    others tagged ``md``."""
    out = []
    for i, a in enumerate(frames):
        b = a.copy()
        e, f = a.get_potential_energy() * e_scale, a.get_forces() * f_scale
        b.calc = SinglePointCalculator(b, energy=e) if i in energy_only else SinglePointCalculator(b, energy=e, forces=f)
        b.info["config_type"] = "scan" if i in energy_only else "md"
        out.append(b)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("energy_only")
    pool = ase.io.read(rmd17("ethanol", "train"), index=":100")
    test = ase.io.read(rmd17("ethanol", "test"), index=":20")
    validation = ase.io.read(rmd17("ethanol", "test"), index="20:40")
    paths = {"pool": d / "pool.extxyz", "test": d / "test.extxyz", "validation": d / "validation.extxyz"}
    ase.io.write(paths["pool"], pool, format="extxyz")
    ase.io.write(paths["test"], _tagged(test, set(SCAN)), format="extxyz")
    ase.io.write(paths["validation"], _tagged(validation, {1, 2}), format="extxyz")
    return d, paths, test, validation


def _by_hand(env, frames, energy_only: set[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Energy errors (F,) of every frame and force errors (M, n, 3) of the frames with forces, through the
    potential's ASE calculator against the original rMD17 labels, and the frames' rows."""
    calc = env.unwrapped.potential.as_calculator()
    de, df = [], []
    for i, frame in enumerate(frames):
        atoms = frame.copy()
        atoms.calc = calc
        de.append(atoms.get_potential_energy() - frame.get_potential_energy())
        if i not in energy_only:
            df.append(atoms.get_forces() - frame.get_forces())
    return np.array(de), np.stack(df), np.array([i not in energy_only for i in range(len(frames))])


def test_energy_only_frames_count_in_energy_errors_and_each_subset(files, alenv_cache):
    _, paths, test, validation = files
    env = gym.make("alenv/Dataset-tiny-v3", cache_dir=alenv_cache, **{k: str(v) for k, v in paths.items()}, **SMALL)
    _, info = env.reset(seed=0)
    m = env.unwrapped.test_metrics()
    de, df, has = _by_hand(env, test, set(SCAN))
    assert (m["n_energy_frames"], m["n_force_frames"]) == (20, 15)
    assert m["energy_mae"] == pytest.approx(np.abs(de).mean(), rel=1e-6)  # all 20 frames
    assert m["energy_mae_centred"] == pytest.approx(np.abs(de - de.mean()).mean(), rel=1e-6)
    assert m["force_mae"] == pytest.approx(np.abs(df).mean(), rel=1e-6)  # the 15 frames with forces
    assert m["force_max"] == pytest.approx(np.linalg.norm(df, axis=-1).max(), rel=1e-6)
    # per subset: the scan frames have energies only, the md frames both
    scan, md = de[~has], de[has]
    assert (m["n_energy_frames[scan]"], m["n_force_frames[scan]"]) == (5, 0)
    assert m["energy_mae[scan]"] == pytest.approx(np.abs(scan).mean(), rel=1e-6)
    assert m["energy_rmse_centred[scan]"] == pytest.approx(scan.std(), rel=1e-6)
    assert all(math.isnan(m[f"{k}[scan]"]) for k in ("force_mae", "force_rmse", "force_max", "force_norm_p95"))
    assert m["energy_mae[md]"] == pytest.approx(np.abs(md).mean(), rel=1e-6)
    assert m["force_mae[md]"] == pytest.approx(m["force_mae"], rel=1e-12)
    assert m["force_norm_p99[md]"] == pytest.approx(np.percentile(np.linalg.norm(df, axis=-1), 99), rel=1e-6)
    # info: the validation set's overall errors only, with the frames that counted
    v = info["metrics"]
    vde, vdf, _ = _by_hand(env, validation, {1, 2})
    assert (v["n_energy_frames"], v["n_force_frames"]) == (20, 18)
    assert v["force_mae"] == pytest.approx(np.abs(vdf).mean(), rel=1e-6)
    assert v["energy_rmse"] == pytest.approx(np.sqrt((vde**2).mean()), rel=1e-6)
    assert not any("[" in k for k in v)
    obs, info = env.reset(seed=0)
    obs, reward, *_ = env.step(np.flatnonzero(obs["mask"])[: env.unwrapped.task.batch_size])
    assert np.isfinite(reward) and np.all(np.isfinite(obs["globals"]))


def test_energy_only_frames_keep_their_energy_in_another_unit(files, alenv_cache):
    d, paths, test, _ = files
    pool = ase.io.read(paths["pool"], index=":")
    kcal = {"pool": d / "pool_kcal.extxyz", "test": d / "test_kcal.extxyz"}
    ase.io.write(kcal["pool"], _tagged(pool, set(), 1 / KCAL_MOL, 1 / KCAL_MOL), format="extxyz")
    ase.io.write(kcal["test"], _tagged(test, set(SCAN), 1 / KCAL_MOL, 1 / KCAL_MOL), format="extxyz")
    env = gym.make("alenv/Dataset-tiny-v3", cache_dir=alenv_cache, units="kcal/mol",
                   **{k: str(v) for k, v in kcal.items()}, **SMALL)
    frames = env.unwrapped.test_frames
    assert frames[4].get_potential_energy() == pytest.approx(test[4].get_potential_energy(), rel=1e-9)
    assert "forces" not in frames[4].calc.results  # converted, and still without forces
    np.testing.assert_allclose(frames[5].get_forces(), test[5].get_forces(), rtol=1e-6, atol=1e-6)


def test_pool_frames_without_forces_are_refused(files, alenv_cache):
    d, paths, _, _ = files
    pool = ase.io.read(paths["pool"], index=":")
    path = d / "pool_scan.extxyz"
    ase.io.write(path, _tagged(pool, {7}), format="extxyz")
    with pytest.raises(ValueError, match=r"pool_scan.extxyz frame 7 has no forces.*trained on.*validation or test"):
        gym.make("alenv/Dataset-tiny-v3", cache_dir=alenv_cache, pool=str(path), test=str(paths["test"]), **SMALL)


def test_validation_needs_frames_with_forces(files, alenv_cache):
    d, paths, _, validation = files
    path = d / "validation_scan.extxyz"
    ase.io.write(path, _tagged(validation, set(range(len(validation)))), format="extxyz")
    with pytest.raises(ValueError, match=r"validation_scan.extxyz: no frame has forces.*'log_force_mae'"):
        gym.make("alenv/Dataset-tiny-v3", cache_dir=alenv_cache, pool=str(paths["pool"]), test=str(paths["test"]),
                 validation=str(path), **SMALL)
    # an energy reward does not help: the observation holds the validation force MAE too
    with pytest.raises(ValueError, match=r"no frame has forces.*log10_force_mae"):
        gym.make("alenv/Dataset-tiny-v3", cache_dir=alenv_cache, pool=str(paths["pool"]), test=str(paths["test"]),
                 validation=str(path), reward="log_energy_mae", **SMALL)


@pytest.mark.parametrize("text, fragment", [("", "Empty file"), ("\n\n", "holds no frames")])
def test_validation_file_without_frames_is_refused(files, alenv_cache, text, fragment):
    d, paths, _, _ = files
    path = d / "validation_empty.extxyz"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"validation_empty.extxyz.*{fragment}"):
        gym.make("alenv/Dataset-tiny-v3", cache_dir=alenv_cache, pool=str(paths["pool"]), test=str(paths["test"]),
                 validation=str(path), **SMALL)


def test_runner_records_subsets_in_test_metrics_and_overall_validation(files, alenv_cache):
    """The benchmark record: per-subset test errors beside the overall ones (NaN as null, valid JSON), the
    validation record with the overall errors only."""
    import json

    from agents import make_agent
    from alenv import keys
    from benchmarks.episode import run_episode

    _, paths, _, _ = files
    env = gym.make("alenv/Dataset-tiny-v3", cache_dir=alenv_cache, **{k: str(v) for k, v in paths.items()}, **SMALL)
    record = run_episode(env, make_agent("random"), seed=0, progress=False, echo=False)
    json.dumps(record, allow_nan=False)
    rounds = [record["initial"]] + record["steps"]
    assert len(rounds) == 1 + SMALL["budget"] // SMALL["batch_size"]
    for r in rounds:
        m = r["metrics"]
        assert {keys.per_subset(k, s) for k in keys.TEST_METRICS for s in ("md", "scan")} <= set(m)
        assert m["force_mae[scan]"] is None and m["n_force_frames[scan]"] == 0 and m["energy_mae[scan]"] > 0
        assert m["n_force_frames"] == 15 and m["force_mae"] == m["force_mae[md]"]
        assert set(r["validation"]) == set(keys.TEST_METRICS) and r["validation"]["n_force_frames"] == 18
