"""Malonaldehyde proton transfer (alenv.tasks.reaction), with real GFN2-xTB.

Each test is written as the failure it prevents:

- a "transfer" target that never reached the transition state, or a pool that already covered it (plain
  GFN2-xTB MD transfers the proton on its own);
- labels that carry the umbrella or wall bias instead of the oracle's own energies and forces;
- windows that test_metrics() does not report separately;
- data that the data seed does not fix, or a control whose pool is not the transfer task's pool.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from ase import Atoms

import alenv  # noqa: F401  (registers the tasks)
from alenv.data import subset_of
from alenv.oracles import make_oracle
from alenv.tasks import get_task
from alenv.tasks.build import BUILDERS
from alenv.tasks.reaction import K_UMBRELLA, WALL, WINDOWS, Restraint, proton_coordinate, window_name

TRANSFER, CONTROL = "Malonaldehyde-GFN2-Transfer", "Malonaldehyde-GFN2"
# One frame per window and part, short MD: the builders run in about a second each.
MINI = dict(pool_size=5, reserve_size=5, n_initial=5, budget=5, batch_size=5, test_size=9, validation_size=9,
            md={"equilibration": 10, "stride": 5})


def _deltas(frames) -> np.ndarray:
    return np.array([proton_coordinate(a) for a in frames])


def _build(name: str, data_seed: int = 0):
    spec = get_task(f"{name}-tiny").with_overrides(data_seed=data_seed, **MINI)
    return BUILDERS[spec.system](spec, False)


@pytest.fixture(scope="module")
def transfer_env(make_env):
    return make_env(get_task(f"{TRANSFER}-tiny").id)


@pytest.fixture(scope="module")
def mini():
    """In-memory data (labels as computed, before any file): transfer seed 0 twice and seed 1, control seed 0."""
    return {"a": _build(TRANSFER), "b": _build(TRANSFER), "seed1": _build(TRANSFER, 1), "control": _build(CONTROL)}


def test_both_tasks_are_registered_with_tiny_variants():
    for name in (CONTROL, TRANSFER, f"{CONTROL}-tiny", f"{TRANSFER}-tiny"):
        spec = get_task(name)
        assert spec.id == f"alenv/{name}-v0" and spec.id in gym.registry and spec.history
    assert get_task(TRANSFER).pool_size == 2000 and get_task(TRANSFER).test_size == 500
    assert get_task(f"{TRANSFER}-tiny").pool_size == 60


# The full tiny build takes about 10 s: slow; the in-memory builds of ``mini`` cover the builder by default.
@pytest.mark.slow
def test_transfer_target_spans_the_transition_state_and_the_pool_does_not(transfer_env):
    u = transfer_env.unwrapped
    pool = _deltas(u.pool_frames + u.reserve_frames)
    assert pool.max() < WALL + 0.1 and np.abs(pool).min() > 0.35  # one side of the barrier, away from it
    for frames in (u.test_frames, u.validation_frames):
        d = _deltas(frames)
        assert d.min() < -0.7 and d.max() > 0.7 and np.abs(d).min() < 0.1  # minimum to minimum through the TS
        assert {subset_of(a) for a in frames} == {window_name(c) for c in WINDOWS}
        means = [d[[subset_of(a) == window_name(c) for a in frames]].mean() for c in WINDOWS]
        assert np.all(np.diff(means) > 0) and np.allclose(means, WINDOWS, atol=0.2), means
        assert np.allclose([a.info["delta"] for a in frames], d, atol=1e-6)
        assert {a.info["temperature"] for a in frames} == {300.0}


@pytest.mark.slow
def test_test_metrics_report_every_window(transfer_env):
    u = transfer_env.unwrapped
    transfer_env.reset(seed=0)
    metrics = u.test_metrics()
    for c in WINDOWS:
        assert np.isfinite(metrics[f"force_mae[{window_name(c)}]"]) and np.isfinite(metrics[f"energy_mae[{window_name(c)}]"])
    assert not any("[T=" in k for k in metrics)


def test_labels_are_the_unbiased_oracle_labels(mini):
    data = mini["a"]
    frames = data.test[::2] + data.pool[:2]
    labels = make_oracle("xtb").label(frames)
    for a, lab in zip(frames, labels):
        assert a.get_potential_energy() == lab.energy and np.array_equal(a.get_forces(), lab.forces)
    # the bias was large enough that biased labels would have failed the comparison above
    bias = [Restraint(c, K_UMBRELLA)(a.positions)[0] for a in data.test
            for c in WINDOWS if subset_of(a) == window_name(c)]
    assert max(bias) > 1e-3


def test_same_data_seed_same_data_another_seed_other_data(mini):
    a, b, other = mini["a"], mini["b"], mini["seed1"]
    for part in ("pool", "reserve", "test", "validation"):
        x, y, z = getattr(a, part), getattr(b, part), getattr(other, part)
        assert all(np.array_equal(p.positions, q.positions) for p, q in zip(x, y))
        assert [p.get_potential_energy() for p in x] == [q.get_potential_energy() for q in y]
        assert not any(np.array_equal(p.positions, q.positions) for p, q in zip(x, z))


def test_control_shares_the_pool_and_tests_in_distribution(mini):
    control, transfer = mini["control"], mini["a"]
    for part in ("pool", "reserve"):
        assert all(np.array_equal(p.positions, q.positions) for p, q in zip(getattr(control, part), getattr(transfer, part)))
    target = control.test + control.validation
    assert _deltas(target).max() < WALL + 0.1
    assert {subset_of(a) for a in target} == {"T=300K", "T=500K"}


@pytest.mark.parametrize("restraint", [Restraint(0.2, K_UMBRELLA), Restraint(WALL, 20.0, upper_wall=True)])
def test_restraint_forces_are_minus_its_gradient(restraint):
    from alenv.tasks.reaction import enol_malonaldehyde

    rng = np.random.default_rng(0)
    pos = enol_malonaldehyde().positions
    pos[5] += [0.4, -0.05, 0.1]  # the proton past the wall, towards the acceptor
    energy, forces = restraint(pos)
    assert energy > 0.01 and np.abs(forces).max() > 0.1
    step = 1e-6 * rng.normal(size=pos.shape)
    assert restraint(pos + step)[0] - restraint(pos - step)[0] == pytest.approx(-2 * np.sum(forces * step), rel=1e-5)
    if restraint.upper_wall:  # flat bottom: no bias on the proton's own side
        assert restraint(enol_malonaldehyde().positions) == (0.0, pytest.approx(np.zeros_like(pos)))


def test_bad_input_is_refused():
    spec = get_task(f"{TRANSFER}-tiny").with_overrides(test_size=4)
    with pytest.raises(ValueError, match="test_size 4 is smaller than the 9 umbrella windows"):
        BUILDERS[spec.system](spec, False)
    with pytest.raises(ValueError, match="needs a malonaldehyde frame"):
        proton_coordinate(Atoms("H2O", positions=np.eye(3)))
    with pytest.raises(ValueError, match="positive force constant"):
        Restraint(0.0, 0.0)
