"""How the ensemble trains: work that grows with the labels, members that differ by data as well as
initialisation, per-member minibatches that compute what shared ones do, and a refit from scratch."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import alenv  # noqa: F401
from alenv.data import read_labelled
from alenv.datasets import rmd17
from alenv.descriptors.aev import AEVSpec
from alenv.descriptors.representation import FeaturizedFrames, Representation
from alenv.models.ensemble import EnsembleConfig, EnsemblePotential

SPEC = AEVSpec(species=(1, 6, 8), radial_shells=6, angular_shells=2, angle_sections=2)


@pytest.fixture(scope="module")
def labelled():
    frames, E, F, _ = read_labelled(rmd17("ethanol", "train"))  # DFT labels (PBE/def2-SVP)
    return frames[:24], E[:24], F[:24]


def _pot(seed: int = 0, **kw) -> EnsemblePotential:
    cfg = EnsembleConfig(n_members=3, hidden=(16, 16), **kw)
    return EnsemblePotential(Representation(SPEC), cfg, seed=seed)


def test_per_member_minibatches_compute_what_shared_ones_do(labelled):
    frames, _, _ = labelled
    pot = _pot()
    data = FeaturizedFrames(frames, pot.aev)
    pot.representation.set_normalisation([data])
    idx = np.array([3, 7, 11, 2])
    E_shared, F_shared = pot.forward(data, idx)
    E_member, F_member = pot.forward(data, np.stack([idx] * 3))
    torch.testing.assert_close(E_member, E_shared)
    torch.testing.assert_close(F_member, F_shared)
    # and each member really reads its own row of frames
    rows = np.stack([idx, idx[::-1], idx + 1])
    E_rows, F_rows = pot.forward(data, rows)
    for m in range(3):
        E_m, F_m = pot.forward(data, rows[m])
        torch.testing.assert_close(E_rows[m], E_m[m])
        torch.testing.assert_close(F_rows[m], F_m[m])


def test_bootstrap_weights_are_kept_per_label_and_never_drop_a_label():
    pot = _pot(seed=3)
    first = pot._bootstrap_weights(10)
    grown = pot._bootstrap_weights(400)
    torch.testing.assert_close(grown[:, :10], first)  # a label keeps its weights as the set grows
    assert bool((grown > 0).all())  # every member trains on every paid label
    assert not torch.equal(grown[0], grown[1])  # members weight the labels differently
    assert 0.85 < float(grown.mean()) < 1.15 and 0.8 < float(grown.std()) < 1.2  # Exp(1): mean 1, sd 1
    assert bool((_pot(bootstrap=False)._bootstrap_weights(7) == 1).all())


def test_members_walk_all_labels_in_their_own_order():
    pot = _pot()
    batches = pot._batches(10, steps=5, rng=np.random.default_rng(0))  # (steps, M, b): 5 x 3 x 10
    assert batches.shape == (5, 3, 10)
    for m in range(3):
        for step in batches[:, m]:
            assert sorted(step) == list(range(10))  # each pass holds every label once
    assert not np.array_equal(batches[:, 0], batches[:, 1])


def test_training_steps_grow_with_the_labelled_set(labelled):
    frames, E, F = labelled
    pot = _pot(batch_size=4, epochs_initial=5, epochs_per_round=3, min_steps=0)
    data = FeaturizedFrames(frames, pot.aev)
    rng = np.random.default_rng(0)
    assert pot.fit(data, E[:8], F[:8], rng, idx=np.arange(8))["steps"] == 5 * 2
    assert pot.fit(data, E[:12], F[:12], rng, idx=np.arange(12))["steps"] == 3 * 3
    assert pot.fit(data, E, F, rng, idx=np.arange(24))["steps"] == 3 * 6
    floor = _pot(batch_size=4, epochs_initial=5, min_steps=50)
    assert floor.fit(data, E[:8], F[:8], rng, idx=np.arange(8))["steps"] == 50  # few labels: at least min_steps
    assert floor.fit(data, E[:8], F[:8], rng, idx=np.arange(8), epochs=1)["steps"] == 2  # warm: passes only


def test_settings_are_checked():
    with pytest.raises(ValueError, match="epochs_per_round"):
        EnsembleConfig(epochs_per_round=0)
    with pytest.raises(ValueError, match="min_steps"):
        EnsembleConfig(min_steps=-1)


def test_refit_from_scratch_matches_the_episode_labels_and_leaves_the_episode_alone(alenv_cache):
    env = gym.make("alenv/Cu-EMT-tiny-v3", cache_dir=alenv_cache)
    obs, info = env.reset(seed=0)
    env.action_space.seed(0)
    obs, _, _, _, info = env.step(env.action_space.sample())
    u = env.unwrapped
    before = u.test_metrics()
    weights = [p.detach().clone() for p in u.potential.parameters()]
    refit = u.refit_test_metrics(seed=5)
    assert set(refit) == set(before) and np.isfinite(refit["force_mae"])
    assert refit["force_mae"] != before["force_mae"]  # another potential, not the episode's
    assert u.test_metrics() == before  # the episode's potential is untouched
    assert all(torch.equal(a, b) for a, b in zip(weights, u.potential.parameters()))
    assert u.refit_test_metrics(seed=5) == refit  # seeded
    # settings reach the refit: one optimiser step from scratch is far worse than a full fit
    assert u.refit_test_metrics(seed=5, epochs_initial=1, min_steps=1)["force_mae"] > 2 * refit["force_mae"]
    # a refit on the same labels is in the same league as the in-loop potential (both trained enough)
    assert 0.5 < before["force_mae"] / refit["force_mae"] < 2.0


def test_refreshing_baseline_and_scale_keeps_every_prediction(labelled):
    frames, E, F = labelled
    pot = _pot(seed=1, epochs_initial=2, min_steps=5)
    data = FeaturizedFrames(frames, pot.aev)
    pot.fit(data, E[:8], F[:8], np.random.default_rng(0), idx=np.arange(8))
    before = pot.predict(data)
    scale, base = pot.energy_scale, pot.element_energy.clone()
    # labels with three times the forces and shifted energies: scale and baseline both move
    idx = np.arange(24)
    pot.refresh_baseline(pot._counts(data.species[torch.from_numpy(idx)]), torch.as_tensor(E - 5.0),
                         torch.as_tensor(3 * F))
    assert pot.energy_scale == pytest.approx(3 * float(np.sqrt((F**2).mean())), rel=1e-6)
    assert pot.energy_scale != pytest.approx(scale) and not torch.allclose(pot.element_energy, base)
    after = pot.predict(data)
    np.testing.assert_allclose(after[0], before[0], rtol=1e-9, atol=0)  # energies of about -4,200 eV, float32 net
    np.testing.assert_allclose(after[1], before[1], rtol=0, atol=1e-5)  # forces, eV/A


def test_warm_fits_refresh_the_scale_only_when_asked(labelled):
    frames, E, F = labelled
    for refresh in (False, True):
        pot = _pot(seed=2, epochs_initial=2, min_steps=5, epochs_per_round=1, refresh_scale=refresh)
        data = FeaturizedFrames(frames, pot.aev)
        pot.fit(data, E[:6], F[:6], np.random.default_rng(0), idx=np.arange(6))
        first = pot.energy_scale
        hot = F.copy()
        hot[6:] *= 2.0  # later labels with larger forces, as exploring walkers bring
        pot.fit(data, E, hot, np.random.default_rng(1), idx=np.arange(24))
        expected = float(np.sqrt((hot**2).mean())) if refresh else first
        assert pot.energy_scale == pytest.approx(expected, rel=1e-6)


def test_warm_fits_start_again_from_scratch_when_the_labels_have_grown_enough(labelled):
    frames, E, F = labelled
    kw = dict(epochs_initial=3, min_steps=7, epochs_per_round=1, batch_size=4)
    pot = _pot(seed=4, scratch_growth=1.5, **kw)
    data = FeaturizedFrames(frames, pot.aev)
    steps = []
    for K in (8, 11, 12, 17, 18):  # 12 = 1.5 x 8: from scratch; 18 = 1.5 x 12: again; 11 and 17 stay warm
        before = pot.n_updates
        first = [W.detach().clone() for W, _ in pot.layers[0]]
        pot.fit(data, E[:K], F[:K], np.random.default_rng(K), idx=np.arange(K))
        steps.append(pot.n_updates - before)
        assert pot.scratch_labels == (8 if K < 12 else 12 if K < 18 else 18)
        if K in (12, 18):  # fresh initial weights, not a continuation of the last fit
            assert not any(torch.equal(a, W) for a, (W, _) in zip(first, pot.layers[0]))
    # from scratch: max(min_steps, epochs_initial passes); warm: epochs_per_round passes of ceil(K / 4) batches
    assert steps == [max(7, 3 * 2), 3, max(7, 3 * 3), 5, max(7, 3 * 5)]
    # off (the default): every later fit is warm
    plain = _pot(seed=4, **kw)
    for K in (8, 12, 18):
        plain.fit(data, E[:K], F[:K], np.random.default_rng(K), idx=np.arange(K))
    assert plain.scratch_labels == 8 and plain.n_updates == 7 + 3 + 5
    # the same seed and labels give the same weights
    again = _pot(seed=4, scratch_growth=1.5, **kw)
    for K in (8, 11, 12, 17, 18):
        again.fit(data, E[:K], F[:K], np.random.default_rng(K), idx=np.arange(K))
    np.testing.assert_array_equal(again.predict(data)[1], pot.predict(data)[1])
    with pytest.raises(ValueError, match="scratch_growth"):
        EnsembleConfig(scratch_growth=0.9)


def test_warm_fits_ramp_the_learning_rate_up_before_decaying_it():
    from alenv.models.ensemble import learning_rate

    cfg = EnsembleConfig(warm_warmup=0.2, lr_final_fraction=0.01)
    warm = [learning_rate(cfg, 1e-3, s, 100, warm=True) for s in range(100)]
    assert warm[0] == pytest.approx(1e-3 / 21) and warm[19] == pytest.approx(1e-3 * 20 / 21)
    assert all(b > a for a, b in zip(warm[:20], warm[1:21]))  # linear rise over the first 20 steps
    assert warm[20] == pytest.approx(1e-3) and warm[99] < 0.05e-3  # then the cosine decay to 1%
    assert all(b <= a for a, b in zip(warm[20:], warm[21:]))
    cold = [learning_rate(cfg, 1e-3, s, 100, warm=False) for s in range(100)]
    assert cold[0] == pytest.approx(1e-3)  # fits from scratch start at the peak
    # off (the default): the plain cosine of every fit
    plain = EnsembleConfig()
    assert [learning_rate(plain, 1e-3, s, 50, warm=True) for s in (0, 25)] == pytest.approx([1e-3, 1e-3 * 0.505])
    for bad in (dict(warm_warmup=1.0), dict(warm_warmup=-0.1), dict(grad_clip=-1.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            EnsembleConfig(**bad)


def test_gradient_clipping_is_per_member(labelled):
    frames, E, F = labelled
    pot = _pot(seed=5, grad_clip=0.5)
    data = FeaturizedFrames(frames, pot.aev)
    pot.fit(data, E[:8], F[:8], np.random.default_rng(0), idx=np.arange(8), epochs=1)
    params = pot.parameters()
    for p in params:  # member 0 gets a huge gradient, member 1 one under the limit, member 2 none
        p.grad = torch.zeros_like(p)
        p.grad[0] = 100.0
        p.grad[1] = 1e-4
    small = [p.grad[1].clone() for p in params]
    pot._clip_member_gradients(0.5)
    norms = [float(sum(p.grad[m].pow(2).sum() for p in params).sqrt()) for m in range(3)]
    assert norms[0] == pytest.approx(0.5, rel=1e-5) and norms[2] == 0.0
    for p, s in zip(params, small):
        torch.testing.assert_close(p.grad[1], s)  # untouched: under the limit, and not scaled by member 0
