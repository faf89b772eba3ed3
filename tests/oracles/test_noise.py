"""NoisyOracle (alenv.oracles.noise) over EMT: the noise's size, its determinism per (seed, structure),
heteroscedastic regions, the sigma recorded with each label (through the cache and into labels.extxyz),
the registry and YAML spellings, and the bad noise levels that must raise at construction."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest
from omegaconf import OmegaConf

from alenv.data import LabelledSet
from alenv.oracles import CachedOracle, EMTOracle, LabelCache, NoiseRegion, NoisyOracle, make_oracle
from alenv.types import Label
from tests.oracles.conftest import Counting, cu_bulk, cu_cluster, cu_frames

CONF = Path(__file__).resolve().parents[2] / "conf" / "oracle" / "noisy.yaml"


def test_noise_has_the_declared_size():
    """Over 300 rattled 8-atom Cu cells: energy residuals have std 0.1 eV and force residuals 0.05 eV/A per
    component, mean zero (tolerances 4 standard errors: 0.1 / sqrt(600) ~ 0.004 eV for the energy std,
    0.05 / sqrt(14400) ~ 0.0004 eV/A for the force std)."""
    frames = cu_frames(300)
    clean = EMTOracle().label(frames)
    labels = NoisyOracle(EMTOracle(), force_sigma=0.05, energy_sigma=0.1, seed=0).label(frames)
    de = np.array([a.energy - b.energy for a, b in zip(labels, clean)])
    df = np.concatenate([(a.forces - b.forces).ravel() for a, b in zip(labels, clean)])
    assert abs(de.std() - 0.1) < 0.016 and abs(de.mean()) < 0.024
    assert abs(df.std() - 0.05) < 0.0017 and abs(df.mean()) < 0.0017
    assert all(lab.noise_sigma == 0.05 and lab.energy_noise_sigma == 0.1 for lab in labels)
    assert all(lab.noise_sigma is None for lab in clean)


def test_noise_is_a_function_of_seed_and_structure():
    """The same structure gets the same noise alone, in a batch, in reverse order, from a fresh instance and
    after other structures were labelled; another seed or a displaced structure gets other noise."""
    frames = [cu_bulk(), cu_cluster(), *cu_frames(3)]
    a = NoisyOracle(EMTOracle(), force_sigma=0.3, energy_sigma=0.2, seed=7)
    batch = a.label(frames)
    reverse = a.label(frames[::-1])[::-1]
    fresh = NoisyOracle(EMTOracle(), force_sigma=0.3, energy_sigma=0.2, seed=7)
    fresh.label(cu_frames(4)[2:])  # other structures first
    for j, atoms in enumerate(frames):
        (alone,) = fresh.label([atoms])
        for other in (reverse[j], alone):
            assert other.energy == batch[j].energy and np.array_equal(other.forces, batch[j].forces)
    other_seed = NoisyOracle(EMTOracle(), force_sigma=0.3, energy_sigma=0.2, seed=8).label(frames[:1])[0]
    assert abs(other_seed.energy - batch[0].energy) > 1e-6
    moved = frames[0].copy()
    moved.positions[0, 0] += 1e-4  # a different structure (beyond the 1e-6 A rounding)
    clean = EMTOracle().label([frames[0], moved])
    noisy = a.label([moved])[0]
    assert abs((noisy.energy - clean[1].energy) - (batch[0].energy - clean[0].energy)) > 1e-6


def test_noise_sits_outside_the_cache(tmp_path):
    """CachedOracle(NoisyOracle(emt)) stores emt's clean labels under emt's keys, serves hits with the same
    noise as a fresh label, records the sigma on hits too, and agrees with NoisyOracle(CachedOracle(emt))."""
    frames = [cu_bulk(), cu_cluster()]
    counting = Counting(EMTOracle())
    noisy = NoisyOracle(counting, force_sigma=0.2, energy_sigma=0.05, seed=1)
    cached = CachedOracle(noisy, LabelCache(tmp_path / "a.sqlite"))
    first = cached.label(frames)
    second = cached.label(frames)
    assert counting.calls == [1, 1]  # the second call was all hits
    direct = NoisyOracle(EMTOracle(), force_sigma=0.2, energy_sigma=0.05, seed=1).label(frames)
    outside = NoisyOracle(CachedOracle(EMTOracle(), LabelCache(tmp_path / "b.sqlite")), force_sigma=0.2,
                          energy_sigma=0.05, seed=1).label(frames)
    for j in range(2):
        for other in (second[j], direct[j], outside[j]):
            assert other.energy == first[j].energy and np.array_equal(other.forces, first[j].forces)
        assert second[j].cached and second[j].noise_sigma == 0.2 and second[j].energy_noise_sigma == 0.05
    clean = EMTOracle().label(frames)
    stored = cached.cache.get_many(CachedOracle(EMTOracle(), cached.cache).keys(frames))
    assert len(stored) == 2  # under the clean oracle's keys
    for j, key in enumerate(CachedOracle(EMTOracle(), cached.cache).keys(frames)):
        assert stored[key].energy == clean[j].energy and stored[key].noise_sigma is None
    # labels from oracle MD prefill the cache clean; the noise is still added on the way out
    prefilled = CachedOracle(NoisyOracle(Counting(EMTOracle()), force_sigma=0.2, energy_sigma=0.05, seed=1),
                             LabelCache(tmp_path / "c.sqlite"))
    prefilled.store(frames, clean)
    served = prefilled.label(frames)
    assert prefilled.labeller.calls == []
    assert [lab.energy for lab in served] == [lab.energy for lab in first]
    assert cached.name == "noisy" and cached.fingerprint() == noisy.fingerprint()


def test_regions_set_the_noise_by_geometry():
    """Rules on a distance, a position and the smallest interatomic distance; the first that holds wins."""
    base = cu_cluster()
    d01 = float(np.linalg.norm(base.positions[0] - base.positions[1]))
    far = base.copy()
    far.positions[1] += (far.positions[1] - far.positions[0]) * 0.3  # atoms 0 and 1 pulled apart
    high = base.copy()
    high.positions[5, 2] = 9.0  # atom 5 moved up along z
    oracle = NoisyOracle(
        EMTOracle(),
        force_sigma=0.01,
        energy_sigma=0.001,
        regions=[
            {"coordinate": "distance", "atoms": [0, 1], "above": d01 + 0.2, "force_sigma": 0.5, "energy_sigma": 0.3},
            NoiseRegion("position", (5,), force_sigma=0.2, axis="z", above=8.0),
            {"coordinate": "min_distance", "below": 1.0, "force_sigma": 2.0},
        ],
    )
    assert oracle.sigmas(base) == (0.001, 0.01)
    assert oracle.sigmas(far) == (0.3, 0.5)
    assert oracle.sigmas(high) == (0.0, 0.2)
    both = far.copy()
    both.positions[5, 2] = 9.0
    assert oracle.sigmas(both) == (0.3, 0.5)  # the first rule that holds
    close = base.copy()
    close.positions[3] = close.positions[2] + [0.9, 0.0, 0.0]
    assert NoiseRegion("min_distance", below=1.0).value(close) == pytest.approx(0.9)
    assert oracle.sigmas(close) == (0.0, 2.0)
    # the recorded sigma is the one applied: residuals of the noisy region are ~50x larger
    labs = oracle.label([base, far])
    clean = EMTOracle().label([base, far])
    r = [np.abs(a.forces - b.forces).std() for a, b in zip(labs, clean)]
    assert [lab.noise_sigma for lab in labs] == [0.01, 0.5] and r[1] > 20 * r[0]
    # periodic: the distance is the minimum image
    cell = cu_bulk()
    i, j = 0, 1
    image = float(cell.get_distance(i, j, mic=True))
    rule = NoiseRegion("distance", (i, j), above=image - 0.01)
    assert rule.value(cell) == pytest.approx(image) and rule.holds(cell)


def test_sigma_fn_sets_the_noise_per_structure():
    def by_size(atoms):
        return (0.0, 0.4 if len(atoms) > 10 else 0.0)

    oracle = NoisyOracle(EMTOracle(), sigma_fn=by_size)
    small, big = oracle.label([cu_bulk(), cu_cluster()])
    assert small.noise_sigma == 0.0 and big.noise_sigma == 0.4
    assert small.energy == EMTOracle().label([cu_bulk()])[0].energy
    assert oracle.fingerprint()["sigma_fn"].endswith("by_size")
    with pytest.raises(ValueError, match="sigma_fn force sigma"):
        NoisyOracle(EMTOracle(), sigma_fn=lambda atoms: (0.0, -1.0)).label([cu_bulk()])


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "0.1", None, True, [0.1]])
@pytest.mark.parametrize("field", ["force_sigma", "energy_sigma"])
def test_bad_noise_levels_raise_at_construction(field, bad):
    """A negative, NaN, infinite or non-numeric noise level is a ValueError naming the field, before anything
    is labelled: as the wrapper's level, a region's, and through make_oracle("noisy", ...)."""
    with pytest.raises(ValueError, match=field):
        NoisyOracle(EMTOracle(), **{field: bad})
    with pytest.raises(ValueError, match=f"noise-region {field}"):
        NoisyOracle(EMTOracle(), regions=[{"coordinate": "min_distance", "below": 2.0, field: bad}])
    with pytest.raises(ValueError, match=field):
        make_oracle("noisy", oracle="emt", **{field: bad})


def test_bad_noise_settings_raise():
    with pytest.raises(ValueError, match="unknown noise-region coordinate 'angle'"):
        NoiseRegion("angle", (0, 1, 2), above=1.0)
    with pytest.raises(ValueError, match="needs 2 atom indices"):
        NoiseRegion("distance", (0,), above=1.0)
    with pytest.raises(ValueError, match="needs a threshold"):
        NoiseRegion("min_distance")
    with pytest.raises(ValueError, match="needs axis x, y or z"):
        NoiseRegion("position", (0,), above=1.0, axis="w")
    with pytest.raises(ValueError, match="'above' 3.0 must be smaller than 'below' 2.0"):
        NoiseRegion("min_distance", above=3.0, below=2.0)
    with pytest.raises(ValueError, match="unknown noise-region field"):
        NoiseRegion.of({"coordinate": "min_distance", "below": 2.0, "sigma": 0.1})
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        NoisyOracle(EMTOracle(), seed=-1)
    with pytest.raises(ValueError, match="oracle must name a registered oracle"):
        make_oracle("noisy", oracle="noisy")
    with pytest.raises(ValueError, match="unknown oracle 'emtt'"):
        make_oracle("noisy", oracle="emtt")
    # a region naming an atom the structure lacks: a configuration error before anything is computed
    counting = Counting(EMTOracle())
    oracle = NoisyOracle(counting, regions=[NoiseRegion("position", (10,), axis="x", above=-100.0)])
    with pytest.raises(ValueError, match="names atoms \\[10\\], but the structure has 8"):
        oracle.label([cu_cluster(), cu_bulk()])
    assert counting.calls == []


def test_failed_labels_pass_through():
    bad = cu_bulk()
    bad.positions[1] = bad.positions[0]
    (failed,) = NoisyOracle(EMTOracle(), force_sigma=0.1).label([bad])
    assert failed.failed and np.isnan(failed.energy) and failed.noise_sigma is None


def test_sigma_is_written_with_the_labels(tmp_path):
    """LabelledSet.write puts each label's sigmas in its frame's info; Label.of reads them back."""
    frames = [cu_bulk(), cu_cluster()]
    oracle = NoisyOracle(EMTOracle(), force_sigma=0.05, energy_sigma=0.02,
                         regions=[{"coordinate": "min_distance", "below": 2.38, "force_sigma": 0.5}])
    labels = oracle.label(frames)
    assert [lab.noise_sigma for lab in labels] == [0.5, 0.05]  # closest pairs: 2.37 A (bulk), 2.39 A (cluster)
    record = LabelledSet()
    record.extend(frames, labels, [3, -1], 1)
    record.extend([frames[0]], EMTOracle().label([frames[0]]), [4], 2)  # a label without a sigma
    np.testing.assert_array_equal(record.noise_sigmas, [0.5, 0.05, np.nan])
    record.write(tmp_path / "labels.extxyz")
    back = ase.io.read(tmp_path / "labels.extxyz", index=":")
    assert [a.info.get("noise_sigma") for a in back] == [0.5, 0.05, None]
    assert [a.info.get("energy_noise_sigma") for a in back] == [0.0, 0.02, None]
    again = [Label.of(a) for a in back]
    assert [lab.noise_sigma for lab in again] == [0.5, 0.05, None]
    assert again[1].energy == pytest.approx(labels[1].energy, abs=1e-6)


def test_yaml_config_builds_the_documented_oracle():
    """conf/oracle/noisy.yaml: EMT, clean outside close contacts (min distance < 2.2 A), 1 eV/A inside."""
    node = OmegaConf.to_container(OmegaConf.load(CONF), resolve=True)
    oracle = make_oracle(node["name"], **node["kwargs"])
    assert isinstance(oracle, NoisyOracle) and oracle.oracle.name == "emt"
    json.dumps(oracle.fingerprint())
    squeezed = cu_bulk()
    squeezed.set_cell(squeezed.cell * 0.9, scale_atoms=True)  # nearest neighbours at about 2.3 A
    squeezed.positions[1] = squeezed.positions[0] + [2.1, 0.0, 0.0]
    assert oracle.sigmas(cu_bulk()) == (0.0, 0.0) and oracle.sigmas(squeezed) == (0.0, 1.0)
