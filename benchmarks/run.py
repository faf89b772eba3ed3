"""Run one active-learning episode from the Hydra config and write its results.

    python -m benchmarks.run task=ethanol_gfn2 agent=fps seed=0
    python -m benchmarks.run --multirun task=ethanol_gfn2_tiny agent=random,fps seed=0,1

Writes into the run's output directory: ``results.json`` (resolved config, the initial metrics, one
record per round: metrics, reward, chosen indices, timings), ``learning_curve.png`` and ``labels.extxyz``
(every successful label; failed ones are listed per round in ``results.json``). ``results.json`` is written last and atomically: a run whose directory already
holds a complete one is skipped, so a killed sweep restarted with the same ``hydra.sweep.dir`` only runs
what is missing (labels already paid for come from the label cache).
"""

from __future__ import annotations

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    return run(cfg, Path(hc.runtime.output_dir), variant=hc.job.override_dirname)


def run(cfg: DictConfig, out: Path, variant: str = "") -> dict:
    """Play the episode described by ``cfg`` and write its results into ``out``."""
    import gymnasium as gym
    import torch

    import alenv  # noqa: F401  (registers the tasks)
    from agents import make_agent
    from benchmarks.episode import plot_learning_curve, run_episode, write_json

    done = _finished(out)
    if done is not None:  # a restarted sweep skips what already finished (results.json is written last)
        print(f"{out}: already complete, skipped")
        return done["summary"]["final_metrics"]
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    out.mkdir(parents=True, exist_ok=True)
    overrides = _container(cfg.task.get("overrides"))
    env = gym.make(
        cfg.task.id,
        cache_dir=cfg.cache_dir,
        progress=bool(cfg.progress),
        wall_times=True,  # per-round timings go into results.json
        **overrides,
    )
    from benchmarks.references import REFERENCES, make_reference

    if cfg.agent.name in REFERENCES:  # a cheating reference, wired to the environment on purpose
        agent = make_reference(cfg.agent.name, env)
    else:
        agent = make_agent(cfg.agent.name, **_container(cfg.agent.get("kwargs")))
    print(f"{cfg.task.id}  agent={cfg.agent.name}  seed={cfg.seed}  ->  {out}")
    record = run_episode(env, agent, seed=int(cfg.seed), progress=bool(cfg.progress))
    result = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "task": cfg.task.id,
        "agent": cfg.agent.name,
        "seed": int(cfg.seed),
        "variant": variant,  # overrides other than task, agent and seed ("" for the presets as they are)
        "cheating": bool(getattr(agent, "cheating", False)),
        "pid": os.getpid(),
        **record,
        "complete": True,
    }
    env.unwrapped.save_labels(out / "labels.extxyz")
    plot_learning_curve(result, out / "learning_curve.png", f"{cfg.task.name} / {cfg.agent.name} / seed {cfg.seed}")
    write_json(out / "results.json", result)
    final = result["summary"]["final_metrics"]
    print(
        f"final: force MAE {1000 * final['force_mae']:.1f} meV/A, energy MAE {1000 * final['energy_mae']:.1f} meV, "
        f"{final['n_labels']} labels, {result['summary']['wall_seconds']:.1f} s"
    )
    env.close()
    return final


def _finished(out: Path) -> dict | None:
    """The results of a complete earlier run in ``out``, or None (absent, partial or unreadable)."""
    import json

    try:
        res = json.loads((out / "results.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return res if res.get("complete") else None


def _container(node) -> dict:
    return {} if node is None else OmegaConf.to_container(node, resolve=True)


if __name__ == "__main__":
    main()
