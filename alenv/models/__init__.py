"""Ensemble potential: members, vectorised training, prediction, ASE calculator."""

from alenv.models.calculator import EnsembleCalculator
from alenv.models.ensemble import EnsembleConfig, EnsemblePotential, FeaturizedFrames

__all__ = ["EnsembleCalculator", "EnsembleConfig", "EnsemblePotential", "FeaturizedFrames"]
