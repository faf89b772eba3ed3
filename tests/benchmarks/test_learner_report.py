"""The learner benchmark's per-subset report: gaps per test subset and the share of each subset the labels do
not reach in torsion space."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks.learner import UNCOVERED_DEGREES, _refit_cell, parse_settings, _subset_gaps, _uncovered


def _rotated(psi: float, temperature: float):
    from alenv.tasks.build import SYSTEMS

    atoms = SYSTEMS["alanine_dipeptide"]()
    atoms.set_dihedral(6, 8, 14, 16, psi, indices=list(range(14, 22)))  # turn the C-terminal side about psi
    atoms.info["temperature"] = temperature
    return atoms


def test_uncovered_is_the_share_of_each_subset_far_from_every_label():
    near = [_rotated(160.0 + d, 300.0) for d in (0.0, 5.0)]
    far = [_rotated(-40.0, 600.0), _rotated(160.0, 600.0)]  # one in another basin, one beside the labels
    labelled = SimpleNamespace(frames=[_rotated(160.0, 300.0), far[0]], ok=np.array([True, False]))
    env = SimpleNamespace(task=SimpleNamespace(system="alanine_dipeptide"), test_frames=near + far,
                          episode=SimpleNamespace(labelled=labelled))
    # the failed label in the other basin does not count as covering it
    assert _uncovered(env) == {"T=300K": 0.0, "T=600K": 0.5}
    assert UNCOVERED_DEGREES == pytest.approx(60.0)
    env.task.system = "cu_vacancy"  # a metal: no torsions, nothing to say
    assert _uncovered(env) == {}


def test_subset_gaps_name_each_subset_with_its_uncovered_share():
    row = {"subsets": {"T=300K": [0.3, 0.3], "T=600K": [5.0, 1.0]}, "uncovered": {"T=300K": 0.0, "T=600K": 0.68}}
    assert _subset_gaps(row) == "T=300K +0%, T=600K +400% (68% uncovered)"
    assert _subset_gaps({"in_loop": {}}) == ""


def test_model_settings_to_try_are_parsed_and_bad_pairs_refused():
    assert parse_settings(["scratch_growth=1.5", "hidden=[64, 64]", "bootstrap=false"]) == {
        "scratch_growth": 1.5, "hidden": (64, 64), "bootstrap": False}
    assert parse_settings(["warm_lr=1e-3", "model=bp"]) == {"warm_lr": 1e-3, "model": "bp"}  # YAML 1.1 reads 1e-3 as text
    for bad in (["scratch_growth"], ["=3"]):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_settings(bad)


def test_several_refits_show_their_range():
    assert _refit_cell({"refit": {"force_mae": 0.5424}}) == "542.4"
    row = {"refit": {"force_mae": 0.5}, "refit_force_mae_each": [0.48, 0.61, 0.41]}
    assert _refit_cell(row) == "500.0 (410.0-610.0)"


def test_bad_command_lines_stop_before_any_episode(tmp_path, capsys):
    from benchmarks.learner import main

    for bad, says in ((["--refits", "0"], "at least 1"), (["--every", "0"], "at least 1"),
                      (["--model", "scratch_growth"], "KEY=VALUE")):
        with pytest.raises(SystemExit):
            main(["--tasks", "Cu-EMT-tiny", "--out", str(tmp_path / "out"), *bad])
        assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # an on-the-fly episode and four fits: about 20 s
def test_replay_captures_an_episode_and_replays_the_same_labels(tmp_path):
    from benchmarks.replay import main

    import json

    args = ["--task", "Ethanol-GFN2-OTF-tiny", "--labels", "15", "--checkpoints", "10", "15", "--batch", "5",
            "--out", str(tmp_path)]
    main(args)
    main([*args, "--model", "warm_lr=1e-3"])  # reuses the captured labels
    plain = json.loads((tmp_path / "task-settings.json").read_text())["rows"]
    other = json.loads((tmp_path / "warm_lr=0.001.json").read_text())["rows"]
    assert [r["labels"] for r in plain] == [r["labels"] for r in other] == [10, 15]
    assert plain[0]["refit"] == other[0]["refit"]  # same labels, same refit; only the warm rounds differ
    assert plain[1]["in_loop"] != other[1]["in_loop"]


def test_replay_refuses_checkpoints_off_its_rounds(tmp_path, capsys):
    from benchmarks.replay import main

    for checkpoints in (["12"], ["3"], ["40"]):  # off the 10 + 5k grid, before the initial labels, past --labels
        with pytest.raises(SystemExit):
            main(["--task", "Ethanol-GFN2-OTF-tiny", "--labels", "20", "--batch", "5", "--checkpoints", *checkpoints,
                  "--out", str(tmp_path)])
        assert "not on them" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before any episode was played
