"""A persistent label cache in one SQLite file, safe for several processes of a sweep at once.

Oracle labels are expensive; every label (failures included: they were paid for) is stored under a key
that hashes the oracle's name and fingerprint with the exact structure. The file is self-contained after
every commit: rollback journal (``journal_mode=DELETE``, ``synchronous=FULL``), so committed labels never
live in a side file, and a cache can be copied or moved as one file when no run writes to it. Each row
carries a sha256 checksum of its payload, verified on every read: a damaged row is never served (it is
reported, left out and recomputed); a damaged file is reported with the command that salvages its intact
rows (``python -m alenv.cache salvage PATH``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import struct
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from alenv.oracles.base import CacheCorruptError, OracleError
from alenv.types import Label

_FORMAT = "alenv-label-cache"
_VERSION = "1"
_CHUNK = 500  # keys per SELECT (well below SQLite's host-parameter limit)
_COLUMNS = "key, n_atoms, energy, forces, seconds, error, checksum"
SALVAGE = "python -m alenv.cache salvage"


class DamagedRowWarning(UserWarning):
    """A cached label does not verify (checksum, blob lengths): it is not used; the structure is labelled again."""


def _checksum(key: str, n_atoms: int, energy: bytes, forces: bytes, seconds: float, error: str | None) -> str:
    h = hashlib.sha256()
    h.update(key.encode())
    h.update(struct.pack("<q", n_atoms))
    h.update(energy)
    h.update(struct.pack("<Q", len(forces)))
    h.update(forces)
    h.update(struct.pack("<d", seconds))
    h.update(b"\x00" if error is None else b"\x01" + error.encode("utf-8"))
    return h.hexdigest()


def row_problem(row: tuple) -> str | None:
    """Why a stored row (columns as ``_COLUMNS``) cannot be used, or None for a row that verifies."""
    key, n_atoms, energy, forces, seconds, error, checksum = row
    if not all(isinstance(v, t) for v, t in ((key, str), (n_atoms, int), (energy, bytes), (forces, bytes))):
        return "wrong column types"
    if len(energy) != 8 or n_atoms < 0 or len(forces) != 24 * n_atoms:
        return f"blob lengths energy={len(energy)}, forces={len(forces)} do not fit {n_atoms} atoms"
    if not isinstance(seconds, float) or not (error is None or isinstance(error, str)):
        return "wrong column types"
    if _checksum(key, n_atoms, energy, forces, seconds, error) != checksum:
        return "checksum mismatch"
    return None


def decode_row(row: tuple) -> Label:
    """The Label of a row that verified (``cached=True``, original seconds)."""
    _, n_atoms, energy, forces, seconds, error, _ = row
    return Label(
        energy=float(np.frombuffer(energy, dtype="<f8")[0]),
        forces=np.frombuffer(forces, dtype="<f8").reshape(n_atoms, 3).astype(np.float64),  # writable copy
        seconds=seconds,
        error=error,
        cached=True,
    )


def encode_row(key: str, label: Label) -> tuple:
    """The row that stores ``label`` under ``key``, with its checksum."""
    forces = np.ascontiguousarray(label.forces, dtype="<f8")
    if forces.ndim != 2 or forces.shape[1] != 3:
        raise ValueError(f"label for {key[:16]} has forces of shape {forces.shape}, expected (n, 3)")
    n_atoms = forces.shape[0]
    energy_b = struct.pack("<d", float(label.energy))
    forces_b = forces.tobytes()
    seconds = float(label.seconds)
    error = None if label.error is None else str(label.error)
    checksum = _checksum(key, n_atoms, energy_b, forces_b, seconds, error)
    return (key, n_atoms, energy_b, forces_b, seconds, error, checksum)


class LabelCache:
    """Labels on disk, keyed by :meth:`key`.

    Durability: every :meth:`put_many` is one transaction, committed with ``synchronous=FULL`` to the one
    file (rollback journal, deleted at commit), so a label stored before a crash or ``kill -9`` is there on
    the next run, even if only the ``.sqlite`` file was kept. A cache left in WAL mode by an older alenv is
    switched to this mode when opened (that needs no other process to have it open).

    Concurrency: a 60 s busy timeout and ``INSERT OR IGNORE``; writers take turns, readers wait only for a
    commit (milliseconds). Each process opens its own connection (a connection inherited through ``fork``
    is never used: the cache notices the pid changed and reconnects). Within a process, calls are
    serialised by a lock, so threads may share one cache.

    Damage: a row whose checksum or blob lengths do not verify is never served; :meth:`get_many` leaves
    it out (so it is recomputed), warns (:class:`DamagedRowWarning`) and records it in ``damaged`` (key ->
    reason), and the next label stored under that key replaces it. A file that is not SQLite or fails
    SQLite's integrity check raises :class:`~alenv.oracles.base.CacheCorruptError`, naming the file and
    the salvage command.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self.damaged: dict[str, str] = {}  # damaged rows met by this object: key -> reason
        self._stale: dict[str, str] = {}  # damaged rows not replaced yet: key -> their stored checksum

    def __repr__(self) -> str:
        return f"LabelCache({str(self.path)!r})"

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    # -- keys ---------------------------------------------------------------------------------------

    @staticmethod
    def key(oracle_name: str, fingerprint: dict, atoms: Atoms) -> str:
        """sha256 hex over oracle name, fingerprint (sorted JSON), numbers, positions, cell and pbc."""
        h = hashlib.sha256()
        h.update(f"{_FORMAT}/{_VERSION}\x00".encode())
        h.update(oracle_name.encode() + b"\x00")
        h.update(json.dumps(fingerprint, sort_keys=True).encode() + b"\x00")
        numbers = np.ascontiguousarray(atoms.numbers, dtype="<i8")
        h.update(struct.pack("<q", len(numbers)))
        h.update(numbers.tobytes())
        # + 0.0 maps -0.0 to 0.0 so that sign-of-zero noise does not split keys
        h.update(np.ascontiguousarray(atoms.positions + 0.0, dtype="<f8").tobytes())
        h.update(np.ascontiguousarray(atoms.cell.array + 0.0, dtype="<f8").tobytes())
        h.update(np.ascontiguousarray(atoms.pbc, dtype=bool).tobytes())
        return h.hexdigest()

    # -- connection ---------------------------------------------------------------------------------

    def _corrupt(self, what: str) -> CacheCorruptError:
        return CacheCorruptError(
            f"label cache {self.path} is damaged ({what}); nothing from it is used. "
            f"`{SALVAGE} '{self.path}'` copies every intact label into a fresh cache and says how many were "
            f"lost; or move it aside (mv '{self.path}' '{self.path}.corrupt') and run again to start afresh."
        )

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        # a connection inherited through fork is abandoned, not closed (closing it could disturb the parent)
        self._conn = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise OracleError(f"cannot open label cache {self.path}: {exc}") from exc
        try:
            # Several processes of a sweep may open a new cache at once: switching the journal mode and
            # creating the tables are done by one of them at a time.
            with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    meta = self._initialise(conn)
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        except CacheCorruptError:
            conn.close()
            raise
        except sqlite3.OperationalError as exc:
            conn.close()
            raise OracleError(f"cannot use label cache {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
            conn.close()
            raise self._corrupt(str(exc)) from exc
        if meta.get("format") != _FORMAT:
            conn.close()
            raise CacheCorruptError(
                f"{self.path} is not an alenv label cache (format {meta.get('format')!r}); use another cache path"
            )
        if meta.get("version") != _VERSION:
            conn.close()
            raise OracleError(
                f"label cache {self.path} has version {meta.get('version')!r}, this alenv reads {_VERSION!r}; "
                "use another cache path"
            )
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _journal(self, conn: sqlite3.Connection) -> None:
        """Rollback journal, synchronous commits; a WAL cache (older alenv) is switched once it is free."""
        conn.execute("PRAGMA synchronous=FULL")
        deadline = time.monotonic() + 60.0
        while conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "delete":
            try:
                conn.execute("PRAGMA journal_mode=DELETE")  # a no-op answer while another process has it open
            except sqlite3.OperationalError:
                pass
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "delete":
                break
            if time.monotonic() > deadline:
                raise OracleError(
                    f"label cache {self.path} is in WAL mode and open in another process (an older alenv?); "
                    "it is switched to a single-file journal when no other process uses it: stop those runs"
                )
            time.sleep(0.2)

    def _initialise(self, conn: sqlite3.Connection) -> dict[str, str]:
        """Journal mode, integrity check and tables; returns the meta table."""
        self._journal(conn)
        check = conn.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            raise self._corrupt("integrity check: " + "; ".join(str(r[0]) for r in check[:3]))
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS labels (key TEXT PRIMARY KEY, n_atoms INTEGER NOT NULL, "
                "energy BLOB NOT NULL, forces BLOB NOT NULL, seconds REAL NOT NULL, error TEXT, "
                "checksum TEXT NOT NULL)"
            )
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?), ('version', ?)", (_FORMAT, _VERSION))
            meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return meta

    def close(self) -> None:
        """Close this process's connection (reopened on next use)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def _run(self, fn):
        with self._lock:
            conn = self._connect()
            try:
                return fn(conn)
            except CacheCorruptError:
                raise
            except sqlite3.OperationalError as exc:
                raise OracleError(f"label cache {self.path}: {exc}") from exc
            except sqlite3.DatabaseError as exc:
                raise self._corrupt(str(exc)) from exc

    # -- reads and writes ---------------------------------------------------------------------------

    def _damaged_row(self, row: tuple, problem: str) -> None:
        key = row[0]
        self._stale[key] = row[6]
        if key not in self.damaged:
            self.damaged[key] = problem
            warnings.warn(
                f"label cache {self.path}: the row of key {key[:16]} is damaged ({problem}); it is not used and "
                f"that structure is labelled again (`python -m alenv.cache check '{self.path}'` lists every "
                "damaged row)",
                DamagedRowWarning,
                stacklevel=4,
            )

    def get_many(self, keys: Iterable[str]) -> dict[str, Label]:
        """The stored labels among ``keys`` (``cached=True``, original seconds); absent and damaged keys are
        left out (a damaged one is recorded in ``damaged``, with a warning)."""
        keys = list(dict.fromkeys(keys))

        def fn(conn: sqlite3.Connection) -> dict[str, Label]:
            out: dict[str, Label] = {}
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i : i + _CHUNK]
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM labels WHERE key IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                for row in rows:
                    problem = row_problem(row)
                    if problem is None:
                        out[row[0]] = decode_row(row)
                    else:
                        self._damaged_row(row, problem)
            return out

        return self._run(fn) if keys else {}

    def get(self, key: str) -> Label | None:
        """One stored label, or None."""
        return self.get_many([key]).get(key)

    def put(self, key: str, label: Label) -> None:
        """Store one label, committed before this returns."""
        self.put_many([(key, label)])

    def put_many(self, items: Sequence[tuple[str, Label]]) -> None:
        """Store labels (failures too) in one transaction; a key already present keeps its first label,
        unless its row was found damaged: that row is replaced."""
        rows = [encode_row(key, label) for key, label in items]
        if not rows:
            return
        stale = [(row[0], self._stale[row[0]]) for row in rows if row[0] in self._stale]

        def fn(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # only the damaged row itself: a row another process stored meanwhile is kept
                conn.executemany("DELETE FROM labels WHERE key = ? AND checksum IS ?", stale)
                conn.executemany("INSERT OR IGNORE INTO labels VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        self._run(fn)
        for key, _ in stale:
            self._stale.pop(key, None)

    def __len__(self) -> int:
        return self._run(lambda conn: conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0])

    def __contains__(self, key: str) -> bool:
        return self._run(lambda conn: conn.execute("SELECT 1 FROM labels WHERE key = ?", (key,)).fetchone()) is not None
