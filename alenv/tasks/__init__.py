"""The task table. Each row is registered as ``alenv/<Name>-v<version>``, with a ``-tiny`` variant.

Version history of each task is in its ``history`` field (and in ``TASKS[name].history``).
"""

from __future__ import annotations

import dataclasses
import re
from importlib import import_module

from alenv.datasets import rmd17
from alenv.samplers.model_md import OTFSettings
from alenv.samplers.dynamics import MDSettings
from alenv.tasks.build import SYSTEMS, TaskData, load_task_data, task_oracle
from alenv.tasks.spec import TaskSpec, default_cache_dir

TINY_MODEL = {"n_members": 3, "hidden": (32, 32), "epochs_initial": 200, "epochs_per_round": 60, "min_steps": 100}
TINY_DESCRIPTOR = {"radial_shells": 8, "angular_shells": 4, "angle_sections": 4}

V2 = (
    "v2: the learner trains in proportion to its labels (epochs_per_round passes over every label; members on "
    "bootstrap resamples in their own minibatch order); force_max is the largest per-atom force-error norm; "
    "tail, offset-invariant and per-subset errors added. Same data as v1."
)
V3 = (
    "v3: each round's training restarts Adam from the weights held (v2 carried its moments over from round to "
    "round: rMD17 ethanol at 730 labels 25.2 meV/A force MAE, restarted 21.0, same steps). Same data as v1."
)
V1 = (
    "v1: a validation set (independent oracle MD at the test temperatures; for Dataset, drawn from the pool file "
    "or given as validation=PATH) drives the reward, the observation and info; the test set is sealed and read "
    "only by test_metrics() for reports."
)

# Episode settings not given in a row are TaskSpec's defaults: pool 2,000, test 500, reserve 50,
# 10 initial labels, then 20 rounds of 10 (budget 200).
_BASE = [
    TaskSpec(
        name="Ethanol-GFN2",
        version=3,
        data_version=1,
        description=(
            "Ethanol with GFN2-xTB. Pool: 2,000 frames of oracle Langevin MD at 300, 600 and 1000 K; test set: "
            "500 frames of independent trajectories at the same temperatures; initial labels from a 300 K reserve."
        ),
        history=("v0: first release.", V1, V2, V3),
        system="ethanol",
        oracle="xtb",
        temperatures=(300.0, 600.0, 1000.0),
        md=MDSettings(timestep=0.5, friction=0.01, stride=20, equilibration=200),
    ),
    TaskSpec(
        name="Cu-EMT",
        version=3,
        data_version=1,
        description=(
            "Periodic fcc Cu (2x2x2 cubic cells, 31 atoms: one vacancy) with EMT. Pool and test set from Langevin MD "
            "at 300, 800 and 1500 K."
        ),
        history=("v0: first release.", V1, V2, V3),
        system="cu_vacancy",
        oracle="emt",
        temperatures=(300.0, 800.0, 1500.0),
        md=MDSettings(timestep=2.0, friction=0.01, stride=10, equilibration=100),
    ),
    TaskSpec(
        name="Dataset",
        version=3,
        data_version=1,
        description=(
            "Your own labelled data: pool and test set read from extxyz files with energies (eV) and forces "
            "(eV/Angstrom); labels are looked up, not computed. gymnasium.make('alenv/Dataset-v3', pool=..., test=...)."
        ),
        history=("v0: first release.", V1, V2, V3),
        system="dataset",
        oracle="lookup",
        pool_size=0,  # 0: every frame of the file that is not in the reserve
        test_size=0,  # 0: every frame of the test file
    ),
]


# Target shifts: the pool covers the cooler temperatures of the in-distribution task, validation and test
# set its hottest one, where the labelled data must extrapolate (a temperature transfer, as in 3BPA). The
# in-distribution rows above are their controls.
def _shifted(base: TaskSpec, pool_temperatures: tuple[float, ...], target: tuple[float, ...], what: str) -> TaskSpec:
    return dataclasses.replace(
        base, name=f"{base.name}-Shift", version=0, data_version=0, temperatures=pool_temperatures,
        target_temperatures=target, history=("v0: first release (the learner and metrics of the v3 tasks).",),
        description=(
            f"{what} Pool: {base.pool_size:,} frames of oracle Langevin MD at "
            f"{' and '.join(f'{t:g}' for t in pool_temperatures)} K; validation and test set at {target[0]:g} K "
            f"(a target shift: temperature transfer). In-distribution control: {base.name}."
        ),
    )


_BASE += [
    _shifted(_BASE[0], (300.0, 600.0), (1000.0,), "Ethanol with GFN2-xTB, trained cool and tested hot."),
    _shifted(_BASE[1], (300.0, 800.0), (1500.0,), "Periodic fcc Cu with a vacancy (31 atoms) and EMT, trained cool and tested hot."),
]


# Tasks whose data their own builder makes (alenv.tasks.build.register_builder): each module's ROWS.
# A module's TINY maps a row's name to changes of its -tiny variant beyond the common ones (``_tiny``).
_BUILT = [import_module(f"alenv.tasks.{_module}") for _module in ("organics", "reaction", "water")]
for _module in _BUILT:
    _BASE += _module.ROWS


# On-the-fly tasks: candidates from MD driven by the model (OnTheFlyEnv). No pool; reserve and test set
# from oracle MD as in pool mode. Where a pool task exists for the system, the row is derived from it.
def _on_the_fly(pool: TaskSpec, description: str, **changes) -> TaskSpec:
    return dataclasses.replace(
        pool, name=f"{pool.name}-OTF", mode="otf", pool_size=0, description=description,
        history=("v0: first release.", V1, V2, V3), **changes,
    )


_ROWS = {spec.name: spec for spec in _BASE}
_OTF = [
    _on_the_fly(
        _ROWS["Ethanol-GFN2"],
        "Ethanol with GFN2-xTB, on the fly: 4 walkers of model-driven Langevin MD at 300, 600, 1000 and "
        "300 K, 200 steps of 0.5 fs per round, 5 candidates per walker; 200 labels, at most 10 per round, "
        "40,000 MD steps. Test set: 500 frames of oracle MD at the same temperatures.",
    ),
    _on_the_fly(
        _ROWS["Cu-EMT"],
        "Periodic fcc Cu with a vacancy (31 atoms) and EMT, on the fly: 3 walkers of model-driven Langevin MD "
        "at 300, 800 and 1500 K, 100 steps of 2 fs per round, 5 candidates per walker; 200 labels, at most 10 "
        "per round, 30,000 MD steps. Test set: 500 frames of oracle MD at the same temperatures.",
        otf=OTFSettings(walkers=3, steps_per_round=100, candidates_per_walker=5, md_step_budget=30_000),
    ),
    TaskSpec(
        name="AlanineDipeptide-GFN2-OTF",
        version=4,
        data_version=1,
        description=(
            "Alanine dipeptide (Ace-Ala-NMe, 22 atoms) with GFN2-xTB, on the fly: an exploration task. The "
            "initial labels come from oracle MD at 300 K in the extended basin where it starts; walkers run "
            "model MD at 300, 600 and 900 K; the test set (300 frames) is oracle MD at those temperatures, "
            "whose hotter runs visit other backbone basins. Coverage of the (phi, psi) plane is reported."
        ),
        history=(
            "v0: first release.", V1, V2, V3,
            "v4: warm-started rounds train at a peak learning rate of 1e-3 (3e-3 before). On one episode's 110 "
            "labels replayed round by round, the in-loop force MAE at 30/60/90/110 labels was +34/-18/+2/+178% "
            "of a refit from scratch at 3e-3 and +2/+4/-4/-2% at 1e-3: the larger steps threw the model far "
            "from round to round on the correlated batches that model MD brings. Same data as v1.",
        ),
        mode="otf",
        system="alanine_dipeptide",
        model_kwargs={"warm_lr": 1e-3},
        oracle="xtb",
        temperatures=(300.0, 600.0, 900.0),
        md=MDSettings(timestep=0.5, friction=0.01, stride=40, equilibration=200),
        pool_size=0,
        test_size=300,
        otf=OTFSettings(walkers=3, steps_per_round=200, candidates_per_walker=5, md_step_budget=30_000),
    ),
]

# Tiny on-the-fly settings: 2 walkers, 40 steps and 4 candidates each per round, short stability runs.
TINY_OTF = OTFSettings(
    walkers=2, steps_per_round=40, candidates_per_walker=4, md_step_budget=2_000, stability_starts=2,
    stability_steps=200, stability_every=0,
)


def _tiny(spec: TaskSpec) -> TaskSpec:
    changes = dict(
        name=f"{spec.name}-tiny",
        reserve_size=12,
        n_initial=5,
        budget=15,
        batch_size=5,
        model_kwargs=TINY_MODEL,
        validation_size=20,
        descriptor=TINY_DESCRIPTOR,
        embedding_dim=8,
        description=f"Small, fast variant of {spec.name} for tests and quick looks. " + spec.description,
    )
    if spec.mode == "otf":
        changes.update(test_size=30, otf=TINY_OTF, md=dataclasses.replace(spec.md, equilibration=50))
    elif spec.system != "dataset":
        changes.update(pool_size=60, test_size=30, md=dataclasses.replace(spec.md, equilibration=50))
    else:
        changes.update(pool_size=60, test_size=30)
    return dataclasses.replace(spec, **changes)


# Multi-fidelity tasks (MultiFidelityEnv, mode "mf"): rMD17 ethanol's PBE/def2-SVP labels are the top level,
# looked up from the shipped file; the cheaper level is computed when bought. Declared costs: CPU seconds per
# ethanol label on one core of this project's machines, measured side by side (2026-11-28, 2 cores at load 4):
# GFN2-xTB 3.3 ms, HF/STO-3G (PySCF) 0.16 s, PBE/def2-SVP (PySCF, this project's defaults: density fitting,
# grid level 1) 1.48 s.
PBE_COST, XTB_COST, HF_COST = 1.48, 0.0033, 0.16


def _multi_fidelity(name: str, cheap: dict, what: str) -> TaskSpec:
    return TaskSpec(
        name=name,
        version=0,
        description=(
            f"rMD17 ethanol at two levels: {what} below PBE/def2-SVP (the rMD17 labels, charged {PBE_COST:g} s "
            "each). Pool: the 1,000-frame training split less reserve and validation frames, each frame at either "
            "level; test: the 1,000-frame test split at PBE. Budget 100 PBE labels' worth, at most 10 a round; "
            "the learner adds a committee for the PBE correction."
        ),
        history=("v0: first release.",),
        mode="mf",
        system="dataset",
        oracle="lookup",
        pool_path=str(rmd17("ethanol", "train")),
        test_path=str(rmd17("ethanol", "test")),
        pool_size=0,
        test_size=0,
        levels=(cheap,),
        top_cost=PBE_COST,
        budget=100,
        batch_size=10,
    )


_MF = [
    # 1:450: every frame at xTB costs less than two PBE labels, so the question is which PBE frames
    _multi_fidelity("Ethanol-MF", {"oracle": "xtb", "cost": XTB_COST},
                    f"GFN2-xTB ({1000 * XTB_COST:g} ms a label, computed when bought)"),
    # 1:9: the whole pool at HF costs more than the budget, so every round trades HF frames against PBE ones
    _multi_fidelity("Ethanol-MF-HF", {"oracle": "dft", "kwargs": {"xc": "HF", "basis": "sto-3g"}, "cost": HF_COST},
                    f"HF/STO-3G ({HF_COST:g} s a label, PySCF, computed when bought)"),
]

TASKS: dict[str, TaskSpec] = {}
_TINY_CHANGES = {name: changes for _module in _BUILT for name, changes in getattr(_module, "TINY", {}).items()}
# the -tiny alanine dipeptide trains its warm rounds as the full task does (v4)
_TINY_CHANGES["AlanineDipeptide-GFN2-OTF"] = {"model_kwargs": {**TINY_MODEL, "warm_lr": 1e-3}}
for _spec in _BASE + _OTF + _MF:
    TASKS[_spec.name] = _spec
    TASKS[f"{_spec.name}-tiny"] = dataclasses.replace(_tiny(_spec), **_TINY_CHANGES.get(_spec.name, {}))


def get_task(name: str) -> TaskSpec:
    """Look up a task by name (``Ethanol-GFN2``), by id (``alenv/Ethanol-GFN2-v3``) or by snake-case name."""
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
    """``Ethanol-GFN2-tiny`` -> ``ethanol_gfn2_tiny``, ``AlanineDipeptide`` -> ``alanine_dipeptide``
    (Hydra config names)."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).replace("-", "_").lower()


# The environment class of each task mode (``TaskSpec.mode``), as Gymnasium entry points.
ENTRY_POINTS = {"pool": "alenv.env:ActiveLearningEnv", "otf": "alenv.otf:OnTheFlyEnv",
                "mf": "alenv.multifidelity:MultiFidelityEnv"}


def register_all() -> None:
    """Register every task with Gymnasium (idempotent)."""
    import gymnasium

    for name, spec in TASKS.items():
        env_id = spec.id
        if env_id in gymnasium.registry:
            continue
        entry = ENTRY_POINTS[spec.mode]
        gymnasium.register(id=env_id, entry_point=entry, kwargs={"task": name})


__all__ = ["ENTRY_POINTS", "SYSTEMS", "TASKS", "TaskData", "TaskSpec", "default_cache_dir", "get_task", "load_task_data", "register_all", "snake_case", "task_oracle"]
