"""Observation parts (``alenv.observe``): spreads of member predictions, nearest distances, the noise
estimate, assembly; and the units of the information-gain score built on them."""

from __future__ import annotations

import numpy as np
import pytest

from agents.scores import information_gain, signal_to_noise
from alenv.observe import (
    CANDIDATE_FEATURES,
    GLOBAL_FEATURES,
    candidate_features,
    make_observation,
    nearest_distance,
    noise_estimate,
)


def test_candidate_features_from_member_predictions():
    """Two members that disagree by +-d on one force component of one atom, and by +-s in energy."""
    n_atoms, d, s = 4, 0.3, 0.02
    E = np.array([[1.0 + s, 5.0], [1.0 - s, 5.0]])  # (M=2, C=2)
    F = np.zeros((2, 2, n_atoms, 3))
    F[0, 0, 1, 2], F[1, 0, 1, 2] = d, -d
    feats = candidate_features(E, F, np.array([0.0, 2.0]), np.array([0.1, 0.2]))
    c = dict(zip(CANDIDATE_FEATURES, feats[0]))
    assert feats.shape == (2, len(CANDIDATE_FEATURES))
    assert c["energy_std"] == pytest.approx(s)
    assert c["energy_std_per_atom"] == pytest.approx(s / n_atoms)
    assert c["force_std_max"] == pytest.approx(d) and c["force_std_mean"] == pytest.approx(d / n_atoms)
    assert c["dist_to_train"] == 0.0 and c["noise_sigma"] == 0.1
    assert np.all(feats[1, :5] == 0.0) and feats[1, 5] == 2.0  # members that agree: no spread
    assert feats.shape[1] == 7 and feats[1, CANDIDATE_FEATURES.index("noise_sigma")] == 0.2
    np.testing.assert_array_equal(candidate_features(E, F, np.array([0.0, 2.0]), 0.3)[:, 6], [0.3, 0.3])


def test_information_gain_is_per_force_component():
    """Members disagree by +-d on every component of every atom: the per-component std is d and the
    per-atom spread (a norm over x, y, z) is sqrt(3) d. Against per-component label noise sigma, the score
    is 0.5 log(1 + d^2 / sigma^2): the spread's sqrt(3) is taken out, not set against a per-component
    noise (which would overstate the epistemic-to-noise variance ratio by 3)."""
    n_atoms, d, sigma = 5, 0.2, 0.1
    E = np.zeros((2, 1))
    F = np.stack([np.full((1, n_atoms, 3), d), np.full((1, n_atoms, 3), -d)])  # (M=2, C=1, n, 3)
    feats = candidate_features(E, F, np.array([1.0]), np.array([sigma]))
    obs = {"candidates": feats.astype(np.float32), "mask": np.ones(1, dtype=np.int8)}
    assert feats[0, CANDIDATE_FEATURES.index("force_std_mean")] == pytest.approx(np.sqrt(3) * d)
    assert signal_to_noise(0.01)(obs, {})[0] == pytest.approx(d / sigma, rel=1e-6)
    assert information_gain(0.01)(obs, {})[0] == pytest.approx(0.5 * np.log(1 + d**2 / sigma**2), rel=1e-6)


def test_noise_estimate_takes_the_nearest_recorded_sigma():
    """Each candidate gets the sigma recorded with its nearest labelled configuration that records one;
    where no label records a sigma, every candidate gets the fallback (the training force RMSE)."""
    cand = np.array([[0.0, 0.0], [9.0, 0.0], [6.0, 0.1]])
    labelled = np.array([[0.5, 0.0], [10.0, 0.0], [6.0, 0.0]])  # the last records no sigma
    np.testing.assert_array_equal(noise_estimate(cand, labelled, np.array([0.02, 0.5, np.nan]), 0.07), [0.02, 0.5, 0.5])
    np.testing.assert_array_equal(noise_estimate(cand, labelled, np.full(3, np.nan), 0.07), [0.07] * 3)
    np.testing.assert_array_equal(noise_estimate(cand, labelled[:0], np.zeros(0), np.nan), [0.0] * 3)
    with pytest.raises(ValueError, match="3 labelled embeddings but 2 noise sigmas"):
        noise_estimate(cand, labelled, np.zeros(2), 0.1)


def test_nearest_distance():
    emb = np.array([[0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_allclose(nearest_distance(emb, np.array([[0.0, 1.0], [3.0, 0.0]])), [1.0, 4.0])
    assert np.all(np.isinf(nearest_distance(emb, np.zeros((0, 2)))))  # nothing labelled yet


def test_make_observation_needs_every_global():
    values = {name: float(i) for i, name in enumerate(GLOBAL_FEATURES)}
    obs = make_observation(np.zeros((3, len(CANDIDATE_FEATURES))), np.zeros((3, 2)), [1, 0, 1], GLOBAL_FEATURES, values)
    assert obs["globals"].tolist() == list(range(len(GLOBAL_FEATURES))) and obs["mask"].dtype == np.int8
    del values["failed_fraction"]
    with pytest.raises(KeyError, match="failed_fraction"):
        make_observation(np.zeros((3, len(CANDIDATE_FEATURES))), np.zeros((3, 2)), [1, 0, 1], GLOBAL_FEATURES, values)
