"""Synthetic observations for agent tests (the schema of alenv.observe, no environment needed)."""

from __future__ import annotations

import numpy as np
import pytest

from alenv.observe import CANDIDATE_FEATURES, GLOBAL_FEATURES


def synthetic_obs(
    seed: int, n: int = 40, dim: int = 4, available: float = 0.7, budget_used: float = 0.3
) -> dict[str, np.ndarray]:
    """Random continuous features (no ties), embeddings, a mask with about ``available`` of the
    candidates unlabelled, and dist_to_train = the true embedding distance to the labelled ones."""
    r = np.random.default_rng(seed)
    emb = r.normal(size=(n, dim)).astype(np.float32)
    mask = (r.random(n) < available).astype(np.int8)
    mask[:3] = 1
    mask[3] = 0
    cand = r.random((n, len(CANDIDATE_FEATURES))).astype(np.float32)
    labelled = emb[mask == 0].astype(np.float64)
    d = np.sqrt(((emb[:, None].astype(np.float64) - labelled[None]) ** 2).sum(-1)).min(1)
    cand[:, CANDIDATE_FEATURES.index("dist_to_train")] = d
    g = np.zeros(len(GLOBAL_FEATURES), dtype=np.float32)
    g[GLOBAL_FEATURES.index("budget_used")] = budget_used
    return {"candidates": cand, "embedding": emb, "mask": mask, "globals": g}


@pytest.fixture
def make_obs():
    """``make_obs(seed, n=40, dim=4, available=0.7, budget_used=0.3)``: see ``synthetic_obs``."""
    return synthetic_obs
