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


@pytest.mark.slow  # about 30 s on one core
@pytest.mark.skipif(not _has_mace(), reason="mace-torch is not installed (pip install 'alenv[mace]')")
def test_an_episode_with_the_mace_committee_learns(make_env) -> None:
    env = make_env("alenv/Ethanol-GFN2-tiny-v3", model="mace", model_kwargs=SMALL)
    obs, info = env.reset(seed=0)
    first = info["metrics"]["force_mae"]
    rng = np.random.default_rng(0)
    k, done = env.unwrapped.task.batch_size, False
    while not done:
        obs, _, done, _, info = env.step(rng.choice(np.flatnonzero(obs["mask"]), size=k, replace=False))
    assert info["metrics"]["force_mae"] < first, (first, info["metrics"]["force_mae"])


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
