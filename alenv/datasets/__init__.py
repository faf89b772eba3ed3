"""Reference data shipped with the package: rMD17 subsets with DFT labels (CC0; see rmd17/README.md)."""

from __future__ import annotations

from pathlib import Path

RMD17_DIR = Path(__file__).resolve().parent / "rmd17"
RMD17_MOLECULES = ("ethanol", "malonaldehyde", "aspirin")


def rmd17(molecule: str = "ethanol", split: str = "train") -> Path:
    """Path of the shipped rMD17 file ``<molecule>_<split>_01.extxyz`` (split ``train`` or ``test``)."""
    if molecule not in RMD17_MOLECULES:
        raise ValueError(f"no rMD17 subset for {molecule!r}; shipped: {', '.join(RMD17_MOLECULES)}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return RMD17_DIR / f"{molecule}_{split}_01.extxyz"


__all__ = ["RMD17_DIR", "RMD17_MOLECULES", "rmd17"]
