"""Segment helpers for ragged (flat) per-atom arrays: atoms of many frames concatenated, with a pointer.

A ragged array holds the rows of frame f at ``ptr[f]:ptr[f + 1]`` (``ptr`` (F + 1,), ``ptr[0] = 0``);
every frame has at least one atom. These are the numpy counterparts of the dense (F, n, ...) reductions
over the atom axis.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def ptr_of(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """The pointer (F + 1,) int64 of frames with ``counts`` atoms."""
    counts = np.asarray(counts, dtype=np.int64)
    return np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(counts)])


def counts_of(ptr: np.ndarray) -> np.ndarray:
    """Atoms per frame (F,) of a pointer."""
    return np.diff(np.asarray(ptr, dtype=np.int64))


def frame_index(ptr: np.ndarray) -> np.ndarray:
    """The frame (A,) of every atom row."""
    return np.repeat(np.arange(len(ptr) - 1), counts_of(ptr))


def check_ptr(ptr: np.ndarray, n_rows: int | None = None) -> np.ndarray:
    """``ptr`` as int64, checked: starts at 0, strictly increasing (no empty frame), ends at ``n_rows``."""
    ptr = np.asarray(ptr, dtype=np.int64)
    if ptr.ndim != 1 or len(ptr) < 1 or ptr[0] != 0 or np.any(np.diff(ptr) < 1):
        raise ValueError(f"a frame pointer starts at 0 and grows by at least one atom per frame, got {ptr[:8]}...")
    if n_rows is not None and ptr[-1] != n_rows:
        raise ValueError(f"the pointer covers {ptr[-1]} atom rows, the array has {n_rows}")
    return ptr


def segment_sum(x: np.ndarray, ptr: np.ndarray, axis: int = 0) -> np.ndarray:
    """Sum of each frame's rows along ``axis``: (..., A, ...) -> (..., F, ...)."""
    if len(ptr) == 1:
        shape = list(np.shape(x))
        shape[axis] = 0
        return np.zeros(shape, dtype=np.asarray(x).dtype)
    return np.add.reduceat(x, ptr[:-1], axis=axis)


def segment_mean(x: np.ndarray, ptr: np.ndarray, axis: int = 0) -> np.ndarray:
    """Mean of each frame's rows along ``axis``."""
    shape = [1] * np.ndim(x)
    shape[axis] = len(ptr) - 1
    return segment_sum(x, ptr, axis) / counts_of(ptr).reshape(shape)


def segment_max(x: np.ndarray, ptr: np.ndarray, axis: int = 0) -> np.ndarray:
    """Largest of each frame's rows along ``axis``."""
    return np.maximum.reduceat(x, ptr[:-1], axis=axis)


def per_atom(values: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """A per-frame array (F, ...) repeated onto the frames' atom rows (A, ...)."""
    return np.repeat(np.asarray(values), counts_of(ptr), axis=0)


def rows(ptr: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Atom rows (concatenated, in the order of ``frames``) of the frames ``frames`` of a ragged array."""
    frames = np.asarray(frames, dtype=np.int64)
    starts, counts = ptr[frames], ptr[frames + 1] - ptr[frames]
    if len(frames) == 0:
        return np.zeros(0, dtype=np.int64)
    out_ptr = ptr_of(counts)
    return np.repeat(starts - out_ptr[:-1], counts) + np.arange(out_ptr[-1])


def take(x: np.ndarray, ptr: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of frames ``frames`` of ragged ``x`` and their pointer."""
    frames = np.asarray(frames, dtype=np.int64)
    return x[rows(ptr, frames)], ptr_of(ptr[frames + 1] - ptr[frames])


def split(x: np.ndarray, ptr: np.ndarray) -> list[np.ndarray]:
    """Per-frame views of a ragged array."""
    return [x[ptr[f] : ptr[f + 1]] for f in range(len(ptr) - 1)]


def concat(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame arrays (n_f, ...) as one ragged array (sum n_f, ...) and its pointer."""
    if len(arrays) == 0:
        return np.zeros((0, 3)), np.zeros(1, dtype=np.int64)
    return np.concatenate([np.asarray(a) for a in arrays]), ptr_of([len(a) for a in arrays])
