"""The Hydra configs: every registered task, agent, model, oracle and reward has one, every config composes
and resolves, and what a config names really builds (the agent with its kwargs; the TaskSpec with the
overrides of the task, model, oracle and reward groups, and its model, oracle and reward). Nothing here
builds an environment; the episodes are in test_runner_hydra.py.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf, open_dict

from alenv.tasks import TASKS, TaskSpec, get_task, snake_case
from benchmarks.run import CONFIG_DIR, task_overrides

ROOT = Path(__file__).resolve().parents[2]
GROUPS = ("task", "agent", "model", "oracle", "reward")


def _compose(*overrides: str, hydra: bool = False) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def _files(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _options(group: str) -> list[str]:
    """The choices of a config group as Hydra sees them (files and configs registered by the runner)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return sorted(GlobalHydra.instance().config_loader().get_group_options(group))


def _spec(cfg: DictConfig) -> TaskSpec:
    """The TaskSpec the runner's ``gym.make`` call would build from ``cfg`` (the env's own override path)."""
    from alenv.round_env import file_overrides

    return get_task(cfg.task.id).with_overrides(**file_overrides(task_overrides(cfg)))


def _build(spec: TaskSpec) -> dict[str, Any]:
    """Build the reward function, the oracle and the model ``spec`` names (no task data, no training)."""
    import ase.io

    from alenv.descriptors.representation import Representation
    from alenv.models import make_potential
    from alenv.oracles import make_oracle
    from alenv.rewards import get_reward
    from alenv.tasks.build import example_frames

    kwargs = dict(spec.oracle_kwargs)
    if spec.system == "dataset":  # as alenv.tasks.task_oracle does: the lookup oracle reads the pool file
        assert Path(spec.pool_path).is_file() and Path(spec.test_path).is_file()
        kwargs.setdefault("path_or_frames", spec.pool_path)
        frames = [ase.io.read(spec.pool_path, index=0)]
    else:
        frames = example_frames(spec.system)
    rep = Representation.for_frames(frames, spec.descriptor, spec.embedding_dim)
    return {
        "reward": get_reward(spec.reward),
        "oracle": make_oracle(spec.oracle, **kwargs),
        "model": make_potential(spec.model, rep, 0, **spec.model_kwargs),
    }


def _strip_files(spec: TaskSpec) -> TaskSpec:
    """The files as the table row has them (none for the Dataset task, its own for a task that names them)."""
    row = TASKS[spec.name]
    return spec.with_overrides(pool_path=row.pool_path, test_path=row.test_path)


# ----------------------------------------------------------------------------------------- coverage
def test_every_registered_name_has_a_config() -> None:
    """Tasks, strategies and references, models, oracles and rewards each have a config naming them."""
    from agents import MF_STRATEGIES, STRATEGIES
    from alenv.models import MODELS
    from alenv.oracles import ORACLES
    from alenv.rewards import REWARDS
    from benchmarks.references import REFERENCES

    assert _options("task") == sorted(snake_case(n) for n in TASKS)
    registered = {"agent": set(STRATEGIES) | set(MF_STRATEGIES) | set(REFERENCES), "model": set(MODELS), "oracle": set(ORACLES),
                  "reward": set(REWARDS)}
    for group, names in registered.items():
        named = {OmegaConf.load(CONFIG_DIR / group / f"{f}.yaml").name for f in _files(group)}
        assert names <= named, (group, sorted(names - named))
        assert named - names <= {None}, (group, sorted(named - names - {None}))  # null: the task's own
        for name in names:  # and each under its Hydra name (``_`` for ``-``, ``pp`` for ``++``)
            assert snake_case(name).replace("++", "pp") in _files(group), (group, name)
    for group in ("model", "oracle", "reward"):
        assert "default" in _files(group), group


# ----------------------------------------------------------------------------------------- tasks
@pytest.mark.parametrize("task", sorted(snake_case(n) for n in TASKS))
def test_task_config_builds_its_task(task: str) -> None:
    """The task config names its row; the Dataset tasks read the rMD17 files shipped in the package."""
    from alenv.datasets import RMD17_DIR

    cfg = _compose(f"task={task}")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    row = get_task(task)
    assert (cfg.task.name, cfg.task.id) == (row.name, row.id)
    spec = _spec(cfg)
    assert _strip_files(spec) == row  # the default groups keep the task as it is
    if row.system == "dataset":
        if row.pool_path is None:  # the Dataset task: the runner names the shipped files
            assert Path(resolved["task"]["overrides"]["pool"]).parent == RMD17_DIR
        else:  # a task with its own files keeps them
            assert resolved["task"]["overrides"] == {} and Path(row.pool_path).parent == RMD17_DIR
        assert Path(spec.pool_path).name == "ethanol_train_01.extxyz" and Path(spec.test_path).name == "ethanol_test_01.extxyz"
    else:
        assert resolved["task"]["overrides"] == {}
    built = _build(spec)
    assert built["oracle"].name == spec.oracle


# ----------------------------------------------------------------------------------------- agents
def _observation(n: int = 20, k: int = 3) -> tuple[dict, dict]:
    """A synthetic pool-mode observation and info of the documented shapes (alenv.observe)."""
    from alenv.observe import CANDIDATE_FEATURES, GLOBAL_FEATURES, observation_space

    rng = np.random.default_rng(0)
    space = observation_space(n, 8)
    obs = {
        "candidates": rng.uniform(0.01, 1.0, (n, len(CANDIDATE_FEATURES))).astype(np.float32),
        "embedding": rng.normal(size=(n, 8)).astype(np.float32),
        "mask": np.ones(n, dtype=np.int8),
        "globals": np.zeros(len(GLOBAL_FEATURES), dtype=np.float32),
    }
    assert space.contains(obs)
    return obs, {"max_picks": k, "any_subset": False, "metrics": {}}


@pytest.mark.parametrize("agent", _files("agent"))
def test_agent_config_builds_its_strategy(agent: str) -> None:
    """The agent is built with the config's kwargs, which are exactly the strategy's keyword parameters and
    their defaults, and it picks from an observation; references take no kwargs."""
    from agents import MF_STRATEGIES, OTF_ONLY, STRATEGIES, make_agent, resolve_name
    from benchmarks.references import REFERENCES

    cfg = _compose(f"agent={agent}")
    kwargs = OmegaConf.to_container(cfg.agent.kwargs, resolve=True)
    if cfg.agent.name in REFERENCES:  # built from an environment by the runner (test_runner_hydra)
        assert kwargs == {}
        return
    name = resolve_name(cfg.agent.name)
    assert name == cfg.agent.name and snake_case(name).replace("++", "pp") == agent
    params = inspect.signature({**STRATEGIES, **MF_STRATEGIES}[name]).parameters
    assert kwargs == {p: v.default for p, v in params.items()}, "config kwargs are not the strategy's parameters"
    built = make_agent(cfg.agent.name, **kwargs)
    assert built.name == name
    if name in MF_STRATEGIES:  # they act on multi-fidelity observations (tests/test_multifidelity.py)
        return
    obs, info = _observation()
    if name in OTF_ONLY:  # reads the walker of each on-the-fly slot: one walker per slot here
        info = {**info, "slot_walker": np.arange(len(obs["mask"]))}
    picks = built.act(obs, info, info["max_picks"], np.random.default_rng(0))
    assert len(set(picks.tolist())) == 3


# ----------------------------------------------------------------------------------------- model, oracle, reward
@pytest.mark.parametrize("model", _files("model"))
def test_model_config_builds_on_every_task(model: str) -> None:
    """On every task, the model group sets the TaskSpec's model (and settings) and that model builds."""
    from alenv.models import MODELS

    if model in ("mace", "mace_heads"):
        pytest.importorskip("mace")  # the optional equivariant committee (its own environment: pyproject.toml)
    node = OmegaConf.load(CONFIG_DIR / "model" / f"{model}.yaml")
    for task in sorted(snake_case(n) for n in TASKS):
        row = get_task(task)
        spec = _spec(_compose(f"task={task}", f"model={model}"))
        expect = row.model if node.name is None else node.name
        assert spec.model == expect and spec.model in MODELS
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in OmegaConf.to_container(node.kwargs).items()}
        base = row.model_kwargs if expect == row.model else {}
        assert spec.model_kwargs == {**base, **kwargs}
        if model == "default":
            assert _strip_files(spec) == row
        built = _build(spec)["model"]
        if "n_members" in spec.model_kwargs:
            assert built.config.n_members == spec.model_kwargs["n_members"]


def _tasks_for_oracle(name: str | None) -> list[str]:
    """Every task for the task's own oracle; else the tasks using that oracle, or Ethanol-GFN2-tiny."""
    if name is None:
        return sorted(snake_case(n) for n in TASKS)
    return sorted(snake_case(n) for n, s in TASKS.items() if s.oracle == name) or ["ethanol_gfn2_tiny"]


@pytest.mark.parametrize("oracle", _files("oracle"))
def test_oracle_config_builds_its_oracle(oracle: str) -> None:
    from alenv.oracles import ORACLES

    node = OmegaConf.load(CONFIG_DIR / "oracle" / f"{oracle}.yaml")
    for task in _tasks_for_oracle(node.name):
        row = get_task(task)
        spec = _spec(_compose(f"task={task}", f"oracle={oracle}"))
        assert spec.oracle == (row.oracle if node.name is None else node.name) and spec.oracle in ORACLES
        assert spec.oracle_kwargs == (OmegaConf.to_container(node.kwargs) or row.oracle_kwargs)
        if node.name in (None, row.oracle) and not node.kwargs:  # the task's own oracle: the same task data
            assert _strip_files(spec).data_key() == row.data_key()
        assert _build(spec)["oracle"].name == spec.oracle


@pytest.mark.parametrize("reward", _files("reward"))
def test_reward_config_sets_the_reward(reward: str) -> None:
    """The reward group sets the TaskSpec's reward and per-cost flag; the reward builds and divides by cost."""
    from alenv.rewards import REWARDS, round_reward

    node = OmegaConf.load(CONFIG_DIR / "reward" / f"{reward}.yaml")
    before, after = {"force_mae": 0.2, "energy_mae": 0.05}, {"force_mae": 0.1, "energy_mae": 0.04}
    for task in sorted(snake_case(n) for n in TASKS):
        row = get_task(task)
        spec = _spec(_compose(f"task={task}", f"reward={reward}"))
        assert spec.reward == (row.reward if node.name is None else node.name) and spec.reward in REWARDS
        assert spec.reward_per_cost == (row.reward_per_cost if node.per_cost is None else node.per_cost)
        fn = _build(spec)["reward"]
        plain = fn(before, after)
        got = round_reward(fn, before, after, cost_seconds=4.0, per_cost=spec.reward_per_cost)
        assert got == pytest.approx(plain / 4.0 if spec.reward_per_cost else plain)


# ----------------------------------------------------------------------------------------- precedence, folders
def test_task_overrides_win_over_the_groups() -> None:
    """``task.overrides`` is applied after the groups, merged key by key into their settings."""
    spec = _spec(_compose("task=ethanol_gfn2", "model=small", "+task.overrides.model_kwargs.n_members=7"))
    assert (spec.model_kwargs["n_members"], spec.model_kwargs["hidden"]) == (7, (32, 32))
    spec = _spec(_compose("task=ethanol_gfn2", "model=small", "+task.overrides.ensemble.n_members=4"))
    assert (spec.model_kwargs["n_members"], spec.model_kwargs["hidden"]) == (4, (32, 32))
    spec = _spec(_compose("task=ethanol_gfn2", "reward=per_cost", "+task.overrides.reward_per_cost=false"))
    assert spec.reward_per_cost is False
    # naming another model in task.overrides drops the group's model settings
    spec = _spec(_compose("task=ethanol_gfn2", "model=small", "+task.overrides.model=ridge"))
    assert spec.model == "ridge" and spec.model_kwargs == {}
    # a group's kwargs on the task's own model are merged into its settings
    spec = _spec(_compose("task=ethanol_gfn2_tiny", "+model.kwargs.n_members=2"))
    assert spec.model_kwargs == {**get_task("ethanol_gfn2_tiny").model_kwargs, "n_members": 2}


@pytest.mark.parametrize(
    "sweep",
    [
        ("model=bp_ensemble", "model=ridge", "model=small", "model=default"),
        ("oracle=default", "oracle=xtb", "oracle=emt"),
        ("reward=default", "reward=per_cost", "reward=log_energy_mae"),
        ("agent.kwargs.feature=energy_std", "agent.kwargs.feature=force_std_max"),
    ],
)
def test_jobs_of_a_sweep_over_a_group_get_their_own_folders(sweep: tuple[str, ...]) -> None:
    """The sweep subdir of each job, as Hydra composes it: different choices, different folders."""
    folders = []
    for choice in sweep:
        cfg = _compose("task=ethanol_gfn2_tiny", "agent=uncertainty", "seed=0", choice, hydra=True)
        folders.append(str(cfg.hydra.sweep.subdir))
        assert choice in folders[-1].split("/")[2].split(","), folders[-1]
    assert len(set(folders)) == len(sweep), folders


def test_the_oracle_executor_never_names_a_folder_nor_changes_the_hash() -> None:
    """Where labels are computed does not change results: same folder, same config hash, so a sweep rerun on
    workers resumes the runs made in-process."""
    from omegaconf import OmegaConf

    from benchmarks.resume import config_hash

    base = ("task=ethanol_gfn2_tiny", "agent=uncertainty", "seed=0")
    folders, hashes = set(), set()
    for extra in ((), ("oracle_executor=process", "oracle_executor.workers=4"),
                  ("oracle_executor=submitit_slurm", "oracle_executor.parameters={timeout_min: 30}"),
                  ("oracle_executor=ray", "oracle_executor.address=auto")):
        cfg = _compose(*base, *extra, hydra=True)
        folders.add(str(cfg.hydra.sweep.subdir))
        config = OmegaConf.to_container(cfg, resolve=False)
        config.pop("hydra")
        hashes.add(config_hash(config))
    assert len(folders) == 1 and len(hashes) == 1, (folders, hashes)
    assert _compose(*base, "oracle_executor=process").oracle_executor.kind == "process"


# ----------------------------------------------------------------------------------------- every file composes
def _all_files() -> list[str]:
    return sorted(str(p.relative_to(CONFIG_DIR)) for p in CONFIG_DIR.rglob("*.yaml"))


@pytest.mark.parametrize("path", _all_files())
def test_every_config_file_composes_and_resolves(path: str) -> None:
    """Each file in conf/ composes into the primary config and the result resolves."""
    parts = Path(path).with_suffix("").parts
    if parts == ("config",):
        overrides: list[str] = []
    elif parts[0] == "experiment":
        overrides = [f"+experiment={parts[1]}"]
    elif parts[0] == "hydra":
        if parts[-1].startswith("ray_"):
            pytest.importorskip("hydra_plugins.hydra_ray_launcher")
        overrides = [f"hydra/{parts[1]}={parts[2]}"]
    else:
        overrides = [f"{parts[0]}={parts[1]}"]
    cfg = _compose(*overrides, hydra=True)
    with open_dict(cfg):
        hydra_node = cfg.pop("hydra")
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert hydra_node.job.config.override_dirname.exclude_keys is not None
    if parts[0] == "experiment":  # a preset's sweep names only existing choices
        for group, values in hydra_node.sweeper.params.items():
            if group in GROUPS:
                for name in str(values).split(","):
                    assert name.strip() in _options(group), (group, name)
