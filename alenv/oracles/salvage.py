"""Check a label cache row by row, and copy every row that verifies into a fresh cache.

A label cache checksums each row, so damage costs only the rows it touched: :func:`check_cache` reads
every row SQLite can still give (the table scan, then row by row past a damaged page) and verifies each;
:func:`salvage_cache` writes the intact ones into a new cache and names the keys that were lost. The
command line is ``python -m alenv.cache`` (:mod:`alenv.cache`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from alenv.oracles.base import OracleError
from alenv.oracles.cache import _COLUMNS, _FORMAT, LabelCache, decode_row, row_problem

_PROBE_PAST = 1000  # rowids probed past the last one known when SQLite cannot say where the table ends


@dataclass
class CacheReport:
    """What a cache file holds: intact rows, and what was lost (key -> reason)."""

    path: Path
    intact: list[tuple] = field(default_factory=list)  # raw rows that verify
    lost: dict[str, str] = field(default_factory=dict)  # key -> why it cannot be used
    problems: list[str] = field(default_factory=list)  # what SQLite reported (damaged pages, lost rows)
    error: str | None = None  # why nothing could be read at all

    @property
    def ok(self) -> bool:
        return self.error is None and not self.lost and not self.problems

    def summary(self) -> str:
        if self.error is not None:
            return f"{self.path}: {self.error}"
        lines = [f"{self.path}: {len(self.intact)} labels intact, {len(self.lost)} lost"]
        lines += [f"  lost {key}: {why}" for key, why in sorted(self.lost.items())]
        lines += [f"  sqlite: {p}" for p in self.problems]
        return "\n".join(lines)


def _open(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise OracleError(f"no label cache at {path}")
    return sqlite3.connect(path, timeout=60.0, isolation_level=None)


def _index_rowids(conn: sqlite3.Connection, report: CacheReport) -> dict[int, str]:
    """rowid -> key as the primary-key index knows them (it survives some damage to the table)."""
    found: dict[int, str] = {}
    try:
        for key, rowid in conn.execute("SELECT key, rowid FROM labels INDEXED BY sqlite_autoindex_labels_1"):
            found[rowid] = key
    except sqlite3.DatabaseError as exc:
        report.problems.append(f"key index unreadable after {len(found)} entries: {exc}")
    return found


def _scan(conn: sqlite3.Connection, report: CacheReport) -> dict[int, tuple]:
    """Every row SQLite can read: the table scan, then one rowid at a time past the point it stopped."""
    rows: dict[int, tuple] = {}
    try:
        for rowid, *row in conn.execute(f"SELECT rowid, {_COLUMNS} FROM labels ORDER BY rowid"):
            rows[rowid] = tuple(row)
        return rows
    except sqlite3.DatabaseError as exc:
        report.problems.append(f"table scan stopped after {len(rows)} rows: {exc}")
    known = _index_rowids(conn, report)
    try:
        top = max(conn.execute("SELECT max(rowid) FROM labels").fetchone()[0] or 0, *known, 0)
    except sqlite3.DatabaseError:
        top = max([*known, *rows, 0]) + _PROBE_PAST
    for rowid in range(max(rows, default=0) + 1, top + 1):
        try:
            row = conn.execute(f"SELECT {_COLUMNS} FROM labels WHERE rowid = ?", (rowid,)).fetchone()
        except sqlite3.DatabaseError:
            row = None
        if row is not None:
            rows[rowid] = tuple(row)
    for rowid, key in known.items():
        if rowid not in rows:
            report.lost[key] = "row unreadable (damaged page)"
    return rows


def check_cache(path: str | Path) -> CacheReport:
    """Read and verify every row of the cache at ``path``; the file is not changed."""
    report = CacheReport(Path(path))
    if report.path.is_file() and report.path.stat().st_size == 0:
        return report  # an empty file holds no labels: alenv opens it as a fresh cache
    try:
        conn = _open(report.path)
    except (OracleError, sqlite3.Error) as exc:
        report.error = str(exc)
        return report
    try:
        meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        if meta.get("format") != _FORMAT:
            report.error = f"not an alenv label cache (format {meta.get('format')!r})"
            return report
        rows = _scan(conn, report)
    except sqlite3.DatabaseError as exc:  # not a database, no meta table, unreadable schema
        report.error = f"nothing can be read ({exc}); move it aside and start a fresh cache"
        return report
    finally:
        conn.close()
    for row in rows.values():
        problem = row_problem(row)
        if problem is None:
            report.intact.append(row)
        else:
            report.lost[str(row[0])] = problem
    return report


def salvage_cache(path: str | Path, out: str | Path | None = None) -> tuple[CacheReport, Path]:
    """Copy every intact row of the cache at ``path`` into a new cache ``out`` (default: beside it, named
    ``<stem>.salvaged<suffix>``); returns the report and ``out``. ``out`` must not exist yet."""
    path = Path(path)
    out = Path(out) if out is not None else path.with_name(f"{path.stem}.salvaged{path.suffix}")
    if out.exists():
        raise OracleError(f"{out} exists already; name another output with --out")
    report = check_cache(path)
    if report.error is not None:
        raise OracleError(f"cannot salvage {path}: {report.error}")
    fresh = LabelCache(out)
    for i in range(0, len(report.intact), 1000):
        fresh.put_many([(row[0], decode_row(row)) for row in report.intact[i : i + 1000]])
    len(fresh)  # an empty salvage still writes a valid, empty cache
    fresh.close()
    return report, out
