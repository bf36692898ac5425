"""The time-series store: the gateway writes telemetry into it, the API reads it back.

`open_store(url)` picks the backend by URL scheme:

- `sqlite:///abs/path/ts.db` or `sqlite://relative/ts.db`: embedded, the default
- `influxdb2[+https]://:TOKEN@host:port/BUCKET?org=ORG`: InfluxDB 2.x, 3.x, 1.8+
- `influxdb1[+https]://[user:pass@]host:port/DB`: InfluxDB 1.x without /api/v2 (< 1.8)
- `victoriametrics[+https]://host:port`: VictoriaMetrics (numbers only, see its class)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ._base import (
    FieldValue,
    Point,
    Sample,
    StoreError,
    StoreRejected,
    StoreUnavailable,
    TimeSeriesStore,
)
from ._influx import InfluxDB1Store, InfluxDB2Store
from ._sqlite import SqliteStore
from ._victoria import VictoriaMetricsStore

__all__ = [
    "FieldValue",
    "Point",
    "Sample",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "TimeSeriesStore",
    "open_store",
]


def _sqlite(url: str) -> TimeSeriesStore:
    path = url.removeprefix("sqlite://")  # "/abs/ts.db" (from sqlite:///) or "rel/ts.db"
    if not path or path.endswith("/") or path in (":memory:", "/:memory:"):
        # per-thread connections would each get their own empty in-memory database
        raise ValueError(f"{url}: expected sqlite:///absolute/file.db or sqlite://relative/file.db")
    return SqliteStore(Path(path), url)


_OPENERS: dict[str, Callable[[str], TimeSeriesStore]] = {
    "sqlite": _sqlite,
    "influxdb1": InfluxDB1Store,
    "influxdb1+https": InfluxDB1Store,
    "influxdb2": InfluxDB2Store,
    "influxdb2+https": InfluxDB2Store,
    "victoriametrics": VictoriaMetricsStore,
    "victoriametrics+https": VictoriaMetricsStore,
}


def open_store(url: str) -> TimeSeriesStore:
    """Open the store named by `url`; ValueError for an unknown scheme or a malformed URL."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    opener = _OPENERS.get(scheme)
    if opener is None:
        raise ValueError(
            f"unsupported time-series store URL scheme {scheme!r}"
            f" (expected one of: {', '.join(_OPENERS)})"
        )
    return opener(url)
