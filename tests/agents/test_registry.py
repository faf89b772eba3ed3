"""The table of named strategies against the configuration files, and the accepted spellings."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from agents import MF_STRATEGIES, OTF_ONLY, STRATEGIES, make_agent, resolve_name
from benchmarks.references import REFERENCES

CONF = Path(__file__).resolve().parents[2] / "conf" / "agent"
CONFIGS = sorted(CONF.glob("*.yaml"))


def _load(path: Path) -> tuple[str, dict]:
    cfg = OmegaConf.load(path)
    kwargs = cfg.get("kwargs")
    return str(cfg.name), ({} if kwargs is None else OmegaConf.to_container(kwargs, resolve=True))


def test_there_are_configs():
    assert len(CONFIGS) >= len(STRATEGIES)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_maps_to_a_registered_name(path):
    name, _ = _load(path)
    strategies = {**STRATEGIES, **MF_STRATEGIES}
    assert (name in strategies) != (name in REFERENCES), f"{path.name}: {name!r} is neither a strategy nor a reference"
    if name in strategies:  # Hydra's file name (agent=kmeanspp) resolves to the same strategy
        assert resolve_name(path.stem) == name


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_builds_from_its_config_and_acts(name, make_obs):
    configs = [p for p in CONFIGS if _load(p)[0] == name]
    assert len(configs) == 1, f"{name}: {len(configs)} configs in conf/agent/"
    _, kwargs = _load(configs[0])
    # the configuration spells out the table's defaults, so the two cannot drift apart
    defaults = {p: v.default for p, v in inspect.signature(STRATEGIES[name]).parameters.items()}
    assert kwargs == defaults
    agent = make_agent(name, **kwargs)
    assert agent.name == name
    obs = make_obs(3)
    # on-the-fly-only strategies read the walker of each slot (here one walker per two slots)
    extra = {"slot_walker": np.arange(len(obs["mask"])) // 2} if name in OTF_ONLY else {}
    for info in ({"max_picks": 4, "any_subset": False, **extra}, {"max_picks": 4, "any_subset": True, **extra}):
        picks = agent.act(obs, info, info["max_picks"], np.random.default_rng(0))
        assert picks.dtype == np.int64 and len(set(picks.tolist())) == len(picks)
        assert np.all(obs["mask"][picks] == 1)
        assert len(picks) == 4 or (info["any_subset"] and len(picks) < 4)


@pytest.mark.parametrize("name", sorted(MF_STRATEGIES))
def test_every_multi_fidelity_strategy_builds_from_its_config(name):
    """Multi-fidelity strategies (they act on multi-fidelity observations: tests/test_multifidelity.py)."""
    configs = [p for p in CONFIGS if _load(p)[0] == name]
    assert len(configs) == 1, f"{name}: {len(configs)} configs in conf/agent/"
    _, kwargs = _load(configs[0])
    assert kwargs == {p: v.default for p, v in inspect.signature(MF_STRATEGIES[name]).parameters.items()}
    assert make_agent(name, **kwargs).name == name


@pytest.mark.parametrize(
    "spelling, name",
    [
        ("kmeanspp", "kmeans++"),
        ("kmeans_pp", "kmeans++"),
        ("kmeans-pp", "kmeans++"),
        ("KMeans++", "kmeans++"),
        ("information_gain", "information-gain"),
        ("prefilter_maxdet", "prefilter-maxdet"),
        ("qbc_force_rel", "qbc-force-rel"),
        ("trust_window", "trust-window"),
    ],
)
def test_accepted_spellings(spelling, name):
    assert resolve_name(spelling) == name
    assert make_agent(spelling).name == name


def test_unknown_names_point_to_the_right_spelling():
    with pytest.raises(ValueError, match=r"did you mean 'kmeans\+\+'"):
        make_agent("kmeans+")
    with pytest.raises(ValueError, match="did you mean 'information-gain'"):
        make_agent("informationgain")
    with pytest.raises(ValueError, match="unknown agent 'true-error'"):
        make_agent("true-error")  # a benchmark reference, built by benchmarks.references.make_reference
