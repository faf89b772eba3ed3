"""Samplers: where candidate configurations come from."""

from alenv.samplers.oracle_md import MDSettings, langevin_frames

__all__ = ["MDSettings", "langevin_frames"]
