"""A persistent label cache in one SQLite file, safe for several processes of a sweep at once.

Oracle labels are expensive; every label (failures included: they were paid for) is stored under a key
that hashes the oracle's name and fingerprint with the exact structure. Each row carries a sha256 checksum
of its payload, verified on every read, so a damaged file is reported, never silently used.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import struct
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from alenv.oracles.base import CacheCorruptError, OracleError
from alenv.types import Label

_FORMAT = "alenv-label-cache"
_VERSION = "1"
_CHUNK = 500  # keys per SELECT (well below SQLite's host-parameter limit)


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


class LabelCache:
    """Labels on disk, keyed by :meth:`key`.

    Concurrency: WAL journal, a 60 s busy timeout, ``INSERT OR IGNORE`` in one transaction per
    :meth:`put_many`; each process opens its own connection (a connection inherited through ``fork`` is
    never used: the cache notices the pid changed and reconnects). Within a process, calls are serialised
    by a lock, so threads may share one cache.

    Corruption (not a database, a truncated file, a row whose checksum or blob length does not match)
    raises :class:`~alenv.oracles.base.CacheCorruptError`; the message names the file.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

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
            f"label cache {self.path} is corrupt ({what}); nothing from it is used. Move it aside "
            f"(e.g. mv '{self.path}' '{self.path}.corrupt') and run again to start a fresh cache."
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
            # Several processes of a sweep may open a new cache at once: switching to WAL and creating the
            # tables are done by one of them at a time (SQLite answers "database is locked" otherwise).
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
            raise self._corrupt(f"not an alenv label cache: format {meta.get('format')!r}")
        if meta.get("version") != _VERSION:
            conn.close()
            raise OracleError(
                f"label cache {self.path} has version {meta.get('version')!r}, this alenv reads {_VERSION!r}; "
                "use another cache path"
            )
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _initialise(self, conn: sqlite3.Connection) -> dict[str, str]:
        """WAL mode, integrity check and tables; returns the meta table."""
        conn.execute("PRAGMA journal_mode=WAL")
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

    def _decode(self, row: tuple) -> Label:
        key, n_atoms, energy, forces, seconds, error, checksum = row
        if not isinstance(energy, bytes) or not isinstance(forces, bytes) or not isinstance(n_atoms, int):
            raise self._corrupt(f"row {key[:16]}: wrong column types")
        if len(energy) != 8 or n_atoms < 0 or len(forces) != 24 * n_atoms:
            raise self._corrupt(
                f"row {key[:16]}: blob lengths energy={len(energy)}, forces={len(forces)} do not fit {n_atoms} atoms"
            )
        if not isinstance(seconds, float) or _checksum(key, n_atoms, energy, forces, seconds, error) != checksum:
            raise self._corrupt(f"row {key[:16]}: checksum mismatch")
        return Label(
            energy=float(np.frombuffer(energy, dtype="<f8")[0]),
            forces=np.frombuffer(forces, dtype="<f8").reshape(n_atoms, 3).astype(np.float64),  # writable copy
            seconds=seconds,
            error=error,
            cached=True,
        )

    def get_many(self, keys: Iterable[str]) -> dict[str, Label]:
        """The stored labels among ``keys`` (``cached=True``, original seconds); absent keys are left out."""
        keys = list(dict.fromkeys(keys))

        def fn(conn: sqlite3.Connection) -> dict[str, Label]:
            out: dict[str, Label] = {}
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i : i + _CHUNK]
                rows = conn.execute(
                    "SELECT key, n_atoms, energy, forces, seconds, error, checksum FROM labels "
                    f"WHERE key IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                for row in rows:
                    out[row[0]] = self._decode(row)
            return out

        return self._run(fn) if keys else {}

    def get(self, key: str) -> Label | None:
        """One stored label, or None."""
        return self.get_many([key]).get(key)

    def put_many(self, items: Sequence[tuple[str, Label]]) -> None:
        """Store labels (failures too) in one transaction; a key already present keeps its first label."""
        rows = []
        for key, label in items:
            forces = np.ascontiguousarray(label.forces, dtype="<f8")
            if forces.ndim != 2 or forces.shape[1] != 3:
                raise ValueError(f"label for {key[:16]} has forces of shape {forces.shape}, expected (n, 3)")
            n_atoms = forces.shape[0]
            energy_b = struct.pack("<d", float(label.energy))
            forces_b = forces.tobytes()
            seconds = float(label.seconds)
            error = None if label.error is None else str(label.error)
            rows.append(
                (key, n_atoms, energy_b, forces_b, seconds, error, _checksum(key, n_atoms, energy_b, forces_b, seconds, error))
            )
        if not rows:
            return

        def fn(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR IGNORE INTO labels VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        self._run(fn)

    def __len__(self) -> int:
        return self._run(lambda conn: conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0])

    def __contains__(self, key: str) -> bool:
        return self._run(lambda conn: conn.execute("SELECT 1 FROM labels WHERE key = ?", (key,)).fetchone()) is not None
