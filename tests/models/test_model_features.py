"""Model features (``Potential.features``): every member's energy is linear in them at its last layer, in both
layouts, and they are invariant to rotation, translation and permutation of atoms."""

from __future__ import annotations

import math

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from scipy.spatial.transform import Rotation

from alenv.datasets import rmd17
from alenv.descriptors.aev import AEVSpec
from alenv.descriptors.flat import FlatFrames
from alenv.descriptors.representation import FeaturizedFrames, Representation
from alenv.models.base import SupportsFeatures
from alenv.models.ensemble import EnsembleConfig, EnsemblePotential
from alenv.models.ridge import RidgeConfig, RidgeEnsemble

SPEC = AEVSpec(species=(1, 6, 8), radial_shells=8, angular_shells=4, angle_sections=4)
SPECIES = np.array(SPEC.species)


@pytest.fixture(scope="module")
def frames() -> list[Atoms]:
    """Six ethanol frames (9 atoms) and four malonaldehyde frames (9 atoms, another composition)."""
    return ase.io.read(rmd17("ethanol", "train"), index=":6") + ase.io.read(rmd17("malonaldehyde", "train"), index=":4")


@pytest.fixture(scope="module")
def mixed() -> list[Atoms]:
    """Frames of two sizes (ethanol, 9 atoms; aspirin, 21), which only the flat layout holds."""
    return ase.io.read(rmd17("ethanol", "train"), index=":3") + ase.io.read(rmd17("aspirin", "train"), index=":3")


def _counts(frames: list[Atoms]) -> np.ndarray:
    return np.array([[np.sum(a.numbers == z) for z in SPECIES] for a in frames], dtype=np.float64)


def _ensemble(frames: list[Atoms], hidden: tuple[int, ...]) -> EnsemblePotential:
    """An ensemble with random weights, non-zero biases, energy scale and baseline (no training needed)."""
    rep = Representation(SPEC)
    rep.set_normalisation([FeaturizedFrames(frames[:6], rep.aev, jacobian=False)])
    pot = EnsemblePotential(rep, EnsembleConfig(n_members=3, hidden=hidden), seed=1)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for elem in pot.layers:
            for _, b in elem:
                b.copy_(torch.randn(b.shape, generator=g) * 0.3)
    pot.energy_scale = 0.37
    pot.element_energy = torch.tensor([-13.6, -1029.8, -2041.3], dtype=torch.float64)
    return pot


def _last_layer(pot: EnsemblePotential) -> np.ndarray:
    """Each member's last-layer weights and bias, per element in order, as (M, S * (H + 1))."""
    blocks = []
    for elem in pot.layers:
        W, b = elem[-1]  # (M, H, 1), (M, 1, 1)
        blocks.append(torch.cat([W[:, :, 0], b[:, 0, :]], dim=1).detach().double().numpy())
    return np.concatenate(blocks, axis=1)


@pytest.mark.parametrize("hidden", [(16, 8), ()])
@pytest.mark.parametrize("layout", ["dense", "flat"])
def test_ensemble_energies_are_linear_in_the_features(frames, mixed, layout, hidden):
    """E_m = sqrt(M) * features[block m] . (w_m, b_m) + baseline for every member, frame and layout; a
    network without hidden layers reads the descriptors at its (only) last layer."""
    pot = _ensemble(frames, hidden)
    assert isinstance(pot, SupportsFeatures)
    use = frames if layout == "dense" else frames + mixed
    data = (FeaturizedFrames if layout == "dense" else FlatFrames)(use, pot.aev, jacobian=False)
    assert data.layout == layout
    E, _ = pot.predict(data, forces=False)
    idx = np.array([7, 0, 3]) if layout == "dense" else np.arange(len(use))
    phi = pot.features(data, idx=idx)
    M, S, H = 3, len(SPECIES), (hidden[-1] if hidden else SPEC.n_features)
    assert phi.shape == (len(idx), M * S * (H + 1)) and phi.dtype == np.float64
    theta = _last_layer(pot)
    baseline = _counts([use[i] for i in idx]) @ pot.element_energy.numpy()
    blocks = phi.reshape(len(idx), M, S * (H + 1))
    for m in range(M):
        linear = math.sqrt(M) * blocks[:, m] @ theta[m] + baseline
        network = E[m, idx] - baseline  # float32 networks: compare to their own magnitude
        assert np.abs(network).max() > 1e-2  # weights and biases matter here
        np.testing.assert_allclose(linear - baseline, network, rtol=0, atol=1e-5 * (1 + np.abs(network).max()))
    # the bias feature is the element count times the energy scale / sqrt(M)
    count_cols = phi.reshape(len(idx), M, S, H + 1)[..., H]
    np.testing.assert_allclose(count_cols, np.broadcast_to(_counts([use[i] for i in idx])[:, None] * 0.37 / math.sqrt(M), count_cols.shape))


def test_ensemble_features_agree_across_layouts(frames):
    pot = _ensemble(frames, (16, 8))
    dense = pot.features(FeaturizedFrames(frames, pot.aev, jacobian=False))
    flat = pot.features(FlatFrames(frames, pot.aev, jacobian=False))
    np.testing.assert_allclose(flat, dense, rtol=0, atol=1e-5 * np.abs(dense).max())
    assert np.abs(dense).max() > 0


def _transformed(atoms: Atoms, seed: int) -> Atoms:
    """The frame rotated, translated and with its atoms in another order."""
    r = np.random.default_rng(seed)
    out = atoms.copy()
    out.positions = Rotation.random(random_state=seed).apply(atoms.positions) + r.normal(size=3) * 5.0
    return out[r.permutation(len(out))]


@pytest.mark.parametrize("model", ["bp-ensemble", "ridge"])
@pytest.mark.parametrize("layout", ["dense", "flat"])
def test_features_are_invariant(frames, model, layout):
    """Rotation, translation and permutation of atoms leave a frame's features unchanged."""
    if model == "bp-ensemble":
        pot = _ensemble(frames, (16, 8))
    else:
        pot = _ridge(frames)
    base = [frames[0], frames[7]]
    moved = [_transformed(a, s) for s, a in enumerate(base)]
    cls = FeaturizedFrames if layout == "dense" else FlatFrames
    phi = pot.features(cls(base + moved, pot.representation.aev, jacobian=False))
    np.testing.assert_allclose(phi[2:], phi[:2], rtol=0, atol=1e-4 * np.abs(phi).max())
    assert not np.allclose(phi[0], phi[1])  # and they do tell frames apart


def _ridge(frames: list[Atoms]) -> RidgeEnsemble:
    rep = Representation(SPEC)
    rep.set_normalisation([FeaturizedFrames(frames[:6], rep.aev, jacobian=False)])
    pot = RidgeEnsemble(rep, RidgeConfig(n_members=4), seed=0)
    r = np.random.default_rng(3)
    pot.weights = r.normal(size=pot.weights.shape) * 0.1
    pot.element_energy = np.array([-13.6, -1029.8, -2041.3])
    return pot


@pytest.mark.parametrize("layout", ["dense", "flat"])
def test_ridge_energies_are_linear_in_the_features(frames, mixed, layout):
    """The ridge committee's members share one feature map: E_m = features . weights[m] + baseline."""
    pot = _ridge(frames)
    assert isinstance(pot, SupportsFeatures)
    use = frames if layout == "dense" else frames + mixed
    data = (FeaturizedFrames if layout == "dense" else FlatFrames)(use, pot.representation.aev, jacobian=False)
    E, _ = pot.predict(data, forces=False)
    phi = pot.features(data)
    assert phi.shape == (len(use), len(SPECIES) * SPEC.n_features)
    baseline = _counts(use) @ pot.element_energy
    for m in range(pot.n_members):
        np.testing.assert_allclose(phi @ pot.weights[m].reshape(-1) + baseline, E[m], rtol=0, atol=1e-8)


# ----------------------------------------------------------------------------------------- the observation key
BASE_KEYS = {"candidates", "embedding", "mask", "globals"}
MODEL_KEYS = {"model_features", "model_dist_to_train", "model_nearest_train"}


def test_observation_key_is_opt_in_and_changes_nothing_else(ethanol_tiny_env, make_env):
    """Off by default (the observation space and observation as before); on, the space declares the model
    keys, and every other part of the observation and the reward stay the same for the same seed."""
    off, on = ethanol_tiny_env, make_env("alenv/Ethanol-GFN2-tiny-v3", model_features=16)
    assert set(off.observation_space.spaces) == BASE_KEYS
    assert set(on.observation_space.spaces) == BASE_KEYS | MODEL_KEYS
    for key in BASE_KEYS:
        assert on.observation_space[key] == off.observation_space[key]
    assert on.observation_space["model_features"].shape == (60, 16)
    obs_off, _ = off.reset(seed=0)
    obs_on, info = on.reset(seed=0)
    assert set(obs_off) == BASE_KEYS and on.observation_space.contains(obs_on)
    action = np.flatnonzero(obs_on["mask"])[: info["max_picks"]]
    for _ in range(2):
        for key in BASE_KEYS:
            assert obs_on[key].shape == obs_off[key].shape and obs_on[key].dtype == obs_off[key].dtype
            np.testing.assert_array_equal(obs_on[key], obs_off[key])
        obs_off, r_off, *_ = off.step(action)
        obs_on, r_on, *_ = on.step(action)
        assert r_on == r_off
        action = action + 10


def test_sketch_is_drawn_from_the_run_seed(make_env):
    """The same run seed draws the same sketch (and features), another seed another one; the features are
    those of the potential, sketched, and nothing is recomputed where nothing was refitted."""
    env = make_env("alenv/Ethanol-GFN2-tiny-v3", model_features=16)
    u = env.unwrapped
    obs, _ = env.reset(seed=3)
    sketch = u._sketch.copy()
    raw = u.potential.features(u.candidates, np.arange(u.n_pool))
    assert sketch.shape == (raw.shape[1], 16) and raw.shape[1] > 16
    np.testing.assert_allclose(obs["model_features"], raw @ sketch, rtol=1e-5, atol=1e-5 * np.abs(raw @ sketch).max())
    again, _ = env.reset(seed=3)
    np.testing.assert_array_equal(u._sketch, sketch)
    np.testing.assert_array_equal(again["model_features"], obs["model_features"])
    env.reset(seed=4)
    assert not np.allclose(u._sketch, sketch)
    cached = u._model_obs
    u._on_labelled(np.array([0]), [])  # a round whose labels all failed: no refit, nothing recomputed
    assert u._model_obs is cached


def test_ridge_features_fewer_than_the_key_are_zero_padded(make_env):
    env = make_env("alenv/Ethanol-GFN2-tiny-v3", model="ridge", model_features=4096)
    u = env.unwrapped
    obs, _ = env.reset(seed=0)
    raw = u.potential.features(u.candidates, np.arange(u.n_pool))
    P = raw.shape[1]
    assert u._sketch is None and P < 4096
    np.testing.assert_allclose(obs["model_features"][:, :P], raw, rtol=1e-6, atol=1e-6 * np.abs(raw).max())
    assert not obs["model_features"][:, P:].any()


def test_on_the_fly_candidates_get_model_features(make_env):
    env = make_env("alenv/Ethanol-GFN2-OTF-tiny-v3", model_features=8)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    n_train = len(env.unwrapped.episode.train)
    full = obs["mask"] == 1
    assert full.any() and np.all(obs["model_nearest_train"][full] >= 0)
    assert np.all(obs["model_nearest_train"][full] < n_train) and np.all(obs["model_dist_to_train"][full] > 0)
    assert not obs["model_features"][~full].any() and np.all(obs["model_nearest_train"][~full] == -1)


def test_bad_settings_are_refused(make_env, monkeypatch):
    from alenv.models import MODELS
    from alenv.observe import observation_space
    from alenv.tasks import get_task

    with pytest.raises(ValueError, match="model_features must be a non-negative integer"):
        get_task("Ethanol-GFN2-tiny").with_overrides(model_features=-1)
    with pytest.raises(ValueError, match="model_features must be a non-negative integer"):
        get_task("Ethanol-GFN2-tiny").with_overrides(model_features=1.5)
    with pytest.raises(ValueError, match="non-negative"):
        observation_space(10, 4, model_features=-2)

    class NoFeatures:  # a model that follows the protocol without the optional method
        pass

    monkeypatch.setitem(MODELS, "ridge", (NoFeatures, MODELS["ridge"][1]))
    with pytest.raises(ValueError, match="has none"):
        make_env("alenv/Ethanol-GFN2-tiny-v3", model="ridge", model_features=8)


@pytest.mark.slow
def test_check_env_passes_with_the_key_on(make_env, check_env_clean):
    """Gymnasium's check_env (space membership, determinism of reset and step) with the model keys on."""
    check_env_clean(make_env("alenv/Ethanol-GFN2-tiny-v3", model_features=8))
