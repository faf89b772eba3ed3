"""Failed labels in pool mode: paid for, masked, reported, never trained on, never saved.

The oracle is real: EMT with ``min_distance`` raised to 2.2 Angstrom, which (as documented for every
``CalculatorOracle``) fails any structure with two atoms closer than that, without calling the backend.
About a third of the Cu-EMT-tiny pool comes that close at 800-1500 K; the reserve, from 300 K MD, does not.
At 2.37 Angstrom the oracle refuses 10 of the 12 reserve structures, so some seeds draw no usable initial label.

Pool labels come from the task's oracle MD and prefill the label cache, so in pool mode the oracle is only
consulted for what the cache lacks; failures reach an episode through the persistent cache, where an
earlier run of the same oracle (same name and settings) left them. That earlier run happens here, through
the public oracle classes, before the environment is built.
"""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase import Atoms

from alenv.oracles import CachedOracle, LabelCache, make_oracle
from alenv.tasks import get_task, load_task_data

MIN_DISTANCE = 2.2  # Angstrom
OVERRIDES = {"oracle_kwargs": {"min_distance": MIN_DISTANCE}}


def _closest_pair(atoms: Atoms) -> float:
    """Smallest interatomic distance under the minimum-image convention, Angstrom."""
    d = atoms.get_all_distances(mic=True)
    return float(d[np.triu_indices(len(atoms), 1)].min())


@pytest.fixture(scope="module")
def refused(alenv_cache) -> np.ndarray:
    """Pool indices the oracle refuses, after an earlier run of it over the whole pool filled the cache."""
    spec = get_task("Cu-EMT-tiny").with_overrides(**OVERRIDES)
    data = load_task_data(spec, alenv_cache, progress=False)
    too_close = np.array([_closest_pair(a) < MIN_DISTANCE for a in data.pool])
    assert not any(_closest_pair(a) < MIN_DISTANCE for a in data.reserve)
    oracle = make_oracle(spec.oracle, **spec.oracle_kwargs)
    labels = CachedOracle(oracle, LabelCache(alenv_cache / "labels" / f"{oracle.name}.sqlite")).label(data.pool)
    failed = np.array([lab.failed for lab in labels])
    np.testing.assert_array_equal(failed, too_close)  # the oracle fails exactly where it says it does
    assert 8 <= failed.sum() <= len(failed) - 10
    return np.flatnonzero(failed)


def test_failed_labels_are_charged_masked_reported_and_not_saved(make_env, refused, tmp_path):
    env = make_env("alenv/Cu-EMT-tiny-v3", **OVERRIDES)
    u = env.unwrapped
    fine = np.setdiff1d(np.arange(u.observation_space["mask"].n), refused)
    failed_share = u.global_features.index("failed_fraction")
    obs, info = env.reset(seed=0)
    assert info["metrics"]["n_failed"] == 0 and info["metrics"]["n_labels"] == 5

    # round 1: two refused, three labelled
    mixed = np.array([refused[0], fine[0], refused[1], fine[1], fine[2]])
    obs, reward, terminated, _, info = env.step(mixed)
    m = info["metrics"]
    assert info["failed"] == [int(refused[0]), int(refused[1])]
    assert (m["n_failed"], m["n_labels"], m["budget_used"]) == (2, 10, 5)  # failures are paid for
    assert np.all(obs["mask"][mixed] == 0) and obs["mask"].sum() == len(obs["mask"]) - 5
    assert obs["globals"][failed_share] == pytest.approx(2 / 10)
    assert np.isfinite(reward) and not terminated

    # round 2: all refused: budget spent, nothing to learn from, so no refit and no reward
    before = m
    obs, reward, terminated, _, info = env.step(refused[2:7])
    m = info["metrics"]
    assert info["failed"] == [int(i) for i in refused[2:7]]
    assert (m["n_failed"], m["n_labels"], m["budget_used"]) == (7, 15, 10)
    for key in ("force_mae", "energy_mae", "force_rmse", "train_force_rmse"):
        assert m[key] == before[key], key
    assert reward == 0.0 and not terminated
    assert np.all(obs["mask"][refused[:7]] == 0)

    # round 3: all labelled; the budget counts the failures, so the episode ends here
    obs, reward, terminated, _, info = env.step(fine[3:8])
    assert info["failed"] == [] and terminated
    assert (info["metrics"]["n_failed"], info["metrics"]["budget_used"]) == (7, 15)

    # only the successful labels are saved: 5 initial + 3 + 5
    u.save_labels(tmp_path / "labels.extxyz")
    saved = ase.io.read(tmp_path / "labels.extxyz", index=":")
    assert len(saved) == info["metrics"]["n_labels"] - info["metrics"]["n_failed"] == 13
    assert sorted(a.info["pool_index"] for a in saved if a.info["pool_index"] >= 0) == sorted(
        [int(i) for i in fine[:8]]
    )
    assert all(_closest_pair(a) >= MIN_DISTANCE for a in saved)
    assert all(np.isfinite(a.get_forces()).all() and np.isfinite(a.get_potential_energy()) for a in saved)


def test_failed_labels_are_not_trained_on(make_env, refused):
    """The round with two failures trains exactly as a round that asked only for its three successes: same
    initial model (same seed), same training labels in the same order, same minibatches."""
    mixed = make_env("alenv/Cu-EMT-tiny-v3", **OVERRIDES)
    only_ok = make_env("alenv/Cu-EMT-tiny-v3", batch_size=3, budget=3, **OVERRIDES)
    fine = np.setdiff1d(np.arange(mixed.unwrapped.observation_space["mask"].n), refused)
    _, start = mixed.reset(seed=0)
    _, start_ok = only_ok.reset(seed=0)
    assert start["metrics"] == start_ok["metrics"]
    _, _, _, _, info = mixed.step(np.array([refused[0], fine[0], refused[1], fine[1], fine[2]]))
    _, _, _, _, info_ok = only_ok.step(fine[:3])
    assert info["failed"] and not info_ok["failed"]
    for key in ("force_mae", "energy_mae", "force_rmse", "energy_rmse", "force_max", "train_force_rmse"):
        assert info["metrics"][key] == info_ok["metrics"][key], key


MOSTLY_REFUSED = {"oracle_kwargs": {"min_distance": 2.37}}  # refuses 10 of the 12 reserve structures


@pytest.fixture(scope="module")
def mostly_refused(make_env, alenv_cache):
    """Cu-EMT-tiny whose oracle refused most of the reserve in an earlier run, and a seed whose reset
    succeeds and one whose initial draw holds refused structures only."""
    spec = get_task("Cu-EMT-tiny").with_overrides(**MOSTLY_REFUSED)
    data = load_task_data(spec, alenv_cache, progress=False)
    oracle = make_oracle(spec.oracle, **spec.oracle_kwargs)
    labels = CachedOracle(oracle, LabelCache(alenv_cache / "labels" / f"{oracle.name}.sqlite")).label(data.reserve)
    assert sum(lab.failed for lab in labels) == 10
    env = make_env("alenv/Cu-EMT-tiny-v3", **MOSTLY_REFUSED).unwrapped
    seeds: dict[str, int] = {}
    for seed in range(30):
        try:
            env.reset(seed=seed)
            seeds.setdefault("ok", seed)
        except RuntimeError:
            seeds.setdefault("fails", seed)
        if len(seeds) == 2:
            return env, seeds
    raise AssertionError(f"no seed of 30 both succeeds and fails: {seeds}")


def test_reset_raises_when_every_initial_label_fails(mostly_refused):
    """Nothing to train on: reset raises, saying so and why (the oracle's reason)."""
    env, seeds = mostly_refused
    with pytest.raises(RuntimeError, match="every initial label failed.*atoms overlap"):
        env.reset(seed=seeds["fails"])


def test_a_reset_that_raises_ends_the_previous_episode(mostly_refused):
    """A reset that raises must not leave the last episode running with a cleared mask (its candidates
    would be labelled, and paid for, twice)."""
    env, seeds = mostly_refused
    env.reset(seed=seeds["ok"])
    env.step(np.arange(5))
    with pytest.raises(RuntimeError, match="every initial label failed"):
        env.reset(seed=seeds["fails"])
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.arange(5))
