"""A task is one row: the system, its oracle, how pool and test set are made, the budget and the model."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alenv.samplers.model_md import OTFSettings
from alenv.samplers.dynamics import MDSettings


# Bumped whenever code that makes task data changes its result (samplers, label recording), so that a
# cache made by older code is never reused. 2: oracle MD records unconstrained forces (no FixCom).
DATA_FORMAT = 2


def default_cache_dir() -> Path:
    """Where pools, test sets and labels are kept: ``$ALENV_CACHE`` or ``~/.cache/alenv``."""
    return Path(os.environ.get("ALENV_CACHE", Path.home() / ".cache" / "alenv"))


@dataclass(frozen=True)
class TaskSpec:
    """Everything that defines a task. Result-changing edits bump ``version`` (see ``history``).

    Data fields (``system`` ... ``data_seed``) decide the pool, reserve, validation and test set; they are
    hashed into the on-disk cache key so an override never reuses data made with other settings.

    ``data_seed`` regenerates the task's data: for MD tasks it seeds the oracle MD streams (another pool,
    reserve, validation and test set), for the Dataset task the draw of reserve and validation frames from
    the pool file. It is not the run seed (``env.reset(seed=...)``: initial labels, model weights, minibatch
    order), so results should cross both. ``pool_seed`` is its former name (accepted by ``with_overrides``
    with a DeprecationWarning).
    """

    name: str
    version: int
    description: str
    history: tuple[str, ...]
    # The version at which the task's data (pool, reserve, validation, test) last changed; 0: ``version``.
    # A version bump that changes only episodes (learner, metrics) keeps it, so cached data is reused.
    data_version: int = 0
    mode: str = "pool"  # "pool": candidates from a fixed pool; "otf": from MD driven by the current model
    # --- data
    system: str = "ethanol"  # alenv.tasks.build: a key of SYSTEMS (oracle MD) or BUILDERS; "dataset" reads files
    oracle: str = "xtb"
    oracle_kwargs: dict[str, Any] = field(default_factory=dict)
    temperatures: tuple[float, ...] = (300.0, 600.0, 1000.0)  # K
    # A target shift (MD tasks): validation and test set from oracle MD at these temperatures (K), pool and
    # reserve at ``temperatures``; None: the target is the pool's own distribution.
    target_temperatures: tuple[float, ...] | None = None
    # A target shift (Dataset task): validation and test set keep only frames of these subsets (their
    # ``subset``/``config_type`` tag, or ``T=<t>K``); needs a validation file. None: every frame.
    target_subsets: tuple[str, ...] | None = None
    md: MDSettings = MDSettings()
    pool_size: int = 2000
    test_size: int = 500
    validation_size: int = 200  # the target distribution's frames that reward, observation and agents see
    reserve_size: int = 50  # frames the initial labels are drawn from (not in the pool)
    pool_path: str | None = None  # Dataset task: labelled extxyz of candidates
    test_path: str | None = None  # Dataset task: labelled extxyz of the test set
    validation_path: str | None = None  # Dataset task: labelled extxyz of the validation set (else from the pool)
    units: str = "auto"  # Dataset task: "auto" (eV, magnitudes checked), or "eV", "kcal/mol", "kJ/mol", "Hartree"
    allow_overlap: bool = False  # Dataset task: accept test frames that are also in the pool
    data_seed: int = 0  # which pool, reserve, validation and test set (see the class docstring)
    # --- episode
    n_initial: int = 10
    budget: int = 200  # labels the agent may request after the initial ones
    batch_size: int = 10  # labels per round (k)
    reward: str = "log_force_mae"
    reward_per_cost: bool = False
    # --- model (a name of alenv.models.MODELS and its settings) and its representation
    model: str = "bp-ensemble"
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"n_members": 3, "hidden": (32, 32)}
    descriptor: dict[str, Any] = field(default_factory=dict)  # AEVSpec overrides (cutoffs, shells), feature_floor
    embedding_dim: int = 32
    # Opt-in observation key ``model_features``: the model's own per-frame features (``Potential.features``),
    # projected to this many dimensions; 0 (default) leaves the observation as it is. An episode setting:
    # not a data field, so it never changes the cached task data.
    model_features: int = 0
    # --- on-the-fly mode (mode="otf"): walkers, MD budget, failure checks, stability test
    otf: OTFSettings = OTFSettings()
    # --- multi-fidelity mode (mode="mf"): the cheaper levels below the task's oracle (the top level), cheapest
    # first, each ``{"oracle": name, "kwargs": {...}, "cost": seconds per label}``, and the top level's cost per
    # label in seconds. Costs are declared, not measured, so that budgets are the same on every machine; there
    # ``budget`` and ``batch_size`` count top-label equivalents (seconds / top_cost). Episode fields, not data.
    levels: tuple[dict[str, Any], ...] = ()
    top_cost: float = 1.0

    def __post_init__(self) -> None:
        seed = self.data_seed
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"data_seed must be a non-negative integer (0, 1, ...), got data_seed={seed!r}")
        object.__setattr__(self, "data_seed", int(seed))  # numpy integers as plain int (hashed, written to JSON)
        dim = self.model_features
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 0:
            raise ValueError(
                f"model_features must be a non-negative integer (0: off; e.g. 64 or 512 dimensions), got {dim!r}"
            )
        object.__setattr__(self, "model_features", int(dim))
        self._check_names()
        self._check_targets()
        if self.budget <= 0 or self.batch_size <= 0 or self.n_initial <= 0:
            raise ValueError("budget, batch_size and n_initial must be positive")
        if self.validation_size <= 0 and self.validation_path is None:
            raise ValueError("validation_size must be positive: the reward and the observation need a validation set")
        if self.mode not in ("pool", "otf", "mf"):
            raise ValueError(f"mode must be 'pool', 'otf' or 'mf', got {self.mode!r}")
        self._check_levels()
        if self.mode == "otf":
            if self.system == "dataset":
                raise ValueError("on-the-fly mode needs an oracle that can label new structures, not a dataset")
            if self.pool_size:
                raise ValueError("on-the-fly tasks make their candidates by MD; set pool_size=0")
            if self.reserve_size < self.n_initial:
                raise ValueError(f"reserve_size {self.reserve_size} is smaller than n_initial {self.n_initial}")
            return
        if self.budget % self.batch_size:
            raise ValueError(f"budget {self.budget} must be a multiple of batch_size {self.batch_size}")
        if self.system != "dataset" and self.pool_size < self.budget:
            raise ValueError(f"pool_size {self.pool_size} is smaller than the budget {self.budget}")
        if self.system != "dataset" and self.reserve_size < self.n_initial:
            raise ValueError(f"reserve_size {self.reserve_size} is smaller than n_initial {self.n_initial}")

    def _check_levels(self) -> None:
        """Multi-fidelity levels: known oracles, positive costs rising to the top level's."""
        from alenv.oracles import ORACLES

        if self.mode != "mf":
            if self.levels:
                raise ValueError(f"levels= applies to multi-fidelity tasks (mode='mf'), not to mode {self.mode!r}")
            return
        if not self.levels:
            raise ValueError("a multi-fidelity task needs at least one cheaper level in levels=")
        top = float(self.top_cost)
        if not (top > 0 and math.isfinite(top)):
            raise ValueError(f"top_cost must be a positive number of seconds per label, got {self.top_cost!r}")
        levels, last = [], 0.0
        for i, level in enumerate(self.levels):
            if not isinstance(level, dict) or set(level) - {"oracle", "kwargs", "cost"} or "oracle" not in level:
                raise ValueError(f"level {i} must be a dict with 'oracle', 'cost' and optionally 'kwargs', got {level!r}")
            if level["oracle"] not in ORACLES or level["oracle"] in ("lookup", "noisy"):
                raise ValueError(f"level {i}: unknown oracle {level['oracle']!r}; a level computes its labels: "
                                 f"{', '.join(sorted(set(ORACLES) - {'lookup', 'noisy'}))}")
            cost = level.get("cost")
            if isinstance(cost, bool) or not isinstance(cost, numbers.Real) or not last < float(cost) < top:
                raise ValueError(
                    f"level {i} ({level['oracle']}): cost must be seconds per label, above the level below ({last:g}) "
                    f"and below the top level's top_cost={top:g}, got {cost!r}"
                )
            last = float(cost)
            levels.append({"oracle": str(level["oracle"]), "kwargs": dict(level.get("kwargs") or {}), "cost": last})
        object.__setattr__(self, "levels", tuple(levels))
        object.__setattr__(self, "top_cost", top)

    def _check_targets(self) -> None:
        """Target shifts: temperatures for MD tasks, subsets for the Dataset task, each with frames."""
        if self.target_temperatures is not None:
            temps = tuple(float(t) for t in self.target_temperatures)
            object.__setattr__(self, "target_temperatures", temps)
            if self.system == "dataset":
                raise ValueError("target_temperatures applies to MD-built tasks; the Dataset task takes target_subsets")
            if not temps or any(not t > 0 for t in temps):
                raise ValueError(f"target_temperatures must be positive temperatures in K, got {temps}")
            for what, n in (("test_size", self.test_size), ("validation_size", self.validation_size)):
                if n < len(temps):
                    raise ValueError(
                        f"{what} {n} is smaller than the {len(temps)} target temperatures {temps}: a target "
                        "subset would have no frames"
                    )
        if self.target_subsets is not None:
            subsets = (self.target_subsets,) if isinstance(self.target_subsets, str) else tuple(self.target_subsets)
            object.__setattr__(self, "target_subsets", tuple(str(x) for x in subsets))
            if self.system != "dataset":
                raise ValueError("target_subsets applies to the Dataset task; MD-built tasks take target_temperatures")
            if not subsets or any(not str(x) for x in subsets):
                raise ValueError(f"target_subsets must name subsets (config_type tags or T=<t>K), got {subsets!r}")

    def _check_names(self) -> None:
        """Registry names and settings, checked before any expensive build (oracle MD, descriptors)."""
        from alenv.models import MODELS, make_settings
        from alenv.oracles import ORACLES
        from alenv.rewards import REWARDS

        for what, name, known in (("oracle", self.oracle, ORACLES), ("model", self.model, MODELS), ("reward", self.reward, REWARDS)):
            if name not in known:
                raise ValueError(f"unknown {what} {name!r}; known: {', '.join(sorted(known))}")
        make_settings(self.model, self.model_kwargs)  # unknown or invalid model settings raise here
        if self.system != "dataset" and self.units != "auto":
            raise ValueError("units= applies to the Dataset task's files only")

    @property
    def id(self) -> str:
        return f"alenv/{self.name}-v{self.version}"

    DATA_FIELDS = (
        "name", "version", "system", "oracle", "oracle_kwargs", "temperatures", "md", "pool_size",
        "test_size", "validation_size", "reserve_size", "pool_path", "test_path", "validation_path", "data_seed",
        "target_temperatures", "target_subsets",
    )
    # Fields hashed only when set, so that data made before they existed keeps its key.
    _HASHED_IF_SET = ("target_temperatures", "target_subsets")
    # Names under which fields are hashed, where they differ: ``data_seed`` keeps its former name, so the
    # keys (and cached data) of tasks made before the rename stay the same.
    _HASHED_AS = {"data_seed": "pool_seed"}

    @property
    def pool_seed(self) -> int:
        """Former name of ``data_seed`` (deprecated)."""
        warnings.warn("TaskSpec.pool_seed is deprecated: use data_seed", DeprecationWarning, stacklevel=2)
        return self.data_seed

    def data_key(self) -> str:
        """Directory name of this task's cached data: name, version, data seed and a hash of the data fields."""
        payload = {"data_format": DATA_FORMAT}
        for f in self.DATA_FIELDS:
            v = self.data_version or self.version if f == "version" else getattr(self, f)
            if f in self._HASHED_IF_SET and v is None:
                continue
            payload[self._HASHED_AS.get(f, f)] = dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]
        return f"{self.name}-v{self.data_version or self.version}-seed{self.data_seed}-{digest}"

    def with_overrides(self, **overrides: Any) -> "TaskSpec":
        """A copy with fields replaced; ``otf`` and ``md`` accept dicts of their own fields.

        ``model_kwargs`` (alias ``ensemble``) is merged into the task's own model settings when the model
        stays the same, and replaces them when ``model`` names another one. ``pool_seed`` is the former name
        of ``data_seed``: mapped to it, with a DeprecationWarning.
        """
        if "pool_seed" in overrides:
            seed = overrides.pop("pool_seed")
            warnings.warn("the task setting pool_seed is deprecated: use data_seed", DeprecationWarning, stacklevel=2)
            if "data_seed" in overrides and overrides["data_seed"] != seed:
                raise ValueError(
                    f"pool_seed={seed!r} and data_seed={overrides['data_seed']!r} disagree; give data_seed only"
                )
            overrides["data_seed"] = seed
        if "ensemble" in overrides:  # the settings of the default ensemble model, by their older name
            overrides["model_kwargs"] = {**overrides.pop("ensemble"), **overrides.get("model_kwargs", {})}
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown task setting(s) {unknown}; known: {sorted(known)}")
        same_model = overrides.get("model", self.model) == self.model
        if "model_kwargs" in overrides or not same_model:
            base = dict(self.model_kwargs) if same_model else {}
            overrides["model_kwargs"] = {**base, **_tuples(dict(overrides.get("model_kwargs") or {}))}
        if isinstance(overrides.get("otf"), dict):
            otf = dict(overrides["otf"])
            if isinstance(otf.get("checks"), dict):
                otf["checks"] = dataclasses.replace(self.otf.checks, **otf["checks"])
            overrides["otf"] = dataclasses.replace(self.otf, **otf)
        if "levels" in overrides:
            overrides["levels"] = tuple(dict(level) if isinstance(level, dict) else level for level in overrides["levels"])
        if isinstance(overrides.get("md"), dict):
            overrides["md"] = dataclasses.replace(self.md, **overrides["md"])
        if "temperatures" in overrides:
            overrides["temperatures"] = tuple(float(t) for t in overrides["temperatures"])
        return dataclasses.replace(self, **overrides)


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
