"""The equivariant committee (``model="mace"``): the install traps of mace-torch 0.3.16 with e3nn 0.4.4 under
torch 2.13, a clear error where mace-torch is missing, and an episode that learns. check_potential runs on it
in test_potential_conformance (slow)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"n_members": 2, "channels": 8, "num_interactions": 1, "epochs_initial": 5, "epochs_per_round": 2}


def _has_mace() -> bool:
    import importlib.util

    return importlib.util.find_spec("mace") is not None


@pytest.mark.skipif(not _has_mace(), reason="mace-torch is not installed (pip install 'alenv[mace]')")
def test_building_the_committee_leaves_torch_load_safe_and_e3nn_importable() -> None:
    """In a fresh interpreter: the model builds (so e3nn imported, which needs mace's variable while it
    loads its constants) and afterwards the variable that turns off torch.load's safe mode is gone."""
    code = (
        "import os, ase.io\n"
        "from alenv.datasets import rmd17\n"
        "from alenv.descriptors.representation import Representation\n"
        "from alenv.models import make_potential\n"
        "frames = ase.io.read(rmd17('ethanol', 'train'), index=':2')\n"
        "pot = make_potential('mace', Representation.for_frames(frames), 0, n_members=1, channels=4)\n"
        "import e3nn.o3, mace\n"
        "assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ, os.environ['TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD']\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


@pytest.mark.skipif(_has_mace(), reason="mace-torch is installed")
def test_without_mace_the_model_says_how_to_install_it() -> None:
    import ase.io

    from alenv.datasets import rmd17
    from alenv.descriptors.representation import Representation
    from alenv.models import make_potential

    frames = ase.io.read(rmd17("ethanol", "train"), index=":2")
    with pytest.raises(ImportError, match=r'pip install "alenv\[mace\]"'):
        make_potential("mace", Representation.for_frames(frames), 0)


@pytest.mark.slow  # about 30 s each on one core
@pytest.mark.skipif(not _has_mace(), reason="mace-torch is not installed (pip install 'alenv[mace]')")
@pytest.mark.parametrize("model, settings", [("mace", SMALL), ("mace-heads", {**SMALL, "n_members": 1, "heads": 3})])
def test_an_episode_with_the_mace_committee_learns(make_env, model: str, settings: dict) -> None:
    env = make_env("alenv/Ethanol-GFN2-tiny-v3", model=model, model_kwargs=settings)
    obs, info = env.reset(seed=0)
    first = info["metrics"]["force_mae"]
    rng = np.random.default_rng(0)
    k, done = env.unwrapped.task.batch_size, False
    while not done:
        obs, _, done, _, info = env.step(rng.choice(np.flatnonzero(obs["mask"]), size=k, replace=False))
    assert info["metrics"]["force_mae"] < first, (first, info["metrics"]["force_mae"])


@pytest.mark.skipif(not _has_mace(), reason="mace-torch is not installed (pip install 'alenv[mace]')")
def test_every_head_from_one_pass_equals_mace_torch_own_forward_for_that_head() -> None:
    """The heads variant computes all heads from one pass through the interactions; mace-torch's forward picks
    one head per graph. Both must give the same energies and forces for every head (float64)."""
    import ase.io
    import torch

    from alenv.datasets import rmd17
    from alenv.descriptors.representation import Representation
    from alenv.models import make_potential

    frames = ase.io.read(rmd17("ethanol", "train"), index=":6")
    pot = make_potential("mace-heads", Representation.for_frames(frames), 0, heads=3, channels=8, epochs_initial=1)
    data = pot.prepare(frames)
    E_label = np.array([a.get_potential_energy() for a in frames])
    F_label = np.stack([a.get_forces() for a in frames])
    pot.fit(data, E_label, F_label, np.random.default_rng(0))
    assert pot.n_members == 3 and len(pot.members) == 1
    E, F = pot.predict(data)
    assert E.shape == (3, 6) and F.shape == (3, 6, 9, 3)
    assert np.ptp(E, axis=0).min() > 1e-6, "heads with their own weights and initialisation must differ"
    model = pot.members[0]
    batch = pot._batch(frames, pot._graphs(data))
    offsets = pot._counts(frames) @ pot.e0
    for h in range(3):
        data_h = dict(batch, positions=batch["positions"].clone(), head=torch.full((6,), h, dtype=torch.long))
        out = model(data_h, training=False, compute_force=True)
        np.testing.assert_allclose(out["energy"].detach().numpy() + offsets, E[h], rtol=0, atol=1e-9)
        np.testing.assert_allclose(out["forces"].detach().numpy().reshape(6, 9, 3), F[h], rtol=0, atol=1e-9)
    E1, F1 = pot.evaluate_atoms(frames[2])
    np.testing.assert_allclose(E1, E[:, 2], atol=1e-9)
    np.testing.assert_allclose(F1, F[:, 2], atol=1e-9)


def test_the_heads_variant_is_one_network_with_several_heads() -> None:
    from alenv.models import make_settings

    settings = make_settings("mace-heads", {})
    assert (settings.n_members, settings.heads) == (1, 4)
    with pytest.raises(ValueError, match="heads"):
        make_settings("mace-heads", {"heads": 0})


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"n_members": 0}, "must be positive"),
        ({"dtype": "float16"}, "dtype must be float32 or float64"),
        ({"device": "tpu"}, "device must be auto, cpu or cuda"),
        ({"epochs_initial": 0}, "epochs_initial, batch_size and lr must be positive"),
    ],
)
def test_bad_mace_settings_are_refused_without_mace_installed(settings: dict, message: str) -> None:
    from alenv.models import make_settings

    with pytest.raises(ValueError, match=message):
        make_settings("mace", settings)
