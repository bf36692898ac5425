"""`command` events on the private stream, and the server's now (`X-Linli-Now`), end to end: a real
Mosquitto, the real gateway (it records the devices' answers), the API under uvicorn, and a device
that answers the commands it gets (``docs/live-updates.md``).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from api import create_app
from linli.clock import CLOCK_TOPIC, ClockAnnouncement, ManualClock, to_ms
from linli.settings import Settings
from tests.integration import test_sse
from tests.integration.test_sse import NIGHT, SECRET, WAIT_S, Live, ServedApi, SseEvent, free_port

# test_sse's served API, gateway and broker (`live` needs `site_b`)
live = test_sse.live
site_b = test_sse.site_b

COMMAND_FIELDS = {"id", "site", "device_id", "kind", "action", "params", "status", "requested_by", "reason",
                  "sent_at", "expires_at", "answered_at", "error", "at", "now"}


class AnsweringLight:
    """A streetlight controller that answers every command on its `cmd` topic: ok, or refused."""

    def __init__(self, mosquitto: Any, device_id: str, *, refuse: str | None = None, silent: bool = False) -> None:
        self.prefix = f"estate/v1/wanmei/streetlight/{device_id}"
        self.refuse, self.silent = refuse, silent
        self.got: list[dict[str, Any]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(f"{self.prefix}/cmd", qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(mosquitto.host, mosquitto.port)
        self.client.loop_start()
        assert subscribed.wait(WAIT_S), "the device did not subscribe to its cmd topic"

    def _on_message(self, client: mqtt.Client, _userdata: object, message: Any) -> None:
        command = json.loads(message.payload)
        self.got.append(command)
        if self.silent:
            return
        ack: dict[str, Any] = {"id": command["id"], "ts": to_ms(NIGHT), "ok": self.refuse is None}
        if self.refuse is not None:
            ack["error"] = self.refuse
        client.publish(f"{self.prefix}/cmd/ack", json.dumps(ack).encode(), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def send(api: ServedApi, device_id: str, params: dict[str, Any], ttl_s: int = 60) -> str:
    answer = httpx.post(api.url(f"/api/v1/devices/{device_id}/commands?site=wanmei"), timeout=WAIT_S,
                        json={"action": "set_light", "params": params, "ttl_s": ttl_s, "reason": "试灯"},
                        headers={"Authorization": f"Bearer {api.token('admin')}"})
    assert answer.status_code == 202, answer.text
    command_id: str = answer.json()["id"]
    return command_id


def is_command(command_id: str, status: str) -> Any:
    return lambda e: e.event == "command" and e.data["id"] == command_id and e.data["status"] == status


def test_an_acknowledged_command_reaches_the_stream_with_the_servers_now(live: Live) -> None:
    api = live.api
    admin = live.private(api.token("admin"))
    residents = live.public("wanmei")
    light = AnsweringLight(live.mosquitto, "SL-07")
    command_id = send(api, "SL-07", {"relay": False})
    sent = time.monotonic()
    acked: SseEvent = admin.next(is_command(command_id, "acked"), "the acked command event")
    assert time.monotonic() - sent < 5.0, "the answer took more than a few seconds to reach the stream"
    assert light.got and light.got[0]["params"] == {"relay": False}
    assert set(acked.data) == COMMAND_FIELDS
    assert (acked.data["site"], acked.data["device_id"], acked.data["kind"]) == ("wanmei", "SL-07", "streetlight")
    assert (acked.data["action"], acked.data["params"]) == ("set_light", {"relay": False})
    assert (acked.data["requested_by"], acked.data["reason"], acked.data["error"]) == ("admin", "试灯", None)
    assert datetime.fromisoformat(acked.data["now"]) == NIGHT  # the API's clock, not the wall clock
    assert datetime.fromisoformat(acked.data["answered_at"]) == NIGHT  # the gateway recorded it
    assert acked.data["at"] == acked.data["answered_at"]
    # the same status is said once: a second command's events come, the first's acked never again
    second = send(api, "SL-07", {"relay": True, "dim_pct": 40})
    admin.next(is_command(second, "acked"), "the second command's answer")
    assert [e.data["status"] for e in admin.seen if e.event == "command" and e.data["id"] == command_id].count("acked") == 1
    # the REST view agrees
    one = httpx.get(api.url(f"/api/v1/commands/{command_id}"), headers={"Authorization": f"Bearer {api.token('admin')}"},
                    timeout=WAIT_S)
    assert one.json()["status"] == "acked"
    # residents never see commands
    residents_events = [e for e in residents.seen if e.event == "command"]
    assert residents_events == []
    light.close()


def test_a_refused_command_is_failed_with_the_devices_words(live: Live) -> None:
    api = live.api
    admin = live.private(api.token("admin"))
    light = AnsweringLight(live.mosquitto, "SL-08", refuse="relay welded")
    command_id = send(api, "SL-08", {"relay": False})
    failed = admin.next(is_command(command_id, "failed"), "the failed command event")
    assert failed.data["error"] == "relay welded" and failed.data["device_id"] == "SL-08"
    light.close()


def test_an_unanswered_command_expires_on_the_apis_clock(live: Live) -> None:
    api = live.api
    admin = live.private(api.token("admin"))
    light = AnsweringLight(live.mosquitto, "SL-09", silent=True)
    command_id = send(api, "SL-09", {"relay": False}, ttl_s=30)
    sent_event = admin.next(is_command(command_id, "sent"), "the sent command event")
    assert sent_event.data["answered_at"] is None
    deadline = time.monotonic() + WAIT_S
    while not light.got:  # the device has it, and says nothing
        assert time.monotonic() < deadline, "the device did not get the command"
        time.sleep(0.05)
    clock = api.app.state.clock
    assert isinstance(clock, ManualClock)
    clock.advance(31)  # no answer, past its expiry: nobody sleeps, the API's clock moves
    expired = admin.next(is_command(command_id, "expired"), "the expired command event")
    assert datetime.fromisoformat(expired.data["at"]) == NIGHT + timedelta(seconds=30)
    assert datetime.fromisoformat(expired.data["now"]) >= NIGHT + timedelta(seconds=31)
    light.close()


def test_every_answer_says_the_apis_now(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, mqtt_url=f"mqtt://127.0.0.1:{free_port()}",
                        secret_key=SECRET, admin_password="admin-secret-for-tests", live_updates=False)
    clock = ManualClock(NIGHT)
    with TestClient(create_app(settings, clock=clock)) as client:
        for path in ("/healthz", "/api/v1/public/status?site=wanmei", "/api/v1/tickets", "/crew"):
            answer = client.get(path)
            assert datetime.fromisoformat(answer.headers["x-linli-now"]) == NIGHT, path
        clock.advance(1.25)
        assert client.get("/healthz").headers["x-linli-now"] == "2026-11-26T13:00:01.250+00:00"


def test_with_follow_sim_clock_the_api_runs_on_the_simulators_clock(
    mosquitto: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As in `linli demo`: the gateway and the API both follow the simulator's announcement."""
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    monkeypatch.setenv("LINLI_FOLLOW_SIM_CLOCK", "true")
    sim_start = datetime(2026, 11, 25, 11, 30, tzinfo=UTC)  # an evening, hours away from the wall clock
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{uuid.uuid4().hex[:8]}")
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()
    announcement = ClockAnnouncement(start_wall_ms=int(time.time() * 1000), start_sim_ms=to_ms(sim_start), speed=1.0)
    publisher.publish(CLOCK_TOPIC, announcement.to_json(), qos=1, retain=True).wait_for_publish(WAIT_S)
    settings = Settings(_env_file=None, data_dir=tmp_path / "api", mqtt_url=mosquitto.url, secret_key=SECRET,
                        sites="", tsdb_url=f"sqlite:///{tmp_path / 'ts.db'}",
                        database_url=f"sqlite:///{tmp_path / 'linli.db'}", admin_password="admin-secret-for-tests")
    api = ServedApi(settings, None)  # type: ignore[arg-type]  # no clock injected: the API chooses
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            header = httpx.get(api.url("/healthz"), timeout=WAIT_S).headers["x-linli-now"]
            now = datetime.fromisoformat(header)
            if abs((now - sim_start).total_seconds()) < 60:
                break
            assert time.monotonic() < deadline, f"the API still says {header}, not the simulator's time"
            time.sleep(0.1)
        wall_gap = abs((datetime.now(tz=UTC) - now).total_seconds())
        assert wall_gap > 3600, "the test's simulated time must be far from the wall clock"
    finally:
        api.stop()
        publisher.publish(CLOCK_TOPIC, b"", qos=1, retain=True).wait_for_publish(WAIT_S)  # the broker forgets it
        publisher.disconnect()
        publisher.loop_stop()
