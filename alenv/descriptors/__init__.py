"""Invariant atom-centred descriptors."""

from alenv.descriptors.aev import AEV, AEVSpec, Neighbours, build_neighbours

__all__ = ["AEV", "AEVSpec", "Neighbours", "build_neighbours"]
