"""Invariant atom-centred descriptors and the representation built on them (normalisation, embedding), in
the dense layout (frames of one size, with Jacobians) or the flat one (frames of any sizes)."""

from alenv.descriptors.aev import AEV, AEVSpec, Neighbours, build_neighbours
from alenv.descriptors.flat import FlatFrames
from alenv.descriptors.representation import (
    Embedder, FeaturizedFrames, Representation, choose_layout, per_element_means,
)

__all__ = [
    "AEV", "AEVSpec", "Embedder", "FeaturizedFrames", "FlatFrames", "Neighbours", "Representation", "build_neighbours",
    "choose_layout", "per_element_means",
]
