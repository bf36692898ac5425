"""Where a long-running process's memory goes: tracemalloc snapshots compared over time.

Off unless ``LINLI_TRACEMALLOC_DIR`` names a folder. Then the process traces its allocations
(``LINLI_TRACEMALLOC_FRAMES`` frames per allocation, default 1) and, every
``LINLI_TRACEMALLOC_EVERY_S`` seconds (default 300), writes ``<name>-<n>.txt``: the traced total
and the 40 places whose memory grew most since the first snapshot taken after
``LINLI_TRACEMALLOC_WARMUP_S`` seconds (default 120). `bench/soak.py --trace-memory` turns it on
for the gateway and the API; the figures are for finding a leak, not for production.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import tracemalloc
from pathlib import Path

log = logging.getLogger(__name__)

TOP = 40


def start_from_env(name: str) -> threading.Thread | None:
    """Start tracing when LINLI_TRACEMALLOC_DIR is set; returns the writer thread (a daemon)."""
    folder = os.environ.get("LINLI_TRACEMALLOC_DIR")
    if not folder:
        return None
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    frames = int(os.environ.get("LINLI_TRACEMALLOC_FRAMES", "1"))
    every_s = float(os.environ.get("LINLI_TRACEMALLOC_EVERY_S", "300"))
    warmup_s = float(os.environ.get("LINLI_TRACEMALLOC_WARMUP_S", "120"))
    tracemalloc.start(frames)
    thread = threading.Thread(target=_write_snapshots, args=(out, name, every_s, warmup_s), daemon=True,
                              name=f"memtrace-{name}")
    thread.start()
    log.warning("tracing memory allocations into %s (slower; for finding leaks)", out)
    return thread


def _write_snapshots(out: Path, name: str, every_s: float, warmup_s: float) -> None:
    time.sleep(warmup_s)
    first = _snapshot()
    first_at, n = time.monotonic(), 0
    while True:
        time.sleep(every_s)
        n += 1
        try:
            now = _snapshot()
            stats = now.compare_to(first, "traceback")
            current, peak = tracemalloc.get_traced_memory()
            lines = [f"{name}: {time.monotonic() - first_at:.0f} s after the first snapshot; traced now "
                     f"{current / 2**20:.1f} MiB (peak {peak / 2**20:.1f} MiB)"]
            for stat in sorted(stats, key=lambda s: s.size_diff, reverse=True)[:TOP]:
                lines.append(f"{stat.size_diff / 1024:+10.1f} KiB {stat.count_diff:+8d} blocks  "
                             f"now {stat.size / 1024:10.1f} KiB")
                lines.extend(f"      {line}" for line in stat.traceback.format()[-6:])
            (out / f"{name}-{n:03d}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        except Exception:  # tracing is a diagnosis: it never stops the process
            log.exception("writing a memory snapshot failed")


def _snapshot() -> tracemalloc.Snapshot:
    return tracemalloc.take_snapshot().filter_traces((
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<unknown>"),
    ))
