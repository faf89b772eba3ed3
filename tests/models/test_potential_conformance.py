"""check_potential over every registered model: a molecule with DFT labels and a periodic metal with EMT."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from alenv.datasets import rmd17
from alenv.models import MODELS, check_potential, make_potential

# Small settings per model so the check runs in seconds; each model's defaults are used otherwise.
FAST = {
    "bp-ensemble": {"n_members": 3, "hidden": (16, 16), "epochs_initial": 30, "min_steps": 0},
    "ridge": {"n_members": 3},
    # a weak pair potential as the baseline (it must differ from the labels, or the correction would be zero)
    "delta": {"baseline": "lj", "baseline_kwargs": {"sigma": 1.2, "epsilon": 0.05}, "model": "ridge",
              "model_kwargs": {"n_members": 3}},
    "mace": {"n_members": 3, "channels": 8, "num_interactions": 1, "epochs_initial": 3},
    "mace-heads": {"heads": 3, "channels": 8, "num_interactions": 1, "epochs_initial": 3},
}
# Optional models: checked where their package is installed (pip install -e ".[mace]" in an environment of its
# own: see pyproject.toml), slow (10-20 s each)
OPTIONAL = {"mace": "mace", "mace-heads": "mace"}


def _models() -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n in OPTIONAL else n for n in sorted(MODELS)]


def _skip_missing(name: str) -> None:
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name])


def _labelled(frames):
    for a in frames:
        calc = EMT()
        a.calc = calc
        e, f = a.get_potential_energy(), a.get_forces()
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
    return frames


def _cu_frames(n: int = 8):
    rng = np.random.default_rng(0)
    base = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    out = []
    for _ in range(n):
        a = base.copy()
        a.positions += rng.normal(scale=0.08, size=a.positions.shape)
        out.append(a)
    return _labelled(out)


def test_every_model_has_fast_settings():
    assert set(FAST) == set(MODELS)


@pytest.mark.parametrize("name", _models())
def test_check_potential_molecule(name):
    _skip_missing(name)
    frames = ase.io.read(rmd17("ethanol", "train"), index=":12")
    pot = check_potential(lambda rep, seed: make_potential(name, rep, seed, **FAST[name]), frames)
    assert pot.n_members == 3


@pytest.mark.parametrize("name", _models())
def test_check_potential_periodic(name):
    _skip_missing(name)
    check_potential(lambda rep, seed: make_potential(name, rep, seed, **FAST[name]), _cu_frames())


def test_check_potential_catches_wrong_forces():
    """A model whose forces are not -dE/dx (sign flipped) fails the check."""
    frames = ase.io.read(rmd17("ethanol", "train"), index=":8")

    def broken(rep, seed):
        pot = make_potential("ridge", rep, seed, n_members=2)
        good = pot.evaluate_atoms
        pot.evaluate_atoms = lambda atoms: (lambda e, f: (e, -f))(*good(atoms))
        return pot

    with pytest.raises(AssertionError):
        check_potential(broken, frames)


def test_check_potential_catches_a_committee_without_spread():
    frames = ase.io.read(rmd17("ethanol", "train"), index=":8")
    with pytest.raises(AssertionError, match="spread|differ"):
        check_potential(lambda rep, seed: make_potential("ridge", rep, seed, n_members=2, bootstrap=False), frames)


def test_unknown_model_and_settings_are_named():
    from alenv.descriptors.representation import Representation

    rep = Representation.for_frames(ase.io.read(rmd17("ethanol", "train"), index=":2"))
    with pytest.raises(ValueError, match="unknown model 'nequip'.*bp-ensemble"):
        make_potential("nequip", rep)
    with pytest.raises(ValueError, match="unknown setting.*layers"):
        make_potential("bp-ensemble", rep, layers=3)
    with pytest.raises(ValueError, match="at least one member"):
        make_potential("ridge", rep, n_members=0)


def test_ridge_learns_forces_better_than_the_mean(tmp_path):
    """On held-out rMD17 frames the ridge committee's forces beat predicting zero force by a wide margin."""
    frames = ase.io.read(rmd17("ethanol", "train"), index=":120")
    from alenv.descriptors.representation import Representation

    rep = Representation.for_frames(frames, {"radial_shells": 8, "angular_shells": 4, "angle_sections": 4})
    train, test = rep.featurize(frames[:100]), rep.featurize(frames[100:])
    rep.set_normalisation([train])
    pot = make_potential("ridge", rep, 0)
    E = np.array([a.get_potential_energy() for a in frames])
    F = np.stack([a.get_forces() for a in frames])
    pot.fit(train, E[:100], F[:100], np.random.default_rng(0))
    _, Fp = pot.predict(test)
    mae, zero = np.abs(Fp.mean(0) - F[100:]).mean(), np.abs(F[100:]).mean()
    assert mae < 0.5 * zero, (mae, zero)


@pytest.mark.parametrize("name", _models())
def test_check_potential_ragged(name):
    """Structures of several sizes (rMD17 ethanol, 9 atoms, and aspirin, 21) train and are checked on the
    flat layout."""
    _skip_missing(name)
    eth = ase.io.read(rmd17("ethanol", "train"), index=":6")
    asp = ase.io.read(rmd17("aspirin", "train"), index=":5")
    frames = [f for pair in zip(eth, asp) for f in pair] + eth[5:]  # mixed, a 9-atom frame checked first
    check_potential(lambda rep, seed: make_potential(name, rep, seed, **FAST[name]), frames, n_train=8)
