"""Run one active-learning episode from the Hydra config and write its results.

    python -m benchmarks.run task=ethanol_gfn2 agent=fps seed=0
    python -m benchmarks.run task=ethanol_gfn2_tiny agent=random model=ridge reward=per_cost seed=0
    python -m benchmarks.run --multirun task=ethanol_gfn2_tiny agent=random,fps seed=0,1
    python -m benchmarks.run --multirun task=cu_emt_tiny agent=random seed=0,1,2 data_seed=0,1

``seed`` is the run seed (``env.reset(seed=...)`` and the agent's generator); ``data_seed`` the task's data
seed (``TaskSpec.data_seed``: another pool, reserve, validation and test set), passed to ``gym.make`` and
recorded next to ``seed``. Both are replicates of one report line, never part of the variant.

Config groups: ``task`` (one config per row of ``alenv.tasks.TASKS``, registered here from the table, not
kept in files), ``agent``, ``model``, ``oracle`` and ``reward`` (files in ``conf/``). The model, oracle and
reward groups become ``TaskSpec`` overrides, with ``task.overrides`` on top (:func:`task_overrides`).

Writes into the run's output directory: ``results.json`` (resolved config and its hash, the task settings
the groups chose, the initial metrics, one record per round: metrics, reward, chosen indices, timings),
``learning_curve.png``, ``labels.extxyz`` (every successful label; failed ones are listed per round in
``results.json``) and ``run.log`` (the per-round table and the final line; a failed run's traceback, with
``failed.json``, which a run holds from its start until it completes, so that a process killed outright
also leaves one). ``results.json`` is written last and atomically. A rerun into the same folder (a
killed or extended sweep with the same ``hydra.sweep.dir``) skips a run whose results were made with the
same config, reruns one whose config changed (keeping the earlier results as ``results.<hash>.json``) or
that failed; labels already paid for come from the label cache (``benchmarks.resume``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from benchmarks.jobs import ConfigError

_HERE = Path(__file__).resolve().parent
# Installed from a wheel, the configs are package data in benchmarks/conf; in the repository (and in an
# editable install) they are its top-level conf/ folder.
CONFIG_DIR: Path = _HERE / "conf" if (_HERE / "conf" / "config.yaml").is_file() else _HERE.parent / "conf"

# The Dataset tasks' files when a run names none: the rMD17 ethanol split shipped in alenv.datasets.
DATASET_FILES: dict[str, str] = {"pool": "${alenv.rmd17:ethanol,train}", "test": "${alenv.rmd17:ethanol,test}"}


def _rmd17(molecule: str = "ethanol", split: str = "train") -> str:
    from alenv.datasets import rmd17

    return str(rmd17(str(molecule), str(split)))


def seed_dir(seed: Any, data_seed: Any = 0) -> str:
    """The seed part of a run's folder (resolver ``alenv.seed_dir``): ``seed3``, or ``seed3-data_seed1`` for a
    data seed other than 0, so that folders of runs on the standard data keep the names they had."""
    return f"seed{seed}" if str(data_seed) == "0" else f"seed{seed}-data_seed{data_seed}"


def register_configs() -> None:
    """Register the ``alenv.rmd17`` and ``alenv.seed_dir`` resolvers and one ``task`` config per row of
    ``alenv.tasks.TASKS``.

    A task config is ``{name, id, overrides}``, named by the snake case of the task's name
    (``Ethanol-GFN2-tiny`` -> ``task=ethanol_gfn2_tiny``). Generated from the table, so a task can never
    lack a config or have a stale one. Idempotent.
    """
    from alenv.tasks import TASKS, snake_case
    from benchmarks.jobs import ray_temp_dir

    if not OmegaConf.has_resolver("alenv.rmd17"):
        OmegaConf.register_new_resolver("alenv.rmd17", _rmd17)
    if not OmegaConf.has_resolver("alenv.seed_dir"):  # run and sweep folders (conf/config.yaml)
        OmegaConf.register_new_resolver("alenv.seed_dir", seed_dir)
    if not OmegaConf.has_resolver("alenv.ray_temp"):  # hydra/launcher=ray_local: Ray's files in the sweep
        OmegaConf.register_new_resolver("alenv.ray_temp", ray_temp_dir)
    store = ConfigStore.instance()
    for name, spec in TASKS.items():
        # (a Dataset-system task that names its own files, such as Ethanol-MF, keeps them)
        overrides = dict(DATASET_FILES) if spec.system == "dataset" and spec.pool_path is None else {}
        store.store(group="task", name=snake_case(name), node={"name": spec.name, "id": spec.id, "overrides": overrides})


register_configs()


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from benchmarks.jobs import follow_sweep, plain_bar_lock

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    if multirun:
        follow_sweep()  # a job started by the sweep process ends with it
        plain_bar_lock()
    _share_cores(hc)
    try:
        return run(cfg, Path(hc.runtime.output_dir), variant=hc.job.override_dirname, multirun=multirun)
    except ConfigError as err:
        if multirun:  # the job fails; the launcher reports it with the others
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        if multirun:  # the sweep process is interrupted too and says so once
            raise RuntimeError("interrupted") from None
        raise


def cli() -> None:
    """``python -m benchmarks.run``: config names in any accepted spelling; Ctrl-C ends with one line."""
    from benchmarks.jobs import INTERRUPTED, canonical_argv, mark_sweep

    sys.argv[1:] = canonical_argv(sys.argv[1:], CONFIG_DIR)
    mark_sweep()
    try:
        main()
    except KeyboardInterrupt:
        _stop_workers()
        print(f"\n{INTERRUPTED}", file=sys.stderr)
        raise SystemExit(130) from None


def _stop_workers() -> None:
    """Stop the joblib launcher's workers, if it started any, and release their locks."""
    if "joblib" not in sys.modules:
        return
    from joblib.externals.loky import reusable_executor

    executor = getattr(reusable_executor, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)


def _share_cores(hc: Any) -> None:
    """Tell alenv how many sweep jobs share this machine's cores (``ALENV_JOBS``), so that each sizes its
    torch threads to its share: the joblib launcher's ``n_jobs``; one CPU per Ray task as configured."""
    from hydra.types import RunMode

    if hc.mode != RunMode.MULTIRUN:
        return
    launcher = hc.launcher
    if launcher.get("n_jobs") is not None:  # joblib: n_jobs processes on this machine (-1: one per core)
        n_jobs = int(launcher.n_jobs)
        os.environ.setdefault("ALENV_JOBS", str(n_jobs if n_jobs > 0 else os.cpu_count() or 1))
    elif launcher.get("ray") is not None:  # Ray: each task holds remote.num_cpus
        cpus = launcher.ray.get("remote", {}).get("num_cpus")
        if cpus:
            os.environ.setdefault("ALENV_TORCH_THREADS", str(int(cpus)))


def run(cfg: DictConfig, out: Path, variant: str = "", multirun: bool = False) -> dict:
    """Play the episode described by ``cfg`` and write its results into ``out``; the final metrics.

    Skips a run whose ``results.json`` was made with the same config. A run that raises leaves
    ``failed.json`` and its traceback in ``run.log``, and is rerun next time.
    """
    from benchmarks.resume import FAILED, config_hash, mark_started, previous, record_failure

    if multirun and "ALENV_FEATURE_MEMO" not in os.environ:
        # a sweep worker plays episode after episode: keep one task's set-up featurisations (pool and reserve,
        # validation, test) for the next episode of the same task and data (same results, less set-up time)
        from alenv.descriptors.representation import set_feature_memo

        set_feature_memo(3)
    out.mkdir(parents=True, exist_ok=True)
    log = RunLog(out / "run.log")
    config = OmegaConf.to_container(cfg, resolve=True)
    key = config_hash(config)
    try:
        _check(cfg)
        done, why = previous(out, config)
        if done is not None:  # a restarted sweep skips what already finished (results.json is written last)
            log(f"{out}: already complete with this config ({key}), skipped")
            return done["summary"]["final_metrics"]
        if why:
            log(f"{out}: {why}")
        mark_started(out, key)
        final = _play(cfg, out, config, key, variant, multirun, log)
    except BaseException as err:
        if not isinstance(err, SystemExit):
            log(record_failure(out, err, key).rstrip(), echo=False)  # Hydra or the sweep reports it
        raise
    (out / FAILED).unlink(missing_ok=True)
    return final


class RunLog:
    """The run's lines: printed (above any progress bar) and appended to ``run.log``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, line: str, echo: bool = True) -> None:
        """Print ``line`` (unless ``echo`` is False) and append it to ``run.log``."""
        from tqdm.auto import tqdm

        if echo:
            tqdm.write(line)
        with open(self.path, "a") as fh:
            fh.write(line + "\n")


def _check(cfg: DictConfig) -> None:
    """Everything that can be checked before task data, descriptors or an env are built."""
    from alenv.round_env import file_overrides
    from alenv.tasks import get_task
    from benchmarks.jobs import check_config

    check_config(cfg)
    _our_agents()  # this project's strategies, or an error naming the package found instead
    from benchmarks.references import REFERENCES

    try:
        get_task(cfg.task.id).with_overrides(**file_overrides(task_overrides(cfg)))
    except (ValueError, TypeError) as err:
        raise ConfigError(f"task {cfg.task.name}: {err}") from err
    if cfg.agent.name not in REFERENCES:
        try:
            _our_agents().make_agent(cfg.agent.name, **_container(cfg.agent.get("kwargs")))
        except (ValueError, TypeError) as err:
            raise ConfigError(f"agent {cfg.agent.name}: {err}{_agent_settings(cfg.agent.name)}") from err


def _agent_settings(name: str) -> str:
    """``"; its settings (agent.kwargs): a, b"`` for a registered strategy, else ``""``."""
    import inspect

    agents = _our_agents()
    try:
        params = inspect.signature(agents.STRATEGIES[agents.resolve_name(name)]).parameters
    except (ValueError, KeyError):
        return ""
    return f"; its settings (agent.kwargs): {', '.join(params) or 'none'}"


def _play(cfg: DictConfig, out: Path, config: dict, key: str, variant: str, multirun: bool,
          log: Callable[[str], None]) -> dict:
    """Build the env and agent, play the episode, write labels, plot and (last) ``results.json``."""
    import gymnasium as gym

    import alenv  # noqa: F401  (registers the tasks)
    from benchmarks.episode import plot_learning_curve, run_episode, write_json
    from benchmarks.jobs import ORPHANED, show_progress, sweep_gone
    from benchmarks.references import REFERENCES, make_reference

    if cfg.get("torch_threads"):  # an explicit setting wins over alenv's share of the cores
        os.environ["ALENV_TORCH_THREADS"] = str(int(cfg.torch_threads))
    progress = show_progress(cfg.get("progress"), multirun)
    overrides = task_overrides(cfg)
    executor = _container(cfg.get("oracle_executor"))  # where missing labels are computed; never the results
    env = gym.make(cfg.task.id, cache_dir=cfg.cache_dir, progress=progress, wall_times=True,
                   oracle_executor=executor, **overrides)
    try:
        if cfg.agent.name in REFERENCES:  # a cheating reference, wired to the environment on purpose
            agent = make_reference(cfg.agent.name, env)
        else:
            agent = _our_agents().make_agent(cfg.agent.name, **_container(cfg.agent.get("kwargs")))
        spec = env.unwrapped.task
        log(f"{cfg.task.id}  agent={cfg.agent.name}  model={spec.model}  seed={cfg.seed}  data_seed={spec.data_seed}"
            f"  ->  {out}")
        record = run_episode(env, agent, seed=int(cfg.seed), progress=progress, echo=log)
        result = {
            "config": config,
            "config_hash": key,  # of the config without the keys that do not change results
            "task": cfg.task.id,
            "agent": cfg.agent.name,
            "seed": int(cfg.seed),  # the run seed
            "data_seed": spec.data_seed,  # the task data's seed (pool, reserve, validation, test set)
            "variant": variant,  # overrides other than task, agent, seed and data_seed ("" for the presets as they are)
            "overrides": overrides,  # the TaskSpec overrides the run passed to gym.make
            # the task settings they gave (and, on multi-fidelity tasks, the levels and costs that define the budget)
            "settings": {f: getattr(spec, f) for f in SETTINGS + (MF_SETTINGS if spec.mode == "mf" else ())},
            "cheating": bool(getattr(agent, "cheating", False)),
            "layout": getattr(env.unwrapped, "layout", "dense"),  # dense, or flat (frames of several sizes)
            "streamed": sorted(getattr(env.unwrapped, "streamed", ())),  # reference sets featurised per evaluation
            "pid": os.getpid(),
            **record,
            **_agent_record(agent),
            "complete": True,
        }
        env.unwrapped.save_labels(out / "labels.extxyz")
        title = f"{cfg.task.name} / {cfg.agent.name} / seed {cfg.seed}"
        title += f" / data seed {spec.data_seed}" if spec.data_seed else ""
        plot_learning_curve(result, out / "learning_curve.png", title)
        if sweep_gone():  # the sweep was killed while this job ran: write nothing more
            os._exit(ORPHANED)
        write_json(out / "results.json", result)
    finally:
        env.close()
    final = result["summary"]["final_metrics"]
    log(
        f"final: test force MAE {1000 * final['force_mae']:.1f} meV/A, energy MAE {1000 * final['energy_mae']:.1f} meV, "
        f"{final['n_labels']} labels, {result['summary']['wall_seconds']:.1f} s"
    )
    return final


def _agent_record(agent: Any) -> dict[str, Any]:
    """What an agent can say of its own episode: the checkpoint file a learned policy played
    (``agent_checkpoint``) and a stateful agent's per-round choices (``agent_history``: the bandit's arms)."""
    out: dict[str, Any] = {}
    if getattr(agent, "checkpoint", None):
        out["agent_checkpoint"] = str(agent.checkpoint)
    if isinstance(getattr(agent, "history", None), list):
        out["agent_history"] = agent.history
    return out


# TaskSpec fields that the model, oracle and reward groups set, recorded in results.json
SETTINGS = ("model", "model_kwargs", "oracle", "oracle_kwargs", "reward", "reward_per_cost")
MF_SETTINGS = ("levels", "top_cost")


def task_overrides(cfg: DictConfig) -> dict[str, Any]:
    """The keyword overrides of ``gym.make`` for one run: the data seed (top-level ``data_seed``), the model,
    oracle and reward groups, the task settings the agent needs (``agent.env``, e.g. ``model_features`` for
    ``agent=lcmd``), then ``task.overrides`` on top.

    A group at ``default`` (``name: null``) keeps the task's own setting; a named one sets ``model`` /
    ``oracle`` / ``reward``, its ``kwargs`` set ``model_kwargs`` / ``oracle_kwargs`` (for the task's own
    model they are merged into its settings, see ``TaskSpec.with_overrides``) and ``reward.per_cost`` sets
    ``reward_per_cost``. ``task.overrides`` wins, key by key: its ``model_kwargs`` (or ``ensemble``) and
    ``oracle_kwargs`` are merged over the group's, unless it names another model or oracle, which drops them.
    """
    groups: dict[str, Any] = {}
    if cfg.get("data_seed") is not None:  # checked by check_config (task.overrides may not set it)
        groups["data_seed"] = cfg.data_seed
    for group, kwargs_field in (("model", "model_kwargs"), ("oracle", "oracle_kwargs")):
        node = cfg.get(group)
        if node is None:
            continue
        if node.get("name") is not None:
            groups[group] = str(node.name)
        kwargs = _container(node.get("kwargs"))
        if kwargs:
            groups[kwargs_field] = kwargs
    reward = cfg.get("reward")
    if reward is not None:
        if reward.get("name") is not None:
            groups["reward"] = str(reward.name)
        if reward.get("per_cost") is not None:
            groups["reward_per_cost"] = bool(reward.per_cost)
    agent = cfg.get("agent")
    if agent is not None:  # settings a strategy needs from the environment (observation keys it reads)
        groups.update(_container(agent.get("env")))
    task = _container(cfg.task.get("overrides"))
    if "ensemble" in task:  # the default model's settings by their older name
        task["model_kwargs"] = {**task.pop("ensemble"), **task.get("model_kwargs", {})}
    for name_field, kwargs_field in (("model", "model_kwargs"), ("oracle", "oracle_kwargs")):
        if name_field in task and task[name_field] != groups.get(name_field, task[name_field]):
            groups.pop(kwargs_field, None)
    return _merge(groups, task)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``top``; nested dicts merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _our_agents():
    """The ``agents`` package of this project, or a clear error if the name resolved to another one.

    ``agents`` (like ``benchmarks``) is a generic top-level name: another distribution installed into the
    same environment (e.g. ``openai-agents``) may own it or have overwritten ours.
    """
    try:
        import agents
    except ImportError as err:
        raise ImportError(
            "the strategies (package 'agents') are not importable; run from the repository root or "
            "pip install alenv (see README: 'How agents and benchmarks are installed')"
        ) from err
    if not getattr(agents, "__alenv__", False):
        raise ImportError(
            f"'import agents' found {getattr(agents, '__file__', agents)!r}, which is not alenv's strategies "
            "package: another distribution installs a top-level 'agents' too. Install alenv into its own "
            "virtual environment (see README: 'How agents and benchmarks are installed')."
        )
    return agents


def _container(node: Any) -> dict:
    return {} if node is None else OmegaConf.to_container(node, resolve=True)


if __name__ == "__main__":
    cli()
