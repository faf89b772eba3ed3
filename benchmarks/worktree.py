"""Another revision of the code beside this one, for side-by-side measurements (``--before REV``)."""

from __future__ import annotations

import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """A temporary git worktree of ``rev`` (detached), removed afterwards; ValueError if git cannot make it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "before"
        made = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
                              capture_output=True, text=True)
        if made.returncode != 0:
            raise ValueError(f"cannot check out {rev!r} beside this code: {made.stderr.strip()}")
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], capture_output=True)
