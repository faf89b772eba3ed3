"""The per-process memo of set-up featurisations: off by default; on, a second environment of the same task
and data reuses the first one's sets and plays the same episode."""

from __future__ import annotations

import numpy as np
import pytest

from alenv.descriptors import representation as R


@pytest.fixture
def memo():
    R.set_feature_memo(3)
    yield
    R.set_feature_memo(0)


def _episode(env, seed: int = 1) -> list[float]:
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    out, done = [], False
    while not done:
        picks = rng.choice(np.flatnonzero(obs["mask"]), size=env.unwrapped.task.batch_size, replace=False)
        obs, reward, done, _, info = env.step(picks)
        out += [reward, info["metrics"]["force_mae"]]
    return out


def test_off_by_default_and_bad_sizes_refused(make_env):
    assert R._MEMO_SIZE[0] == 0
    make_env("alenv/Cu-EMT-tiny-v3")
    assert not R._MEMO  # nothing kept
    with pytest.raises(ValueError, match="0 or more"):
        R.set_feature_memo(-1)


def test_a_second_environment_reuses_the_sets_and_plays_the_same_episode(make_env, memo):
    plain = _episode(make_env("alenv/Cu-EMT-tiny-v3"))  # built before the memo held anything of this task
    R.set_feature_memo(0)
    R.set_feature_memo(3)
    a, b = make_env("alenv/Cu-EMT-tiny-v3"), make_env("alenv/Cu-EMT-tiny-v3")
    assert b.unwrapped.candidates is a.unwrapped.candidates
    assert b.unwrapped._test.data is a.unwrapped._test.data and b.unwrapped.validation.data is a.unwrapped.validation.data
    assert len(R._MEMO) == 3
    assert _episode(b) == plain  # the shared sets give the episode an environment of its own gives
    rep = a.unwrapped.representation
    other = rep.featurize(a.unwrapped.test_frames[:2], memo=True)  # other frames: a set of their own
    assert other is not a.unwrapped._test.data and len(R._MEMO) == 3  # the oldest set is forgotten
    assert rep.featurize(a.unwrapped.test_frames[:2], memo=True) is other


def test_a_bad_memo_setting_in_the_environment_is_named():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import alenv.descriptors.representation"], capture_output=True,
                         text=True, env={**__import__("os").environ, "ALENV_FEATURE_MEMO": "lots"})
    assert out.returncode != 0 and "ALENV_FEATURE_MEMO must be a number" in out.stderr
