"""The whole system as a person runs it: `linli demo`, then HTTP and MQTT from outside, as a device would.

The waits below poll the running system's own API with a deadline: that is observing the
behaviour asked for, across process boundaries, never sleeping for a fixed time.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import paho.mqtt.client as mqtt
import pytest

START_TIMEOUT_S = 90.0
FUNCTIONAL_BOUND_S = 20.0  # "within seconds": a ticket or a state must show up well inside this


@dataclass
class Demo:
    process: subprocess.Popen[str]
    base: str
    mqtt_port: int
    data_dir: Path
    output: list[str]

    @property
    def admin_password(self) -> str:
        return (self.data_dir / "admin-password").read_text(encoding="utf-8").strip()

    def token(self) -> dict[str, str]:
        answer = httpx.post(f"{self.base}/api/v1/auth/token", data={"username": "admin", "password": self.admin_password})
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    def get(self, path: str, **params: Any) -> Any:
        answer = httpx.get(f"{self.base}{path}", params=params, headers=self.token(), timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_demo(data_dir: Path, *extra: str) -> Demo:
    api_port, mqtt_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "linli.cli", "demo", "--port", str(api_port), "--mqtt-port", str(mqtt_port),
         "--data-dir", str(data_dir), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            pytest.fail(f"linli demo exited ({process.poll()}):\n{''.join(output)}")
        output.append(line)
        if "Admin login" in line:
            break
    else:
        process.kill()
        pytest.fail(f"linli demo did not come up within {START_TIMEOUT_S} s:\n{''.join(output)}")
    text = "".join(output)
    assert f"http://127.0.0.1:{api_port}/" in text and f"mqtt://127.0.0.1:{mqtt_port}" in text
    assert re.search(r"Admin login\s+admin / \S+", text)
    return Demo(process, f"http://127.0.0.1:{api_port}", mqtt_port, data_dir, output)


def stop_demo(demo: Demo) -> None:
    demo.process.send_signal(signal.SIGTERM)  # not SIGINT: a test run in the background ignores it
    try:
        demo.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        demo.process.kill()


def eventually(check: Callable[[], Any], what: str, timeout: float = FUNCTIONAL_BOUND_S) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"{what} did not happen within {timeout} s (last: {last!r})")


@pytest.fixture(scope="module")
def demo_with_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    demo = start_demo(tmp_path_factory.mktemp("demo-sim"), "--sim-interval", "2", "--inject", "offline_hard:EL-2A@+3s")
    yield demo
    stop_demo(demo)


@pytest.fixture(scope="module")
def demo_no_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    demo = start_demo(tmp_path_factory.mktemp("demo-nosim"), "--no-sim")
    yield demo
    stop_demo(demo)


def test_demo_is_healthy_and_residents_see_every_device_live(demo_with_sim: Demo) -> None:
    health = httpx.get(f"{demo_with_sim.base}/healthz").json()
    assert health["status"] == "ok" and health["database"] and health["timeseries"] and health["broker"]

    def chargers_reporting() -> dict[str, Any] | None:
        devices = demo_with_sim.get("/api/v1/devices", site="wanmei", kind="charger", limit=100)["items"]
        # Live: every charger has told its OCPP status through the simulator.
        return devices if len(devices) == 18 and all(d["last"].get("status") for d in devices) else None

    eventually(chargers_reporting, "every charger reporting through the simulator")
    status = httpx.get(f"{demo_with_sim.base}/api/v1/public/status", params={"site": "wanmei"}).json()
    assert (len(status["streetlights"]), len(status["elevators"]), len(status["chargers"])) == (43, 12, 18)
    free_or_busy = {"Available": "available", "Charging": "in_use", "Preparing": "in_use", "Finishing": "in_use"}

    def residents_see_live_states() -> bool:
        """Residents see each charger's own live status in their words (one consistent snapshot)."""
        devices = demo_with_sim.get("/api/v1/devices", site="wanmei", kind="charger", limit=100)["items"]
        public = httpx.get(f"{demo_with_sim.base}/api/v1/public/status", params={"site": "wanmei"}).json()
        shown = {c["id"]: c["state"] for c in public["chargers"]}
        checked = [(shown[d["id"]], free_or_busy[d["last"]["status"]]) for d in devices
                   if d["last"]["status"] in free_or_busy and not d["open_tickets"]]
        return len(checked) >= 10 and all(seen == expected for seen, expected in checked)

    eventually(residents_see_live_states, "the public page showing the chargers' live states")
    assert {light["state"] for light in status["streetlights"]} <= {"on", "off", "fault", "repairing"}
    page = httpx.get(f"{demo_with_sim.base}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"] and 'lang="zh-CN"' in page.text
    assert "路灯" in httpx.get(f"{demo_with_sim.base}/static/resident/i18n.js").text


def test_the_demo_scenarios_faults_appear_within_the_first_minute(demo_with_sim: Demo) -> None:
    """The built-in `demo` scenario: a visitor sees faults appear, on the simulator's evening clock."""

    def tickets() -> set[tuple[str, str]] | None:
        found = {(t["device_id"], t["fault"]) for t in demo_with_sim.get("/api/v1/tickets", limit=100)["items"]}
        return found if {("SL-07", "lamp_failure"), ("SL-12", "offline")} <= found else None

    eventually(tickets, "the demo scenario's lamp failure and offline light", timeout=60)
    lamp = demo_with_sim.get("/api/v1/tickets", device_id="SL-07", fault="lamp_failure")["items"][0]
    local_hour = datetime.fromisoformat(lamp["opened_at"]).astimezone(ZoneInfo("Asia/Shanghai")).hour
    assert local_hour == 19  # the scenario's evening, followed by the gateway, whatever the wall clock says


def test_simulator_to_ticket_over_http(demo_with_sim: Demo) -> None:
    """Simulator → broker (last will) → gateway → ticket, and its telemetry → store → API."""

    def offline_ticket() -> list[dict[str, Any]]:
        return demo_with_sim.get("/api/v1/tickets", device_id="EL-2A", fault="offline")["items"]

    # 3 intervals of silence, then the 30 s grouping window in which a building's power loss would take it
    tickets = eventually(offline_ticket, "an offline ticket for EL-2A after its connection dropped", timeout=60)
    assert [(t["site"], t["teams"], t["status"]) for t in tickets] == [("wanmei", ["elevator_contractor"], "open")]
    device = demo_with_sim.get("/api/v1/devices/EL-2A")
    assert device["online"] is False and device["health"] == "offline" and tickets[0]["id"] in device["open_tickets"]

    def points() -> list[dict[str, Any]]:
        return demo_with_sim.get("/api/v1/devices/EL-1A/telemetry", field="floor")["points"]

    series = eventually(points, "EL-1A's floors read back from the time-series store")
    assert all(isinstance(p["value"], float | int) for p in series)
    assert all(datetime.fromisoformat(p["ts"]).utcoffset() is not None for p in series)  # ISO 8601 with offset


class OutsideDevice:
    def __init__(self, port: int, device: str = "SL-07") -> None:
        self.topic = f"estate/v1/wanmei/streetlight/{device}/telemetry"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"vendor-{uuid.uuid4().hex[:6]}")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, payload: dict[str, Any] | bytes, topic: str | None = None) -> None:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(topic or self.topic, raw, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_an_outside_device_gets_exactly_one_lamp_failure_ticket(demo_no_sim: Demo) -> None:
    light = OutsideDevice(demo_no_sim.mqtt_port)
    now_ms = int(time.time() * 1000)

    def ts(seq: int) -> int:  # a controller with a clock, sampling every 30 s (dark for a minute by seq 4)
        return now_ms - (12 - seq) * 30_000

    light.publish({"ts": ts(1), "seq": 1, "relay": True, "dim_pct": 100, "power_w": 39.4, "voltage_v": 229.3})
    for seq in (2, 3, 4):
        light.publish({"ts": ts(seq), "seq": seq, "relay": True, "power_w": 0, "voltage_v": 229.1})
    tickets = eventually(lambda: demo_no_sim.get("/api/v1/tickets", device_id="SL-07", fault="lamp_failure")["items"],
                         "a lamp_failure ticket for SL-07")
    assert [(t["device_id"], t["teams"], t["status"], t["severity"]) for t in tickets] == [
        ("SL-07", ["property"], "open", "P2")]
    for seq in range(5, 12):
        light.publish({"ts": ts(seq), "seq": seq, "relay": True, "power_w": 0.25 if seq == 11 else 0, "voltage_v": 229.0})
    eventually(lambda: demo_no_sim.get("/api/v1/devices/SL-07")["last"].get("power_w") == 0.25,
               "the later messages being processed")
    assert demo_no_sim.get("/api/v1/tickets", device_id="SL-07", fault="lamp_failure")["total"] == 1
    light.close()


def test_bad_messages_never_stop_the_gateway_and_are_listed_with_their_reason(demo_no_sim: Demo) -> None:
    sender = OutsideDevice(demo_no_sim.mqtt_port, "SL-08")
    base = "estate/v1/wanmei/streetlight"
    bad = {
        "not_json": (f"{base}/SL-08/telemetry", b"{oops"),
        "too_large": (f"{base}/SL-08/telemetry", b'{"pad": "' + b"x" * 17_000 + b'"}'),
        "unknown_device": (f"{base}/SL-404/telemetry", b'{"relay": true, "power_w": 1, "voltage_v": 230}'),
        "topic": (f"{base}/SL-08/gossip", b"{}"),
        "schema": (f"{base}/SL-08/telemetry", b'{"relay": true, "power_w": "lots", "voltage_v": 230}'),
    }
    for topic, payload in bad.values():
        sender.publish(payload, topic)
    sender.publish({"seq": 1, "relay": True, "power_w": 61.5, "voltage_v": 230})

    def listed() -> dict[str, Any] | None:
        letters = demo_no_sim.get("/api/v1/dead-letters", limit=100)
        return letters if set(bad) <= set(letters["counts"]) else None

    letters = eventually(listed, "every bad message listed by the operator route")
    by_reason = {item["reason"]: item for item in letters["items"]}
    for reason, (topic, _) in bad.items():
        assert by_reason[reason]["topic"] == topic and by_reason[reason]["detail"]
    assert eventually(lambda: demo_no_sim.get("/api/v1/devices/SL-08")["last"].get("power_w") == 61.5,
                      "the good message after the bad ones")
    assert httpx.get(f"{demo_no_sim.base}/healthz").json()["status"] == "ok"
    assert demo_no_sim.process.poll() is None
    sender.close()


def test_a_taken_port_gives_a_clear_message_not_a_traceback(demo_no_sim: Demo, tmp_path: Path) -> None:
    taken = demo_no_sim.base.rsplit(":", 1)[1]
    result = subprocess.run(
        [sys.executable, "-m", "linli.cli", "demo", "--port", taken, "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert f"port {taken}" in result.stderr and "already in use" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
