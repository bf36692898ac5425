"""The gateway against a real Mosquitto, a real store and a moved clock: the Foundation's promises."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from sqlalchemy import select

from gateway.runtime import Gateway
from linli.clock import ManualClock, to_ms
from linli.settings import Settings
from linli.site import builtin_site_path
from linli.storage import DeadLetter, DeviceState, TicketRow
from linli.tsdb import open_store

NIGHT = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # 21:00 in Fujian
WAIT_S = 15.0


@pytest.fixture(scope="module")
def site_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    document = yaml.safe_load(builtin_site_path().read_text(encoding="utf-8"))
    document["site"]["id"] = "site-b"
    document["site"]["name"] = "乙社区"
    path = tmp_path_factory.mktemp("sites") / "site-b.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(params=["sqlite+sqlite", "influxdb1+postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(time-series URL, database URL): the embedded pair, and the production-like pair."""
    if request.param == "sqlite+sqlite":
        return f"sqlite:///{tmp_path / 'ts.db'}", ""
    influx: str = request.getfixturevalue("influxdb1")
    return influx.rsplit("/", 1)[0] + f"/gw_{uuid.uuid4().hex[:8]}", request.getfixturevalue("postgres_url")


@pytest.fixture
def gateway(mosquitto: Any, tmp_path: Path, site_b: Path, stores: tuple[str, str]) -> Iterator[Gateway]:
    settings = Settings(
        data_dir=tmp_path, sites=f"{builtin_site_path()},{site_b}", mqtt_url=mosquitto.url, tsdb_url=stores[0],
        database_url=stores[1], mqtt_client_id=f"gw-{uuid.uuid4().hex[:8]}",
    )
    gw = Gateway(settings, clock=ManualClock(NIGHT))
    gw.start()
    assert gw.wait_until(lambda: gw.connected, WAIT_S), "gateway did not connect"
    # Everyone but the devices under test has just spoken, so silence timers start now.
    for live in gw.engine.devices():
        live.last_seen = NIGHT
    yield gw
    gw.stop()


class Device:
    """An outside device: its own MQTT connection, as a vendor's controller would have."""

    def __init__(self, mosquitto: Any, site: str, kind: str, device_id: str) -> None:
        self.prefix = f"estate/v1/{site}/{kind}/{device_id}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}")
        self.client.connect(mosquitto.host, mosquitto.port)
        self.client.loop_start()

    def send(self, channel: str, payload: dict[str, Any] | bytes, topic: str | None = None) -> None:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(topic or f"{self.prefix}/{channel}", raw, qos=1).wait_for_publish(WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def tickets(gw: Gateway, **where: Any) -> list[TicketRow]:
    with gw.database.session() as session:
        query = select(TicketRow)
        for key, value in where.items():
            query = query.where(getattr(TicketRow, key) == value)
        return list(session.scalars(query))


def settle(gw: Gateway, received: int) -> None:
    assert gw.wait_until(lambda: gw.messages_done >= received, WAIT_S), gw.pipeline.counters


def test_lamp_failure_gives_exactly_one_ticket_routed_to_the_property_crew(gateway: Gateway, mosquitto: Any) -> None:
    light = Device(mosquitto, "wanmei", "streetlight", "SL-07")
    clock = gateway.clock
    assert isinstance(clock, ManualClock)

    def at(seq: int) -> int:  # samples 30 s apart, the last ones just before the gateway's now
        return to_ms(NIGHT - timedelta(seconds=30 * (12 - seq)))

    light.send("telemetry", {"ts": at(1), "seq": 1, "relay": True, "dim_pct": 100, "power_w": 39.6, "voltage_v": 229.1})
    for seq in (2, 3, 4):  # dark for a minute, in 3 samples
        light.send("telemetry", {"ts": at(seq), "seq": seq, "relay": True, "power_w": 0, "voltage_v": 229.0})
    settle(gateway, 4)
    found = tickets(gateway, fault="lamp_failure")
    assert [(t.site, t.device_id, t.teams, t.status, t.severity) for t in found] == [
        ("wanmei", "SL-07", ["property"], "open", "P2")]
    for seq in range(5, 10):
        light.send("telemetry", {"ts": at(seq), "seq": seq, "relay": True, "power_w": 0, "voltage_v": 228.7})
    light.send("telemetry", {"ts": at(9), "seq": 9, "relay": True, "power_w": 0, "voltage_v": 228.7})  # a QoS 1 duplicate
    settle(gateway, 10)
    assert len(tickets(gateway, fault="lamp_failure")) == 1
    assert gateway.pipeline.counters.duplicates == 1
    light.close()


def test_telemetry_reaches_the_store_and_live_state_per_site(gateway: Gateway, mosquitto: Any) -> None:
    ts = to_ms(NIGHT) - 5000
    for site, power in (("wanmei", 39.5), ("site-b", 21.25)):
        device = Device(mosquitto, site, "streetlight", "SL-07")
        device.send("telemetry", {"ts": ts, "seq": 1, "relay": True, "power_w": power, "voltage_v": 230, "lux": 3})
        device.close()
    settle(gateway, 2)
    store = open_store(gateway.settings.timeseries_url)
    try:
        for site, power in (("wanmei", 39.5), ("site-b", 21.25)):
            samples = store.query(site=site, kind="streetlight", device_id="SL-07", field="power_w",
                                  since=NIGHT - timedelta(minutes=1), until=NIGHT + timedelta(minutes=1))
            assert [(s.ts, s.value) for s in samples] == [(NIGHT - timedelta(seconds=5), power)]
    finally:
        store.close()
    with gateway.database.session() as session:
        states = {s.site: s for s in session.scalars(select(DeviceState).where(DeviceState.device_id == "SL-07"))}
    assert states["wanmei"].online is True and states["wanmei"].last["power_w"] == 39.5
    assert states["site-b"].last["power_w"] == 21.25 and states["site-b"].last["lux"] == 3


def test_a_silent_light_goes_offline_after_three_intervals_not_before(gateway: Gateway, mosquitto: Any) -> None:
    clock = gateway.clock
    assert isinstance(clock, ManualClock)
    light = Device(mosquitto, "wanmei", "streetlight", "SL-07")
    light.send("telemetry", {"seq": 1, "relay": True, "power_w": 40, "voltage_v": 229})
    settle(gateway, 1)
    heard_at = clock.now()
    for live in gateway.engine.devices():  # the rest of the site keeps talking
        if (live.site, live.device_id) != ("wanmei", "SL-07"):
            live.last_seen = heard_at + timedelta(days=1)

    def ticked_at(moment: datetime) -> bool:
        return gateway.last_tick_at is not None and gateway.last_tick_at >= moment

    clock.set(heard_at + timedelta(seconds=89))
    assert gateway.wait_until(lambda: ticked_at(heard_at + timedelta(seconds=89)), WAIT_S)
    assert tickets(gateway, fault="offline") == []
    clock.set(heard_at + timedelta(seconds=90))  # silent for 3 intervals: held for the 30 s grouping window
    assert gateway.wait_until(lambda: ticked_at(heard_at + timedelta(seconds=90)), WAIT_S)
    clock.set(heard_at + timedelta(seconds=119))
    assert gateway.wait_until(lambda: ticked_at(heard_at + timedelta(seconds=119)), WAIT_S)
    assert tickets(gateway, fault="offline") == []
    clock.set(heard_at + timedelta(seconds=120))
    assert gateway.wait_until(lambda: bool(tickets(gateway, fault="offline")), WAIT_S)
    found = tickets(gateway, fault="offline")
    assert [(t.site, t.device_id, t.severity) for t in found] == [("wanmei", "SL-07", "P2")]
    light.close()


def test_bad_messages_are_dead_lettered_with_their_reason_and_never_stop_the_gateway(
    gateway: Gateway, mosquitto: Any,
) -> None:
    sender = Device(mosquitto, "wanmei", "streetlight", "SL-07")
    light = "estate/v1/wanmei/streetlight/SL-07"
    cases = [
        (f"{light}/telemetry", b"\x00\x01 not json", "not_json"),
        (f"{light}/telemetry", json.dumps({"relay": True, "pad": "x" * 17_000}).encode(), "too_large"),
        ("estate/v1/wanmei/streetlight/SL-404/telemetry", b'{"relay": true, "power_w": 1, "voltage_v": 230}',
         "unknown_device"),
        (f"{light}/firmware", b"{}", "topic"),
        (f"{light}/telemetry", b'{"relay": "on", "power_w": 1, "voltage_v": 230}', "schema"),
        (f"{light}/telemetry", b'["relay"]', "not_object"),
        (f"{light}/telemetry", b"\xff\xfe\xfd", "not_utf8"),
        (f"{light}/telemetry", json.dumps({"ts": to_ms(NIGHT) + 3_600_000, "relay": True, "power_w": 1,
                                           "voltage_v": 230}).encode(), "future_ts"),
    ]
    for topic, payload, _ in cases:
        sender.send("", payload, topic=topic)
    sender.send("telemetry", {"seq": 1, "relay": True, "power_w": 40, "voltage_v": 229})
    settle(gateway, len(cases) + 1)
    with gateway.database.session() as session:
        letters = list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)))
    assert [(d.topic, d.reason) for d in letters] == [(t, r) for t, _, r in cases]
    assert all(d.detail for d in letters)
    assert gateway.pipeline.counters.processed == 1  # the good one after all that
    with gateway.database.session() as session:
        state = session.get(DeviceState, ("wanmei", "SL-07"))
        assert state is not None and state.last["power_w"] == 40
    sender.close()
