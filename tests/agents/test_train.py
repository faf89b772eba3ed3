"""Policy training from one command: it learns from the look-ahead expert, reproduces from its seed and
resumes where it stopped."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agents.policy import LearnedPolicy
from agents.train import main


def _args(out, alenv_cache, iterations):
    return ["--out", str(out), "--tasks", "Cu-EMT-tiny", "--iterations", str(iterations), "--episodes", "1",
            "--epochs", "3", "--hidden", "8", "--cache-dir", str(alenv_cache)]


def test_training_resumes_and_reproduces_from_its_seed(tmp_path, alenv_cache):
    main(_args(tmp_path / "a", alenv_cache, 1))
    first = json.loads((tmp_path / "a" / "curve.json").read_text())["iterations"]
    assert len(first) == 1 and first[0]["beta"] == 1.0 and first[0]["batches"] >= 2
    assert sum(first[0]["expert_winners"].values()) == first[0]["batches"]
    main(_args(tmp_path / "a", alenv_cache, 2))  # resumes: one more iteration, the data set grows
    curve = json.loads((tmp_path / "a" / "curve.json").read_text())["iterations"]
    assert [c["iteration"] for c in curve] == [0, 1] and curve[0] == first[0]
    assert curve[1]["batches"] == 2 * first[0]["batches"] and curve[1]["beta"] == 0.5
    main(_args(tmp_path / "b", alenv_cache, 2))  # the same command from scratch: the same policy
    a, b = (LearnedPolicy.load(tmp_path / d / "policy.pt") for d in ("a", "b"))
    for pa, pb in zip(a.scorer.parameters(), b.scorer.parameters()):
        torch.testing.assert_close(pa, pb)
    data = np.load(tmp_path / "a" / "data.npz")
    assert {f.split("/")[1] for f in data.files} == {"candidates", "embedding", "mask", "globals", "batch", "k"}


def test_bad_settings_stop_before_any_episode(tmp_path, capsys):
    for bad in (["--iterations", "0"], ["--episodes", "-1"], ["--beta", "1.5"], ["--greedy", "-2"]):
        with pytest.raises(SystemExit):
            main(["--out", str(tmp_path / "x"), *bad])
        assert "must be positive, beta in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing written
    for bad, says in ((["--inputs", "nonsense"], "inputs must be"), (["--hidden", "0"], "must be positive"),
                      (["--tasks", "Nope-tiny"], "unknown training task")):
        with pytest.raises(SystemExit):
            main(["--out", str(tmp_path / "x"), *bad])
        assert says in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_scalar_mix_trains_through_the_same_command(tmp_path, alenv_cache):
    args = _args(tmp_path / "mix", alenv_cache, 1)
    args[args.index("--hidden") + 1: args.index("--hidden") + 2] = []  # no hidden layer: a linear scorer
    main([*args, "--inputs", "mix"])
    mix = LearnedPolicy.load(tmp_path / "mix" / "policy.pt")
    assert mix.scorer.inputs == ("z_log_force_std_max", "log_dist_to_chosen") and mix.scorer.hidden == ()
    assert mix.scorer.net[0].weight.shape == (1, 2)


@pytest.mark.slow  # a training iteration with 4 x 5 extra fits per round (8 s)
def test_the_greedy_expert_takes_part_in_training(tmp_path, alenv_cache):
    """With --greedy the expert's proposals include a batch built pick by pick; the winners say how often
    it was the best, and it is recorded among the settings."""
    main([*_args(tmp_path / "g", alenv_cache, 1), "--greedy", "4"])
    curve = json.loads((tmp_path / "g" / "curve.json").read_text())
    assert curve["settings"]["greedy"] == 4
    winners = curve["iterations"][0]["expert_winners"]
    assert sum(winners.values()) == curve["iterations"][0]["batches"] and set(winners) <= {
        "random", "uncertainty", "kmeans++", "fps", "trust-window", "maxdet", "policy", "greedy"}


def test_the_training_family_holds_out_every_standard_system(alenv_cache):
    from agents.train import FAMILY, make_training_env
    from alenv.oracles import ORACLES
    from alenv.tasks import TASKS
    from alenv.tasks.build import SYSTEMS

    standard = {spec.system for spec in TASKS.values()}
    for name, (base, overrides) in FAMILY.items():
        assert base in TASKS and overrides["system"] in SYSTEMS and overrides["system"] not in standard, name
        assert overrides.get("oracle", TASKS[base].oracle) in ORACLES
    env = make_training_env("Ar13-LJ-tiny", str(alenv_cache))
    obs, info = env.reset(seed=0)
    u = env.unwrapped
    assert u.task.name == "Ar13-LJ-tiny" and u.task.oracle == "lj" and u.task.model == "ridge"
    assert {a.get_chemical_formula() for a in u.pool_frames} == {"Ar13"} and len(u.pool_frames) == 60
    assert u.task.data_key().startswith("Ar13-LJ-tiny-")  # cached under its own name, not Cu-EMT-tiny's
    forces = np.array([a.get_forces() for a in u.pool_frames])
    assert 0.001 < np.abs(forces).mean() < 0.1  # eV/Angstrom: argon near its melting point, not exploded
