"""The watchdog against a real Mosquitto, a real gateway's heartbeat, the API and a local HTTP
receiver standing in for a WeCom group robot. Time is moved by a shared ManualClock: each
`run_once()` is one round of checks, as the running watchdog does every interval."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from api import create_app
from gateway.runtime import Gateway
from linli.clock import ManualClock
from linli.ops.watchdog import (
    HEARTBEAT_TOPIC,
    AlertSender,
    BrokerAddress,
    Channel,
    Watchdog,
    WatchdogConfig,
    main,
)
from linli.settings import Settings

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
WAIT_S = 20.0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def eventually(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Receiver:
    """A WeCom-robot-like HTTP endpoint: records each POSTed JSON body; can fail on purpose."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.messages.append(json.loads(body))
                answer = json.dumps({"errcode": 0, "errmsg": "ok"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cgi-bin/webhook/send?key=test-key"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def texts(self) -> list[str]:
        return [m["text"]["content"] if "msgtype" in m else m["text"] for m in self.messages]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def gateway_settings(mosquitto: Any, tmp_path: Path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, mqtt_url=mosquitto.url,
                    mqtt_client_id=f"gw-{uuid.uuid4().hex[:8]}")


def start_gateway(settings: Settings, clock: ManualClock) -> Gateway:
    gw = Gateway(settings, clock=clock)
    gw.HEARTBEAT_EVERY_WALL_S = 0.2  # 10 s in production
    gw.start()
    assert gw.wait_until(lambda: gw.connected, WAIT_S), "gateway did not connect"
    return gw


@pytest.fixture
def gateway(gateway_settings: Settings, clock: ManualClock) -> Iterator[Gateway]:
    gw = start_gateway(gateway_settings, clock)
    yield gw
    gw.stop()


def make_watchdog(receiver: Receiver, clock: ManualClock, **config: Any) -> Watchdog:
    sender = AlertSender([Channel("wecom", receiver.url)], backoff_s=0.01)
    watchdog = Watchdog(WatchdogConfig(**config), sender=sender, clock=clock)
    watchdog.start()
    assert watchdog.wait_listening(WAIT_S), "the watchdog did not subscribe"
    return watchdog


def wait_for_beat(watchdog: Watchdog, gateway_id: str, clock: ManualClock) -> None:
    """Until a heartbeat arrives at the watchdog's current clock time."""
    assert watchdog.listener is not None
    listener = watchdog.listener
    eventually(lambda: listener.last_arrival(gateway_id) == clock.now(), f"a heartbeat from {gateway_id}")


def heartbeats(mosquitto: Any, topic: str, count: int) -> list[mqtt.MQTTMessage]:
    got: list[mqtt.MQTTMessage] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
    client.on_message = lambda _c, _u, message: got.append(message)
    client.connect(mosquitto.host, mosquitto.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        eventually(lambda: len(got) >= count, f"{count} heartbeats")
    finally:
        client.disconnect()
        client.loop_stop()
    return got


def test_the_gateway_publishes_a_retained_heartbeat(gateway_settings: Settings, mosquitto: Any, clock: ManualClock) -> None:
    topic = HEARTBEAT_TOPIC.format(gateway_id=gateway_settings.mqtt_client_id)
    assert topic == f"linli/v1/gateway/{gateway_settings.mqtt_client_id}/heartbeat"
    gateway = start_gateway(gateway_settings, clock)
    try:
        live = heartbeats(mosquitto, topic, 3)
    finally:
        gateway.stop()
    body = json.loads(live[-1].payload)
    assert body == {"ts": T0.isoformat(), "sites": ["wanmei"], "messages_done": 0, "connected": True, "db_ok": True}
    assert live[-1].qos == 1 and live[-1].retain is False
    clock.advance(3600)
    kept = heartbeats(mosquitto, topic, 1)  # the broker keeps the last one for whoever subscribes later
    assert kept[0].retain is True and json.loads(kept[0].payload)["ts"] == T0.isoformat()


def test_a_gateway_that_stops_beating_raises_one_alert_and_one_recovery(
    gateway_settings: Settings, clock: ManualClock, receiver: Receiver, mosquitto: Any,
) -> None:
    gateway_id = gateway_settings.mqtt_client_id
    gw = start_gateway(gateway_settings, clock)
    watchdog = make_watchdog(receiver, clock, broker=BrokerAddress.parse(mosquitto.url), gateway_ids=[gateway_id],
                             max_silence=timedelta(seconds=60))
    try:
        wait_for_beat(watchdog, gateway_id, clock)
        first = watchdog.run_once()
        assert first.alerts == []
        assert {r.key: r.ok for r in first.results} == {
            "broker": True, f"heartbeat:{gateway_id}": True, f"gateway-db:{gateway_id}": True}

        gw.stop()
        time.sleep(0.5)  # a beat already on its way lands at the old clock time
        clock.advance(61)
        down = watchdog.run_once()
        assert [(a.key, a.kind) for a in down.alerts] == [(f"heartbeat:{gateway_id}", "down")]
        assert receiver.texts() == [
            f"【邻里告警】网关 {gateway_id} 61 秒无心跳 / Linli alert: gateway {gateway_id} silent for 61 s"]
        assert receiver.messages[0]["msgtype"] == "text"

        for _ in range(4):  # still silent, round after round: no alert storm
            clock.advance(15)
            assert watchdog.run_once().alerts == []
        assert len(receiver.messages) == 1

        gw = start_gateway(gateway_settings, clock)
        wait_for_beat(watchdog, gateway_id, clock)
        back = watchdog.run_once()
        assert [(a.key, a.kind) for a in back.alerts] == [(f"heartbeat:{gateway_id}", "recovered")]
        assert receiver.texts()[1].startswith(f"【邻里恢复】网关 {gateway_id} 已恢复（中断")
    finally:
        gw.stop()
        watchdog.close()


def test_a_stopped_broker_raises_a_broker_alert_not_a_heartbeat_storm(
    gateway: Gateway, clock: ManualClock, receiver: Receiver, mosquitto: Any,
) -> None:
    gateway_id = gateway.settings.mqtt_client_id
    watchdog = make_watchdog(receiver, clock, broker=BrokerAddress.parse(mosquitto.url), gateway_ids=[gateway_id])
    try:
        wait_for_beat(watchdog, gateway_id, clock)
        assert watchdog.run_once().alerts == []
        mosquitto.stop()
        try:
            clock.advance(15)
            down = watchdog.run_once()
            assert [(a.key, a.kind) for a in down.alerts] == [("broker", "down")]
            assert receiver.texts()[0].startswith(f"【邻里告警】MQTT 服务器 {mosquitto.url} 无法连接")
            assert f"Linli alert: MQTT broker {mosquitto.url} does not answer" in receiver.texts()[0]
            clock.advance(120)  # long past the heartbeat limit: still only the broker is news
            assert watchdog.run_once().alerts == []
        finally:
            mosquitto.start()
        assert gateway.wait_until(lambda: gateway.connected, WAIT_S)
        assert watchdog.wait_listening(WAIT_S)
        wait_for_beat(watchdog, gateway_id, clock)
        back = watchdog.run_once()
        assert [(a.key, a.kind) for a in back.alerts] == [("broker", "recovered")]
        assert len(receiver.messages) == 2
    finally:
        watchdog.close()


def test_the_api_and_the_database_are_watched(
    clock: ManualClock, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    watchdog = make_watchdog(receiver, clock, api_url=dead)
    try:
        down = watchdog.run_once()
        assert [(a.key, a.kind) for a in down.alerts] == [("api", "down")]
        assert receiver.texts()[0].startswith(f"【邻里告警】API {dead} 无响应")
        clock.advance(60)
        assert watchdog.run_once().alerts == []
    finally:
        watchdog.close()

    settings = Settings(_env_file=None, data_dir=tmp_path, mqtt_url=f"mqtt://127.0.0.1:{closed_port()}")
    with TestClient(create_app(settings, clock=clock)) as client:
        sender = AlertSender([Channel("wecom", receiver.url)], backoff_s=0.01)
        watchdog = Watchdog(WatchdogConfig(api_url="http://testserver"), sender=sender, clock=clock, http=client)
        first = watchdog.run_once()
        assert first.alerts == [] and {r.key: r.ok for r in first.results} == {"api": True, "database": True}
        monkeypatch.setattr(client.app.state.db, "ping", lambda: False)  # type: ignore[attr-defined]
        clock.advance(15)
        down = watchdog.run_once()
        assert [(a.key, a.kind) for a in down.alerts] == [("database", "down")]
        assert receiver.texts()[-1] == (
            "【邻里告警】数据库 无响应（API 报告） / Linli alert: database does not answer (the API reports)")
        monkeypatch.undo()
        clock.advance(15)
        assert [(a.key, a.kind) for a in watchdog.run_once().alerts] == [("database", "recovered")]

    direct = Watchdog(WatchdogConfig(database_url=f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/linli"),
                      sender=AlertSender([Channel("wecom", receiver.url)], backoff_s=0.01), clock=clock)
    try:
        assert [(a.key, a.kind) for a in direct.run_once().alerts] == [("database", "down")]
    finally:
        direct.close()


def test_an_alert_no_receiver_took_is_retried_next_round(clock: ManualClock, receiver: Receiver) -> None:
    watchdog = make_watchdog(receiver, clock, api_url=f"http://127.0.0.1:{closed_port()}")
    try:
        receiver.fail_next = 3  # every attempt of this round fails
        assert [a.kind for a in watchdog.run_once().alerts] == ["down"]
        assert receiver.messages == []
        clock.advance(15)
        assert watchdog.run_once().alerts == []
        assert len(receiver.messages) == 1 and "API" in receiver.texts()[0]  # delivered late, but delivered
    finally:
        watchdog.close()


def test_the_command_once(gateway: Gateway, mosquitto: Any, receiver: Receiver,
                          capsys: pytest.CaptureFixture[str]) -> None:
    gateway_id = gateway.settings.mqtt_client_id
    assert main(["--mqtt-url", mosquitto.url, "--gateway-id", gateway_id, "--max-silence", "10", "--once"]) == 0
    out = capsys.readouterr().out
    assert f"heartbeat:{gateway_id}: ok" in out and "broker: ok" in out

    dead = f"http://127.0.0.1:{closed_port()}"
    assert main(["--api-url", dead, "--alert-webhook", receiver.url, "--once"]) == 1
    assert "api: DOWN" in capsys.readouterr().out
    assert receiver.messages[-1]["check"] == "api" and receiver.messages[-1]["state"] == "down"

    assert main(["--alert-wecom", receiver.url, "--test-alert"]) == 0
    assert "测试消息" in receiver.texts()[-1]
    assert main(["--api-url", dead]) == 2  # nowhere to alert
    assert "nowhere to alert" in capsys.readouterr().err
