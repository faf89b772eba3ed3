"""Learners: the ``Potential`` protocol, the ``MODELS`` registry and ``check_potential``.

Adding a model is one new file with a class that follows ``alenv.models.base.Potential``, built as
``cls(representation, settings, seed=...)``, and one line in ``MODELS``: its class and its settings dataclass. A task names its model with
``TaskSpec.model`` and its settings with ``TaskSpec.model_kwargs``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from alenv.descriptors.representation import FeaturizedFrames, Representation
from alenv.models.base import Potential
from alenv.models.calculator import EnsembleCalculator, UncertaintyBiasedCalculator
from alenv.models.delta import DeltaConfig, DeltaPotential
from alenv.models.ensemble import EnsembleConfig, EnsemblePotential
from alenv.models.mace import MACECommittee, MACEConfig, MACEHeadsConfig
from alenv.models.ridge import RidgeConfig, RidgeEnsemble


def _config(cls: type, kwargs: dict[str, Any]) -> Any:
    """A settings dataclass from keyword arguments; unknown names raise a clear error, lists become tuples."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} for {cls.__name__}; known: {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})


# One line per model: its class (following ``Potential``) and its settings dataclass.
MODELS: dict[str, tuple[type, type]] = {
    "bp-ensemble": (EnsemblePotential, EnsembleConfig),
    "ridge": (RidgeEnsemble, RidgeConfig),
    "delta": (DeltaPotential, DeltaConfig),  # a baseline oracle plus any of the above learning the difference
    "mace": (MACECommittee, MACEConfig),  # equivariant committee; optional: pip install "alenv[mace]"
    "mace-heads": (MACECommittee, MACEHeadsConfig),  # its cheap-uncertainty variant: one network, several heads
}


def make_settings(name: str, kwargs: dict[str, Any]) -> Any:
    """The validated settings of model ``name`` (ValueError for an unknown model or setting)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return _config(MODELS[name][1], dict(kwargs))


def make_potential(name: str, representation: Representation, seed: int = 0, **kwargs: Any) -> Potential:
    """Build a registered model by name on ``representation``; unknown names list the known ones."""
    settings = make_settings(name, kwargs)
    return MODELS[name][0](representation, settings, seed=int(seed))


from alenv.models.conformance import check_potential  # noqa: E402  (uses the registry's types)

__all__ = [
    "MODELS",
    "DeltaConfig",
    "DeltaPotential",
    "EnsembleCalculator",
    "EnsembleConfig",
    "EnsemblePotential",
    "FeaturizedFrames",
    "MACECommittee",
    "MACEConfig",
    "Potential",
    "Representation",
    "RidgeConfig",
    "RidgeEnsemble",
    "UncertaintyBiasedCalculator",
    "check_potential",
    "make_potential",
    "make_settings",
]
