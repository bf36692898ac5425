"""The simulator against a real Mosquitto: retained birth messages, telemetry, last wills, faults.

Each test simulates a copy of the wanmei site under its own site id (so its client ids and retained
messages meet no other test's) and clears the retained statuses it left behind. Nothing sleeps to
wait for behaviour: tests wait on the messages themselves, with bounded timeouts.
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.cli import main
from firmware_sim.faults import Fault, Injection
from firmware_sim.runtime import Simulator
from linli.clock import ScaledClock, SystemClock, to_ms
from linli.contract import Message, StreetlightTelemetry, parse, topic_for
from linli.site import Site, builtin_site_path, load_site

TIMEOUT = 10.0


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool

    @property
    def device(self) -> str:
        return self.topic.split("/")[4]

    @property
    def channel(self) -> str:
        return "/".join(self.topic.split("/")[5:])

    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.payload)
        return document


class Listener:
    """A plain paho client subscribed to a filter; received messages queue up in order."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.queue: queue.Queue[Received] = queue.Queue()
        self.seen: list[Received] = []  # everything, in arrival order
        self.pending: list[Received] = []  # arrived, not taken by expect() yet
        subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-listener-{secrets.token_hex(4)}")
        client.on_connect = lambda c, u, flags, rc, props: c.subscribe(topic, qos=1)
        client.on_subscribe = lambda c, u, mid, rcs, props: subscribed.set()
        client.on_message = lambda c, u, m: self.queue.put(Received(m.topic, bytes(m.payload), bool(m.retain)))
        client.connect(host, port)
        client.loop_start()
        self.client = client
        assert subscribed.wait(TIMEOUT), f"could not subscribe to {topic}"

    def expect(self, what: str, match: Callable[[Received], bool], timeout: float = TIMEOUT) -> Received:
        """The first message not yet taken that matches (earlier arrivals first); fails after ``timeout``."""
        for index, message in enumerate(self.pending):
            if match(message):
                return self.pending.pop(index)
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while not deadline.is_set():
                try:
                    message = self.queue.get(timeout=0.05)
                except queue.Empty:
                    continue
                self.seen.append(message)
                if match(message):
                    return message
                self.pending.append(message)
        finally:
            timer.cancel()
        recent = "\n".join(f"  {m.topic} {m.payload[:120]!r} retain={m.retain}" for m in self.seen[-15:])
        pytest.fail(f"no {what} within {timeout:g} s; last messages:\n{recent}")

    def between(self, first: Received, last: Received) -> list[Received]:
        """Every message that arrived after ``first`` and before ``last``."""
        start = next(i for i, m in enumerate(self.seen) if m is first)
        end = next(i for i, m in enumerate(self.seen) if m is last)
        return self.seen[start + 1 : end]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def site(tmp_path: Path, mosquitto: Any) -> Iterator[Site]:
    """The wanmei site under a fresh id; its retained statuses are cleared afterwards."""
    site_id = f"simtest-{secrets.token_hex(3)}"
    text = builtin_site_path().read_text(encoding="utf-8")
    assert "\n  id: wanmei\n" in text
    path = tmp_path / f"{site_id}.yaml"
    path.write_text(text.replace("\n  id: wanmei\n", f"\n  id: {site_id}\n", 1), encoding="utf-8")
    loaded = load_site(path)
    yield loaded
    cleaner = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-cleaner-{secrets.token_hex(4)}")
    cleaner.connect(mosquitto.host, mosquitto.port)
    cleaner.loop_start()
    try:
        infos = [
            cleaner.publish(topic_for(site_id, d.kind, d.id, "status"), b"", qos=1, retain=True) for d in loaded.spec.devices
        ]
        for info in infos:
            info.wait_for_publish(TIMEOUT)
    finally:
        cleaner.disconnect()
        cleaner.loop_stop()


@pytest.fixture
def listen(mosquitto: Any) -> Iterator[Callable[[str], Listener]]:
    listeners: list[Listener] = []

    def make(topic: str) -> Listener:
        listener = Listener(mosquitto.host, mosquitto.port, topic)
        listeners.append(listener)
        return listener

    yield make
    for listener in listeners:
        listener.close()


def gateway_parse(site: Site, message: Received, received_ms: int) -> Message:
    result = parse(
        message.topic, message.payload, received_ms=received_ms,
        device_kind=lambda s, d: site.devices[d].kind if s == site.id and d in site.devices else None,
        known_site=lambda s: s == site.id,
    )
    assert isinstance(result, Message), result
    return result


def is_(device: str, channel: str) -> Callable[[Received], bool]:
    return lambda m: m.device == device and m.channel == channel


def from_(device: str) -> Callable[[Received], bool]:
    return lambda m: m.device == device


def offline(device: str) -> Callable[[Received], bool]:
    return lambda m: is_(device, "status")(m) and m.json()["online"] is False


def test_devices_publish_a_retained_status_first_then_telemetry_that_parses(
    mosquitto: Any, site: Site, listen: Callable[[str], Listener]
) -> None:
    devices = ["SL-01", "EL-1A", "CP-17"]
    live = listen(f"estate/v1/{site.id}/#")
    simulator = Simulator([site], mosquitto.url, interval_s=0.5, devices=devices, seed=1, boot=41)
    simulator.start()
    try:
        for device in devices:
            first = live.expect(f"a first message from {device}", from_(device))
            assert first.channel == "status", "a device announces itself before its first telemetry"
            assert first.json() == {
                "online": True, "ts": first.json()["ts"], "fw": simulator.model(device).fw,
                "model": simulator.model(device).model_name, "interval_s": 1, "boot": 41,
            }
        for device in devices:
            seqs: list[int] = []
            for _ in range(3):
                message = live.expect(f"telemetry from {device}", is_(device, "telemetry"))
                parsed = gateway_parse(site, message, to_ms(SystemClock().now()))
                assert parsed.kind == site.devices[device].kind
                assert parsed.seq is not None
                seqs.append(parsed.seq)
            assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2]

        retained = listen(f"estate/v1/{site.id}/+/+/status")
        for device in devices:
            status = retained.expect(f"the retained status of {device}", is_(device, "status"))
            assert status.retain is True
            assert status.json()["online"] is True
    finally:
        simulator.stop()

    # A graceful stop marks every device offline, retained (with a ts: not the last will).
    for device in devices:
        goodbye = live.expect(f"{device} going offline", offline(device))
        assert "ts" in goodbye.json()
    after = listen(f"estate/v1/{site.id}/+/+/status")
    for device in devices:
        assert after.expect(f"{device}'s retained status", is_(device, "status")).json()["online"] is False
    stats = simulator.stats()
    assert stats.telemetry_sent >= 9 and stats.status_sent == 3


def test_a_hard_offline_fires_the_last_will_and_the_device_reboots_when_it_ends(
    mosquitto: Any, site: Site, listen: Callable[[str], Listener]
) -> None:
    live = listen(f"estate/v1/{site.id}/#")
    clock = SystemClock()
    drop = Injection("SL-02", Fault.OFFLINE, at=clock.now() + timedelta(seconds=1.5), duration=timedelta(seconds=2), hard=True)
    simulator = Simulator([site], mosquitto.url, clock=clock, interval_s=0.3, devices=["SL-01", "SL-02"], injections=[drop])
    simulator.start()
    try:
        birth = live.expect("SL-02's birth", is_("SL-02", "status")).json()
        live.expect("telemetry from SL-02", is_("SL-02", "telemetry"))
        will = live.expect("SL-02's last will", lambda m: is_("SL-02", "status")(m) and not m.json()["online"])
        assert will.payload == b'{"online":false}'  # exactly the will: no ts, nothing published by the device
        reborn = live.expect("SL-02 back online", lambda m: is_("SL-02", "status")(m) and m.json()["online"])
        between = live.between(will, reborn)
        assert reborn.json()["boot"] == birth["boot"] + 1
        assert not any(is_("SL-02", "telemetry")(m) for m in between), "a powered-off device publishes nothing"
        assert any(is_("SL-01", "telemetry")(m) for m in between), "the other devices carry on"
        first_after = live.expect(
            "telemetry from SL-02 after the reboot",
            lambda m: is_("SL-02", "telemetry")(m) and m.json()["ts"] >= reborn.json()["ts"],
        )
        assert first_after.json()["seq"] == 0
    finally:
        simulator.stop()


def test_a_soft_offline_goes_silent_without_a_will_and_resumes_its_sequence(
    mosquitto: Any, site: Site, listen: Callable[[str], Listener]
) -> None:
    live = listen(f"estate/v1/{site.id}/#")
    clock = SystemClock()
    hush = Injection("SL-03", Fault.OFFLINE, at=clock.now() + timedelta(seconds=1), duration=timedelta(seconds=2))
    simulator = Simulator([site], mosquitto.url, clock=clock, interval_s=0.25, devices=["SL-03"], injections=[hush])
    simulator.start()
    try:
        previous = None
        for _ in range(200):  # ~4 s of telemetry at most before the silence must have shown
            message = live.expect("telemetry from SL-03", lambda m: m.device == "SL-03")
            assert message.channel == "telemetry" or message.json()["online"] is True, "no will, no offline status"
            if message.channel != "telemetry":
                continue
            body = message.json()
            if previous is not None:
                assert body["seq"] == previous["seq"] + 1
                if body["ts"] - previous["ts"] >= 1500:  # the silence, then the same sequence goes on
                    break
            previous = body
        else:
            pytest.fail("SL-03 never went silent")
    finally:
        simulator.stop()


def test_a_lamp_failure_shows_over_mqtt_at_night(mosquitto: Any, site: Site, listen: Callable[[str], Listener]) -> None:
    night = datetime(2026, 1, 15, 21, 0, tzinfo=ZoneInfo(site.spec.site.timezone))
    clock = ScaledClock(night, speed=1.0)
    failure = Injection("SL-07", Fault.LAMP_FAILURE, at=night)
    live = listen(f"estate/v1/{site.id}/+/+/telemetry")
    simulator = Simulator(
        [site], mosquitto.url, clock=clock, interval_s=0.3, devices=["SL-06", "SL-07"], injections=[failure]
    )
    simulator.start()
    try:
        rated = site.devices["SL-07"].rated_power_w or 0
        for _ in range(2):  # two samples in a row, as the lamp_failure rule needs
            body = gateway_parse(site, live.expect("SL-07 telemetry", is_("SL-07", "telemetry")), to_ms(clock.now())).body
            assert isinstance(body, StreetlightTelemetry)
            assert body.relay is True and body.voltage_v >= 50 and body.power_w < 0.1 * rated
        healthy = gateway_parse(site, live.expect("SL-06 telemetry", is_("SL-06", "telemetry")), to_ms(clock.now())).body
        assert isinstance(healthy, StreetlightTelemetry)
        assert healthy.power_w == pytest.approx(site.devices["SL-06"].rated_power_w, rel=0.05)
    finally:
        simulator.stop()


def test_the_command_line_runs_for_a_duration_and_leaves_devices_offline(
    mosquitto: Any, site: Site, listen: Callable[[str], Listener]
) -> None:
    live = listen(f"estate/v1/{site.id}/#")
    argv = ["--broker", mosquitto.url, "--site", str(site.source), "--device", "SL-01", "--device", "CP-01",
            "--interval", "0.3", "--duration", "1.5", "--inject", "lamp_failure:SL-01", "--seed", "5"]
    assert main(argv) == 0
    for device in ("SL-01", "CP-01"):
        live.expect(f"telemetry from {device}", is_(device, "telemetry"))
    after = listen(f"estate/v1/{site.id}/+/+/status")
    for device in ("SL-01", "CP-01"):
        status = after.expect(f"{device}'s retained status", is_(device, "status"))
        assert status.retain and status.json()["online"] is False
