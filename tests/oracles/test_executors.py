"""Labels computed on workers (``alenv.oracles.executors``): the same labels as in-process, each stored the
moment it returns, a lost worker retried, and clear errors for a bad executor spec."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from alenv.oracles import (
    CachedOracle,
    LabelCache,
    TransientOracleError,
    make_executor,
    make_oracle,
)
from alenv.oracles.executors import ProcessExecutor, executor_spec


def _structures(n: int = 6) -> list[Atoms]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
        atoms.positions += rng.normal(0.0, 0.1, atoms.positions.shape)
        out.append(atoms)
    return out


class DyingEMT:
    """EMT whose worker process dies (``os._exit``) the first time it meets each structure listed in
    ``die_on``, or every time when ``always`` is set: a pool worker killed mid-batch."""

    name = "emt"

    def __init__(self, marks: Path, die_on: set[int], always: bool = False) -> None:
        self.inner = make_oracle("emt")
        self.marks, self.die_on, self.always = Path(marks), die_on, always

    def fingerprint(self) -> dict:
        return self.inner.fingerprint()

    def label(self, structures):
        (atoms,) = structures
        index = int(round(atoms.info["index"]))
        mark = self.marks / hashlib.sha256(atoms.positions.tobytes()).hexdigest()
        if index in self.die_on and (self.always or not mark.exists()):
            mark.touch()
            os._exit(1)
        return self.inner.label(structures)


def _label(executor, structures, path: Path, oracle=None):
    cached = CachedOracle(oracle or make_oracle("emt"), LabelCache(path), executor=executor, wait=0.0)
    return cached, cached.label(structures)


@pytest.mark.parametrize("spec", [{"kind": "process", "workers": 2},
                                  pytest.param({"kind": "ray", "num_cpus": 1}, marks=pytest.mark.slow)],  # Ray: ~10 s
                         ids=["process", "ray"])
def test_workers_give_the_labels_computed_in_process(tmp_path: Path, spec: dict) -> None:
    if spec["kind"] == "ray":
        pytest.importorskip("ray")
    structures = _structures()
    _, inline = _label(None, structures, tmp_path / "inline.sqlite")
    pool = make_executor(spec)
    try:
        _, remote = _label(pool, structures, tmp_path / "pool.sqlite")
    finally:
        pool.shutdown()
    for a, b in zip(inline, remote):
        assert a.energy == b.energy and np.array_equal(a.forces, b.forces) and not b.failed and not b.cached
    assert len(LabelCache(tmp_path / "pool.sqlite")) == len(structures)  # every label stored
    # a second call is served from the cache, without the pool
    cached, again = _label(None, structures, tmp_path / "pool.sqlite")
    assert all(lab.cached for lab in again) and [lab.energy for lab in again] == [lab.energy for lab in inline]


def test_a_worker_lost_mid_batch_is_retried_and_no_label_is_lost(tmp_path: Path) -> None:
    structures = _structures()
    for i, atoms in enumerate(structures):
        atoms.info["index"] = i
    pool = ProcessExecutor(workers=2)
    try:
        cached, labels = _label(pool, structures, tmp_path / "l.sqlite", DyingEMT(tmp_path, {1, 4}))
    finally:
        pool.shutdown()
    _, reference = _label(None, structures, tmp_path / "ref.sqlite")
    assert [lab.energy for lab in labels] == [lab.energy for lab in reference]
    assert pool.restarts >= 1 and {r.key for r in cached.retries} >= set(cached.keys([structures[1], structures[4]]))
    assert all("BrokenProcessPool" in r.reason for r in cached.retries)
    assert len(LabelCache(tmp_path / "l.sqlite")) == len(structures)


@pytest.mark.slow  # three pool restarts (6 s); the lost-worker test keeps every label too
def test_labels_that_returned_are_kept_when_a_structure_fails_every_try(tmp_path: Path) -> None:
    structures = _structures()
    for i, atoms in enumerate(structures):
        atoms.info["index"] = i
    pool = ProcessExecutor(workers=1)  # one worker: the others finish before the doomed one is tried again
    try:
        with pytest.raises(TransientOracleError, match="failed 3 times.*BrokenProcessPool.*main guard"):
            _label(pool, structures, tmp_path / "l.sqlite", DyingEMT(tmp_path, {len(structures) - 1}, always=True))
    finally:
        pool.shutdown()
    cache = LabelCache(tmp_path / "l.sqlite")
    keys = CachedOracle(make_oracle("emt"), cache).keys(structures)
    assert set(cache.get_many(keys)) == set(keys[:-1])  # all but the doomed structure, none lost


@pytest.mark.parametrize(
    "spec, message",
    [
        ("threads", "unknown oracle executor kind 'threads'"),
        ({"kind": "process", "worker": 2}, "has no setting worker; its settings: workers"),
        ({"kind": "inline", "workers": 2}, "has no setting workers; its settings: none"),
        (3, "must be a kind"),
    ],
)
def test_a_bad_executor_spec_is_refused_by_name(spec, message) -> None:
    with pytest.raises(ValueError, match=message):
        executor_spec(spec)


def test_bad_executor_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        make_executor({"kind": "process", "workers": 0})
    with pytest.raises(ValueError, match="cluster must be slurm, local, debug or null"):
        make_executor({"kind": "submitit", "cluster": "pbs", "folder": "x"})
    assert make_executor("inline") is None and make_executor(None) is None
    assert make_executor({"kind": "process", "workers": None}).workers == (os.cpu_count() or 1)


def test_an_env_refuses_a_bad_executor_before_building(tmp_path: Path) -> None:
    import gymnasium as gym

    import alenv  # noqa: F401

    with pytest.raises(ValueError, match="unknown oracle executor kind"):
        gym.make("alenv/Ethanol-GFN2-tiny-v3", cache_dir=tmp_path, oracle_executor="gpu")
    assert not any(tmp_path.iterdir())


def _fresh_labels(cache: Path, into: Path) -> Path:
    """A cache folder with ``cache``'s task data and no labels: every label is computed again."""
    into.mkdir()
    for entry in cache.iterdir():
        if entry.name != "labels":
            (into / entry.name).symlink_to(entry)
    return into


SMALL_OTF = dict(
    test_size=12, validation_size=12, reserve_size=8, n_initial=4, budget=6, batch_size=3,
    ensemble={"n_members": 2, "hidden": [16, 16], "epochs_initial": 20, "min_steps": 0},
    otf={"walkers": 2, "steps_per_round": 20, "candidates_per_walker": 2, "stability_starts": 1, "stability_steps": 20},
    md={"equilibration": 20, "stride": 10},
)


def _episode(env, seed: int) -> list:
    obs, info = env.reset(seed=seed)
    trace = [info["metrics"]["force_mae"]]
    rng = np.random.default_rng(seed)
    terminated = False
    while not terminated:
        action = np.zeros(len(obs["mask"]), dtype=np.int8)
        action[rng.choice(np.flatnonzero(obs["mask"]), size=3, replace=False)] = 1
        obs, reward, terminated, _, info = env.step(action)
        trace += [reward, info["metrics"]["force_mae"], info["metrics"]["energy_mae"], obs["candidates"].copy()]
    return trace


@pytest.mark.parametrize("executor", [{"kind": "process", "workers": 2},
                                      pytest.param({"kind": "submitit", "cluster": "local"}, marks=pytest.mark.slow)],
                         ids=["process", "submitit-local"])
def test_an_on_the_fly_episode_is_the_same_under_every_local_executor(alenv_cache: Path, tmp_path: Path,
                                                                       executor: dict) -> None:
    """New MD frames are labelled every round: computed in-process and on workers, the episodes agree."""
    import gymnasium as gym

    import alenv  # noqa: F401

    gym.make("alenv/Ethanol-GFN2-OTF-tiny-v3", cache_dir=alenv_cache, **SMALL_OTF).close()  # task data, once
    traces = []
    for name, spec in (("inline", None), ("workers", executor)):
        cache = _fresh_labels(alenv_cache, tmp_path / name)
        env = gym.make("alenv/Ethanol-GFN2-OTF-tiny-v3", cache_dir=cache, oracle_executor=spec, **SMALL_OTF)
        try:
            traces.append(_episode(env, seed=3))
            computed = [lab for lab in env.unwrapped.episode.labelled.labels if not lab.cached]
        finally:
            env.close()
        assert computed, "the episode computed no label: nothing was compared"
    for a, b in zip(*traces):
        assert np.array_equal(a, b)
    shutil.rmtree(tmp_path / "inline")


@pytest.mark.slow  # a benchmark script (5 s)
def test_the_executor_benchmark_prints_and_writes_its_comparison(tmp_path: Path, capsys) -> None:
    from benchmarks.executors import main

    result = main(["--oracle", "emt", "--n", "4", "--workers", "2", "--out", str(tmp_path)])
    assert [r["setting"] for r in result["rows"]] == ["in-process, 1 thread", "process pool, 2 workers x 1 thread"]
    assert all(r["identical"] and r["failed"] == 0 and r["seconds"] > 0 for r in result["rows"])
    assert "| process pool, 2 workers x 1 thread |" in (tmp_path / "executors.md").read_text()
    assert "cores," in capsys.readouterr().out
