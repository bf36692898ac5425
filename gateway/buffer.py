"""The on-disk point buffer and the sink in front of the time-series store.

When the store is down or slow (``StoreUnavailable``) points go to a bounded SQLite file in the
data dir and a background flusher writes them, oldest first, when it answers again. While the
buffer holds anything, new points queue behind it, so the store receives them in order. When the
buffer is full the oldest telemetry is dropped first (and counted); events and state changes
are kept. When the disk fills before that bound, the oldest telemetry makes room the same way;
with none left, new points are counted as lost (``points_failed``) and the batch goes on, so its
tickets are still committed. A point the store rejects as invalid (``StoreRejected``) is handed back for the dead
letters instead of blocking the queue.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Histogram

from linli.tsdb import Point, StoreRejected, StoreUnavailable, TimeSeriesStore

log = logging.getLogger("linli.gateway.buffer")

# Measurements that are never dropped for space: what happened, not how it measured.
KEPT_MEASUREMENTS = frozenset({"event", "status"})
DISK_HEADROOM_BYTES = 16 * 1024 * 1024  # kept free on the buffer's disk (less on a small one)
_CHUNK_POINTS = 200  # points per buffer row: the unit of dropping and of flushing
_BACKOFF_MIN_S = 0.5
_BACKOFF_MAX_S = 10.0

Rejected = list[tuple[Point, str]]  # a point the store refused, and why


def _encode(points: Sequence[Point]) -> bytes:
    return json.dumps([[p.measurement, dict(p.tags), dict(p.fields), p.ts_ms] for p in points],
                      separators=(",", ":")).encode()


def _decode(body: bytes) -> list[Point]:
    return [Point(m, tags, fields, ts) for m, tags, fields, ts in json.loads(body)]


class BufferDiskFull(Exception):
    """The buffer's disk is full and no telemetry is left in the buffer to make room with."""


def _disk_full(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "full" in text or "disk i/o" in text


@dataclass(frozen=True, slots=True)
class Chunk:
    id: int
    points: list[Point]


class DiskBuffer:
    """A FIFO of points in one SQLite file, bounded by the bytes of its rows. Thread-safe."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.max_bytes = path, max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        # auto_vacuum only takes effect on a new file: then the file shrinks as rows are flushed
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # survives a killed process; an OS crash may lose the tail
        # The write-ahead log stays within the disk's headroom (checkpoints need the main file to take
        # its pages: a log grown past the free space could never be checkpointed on a full disk).
        page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        self._db.execute(f"PRAGMA wal_autocheckpoint={max(16, min(1000, self._headroom() // page // 4))}")
        self._db.execute(f"PRAGMA journal_size_limit={max(64 * 1024, self._headroom() // 2)}")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY AUTOINCREMENT, keep INTEGER NOT NULL,"
            " points INTEGER NOT NULL, size INTEGER NOT NULL, body BLOB NOT NULL)"
        )
        row = self._db.execute("SELECT COALESCE(SUM(size), 0), COALESCE(SUM(points), 0) FROM chunks").fetchone()
        self.bytes, self.points = int(row[0]), int(row[1])
        self.dropped = 0  # telemetry points dropped for space since start

    def __len__(self) -> int:
        return self.points

    def append(self, points: Sequence[Point]) -> None:
        kept = [p for p in points if p.measurement in KEPT_MEASUREMENTS]
        telemetry = [p for p in points if p.measurement not in KEPT_MEASUREMENTS]
        rows = []
        for keep, group in ((1, kept), (0, telemetry)):
            for start in range(0, len(group), _CHUNK_POINTS):
                part = group[start:start + _CHUNK_POINTS]
                body = _encode(part)
                rows.append((keep, len(part), len(body), body))
        if not rows:
            return
        with self._lock:
            # Near the end of the disk the buffer stops growing: the oldest telemetry makes room, as
            # at the bound. The file keeps its size (deleted rows' pages are reused) and the headroom
            # lets the write-ahead log and its checkpoints, and the flusher's deletes, still write.
            growth = 3 * sum(r[2] for r in rows) + self._headroom()
            free = self._free_bytes()
            if free < growth:
                self._drop_oldest(growth - free)
            try:
                self._insert(rows)
            except sqlite3.OperationalError as exc:
                if not _disk_full(exc):
                    raise
                # The disk filled before the bound: make room as the bound would (the oldest
                # telemetry first; rows deleted leave pages the file reuses), then try once more.
                if not self._drop_oldest(2 * sum(r[2] for r in rows)):
                    raise BufferDiskFull(str(exc)) from exc
                try:
                    self._insert(rows)
                except sqlite3.OperationalError as again:
                    if _disk_full(again):
                        raise BufferDiskFull(str(again)) from again
                    raise

    def _insert(self, rows: list[tuple[int, int, int, bytes]]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT INTO chunks (keep, points, size, body) VALUES (?, ?, ?, ?)", rows)
            self.bytes += sum(r[2] for r in rows)
            self.points += sum(r[1] for r in rows)
            self._make_room()
            self._db.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full) has already rolled back: ROLLBACK would raise and hide why.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._recount()
            raise

    def _free_bytes(self) -> int:
        try:
            stat = os.statvfs(self.path.parent)
        except OSError:
            return 1 << 62
        return stat.f_bavail * stat.f_frsize

    def _headroom(self) -> int:
        """Space kept free on the buffer's disk: a quarter of it, at most DISK_HEADROOM_BYTES."""
        try:
            stat = os.statvfs(self.path.parent)
        except OSError:
            return 0
        return min(DISK_HEADROOM_BYTES, stat.f_blocks * stat.f_frsize // 4)

    def _recount(self) -> None:
        row = self._db.execute("SELECT COALESCE(SUM(size), 0), COALESCE(SUM(points), 0) FROM chunks").fetchone()
        self.bytes, self.points = int(row[0]), int(row[1])

    def _drop_oldest(self, wanted: int) -> bool:
        """Delete the oldest telemetry chunks, `wanted` bytes of them (disk full); False if none could go."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            freed, count = 0, 0
            for chunk_id, points, size in self._db.execute(
                    "SELECT id, points, size FROM chunks WHERE keep = 0 ORDER BY id").fetchall():
                self._db.execute("DELETE FROM chunks WHERE id = ?", (chunk_id,))
                freed += size
                count += points
                if freed >= wanted:
                    break
            if not count:
                self._db.execute("ROLLBACK")
                return False
            self._db.execute("COMMIT")
        except sqlite3.OperationalError:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._recount()
            return False
        self.dropped += count
        self._recount()
        log.warning("point buffer's disk is full: dropped the oldest telemetry (%d points dropped so far)", self.dropped)
        return True

    def _make_room(self) -> None:
        while self.bytes > self.max_bytes:
            oldest = self._db.execute(
                "SELECT id, points, size FROM chunks WHERE keep = 0 ORDER BY id LIMIT 32"
            ).fetchall()
            if not oldest:
                log.error("point buffer over its bound (%d > %d bytes) with events and state changes only: kept",
                          self.bytes, self.max_bytes)
                return
            for chunk_id, count, size in oldest:
                self._db.execute("DELETE FROM chunks WHERE id = ?", (chunk_id,))
                self.bytes -= size
                self.points -= count
                self.dropped += count
                if self.bytes <= self.max_bytes:
                    break
            log.warning("point buffer full: dropped the oldest telemetry (%d points dropped so far)", self.dropped)

    def oldest(self) -> Chunk | None:
        with self._lock:
            row = self._db.execute("SELECT id, body FROM chunks ORDER BY id LIMIT 1").fetchone()
        return None if row is None else Chunk(int(row[0]), _decode(row[1]))

    def remove(self, chunk_id: int) -> None:
        with self._lock:
            row = self._delete(chunk_id)
            if row is not None:
                self.points -= int(row[0])
                self.bytes -= int(row[1])
            if self.points == 0:
                self._db.execute("PRAGMA incremental_vacuum")

    def _delete(self, chunk_id: int) -> tuple[int, int] | None:
        row = self._db.execute("DELETE FROM chunks WHERE id = ? RETURNING points, size", (chunk_id,)).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def file_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.path, self.path.with_name(self.path.name + "-wal")) if p.exists())

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass(slots=True)
class SinkStats:
    written: int = 0  # points the store accepted (directly or from the buffer)
    buffered: int = 0  # points that went to the buffer
    rejected: int = 0  # points the store refused as invalid (dead-lettered)
    failed: int = 0  # points lost because the store was down and there is no buffer


class PointSink:
    """Write points to the store, or to the buffer when the store cannot take them now."""

    def __init__(
        self, store: TimeSeriesStore, buffer: DiskBuffer | None = None, *,
        on_rejected: Callable[[Rejected], None] | None = None,
    ) -> None:
        self.store, self.buffer = store, buffer
        self.stats = SinkStats()
        self.latency = Histogram(
            "linli_gateway_write_seconds", "Time of one write to the time-series store",
            registry=None, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self._on_rejected = on_rejected
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._flusher: threading.Thread | None = None
        self.store_ok = True
        self.disk_full = False  # the buffer's disk refused the last points

    # ------------------------------------------------------------ the worker's side

    def write(self, points: Sequence[Point]) -> Rejected:
        """Store `points` durably (the store, else the buffer); return those the store refused."""
        if not points:
            return []
        if self.buffer is not None and len(self.buffer):
            self._to_buffer(points)  # queue behind what is waiting, so the store gets them in order
            return []
        return self._write_or_buffer(points)

    def _write_or_buffer(self, points: Sequence[Point]) -> Rejected:
        try:
            self._store_write(points)
            return []
        except StoreUnavailable as exc:
            self._unavailable(exc)
            if self.buffer is None:
                self.stats.failed += len(points)
                return []
            self._to_buffer(points)
            return []
        except StoreRejected:
            return self._one_by_one(points)

    def _store_write(self, points: Sequence[Point]) -> None:
        started = time.perf_counter()
        self.store.write(points)
        self.latency.observe(time.perf_counter() - started)
        self.stats.written += len(points)
        self.store_ok = True

    def _unavailable(self, exc: Exception) -> None:
        if self.store_ok:
            log.error("time-series store unavailable (%s): buffering points on disk", exc)
        self.store_ok = False

    def _one_by_one(self, points: Sequence[Point]) -> Rejected:
        """Find the invalid points of a refused batch; the good ones are written (or buffered)."""
        rejected: Rejected = []
        for index, point in enumerate(points):
            try:
                self._store_write([point])
            except StoreRejected as exc:
                rejected.append((point, str(exc)))
            except StoreUnavailable as exc:
                self._unavailable(exc)
                if self.buffer is None:
                    self.stats.failed += len(points) - index
                else:
                    self._to_buffer(points[index:])
                break
        self.stats.rejected += len(rejected)
        return rejected

    def _to_buffer(self, points: Sequence[Point]) -> None:
        assert self.buffer is not None
        try:
            self.buffer.append(points)
        except BufferDiskFull as exc:
            # Nothing can be kept: counted as lost (points_failed), logged once per episode, and the
            # batch goes on, so its tickets are still committed (a full disk must not stop P0 alarms).
            if not self.disk_full:
                log.error("point buffer's disk is full (%s): points are lost until space or the store returns", exc)
            self.disk_full = True
            self.stats.failed += len(points)
            return
        if self.disk_full:
            log.warning("point buffer takes points again")
        self.disk_full = False
        self.stats.buffered += len(points)
        self._wake.set()

    # ------------------------------------------------------------ the flusher

    def start(self) -> None:
        if self.buffer is not None and self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, name="linli-gateway-flusher", daemon=True)
            self._flusher.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._flusher is not None:
            self._flusher.join(timeout=15)

    def _flush_loop(self) -> None:
        assert self.buffer is not None
        backoff = _BACKOFF_MIN_S
        while not self._stopping.is_set():
            chunk = self.buffer.oldest()
            if chunk is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                self._store_write(chunk.points)
            except StoreUnavailable as exc:
                self._unavailable(exc)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            except StoreRejected:
                rejected = self._one_by_one_flush(chunk.points)
                if rejected is None:
                    continue  # the store went away half-way: the chunk stays, retried whole
                if rejected and self._on_rejected is not None:
                    self._on_rejected(rejected)
            except Exception:
                log.exception("flushing buffered points failed; retrying")
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            backoff = _BACKOFF_MIN_S
            try:
                self.buffer.remove(chunk.id)
            except Exception:  # the thread must live on; the chunk is written again (the store overwrites)
                log.exception("removing a flushed chunk from the point buffer failed; retrying")
                self._stopping.wait(_BACKOFF_MAX_S)
                continue
            if not len(self.buffer):
                log.info("point buffer drained: the time-series store has every point")

    def _one_by_one_flush(self, points: Sequence[Point]) -> Rejected | None:
        rejected: Rejected = []
        for point in points:
            try:
                self._store_write([point])
            except StoreRejected as exc:
                rejected.append((point, str(exc)))
            except StoreUnavailable as exc:
                self._unavailable(exc)
                return None
        self.stats.rejected += len(rejected)
        return rejected

    def drained(self) -> bool:
        return self.buffer is None or not len(self.buffer)
