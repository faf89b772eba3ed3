"""The Hydra runner end to end: one episode writes its results, multiruns through each launcher, sweeps over
settings and groups keep their own folders. The configs themselves are checked in test_configs.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from benchmarks.run import CONFIG_DIR as CONF

ROOT = Path(__file__).resolve().parents[2]


def _multirun(tmp_path: Path, cache: Path, *overrides: str) -> list[Path]:
    """Run ``python -m benchmarks.run --multirun`` from the repository root; the results files it wrote."""
    env = {**os.environ, "ALENV_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "benchmarks.run", "--multirun", *overrides, "progress=false", f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sorted(tmp_path.rglob("results.json"))


def test_one_episode_writes_results(tmp_path: Path, alenv_cache: Path) -> None:
    from benchmarks.run import run

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["task=ethanol_gfn2_tiny", "agent=hybrid", "seed=3", f"cache_dir={alenv_cache}", "progress=false"],
        )
    final = run(cfg, tmp_path)
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["complete"] is True
    assert res["config"]["agent"]["name"] == "hybrid" and res["seed"] == 3
    steps = res["steps"]
    assert len(steps) == 3  # budget 15 / batch 5
    assert [s["metrics"]["n_labels"] for s in steps] == [10, 15, 20]
    chosen = [i for s in steps for i in s["chosen"]]
    assert len(chosen) == len(set(chosen)) == 15
    assert final["force_mae"] == steps[-1]["metrics"]["force_mae"]
    summary = res["summary"]  # CPU time beside wall time: an idle-core estimate on a shared machine
    assert 0 < summary["cpu_seconds"] and 0 < summary["wall_seconds"]
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000
    import ase.io

    labelled = ase.io.read(tmp_path / "labels.extxyz", index=":")
    assert len(labelled) == 20
    # a restarted sweep skips the finished run: same answer, results file untouched
    stamp = (tmp_path / "results.json").stat().st_mtime_ns
    assert run(cfg, tmp_path) == final
    assert (tmp_path / "results.json").stat().st_mtime_ns == stamp
    # a partial run (no complete results.json) is run again
    (tmp_path / "results.json").write_text('{"complete": false}')
    assert run(cfg, tmp_path)["force_mae"] == final["force_mae"]
    assert json.loads((tmp_path / "results.json").read_text())["complete"] is True


def test_true_error_reference_runs_and_is_marked(tmp_path: Path, alenv_cache: Path) -> None:
    """The cheating reference runs through the runner and its results are flagged as cheating."""
    from benchmarks.run import run

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["task=ethanol_gfn2_tiny", "agent=true_error", "seed=0", f"cache_dir={alenv_cache}", "progress=false"],
        )
    run(cfg, tmp_path)
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["cheating"] is True and res["agent"] == "true-error"


@pytest.mark.slow  # a second launcher; the default joblib one is tested by the rest
def test_multirun_through_submitit_local(tmp_path: Path, alenv_cache: Path) -> None:
    """The cluster launcher path (Hydra's submitit plugin) with its local executor: one job per process."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    results = _multirun(
        tmp_path, alenv_cache, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
        "task=cu_emt_tiny", "agent=random,fps", "seed=0",
    )
    assert {json.loads(p.read_text())["agent"] for p in results} == {"random", "fps"}
    assert all(json.loads(p.read_text())["complete"] for p in results)


@pytest.mark.slow  # a sweep of its own (9 s); folders per variant are also checked by composing (test_configs)
def test_jobs_with_other_settings_get_their_own_folders(tmp_path: Path, alenv_cache: Path) -> None:
    """Two jobs that differ only in an agent setting must not overwrite each other, nor be averaged."""
    results = _multirun(
        tmp_path, alenv_cache, "task=cu_emt_tiny", "agent=uncertainty", "agent.kwargs.feature=energy_std,force_std_max",
        "seed=0",
    )
    assert len(results) == 2
    variants = {json.loads(p.read_text())["variant"] for p in results}
    assert variants == {"agent.kwargs.feature=energy_std", "agent.kwargs.feature=force_std_max"}
    from benchmarks.report import load_runs

    runs, _ = load_runs([tmp_path])
    assert len({r["agent"] for r in runs}) == 2  # two report lines, not one average


@pytest.mark.slow  # a sweep of its own (8 s); the per-cost reward itself is tested in test_metrics and test_configs
def test_sweep_over_models_with_the_per_cost_reward(tmp_path: Path, alenv_cache: Path) -> None:
    """``model=bp_ensemble,ridge reward=per_cost``: two folders, each run with its model, rewards per oracle second."""
    results = _multirun(
        tmp_path, alenv_cache, "task=ethanol_gfn2_tiny", "agent=random", "model=bp_ensemble,ridge", "reward=per_cost",
        "seed=0",
    )
    runs = {json.loads(p.read_text())["settings"]["model"]: (p, json.loads(p.read_text())) for p in results}
    assert sorted(runs) == ["bp-ensemble", "ridge"] and len({p.parent for p, _ in runs.values()}) == 2
    for model, (path, res) in runs.items():
        assert res["variant"] == f"model={model.replace('-', '_')},reward=per_cost"
        assert res["overrides"]["model"] == model and res["settings"]["reward_per_cost"] is True
        rows = [res["initial"]] + res["steps"]  # the reward follows the validation error, never the test error
        for before, after, step in zip(rows, rows[1:], res["steps"]):
            gain = np.log(before["validation"]["force_mae"]) - np.log(after["validation"]["force_mae"])
            paid = after["metrics"]["oracle_seconds"] - before["metrics"]["oracle_seconds"]
            assert step["reward"] == pytest.approx(gain / paid)
    assert runs["ridge"][1]["settings"]["model_kwargs"]["alpha"] == 1e-4


@pytest.mark.slow  # starts a local Ray cluster: 1-5 minutes on 2 cores, the longest test of the suite
def test_multirun_through_ray_local(tmp_path: Path, alenv_cache: Path) -> None:
    """The Ray launcher path (Hydra's Ray plugin) on a local Ray instance started by the launcher, which
    keeps its session files (logs, sockets) in the sweep's folder, not in /tmp/ray."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    results = _multirun(tmp_path, alenv_cache, "hydra/launcher=ray_local", "task=cu_emt_tiny", "agent=random,fps", "seed=0")
    runs = [json.loads(p.read_text()) for p in results]
    assert {r["agent"] for r in runs} == {"random", "fps"}
    assert all(r["complete"] for r in runs)
    assert os.getpid() not in {r["pid"] for r in runs}
    sessions = list((tmp_path / ".ray").glob("session_2*"))
    assert len(sessions) == 1 and (sessions[0] / "logs").is_dir()
    from benchmarks.jobs import ray_link

    ray_link((tmp_path / ".ray").resolve()).unlink(missing_ok=True)  # the short link to it, if one was made


@pytest.mark.slow  # 37 s: one episode through the runner (test_one_episode_writes_results) and the report's aggregation (tests/benchmarks/test_report_aggregate.py) run by default
def test_tiny_multirun_through_the_report(tmp_path: Path, alenv_cache: Path) -> None:
    """``python -m benchmarks.run --multirun``: 2 strategies x 2 seeds, swept from the command line through the
    joblib launcher, then aggregated by ``python -m benchmarks.report``."""
    sweep = tmp_path / "sweep"
    results = _multirun(sweep, alenv_cache, "task=ethanol_gfn2_tiny", "agent=random,uncertainty", "seed=0,1")
    assert len(results) == 4
    # the command line found conf/ and ran the jobs in the joblib launcher's workers, not in this process
    assert os.getpid() not in {json.loads(p.read_text())["pid"] for p in results}
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.report", str(sweep), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import csv

    rows = list(csv.DictReader(open(out / "runs.csv")))
    assert len(rows) == 4 * 4  # 4 runs x (initial + 3 rounds)
    assert {r["agent"] for r in rows} == {"random", "uncertainty"}
    md = (out / "report.md").read_text()
    # the report's final force MAE of each strategy is the mean over seeds of what the runs wrote
    for agent in ("random", "uncertainty"):
        finals = [json.loads(p.read_text())["steps"][-1]["metrics"]["force_mae"] for p in results if f"/{agent}/" in str(p)]
        assert f"| {agent} | 2 | 20 | {1000 * np.mean(finals):.1f} ± " in md, md
    assert (out / "curves_Ethanol-GFN2-tiny-v3.png").stat().st_size > 1000


def test_on_the_fly_episode_through_the_runner_and_report(tmp_path: Path, alenv_cache: Path) -> None:
    """An on-the-fly task runs through the runner (trust window: any subset) and the report's OTF table."""
    from benchmarks.report import load_runs, markdown
    from benchmarks.run import run

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["task=ethanol_gfn2_otf_tiny", "agent=trust_window", "seed=0", f"cache_dir={alenv_cache}", "progress=false"],
        )
    final = run(cfg, tmp_path / "run")
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["complete"] and res["task"] == "alenv/Ethanol-GFN2-OTF-tiny-v3"
    # the recorded rounds add up: MD steps (one round of MD after reset and after every round but the last),
    # failures, labels paid for
    from alenv.tasks import get_task

    task = get_task(res["task"])
    per_round = task.otf.walkers * task.otf.steps_per_round
    rows = [res["initial"]["metrics"]] + [s["metrics"] for s in res["steps"]]
    md = [m["md_steps"] for m in rows]
    assert 0 < md[0] <= per_round and all(0 < b - a <= per_round for a, b in zip(md[:-2], md[1:-1])), md
    assert md[-1] == md[-2]  # no MD after the episode's last labels
    assert [m["md_failures_total"] for m in rows] == list(np.cumsum([m["md_failures"] for m in rows])), rows
    paid = np.cumsum([len(s["chosen"]) for s in res["steps"]])
    assert [m["budget_used"] for m in rows[1:]] == paid.tolist()
    assert all(m["n_labels"] == task.n_initial + m["budget_used"] for m in rows[1:])
    assert rows[-1]["budget_used"] == task.budget or md[-1] + per_round > task.otf.md_step_budget
    assert "stability_steps" in final and "torsion_coverage" in final
    runs, _ = load_runs([tmp_path])
    assert "## On-the-fly mode" in markdown(runs)
    # the cheating reference needs a fixed pool: a clear error, not a crash inside the episode
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["task=ethanol_gfn2_otf_tiny", "agent=true_error", f"cache_dir={alenv_cache}", "progress=false"],
        )
    with pytest.raises(ValueError, match="pool mode"):
        run(cfg, tmp_path / "cheat")


def test_lookahead_reference_runs_keeps_the_best_proposal_and_is_marked(tmp_path: Path, alenv_cache: Path, monkeypatch) -> None:
    """The look-ahead expert of policy training, as a cheating reference through the runner."""
    import numpy as np

    import agents
    from benchmarks.references import LookaheadAgent
    from benchmarks.run import run

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["task=ethanol_gfn2_tiny", "agent=lookahead", "model=ridge", "seed=0",
                       f"cache_dir={alenv_cache}", "progress=false"],
        )
    run(cfg, tmp_path)
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["cheating"] is True and res["agent"] == "lookahead" and res["complete"] is True
    # it returns the proposal whose look-ahead error is lowest
    fixed = {"a": np.array([0]), "b": np.array([1]), "c": np.array([2])}
    monkeypatch.setattr(agents, "make_agent", lambda name: type("P", (), {"act": lambda self, *a: fixed[name]})())
    errors = {0: 3.0, 1: 1.0, 2: 2.0}
    agent = LookaheadAgent(lambda batches: np.array([errors[int(b[0])] for b in batches]), ("a", "b", "c"))
    assert agent.act({}, {}, 1, np.random.default_rng(0)).tolist() == [1] and agent.winners == ["b"]


def test_runs_record_the_bandits_arms_and_the_learned_checkpoint(tmp_path: Path, alenv_cache: Path) -> None:
    from benchmarks.run import run

    for agent in ("bandit", "learned"):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=["task=cu_emt_tiny", f"agent={agent}", "model=ridge", "seed=0",
                                               f"cache_dir={alenv_cache}", "progress=false"])
        run(cfg, tmp_path / agent)
    bandit = json.loads((tmp_path / "bandit" / "results.json").read_text())
    arms = [h["name"] for h in bandit["agent_history"]]
    assert len(arms) == 3 and set(arms) <= {"random", "uncertainty", "fps", "kmeans++"}  # 3 rounds of 5
    assert all(h["reward"] is not None for h in bandit["agent_history"][:-1])  # credited a round later
    learned = json.loads((tmp_path / "learned" / "results.json").read_text())
    assert learned["agent_checkpoint"] == "learned-v1.pt" and "agent_history" not in learned


def test_the_greedy_expert_builds_the_best_batch_and_keeps_the_best_of_all(monkeypatch) -> None:
    """With a look-ahead error that falls by each candidate's own value, building pick by pick finds the k
    best candidates; the agent keeps that batch over worse proposals, and a proposal that is better still."""
    import numpy as np

    import agents
    from agents.train import greedy_batch
    from benchmarks.references import GreedyLookaheadAgent

    value = np.array([0.1, 0.9, 0.3, 0.8, 0.05, 0.7])

    def lookahead(batches):
        return np.array([10.0 - value[list(b)].sum() for b in batches])

    batch, mae = greedy_batch(np.arange(6), 3, lookahead, None, np.random.default_rng(0))
    assert sorted(batch.tolist()) == [1, 3, 5] and mae == 10.0 - 2.4
    fixed = {"a": np.array([0, 2, 4]), "b": np.array([1, 2, 3])}
    monkeypatch.setattr(agents, "make_agent", lambda name: type("P", (), {"act": lambda self, *a: fixed[name]})())
    obs = {"mask": np.ones(6, dtype=np.int8)}
    agent = GreedyLookaheadAgent(lookahead, ("a", "b"), shortlist=None)
    assert sorted(agent.act(obs, {}, 3, np.random.default_rng(0)).tolist()) == [1, 3, 5] and agent.winners == ["greedy"]
    value[[0, 2, 4]] = 5.0  # heuristic a's batch is now the best there is: the greedy build ties it, a is kept
    agent = GreedyLookaheadAgent(lookahead, ("a", "b"), shortlist=None)
    assert sorted(agent.act(obs, {}, 3, np.random.default_rng(0)).tolist()) == [0, 2, 4] and agent.winners == ["a"]


@pytest.mark.slow  # about 15 s: 30 fits per pick
def test_greedy_lookahead_reference_runs_and_is_marked(tmp_path: Path, alenv_cache: Path) -> None:
    from benchmarks.run import run

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["task=ethanol_gfn2_tiny", "agent=lookahead_greedy", "model=ridge", "seed=0",
                                           f"cache_dir={alenv_cache}", "progress=false"])
    run(cfg, tmp_path)
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["cheating"] is True and res["agent"] == "lookahead-greedy" and res["complete"] is True
