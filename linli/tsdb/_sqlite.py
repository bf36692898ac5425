"""Embedded store: one SQLite file in WAL mode, one narrow table."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from ._base import (
    Point,
    Sample,
    StoreError,
    StoreRejected,
    StoreUnavailable,
    ms_to_datetime,
    normalize,
    time_range_ms,
)

# `value` has no declared type, so SQLite keeps each value's own storage class:
# REAL for numbers, TEXT for strings, INTEGER 0/1 for booleans (read back as bool).
# The primary key serves query() and makes a rewrite of the same sample an overwrite,
# as in InfluxDB, so replaying a buffer is idempotent.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    site TEXT NOT NULL,
    kind TEXT NOT NULL,
    device TEXT NOT NULL,
    field TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    value NOT NULL,
    PRIMARY KEY (site, kind, device, field, ts_ms)
) WITHOUT ROWID
"""
_INSERT = "INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?, ?, ?)"
_SELECT = """
SELECT ts_ms, value FROM samples
WHERE site = ? AND kind = ? AND device = ? AND field = ? AND ts_ms BETWEEN ? AND ?
ORDER BY ts_ms LIMIT ?
"""


def _error(exc: sqlite3.Error) -> StoreError:
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError):
        return StoreRejected(str(exc))
    if isinstance(exc, sqlite3.ProgrammingError):
        return StoreError(str(exc))  # e.g. used after close(): neither retryable nor the data's fault
    return StoreUnavailable(str(exc))  # locked, disk full, I/O: may pass


class SqliteStore:
    """Thread-safe: each thread gets its own connection (WAL lets readers run beside the writer)."""

    def __init__(self, path: Path, url: str) -> None:
        self.url_redacted = url
        self._path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._conn() as conn:
                conn.execute(_SCHEMA)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create {path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise _error(exc) from exc

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"{self.url_redacted} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # check_same_thread=False only so that close() may close it from another thread
            conn = sqlite3.connect(self._path, timeout=10.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL keeps it consistent; fsync per checkpoint
            with self._lock:
                self._conns.append(conn)
            self._local.conn = conn
        return conn

    def write(self, points: Sequence[Point]) -> None:
        rows = [
            (p.tags["site"], p.measurement, p.tags["device"], k, p.ts_ms, v)
            for p in normalize(points)
            for k, v in p.fields.items()
        ]
        if not rows:
            return
        try:
            with self._conn() as conn:  # one transaction per batch
                conn.executemany(_INSERT, rows)
        except sqlite3.Error as exc:
            raise _error(exc) from exc

    def query(
        self,
        *,
        site: str,
        kind: str,
        device_id: str,
        field: str,
        since: datetime,
        until: datetime,
        limit: int = 10_000,
    ) -> list[Sample]:
        lo, hi = time_range_ms(since, until, limit)
        try:
            rows = self._conn().execute(_SELECT, (site, kind, device_id, field, lo, hi, limit))
            return [
                Sample(ms_to_datetime(ts), bool(v) if isinstance(v, int) else v) for ts, v in rows
            ]
        except sqlite3.Error as exc:
            raise _error(exc) from exc

    def ping(self) -> bool:
        try:
            self._conn().execute("SELECT 1").fetchone()
        except (StoreError, sqlite3.Error):
            return False
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
