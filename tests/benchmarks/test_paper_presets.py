"""The paper presets (``conf/experiment/paper_*.yaml``) cannot rot: every job of every sweep composes and
passes the runner's checks (default run), and every preset plays end to end at -tiny size, each of its
agents and variants once (slow: 12 minutes on a loaded 2-core machine, much of it building tiny task data)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from benchmarks.run import CONFIG_DIR as CONF

PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("paper_*.yaml"))
TINY = {"budget": 10, "batch_size": 5}  # what a -tiny pool (60 candidates) holds


def _sweep(preset: str) -> list[list[str]]:
    """Every variant of the preset's sweep as its overrides (the sweeper's parameter grid, expanded), with
    the first run seed and data seed only: the others are replicates with the same config."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={preset}"], return_hydra_config=True)
    params = dict(cfg.hydra.sweeper.params or {})
    parser = OverridesParser.create()
    axes = []
    for key, value in params.items():
        (override,) = parser.parse_overrides([f"{key}={value}"])
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        if key in ("seed", "data_seed"):
            values = values[:1]
        axes.append([f"{key}={v}" for v in values])
    return [list(job) for job in itertools.product(*axes)]


def _compose(preset: str, job: list[str], *extra: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"+experiment={preset}", *job, *extra])


def test_there_are_five_paper_presets() -> None:
    assert PRESETS == ["paper_bmdal", "paper_kulichenko2023_udd", "paper_smith2018_qbc", "paper_stolte2025_water",
                       "paper_trust_window"]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_job_of_a_paper_preset_composes_and_passes_the_checks(preset: str) -> None:
    """Each job's config is valid before anything is built: task settings, agent, model and executor."""
    from agents import make_agent
    from alenv.round_env import file_overrides
    from alenv.tasks import get_task
    from benchmarks.jobs import check_config
    from benchmarks.references import REFERENCES
    from benchmarks.run import task_overrides

    jobs = _sweep(preset)
    assert len(jobs) >= 2  # a comparison
    for job in jobs:
        cfg = _compose(preset, job)
        check_config(cfg)
        # the TaskSpec the runner's gym.make would build: raises on a bad setting
        spec = get_task(cfg.task.id).with_overrides(**file_overrides(task_overrides(cfg)))
        assert spec.budget % spec.batch_size == 0 or spec.mode == "otf"
        if cfg.agent.name not in REFERENCES:
            make_agent(cfg.agent.name, **dict(cfg.agent.get("kwargs") or {}))


def _tiny(task: str) -> str:
    return task if task.endswith("_tiny") else f"{task}_tiny"


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_every_paper_preset_plays_end_to_end_at_tiny_size(preset: str, tmp_path: Path, alenv_cache: Path) -> None:
    """One run per agent and variant of the preset (run seed 0, data seed 0) on the tiny variant of each of its
    tasks, with a budget a tiny pool holds; each writes complete results."""
    from benchmarks.run import run

    done = 0
    for job in _sweep(preset):
        keys = dict(item.split("=", 1) for item in job)
        base = _compose(preset, job)
        task = _tiny(str(keys.get("task", _task_config(base))))
        done += 1
        extra = [f"task={task}", f"cache_dir={alenv_cache}", "progress=false"]
        if base.task.get("overrides", {}).get("budget") is not None and "otf" not in task:
            extra += [f"task.overrides.budget={TINY['budget']}", f"task.overrides.batch_size={TINY['batch_size']}"]
        cfg = _compose(preset, [j for j in job if not j.startswith("task=")], *extra)
        out = tmp_path / str(done)
        run(cfg, out)
        res = json.loads((out / "results.json").read_text())
        assert res["complete"] and res["agent"] == cfg.agent.name, (preset, job)
    assert done


def _task_config(cfg) -> str:
    """The snake-case config name of the task a preset selects by default (``override /task: ...``)."""
    from alenv.tasks import snake_case

    return snake_case(cfg.task.name)
