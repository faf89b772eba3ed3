"""Scores: ``score(obs, info) -> (N,)`` float64, one value per candidate, higher = more worth labelling.

Scores read only the observation (``alenv.observe.CANDIDATE_FEATURES``, ``GLOBAL_FEATURES``) and the info
dict; what a strategy does with them (top-k, a bonus on top of a distance, a kernel amplitude) is up to
its selector (``agents.selectors``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from alenv.observe import CANDIDATE_FEATURES, GLOBAL_FEATURES

ScoreFn = Callable[[dict, dict], np.ndarray]


def feature(obs: dict, name: str) -> np.ndarray:
    """One named column of obs["candidates"] as float64."""
    return obs["candidates"][:, CANDIDATE_FEATURES.index(name)].astype(np.float64)


def global_feature(obs: dict, name: str) -> float:
    """One named entry of obs["globals"]."""
    return float(obs["globals"][GLOBAL_FEATURES.index(name)])


# Features that are spreads of the committee: meaningless (all zero) with fewer than two members.
SPREAD_FEATURES = frozenset({"energy_std", "energy_std_per_atom", "force_std_mean", "force_std_max", "force_std_rel"})


def reads(component: object) -> frozenset[str]:
    """The candidate features a score, prefilter or selector reads (its ``reads`` attribute, or its
    feature ``name``)."""
    if component is None:
        return frozenset()
    found = getattr(component, "reads", None)
    if found is not None:
        return frozenset(found)
    name = getattr(component, "name", None)
    return frozenset({name}) if name in CANDIDATE_FEATURES else frozenset()


def _known(name: str) -> str:
    if name not in CANDIDATE_FEATURES:
        raise ValueError(f"unknown candidate feature {name!r}; known: {CANDIDATE_FEATURES}")
    return name


def feature_score(name: str) -> ScoreFn:
    """Score = one candidate feature (e.g. ``force_std_max`` for query by committee)."""
    _known(name)

    def score(obs: dict, info: dict) -> np.ndarray:
        return feature(obs, name)

    score.__qualname__ = f"feature_score({name!r})"
    score.reads = frozenset({name})  # type: ignore[attr-defined]
    return score


def energy_spread_score(normalise: str = "none") -> ScoreFn:
    """The committee's energy spread sigma_E as a score: as it is (``"none"``: extensive, so it grows with the
    frame's size), per atom (``"atom"``), or per square root of the atom count (``"sqrt_atoms"``: ANI's
    query-by-committee criterion, rho proportional to sigma_E / sqrt(N), Smith et al. 2018). The last is
    sqrt(energy_std x energy_std_per_atom), so it needs no other feature. Matters only for frames of several
    sizes."""
    if normalise == "none":
        return feature_score("energy_std")
    if normalise == "atom":
        return feature_score("energy_std_per_atom")
    if normalise != "sqrt_atoms":
        raise ValueError(f"normalise must be none, atom or sqrt_atoms, got {normalise!r}")

    def score(obs: dict, info: dict) -> np.ndarray:
        return np.sqrt(feature(obs, "energy_std") * feature(obs, "energy_std_per_atom"))

    score.__qualname__ = "energy_spread_score('sqrt_atoms')"
    score.reads = frozenset({"energy_std", "energy_std_per_atom"})  # type: ignore[attr-defined]
    return score


def unit_interval(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] over the available candidates (so differently scaled scores can be added);
    all zeros where the available values are all equal or none is available."""
    avail = x[mask.astype(bool)]
    if len(avail) == 0:
        return np.zeros_like(x)
    lo, hi = avail.min(), avail.max()
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def unit_score(score: ScoreFn) -> ScoreFn:
    """``score`` scaled to [0, 1] over the candidates with obs["mask"] == 1 (see ``unit_interval``)."""

    def scaled(obs: dict, info: dict) -> np.ndarray:
        return unit_interval(score(obs, info), obs["mask"])

    scaled.reads = reads(score)  # type: ignore[attr-defined]
    return scaled


def window_score(name: str, lower: float, upper: float) -> ScoreFn:
    """Rank for a trust window ``lower <= x <= upper`` on feature ``name`` (eV/Angstrom for spreads).

    Inside the window: ``2 + x / upper`` in (2, 3], largest spread first. Below: ``1 - (lower - x) /
    lower`` in [0, 1), closest to the window first. Above: ``-(x - upper) / upper`` < 0, closest first.
    So every candidate inside beats every one below, which beats every one above.
    """
    _known(name)
    if not 0 <= lower < upper:
        raise ValueError(f"need 0 <= lower < upper, got {lower}, {upper}")
    lower, upper = float(lower), float(upper)

    def score(obs: dict, info: dict) -> np.ndarray:
        x = feature(obs, name)
        inside = (x >= lower) & (x <= upper)
        below = 1.0 - (lower - x) / max(lower, 1e-12)
        above = -(x - upper) / upper
        return np.where(inside, 2.0 + x / upper, np.where(x < lower, below, above))

    score.reads = frozenset({name})  # type: ignore[attr-defined]
    return score


COMPONENTS = 3  # force components per atom: a per-atom spread (a norm) is sqrt(3) times a per-component std


def noise_level(obs: dict, noise_floor: float) -> np.ndarray:
    """Label noise per candidate (N,), eV/Angstrom per force component: the observation's ``noise_sigma``
    (the sigma recorded with the nearest labelled configuration, else the training force RMSE; see
    ``alenv.observe.noise_estimate``), floored at ``noise_floor`` (also where it is not finite)."""
    sigma = feature(obs, "noise_sigma")
    return np.maximum(np.where(np.isfinite(sigma), sigma, noise_floor), noise_floor)


def signal_to_noise(noise_floor: float = 0.01, spread: str = "force_std_mean") -> ScoreFn:
    """Score = epistemic over aleatoric standard deviation per force component, ``a = (s / sqrt(3)) /
    sigma`` [1]: ``s`` a per-atom force spread (feature ``spread``, a norm over x, y, z, so ``s / sqrt(3)``
    is the RMS spread of one component) and ``sigma = noise_level(obs, noise_floor)``. A single label's
    information gain is ``0.5 log(1 + a^2)`` per component (``information_gain``); the
    ``InformationGain`` selector uses ``a`` as its kernel amplitude."""
    _known(spread)
    if not noise_floor > 0:
        raise ValueError(f"noise_floor must be > 0 eV/Angstrom, got {noise_floor}")
    floor = float(noise_floor)

    def score(obs: dict, info: dict) -> np.ndarray:
        return feature(obs, spread) / np.sqrt(COMPONENTS) / noise_level(obs, floor)

    score.__qualname__ = f"signal_to_noise({floor!r}, {spread!r})"
    score.reads = frozenset({spread, "noise_sigma"})  # type: ignore[attr-defined]
    return score


def information_gain(noise_floor: float = 0.01, spread: str = "force_std_mean") -> ScoreFn:
    """Score = the information gain of labelling one candidate alone, ``0.5 log(1 + a^2)`` nats per force
    component, ``a`` the ``signal_to_noise`` ratio (epistemic variance over noise variance, both per
    component)."""
    snr = signal_to_noise(noise_floor, spread)

    def score(obs: dict, info: dict) -> np.ndarray:
        return 0.5 * np.log1p(snr(obs, info) ** 2)

    score.__qualname__ = f"information_gain({noise_floor!r}, {spread!r})"
    score.reads = snr.reads  # type: ignore[attr-defined]
    return score
