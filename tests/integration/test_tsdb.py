"""The time-series stores against real InfluxDB 1.x and VictoriaMetrics servers."""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import servers

from linli.tsdb import (
    Point,
    Sample,
    StoreRejected,
    StoreUnavailable,
    TimeSeriesStore,
    open_store,
)

pytestmark = pytest.mark.timeout(180)

MS = timedelta(milliseconds=1)
INJECTIONS = [
    "a'b",
    'x" OR 1=1',
    "x' OR '1'='1",
    "SL-07' OR device =~ /.*/ --",
    "\\",
    "x\\' OR 1=1 --",
    'x"} or {__name__=~".+',
    "SL-07\nDROP DATABASE linli",
]
_window = itertools.count(1)


def writable(ids: list[str]) -> list[str]:
    """Line protocol cannot carry a newline or a trailing backslash: the stores refuse those."""
    return [d for d in ids if "\n" not in d and not d.endswith("\\")]


def at(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + ms * MS


def fresh_t0() -> int:
    """A recent ms timestamp (inside VM's retention), 10 minutes apart per call, so tests
    sharing a session server never see each other's samples; .123 s shows ms precision."""
    return (int(time.time()) // 600 - next(_window)) * 600_000 + 123


def sl07(site: str, ts_ms: int, **fields: float | bool | str) -> Point:
    return Point("streetlight", {"site": site, "device": "SL-07", "compound": "north"}, fields, ts_ms)


def two_sites(t0: int) -> list[Point]:
    return [
        sl07("wanmei", t0, power_w=58.9, dim_pct=100, relay=True, fw="2.3.1"),
        sl07("wanmei", t0 + 1, power_w=0.25, dim_pct=0, relay=False, fw="2.3.2"),
        sl07("wanmei", t0 + 30_000, power_w=61.75, dim_pct=80, relay=True, fw="2.3.2"),
        sl07("site-b", t0, power_w=12.5, dim_pct=40, relay=False, fw="9.9.9"),
        sl07("site-b", t0 + 2, power_w=13.5, dim_pct=41, relay=True, fw="9.9.9"),
    ]


def read(store: TimeSeriesStore, t0: int, field: str, *, site: str = "wanmei",
         device: str = "SL-07", kind: str = "streetlight", lo: int = -60_000, hi: int = 60_000,
         limit: int = 10_000) -> list[Sample]:
    return store.query(site=site, kind=kind, device_id=device, field=field,
                       since=at(t0 + lo), until=at(t0 + hi), limit=limit)


def samples(t0: int, *pairs: tuple[int, Any]) -> list[Sample]:
    return [Sample(at(t0 + dt), v) for dt, v in pairs]


# --- InfluxDB 1.x ---------------------------------------------------------------------------


@pytest.fixture
def influx_db(influxdb1_server: servers.InfluxDB1Server) -> str:
    """A database of this test's own (the store creates it on first write)."""
    return f"t_{secrets.token_hex(4)}"


@pytest.fixture
def influx(influxdb1_server: servers.InfluxDB1Server, influx_db: str) -> Iterator[TimeSeriesStore]:
    store = open_store(influxdb1_server.store_url(influx_db))
    yield store
    store.close()


def influxql(server: servers.InfluxDB1Server, q: str, db: str = "") -> Any:
    resp = httpx.post(f"http://{server.host}:{server.port}/query", params={"q": q, "db": db})
    resp.raise_for_status()
    return resp.json()["results"][0]


def test_influxdb1_fixture_url(influxdb1: str, influxdb1_server: servers.InfluxDB1Server) -> None:
    assert influxdb1 == f"influxdb1://127.0.0.1:{influxdb1_server.port}/linli_test"
    store = open_store(influxdb1)
    try:
        assert store.ping()
    finally:
        store.close()


def test_influxdb1_roundtrip_exact_values_and_sites_apart(
    influx: TimeSeriesStore, influxdb1_server: servers.InfluxDB1Server, influx_db: str
) -> None:
    t0 = fresh_t0()
    influx.write(two_sites(t0))

    assert read(influx, t0, "power_w") == samples(t0, (0, 58.9), (1, 0.25), (30_000, 61.75))
    dim = read(influx, t0, "dim_pct")
    assert dim == samples(t0, (0, 100.0), (1, 0.0), (30_000, 80.0))
    assert all(type(s.value) is float for s in dim)
    relay = read(influx, t0, "relay")
    assert relay == samples(t0, (0, True), (1, False), (30_000, True))
    assert all(type(s.value) is bool for s in relay)
    assert read(influx, t0, "fw") == samples(t0, (0, "2.3.1"), (1, "2.3.2"), (30_000, "2.3.2"))
    assert read(influx, t0, "power_w", site="site-b") == samples(t0, (0, 12.5), (2, 13.5))
    assert read(influx, t0, "relay", site="site-b") == samples(t0, (0, False), (2, True))
    assert read(influx, t0, "power_w", site="nowhere") == []
    assert read(influx, t0, "nope") == []
    # the server itself holds the int field as a float (so a later float write cannot conflict)
    keys = influxql(influxdb1_server, 'SHOW FIELD KEYS FROM "streetlight"', influx_db)
    assert dict(keys["series"][0]["values"]) == {
        "dim_pct": "float", "fw": "string", "power_w": "float", "relay": "boolean"
    }


def test_influxdb1_time_range_limit_and_order(influx: TimeSeriesStore) -> None:
    t0 = fresh_t0()
    influx.write([sl07("wanmei", t0 + i, power_w=float(i)) for i in (4, 0, 3, 1, 2)])

    assert [s.value for s in read(influx, t0, "power_w", lo=1, hi=3)] == [1.0, 2.0, 3.0]
    assert [s.value for s in read(influx, t0, "power_w", lo=5, hi=9)] == []
    assert [s.value for s in read(influx, t0, "power_w", lo=-9, hi=-1)] == []
    assert [s.value for s in read(influx, t0, "power_w", lo=3, hi=1)] == []
    assert [s.value for s in read(influx, t0, "power_w")] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [s.value for s in read(influx, t0, "power_w", limit=2)] == [0.0, 1.0]


def test_influxdb1_injection_shaped_ids(
    influx: TimeSeriesStore, influxdb1_server: servers.InfluxDB1Server, influx_db: str
) -> None:
    t0 = fresh_t0()
    influx.write(two_sites(t0))

    for bad in INJECTIONS:
        assert read(influx, t0, "power_w", device=bad) == [], bad
        assert read(influx, t0, "power_w", site=bad) == [], bad
        assert read(influx, t0, bad) == [], bad
        assert read(influx, t0, "power_w", kind=bad) == [], bad
    # nothing was dropped or broken, and quoted ids are stored and found exactly
    assert read(influx, t0, "power_w") == samples(t0, (0, 58.9), (1, 0.25), (30_000, 61.75))
    odd = writable(INJECTIONS)
    influx.write([Point("streetlight", {"site": "wanmei", "device": d}, {"power_w": float(i)}, t0)
                  for i, d in enumerate(odd)])
    for i, d in enumerate(odd):
        assert read(influx, t0, "power_w", device=d) == samples(t0, (0, float(i))), d
    assert influx_db in str(influxql(influxdb1_server, "SHOW DATABASES"))


def test_influxdb1_creates_its_database_on_first_write(
    influx: TimeSeriesStore, influxdb1_server: servers.InfluxDB1Server, influx_db: str
) -> None:
    t0 = fresh_t0()
    assert influx_db not in str(influxql(influxdb1_server, "SHOW DATABASES"))
    assert read(influx, t0, "power_w") == []  # "database not found" reads as nothing

    influx.write([sl07("wanmei", t0, power_w=1.0)])

    assert [influx_db] in influxql(influxdb1_server, "SHOW DATABASES")["series"][0]["values"]
    assert read(influx, t0, "power_w") == samples(t0, (0, 1.0))


def test_influxdb1_server_rejection_is_store_rejected(influx: TimeSeriesStore) -> None:
    t0 = fresh_t0()
    influx.write([sl07("wanmei", t0, power_w=1.0)])

    with pytest.raises(StoreRejected, match="field type conflict"):
        influx.write([sl07("wanmei", t0 + 1, power_w="not a number")])


def test_influxdb1_invalid_point_is_rejected_before_sending(influx: TimeSeriesStore) -> None:
    t0 = fresh_t0()
    with pytest.raises(StoreRejected, match="device"):
        influx.write([sl07("wanmei", t0, power_w=1.0),
                      Point("streetlight", {"site": "wanmei"}, {"power_w": 2.0}, t0)])
    with pytest.raises(StoreRejected, match="finite"):
        influx.write([sl07("wanmei", t0, power_w=float("nan"))])
    assert read(influx, t0, "power_w") == []


def test_influxdb1_stopped_server_is_unavailable_then_recovers(tmp_path: Path) -> None:
    # an instance of this test's own, since it is stopped mid-test
    server = servers.started(lambda: servers.start_influxdb1(tmp_path / "influxd"))
    store = open_store(server.store_url("linli"))
    try:
        t0 = fresh_t0()
        store.write([sl07("wanmei", t0, power_w=1.0)])
        server.stop()

        assert not store.ping()
        with pytest.raises(StoreUnavailable):
            store.write([sl07("wanmei", t0 + 1, power_w=2.0)])
        with pytest.raises(StoreUnavailable):
            read(store, t0, "power_w")

        server.start()
        assert store.ping()
        store.write([sl07("wanmei", t0 + 1, power_w=2.0)])
        assert read(store, t0, "power_w") == samples(t0, (0, 1.0), (1, 2.0))
    finally:
        store.close()
        server.close()


def test_influxdb2_store_reads_influxql_with_a_token(
    influx: TimeSeriesStore, influxdb1_server: servers.InfluxDB1Server, influx_db: str
) -> None:
    """The influxdb2 store's read half is InfluxQL on /query, as 1.x serves it. Its write half
    needs /api/v2/write: 1.8+ has it (e.g. the Docker image), Debian's 1.6.7 answers 404."""
    t0 = fresh_t0()
    influx.write(two_sites(t0))
    v2 = open_store(f"influxdb2://:tok%2Fen==@{influxdb1_server.host}:{influxdb1_server.port}"
                    f"/{influx_db}?org=linli")
    try:
        assert v2.ping()
        assert read(v2, t0, "power_w") == read(influx, t0, "power_w")
        assert read(v2, t0, "relay", site="site-b") == samples(t0, (0, False), (2, True))
        assert read(v2, t0, "power_w", device='x" OR 1=1') == []

        has_v2 = httpx.post(f"http://{influxdb1_server.host}:{influxdb1_server.port}/api/v2/write",
                            params={"bucket": influx_db}, content=b"").status_code != 404
        point = sl07("wanmei", t0 + 5, power_w=7.5, relay=True)
        if has_v2:
            v2.write([point])
            assert read(v2, t0, "power_w", lo=5, hi=5) == samples(t0, (5, 7.5))
        else:
            with pytest.raises(StoreRejected, match="404"):
                v2.write([point])
    finally:
        v2.close()


@pytest.mark.parametrize("scheme", ["influxdb1", "influxdb2", "victoriametrics"])
def test_nothing_listening_is_unavailable(scheme: str) -> None:
    port = servers.free_port()
    url = {
        "influxdb1": f"influxdb1://127.0.0.1:{port}/linli",
        "influxdb2": f"influxdb2://:token@127.0.0.1:{port}/linli?org=linli",
        "victoriametrics": f"victoriametrics://127.0.0.1:{port}",
    }[scheme]
    store = open_store(url)
    try:
        assert not store.ping()
        with pytest.raises(StoreUnavailable):
            store.write([sl07("wanmei", 1_795_680_000_000, power_w=1.0)])
        with pytest.raises(StoreUnavailable):
            read(store, 1_795_680_000_000, "power_w")
    finally:
        store.close()


# --- HTTP status mapping, against a local HTTP server that answers with a chosen status -------


@pytest.fixture(scope="module")
def answering() -> Iterator[Callable[[int], str]]:
    """`answering(status)` → host:port of a server answering every request with `status`."""
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps({"error": f"told to say {state['status']}",
                               "message": f"told to say {state['status']}"}).encode()
            self.send_response(state["status"])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def set_status(status: int) -> str:
        state["status"] = status
        return f"127.0.0.1:{httpd.server_address[1]}"

    yield set_status
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("scheme", ["influxdb1", "influxdb2", "victoriametrics"])
@pytest.mark.parametrize(
    ("status", "error"),
    [(500, StoreUnavailable), (503, StoreUnavailable), (429, StoreUnavailable),
     (400, StoreRejected), (401, StoreRejected), (404, StoreRejected)],
)
def test_http_status_maps_to_error_class(
    answering: Callable[[int], str], scheme: str, status: int, error: type[Exception]
) -> None:
    hostport = answering(status)
    url = {
        "influxdb1": f"influxdb1://{hostport}/linli",
        "influxdb2": f"influxdb2://:token@{hostport}/linli?org=linli",
        "victoriametrics": f"victoriametrics://{hostport}",
    }[scheme]
    store = open_store(url)
    try:
        with pytest.raises(error, match=f"{status}.*told to say {status}"):
            store.write([sl07("wanmei", 1_795_680_000_000, power_w=1.0)])
        with pytest.raises(error, match=f"told to say {status}"):
            read(store, 1_795_680_000_000, "power_w")
        assert not store.ping()
    finally:
        store.close()


# --- VictoriaMetrics --------------------------------------------------------------------------


@pytest.fixture
def vm(victoria_metrics: str) -> Iterator[TimeSeriesStore]:
    store = open_store(victoria_metrics)
    yield store
    store.close()


@pytest.fixture
def vm_read(victoria_metrics_server: servers.VictoriaMetricsServer,
            vm: TimeSeriesStore) -> Callable[..., list[Sample]]:
    """read() that first flushes VM and waits (bounded) until the expected samples show."""

    def read_flushed(t0: int, field: str, expect: list[Sample], **kw: Any) -> list[Sample]:
        deadline = time.monotonic() + 15
        while True:
            httpx.get(f"{victoria_metrics_server.http_url}/internal/force_flush").raise_for_status()
            got = read(vm, t0, field, **kw)
            if got == expect or time.monotonic() > deadline:
                return got
            time.sleep(0.2)

    return read_flushed


def test_victoria_metrics_fixture_url(
    victoria_metrics: str, victoria_metrics_server: servers.VictoriaMetricsServer
) -> None:
    assert victoria_metrics == f"victoriametrics://127.0.0.1:{victoria_metrics_server.port}"


def test_victoria_metrics_roundtrip_numbers(
    vm: TimeSeriesStore, vm_read: Callable[..., list[Sample]],
    victoria_metrics_server: servers.VictoriaMetricsServer,
) -> None:
    t0 = fresh_t0()
    assert vm.ping()
    vm.write(two_sites(t0))

    power = samples(t0, (0, 58.9), (1, 0.25), (30_000, 61.75))
    assert vm_read(t0, "power_w", power) == power
    dim = samples(t0, (0, 100.0), (1, 0.0), (30_000, 80.0))
    assert vm_read(t0, "dim_pct", dim) == dim
    relay = samples(t0, (0, 1.0), (1, 0.0), (30_000, 1.0))  # VM keeps bools as 1/0
    assert vm_read(t0, "relay", relay) == relay
    site_b = samples(t0, (0, 12.5), (2, 13.5))
    assert vm_read(t0, "power_w", site_b, site="site-b") == site_b
    # strings are not stored at all (VM would keep a meaningless 0)
    assert read(vm, t0, "fw") == []
    export = httpx.get(f"{victoria_metrics_server.http_url}/api/v1/export",
                       params={"match[]": '{__name__="streetlight_fw"}'})
    assert export.text.strip() == ""
    # the site-b samples at t0 and t0+2 did not leak into wanmei's series
    assert read(vm, t0, "power_w") == power


def test_victoria_metrics_time_range_and_limit(
    vm: TimeSeriesStore, vm_read: Callable[..., list[Sample]]
) -> None:
    t0 = fresh_t0()
    vm.write([sl07("wanmei", t0 + i, power_w=float(i)) for i in (4, 0, 3, 1, 2)])

    everything = samples(t0, *((i, float(i)) for i in range(5)))
    assert vm_read(t0, "power_w", everything) == everything
    assert [s.value for s in read(vm, t0, "power_w", lo=1, hi=3)] == [1.0, 2.0, 3.0]
    assert read(vm, t0, "power_w", lo=5, hi=999) == []
    assert read(vm, t0, "power_w", lo=-999, hi=-1) == []
    assert [s.value for s in read(vm, t0, "power_w", limit=2)] == [0.0, 1.0]


def test_victoria_metrics_injection_shaped_ids(
    vm: TimeSeriesStore, vm_read: Callable[..., list[Sample]]
) -> None:
    t0 = fresh_t0()
    vm.write(two_sites(t0))
    power = samples(t0, (0, 58.9), (1, 0.25), (30_000, 61.75))
    assert vm_read(t0, "power_w", power) == power

    for bad in INJECTIONS:
        assert read(vm, t0, "power_w", device=bad) == [], bad
        assert read(vm, t0, "power_w", site=bad) == [], bad
        assert read(vm, t0, bad) == [], bad
    assert vm.ping()
    odd = writable(INJECTIONS)
    vm.write([Point("streetlight", {"site": "wanmei", "device": d}, {"power_w": float(i)}, t0)
              for i, d in enumerate(odd)])
    for i, d in enumerate(odd):
        assert vm_read(t0, "power_w", samples(t0, (0, float(i))), device=d) == samples(
            t0, (0, float(i))), d


def test_victoria_metrics_invalid_point_is_rejected(
    vm: TimeSeriesStore, vm_read: Callable[..., list[Sample]]
) -> None:
    # VM itself answers 204 to lines it cannot parse, so the store must refuse them first
    t0 = fresh_t0()
    with pytest.raises(StoreRejected):
        vm.write([sl07("wanmei", t0, power_w=1.0),
                  Point("streetlight", {"device": "SL-07"}, {"power_w": 2.0}, t0)])
    vm.write([sl07("wanmei", t0 + 1, power_w=3.0)])
    assert vm_read(t0, "power_w", samples(t0, (1, 3.0))) == samples(t0, (1, 3.0))
