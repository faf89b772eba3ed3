"""Frames of several sizes: the flat layout end to end (rMD17 ethanol, 9 atoms, with aspirin, 21), its
agreement with the dense layout on frames of one size, the layout rule, and the errors that stay."""

from __future__ import annotations

import ase.io
import gymnasium as gym
import numpy as np
import pytest
import torch

import alenv  # noqa: F401  (registers the tasks)
from alenv import ragged
from alenv.datasets import rmd17
from alenv.descriptors.flat import FlatFrames
from alenv.descriptors.representation import DENSE_JACOBIAN_BYTES, Representation, choose_layout
from alenv.metrics import errors, subset_errors
from alenv.models import make_potential
from alenv.observe import spreads
from alenv.samplers.failures import fragments_reference, reference_fragments
from alenv.tasks import TINY_DESCRIPTOR
from agents import make_agent

SMALL = {"test_size": 0, "validation_size": 12, "budget": 10, "batch_size": 5, "reserve_size": 8, "n_initial": 5}
TINY = {"n_members": 3, "hidden": (16, 16), "epochs_initial": 20, "epochs_per_round": 10, "min_steps": 20}


def _tagged(frames, tag):
    for a in frames:
        a.info["config_type"] = tag
    return frames


@pytest.fixture(scope="module")
def mixed_files(tmp_path_factory):
    """Pool: 30 ethanol and 24 aspirin frames, shuffled; test: 8 of each (tagged by molecule)."""
    d = tmp_path_factory.mktemp("ragged")
    pool = ase.io.read(rmd17("ethanol", "train"), index=":30") + ase.io.read(rmd17("aspirin", "train"), index=":24")
    pool = [pool[i] for i in np.random.default_rng(0).permutation(len(pool))]
    test = _tagged(ase.io.read(rmd17("ethanol", "test"), index=":8"), "ethanol")
    test += _tagged(ase.io.read(rmd17("aspirin", "test"), index=":8"), "aspirin")
    ase.io.write(d / "pool.extxyz", pool, format="extxyz")
    ase.io.write(d / "test.extxyz", test, format="extxyz")
    return d, d / "pool.extxyz", d / "test.extxyz"


def _make(cache, pool, test, **kw):
    return gym.make("alenv/Dataset-tiny-v3", cache_dir=cache, pool=pool, test=test, **{**SMALL, **kw})


@pytest.mark.parametrize("model", ["bp-ensemble", "ridge"])
def test_mixed_sizes_episode_runs(model, mixed_files, alenv_cache, check_env_clean):
    _, pool, test = mixed_files
    kw = {"model_kwargs": TINY} if model == "bp-ensemble" else {"model": "ridge"}
    env = _make(alenv_cache, pool, test, **kw)
    u = env.unwrapped
    assert u.layout == "flat" and isinstance(u.candidates, FlatFrames) and u.streamed == frozenset()
    sizes = {len(a) for a in u.pool_frames}
    assert sizes == {9, 21}
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    E, F = u.predict_candidates()
    assert E.shape == (3 if model == "bp-ensemble" else 5, u.n_pool) and F.shape == (E.shape[0], u.pool_ptr[-1], 3)
    Et, Ft = u.true_labels()
    assert Ft.shape == F.shape[1:]
    agent, rng, done = make_agent("uncertainty"), np.random.default_rng(0), False
    while not done:
        obs, reward, done, _, info = env.step(agent.act(obs, info, info["max_picks"], rng))
        assert np.isfinite(reward) and env.observation_space.contains(obs)
    m = u.test_metrics()
    assert m["n_energy_frames"] == 16 and 0 < m["force_mae"] < 5
    assert {"force_mae[ethanol]", "force_mae[aspirin]"} <= set(m)
    check_env_clean(_make(alenv_cache, pool, test, **kw))


def test_mixed_sizes_features_are_per_frame(mixed_files, alenv_cache):
    """Spreads over each frame's own atoms: energy_std_per_atom divides by that frame's count."""
    _, pool, test = mixed_files
    env = _make(alenv_cache, pool, test, model="ridge")
    obs, _ = env.reset(seed=0)
    u = env.unwrapped
    E, F = u.predict_candidates()
    ptr = u.pool_ptr
    counts = np.diff(ptr)
    np.testing.assert_allclose(obs["candidates"][:, 1], (E.std(0) / counts).astype(np.float32), rtol=1e-6)
    k = int(np.flatnonzero(counts == 21)[0])
    Fk = F[:, ptr[k] : ptr[k + 1]]
    per_atom = np.sqrt(((Fk - Fk.mean(0)) ** 2).sum(-1).mean(0))
    np.testing.assert_allclose(obs["candidates"][k, 2:4], np.float32([per_atom.mean(), per_atom.max()]), rtol=1e-5)


def test_test_element_missing_from_mixed_pool(mixed_files, alenv_cache):
    d, pool, test = mixed_files
    odd = ase.io.read(test, index=":")
    odd[10].numbers[3] = 7  # a nitrogen in an aspirin frame; the pool has none
    path = d / "nitrogen.extxyz"
    ase.io.write(path, odd, format="extxyz")
    with pytest.raises(ValueError, match=r"nitrogen.extxyz frame 10 has elements \[7\] that no frame of .*pool.extxyz"):
        _make(alenv_cache, pool, path)


def test_pool_of_one_molecule_still_refuses_another(mixed_files, alenv_cache):
    """A test set of another size is accepted only beside a pool of several compositions."""
    d, _, test = mixed_files
    ethanol = d / "ethanol.extxyz"
    ase.io.write(ethanol, ase.io.read(rmd17("ethanol", "train"), index=":40"), format="extxyz")
    with pytest.raises(ValueError, match=r"frame 8 is C9H8O4, a composition that no frame of .* another molecule"):
        _make(alenv_cache, ethanol, test)


# ------------------------------------------------------------------------------ flat against dense
@pytest.fixture(scope="module")
def ethanol_sets():
    torch.set_num_threads(1)
    frames = ase.io.read(rmd17("ethanol", "train"), index=":40")
    rep = Representation.for_frames(frames, TINY_DESCRIPTOR)
    dense = rep.featurize(frames, layout="dense")
    rep.set_normalisation([dense])
    flat = rep.featurize(frames, layout="flat")
    E = np.array([a.get_potential_energy() for a in frames])
    F = np.stack([a.get_forces() for a in frames])
    return rep, dense, flat, E, F


@pytest.mark.parametrize("model", ["bp-ensemble", "ridge"])
def test_flat_matches_dense_on_frames_of_one_size(model, ethanol_sets):
    rep, dense, flat, E, F = ethanol_sets
    assert torch.equal(flat.G[flat.rows([3])][torch.argsort(flat.species[flat.rows([3])], stable=True)], dense.G[3])
    kw = {"n_members": 3, "hidden": (16, 16), "epochs_initial": 1, "min_steps": 6} if model == "bp-ensemble" else {}
    idx = np.arange(0, 40, 2)
    pd, pf = make_potential(model, rep, seed=1, **kw), make_potential(model, rep, seed=1, **kw)
    fd = pd.fit(dense, E[idx], F[idx], np.random.default_rng(0), idx=idx)
    ff = pf.fit(flat, E[idx], F[idx].reshape(-1, 3), np.random.default_rng(0), idx=idx)
    if model == "bp-ensemble":  # the same minibatches: losses equal to float32 rounding after 6 steps
        assert ff["loss_forces"] == pytest.approx(fd["loss_forces"], rel=1e-4)
        assert ff["loss_energy"] == pytest.approx(fd["loss_energy"], rel=1e-3, abs=1e-7)
    Ed, Fd = pd.predict(dense)
    Ef, Ff = pf.predict(flat)
    scale = np.abs(Fd).max()
    np.testing.assert_allclose(Ef, Ed, rtol=0, atol=1e-4)
    np.testing.assert_allclose(Ff, Fd.reshape(len(Fd), -1, 3), rtol=0, atol=1e-5 * scale)
    # one potential, both layouts: float32 rounding only
    Ef2, Ff2 = pd.predict(flat, max_triplets=500)  # many small chunks
    np.testing.assert_allclose(Ef2, Ed, rtol=0, atol=1e-5 * max(1.0, np.abs(Ed).max() / 1e3))
    np.testing.assert_allclose(Ff2, Fd.reshape(len(Fd), -1, 3), rtol=0, atol=1e-6 * scale)


def test_spreads_and_errors_agree_across_layouts():
    rng = np.random.default_rng(0)
    E, F = rng.normal(size=(4, 6)), rng.normal(size=(4, 6, 5, 3))
    ptr = ragged.ptr_of([5] * 6)
    np.testing.assert_allclose(spreads(E, F.reshape(4, -1, 3), ptr), spreads(E, F), rtol=1e-12)
    Er, Fr, has = rng.normal(size=6), rng.normal(size=(6, 5, 3)), np.array([1, 1, 0, 1, 1, 1], bool)
    Fr[2] = np.nan
    dense = errors(E[0], F[0], Er, Fr, has).as_dict()
    flat = errors(E[0], F[0].reshape(-1, 3), Er, Fr.reshape(-1, 3), has, ptr=ptr).as_dict()
    assert flat == pytest.approx(dense, rel=1e-12, nan_ok=True)
    subsets = ["a", "b", "a", None, "b", "a"]
    assert subset_errors(E[0], F[0].reshape(-1, 3), Er, Fr.reshape(-1, 3), has, subsets, ptr=ptr) == pytest.approx(
        subset_errors(E[0], F[0], Er, Fr, has, subsets), rel=1e-12, nan_ok=True
    )


def test_ragged_spreads_use_each_frames_atoms():
    E = np.array([[0.0, 1.0], [2.0, 5.0]])
    F = np.zeros((2, 5, 3))
    F[1, 4] = [3.0, 0.0, 4.0]  # the second frame's only spread
    out = spreads(E, F, ragged.ptr_of([2, 3]))
    np.testing.assert_allclose(out[:, 0], [1.0, 2.0])
    np.testing.assert_allclose(out[:, 1], [0.5, 2.0 / 3])
    np.testing.assert_allclose(out[:, 3], [0.0, 2.5])
    np.testing.assert_allclose(out[:, 2], [0.0, 2.5 / 3])


# ------------------------------------------------------------------------------ layout rule, memory
def test_layout_rule():
    D = 240
    one = {"train": [9] * 100, "validation": [9] * 20, "test": [9] * 30}
    assert choose_layout(one, D) == ("dense", frozenset())
    assert choose_layout(one, D, "flat") == ("flat", frozenset())
    mixed = {**one, "test": [9, 21]}
    assert choose_layout(mixed, D) == ("flat", frozenset())
    with pytest.raises(ValueError, match="one size"):
        choose_layout(mixed, D, "dense")
    aspirin = {"train": [21] * 800, "validation": [21] * 200, "test": [21] * 1000}  # 2.54 GB of Jacobians
    assert choose_layout(aspirin, D) == ("dense", frozenset({"test"}))
    water = {"train": [96] * 2050, "validation": [96] * 200, "test": [96] * 500}
    assert choose_layout(water, 128) == ("flat", frozenset())
    assert choose_layout(water, 128, "dense") == ("dense", frozenset({"test", "validation"}))
    assert DENSE_JACOBIAN_BYTES == 2 * 2**30
    with pytest.raises(ValueError, match="layout must be"):
        choose_layout(one, D, "sparse")


def test_flat_memory_grows_linearly_with_atoms():
    rep = Representation.for_frames(ase.io.read(rmd17("aspirin", "train"), index=":1"))
    per_atom = {}
    for molecule, n in (("ethanol", 9), ("aspirin", 21)):
        frames = ase.io.read(rmd17(molecule, "train"), index=":20")
        per_atom[n] = rep.featurize(frames, layout="flat").nbytes() / (20 * n)
    # G (4 D bytes per atom) dominates; pairs grow with the neighbours of each atom, not with n
    assert per_atom[21] < 1.5 * per_atom[9]
    assert per_atom[21] < 2 * 4 * rep.spec.n_features
    assert 12 * 21 * rep.spec.n_features > 10 * per_atom[21]  # a dense Jacobian row would be 12 n D per atom


def test_flat_frames_extend_and_take():
    eth = ase.io.read(rmd17("ethanol", "train"), index=":3")
    asp = ase.io.read(rmd17("aspirin", "train"), index=":2")
    rep = Representation.for_frames(eth + asp, TINY_DESCRIPTOR)
    a, b = rep.featurize(eth, layout="flat"), rep.featurize(asp, layout="flat")
    whole = rep.featurize(eth + asp, layout="flat")
    a.extend(b)
    assert len(a) == 5 and np.array_equal(a.ptr, whole.ptr) and torch.equal(a.species, whole.species)
    torch.testing.assert_close(a.G, whole.G, rtol=0, atol=1e-6)
    G, species, ptr = whole.take(np.array([4, 0]))
    assert np.array_equal(ptr, [0, 21, 30]) and torch.equal(G[21:], whole.G[:9])
    nb = whole.neighbours(np.array([4, 0, 4]))  # repeats allowed (per-member minibatches)
    assert nb.ragged and nb.n_total == 51 and nb.pair_i.max() < 51


def test_fragment_reference_per_composition():
    eth = ase.io.read(rmd17("ethanol", "train"), index=":2")
    asp = ase.io.read(rmd17("aspirin", "train"), index=":1")
    assert fragments_reference(eth) == 1  # one composition: an int, as before
    ref = fragments_reference(eth + asp)
    assert ref == {"C2H6O": 1, "C9H8O4": 1}
    two = eth[0].copy()
    two.positions[:3] += 10.0  # pull part of the molecule away: more fragments than its start
    assert reference_fragments(asp[0], ref) == 1 and reference_fragments(two, 3) == 3


def test_on_the_fly_runs_on_the_flat_layout(make_env):
    """On the fly with the flat layout forced: labels are featurised as they come and appended to flat
    training data; the MD energy window divides each label by its own atom count."""
    from alenv.spaces import picks_to_action

    env = make_env("alenv/Ethanol-GFN2-OTF-tiny-v3", model="ridge", descriptor={**TINY_DESCRIPTOR, "layout": "flat"})
    u = env.unwrapped
    assert u.layout == "flat"
    obs, info = env.reset(seed=0)
    agent, rng, done = make_agent("uncertainty"), np.random.default_rng(0), False
    while not done:
        k = info["max_picks"]
        picks = agent.act(obs, info, k, rng) if k else np.zeros(0, dtype=np.int64)
        obs, reward, done, _, info = env.step(picks_to_action(picks, obs, info))
        assert np.isfinite(reward) and env.observation_space.contains(obs)
    train = u.episode.train
    assert isinstance(train.data, FlatFrames) and len(train.data) == len(train.rows)
    e = np.array(train.energies) / np.array([len(f) for f in train.forces])
    assert u.energy_window == (e.min(), e.max())
    assert np.isfinite(u.test_metrics()["force_mae"])
