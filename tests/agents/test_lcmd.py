"""LCMD (largest cluster maximum distance): the algorithm against its definition and a brute-force reference,
the selector's feature spaces, a whole tiny episode on model features, and the runner's agent.env setting."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from agents import LCMD, lcmd_select, make_agent
from agents import selectors
from alenv.spaces import picks_to_action

# Two labelled centres (rows 0, 1) and two clusters: A around (0, 0) holds squared distances 1 + 2.25,
# B around (10, 0) holds 1 + 4 + 3.24, so B is the largest cluster and (12, 0) its farthest member.
POINTS = np.array([[0, 0], [10, 0], [1, 0], [0, 1.5], [10, 1], [12, 0], [10, -1.8]], dtype=np.float64)
MASK = np.array([0, 0, 1, 1, 1, 1, 1], dtype=np.int8)


def reference(X: np.ndarray, k: int, mask: np.ndarray, centres: list[int]) -> list[int]:
    """LCMD straight from its definition, every cluster recomputed from scratch at every pick."""
    centres, picks = list(centres), []
    for _ in range(k):
        free = [j for j in np.flatnonzero(mask) if j not in picks]
        if not centres:
            picks.append(max(free, key=lambda j: (X[j] @ X[j], -j)))
            centres.append(picks[-1])
            continue
        d2 = {j: [float(((X[j] - X[c]) ** 2).sum()) for c in centres] for j in free}
        owner = {j: int(np.argmin(d2[j])) for j in free}
        size = {c: sum(min(d2[j]) for j in free if owner[j] == c) for c in set(owner.values())}
        largest = max(size.values())
        pick = max((j for j in free if size[owner[j]] == largest), key=lambda j: (min(d2[j]), -j))
        picks.append(pick)
        centres.append(pick)
    return picks


def test_picks_the_farthest_point_of_the_largest_cluster():
    picks = lcmd_select(POINTS, 5, MASK, conditioned=np.array([0, 1]))
    # B's farthest (12, 0); B again (1 + 3.24 > 3.25): (10, -1.8); then A (3.25 > 1): (0, 1.5); then the
    # clusters of (1, 0) and (10, 1) tie at 1: the lower index first
    assert picks.tolist() == [5, 6, 3, 2, 4]
    assert picks.tolist() == reference(POINTS, 5, MASK, [0, 1])


def test_masked_candidates_are_neither_picked_nor_counted():
    """A masked point far out in A would make A the largest cluster if it counted; it never does."""
    X = np.vstack([POINTS, [[0, 30]]])
    mask = np.append(MASK, 0)
    assert lcmd_select(X, 2, mask, conditioned=np.array([0, 1])).tolist() == [5, 6]
    mask[5] = 0  # and a masked member of B is not picked: the next farthest is
    assert lcmd_select(X, 1, mask, conditioned=np.array([0, 1])).tolist() == [6]
    with pytest.raises(ValueError):
        lcmd_select(X, 6, mask, conditioned=np.array([0, 1]))


def test_without_centres_the_first_pick_has_the_largest_norm():
    picks = lcmd_select(POINTS, 3, np.ones(len(POINTS), dtype=np.int8))
    assert picks[0] == 5  # |(12, 0)| is the largest
    assert picks.tolist() == reference(POINTS, 3, np.ones(len(POINTS), dtype=np.int8), [])


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_brute_force_reference(seed):
    r = np.random.default_rng(seed)
    n, k = 60, 12
    X = r.normal(size=(n, 5)) * r.uniform(0.2, 3.0, size=(n, 1))  # clusters of different spreads
    mask = (r.random(n) < 0.8).astype(np.int8)
    labelled = np.flatnonzero(mask == 0)[: seed]  # seed 0: no centres at all
    picks = lcmd_select(X, k, mask, conditioned=labelled)
    assert len(set(picks.tolist())) == k and np.all(mask[picks] == 1)
    assert picks.tolist() == reference(X, k, mask, labelled.tolist())


def test_centres_given_by_distance_and_id_equal_centres_given_as_rows():
    """The environment gives the labelled set as each candidate's distance to its nearest label and that
    label's id (obs["model_dist_to_train"], obs["model_nearest_train"]): the same picks as the rows."""
    r = np.random.default_rng(7)
    X, labels = r.normal(size=(50, 4)), r.normal(size=(6, 4))
    d = np.sqrt(((X[:, None] - labels[None]) ** 2).sum(-1))
    mask = np.ones(50, dtype=np.int8)
    got = lcmd_select(X, 8, mask, initial_distance=d.min(1), initial_centre=d.argmin(1))
    both = np.vstack([X, labels])
    as_rows = lcmd_select(both, 8, np.append(mask, np.zeros(6, dtype=np.int8)), conditioned=np.arange(50, 56))
    assert got.tolist() == as_rows.tolist()
    with pytest.raises(ValueError, match="initial_centre"):
        lcmd_select(X, 2, mask, initial_distance=d.min(1))


def _obs(features: np.ndarray, mask: np.ndarray, model: bool) -> dict:
    obs = {"candidates": np.zeros((len(mask), 7), np.float32), "mask": mask.copy(), "globals": np.zeros(5, np.float32)}
    obs["embedding"] = np.zeros_like(features, dtype=np.float32) if model else features.astype(np.float32)
    if model:
        obs["model_features"] = features.astype(np.float32)
    return obs


def test_selector_reads_model_features_and_falls_back_to_the_embedding_once(monkeypatch):
    monkeypatch.setattr(selectors, "_warned_fallback", set())
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    agent = make_agent("lcmd")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning when the model features are there
        picks = agent.act(_obs(POINTS, MASK, model=True), {}, 3, rng)
    assert picks.tolist() == [5, 6, 3] and picks.dtype == np.int64
    assert rng.bit_generator.state == state  # deterministic: the rng is never drawn from
    with pytest.warns(UserWarning, match="model_features"):
        fallback = agent.act(_obs(POINTS, MASK, model=False), {}, 3, rng)
    assert fallback.tolist() == [5, 6, 3]  # the same points as the embedding: the same picks
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        agent.act(_obs(POINTS, MASK, model=False), {}, 3, rng)
    # on the fly a masked slot is empty, not labelled: no centres, so the largest norm goes first
    assert LCMD()(_obs(POINTS, MASK, model=True), {"any_subset": True}, None, 1, MASK, rng).tolist() == [5]


def test_tiny_episode_on_model_features(make_env):
    """A whole Ethanol-GFN2-tiny episode: k distinct unlabelled picks per round, reproducible, and every
    pick's nearest labelled configuration afterwards is itself (distance 0)."""
    env = make_env("alenv/Ethanol-GFN2-tiny-v3", model_features=16)
    agent = make_agent("lcmd")
    obs, info = env.reset(seed=0)
    n_train = env.unwrapped.task.n_initial
    labelled: set[int] = set()
    terminated = False
    while not terminated:
        assert set(obs) >= {"model_features", "model_dist_to_train", "model_nearest_train"}
        assert obs["model_nearest_train"].max() < n_train  # rows of the training set
        picks = agent.act(obs, info, info["max_picks"], np.random.default_rng(1))
        assert len(set(picks.tolist())) == info["max_picks"] and np.all(obs["mask"][picks] == 1)
        np.testing.assert_array_equal(agent.act(obs, info, info["max_picks"], np.random.default_rng(2)), picks)
        assert not labelled & set(picks.tolist())
        labelled |= set(picks.tolist())
        obs, _, terminated, _, info = env.step(picks_to_action(picks, obs, info))
        n_train = len(env.unwrapped.episode.train)
        ok = [int(p) for p in picks if int(p) not in info["failed"]]
        np.testing.assert_allclose(obs["model_dist_to_train"][ok], 0.0, atol=1e-4)
    assert len(labelled) == env.unwrapped.task.budget


def test_agent_config_turns_the_model_features_on():
    """conf/agent/lcmd.yaml sets the task setting model_features (agent.env); task.overrides still wins."""
    from hydra import compose, initialize_config_dir

    from alenv.round_env import file_overrides
    from alenv.tasks import get_task
    from benchmarks.run import CONFIG_DIR, task_overrides

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["task=ethanol_gfn2_tiny", "agent=lcmd"])
        top = compose("config", overrides=["task=ethanol_gfn2_tiny", "agent=lcmd", "+task.overrides.model_features=32"])
        plain = compose("config", overrides=["task=ethanol_gfn2_tiny", "agent=fps"])
    assert task_overrides(cfg)["model_features"] == 512
    assert task_overrides(top)["model_features"] == 32
    assert "model_features" not in task_overrides(plain)
    spec = get_task(cfg.task.id).with_overrides(**file_overrides(task_overrides(cfg)))
    assert spec.model_features == 512 and spec.data_key() == get_task(cfg.task.id).data_key()
