"""Firmware behaviour of the simulator against a real Mosquitto: no QoS 1 message lost across a
broker restart (checked in a real gateway's store), commands and their expiry, concentrators,
and --speed max runs that repeat exactly. Nothing sleeps to wait: tests wait on messages, on the
simulator's stats (``Simulator.wait_until``) or on the gateway (``Gateway.wait_until``)."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.fleet import county, fleet_models
from firmware_sim.runtime import Simulator
from firmware_sim.simclock import CLOCK_TOPIC, ClockAnnouncement, fetch_clock
from gateway.runtime import Gateway
from integration.test_sim_broker import TIMEOUT, Listener, Received, is_
from linli.clock import ManualClock, ScaledClock, SystemClock, to_ms
from linli.settings import Settings
from linli.site import Site, builtin_site_path, load_site
from linli.tsdb import open_store

WANMEI = load_site(builtin_site_path())


class Platform:
    """Publishes as the platform would (commands) and clears retained topics afterwards."""

    def __init__(self, mosquitto: Any) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-platform-{secrets.token_hex(4)}")
        self.client.connect(mosquitto.host, mosquitto.port)
        self.client.loop_start()
        self.retained: set[str] = set()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(TIMEOUT)

    def command(self, topic: str, action: str, params: dict[str, Any], *, now_ms: int, expires_ms: int) -> str:
        ident = str(uuid.uuid4())
        body = {"id": ident, "ts": now_ms, "action": action, "params": params, "expires_ts": expires_ms}
        self.publish(topic, json.dumps(body).encode())
        return ident

    def clear(self, topics: list[str]) -> None:
        deadline = time.monotonic() + TIMEOUT  # after a broker restart paho reconnects on its own
        while not self.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.1)
        for topic in topics:
            self.publish(topic, b"", retain=True)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def platform(mosquitto: Any) -> Iterator[Platform]:
    p = Platform(mosquitto)
    yield p
    p.close()


def _status_topics(site: Site, devices: list[str]) -> list[str]:
    return [f"estate/v1/{site.id}/{site.devices[d].kind}/{d}/status" for d in devices]


# ---------------------------------------------------------------- a broker restart


def _record_sent_telemetry(simulator: Simulator, device: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The seqs of the telemetry ``device`` hands to its MQTT client (published or buffered), in order.

    Not ``range(model.seq)``: a model loses a single telemetry message now and then on purpose (its
    dropout noise; with seed 3 SL-01 never sends seq 121), and the seq moves on without it."""
    model = simulator.model(device)
    messages = model.messages
    sent: list[int] = []

    def recorded(now: datetime) -> Any:
        out = messages(now)
        sent.extend(m.seq for m in out if m.seq is not None)
        return out

    monkeypatch.setattr(model, "messages", recorded)
    return sent


def test_a_broker_restart_loses_no_qos1_message_in_the_gateways_store(
    mosquitto: Any, tmp_path: Path, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    devices = ["SL-01", "SL-02", "CP-03"]
    settings = Settings(
        data_dir=tmp_path, sites=str(builtin_site_path()), mqtt_url=mosquitto.url,
        tsdb_url=f"sqlite:///{tmp_path / 'ts.db'}", database_url="", mqtt_client_id=f"gw-{uuid.uuid4().hex[:8]}",
    )
    gateway = Gateway(settings)
    gateway.start()
    simulator = Simulator([WANMEI], mosquitto.url, interval_s=0.2, devices=devices, seed=3, backoff_s=(0.1, 0.5))
    sent = {d: _record_sent_telemetry(simulator, d, monkeypatch) for d in devices}
    began = SystemClock().now()
    try:
        assert gateway.wait_until(lambda: gateway.connected, TIMEOUT), "gateway did not connect"
        simulator.start()
        assert gateway.wait_until(lambda: gateway.messages_done >= 10, TIMEOUT)
        mosquitto.stop()
        try:
            assert simulator.wait_until(lambda s: s.connected == 0, TIMEOUT), "the devices never saw the broker go"
            assert simulator.wait_until(lambda s: s.buffered >= 15, TIMEOUT), simulator.stats()
        finally:
            mosquitto.start()
        assert simulator.wait_until(lambda s: s.connected == len(devices) and s.replayed >= 15, 3 * TIMEOUT), simulator.stats()
        assert simulator.wait_until(lambda s: s.buffered == 0 and s.unacked == 0, 3 * TIMEOUT), simulator.stats()
        # Stopping publishes what is due and waits for its PUBACKs; on a loaded machine that can take
        # more than the default 5 s, after which the last messages would be cut off unsent and the
        # check below would blame the gateway for them.
        simulator.stop(timeout=60.0)
        stats = simulator.stats()
        assert stats.buffer_dropped == 0 and stats.reconnects >= len(devices)
        assert stats.buffered == 0 and stats.unacked == 0, f"the simulator stopped with messages unsent: {stats}"
        # Every device sent a run of telemetry, and each of those messages was acked by the broker.
        assert all(sent[d] and sent[d] == sorted(set(sent[d])) for d in devices), sent
        last = {d: sent[d][-1] for d in devices}
        store = open_store(settings.timeseries_url)
        try:
            def stored(device: str) -> list[int]:
                kind = WANMEI.devices[device].kind
                samples = store.query(site="wanmei", kind=kind, device_id=device, field="seq",
                                      since=began - timedelta(minutes=1), until=SystemClock().now() + timedelta(minutes=1))
                return sorted({int(s.value) for s in samples})

            # Polled, not waited on the gateway's progress: points that went through the on-disk
            # buffer reach the store from the flusher thread, after the last processing cycle.
            deadline = time.monotonic() + 3 * TIMEOUT
            while not all(stored(d)[-1:] == [last[d]] for d in devices) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert all(stored(d)[-1:] == [last[d]] for d in devices), (
                {d: (stored(d)[-3:], last[d]) for d in devices}, gateway.pipeline.counters, gateway.sink.stats)
            for device in devices:
                lost = sorted(set(sent[device]) - set(stored(device)))
                assert stored(device) == sent[device], f"{device}: sent but not stored: {lost}"
        finally:
            store.close()
    finally:
        simulator.stop()
        gateway.stop()
        platform.clear(_status_topics(WANMEI, devices))


# ---------------------------------------------------------------- commands


def test_set_light_changes_the_next_telemetry_and_is_acked_and_an_expired_command_is_ignored(
    mosquitto: Any, listen: Callable[[str], Listener], platform: Platform
) -> None:
    night = datetime(2026, 1, 15, 21, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    clock = ScaledClock(night, speed=1.0)
    prefix = "estate/v1/wanmei/streetlight/SL-07"
    live = listen(f"{prefix}/#")
    simulator = Simulator([WANMEI], mosquitto.url, clock=clock, interval_s=0.2, devices=["SL-07"], seed=2)
    simulator.start()
    rated = WANMEI.devices["SL-07"].rated_power_w or 0

    def telemetry_after(ack: Received) -> dict[str, Any]:
        at = json.loads(ack.payload)["ts"]
        message = live.expect("telemetry after the ack", lambda m: m.channel == "telemetry" and m.json()["ts"] >= at)
        return message.json()

    try:
        before = live.expect("SL-07 telemetry", is_("SL-07", "telemetry")).json()
        assert before["relay"] is True and before["dim_pct"] == 100  # 21:00: lit by the schedule
        now = to_ms(clock.now())
        ident = platform.command(f"{prefix}/cmd", "set_light", {"relay": True, "dim_pct": 30},
                                 now_ms=now, expires_ms=now + 60_000)
        ack = live.expect("the ack", is_("SL-07", "cmd/ack"))
        assert ack.json() == {"id": ident, "ts": ack.json()["ts"], "ok": True}  # error null is left out
        dimmed = telemetry_after(ack)
        assert dimmed["relay"] is True and dimmed["dim_pct"] == 30
        assert dimmed["power_w"] == pytest.approx(rated * 0.3, rel=0.05)

        now = to_ms(clock.now())
        ident = platform.command(f"{prefix}/cmd", "set_light", {"relay": False}, now_ms=now, expires_ms=now + 60_000)
        ack = live.expect("the ack of relay off", is_("SL-07", "cmd/ack"))
        assert ack.json()["id"] == ident and ack.json()["ok"] is True
        dark = telemetry_after(ack)
        assert dark["relay"] is False and dark["power_w"] < 1

        # An expired command: not executed, not acked. A refresh after it shows both.
        now = to_ms(clock.now())
        expired = platform.command(f"{prefix}/cmd", "set_light", {"relay": True, "dim_pct": 70},
                                   now_ms=now - 120_000, expires_ms=now - 60_000)
        refresh = platform.command(f"{prefix}/cmd", "refresh", {}, now_ms=now, expires_ms=now + 60_000)
        ack = live.expect("the ack of the refresh", is_("SL-07", "cmd/ack"))
        assert ack.json()["id"] == refresh, f"the expired command {expired} was acked"
        assert live.expect("the refreshed status", lambda m: m.channel == "status").json()["online"] is True
        assert telemetry_after(ack)["relay"] is False, "the expired command was executed"
        assert simulator.stats().commands_expired == 1

        bad = platform.command(f"{prefix}/cmd", "set_available", {"available": False}, now_ms=now, expires_ms=now + 60_000)
        ack = live.expect("the ack of a wrong action", is_("SL-07", "cmd/ack"))
        assert ack.json()["id"] == bad and ack.json()["ok"] is False and "chargers" in ack.json()["error"]
    finally:
        simulator.stop()
        platform.clear(_status_topics(WANMEI, ["SL-07"]))


def test_set_available_takes_a_charger_out_of_service_and_back(
    mosquitto: Any, listen: Callable[[str], Listener], platform: Platform
) -> None:
    prefix = "estate/v1/wanmei/charger/CP-05"
    live = listen(f"{prefix}/#")
    simulator = Simulator([WANMEI], mosquitto.url, interval_s=0.2, devices=["CP-05"], seed=2)
    simulator.start()
    try:
        live.expect("CP-05 telemetry", is_("CP-05", "telemetry"))
        for available, status in ((False, "Unavailable"), (True, "Available")):
            now = to_ms(SystemClock().now())
            ident = platform.command(f"{prefix}/cmd", "set_available", {"available": available},
                                     now_ms=now, expires_ms=now + 60_000)
            ack = live.expect("the ack", is_("CP-05", "cmd/ack"))
            assert ack.json()["id"] == ident and ack.json()["ok"] is True
            acked_at: int = ack.json()["ts"]

            def later(m: Received, since: int = acked_at) -> bool:
                return m.channel == "telemetry" and m.json()["ts"] >= since

            after = live.expect("telemetry after it", later).json()
            assert after["status"] == status
    finally:
        simulator.stop()
        platform.clear(_status_topics(WANMEI, ["CP-05"]))


def test_a_clockless_device_sends_no_ts(mosquitto: Any, listen: Callable[[str], Listener], platform: Platform) -> None:
    live = listen("estate/v1/wanmei/streetlight/SL-09/#")
    simulator = Simulator([WANMEI], mosquitto.url, interval_s=0.2, devices=["SL-09"], clockless=True)
    simulator.start()
    try:
        assert "ts" not in live.expect("the status", is_("SL-09", "status")).json()
        body = live.expect("telemetry", is_("SL-09", "telemetry")).json()
        assert "ts" not in body and body["seq"] >= 0
    finally:
        simulator.stop()
        platform.clear(_status_topics(WANMEI, ["SL-09"]))


# ---------------------------------------------------------------- concentrators


def test_a_concentrator_carries_its_children_on_one_connection_and_its_will_fires_when_killed(
    mosquitto: Any, listen: Callable[[str], Listener], platform: Platform
) -> None:
    site = county(1, 1, 20, seed=1, prefix=f"fleet-{secrets.token_hex(3)}")[0]
    live = listen(f"estate/v1/{site.id}/#")
    simulator = Simulator([site], mosquitto.url, interval_s=0.3, model_factory=fleet_models(1), seed=1)
    simulator.start()
    children = sorted(site.devices)
    conc_status = f"estate/v1/{site.id}/concentrator/CC-001/status"
    try:
        assert simulator.connection_ids == [f"sim-{site.id}-concentrator-CC-001"]
        stats = simulator.stats()
        assert stats.connections == 1 and stats.connected == 1 and stats.devices == 20
        birth = live.expect("the concentrator's birth", lambda m: m.topic == conc_status).json()
        assert birth["online"] is True
        seen: set[str] = set()
        while seen != set(children):
            message = live.expect("children's telemetry", lambda m: m.channel == "telemetry")
            assert message.topic.startswith(f"estate/v1/{site.id}/streetlight/")
            seen.add(message.device)
        for child in children:
            assert live.expect(f"{child}'s status", is_(child, "status")).json()["online"] is True

        simulator.kill_connection(simulator.connection_ids[0])
        will = live.expect("the concentrator's last will", lambda m: m.topic == conc_status and not m.json()["online"])
        assert will.payload == b'{"online":false}'
        assert simulator.wait_until(lambda s: s.connected == 0, TIMEOUT)
    finally:
        simulator.stop()
        platform.clear([conc_status, *_status_topics(site, children)])


def test_a_concentrator_offline_injection_kills_the_connection_and_it_reboots_after(
    mosquitto: Any, listen: Callable[[str], Listener], platform: Platform
) -> None:
    from firmware_sim.faults import parse_injection

    site = county(1, 1, 3, seed=1, prefix=f"fleet-{secrets.token_hex(3)}")[0]
    live = listen(f"estate/v1/{site.id}/#")
    clock = SystemClock()
    injection = parse_injection("concentrator_offline:concentrator:CC-001@+1s/1s", start=clock.now())
    simulator = Simulator([site], mosquitto.url, interval_s=0.2, model_factory=fleet_models(1), injections=[injection],
                          backoff_s=(0.1, 0.5))
    simulator.start()
    conc_status = f"estate/v1/{site.id}/concentrator/CC-001/status"
    try:
        first = live.expect("the birth", lambda m: m.topic == conc_status).json()
        live.expect("the will", lambda m: m.topic == conc_status and m.payload == b'{"online":false}')
        again = live.expect("the reboot", lambda m: m.topic == conc_status and m.json()["online"])
        assert again.json()["boot"] == first["boot"] + 1
        rebooted_at = again.json()["ts"]
        after = live.expect("a child's telemetry after", lambda m: m.channel == "telemetry" and m.json()["ts"] >= rebooted_at)
        assert after.json()["seq"] == 0, "the children reboot with their concentrator"
    finally:
        simulator.stop()
        platform.clear([conc_status, *_status_topics(site, sorted(site.devices))])


# ---------------------------------------------------------------- --speed max


def _max_run(mosquitto: Any, listen: Callable[[str], Listener], site: Site) -> dict[str, list[bytes]]:
    start = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    live = listen(f"estate/v1/{site.id}/+/+/telemetry")
    devices = ["SL-01", "EL-1A", "CP-01"]
    simulator = Simulator([site], mosquitto.url, clock=ManualClock(start), drive_clock=True, devices=devices, seed=11,
                          boot=1, interval_s=30, announce_clock=True)
    simulator.start()
    try:
        assert simulator.wait_until(lambda s: s.telemetry_sent >= 60, TIMEOUT), simulator.stats()
        followed = fetch_clock(mosquitto.url, timeout=TIMEOUT)
        announcement = followed.announcement
        assert announcement is not None and announcement.speed is None and announcement.start_sim_ms == to_ms(start)
    finally:
        simulator.stop()
    out: dict[str, list[bytes]] = {}
    for device in devices:
        out[device] = [live.expect(f"telemetry {i} of {device}", is_(device, "telemetry")).payload for i in range(15)]
    stats = simulator.stats()
    assert stats.sim_now is not None and stats.sim_now - start >= timedelta(minutes=5), "simulated time raced ahead"
    return out


def test_speed_max_runs_ahead_of_the_wall_clock_and_a_seed_repeats_the_run(
    mosquitto: Any, listen: Callable[[str], Listener], platform: Platform
) -> None:
    site = WANMEI
    try:
        first = _max_run(mosquitto, listen, site)
        second = _max_run(mosquitto, listen, site)
        assert first == second
        assert json.loads(first["SL-01"][1])["ts"] - json.loads(first["SL-01"][0])["ts"] == 30_000
    finally:
        platform.clear([*_status_topics(site, ["SL-01", "EL-1A", "CP-01"]), CLOCK_TOPIC])
    assert ClockAnnouncement.from_json(ClockAnnouncement(1, 2, 3.0).to_json()).speed == 3.0
