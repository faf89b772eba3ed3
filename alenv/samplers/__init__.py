"""Samplers: where candidate configurations come from (oracle MD for pools, model MD on the fly)."""

from alenv.samplers.dynamics import MDSettings
from alenv.samplers.oracle_md import langevin_frames

__all__ = ["MDSettings", "langevin_frames"]
