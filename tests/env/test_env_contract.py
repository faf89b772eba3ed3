"""The Gymnasium contract of ActiveLearningEnv (README, Design: Contracts) on every registered pool-mode task
(on-the-fly tasks: tests/env/test_otf_env.py)."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

import alenv
from alenv.env import ActiveLearningEnv
from alenv.tasks import TASKS, get_task, snake_case

# Small overrides so that the full-size tasks build and run in seconds.
SMALL_OVERRIDES = dict(
    pool_size=40,
    test_size=20,
    validation_size=20,
    reserve_size=12,
    n_initial=5,
    budget=10,
    batch_size=5,
    ensemble={"n_members": 2, "hidden": [16, 16], "epochs_initial": 20, "min_steps": 0},
)
METRIC_KEYS = {"energy_mae", "energy_rmse", "force_mae", "force_rmse", "n_labels", "oracle_seconds"}


def _kwargs_for(name: str, rmd17_ethanol) -> dict:
    spec = TASKS[name]
    kwargs: dict = {}
    if spec.system == "dataset":
        pool, test = rmd17_ethanol
        kwargs.update(pool=pool, test=test)
    if not name.endswith("-tiny"):
        kwargs.update(SMALL_OVERRIDES)
    return kwargs


# Full-size tasks that build their own data (minutes on 2 cores) run with -m slow; their -tiny variants run
# the same code by default, except where the task's own test file already builds and plays the -tiny task
# (Organics, the malonaldehyde pair: tests/tasks/) and Water, whose labels take seconds each.
# Tasks whose check here would build data nothing else in the default run needs (full-size Cu-EMT and
# the -Shift-tiny tasks among them: their systems and environment class are checked in the controls; the
# target shift's data in tests/tasks/test_target_shift.py).
SLOW_TASKS = {
    "Ethanol-GFN2-Shift", "Cu-EMT-Shift", "Organics-GFN2", "Malonaldehyde-GFN2", "Malonaldehyde-GFN2-Transfer",
    "Cu-EMT", "Cu-EMT-Shift-tiny", "Ethanol-GFN2-Shift-tiny",
    "Water-GFN2", "Water-GFN2-tiny", "Organics-GFN2-tiny", "Malonaldehyde-GFN2-tiny", "Malonaldehyde-GFN2-Transfer-tiny",
}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_TASKS else n
     for n in sorted(n for n, s in TASKS.items() if s.mode == "pool")],
)
def test_check_env_every_registered_task(name, make_env, rmd17_ethanol, check_env_clean, shipped_policy_plays_a_round):
    env_id = TASKS[name].id
    assert env_id in gymnasium.registry
    env = make_env(env_id, **_kwargs_for(name, rmd17_ethanol))
    check_env_clean(env)
    # A short episode with the action space's own samples stays inside the spaces and ends on the budget.
    u = env.unwrapped
    obs, info = env.reset(seed=3)
    steps, terminated = 0, False
    while not terminated:
        assert u.observation_space.contains(obs)
        obs, reward, terminated, truncated, info = env.step(u.action_space.sample())
        steps += 1
        assert not truncated and np.isfinite(reward)
    assert steps == u.task.budget // u.task.batch_size
    assert info["metrics"]["n_labels"] == u.task.n_initial + u.task.budget
    shipped_policy_plays_a_round(env)


def _rollout(env, seed: int, actions: list[np.ndarray] | None = None, n_steps: int = 3):
    """Reset with ``seed`` and step; actions default to the lowest available indices (deterministic)."""
    obs, info = env.reset(seed=seed)
    trace = [(obs, None, info)]
    taken = []
    for t in range(n_steps):
        a = actions[t] if actions is not None else np.flatnonzero(obs["mask"])[: env.unwrapped.task.batch_size]
        taken.append(np.asarray(a))
        obs, reward, terminated, truncated, info = env.step(a)
        trace.append((obs, reward, info))
    return trace, taken


def _assert_same(trace_a, trace_b):
    assert len(trace_a) == len(trace_b)
    for (oa, ra, ia), (ob, rb, ib) in zip(trace_a, trace_b):
        for key in oa:
            np.testing.assert_array_equal(oa[key], ob[key], err_msg=key)
        assert ra == rb
        assert ia["metrics"] == ib["metrics"]
        np.testing.assert_array_equal(ia["chosen"], ib["chosen"])


def test_same_seed_same_episode(ethanol_tiny_env, make_env):
    first, actions = _rollout(ethanol_tiny_env, seed=5)
    again, _ = _rollout(ethanol_tiny_env, seed=5, actions=actions)
    _assert_same(first, again)
    other_instance = make_env("alenv/Ethanol-GFN2-tiny-v3")
    fresh, _ = _rollout(other_instance, seed=5, actions=actions)
    _assert_same(first, fresh)
    # Observations are fresh copies: mutating one does not change the environment's state.
    obs, _ = ethanol_tiny_env.reset(seed=5)
    obs["mask"][:] = 0
    obs2, _, _, _, _ = ethanol_tiny_env.step(actions[0])
    assert obs2["mask"].sum() == ethanol_tiny_env.unwrapped.n_pool - len(actions[0])


def test_different_seeds_differ(ethanol_tiny_env):
    metrics = []
    for seed in (0, 1, 2):
        _, info = ethanol_tiny_env.reset(seed=seed)
        metrics.append(info["metrics"]["force_mae"])
    assert len(set(metrics)) == 3, metrics


def test_invalid_actions_raise_clearly(ethanol_tiny_env):
    env = ethanol_tiny_env
    u = env.unwrapped
    k, n = u.task.batch_size, u.n_pool
    assert k > 1
    obs, _ = env.reset(seed=0)
    first = np.arange(k, dtype=np.int64)
    env.step(first)
    state = (u.mask.copy(), u.budget_used, u.round, len(u.labelled))
    fresh = np.flatnonzero(u.mask)[:k]
    bad = {
        "masked": (np.r_[first[0], fresh[1:]], "masked"),
        "repeated": (np.r_[fresh[0], fresh[:-1]], "repeat"),
        "out of range": (np.r_[fresh[:-1], n], "out of range"),
        "negative": (np.r_[fresh[:-1], -1], "out of range"),
        "too short": (fresh[:-1], f"exactly {k}"),
        "too long": (np.flatnonzero(u.mask)[: k + 1], f"exactly {k}"),
        "2-d": (fresh.reshape(1, -1), f"exactly {k}"),
        "non-integer floats": (fresh + 0.5, "integer"),
        "bools": (np.ones(k, dtype=bool), "integer"),
    }
    for what, (action, message) in bad.items():
        with pytest.raises(ValueError, match=message):
            env.step(action)
        # A rejected action changes nothing and costs nothing.
        np.testing.assert_array_equal(u.mask, state[0], err_msg=what)
        assert (u.budget_used, u.round, len(u.labelled)) == state[1:], what
    # Integer-valued floats and lists are the same valid action.
    obs, _, _, _, info = env.step([float(i) for i in fresh])
    np.testing.assert_array_equal(np.sort(info["chosen"]), np.sort(fresh))


def test_episode_end_mask_and_metrics(ethanol_tiny_env):
    env = ethanol_tiny_env
    u = env.unwrapped
    task = u.task
    obs, info = env.reset(seed=1)
    assert u.observation_space.contains(obs)
    assert obs["mask"].dtype == np.int8 and obs["mask"].sum() == u.n_pool
    assert METRIC_KEYS <= set(info["metrics"])
    assert "train_seconds" not in info["metrics"]  # wall_times=False keeps runs comparable
    assert info["metrics"]["n_labels"] == task.n_initial
    n_rounds = task.budget // task.batch_size
    chosen_all: list[int] = []
    oracle_seconds = info["metrics"]["oracle_seconds"]
    assert oracle_seconds > 0
    before = info["metrics"]["force_mae"]  # the first round's reward is measured from the reset's model
    for r in range(1, n_rounds + 1):
        action = np.flatnonzero(obs["mask"])[-task.batch_size :][::-1].copy()
        obs, reward, terminated, truncated, info = env.step(action)
        chosen_all += action.tolist()
        assert terminated == (r == n_rounds), r
        assert truncated is False
        assert u.observation_space.contains(obs)
        assert all(np.isfinite(v).all() for v in obs.values())
        assert np.all(obs["mask"][chosen_all] == 0)
        assert obs["mask"].sum() == u.n_pool - len(chosen_all)
        np.testing.assert_array_equal(info["chosen"], action)
        m = info["metrics"]
        assert METRIC_KEYS <= set(m)
        assert m["n_labels"] == task.n_initial + r * task.batch_size
        assert m["oracle_seconds"] > oracle_seconds  # each label is charged its (cached) cost
        oracle_seconds = m["oracle_seconds"]
        assert m["energy_mae"] <= m["energy_rmse"] and m["force_mae"] <= m["force_rmse"]
        assert reward == pytest.approx(np.log(before) - np.log(m["force_mae"]), rel=1e-9, abs=1e-12), r
        before = m["force_mae"]
        # Labelled candidates are at distance 0 from the training set.
        dist = obs["candidates"][:, u.candidate_features.index("dist_to_train")]
        np.testing.assert_allclose(dist[chosen_all], 0.0, atol=1e-3)
        assert dist[obs["mask"] == 1].min() > 0
    with pytest.raises(RuntimeError):
        env.step(np.flatnonzero(obs["mask"])[: task.batch_size])


def test_observation_features_and_embedding(ethanol_tiny_env):
    u = ethanol_tiny_env.unwrapped
    obs, _ = ethanol_tiny_env.reset(seed=2)
    for name in ("energy_std", "force_std_mean", "force_std_max", "dist_to_train"):
        assert name in u.candidate_features
    assert obs["candidates"].shape == (u.n_pool, len(u.candidate_features))
    assert obs["embedding"].shape == (u.n_pool, u.task.embedding_dim)
    assert obs["globals"].shape == (len(u.global_features),)
    c = {name: obs["candidates"][:, i] for i, name in enumerate(u.candidate_features)}
    assert np.all(c["energy_std"] > 0) and np.all(c["force_std_max"] >= c["force_std_mean"])
    # The spreads are those of the ensemble: recompute one candidate with the ASE calculator.
    i = 7
    atoms = u.pool_frames[i].copy()
    atoms.calc = u.potential.as_calculator()
    atoms.get_potential_energy()
    assert atoms.calc.results["energy_std"] == pytest.approx(float(c["energy_std"][i]), rel=1e-3)
    per_atom = np.sqrt(((u.potential.evaluate_atoms(atoms)[1] - atoms.get_forces()) ** 2).sum(-1).mean(0))
    assert per_atom.mean() == pytest.approx(float(c["force_std_mean"][i]), rel=1e-3)
    g = dict(zip(u.global_features, obs["globals"]))
    assert g["budget_used"] == 0
    assert g["log10_force_mae"] == pytest.approx(np.log10(u.metrics["force_mae"]), rel=1e-6)


def test_wall_times_reported_when_enabled(make_env):
    env = make_env("alenv/Ethanol-GFN2-tiny-v3", wall_times=True)
    obs, info = env.reset(seed=0)
    assert info["metrics"]["train_seconds"] > 0
    _, _, _, _, info = env.step(np.flatnonzero(obs["mask"])[: env.unwrapped.task.batch_size])
    assert METRIC_KEYS | {"train_seconds"} <= set(info["metrics"])
    assert info["metrics"]["train_seconds"] > 0


def test_step_before_reset_raises(make_env):
    env = make_env("alenv/Ethanol-GFN2-tiny-v3")
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.step(np.arange(env.unwrapped.task.batch_size))


def test_periodic_cu_episode(cu_tiny_env):
    u = cu_tiny_env.unwrapped
    assert all(a.pbc.all() for a in u.pool_frames[:3])
    obs, info = cu_tiny_env.reset(seed=0)
    assert u.observation_space.contains(obs)
    obs, reward, terminated, truncated, info = cu_tiny_env.step(u.action_space.sample())
    assert u.observation_space.contains(obs) and np.isfinite(reward) and not terminated
    assert info["metrics"]["n_labels"] == u.task.n_initial + u.task.batch_size


def test_unknown_task_and_override(make_env, alenv_cache):
    with pytest.raises(ValueError, match="unknown task"):
        get_task("Water-DFT")
    with pytest.raises(ValueError, match="unknown task"):
        ActiveLearningEnv(task="Water-DFT", cache_dir=alenv_cache)
    with pytest.raises(ValueError, match="not_a_setting"):
        make_env("alenv/Ethanol-GFN2-tiny-v3", not_a_setting=1)
    with pytest.raises(ValueError, match="multiple of batch_size"):
        make_env("alenv/Ethanol-GFN2-tiny-v3", budget=7)


def test_dataset_task_needs_files(make_env):
    with pytest.raises(ValueError, match="pool=PATH"):
        make_env("alenv/Dataset-tiny-v3")


def test_get_task_accepts_name_id_and_snake_case():
    for name, spec in TASKS.items():
        assert get_task(name) is spec
        assert get_task(spec.id) is spec
        assert get_task(spec.id.split("/", 1)[1]) is spec
        assert get_task(snake_case(name)) is spec
    assert get_task("ethanol_gfn2_tiny") is TASKS["Ethanol-GFN2-tiny"]
    assert get_task("cu_emt") is TASKS["Cu-EMT"]
    assert alenv.get_task is get_task


def test_get_task_rejects_unknown_version():
    with pytest.raises(ValueError):
        get_task("alenv/Ethanol-GFN2-v7")
