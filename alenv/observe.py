"""The observation schema, in one place: names, shapes, units, and the functions that fill it."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from gymnasium import spaces

from alenv import ragged

# Per-candidate features, columns of obs["candidates"] (units in brackets).
CANDIDATE_FEATURES: tuple[str, ...] = (
    "energy_std",  # ensemble spread of the energy [eV]
    "energy_std_per_atom",  # the same per atom [eV/atom]
    "force_std_mean",  # mean over atoms of the per-atom force spread, a norm over x, y, z [eV/Angstrom]
    "force_std_max",  # largest per-atom force spread (norm over x, y, z) [eV/Angstrom]
    "force_std_rel",  # mean per-atom spread / (|mean force| + 0.1 eV/Angstrom) [1]
    "dist_to_train",  # distance in embedding space to the nearest labelled configuration [1]
    "noise_sigma",  # expected label noise per force component [eV/Angstrom]: see noise_estimate
)

# Global features, entries of obs["globals"].
GLOBAL_FEATURES: tuple[str, ...] = (
    "budget_used",  # fraction of the label budget spent [1]
    "n_labels",  # labels held (initial + acquired), as a fraction of n_initial + budget [1]
    "log10_force_mae",  # current validation force MAE [log10 eV/Angstrom]
    "log10_energy_mae",  # current validation energy MAE [log10 eV]
    "failed_fraction",  # fraction of labels that failed [1]
)


# Global features of on-the-fly mode: those of pool mode, then the state of the model-driven MD.
OTF_GLOBAL_FEATURES: tuple[str, ...] = GLOBAL_FEATURES + (
    "md_budget_used",  # fraction of the MD-step budget spent [1]
    "md_failure_rate",  # failures in the last MD round per walker [1]
    "md_survived",  # fraction of the last round's MD steps run before each walker's first failure [1]
)


# Opt-in keys (``TaskSpec.model_features`` > 0): the model's own features of each candidate after the
# round's training, and where each candidate lies relative to the labelled set in that feature space.
MODEL_KEYS: tuple[str, ...] = (
    "model_features",  # (N, P') the model's features (Potential.features), sketched to P' dimensions
    #                    [dE/dtheta: eV per unit of the model's last-layer parameters]
    "model_dist_to_train",  # (N,) Euclidean distance in that space to the nearest labelled configuration [same]
    "model_nearest_train",  # (N,) which labelled configuration that is (training-set row, label order); -1: none
)


def observation_space(
    n_candidates: int, embedding_dim: int, n_globals: int = len(GLOBAL_FEATURES), model_features: int = 0
) -> spaces.Dict:
    """Fixed-shape Dict space of the observation (both modes; on-the-fly mode has more globals). The
    ``MODEL_KEYS`` are declared only where ``model_features`` (their dimension P') is positive."""
    inf = np.float32(np.inf)
    parts = {
        "candidates": spaces.Box(-inf, inf, (n_candidates, len(CANDIDATE_FEATURES)), np.float32),
        "embedding": spaces.Box(-inf, inf, (n_candidates, embedding_dim), np.float32),
        "mask": spaces.MultiBinary(n_candidates),
        "globals": spaces.Box(-inf, inf, (n_globals,), np.float32),
    }
    if model_features < 0:
        raise ValueError(f"model_features must be a non-negative dimension, got {model_features}")
    if model_features:
        parts["model_features"] = spaces.Box(-inf, inf, (n_candidates, model_features), np.float32)
        parts["model_dist_to_train"] = spaces.Box(0, inf, (n_candidates,), np.float32)
        parts["model_nearest_train"] = spaces.Box(-1, np.iinfo(np.int64).max, (n_candidates,), np.int64)
    return spaces.Dict(parts)


def gaussian_sketch(n_in: int, n_out: int, rng: np.random.Generator) -> np.ndarray:
    """A (n_in, n_out) matrix of N(0, 1) / sqrt(n_out) entries: ``x @ S`` keeps squared distances and dot
    products in expectation (Johnson-Lindenstrauss; bmdal_reg's sketch of an identity feature map)."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"a sketch needs positive dimensions, got {n_in} -> {n_out}")
    return rng.standard_normal((n_in, n_out)) / np.sqrt(n_out)


def project_features(raw: np.ndarray, dim: int, sketch: np.ndarray | None) -> np.ndarray:
    """Model features (F, P) as the observation holds them, (F, dim): ``raw @ sketch`` where P > dim (the
    sketch must be (P, dim)), else ``raw`` padded with zero columns (distances and dot products exact)."""
    raw = np.asarray(raw, dtype=np.float64)
    P = raw.shape[1]
    if P <= dim:
        return np.pad(raw, ((0, 0), (0, dim - P)))
    if sketch is None or sketch.shape != (P, dim):
        got = None if sketch is None else sketch.shape
        raise ValueError(f"features of {P} dimensions need a ({P}, {dim}) sketch, got {got}")
    return raw @ sketch


def spreads(energies: np.ndarray, forces: np.ndarray, ptr: np.ndarray | None = None) -> np.ndarray:
    """The ensemble-spread columns of CANDIDATE_FEATURES from member predictions (M, N), (M, N, n, 3).

    A per-atom force spread is ``sqrt(var_x + var_y + var_z)`` over members, a norm over the three
    components: ``sqrt(3)`` times the RMS standard deviation of one component. Frames of several sizes
    (the flat layout) give forces (M, A, 3), their atoms concatenated, with the pointer ``ptr`` (N + 1,):
    means and maxima are then over each frame's own atoms and ``energy_std_per_atom`` divides by each
    frame's own atom count.
    """
    if ptr is not None:
        ptr = ragged.check_ptr(ptr, forces.shape[1])
        e_std = energies.std(0)
        mean_f = forces.mean(0)  # (A, 3)
        per_atom = np.sqrt(((forces - mean_f) ** 2).sum(-1).mean(0))  # (A,)
        rel = ragged.segment_mean(per_atom / (np.linalg.norm(mean_f, axis=-1) + 0.1), ptr)
        cols = [e_std, e_std / ragged.counts_of(ptr), ragged.segment_mean(per_atom, ptr), ragged.segment_max(per_atom, ptr), rel]
        return np.stack(cols, axis=1)
    n_atoms = forces.shape[2]
    e_std = energies.std(0)
    mean_f = forces.mean(0)  # (N, n, 3)
    per_atom = np.sqrt(((forces - mean_f) ** 2).sum(-1).mean(0))  # (N, n)
    rel = (per_atom / (np.linalg.norm(mean_f, axis=-1) + 0.1)).mean(1)
    return np.stack([e_std, e_std / n_atoms, per_atom.mean(1), per_atom.max(1), rel], axis=1)


def nearest(embedding: np.ndarray, reference: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``embedding`` (N, D): the Euclidean distance to its nearest row of ``reference``
    (L, D) and that row's index (inf and -1 when ``reference`` is empty)."""
    if len(reference) == 0:
        return np.full(len(embedding), np.inf), np.full(len(embedding), -1, dtype=np.int64)
    ref_sq = (reference**2).sum(1)
    dist = np.empty(len(embedding))
    index = np.empty(len(embedding), dtype=np.int64)
    for s in range(0, len(embedding), chunk):
        x = embedding[s : s + chunk]
        d2 = (x**2).sum(1)[:, None] + ref_sq[None, :] - 2.0 * x @ reference.T
        index[s : s + chunk] = d2.argmin(1)
        dist[s : s + chunk] = np.sqrt(np.maximum(d2.min(1), 0.0))
    return dist, index


def nearest_distance(embedding: np.ndarray, reference: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Euclidean distance from each row of ``embedding`` (N, D) to its nearest row of ``reference`` (L, D)."""
    return nearest(embedding, reference, chunk)[0]


def noise_estimate(
    embedding: np.ndarray, labelled: np.ndarray, labelled_sigma: np.ndarray, fallback: float
) -> np.ndarray:
    """Feature ``noise_sigma`` (C,), eV/Angstrom per force component: the label noise a candidate can expect.

    ``labelled`` (L, D) are the embeddings of the successfully labelled configurations and
    ``labelled_sigma`` (L,) the force-noise sigma each label records (``Label.noise_sigma``, NaN where
    none, see ``LabelledSet.noise_sigmas``). Each candidate gets the sigma of its nearest labelled
    configuration in embedding space among those that record one; where none does (an oracle that does
    not report its noise) every candidate gets ``fallback``, the ensemble mean's force RMSE on its own
    training labels (``train_force_rmse``, per component: what the model cannot fit; 0 if not finite).
    """
    labelled_sigma = np.asarray(labelled_sigma, dtype=np.float64)
    if len(labelled) != len(labelled_sigma):
        raise ValueError(f"{len(labelled)} labelled embeddings but {len(labelled_sigma)} noise sigmas")
    known = np.isfinite(labelled_sigma)
    if not known.any():
        value = float(fallback) if np.isfinite(fallback) else 0.0
        return np.full(len(embedding), max(value, 0.0))
    _, index = nearest(embedding, np.asarray(labelled)[known])
    return labelled_sigma[known][index]


def candidate_features(
    energies: np.ndarray,
    forces: np.ndarray,
    dist_to_train: np.ndarray,
    noise_sigma: np.ndarray | float,
    ptr: np.ndarray | None = None,
) -> np.ndarray:
    """The columns of CANDIDATE_FEATURES, (C, F), from member predictions (M, C), (M, C, n, 3) (or flat
    (M, A, 3) with the atom pointer ``ptr``, see ``spreads``), the embedding distance of each candidate to
    the labelled set (C,) and its expected force-noise sigma (C,) or one for all, eV/Angstrom per
    component (``noise_estimate``)."""
    dist = np.asarray(dist_to_train, dtype=np.float64)
    noise = np.broadcast_to(np.asarray(noise_sigma, dtype=np.float64), dist.shape)
    return np.concatenate([spreads(energies, forces, ptr), dist[:, None], noise[:, None]], axis=1)


def episode_globals(ep: Any, spec: Any) -> dict[str, float]:
    """Values of GLOBAL_FEATURES from the episode state (``alenv.loop.Episode``) and its task."""
    n_labels = len(ep.labelled)
    return {
        "budget_used": ep.budget_used / spec.budget,
        "n_labels": n_labels / (spec.n_initial + spec.budget),
        "log10_force_mae": float(np.log10(ep.metrics["force_mae"])),
        "log10_energy_mae": float(np.log10(ep.metrics["energy_mae"])),
        "failed_fraction": ep.labelled.n_failed / max(n_labels, 1),
    }


def make_observation(
    candidates: np.ndarray,
    embedding: np.ndarray,
    mask: np.ndarray,
    names: Sequence[str],
    values: Mapping[str, float],
    model: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """The observation dict, fresh float32 copies; ``globals`` in the order of ``names`` (each must be given).
    ``model``: the ``MODEL_KEYS`` arrays (features (N, P'), distance (N,), nearest row (N,)) when they are on."""
    missing = [n for n in names if n not in values]
    if missing:
        raise KeyError(f"no value for global feature(s) {missing}")
    obs = {
        "candidates": np.asarray(candidates, dtype=np.float64).astype(np.float32),
        "embedding": np.asarray(embedding).astype(np.float32),
        "mask": np.array(mask, dtype=np.int8),
        "globals": np.array([values[n] for n in names], dtype=np.float64).astype(np.float32),
    }
    if model is not None:
        features, dist, nearest_row = model
        obs["model_features"] = np.asarray(features, dtype=np.float64).astype(np.float32)
        obs["model_dist_to_train"] = np.asarray(dist, dtype=np.float64).astype(np.float32)
        obs["model_nearest_train"] = np.array(nearest_row, dtype=np.int64)
    return obs
