"""Automatic actions through a real Mosquitto and the real gateway: a charger taken out of use on a
ground failure and put back when its ticket is resolved; streetlight schedules pushed with `set_schedule`
when the gateway starts serving a site and when the site file changes the schedule. Every command is
read by a subscriber on the device's `cmd` topic, as the device would read it (QoS 1)."""

from __future__ import annotations

import json
import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from gateway.runtime import Gateway
from gateway.settings import GatewaySettings
from linli.clock import CLOCK_TOPIC, ClockAnnouncement, ManualClock, to_ms
from linli.settings import Settings
from linli.site import builtin_site_path, load_site
from linli.storage import TicketRow
from linli.storage.tickets import append_event
from linli.tickets import EventType, TicketEvent

NIGHT = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # 21:00 in Fujian
WAIT_S = 15.0


@dataclass(frozen=True)
class Command:
    topic: str
    qos: int
    body: dict[str, Any]

    @property
    def device(self) -> str:
        return self.topic.split("/")[4]


class CommandReader:
    """Reads `cmd` topics as the devices would: its own connection, subscribed at QoS 1."""

    def __init__(self, mosquitto: Any, topic: str) -> None:
        self.queue: queue.Queue[Command] = queue.Queue()
        subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cmd-reader-{secrets.token_hex(4)}")
        client.on_connect = lambda c, u, flags, rc, props: c.subscribe(topic, qos=1)
        client.on_subscribe = lambda c, u, mid, rcs, props: subscribed.set()
        client.on_message = lambda c, u, m: self.queue.put(Command(m.topic, m.qos, json.loads(m.payload)))
        client.connect(mosquitto.host, mosquitto.port)
        client.loop_start()
        self.client = client
        assert subscribed.wait(WAIT_S), f"could not subscribe to {topic}"

    def take(self, count: int, match: Callable[[Command], bool]) -> list[Command]:
        """The next `count` commands that match (others are skipped); fails after WAIT_S."""
        found: list[Command] = []
        deadline = threading.Event()
        timer = threading.Timer(WAIT_S, deadline.set)
        timer.start()
        try:
            while len(found) < count and not deadline.is_set():
                try:
                    command = self.queue.get(timeout=0.05)
                except queue.Empty:
                    continue
                if match(command):
                    found.append(command)
        finally:
            timer.cancel()
        assert len(found) == count, f"{len(found)} of {count} commands arrived: {found[-3:]}"
        return found

    def quiet(self, match: Callable[[Command], bool], seconds: float) -> list[Command]:
        """Matching commands that arrive within `seconds` (expected: none)."""
        seen: list[Command] = []
        deadline = threading.Event()
        timer = threading.Timer(seconds, deadline.set)
        timer.start()
        try:
            while not deadline.is_set():
                try:
                    command = self.queue.get(timeout=0.05)
                except queue.Empty:
                    continue
                if match(command):
                    seen.append(command)
        finally:
            timer.cancel()
        return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    """The Wanmei site under an id of this test's own (no other test's retained messages or sessions)."""
    site_id = f"aa-{secrets.token_hex(3)}"
    text = builtin_site_path().read_text(encoding="utf-8")
    assert "\n  id: wanmei\n" in text
    path = tmp_path / "sites" / f"{site_id}.yaml"
    path.parent.mkdir()
    path.write_text(text.replace("\n  id: wanmei\n", f"\n  id: {site_id}\n", 1), encoding="utf-8")
    return path


@pytest.fixture
def start_gateway(mosquitto: Any, tmp_path: Path, site_file: Path, database_url: str) -> Iterator[Callable[[], Gateway]]:
    started: list[Gateway] = []

    def start() -> Gateway:
        settings = Settings(
            _env_file=None, data_dir=tmp_path / "gw", sites=str(site_file), mqtt_url=mosquitto.url,
            tsdb_url=f"sqlite:///{tmp_path / 'ts.db'}", database_url=database_url,
            mqtt_client_id=f"gw-{secrets.token_hex(4)}",
        )
        gw = Gateway(settings, clock=ManualClock(NIGHT))
        gw.start()
        started.append(gw)
        assert gw.wait_until(lambda: gw.connected, WAIT_S), "gateway did not connect"
        return gw

    yield start
    for gw in started:
        gw.stop()


def is_action(action: str, device: str | None = None) -> Callable[[Command], bool]:
    return lambda c: c.body.get("action") == action and (device is None or c.device == device)


def test_a_ground_failure_takes_the_pile_out_of_use_and_its_resolution_puts_it_back(
    mosquitto: Any, site_file: Path, start_gateway: Callable[[], Gateway],
) -> None:
    site = load_site(site_file)
    reader = CommandReader(mosquitto, f"estate/v1/{site.id}/+/+/cmd")
    gw = start_gateway()
    # The lights' schedules go first: the gateway's worker runs, and its site session has long subscribed.
    reader.take(sum(1 for d in site.devices.values() if d.kind == "streetlight"), is_action("set_schedule"))
    pile = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pile-{secrets.token_hex(4)}")
    pile.connect(mosquitto.host, mosquitto.port)
    pile.loop_start()
    try:
        telemetry = {"ts": to_ms(NIGHT) - 1000, "seq": 1, "status": "Faulted", "error_code": "GroundFailure",
                     "connector_id": 1, "power_kw": 0.0, "voltage_v": 230.0, "current_a": 0.0, "temp_c": 30.0}
        pile.publish(f"estate/v1/{site.id}/charger/CP-01/telemetry", json.dumps(telemetry), qos=1).wait_for_publish(WAIT_S)

        (off,) = reader.take(1, is_action("set_available"))
        assert (off.device, off.body["params"], off.qos) == ("CP-01", {"available": False}, 1)
        assert off.body["expires_ts"] > off.body["ts"] == to_ms(NIGHT)
        assert gw.wait_until(lambda: bool(_tickets(gw, fault="ground_failure")), WAIT_S)
        (ticket,) = _tickets(gw, fault="ground_failure")
        assert (ticket.device_id, ticket.severity, ticket.status) == ("CP-01", "P0", "open")
        assert reader.quiet(is_action("set_available"), 1.0) == []  # taken out once, not again on every pass

        # The technician repairs it and resolves the ticket; the gateway's upkeep pass sees it.
        with gw.database.session() as session:
            row = session.get(TicketRow, ticket.id)
            for kind in (EventType.STARTED, EventType.RESOLVED):
                row = append_event(session, row, TicketEvent(kind, NIGHT + timedelta(minutes=30), "wang", "更换漏保", {}))
        (on,) = reader.take(1, is_action("set_available"))
        assert (on.device, on.body["params"], on.qos) == ("CP-01", {"available": True}, 1)
        assert reader.quiet(is_action("set_available"), 3.0) == []  # once per resolution, not per pass
    finally:
        pile.disconnect()
        pile.loop_stop()
        reader.close()


def test_schedules_are_pushed_to_every_light_on_start_and_when_the_site_file_changes_them(
    mosquitto: Any, site_file: Path, start_gateway: Callable[[], Gateway],
) -> None:
    site = load_site(site_file)
    lights = sorted(d.id for d in site.devices.values() if d.kind == "streetlight")
    assert len(lights) == 43
    reader = CommandReader(mosquitto, f"estate/v1/{site.id}/+/+/cmd")
    gw = start_gateway()

    pushed = reader.take(len(lights), is_action("set_schedule"))
    assert sorted(c.device for c in pushed) == lights  # every light once, nothing to the other kinds
    assert {json.dumps(c.body["params"], sort_keys=True) for c in pushed} == {'{"off_offset_min": 0, "on_offset_min": 0}'}
    assert {c.qos for c in pushed} == {1}
    assert reader.quiet(is_action("set_schedule"), 1.5) == []  # not again while nothing changes

    # An edit elsewhere in the file pushes nothing; a new schedule goes to every light.
    text = site_file.read_text(encoding="utf-8")
    site_file.write_text(text.replace("name: 中心广场7号灯", "name: 中心广场七号灯", 1), encoding="utf-8")
    assert gw.wait_until(lambda: gw.sites[site.id].devices["SL-07"].name == "中心广场七号灯", WAIT_S)
    assert reader.quiet(is_action("set_schedule"), 1.5) == []
    text = site_file.read_text(encoding="utf-8")
    assert "    on_offset_min: 0\n    off_offset_min: 0\n" in text
    site_file.write_text(text.replace("    on_offset_min: 0\n    off_offset_min: 0\n",
                                      "    on_offset_min: 15\n    off_offset_min: -20\n", 1), encoding="utf-8")
    pushed = reader.take(len(lights), is_action("set_schedule"))
    assert sorted(c.device for c in pushed) == lights
    assert {(c.body["params"]["on_offset_min"], c.body["params"]["off_offset_min"]) for c in pushed} == {(15, -20)}
    reader.close()


def _tickets(gw: Gateway, **where: Any) -> list[TicketRow]:
    with gw.database.session() as session:
        query = select(TicketRow)
        for key, value in where.items():
            query = query.where(getattr(TicketRow, key) == value)
        rows = list(session.scalars(query))
        for row in rows:
            session.expunge(row)
        return rows


def test_a_gateway_following_a_simulator_pushes_schedules_only_once_its_clock_is_announced(
    mosquitto: Any, tmp_path: Path, site_file: Path, database_url: str,
) -> None:
    """Before the simulator's first clock announcement the gateway's time is the wall clock's: a
    command stamped with it would stay pending for hours of simulated time. It waits, then pushes."""
    site = load_site(site_file)
    lights = sorted(d.id for d in site.devices.values() if d.kind == "streetlight")
    platform = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"clock-{secrets.token_hex(4)}")
    platform.connect(mosquitto.host, mosquitto.port)
    platform.loop_start()
    platform.publish(CLOCK_TOPIC, b"", qos=1, retain=True).wait_for_publish(WAIT_S)  # no announcement yet
    reader = CommandReader(mosquitto, f"estate/v1/{site.id}/+/+/cmd")
    settings = GatewaySettings(
        _env_file=None, data_dir=tmp_path / "gw", sites=str(site_file), mqtt_url=mosquitto.url,
        tsdb_url=f"sqlite:///{tmp_path / 'ts.db'}", database_url=database_url, follow_sim_clock=True,
        mqtt_client_id=f"gw-{secrets.token_hex(4)}", gateway_metrics_port=0,
    )
    gw = Gateway(settings)
    gw.start()
    try:
        assert gw.wait_until(lambda: gw.connected, WAIT_S), "gateway did not connect"
        assert reader.quiet(is_action("set_schedule"), 3.0) == []  # its upkeep ran (every 2 s): nothing yet
        evening = ClockAnnouncement(start_wall_ms=to_ms(datetime.now(tz=UTC)), start_sim_ms=to_ms(NIGHT), speed=1.0)
        platform.publish(CLOCK_TOPIC, evening.to_json(), qos=1, retain=True).wait_for_publish(WAIT_S)
        pushed = reader.take(len(lights), is_action("set_schedule"))
        assert sorted(c.device for c in pushed) == lights
        stamped = {c.body["ts"] for c in pushed}
        assert all(abs(ts - to_ms(NIGHT)) < 60_000 for ts in stamped), stamped  # the simulator's evening
    finally:
        gw.stop()
        reader.close()
        platform.publish(CLOCK_TOPIC, b"", qos=1, retain=True).wait_for_publish(WAIT_S)
        platform.disconnect()
        platform.loop_stop()
