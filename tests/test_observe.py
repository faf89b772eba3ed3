"""Observation parts (``alenv.observe``): spreads of member predictions, nearest distances, assembly."""

from __future__ import annotations

import numpy as np
import pytest

from alenv.observe import CANDIDATE_FEATURES, GLOBAL_FEATURES, candidate_features, make_observation, nearest_distance


def test_candidate_features_from_member_predictions():
    """Two members that disagree by +-d on one force component of one atom, and by +-s in energy."""
    n_atoms, d, s = 4, 0.3, 0.02
    E = np.array([[1.0 + s, 5.0], [1.0 - s, 5.0]])  # (M=2, C=2)
    F = np.zeros((2, 2, n_atoms, 3))
    F[0, 0, 1, 2], F[1, 0, 1, 2] = d, -d
    feats = candidate_features(E, F, np.array([0.0, 2.0]))
    c = dict(zip(CANDIDATE_FEATURES, feats[0]))
    assert feats.shape == (2, len(CANDIDATE_FEATURES))
    assert c["energy_std"] == pytest.approx(s)
    assert c["energy_std_per_atom"] == pytest.approx(s / n_atoms)
    assert c["force_std_max"] == pytest.approx(d) and c["force_std_mean"] == pytest.approx(d / n_atoms)
    assert c["dist_to_train"] == 0.0
    assert np.all(feats[1, :5] == 0.0) and feats[1, 5] == 2.0  # members that agree: no spread


def test_nearest_distance():
    emb = np.array([[0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_allclose(nearest_distance(emb, np.array([[0.0, 1.0], [3.0, 0.0]])), [1.0, 4.0])
    assert np.all(np.isinf(nearest_distance(emb, np.zeros((0, 2)))))  # nothing labelled yet


def test_make_observation_needs_every_global():
    values = {name: float(i) for i, name in enumerate(GLOBAL_FEATURES)}
    obs = make_observation(np.zeros((3, 6)), np.zeros((3, 2)), [1, 0, 1], GLOBAL_FEATURES, values)
    assert obs["globals"].tolist() == list(range(len(GLOBAL_FEATURES))) and obs["mask"].dtype == np.int8
    del values["failed_fraction"]
    with pytest.raises(KeyError, match="failed_fraction"):
        make_observation(np.zeros((3, 6)), np.zeros((3, 2)), [1, 0, 1], GLOBAL_FEATURES, values)
