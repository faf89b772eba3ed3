"""The learned policy's scorer: the same on any pool size and candidate order, a proper distribution over
batches, checkpoints that refuse the wrong inputs, and whole episodes in both modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.policy import INPUT_SETS, POLICY_INPUTS, LearnedPolicy, RoundContext, Scorer, input_set
from alenv.observe import CANDIDATE_FEATURES, GLOBAL_FEATURES
from alenv.spaces import picks_to_action


def _policy(seed: int = 0, temperature: float = 0.0) -> LearnedPolicy:
    torch.manual_seed(seed)
    return LearnedPolicy(Scorer((16, 16)), temperature=temperature)


def _obs(n: int, seed: int = 0, masked: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    cand = np.abs(rng.lognormal(size=(n, len(CANDIDATE_FEATURES)))).astype(np.float32)
    mask = np.ones(n, dtype=np.int8)
    mask[rng.choice(n, masked, replace=False)] = 0
    return {"candidates": cand, "embedding": rng.normal(size=(n, 4)).astype(np.float32), "mask": mask,
            "globals": rng.uniform(size=len(GLOBAL_FEATURES)).astype(np.float32)}


def _permuted(obs: dict, perm: np.ndarray) -> dict:
    return {k: (v[perm] if k != "globals" else v) for k, v in obs.items()}


def test_scores_and_picks_do_not_depend_on_the_order_of_the_candidates():
    obs, policy = _obs(40), _policy()
    perm = np.random.default_rng(1).permutation(40)
    other = _permuted(obs, perm)  # candidate perm[j] of obs is candidate j of other
    a = policy.act(obs, {}, 6, np.random.default_rng(0))
    b = policy.act(other, {}, 6, np.random.default_rng(0))
    np.testing.assert_array_equal(a, perm[b])
    x = RoundContext.of(obs).inputs(RoundContext.of(obs).dist_to_train, 0.0)
    y = RoundContext.of(other).inputs(RoundContext.of(other).dist_to_train, 0.0)
    rows_a, rows_b = RoundContext.of(obs).rows, RoundContext.of(other).rows
    order = {int(r): i for i, r in enumerate(rows_a)}
    np.testing.assert_allclose(y, x[[order[int(perm[r])] for r in rows_b]], rtol=1e-6, atol=1e-6)
    assert x.shape == (37, len(POLICY_INPUTS)) and np.isfinite(x).all()


def test_one_network_plays_pools_of_any_size_and_picks_distinct_available_candidates():
    policy = _policy(temperature=1.0)
    for n in (8, 60, 2000):
        obs = _obs(n, seed=n)
        picks = policy.act(obs, {}, 5, np.random.default_rng(n))
        assert len(set(picks.tolist())) == 5 and np.all(obs["mask"][picks] == 1)
    with pytest.raises(ValueError, match="cannot select 5 of 4"):
        policy.act(_obs(7, masked=3), {}, 5, np.random.default_rng(0))


def test_log_prob_is_a_distribution_over_ordered_batches():
    obs, policy = _obs(6, masked=1), _policy(3)
    rows = np.flatnonzero(obs["mask"])
    with torch.no_grad():
        one = sum(float(torch.exp(policy.log_prob(obs, [r], 1))) for r in rows)
        two = sum(float(torch.exp(policy.log_prob(obs, [r, s], 2))) for r in rows for s in rows if r != s)
    assert one == pytest.approx(1.0, abs=1e-5) and two == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="not available"):
        policy.log_prob(obs, [int(np.flatnonzero(obs["mask"] == 0)[0])], 1)
    # the gradient reaches the weights: a training step can raise the expert batch's probability
    lp = policy.log_prob(obs, [int(rows[0]), int(rows[1])], 2)
    lp.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.scorer.parameters())


def test_checkpoint_round_trip_and_refusals(tmp_path):
    policy, obs = _policy(5), _obs(30)
    path = tmp_path / "policy.pt"
    policy.save(path, trained_on=["Ethanol-GFN2-tiny"])
    again = LearnedPolicy.load(path)
    np.testing.assert_array_equal(again.act(obs, {}, 4, np.random.default_rng(0)), policy.act(obs, {}, 4, np.random.default_rng(0)))
    ck = torch.load(path, weights_only=True)
    ck["inputs"] = ck["inputs"][:-1] + ["an_input_no_longer_computed"]
    torch.save(ck, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="trained on inputs"):
        LearnedPolicy.load(tmp_path / "old.pt")
    ck["inputs"] = ck["inputs"][:-1]  # known inputs, but one fewer than the weights were trained on
    torch.save(ck, tmp_path / "short.pt")
    with pytest.raises(ValueError, match="do not fit"):
        LearnedPolicy.load(tmp_path / "short.pt")
    with pytest.raises(FileNotFoundError, match="no policy checkpoint"):
        LearnedPolicy.load(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="temperature"):
        LearnedPolicy(policy.scorer, temperature=-1.0)


@pytest.mark.parametrize("env_id", ["alenv/Ethanol-GFN2-tiny-v3", "alenv/Ethanol-GFN2-OTF-tiny-v3"])
def test_whole_episodes_in_pool_and_on_the_fly_mode(make_env, env_id):
    env = make_env(env_id, model="ridge")
    policy = _policy(7)
    obs, info = env.reset(seed=0)
    done, rounds = False, 0
    while not done:
        picks = policy.act(obs, info, info["max_picks"], np.random.default_rng(0))
        obs, _, terminated, truncated, info = env.step(picks_to_action(picks, obs, info))
        done, rounds = terminated or truncated, rounds + 1
    assert rounds >= 2 and info["metrics"]["n_labels"] > env.unwrapped.task.n_initial


def test_a_scorer_on_a_subset_of_inputs_reads_only_those(tmp_path):
    torch.manual_seed(3)
    mix = LearnedPolicy(Scorer((), "mix"))  # no hidden layer: a weighted sum of uncertainty and distance
    assert len(list(mix.scorer.parameters())) == 2 and mix.scorer.net[0].weight.shape == (1, 2)
    ctx = RoundContext.of(_obs(25))
    x = ctx.inputs(ctx.dist_to_train, 0.0)
    unread = [j for j, n in enumerate(POLICY_INPUTS) if n not in INPUT_SETS["mix"]]
    y = x.copy()
    y[:, unread] = np.random.default_rng(0).normal(size=(len(x), len(unread)))
    torch.testing.assert_close(mix.scorer(torch.from_numpy(y)), mix.scorer(torch.from_numpy(x)))
    w = mix.scorer.net[0].weight.detach()[0].double().numpy()
    cols = [POLICY_INPUTS.index(n) for n in INPUT_SETS["mix"]]
    np.testing.assert_allclose(mix.scorer(torch.from_numpy(x)).detach().double().numpy(),
                               x[:, cols] @ w + float(mix.scorer.net[0].bias), rtol=1e-5, atol=1e-6)
    mix.save(tmp_path / "mix.pt")
    again = LearnedPolicy.load(tmp_path / "mix.pt")
    assert again.scorer.inputs == INPUT_SETS["mix"]
    obs = _obs(30, seed=2)
    np.testing.assert_array_equal(again.act(obs, {}, 5, np.random.default_rng(0)), mix.act(obs, {}, 5, np.random.default_rng(0)))
    # ablation sets drop what they say, and bad names are refused
    assert not any(n.startswith("global_") for n in input_set("no-learner-state"))
    assert "rank_crowding" not in input_set("no-density-distance") and "log_dist_to_chosen" not in input_set("no-density-distance")
    assert input_set("z_log_force_std_max, picked_fraction") == ("z_log_force_std_max", "picked_fraction")
    for bad in ("nonsense", "z_log_force_std_max,z_log_force_std_max", ""):
        with pytest.raises(ValueError, match="inputs must be"):
            input_set(bad)
    with pytest.raises(ValueError, match="takes all"):
        mix.scorer(torch.zeros(3, 2))
