"""The task table. Each row is registered as ``alenv/<Name>-v<version>``, with a ``-tiny`` variant.

Version history of each task is in its ``history`` field (and in ``TASKS[name].history``).
"""

from __future__ import annotations

import dataclasses

from alenv.models.ensemble import EnsembleConfig
from alenv.samplers.oracle_md import MDSettings
from alenv.tasks.build import SYSTEMS, TaskData, load_task_data
from alenv.tasks.spec import TaskSpec, default_cache_dir

TINY_ENSEMBLE = EnsembleConfig(n_members=3, hidden=(32, 32), epochs_initial=200, steps_per_round=60)
TINY_DESCRIPTOR = {"radial_shells": 8, "angular_shells": 4, "angle_sections": 4}

# Episode settings not given in a row are TaskSpec's defaults: pool 2,000, test 500, reserve 50,
# 10 initial labels, then 20 rounds of 10 (budget 200).
_BASE = [
    TaskSpec(
        name="Ethanol-GFN2",
        version=0,
        description=(
            "Ethanol with GFN2-xTB. Pool: 2,000 frames of oracle Langevin MD at 300, 600 and 1000 K; test set: "
            "500 frames of independent trajectories at the same temperatures; initial labels from a 300 K reserve."
        ),
        history=("v0: first release.",),
        system="ethanol",
        oracle="xtb",
        temperatures=(300.0, 600.0, 1000.0),
        md=MDSettings(timestep=0.5, friction=0.01, stride=20, equilibration=200),
    ),
    TaskSpec(
        name="Cu-EMT",
        version=0,
        description=(
            "Periodic fcc Cu (2x2x2 cubic cells, 31 atoms: one vacancy) with EMT. Pool and test set from Langevin MD "
            "at 300, 800 and 1500 K."
        ),
        history=("v0: first release.",),
        system="cu_vacancy",
        oracle="emt",
        temperatures=(300.0, 800.0, 1500.0),
        md=MDSettings(timestep=2.0, friction=0.01, stride=10, equilibration=100),
    ),
    TaskSpec(
        name="Dataset",
        version=0,
        description=(
            "Your own labelled data: pool and test set read from extxyz files with energies (eV) and forces "
            "(eV/Angstrom); labels are looked up, not computed. gymnasium.make('alenv/Dataset-v0', pool=..., test=...)."
        ),
        history=("v0: first release.",),
        system="dataset",
        oracle="lookup",
        pool_size=0,  # 0: every frame of the file that is not in the reserve
        test_size=0,  # 0: every frame of the test file
    ),
]


def _tiny(spec: TaskSpec) -> TaskSpec:
    changes = dict(
        name=f"{spec.name}-tiny",
        reserve_size=12,
        n_initial=5,
        budget=15,
        batch_size=5,
        ensemble=TINY_ENSEMBLE,
        descriptor=TINY_DESCRIPTOR,
        embedding_dim=8,
        description=f"Small, fast variant of {spec.name} for tests and quick looks. " + spec.description,
    )
    if spec.system != "dataset":
        changes.update(pool_size=60, test_size=30, md=dataclasses.replace(spec.md, equilibration=50))
    else:
        changes.update(pool_size=60, test_size=30)
    return dataclasses.replace(spec, **changes)


TASKS: dict[str, TaskSpec] = {}
for _spec in _BASE:
    TASKS[_spec.name] = _spec
    TASKS[f"{_spec.name}-tiny"] = _tiny(_spec)


def get_task(name: str) -> TaskSpec:
    """Look up a task by name (``Ethanol-GFN2``), by id (``alenv/Ethanol-GFN2-v0``) or by snake-case name."""
    key = name.split("/", 1)[-1]
    version = None
    if "-v" in key and key.rsplit("-v", 1)[-1].isdigit():
        key, v = key.rsplit("-v", 1)
        version = int(v)
    by_snake = {snake_case(k): k for k in TASKS}
    key = by_snake.get(key, key)
    if key not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    if version is not None and version != TASKS[key].version:
        raise ValueError(f"task {key} is at version {TASKS[key].version}, not {version}: {name!r} is not available")
    return TASKS[key]


def snake_case(name: str) -> str:
    """``Ethanol-GFN2-tiny`` -> ``ethanol_gfn2_tiny`` (Hydra config names)."""
    return name.replace("-", "_").lower()


def register_all() -> None:
    """Register every task with Gymnasium (idempotent)."""
    import gymnasium

    for name, spec in TASKS.items():
        env_id = spec.id
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(id=env_id, entry_point="alenv.env:ActiveLearningEnv", kwargs={"task": name})


__all__ = ["SYSTEMS", "TASKS", "TaskData", "TaskSpec", "default_cache_dir", "get_task", "load_task_data", "register_all", "snake_case"]
