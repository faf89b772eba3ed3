"""Invariant atom-centred descriptors and the representation built on them (normalisation, embedding)."""

from alenv.descriptors.aev import AEV, AEVSpec, Neighbours, build_neighbours
from alenv.descriptors.representation import Embedder, FeaturizedFrames, Representation, per_element_means

__all__ = ["AEV", "AEVSpec", "Embedder", "FeaturizedFrames", "Neighbours", "Representation", "build_neighbours", "per_element_means"]
