"""A representation of configurations for the learners: descriptors computed once, their normalisation
(fitted once on unlabelled geometry) and the fixed-size embedding that agents see.

The representation lives apart from any model: a task featurises its pool, reserve and test set once, every
potential of every episode trains and predicts on those rows, and every agent measures distances in the
same embedding.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from typing import Any, Callable, Literal, Mapping, Sequence, Union

import numpy as np
import torch
from ase import Atoms

from alenv.descriptors.aev import AEV, AEVSpec, build_neighbours
from alenv.descriptors.flat import FlatFrames

Layout = Literal["dense", "flat"]
LAYOUTS = ("auto", "dense", "flat")
# Dense Jacobians a task may hold: above every fixed-size task of the table (AlanineDipeptide-OTF 1.58 GB),
# below rMD17 aspirin's 2.54 GB (which streams its test set and stays dense).
DENSE_JACOBIAN_BYTES = 2 * 2**30


class FeaturizedFrames:
    """Descriptors, and optionally their position Jacobian, of a fixed set of frames: the dense layout.

    All frames must have the same number of atoms (their element order may differ). Descriptors are
    computed once here and reused by every training epoch and prediction. Frames of mixed sizes, or too
    many for their Jacobians, take the flat layout (``alenv.descriptors.flat.FlatFrames``).
    """

    layout = "dense"

    def __init__(self, frames: Sequence[Atoms], aev: AEV, jacobian: bool = True, chunk: int = 200):
        if len(frames) == 0:
            raise ValueError("no frames to featurise")
        self.n_frames = len(frames)
        self.n_atoms = len(frames[0])
        # the structures themselves (copies without calculators), for models that need more than descriptors
        # of them (a Delta model labels each with its baseline oracle, once)
        self.frames: list[Atoms] = [a.copy() for a in frames]
        sizes = sorted({len(a) for a in frames})
        if len(sizes) > 1:
            raise ValueError(f"all frames must have the same number of atoms, got sizes {sizes}")
        n, D = self.n_atoms, aev.spec.n_features
        # Filled chunk by chunk in place (no list of chunks and no concatenated copy: the Jacobians are
        # the biggest arrays of a task). Atoms of each frame are grouped by element so that, when every
        # frame has the same composition, each element's atoms are one contiguous block (slices instead of
        # gathers on the hot path); Jacobian columns stay in input atom order.
        G_all = np.empty((self.n_frames, n, D), dtype=np.float32)
        J_all = np.empty((self.n_frames, n * D, n * 3), dtype=np.float32) if jacobian else None
        species_all = np.empty((self.n_frames, n), dtype=np.int64)
        for start in range(0, len(frames), chunk):
            part = frames[start : start + chunk]
            stop = start + len(part)
            nb = build_neighbours(part, aev.spec)
            sp = nb.species.reshape(len(part), n)
            order = torch.argsort(torch.from_numpy(sp), dim=1, stable=True).numpy()
            rows = (np.arange(len(part))[:, None], order)  # numpy gathers: torch's are slow here
            species_all[start:stop] = sp[rows]
            if jacobian:
                G, J = aev.descriptors_and_jacobian(part, nb)
                J_all[start:stop] = J.astype(np.float32, copy=False)[rows].reshape(len(part), n * D, n * 3)
                del J
            else:
                G = aev.descriptors(part, nb)
            G_all[start:stop] = torch.from_numpy(G).float().numpy()[rows]
        self.species = torch.from_numpy(species_all)  # (F, n) species index, sorted per frame
        self.G = torch.from_numpy(G_all)  # (F, n, D)
        self.J = torch.from_numpy(J_all) if jacobian else None  # (F, n*D, n*3)
        self.blocks: list[tuple[int, int, int]] | None = None  # (element, start, stop) when uniform
        if bool((self.species == self.species[0]).all()):
            first = self.species[0].tolist()
            self.blocks = []
            for e in sorted(set(first)):
                lo = first.index(e)
                self.blocks.append((e, lo, lo + first.count(e)))
        self.has_jacobian = jacobian

    def take(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Descriptors, species and Jacobian of the frames ``idx`` (numpy gathers: fast for big rows)."""
        idx = np.asarray(idx)
        if len(idx) and idx[-1] - idx[0] == len(idx) - 1 and np.all(np.diff(idx) == 1):
            sl = slice(int(idx[0]), int(idx[-1]) + 1)  # a contiguous run (prediction): views, no copies
            J = self.J[sl] if self.J is not None else None
            return self.G[sl], self.species[sl], J
        G = torch.from_numpy(self.G.numpy()[idx])
        J = torch.from_numpy(self.J.numpy()[idx]) if self.J is not None else None
        return G, self.species[torch.from_numpy(idx)], J

    def __len__(self) -> int:
        return self.n_frames

    def atom_counts(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Atoms (B,) of frames ``idx`` (default all): ``n_atoms`` each."""
        n = self.n_frames if idx is None else len(np.asarray(idx))
        return np.full(n, self.n_atoms, dtype=np.int64)

    def atom_ptr(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Pointer (B + 1,) of the atoms of frames ``idx`` (default all) laid end to end."""
        n = self.n_frames if idx is None else len(np.asarray(idx))
        return np.arange(n + 1, dtype=np.int64) * self.n_atoms

    def extend(self, other: "FeaturizedFrames") -> None:
        """Append the frames of ``other`` (same atom count, both with or both without Jacobians).

        On-the-fly mode grows its training set this way: each new label is featurised once.
        """
        if other.n_atoms != self.n_atoms or other.has_jacobian != self.has_jacobian:
            raise ValueError("can only extend with frames of the same size, featurised the same way")
        self.G = torch.cat([self.G, other.G])
        self.species = torch.cat([self.species, other.species])
        self.frames = self.frames + other.frames
        if self.J is not None:
            self.J = torch.cat([self.J, other.J])
        if self.blocks != other.blocks:
            self.blocks = None  # compositions or element orders differ: fall back to per-atom gathers
        self.n_frames += other.n_frames


def frame_cache(data: Any, name: str, key: Any, compute: Callable[[list[Atoms]], list]) -> list:
    """Per-frame values a model derives from the structures of featurised ``data`` (``data.frames``), kept on
    ``data`` under ``name`` for ``key`` (the settings they depend on) and computed only for frames added since
    (a training set that grew): a Delta model's baseline labels, the MACE committee's graphs."""
    frames = getattr(data, "frames", None)
    if frames is None:
        raise TypeError(f"{type(data).__name__} keeps no structures, which {name} is computed from")
    caches = data.__dict__.setdefault("_frame_caches", {})
    held_key, values = caches.get(name, (None, []))
    if held_key != key:
        values = []
    if len(values) < len(frames):
        values = values + list(compute(frames[len(values):]))
    caches[name] = (key, values)
    return values


# Featurised sets an environment builds at construction (pool and reserve, validation, test), kept per process
# so that the next environment of the same task and data in this process reuses them: a sweep worker plays one
# episode after another, and on Cu-EMT the pool's descriptors and Jacobians took about 33 s of each 70-s run.
# Off (0) unless set: ``set_feature_memo(n)`` or ALENV_FEATURE_MEMO=n keeps the n most recent sets. The kept
# objects are shared, so only sets that are never extended may be kept (an on-the-fly training set grows).
_MEMO: "OrderedDict[tuple, Featurized]" = OrderedDict()
_MEMO_SIZE = [0]


def set_feature_memo(size: int) -> None:
    """Keep the ``size`` most recent set-up featurisations of this process (0: none, and forget any kept)."""
    if int(size) < 0:
        raise ValueError(f"the feature memo size must be 0 or more, got {size!r}")
    _MEMO_SIZE[0] = int(size)
    while len(_MEMO) > _MEMO_SIZE[0]:
        _MEMO.popitem(last=False)


_memo_env = os.environ.get("ALENV_FEATURE_MEMO", "").strip()
if _memo_env:
    if not _memo_env.isdigit():
        raise ValueError(f"ALENV_FEATURE_MEMO must be a number of featurised sets (0: off), got {_memo_env!r}")
    set_feature_memo(int(_memo_env))


def frames_fingerprint(frames: Sequence[Atoms]) -> str:
    """A digest of the structures (elements, positions, cell, periodicity) of ``frames``, in order."""
    h = hashlib.sha1()
    for a in frames:
        for arr in (a.numbers, a.positions, np.asarray(a.cell), a.pbc):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(b"|")
    return h.hexdigest()


class Embedder:
    """Fixed-size invariant embedding of a configuration: per-element mean of its normalised atomic
    descriptors, projected on the leading principal axes of a reference set (fitted once, deterministic)."""

    def __init__(self, per_element_means: np.ndarray, dim: int):
        X = per_element_means
        self.mean = X.mean(0)
        _, s, vt = np.linalg.svd(X - self.mean, full_matrices=False)
        vt = vt[:dim]
        # fix the sign of each axis so the projection does not depend on the SVD's arbitrary choice
        signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])
        self.axes = vt * signs[:, None]
        scale = s[0] / np.sqrt(max(len(X) - 1, 1)) if len(s) else 1.0
        self.scale = scale if scale > 0 else 1.0
        self.dim = dim

    def __call__(self, per_element_means: np.ndarray) -> np.ndarray:
        Z = (per_element_means - self.mean) @ self.axes.T / self.scale
        if Z.shape[1] < self.dim:  # fewer descriptor terms than requested dimensions
            Z = np.pad(Z, ((0, 0), (0, self.dim - Z.shape[1])))
        return Z


Featurized = Union[FeaturizedFrames, FlatFrames]


def choose_layout(
    sizes: Mapping[str, Sequence[int]], n_features: int, override: str = "auto", limit: float = DENSE_JACOBIAN_BYTES
) -> tuple[Layout, frozenset[str]]:
    """The layout of a task's featurised frames and the reference sets it streams.

    ``sizes`` holds the atom counts of the frames of each set that needs forces: ``"train"`` (the pool and
    reserve, or on the fly the most labels an episode can hold), ``"validation"`` and ``"test"``. Dense
    Jacobians take 12 n^2 D bytes per frame. The rule (``override="auto"``):

    - mixed atom counts -> ``"flat"``;
    - all of them within ``limit`` bytes -> ``"dense"``, nothing streamed (every fixed-size task);
    - else the test set streamed (featurised again at each evaluation), then the validation set too, while
      the rest fits -> ``"dense"`` (rMD17 aspirin, 2,000 frames);
    - else -> ``"flat"`` (descriptors and pair lists only: memory linear in atoms).

    ``override="dense"`` keeps the dense layout (streaming as needed; frames of one size only) and
    ``"flat"`` takes the flat one. Flat sets are never streamed.
    """
    if override not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {override!r}")
    if not limit > 0:
        raise ValueError(f"the dense Jacobian limit must be positive, got {limit!r}")
    counts = {k: [int(n) for n in v] for k, v in sizes.items()}
    mixed = len({n for v in counts.values() for n in v}) > 1
    if override == "flat":
        return "flat", frozenset()
    if mixed:
        if override == "dense":
            raise ValueError("layout='dense' needs frames of one size; these have several (use 'auto' or 'flat')")
        return "flat", frozenset()
    need = {k: sum(12 * n * n * n_features for n in v) for k, v in counts.items()}
    train, val, test = need.get("train", 0), need.get("validation", 0), need.get("test", 0)
    if train + val + test <= limit:
        return "dense", frozenset()
    if train + val <= limit:
        return "dense", frozenset({"test"})
    if train <= limit or override == "dense":
        return "dense", frozenset({"test", "validation"})
    return "flat", frozenset()


def per_element_means(G: np.ndarray, species: np.ndarray, n_species: int) -> np.ndarray:
    """Mean descriptor over the atoms of each element, concatenated: (F, n, D) -> (F, S * D)."""
    F, n, D = G.shape
    out = np.zeros((F, n_species, D))
    for e in range(n_species):
        m = species == e  # (F, n)
        cnt = m.sum(1, keepdims=True)
        out[:, e] = (G * m[:, :, None]).sum(1) / np.maximum(cnt, 1)
    return out.reshape(F, n_species * D)


def per_element_means_flat(G: np.ndarray, species: np.ndarray, ptr: np.ndarray, n_species: int) -> np.ndarray:
    """``per_element_means`` of ragged frames: G (A, D), species (A,), pointer (F + 1,) -> (F, S * D)."""
    F, D = len(ptr) - 1, G.shape[1]
    out = np.zeros((F * n_species, D))
    key = np.repeat(np.arange(F), np.diff(ptr)) * n_species + species
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    sums = np.add.reduceat(G[order].astype(np.float64), starts, axis=0)
    out[key[starts]] = sums / np.diff(np.r_[starts, len(key)])[:, None]
    return out.reshape(F, n_species * D)


class Representation:
    """Descriptors (AEV) of frames, per-element normalisation of their terms and the agents' embedding.

    ``set_normalisation`` centres and scales each descriptor term per element from unlabelled frames (plain
    standardisation blows up near-constant terms, so each term's spread is floored at ``feature_floor``
    times the largest spread of that element). ``fit_embedding`` fixes the principal axes of the embedding
    on reference frames. Both are fitted once per task, never on labels.
    """

    def __init__(self, spec: AEVSpec, feature_floor: float = 0.01, embedding_dim: int = 32, layout: str = "auto"):
        if not 0 <= feature_floor < 1:
            raise ValueError(f"feature_floor must be in [0, 1), got {feature_floor}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.spec = spec
        self.layout = layout  # "auto": dense for frames of one size, flat otherwise (an env decides once)
        self.aev = AEV(spec, dtype=torch.float32)
        self.feature_floor = float(feature_floor)
        self.embedding_dim = int(embedding_dim)
        S, D = spec.n_species, spec.n_features
        self.feature_mean = torch.zeros((S, D))
        self.feature_scale = torch.ones((S, D))
        self.normalised = False
        self.embedder: Embedder | None = None

    @classmethod
    def for_frames(cls, frames: Sequence[Atoms], descriptor: dict | None = None, embedding_dim: int = 32) -> "Representation":
        """A representation whose descriptor knows every element of ``frames``; ``descriptor`` holds
        ``AEVSpec`` overrides and optionally ``feature_floor`` and ``layout`` (``"auto"``, ``"dense"``,
        ``"flat"``: see ``choose_layout``)."""
        opts = dict(descriptor or {})
        floor = float(opts.pop("feature_floor", 0.01))
        layout = str(opts.pop("layout", "auto"))
        species = tuple(sorted({int(z) for a in frames for z in a.numbers}))
        return cls(AEVSpec(species=species, **opts), floor, embedding_dim, layout)

    def featurize(
        self, frames: Sequence[Atoms], jacobian: bool = True, layout: str | None = None, memo: bool = False
    ) -> Featurized:
        """Descriptors of ``frames``, computed once, in ``layout`` (default this representation's):
        dense (``FeaturizedFrames``, with the position Jacobian unless ``jacobian=False``) or flat
        (``FlatFrames``, with the pair lists that forces need unless ``jacobian=False``). ``"auto"``: dense
        when all frames have the same number of atoms, else flat. ``memo``: a set that is never extended may
        come from, and go to, the process's memo of set-up featurisations (``set_feature_memo``)."""
        if memo and _MEMO_SIZE[0] > 0:
            key = (repr(self.spec), self.layout if layout is None else layout, bool(jacobian), frames_fingerprint(frames))
            if key in _MEMO:
                _MEMO.move_to_end(key)
                return _MEMO[key]
            data = self.featurize(frames, jacobian, layout)
            _MEMO[key] = data
            set_feature_memo(_MEMO_SIZE[0])  # drop the oldest beyond the size
            return data
        layout = self.layout if layout is None else layout
        if layout == "auto":
            layout = "dense" if len({len(a) for a in frames}) <= 1 else "flat"
        if layout == "flat":
            return FlatFrames(frames, self.aev, jacobian=jacobian)
        if layout != "dense":
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        return FeaturizedFrames(frames, self.aev, jacobian=jacobian)

    def set_normalisation(self, sets: Sequence[Featurized]) -> None:
        """Per-element mean and floored spread of every descriptor term over the atoms of ``sets``."""
        G = torch.cat([s.G.reshape(-1, s.G.shape[-1]) for s in sets])
        sp = torch.cat([s.species.reshape(-1) for s in sets])
        for e in range(self.spec.n_species):
            X = G[sp == e]
            if len(X) == 0:
                continue
            mean, std = X.mean(0), X.std(0, unbiased=False)
            self.feature_mean[e] = mean
            self.feature_scale[e] = torch.clamp(std, min=self.feature_floor * float(std.max()) + 1e-12)
        self.normalised = True

    def per_element(self, data: Featurized, idx: np.ndarray | None = None) -> np.ndarray:
        """Per-element means of the normalised descriptors of frames ``idx`` (default all), (F, S * D)."""
        if data.layout == "flat":
            frames = np.arange(len(data)) if idx is None else np.asarray(idx, dtype=np.int64)
            out = np.zeros((len(frames), self.spec.n_species * self.spec.n_features))
            for s in range(0, len(frames), 500):  # bounded temporaries
                G, species, ptr = data.take(frames[s : s + 500])
                G = ((G - self.feature_mean[species]) / self.feature_scale[species]).numpy()
                out[s : s + 500] = per_element_means_flat(G, species.numpy(), ptr, self.spec.n_species)
            return out
        G, species = (data.G, data.species) if idx is None else data.take(np.asarray(idx))[:2]
        G = ((G - self.feature_mean[species]) / self.feature_scale[species]).numpy()
        return per_element_means(G, species.numpy(), self.spec.n_species)

    def fit_embedding(self, per_element_rows: np.ndarray) -> None:
        """Fix the embedding's principal axes on reference rows of ``per_element``."""
        self.embedder = Embedder(per_element_rows, self.embedding_dim)

    def embed(self, data: Featurized, idx: np.ndarray | None = None) -> np.ndarray:
        """The agents' embedding (F, embedding_dim) of featurised frames ``idx`` (default all)."""
        if self.embedder is None:
            raise RuntimeError("fit_embedding() must be called before embed()")
        return self.embedder(self.per_element(data, idx))
