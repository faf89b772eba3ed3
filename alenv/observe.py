"""The observation schema, in one place: names, shapes, units, and the functions that fill it."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

# Per-candidate features, columns of obs["candidates"] (units in brackets).
CANDIDATE_FEATURES: tuple[str, ...] = (
    "energy_std",  # ensemble spread of the energy [eV]
    "energy_std_per_atom",  # the same per atom [eV/atom]
    "force_std_mean",  # mean over atoms of the per-atom force spread [eV/Angstrom]
    "force_std_max",  # largest per-atom force spread [eV/Angstrom]
    "force_std_rel",  # mean per-atom spread / (|mean force| + 0.1 eV/Angstrom) [1]
    "dist_to_train",  # distance in embedding space to the nearest labelled configuration [1]
)

# Global features, entries of obs["globals"].
GLOBAL_FEATURES: tuple[str, ...] = (
    "budget_used",  # fraction of the label budget spent [1]
    "n_labels",  # labels held (initial + acquired), as a fraction of n_initial + budget [1]
    "log10_force_mae",  # current test force MAE [log10 eV/Angstrom]
    "log10_energy_mae",  # current test energy MAE [log10 eV]
    "failed_fraction",  # fraction of labels that failed [1]
)


# Global features of on-the-fly mode: those of pool mode, then the state of the model-driven MD.
OTF_GLOBAL_FEATURES: tuple[str, ...] = GLOBAL_FEATURES + (
    "md_budget_used",  # fraction of the MD-step budget spent [1]
    "md_failure_rate",  # failures in the last MD round per walker [1]
    "md_survived",  # fraction of the last round's MD steps run before each walker's first failure [1]
)


def observation_space(n_candidates: int, embedding_dim: int, n_globals: int = len(GLOBAL_FEATURES)) -> spaces.Dict:
    """Fixed-shape Dict space of the observation (both modes; on-the-fly mode has more globals)."""
    inf = np.float32(np.inf)
    return spaces.Dict(
        {
            "candidates": spaces.Box(-inf, inf, (n_candidates, len(CANDIDATE_FEATURES)), np.float32),
            "embedding": spaces.Box(-inf, inf, (n_candidates, embedding_dim), np.float32),
            "mask": spaces.MultiBinary(n_candidates),
            "globals": spaces.Box(-inf, inf, (n_globals,), np.float32),
        }
    )


def spreads(energies: np.ndarray, forces: np.ndarray) -> np.ndarray:
    """The ensemble-spread columns of CANDIDATE_FEATURES from member predictions (M, N), (M, N, n, 3)."""
    n_atoms = forces.shape[2]
    e_std = energies.std(0)
    mean_f = forces.mean(0)  # (N, n, 3)
    per_atom = np.sqrt(((forces - mean_f) ** 2).sum(-1).mean(0))  # (N, n)
    rel = (per_atom / (np.linalg.norm(mean_f, axis=-1) + 0.1)).mean(1)
    return np.stack([e_std, e_std / n_atoms, per_atom.mean(1), per_atom.max(1), rel], axis=1)


def nearest_distance(embedding: np.ndarray, reference: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Euclidean distance from each row of ``embedding`` (N, D) to its nearest row of ``reference`` (L, D)."""
    if len(reference) == 0:
        return np.full(len(embedding), np.inf)
    ref_sq = (reference**2).sum(1)
    out = np.empty(len(embedding))
    for s in range(0, len(embedding), chunk):
        x = embedding[s : s + chunk]
        d2 = (x**2).sum(1)[:, None] + ref_sq[None, :] - 2.0 * x @ reference.T
        out[s : s + chunk] = np.sqrt(np.maximum(d2.min(1), 0.0))
    return out


class Embedder:
    """Fixed-size invariant embedding of a configuration: per-element mean of its normalised atomic
    descriptors, projected on the leading principal axes of the pool (fitted once, deterministic)."""

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


def per_element_means(G: np.ndarray, species: np.ndarray, n_species: int) -> np.ndarray:
    """Mean descriptor over the atoms of each element, concatenated: (F, n, D) -> (F, S * D)."""
    F, n, D = G.shape
    out = np.zeros((F, n_species, D))
    for e in range(n_species):
        m = species == e  # (F, n)
        cnt = m.sum(1, keepdims=True)
        out[:, e] = (G * m[:, :, None]).sum(1) / np.maximum(cnt, 1)
    return out.reshape(F, n_species * D)
