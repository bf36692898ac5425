"""Nothing lost when anything fails: the store stopped for a minute of traffic, the gateway killed
with SIGKILL holding thousands of messages, the broker restarted. Real Mosquitto, real InfluxDB 1.x
(our own influxd here: the session one is shared and must not be stopped)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import servers
from sqlalchemy import func, select

from gateway.runtime import Gateway
from gateway.settings import GatewaySettings
from linli.clock import ManualClock, to_ms
from linli.storage import Database, TicketRow
from linli.tsdb import open_store

NIGHT = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # 21:00 in Fujian
WAIT_S = 30.0
LIGHTS = [f"SL-0{n}" for n in range(1, 10)]  # always-powered circuit C1


@pytest.fixture
def own_influxd(tmp_path: Path) -> Iterator[servers.InfluxDB1Server]:
    server = servers.started(lambda: servers.start_influxdb1(tmp_path / "influxd"))
    try:
        yield server
    finally:
        server.close()


class Publisher:
    def __init__(self, mosquitto: Any) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.connect(mosquitto.host, mosquitto.port)
        self.client.loop_start()
        self._last: mqtt.MQTTMessageInfo | None = None

    def telemetry(self, device: str, seq: int, ts_ms: int, power_w: float = 40.0) -> None:
        body = {"ts": ts_ms, "seq": seq, "relay": True, "power_w": power_w, "voltage_v": 229.0}
        self._last = self.client.publish(f"estate/v1/wanmei/streetlight/{device}/telemetry", json.dumps(body), qos=1)

    def event(self, device: str, body: dict[str, Any]) -> None:
        self._last = self.client.publish(f"estate/v1/wanmei/elevator/{device}/event", json.dumps(body), qos=1)

    def flush(self) -> None:
        if self._last is not None:
            self._last.wait_for_publish(WAIT_S)

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()


def seqs_in_store(store_url: str, device: str, since: datetime, until: datetime) -> list[int]:
    store = open_store(store_url)
    try:
        samples = store.query(site="wanmei", kind="streetlight", device_id=device, field="seq", since=since, until=until)
    finally:
        store.close()
    return [int(s.value) for s in samples]  # type: ignore[arg-type]


def test_a_minute_of_traffic_during_a_store_outage_reaches_the_store_in_order(
    mosquitto: Any, own_influxd: servers.InfluxDB1Server, tmp_path: Path,
) -> None:
    store_url = own_influxd.store_url("outage")
    settings = GatewaySettings(
        _env_file=None, data_dir=tmp_path, mqtt_url=mosquitto.url, tsdb_url=store_url,
        mqtt_client_id=f"gw-{uuid.uuid4().hex[:8]}", gateway_metrics_port=0,
    )
    clock = ManualClock(NIGHT)
    gw = Gateway(settings, clock=clock)
    gw.start()
    publisher = Publisher(mosquitto)
    sent = 0
    try:
        assert gw.wait_until(lambda: gw.connected, WAIT_S)
        for device in LIGHTS:  # before the outage: straight to the store
            publisher.telemetry(device, 0, to_ms(clock.now()))
        sent += len(LIGHTS)
        publisher.flush()
        assert gw.wait_until(lambda: gw.messages_done >= sent, WAIT_S)
        assert gw.sink.stats.written == len(LIGHTS) and gw.sink.stats.buffered == 0

        own_influxd.stop()
        for second in range(1, 61):  # 60 s of simulated traffic, one message per light per second
            clock.set(NIGHT + timedelta(seconds=second))
            for device in LIGHTS:
                publisher.telemetry(device, second, to_ms(clock.now()))
            sent += len(LIGHTS)
            publisher.flush()
            assert gw.wait_until(lambda: gw.messages_done >= sent, WAIT_S)  # noqa: B023
        assert gw.sink.stats.buffered == 60 * len(LIGHTS)
        assert len(gw.buffer) == 60 * len(LIGHTS)
        assert gw.messages_acked == sent  # acknowledged: they are on disk

        own_influxd.start()
        deadline = time.monotonic() + WAIT_S
        while len(gw.buffer) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(gw.buffer) == 0, "the buffer did not drain after the store came back"
    finally:
        publisher.close()
        gw.stop()
    for device in LIGHTS:
        assert seqs_in_store(store_url, device, NIGHT, NIGHT + timedelta(minutes=2)) == list(range(61)), device


def test_a_broker_restart_is_survived_and_the_buffer_keeps_its_bound(mosquitto: Any, tmp_path: Path) -> None:
    settings = GatewaySettings(
        _env_file=None, data_dir=tmp_path, mqtt_url=mosquitto.url, tsdb_url="influxdb1://127.0.0.1:9/nowhere",
        mqtt_client_id=f"gw-{uuid.uuid4().hex[:8]}", gateway_metrics_port=servers.free_port(),
        gateway_metrics_host="127.0.0.1", buffer_max_mb=0.05,  # 52 kB: a few hundred points
    )
    clock = ManualClock(NIGHT)
    gw = Gateway(settings, clock=clock)
    gw.start()
    try:
        assert gw.wait_until(lambda: gw.connected, WAIT_S)
        mosquitto.stop()
        try:
            assert gw.wait_until(lambda: not gw.connected, WAIT_S)
        finally:
            mosquitto.start()
        assert gw.wait_until(lambda: gw.connected, WAIT_S), "the gateway did not reconnect to the restarted broker"

        publisher = Publisher(mosquitto)
        sent = 0
        for seq in range(600):  # the store is unreachable: all of it goes to the buffer
            publisher.telemetry("SL-01", seq, to_ms(clock.now()) - 600_000 + seq * 100)
            sent += 1
        for seq in range(30):  # events: never dropped for space
            body = {"seq": 600 + seq, "code": "door_forced", "detail": {"n": seq}}
            publisher.event("EL-1A", body)
            sent += 1
        publisher.close()
        assert gw.wait_until(lambda: gw.messages_done >= sent, WAIT_S), gw.pipeline.counters
        buffer = gw.buffer
        assert buffer.bytes <= buffer.max_bytes
        assert buffer.dropped > 0 and len(buffer) + buffer.dropped == sent
        assert buffer.file_bytes() < 4 * buffer.max_bytes + 200_000  # SQLite pages and WAL on top of the rows
        with buffer._lock:
            events = buffer._db.execute("SELECT COALESCE(SUM(points), 0) FROM chunks WHERE keep = 1").fetchone()[0]
        assert events == 30  # every event kept; only telemetry was dropped, the oldest first
        # The oldest telemetry left is the one right after those dropped (events of the same batch may
        # sit in their own chunk ahead of it, so look at the telemetry chunks only).
        with buffer._lock:
            row = buffer._db.execute("SELECT id FROM chunks WHERE keep = 0 ORDER BY id LIMIT 1").fetchone()
        assert row is not None
        first = _first_point(buffer, int(row[0]))
        assert first.measurement == "streetlight"
        assert int(first.fields["seq"]) == buffer.dropped  # seqs 0 .. dropped-1 went

        metrics = httpx.get(f"http://127.0.0.1:{gw.metrics.port}/metrics", timeout=5).text  # type: ignore[union-attr]
        assert f'linli_gateway_points_dropped_total{{site_set="wanmei"}} {float(buffer.dropped)}' in metrics
        assert "linli_gateway_messages_received_total" in metrics and "linli_gateway_write_seconds_bucket" in metrics
        assert 'linli_gateway_broker_connected{site_set="wanmei"} 1.0' in metrics
    finally:
        gw.stop()


def _metrics(port: int) -> dict[str, float]:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return {}
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("linli_gateway_") and "{" in line:
            name, _, rest = line.partition("{")
            values[name] = values.get(name, 0.0) + float(rest.rsplit(" ", 1)[1])
    return values


def _wait_metric(port: int, name: str, at_least: float, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _metrics(port).get(name, -1) < at_least:
        assert proc.poll() is None, "the gateway exited"
        assert time.monotonic() < deadline, f"{name} < {at_least}: {_metrics(port)}"
        time.sleep(0.2)


def test_a_gateway_killed_holding_thousands_of_messages_loses_none_and_duplicates_no_ticket(
    mosquitto: Any, own_influxd: servers.InfluxDB1Server, tmp_path: Path,
) -> None:
    store_url = own_influxd.store_url("killed")
    port = servers.free_port()
    env = {**os.environ, "LINLI_DATA_DIR": str(tmp_path / "data"), "LINLI_MQTT_URL": mosquitto.url,
           "LINLI_TSDB_URL": store_url, "LINLI_MQTT_CLIENT_ID": f"gw-{uuid.uuid4().hex[:8]}",
           "LINLI_GATEWAY_METRICS_PORT": str(port), "LINLI_GATEWAY_METRICS_HOST": "127.0.0.1",
           "LINLI_LOG_FORMAT": "json", "LINLI_SITES": "", "LINLI_DATABASE_URL": ""}
    log = (tmp_path / "gateway.log").open("ab")

    def run_gateway() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "linli.cli", "gateway"], env=env, stdout=log, stderr=log)
        _wait_metric(port, "linli_gateway_broker_connected", 1, proc)
        return proc

    per_light, now_ms = 700, int(time.time() * 1000)
    total = per_light * len(LIGHTS)
    gateway = run_gateway()
    try:
        own_influxd.stop()  # the store is paused: everything the gateway takes goes to its disk buffer
        publisher = Publisher(mosquitto)
        for seq in range(per_light):
            for device in LIGHTS:
                # SL-01's lamp is dark throughout: one lamp_failure ticket, before and after the kill
                publisher.telemetry(device, seq, now_ms - 200_000 + seq * 200, 0.0 if device == "SL-01" else 40.0)
        publisher.close()
        _wait_metric(port, "linli_gateway_messages_processed_total", 5000, gateway)
        gateway.send_signal(signal.SIGKILL)
        gateway.wait(10)

        own_influxd.start()
        gateway = run_gateway()  # gets what the broker still holds unacknowledged, flushes its buffer
        deadline = time.monotonic() + 90
        store_since, store_until = datetime.fromtimestamp((now_ms - 300_000) / 1000, UTC), datetime.now(UTC)
        while True:
            found = {d: seqs_in_store(store_url, d, store_since, store_until) for d in LIGHTS}
            if all(len(v) == per_light for v in found.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        for device, seqs in found.items():
            assert seqs == list(range(per_light)), f"{device}: {len(seqs)} of {per_light} seqs"
        assert sum(len(v) for v in found.values()) == total
    finally:
        if gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(20)
        log.close()
        if not own_influxd._backend.alive():  # type: ignore[attr-defined]
            own_influxd.start()
    database = Database(f"sqlite:///{tmp_path / 'data' / 'linli.db'}")
    try:
        with database.session() as session:
            lamp = session.scalars(select(TicketRow).where(TicketRow.fault == "lamp_failure")).all()
            repeated = session.execute(
                select(TicketRow.subject_id, TicketRow.fault, func.count()).group_by(TicketRow.subject_id, TicketRow.fault)
                .having(func.count() > 1)
            ).all()
    finally:
        database.close()
    assert [(t.device_id, t.status) for t in lamp] == [("SL-01", "open")]
    assert repeated == []


def _first_point(buffer: Any, chunk_id: int) -> Any:
    from gateway.buffer import _decode

    with buffer._lock:
        body = buffer._db.execute("SELECT body FROM chunks WHERE id = ?", (chunk_id,)).fetchone()[0]
    return _decode(body)[0]
