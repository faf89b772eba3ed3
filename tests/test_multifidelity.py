"""Multi-fidelity tasks: virtual candidates (frame, level), a budget in seconds, a learner of every level,
and the strategies that choose the level (rMD17 ethanol's PBE labels over GFN2-xTB computed on demand)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from agents import MF_STRATEGIES, make_agent
from alenv.spaces import picks_to_action
from alenv.tasks import TASKS

TASK = "alenv/Ethanol-MF-tiny-v0"


@pytest.fixture(scope="module")
def mf_env(make_env):
    return make_env(TASK, model="ridge")


def _play(env, agent_name: str, seed: int = 0) -> list[dict]:
    agent = make_agent(agent_name)
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    out, done = [], False
    while not done:
        picks = agent.act(obs, info, info["max_picks"], rng)
        assert len(picks) and np.all(obs["mask"][picks] == 1)
        assert obs["cost"][picks].sum() <= info["max_cost"] * (1 + 1e-9)
        obs, reward, done, _, info = env.step(picks_to_action(picks, obs, info))
        out.append({"chosen": info["chosen"], "reward": reward, **info["metrics"]})
    return out


def test_check_env_and_spaces(mf_env):
    check_env(mf_env.unwrapped, skip_render_check=True)
    obs, info = mf_env.reset(seed=0)
    u = mf_env.unwrapped
    N, L = u.n_pool, u.n_levels
    assert L == 2 and obs["candidates"].shape[0] == N * L and obs["level"].tolist() == [0] * N + [1] * N
    np.testing.assert_allclose(obs["cost"], np.repeat([0.0033, 1.48], N), rtol=1e-6)
    assert info["any_subset"] and info["max_cost"] == pytest.approx(5 * 1.48)  # batch_size x top_cost
    assert mf_env.observation_space.contains(obs)


def test_costs_are_charged_and_the_budget_holds(mf_env):
    spec = mf_env.unwrapped.task
    for name in sorted(MF_STRATEGIES):
        rounds = _play(mf_env, name)
        costs = np.array([r["cost_used"] for r in rounds])
        assert np.all(np.diff(costs) > 0) and costs[-1] <= spec.budget * spec.top_cost * (1 + 1e-9)
        u = mf_env.unwrapped
        cheap, top = len(u.level_labels(0)), len(u.level_labels(1)) - spec.n_initial
        assert costs[-1] == pytest.approx(cheap * 0.0033 + top * 1.48)
        assert rounds[-1]["n_labels[level=0]"] == cheap and rounds[-1]["n_labels[level=1]"] == top + spec.n_initial
        # nothing affordable is left unbought: the episode ends when no available candidate fits
        left = spec.budget * spec.top_cost - costs[-1]
        bought = {(0, i) for i in u.level_labels(0).index} | {(1, i) for i in u.level_labels(1).index}
        unbought = [c for c, lv in ((0.0033, 0), (1.48, 1)) for i in range(u.n_pool) if (lv, i) not in bought]
        assert not unbought or min(unbought) > left


def test_strategies_choose_levels_as_named(mf_env):
    N = mf_env.unwrapped.n_pool
    top = _play(mf_env, "mf-top")
    assert all(min(r["chosen"]) >= N for r in top)  # top level only
    assert top[-1]["n_labels[level=0]"] == 0
    first = _play(mf_env, "mf-cheap-first")
    assert sorted(i for i in first[0]["chosen"] if i < N) == list(range(N))  # every frame cheaply, round one
    greedy = _play(mf_env, "mf-cost-greedy")
    assert greedy[-1]["n_labels[level=0]"] > 0 and greedy[-1]["n_labels[level=1]"] > 5


def test_same_seed_same_episode(mf_env):
    a, b = _play(mf_env, "mf-random", seed=3), _play(mf_env, "mf-random", seed=3)
    assert [r["chosen"] for r in a] == [r["chosen"] for r in b]
    assert [r["force_mae"] for r in a] == [r["force_mae"] for r in b]


def test_cheap_labels_help_the_top_level(make_env):
    """With the task's neural committee, every xTB frame (0.3 s) and the top level by uncertainty beats the top
    level alone at equal cost (seeds 0-2 here: 0.23-0.29 against 0.34-0.35 eV/A; the closed-form ridge
    committee cannot use the cheap level: its error is its capacity, which a correction does not lower)."""
    env = make_env(TASK)
    top, cheap = _play(env, "mf-top"), _play(env, "mf-cheap-first")
    assert cheap[-1]["force_mae"] < 0.9 * top[-1]["force_mae"]


def test_bad_actions_are_refused(mf_env):
    obs, info = mf_env.reset(seed=0)
    u, V = mf_env.unwrapped, len(obs["mask"])
    with pytest.raises(ValueError, match="0/1 vector"):
        mf_env.step(np.zeros(V - 1, dtype=np.int8))
    with pytest.raises(ValueError, match="labels nothing"):
        mf_env.step(np.zeros(V, dtype=np.int8))
    over = np.zeros(V, dtype=np.int8)
    over[u.n_pool : u.n_pool + 6] = 1  # six top labels, five fit in a round
    with pytest.raises(ValueError, match="at most 7.4 s this round"):
        mf_env.step(over)
    ok = np.zeros(V, dtype=np.int8)
    ok[[0, u.n_pool]] = 1
    mf_env.step(ok)
    with pytest.raises(ValueError, match="masked"):
        mf_env.step(ok)


def test_single_level_strategies_and_mf_strategies_do_not_mix(ethanol_tiny_env):
    obs, info = ethanol_tiny_env.reset(seed=0)
    with pytest.raises(ValueError, match="multi-fidelity tasks"):
        make_agent("mf-top").act(obs, info, info["max_picks"], np.random.default_rng(0))
    assert make_agent("mf_cost_greedy").name == "mf-cost-greedy"  # Hydra's spelling


def test_labels_of_every_level_are_saved(mf_env, tmp_path):
    import ase.io

    _play(mf_env, "mf-cheap-first")
    mf_env.unwrapped.save_labels(tmp_path / "labels.extxyz")
    cheap = ase.io.read(tmp_path / "labels.level0.extxyz", ":")
    top = ase.io.read(tmp_path / "labels.extxyz", ":")  # the task's own level where single-level tools look
    assert len(cheap) == len(mf_env.unwrapped.level_labels(0)) and len(top) == len(mf_env.unwrapped.level_labels(1))
    # xTB and PBE total energies of ethanol differ by thousands of eV: each file holds its own level
    assert abs(np.mean([a.get_potential_energy() for a in top]) - np.mean([a.get_potential_energy() for a in cheap])) > 1000


def test_levels_are_checked():
    spec = TASKS["Ethanol-MF-tiny"]
    with pytest.raises(ValueError, match="below the top level"):
        spec.with_overrides(levels=({"oracle": "xtb", "cost": 2.0},))
    with pytest.raises(ValueError, match="unknown oracle"):
        spec.with_overrides(levels=({"oracle": "dft-ish", "cost": 0.1},))
    with pytest.raises(ValueError, match="at least one cheaper level"):
        spec.with_overrides(levels=())
    with pytest.raises(ValueError, match="multi-fidelity tasks"):
        TASKS["Ethanol-GFN2-tiny"].with_overrides(levels=({"oracle": "xtb", "cost": 0.1},))
    with pytest.raises(ValueError, match="top_cost"):
        spec.with_overrides(top_cost=0.0)
    assert dataclasses.replace(spec).levels == ({"oracle": "xtb", "kwargs": {}, "cost": 0.0033},)
    hf = TASKS["Ethanol-MF-HF"]  # the 1:9 pair: HF/STO-3G through PySCF below PBE/def2-SVP
    assert hf.levels == ({"oracle": "dft", "kwargs": {"xc": "HF", "basis": "sto-3g"}, "cost": 0.16},)
    assert 8 < hf.top_cost / hf.levels[0]["cost"] < 10


def test_a_pool_env_refuses_a_multi_fidelity_task(make_env):
    with pytest.raises(ValueError, match="mf-mode task; use alenv.multifidelity.MultiFidelityEnv"):
        from alenv.env import ActiveLearningEnv

        ActiveLearningEnv(task="Ethanol-MF-tiny")


def test_multilevel_potential_sums_its_levels(mf_env):
    """Only top labels: exactly the top committee. Both levels: the sum of both, member by member."""
    from alenv.models.multilevel import MultiLevelPotential

    u = mf_env.unwrapped
    mf_env.reset(seed=0)
    data, rows = u.candidates, np.arange(20)
    E1, F1 = (np.array([a.get_potential_energy() for a in u.pool_frames[:20]]),
              np.stack([a.get_forces() for a in u.pool_frames[:20]]))
    pot = MultiLevelPotential(u.representation, "ridge", {}, 2, seed=0)
    rng = np.random.default_rng(0)
    pot.fit_levels(data, [None, (E1, F1, rows)], rng, [False, True])
    E, F = pot.predict(data, idx=rows)
    E_top, F_top = pot.levels[1].predict(data, idx=rows)
    np.testing.assert_array_equal(E, E_top)
    np.testing.assert_array_equal(F, F_top)
    E0, F0 = E1 - 3000.0, F1 * 0.9  # a cheap level: offset energies, scaled forces
    pot.fit_levels(data, [(E0, F0, rows), (E1, F1, rows)], rng, [True, False])
    E, F = pot.predict(data, idx=rows)
    Ea, Fa = pot.levels[0].predict(data, idx=rows)
    Eb, Fb = pot.levels[1].predict(data, idx=rows)
    np.testing.assert_allclose(E, Ea + Eb)
    np.testing.assert_allclose(F, Fa + Fb)
    assert abs(E.mean(0) - E1).mean() < 1.0  # the correction carried the 3000 eV offset


def test_benchmark_plays_resumes_and_reports(alenv_cache, tmp_path, monkeypatch, capsys):
    """benchmarks.multifidelity end to end at tiny size: episodes saved, a rerun plays none, a paired report."""
    import json
    import sys

    from benchmarks import multifidelity

    argv = ["multifidelity", "--task", "Ethanol-MF-tiny", "--agents", "mf-top", "mf-cheap-first", "--seeds", "0", "1",
            "--model", "ridge", "--target", "400", "--cache-dir", str(alenv_cache), "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    multifidelity.main()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert sorted((r["agent"], r["seed"]) for r in saved["runs"]) == [
        ("mf-cheap-first", 0), ("mf-cheap-first", 1), ("mf-top", 0), ("mf-top", 1)]
    costs = [r["cost"] for r in saved["runs"][0]["rounds"]]
    assert costs[0] == 0 and costs[-1] <= 15 * 1.48 * (1 + 1e-9)
    capsys.readouterr()
    multifidelity.main()  # resumes: nothing left to play
    assert "seed" not in capsys.readouterr().out.split("# Multi-fidelity")[0]
    report = (tmp_path / "report.md").read_text()
    assert "| mf-cheap-first |" in report and "seconds to 400 meV/Å" in report
    assert (tmp_path / "curves.png").stat().st_size > 1000
    monkeypatch.setattr(sys, "argv", argv[:-2] + ["--budget", "5", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="other settings"):
        multifidelity.main()


def test_failed_cheap_labels_are_charged_kept_and_never_trained_on(mf_env, monkeypatch):
    """An SCF that fails at a level: paid for, kept, masked; the round refits only on what succeeded."""
    from alenv.types import Label

    u = mf_env.unwrapped
    obs, info = mf_env.reset(seed=1)
    real = u.level_oracles[0].label

    def half_failing(frames):
        labels = real(frames)
        return [Label(np.nan, np.full((len(a), 3), np.nan), lab.seconds, error="SCF not converged") if k % 2 else lab
                for k, (a, lab) in enumerate(zip(frames, labels))]

    monkeypatch.setattr(u.level_oracles[0], "label", half_failing)
    action = np.zeros(len(obs["mask"]), dtype=np.int8)
    action[:10] = 1  # ten cheap frames, five fail
    obs, reward, done, _, info = mf_env.step(action)
    assert info["metrics"]["cost_used"] == pytest.approx(10 * 0.0033)
    assert sorted(info["failed"]) == [1, 3, 5, 7, 9] and info["metrics"]["n_failed"] == 5
    assert len(u.level_labels(0)) == 10 and len(u.episode.levels[0].train.rows) == 5
    assert not obs["mask"][:10].any()  # failed ones too: paid for, never offered again
    assert np.isfinite(reward)


def test_sampled_actions_play_a_whole_episode(mf_env):
    """``action_space.sample()`` is always a valid action, to the end of the budget."""
    obs, info = mf_env.reset(seed=2)
    space = mf_env.action_space
    space.seed(2)
    done, rounds = False, 0
    while not done:
        action = space.sample()
        assert space.contains(action) and action.sum() > 0
        obs, _, done, _, info = mf_env.step(action)
        rounds += 1
    assert rounds >= 3 and info["max_picks"] == 0 and info["max_cost"] == 0.0
    assert not space.contains(np.zeros(len(obs["mask"]), dtype=np.int8))


def test_single_level_instruments_are_refused(mf_env):
    from benchmarks.references import make_reference

    mf_env.reset(seed=0)
    with pytest.raises(NotImplementedError, match="multi-fidelity"):
        mf_env.unwrapped.true_labels()
    with pytest.raises(NotImplementedError):
        make_reference("true-error", mf_env).act(*mf_env.reset(seed=0), 1, np.random.default_rng(0))


def test_the_runner_plays_a_multi_fidelity_task(tmp_path, alenv_cache):
    """``python -m benchmarks.run task=ethanol_mf_tiny agent=mf_cost_greedy``: results record the levels and
    costs; the top level's labels go where single-level tools read them, the cheap ones beside them."""
    import json

    import ase.io
    from hydra import compose, initialize_config_dir

    from benchmarks.run import CONFIG_DIR, run

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["task=ethanol_mf_tiny", "agent=mf_cost_greedy", "model=ridge", "seed=0",
                                           f"cache_dir={alenv_cache}", "progress=false"])
    run(cfg, tmp_path)
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["complete"] and res["settings"]["top_cost"] == 1.48
    assert res["settings"]["levels"] == [{"oracle": "xtb", "kwargs": {}, "cost": 0.0033}]
    last = res["steps"][-1]["metrics"]
    top = ase.io.read(tmp_path / "labels.extxyz", ":")
    cheap = ase.io.read(tmp_path / "labels.level0.extxyz", ":")
    assert len(top) == last["n_labels[level=1]"] and len(cheap) == last["n_labels[level=0]"] > 0


def test_each_level_shows_its_own_committee(mf_env):
    """Before any cheap label the cheap rows show the top committee's spreads; after, the cheap committee's."""
    from alenv.observe import CANDIDATE_FEATURES

    u = mf_env.unwrapped
    N, spread = u.n_pool, CANDIDATE_FEATURES.index("force_std_max")
    obs, info = mf_env.reset(seed=4)
    np.testing.assert_array_equal(obs["candidates"][:N, :5], obs["candidates"][N:, :5])
    action = np.zeros(len(obs["mask"]), dtype=np.int8)
    action[:30] = 1  # half the pool at the cheap level
    obs, *_ = mf_env.step(action)
    _, F0 = u.potential.predict_level(u.candidates, 0, idx=np.arange(N))
    per_atom = np.linalg.norm(F0.std(0), axis=-1).max(-1)  # largest per-atom force spread of the cheap committee
    np.testing.assert_allclose(obs["candidates"][:N, spread], per_atom, rtol=1e-5)
    assert not np.allclose(obs["candidates"][:N, spread], obs["candidates"][N:, spread])


def test_the_top_level_runs_md_without_an_oracle(mf_env):
    """The summed committee is an ASE calculator: forces are minus the gradient of its energy (finite
    differences), and a few Langevin steps run on it alone."""
    from ase import units
    from ase.md.langevin import Langevin

    u = mf_env.unwrapped
    obs, info = mf_env.reset(seed=0)
    action = np.zeros(len(obs["mask"]), dtype=np.int8)
    action[[0, 1, 2, u.n_pool]] = 1  # both levels fitted
    mf_env.step(action)
    atoms = u.pool_frames[5].copy()
    atoms.calc = u.potential.as_calculator()
    F = atoms.get_forces()
    h, (i, c) = 1e-3, (3, 1)  # as check_potential: float32 descriptors
    plus, minus = atoms.copy(), atoms.copy()
    plus.positions[i, c] += h
    minus.positions[i, c] -= h
    plus.calc = minus.calc = u.potential.as_calculator()
    assert F[i, c] == pytest.approx(-(plus.get_potential_energy() - minus.get_potential_energy()) / (2 * h), rel=2e-3, abs=1e-4)
    dyn = Langevin(atoms, 0.5 * units.fs, temperature_K=300, friction=0.01, rng=np.random.default_rng(0))
    dyn.run(10)
    assert np.isfinite(atoms.get_potential_energy()) and np.isfinite(atoms.positions).all()


def test_mf_top_refuses_a_round_where_no_top_label_fits():
    """Rather than buy a cheap label it was not asked to, mf-top says why it cannot act."""
    obs = {"mask": np.ones(4, dtype=np.int8), "level": np.array([0, 0, 1, 1]),
           "cost": np.array([0.1, 0.1, 1.0, 1.0], dtype=np.float32),
           "candidates": np.ones((4, 7), dtype=np.float32)}
    info = {"max_cost": 0.5, "max_picks": 4, "any_subset": True}
    with pytest.raises(ValueError, match="no top-level candidate fits"):
        make_agent("mf-top").act(obs, info, 4, np.random.default_rng(0))
    picks = make_agent("mf-cost-greedy").act(obs, info, 4, np.random.default_rng(0))
    assert sorted(picks.tolist()) == [0, 1]  # the others fill what fits


def test_report_only_with_nothing_played_says_so(tmp_path, monkeypatch):
    import sys

    from benchmarks import multifidelity

    monkeypatch.setattr(sys, "argv", ["multifidelity", "--task", "Ethanol-MF-tiny", "--report-only", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="no episode to report"):
        multifidelity.main()
