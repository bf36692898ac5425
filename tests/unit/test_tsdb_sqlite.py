"""The embedded SQLite store, and open_store's URL handling (no servers needed)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from linli.tsdb import (
    Point,
    Sample,
    StoreError,
    StoreRejected,
    TimeSeriesStore,
    open_store,
)

T0 = 1_795_680_000_123  # ms; not a whole second, so ms precision is visible
MS = timedelta(milliseconds=1)


def at(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + ms * MS


def sl07(site: str, ts_ms: int, **fields: float | bool | str) -> Point:
    return Point("streetlight", {"site": site, "device": "SL-07", "circuit": "C1"}, fields, ts_ms)


def q(store: TimeSeriesStore, field: str, *, site: str = "wanmei", device: str = "SL-07",
      since: int = T0 - 60_000, until: int = T0 + 60_000, limit: int = 10_000) -> list[Sample]:
    return store.query(site=site, kind="streetlight", device_id=device, field=field,
                       since=at(since), until=at(until), limit=limit)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TimeSeriesStore]:
    s = open_store(f"sqlite:///{tmp_path}/sub/dir/ts.db")
    yield s
    s.close()


def test_roundtrip_keeps_types_timestamps_and_sites_apart(store: TimeSeriesStore) -> None:
    store.write([
        sl07("wanmei", T0, power_w=58.9, dim_pct=100, relay=True, fw="2.3.1"),
        sl07("wanmei", T0 + 1, power_w=0.0, dim_pct=0, relay=False, fw="2.3.2"),
        sl07("site-b", T0, power_w=12.5, dim_pct=40, relay=False, fw="9.9.9"),
    ])

    assert q(store, "power_w") == [Sample(at(T0), 58.9), Sample(at(T0 + 1), 0.0)]
    dim = q(store, "dim_pct")
    assert dim == [Sample(at(T0), 100.0), Sample(at(T0 + 1), 0.0)]
    assert all(type(s.value) is float for s in dim)  # ints are stored as floats
    relay = q(store, "relay")
    assert [s.value for s in relay] == [True, False]
    assert all(type(s.value) is bool for s in relay)
    assert [s.value for s in q(store, "fw")] == ["2.3.1", "2.3.2"]
    assert q(store, "power_w", site="site-b") == [Sample(at(T0), 12.5)]
    assert q(store, "fw", site="site-b") == [Sample(at(T0), "9.9.9")]
    assert q(store, "power_w", site="nowhere") == []
    assert q(store, "no_such_field") == []
    ts = q(store, "power_w")[0].ts
    assert ts.tzinfo is not None and ts.utcoffset() == timedelta(0)


def test_time_range_is_inclusive_to_the_millisecond(store: TimeSeriesStore) -> None:
    store.write([sl07("wanmei", T0 + i, power_w=float(i)) for i in range(5)])

    assert [s.value for s in q(store, "power_w", since=T0 + 1, until=T0 + 3)] == [1.0, 2.0, 3.0]
    assert q(store, "power_w", since=T0 + 5, until=T0 + 60_000) == []
    assert q(store, "power_w", since=T0 + 3, until=T0 + 1) == []
    # sub-ms bounds: since rounds up, until rounds down
    got = store.query(site="wanmei", kind="streetlight", device_id="SL-07", field="power_w",
                      since=at(T0 + 1) + timedelta(microseconds=1),
                      until=at(T0 + 3) + timedelta(microseconds=999))
    assert [s.value for s in got] == [2.0, 3.0]
    # another time zone means the same instant
    cst = at(T0 + 2).astimezone(timezone(timedelta(hours=8)))
    got = store.query(site="wanmei", kind="streetlight", device_id="SL-07", field="power_w",
                      since=cst, until=cst)
    assert [s.value for s in got] == [2.0]


def test_ascending_with_limit_taking_the_earliest(store: TimeSeriesStore) -> None:
    store.write([sl07("wanmei", T0 + i, power_w=float(i)) for i in (4, 0, 3, 1, 2)])

    assert [s.value for s in q(store, "power_w")] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [s.value for s in q(store, "power_w", limit=2)] == [0.0, 1.0]


def test_rewriting_a_sample_overwrites_it(store: TimeSeriesStore) -> None:
    store.write([sl07("wanmei", T0, power_w=1.0)])
    store.write([sl07("wanmei", T0, power_w=2.0)])

    assert q(store, "power_w") == [Sample(at(T0), 2.0)]


@pytest.mark.parametrize("device", ["a'b", 'x" OR 1=1 --', "SL-07' OR '1'='1", "%", "SL-0_"])
def test_injection_shaped_ids_match_nothing_and_break_nothing(
    store: TimeSeriesStore, device: str
) -> None:
    store.write([sl07("wanmei", T0, power_w=58.9)])

    assert q(store, "power_w", device=device) == []
    # and such an id is stored and found like any other
    store.write([Point("streetlight", {"site": "wanmei", "device": device}, {"power_w": 1.5}, T0)])
    assert q(store, "power_w", device=device) == [Sample(at(T0), 1.5)]
    assert q(store, "power_w") == [Sample(at(T0), 58.9)]


@pytest.mark.parametrize(
    "bad",
    [
        Point("streetlight", {"site": "wanmei"}, {"power_w": 1.0}, T0),  # no device tag
        Point("streetlight", {"device": "SL-07"}, {"power_w": 1.0}, T0),  # no site tag
        Point("streetlight", {"site": "wanmei", "device": "SL-07"}, {}, T0),  # no fields
        Point("streetlight", {"site": "wanmei", "device": "SL-07"}, {"power_w": float("nan")}, T0),
        Point("streetlight", {"site": "wanmei", "device": "SL-07"}, {"power_w": float("inf")}, T0),
        Point("streetlight", {"site": "wanmei", "device": "SL-07"}, {"site": 1.0}, T0),
        Point("", {"site": "wanmei", "device": "SL-07"}, {"power_w": 1.0}, T0),
        Point("streetlight", {"site": "wanmei", "device": "SL\n07"}, {"power_w": 1.0}, T0),
        Point("streetlight", {"site": "wanmei", "device": "SL-07\\"}, {"power_w": 1.0}, T0),
        Point("streetlight", {"site": "wanmei", "device": "SL-07"}, {"power_w": [1]}, T0),  # type: ignore[dict-item]
    ],
)
def test_invalid_point_is_rejected_and_nothing_of_the_batch_written(
    store: TimeSeriesStore, bad: Point
) -> None:
    good = sl07("wanmei", T0, power_w=58.9)
    with pytest.raises(StoreRejected):
        store.write([good, bad])
    assert q(store, "power_w") == []


def test_bad_query_arguments_are_value_errors(store: TimeSeriesStore) -> None:
    naive = datetime(2026, 1, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        store.query(site="wanmei", kind="streetlight", device_id="SL-07", field="power_w",
                    since=naive, until=at(T0))
    with pytest.raises(ValueError, match="limit"):
        q(store, "power_w", limit=0)


def test_one_writer_and_several_readers_in_threads(store: TimeSeriesStore) -> None:
    batches, per_batch = 50, 20
    errors: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        try:
            for b in range(batches):
                store.write([sl07("wanmei", T0 + b * per_batch + i, power_w=float(i))
                             for i in range(per_batch)])
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def reader() -> None:
        try:
            last = 0
            while not done.is_set():
                n = len(q(store, "power_w", until=T0 + batches * per_batch))
                assert n >= last and n % per_batch == 0  # whole batches only: one transaction each
                last = n
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(q(store, "power_w", until=T0 + batches * per_batch)) == batches * per_batch


def test_file_is_wal_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "new" / "ts.db"
    s = open_store(f"sqlite:///{path}")
    s.write([sl07("wanmei", T0, power_w=58.9)])
    s.close()

    assert path.exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s = open_store(f"sqlite:///{path}")
    try:
        assert q(s, "power_w") == [Sample(at(T0), 58.9)]
    finally:
        s.close()


def test_relative_path_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = open_store("sqlite://data/ts.db")
    try:
        s.write([sl07("wanmei", T0, power_w=1.0)])
        assert (tmp_path / "data" / "ts.db").exists()
        assert s.url_redacted == "sqlite://data/ts.db"
    finally:
        s.close()


def test_closed_store(store: TimeSeriesStore) -> None:
    assert store.ping()
    store.close()
    assert not store.ping()
    with pytest.raises(StoreError):
        store.write([sl07("wanmei", T0, power_w=1.0)])


# --- open_store URL handling: constructing a network store connects to nothing ------------


@pytest.mark.parametrize("url", ["postgres://h/db", "influxdb://h/db", "mqtt://h", "/tmp/ts.db", ""])
def test_unknown_scheme_is_a_value_error_naming_it(url: str) -> None:
    scheme = url.partition("://")[0] if "://" in url else ""
    with pytest.raises(ValueError, match=f"scheme '{scheme}'"):
        open_store(url)


def test_scheme_error_does_not_leak_secrets() -> None:
    with pytest.raises(ValueError) as info:
        open_store("influxdb3://:s3cr3t-token@h:8086/b")
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite://:memory:"])
def test_unusable_sqlite_urls(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite"):
        open_store(url)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("influxdb2://:s3cr3t@db.example:8086/telemetry?org=linli",
         "influxdb2://:***@db.example:8086/telemetry?org=linli"),
        ("influxdb2+https://:s3cr3t@db.example:443/telemetry?org=linli",
         "influxdb2+https://:***@db.example:443/telemetry?org=linli"),
        ("influxdb1://admin:s3cr3t@db.example:8086/linli", "influxdb1://admin:***@db.example:8086/linli"),
        ("influxdb1://db.example/linli", "influxdb1://db.example:8086/linli"),
        ("victoriametrics://vm.example:8428", "victoriametrics://vm.example:8428"),
    ],
)
def test_network_store_urls_are_redacted(url: str, redacted: str) -> None:
    s = open_store(url)
    try:
        assert s.url_redacted == redacted
    finally:
        s.close()


@pytest.mark.parametrize(
    "url",
    ["influxdb1://h:8086", "influxdb1://h:8086/a/b", "influxdb2://:t@h:8086/?org=o",
     "victoriametrics://h:8428/prefix"],
)
def test_malformed_network_urls(url: str) -> None:
    with pytest.raises(ValueError):
        open_store(url)
