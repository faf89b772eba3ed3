"""Reward functions and the round reward rule (``alenv.rewards``): values and error paths."""

from __future__ import annotations

import math

import pytest

from alenv.rewards import REWARDS, get_reward, round_reward

BEFORE = {"force_mae": 0.2, "energy_mae": 0.05}
AFTER = {"force_mae": 0.1, "energy_mae": 0.1}


def test_registered_rewards():
    assert get_reward("log_force_mae")(BEFORE, AFTER) == pytest.approx(math.log(2))
    assert get_reward("log_energy_mae")(BEFORE, AFTER) == pytest.approx(-math.log(2))
    assert get_reward("force_mae")(BEFORE, AFTER) == pytest.approx(0.1)
    assert set(REWARDS) == {"log_force_mae", "log_energy_mae", "force_mae"}


def test_unknown_reward_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown reward 'accuracy'; known: force_mae, log_energy_mae, log_force_mae"):
        get_reward("accuracy")


def test_round_reward_adds_the_weighted_surviving_fraction():
    fn = get_reward("log_force_mae")
    assert round_reward(fn, BEFORE, AFTER, 2.0, True, survived_fraction=0.5, stability_weight=0.4) == pytest.approx(
        math.log(2) / 2 + 0.2
    )
    assert round_reward(fn, BEFORE, AFTER, 2.0, False, survived_fraction=None, stability_weight=0.4) == pytest.approx(
        math.log(2)
    )  # no MD followed the round: nothing to add
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="survived_fraction must lie in"):
            round_reward(fn, BEFORE, AFTER, 2.0, False, survived_fraction=bad, stability_weight=1.0)
