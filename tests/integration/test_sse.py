"""Live updates over Server-Sent Events, end to end: a real Mosquitto, the real gateway, the API served
by uvicorn (SSE needs a real server: the in-process TestClient waits for a response's end).

Devices publish telemetry; the gateway opens tickets and publishes its ticket and device events on
``linli/v1/{site}/events``; the API's live hub turns them into the streams of ``docs/live-updates.md``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import uvicorn
import yaml
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from api import create_app
from api.live import Audience, Frame, LiveHub
from api.security import create_access_token
from gateway.runtime import Gateway
from linli.clock import ManualClock, to_ms
from linli.settings import Settings
from linli.site import SiteRegistry, builtin_site_path
from linli.storage import Database, User
from linli.storage.users import create_user

NIGHT = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # 21:00 in Fujian
WAIT_S = 15.0
SECRET = "s" * 40
# Keys no public event may carry, at any depth: people, their words and the tickets' internals.
PRIVATE_KEYS = {
    "contact", "name", "name_en", "note", "notes", "username", "phone", "email", "assignee", "acks", "acknowledged_by",
    "actor", "full_name", "teams", "history", "comment", "comments", "reason", "title", "photos", "description",
    "by", "severity", "last", "power_w", "voltage_v", "source", "subject",
}
TICKET_FIELDS = {"id", "site", "event", "status", "severity", "fault", "device_ids", "teams", "ack_due_at", "at",
                 "version", "assignee", "acks", "start_due_at", "resolve_due_at", "entry"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def site_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    document = yaml.safe_load(builtin_site_path().read_text(encoding="utf-8"))
    document["site"]["id"] = "site-b"
    document["site"]["name"] = "乙社区"
    path = tmp_path_factory.mktemp("sites") / "site-b.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


# ---------------------------------------------------------------- a served API and an SSE client


class ServedApi:
    """The app under uvicorn in a thread, on a free port."""

    def __init__(self, settings: Settings, clock: ManualClock) -> None:
        self.app = create_app(settings, clock=clock)
        self.settings = settings
        self.port = free_port()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + WAIT_S
        while not self.server.started:
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.05)
        self.db = Database(settings.db_url)

    @property
    def hub(self) -> LiveHub:
        hub: LiveHub = self.app.state.live
        return hub

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def token(self, username: str) -> str:
        return create_access_token(username, self.settings).token

    def user(self, username: str, role: str, *, sites: tuple[str, ...], teams: tuple[str, ...] = ()) -> str:
        with self.db.session() as session:
            create_user(session, username, f"{username}-password", role, teams=teams, sites=sites, now=NIGHT)
        return self.token(username)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.db.close()


@dataclass
class SseEvent:
    event: str
    data: dict[str, Any]
    raw: str


@dataclass
class SseReader:
    """Reads one stream in a thread; `next` waits for an event that fits."""

    url: str
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    seen: list[SseEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._events: queue.Queue[SseEvent] = queue.Queue()
        self._stop = threading.Event()
        self.opened = threading.Event()
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self.opened.wait(WAIT_S), f"no answer from {self.url}"

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(WAIT_S)) as client, \
                    client.stream("GET", self.url, params=self.params, headers=self.headers) as response:
                self.status = response.status_code
                self.opened.set()
                if response.status_code != 200:
                    return
                event, data = "message", list[str]()
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line == "":
                        if data:
                            text = "\n".join(data)
                            self._events.put(SseEvent(event, json.loads(text), text))
                        event, data = "message", []
                    elif line.startswith(":"):
                        self.comments.append(line[1:].strip())
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
        finally:
            self.opened.set()
            self.ended.set()

    def next(self, fits: Callable[[SseEvent], bool], what: str = "an event") -> SseEvent:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                item = self._events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{what} did not come within {WAIT_S} s; seen: {self.seen}") from None
            self.seen.append(item)
            if fits(item):
                return item

    def close(self) -> None:
        self._stop.set()  # the reader leaves at the next line: keep-alives come every 0.3 s here
        assert self.ended.wait(WAIT_S), "the stream did not end"


class Light:
    """An outside streetlight controller with its own MQTT connection."""

    def __init__(self, mosquitto: Any, site: str, device_id: str) -> None:
        self.prefix = f"estate/v1/{site}/streetlight/{device_id}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}")
        self.client.connect(mosquitto.host, mosquitto.port)
        self.client.loop_start()

    def telemetry(self, seq: int, power_w: float) -> None:
        ts = to_ms(NIGHT - timedelta(seconds=30 * (12 - seq)))  # 30 s apart, just before the gateway's now
        body = {"ts": ts, "seq": seq, "relay": True, "power_w": power_w, "voltage_v": 229.0}
        self.client.publish(f"{self.prefix}/telemetry", json.dumps(body).encode(), qos=1).wait_for_publish(WAIT_S)

    def fail(self) -> None:
        """Lit once, then dark for a minute: a lamp failure (as in test_gateway)."""
        self.telemetry(1, 39.6)
        for seq in (2, 3, 4):
            self.telemetry(seq, 0.0)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Live:
    api: ServedApi
    gateway: Gateway
    mosquitto: Any
    readers: list[SseReader] = field(default_factory=list)

    def private(self, token: str, *, in_query: bool = False) -> SseReader:
        if in_query:
            reader = SseReader(self.api.url("/api/v1/events"), params={"token": token})
        else:
            reader = SseReader(self.api.url("/api/v1/events"), headers={"Authorization": f"Bearer {token}"})
        assert reader.status == 200
        self.readers.append(reader)
        return reader

    def public(self, site: str) -> SseReader:
        reader = SseReader(self.api.url("/api/v1/public/events"), params={"site": site})
        assert reader.status == 200
        self.readers.append(reader)
        return reader


@pytest.fixture
def live(mosquitto: Any, tmp_path: Path, site_b: Path, database_url: str) -> Iterator[Live]:
    sites = f"{builtin_site_path()},{site_b}"
    gateway_settings = Settings(
        _env_file=None, data_dir=tmp_path / "gw", sites=sites, mqtt_url=mosquitto.url,
        tsdb_url=f"sqlite:///{tmp_path / 'ts.db'}", database_url=database_url, mqtt_client_id=f"gw-{uuid.uuid4().hex[:8]}",
    )
    gateway = Gateway(gateway_settings, clock=ManualClock(NIGHT))
    gateway.start()
    assert gateway.wait_until(lambda: gateway.connected, WAIT_S), "gateway did not connect"
    for device in gateway.engine.devices():  # everyone else has just spoken: no silence timer runs out
        device.last_seen = NIGHT
    api_settings = Settings(
        _env_file=None, data_dir=tmp_path / "api", sites=sites, mqtt_url=mosquitto.url,
        tsdb_url=f"sqlite:///{tmp_path / 'api-ts.db'}", database_url=database_url, secret_key=SECRET,
        admin_password="admin-secret-for-tests", live_keepalive_s=0.3, live_ticket_poll_s=0.2,
    )
    api = ServedApi(api_settings, ManualClock(NIGHT))
    deadline = time.monotonic() + WAIT_S
    while not api.hub.ready():
        assert time.monotonic() < deadline, "the live hub did not subscribe"
        time.sleep(0.05)
    setup = Live(api, gateway, mosquitto)
    try:
        yield setup
    finally:
        for reader in setup.readers:
            reader.close()
        api.stop()
        gateway.stop()


def is_ticket(fault: str, event: str = "opened") -> Callable[[SseEvent], bool]:
    return lambda e: e.event == "ticket" and e.data["fault"] == fault and e.data["event"] == event


def private_keys(value: Any, path: str = "") -> list[str]:
    """Every key of `value`, at any depth, that the public must not see."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in PRIVATE_KEYS:
                found.append(f"{path}.{key}")
            found += private_keys(inner, f"{path}.{key}")
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += private_keys(inner, f"{path}[{index}]")
    return found


# ---------------------------------------------------------------- the streams


def test_a_lamp_failure_reaches_the_private_and_public_streams_within_seconds(live: Live) -> None:
    api = live.api
    admin = live.private(api.token("admin"))
    crew = live.private(api.user("li-property", "technician", sites=("wanmei",), teams=("property",)), in_query=True)
    lift_crew = live.private(api.user("wu-elevator", "technician", sites=("wanmei",), teams=("elevator_contractor",)))
    residents = live.public("wanmei")

    light = Light(live.mosquitto, "wanmei", "SL-07")
    light.telemetry(1, 39.6)  # lit: the device comes online
    lit = admin.next(lambda e: e.event == "device", "the device event")
    assert lit.data["device_id"] == "SL-07" and lit.data["online"] is True and lit.data["kind"] == "streetlight"
    assert lit.data["health"] == "ok"
    assert lit.data["last"] == {"relay": True, "power_w": 39.6, "voltage_v": 229.0}
    assert set(lit.data) == {"site", "device_id", "kind", "online", "health", "last", "at"}
    assert residents.next(lambda e: e.event == "device").data == {
        "site": "wanmei", "device_id": "SL-07", "kind": "streetlight", "state": "on", "at": lit.data["at"]}
    for seq in (2, 3, 4):  # then dark for a minute
        light.telemetry(seq, 0.0)
    sent = time.monotonic()

    opened = admin.next(is_ticket("lamp_failure"), "the ticket event")
    latency = time.monotonic() - sent
    assert latency < 5.0, f"the ticket event took {latency:.2f} s"
    assert set(opened.data) == TICKET_FIELDS
    assert opened.data["site"] == "wanmei"
    assert opened.data["status"] == "open"
    assert opened.data["severity"] == "P2"
    assert opened.data["device_ids"] == ["SL-07"]
    assert opened.data["teams"] == ["property"]
    assert datetime.fromisoformat(opened.data["ack_due_at"]).tzinfo is not None

    # the device is in fault once the ticket is open
    faulty = admin.next(lambda e: e.event == "device" and e.data["health"] == "fault", "the device in fault")
    assert faulty.data["device_id"] == "SL-07"

    assert crew.next(is_ticket("lamp_failure")).data["id"] == opened.data["id"]
    # Another team's technician: the device's change, but never the ticket (it came before, to everyone).
    lift_crew.next(lambda e: e.event == "device" and e.data["health"] == "fault", "the device event")
    assert [e for e in lift_crew.seen if e.event == "ticket"] == []

    public_ticket = residents.next(lambda e: e.event == "ticket")  # the repair, then the light's new state
    assert public_ticket.data["id"] == opened.data["id"] and public_ticket.data["status"] == "open"
    assert residents.next(lambda e: e.event == "device" and e.data["state"] == "fault").data["device_id"] == "SL-07"

    # A change made by staff through the API (not the gateway) goes out too.
    ack = httpx.post(api.url(f"/api/v1/tickets/{opened.data['id']}/ack"), json={},
                     headers={"Authorization": f"Bearer {api.token('li-property')}"}, timeout=WAIT_S)
    assert ack.status_code == 200, ack.text
    acked = admin.next(is_ticket("lamp_failure", "acknowledged"), "the acknowledgement")
    assert acked.data["status"] == "acknowledged"
    assert residents.next(lambda e: e.event == "ticket" and e.data["status"] == "acknowledged")

    for event in residents.seen:
        assert private_keys(event.data) == [], event.raw
        assert "li-property" not in event.raw and "中心广场" not in event.raw
        assert event.data["site"] == "wanmei"
    light.close()


def test_a_hazard_reporters_ticket_moves_on_the_public_stream_by_id_and_status_only(live: Live) -> None:
    """A report about a place has no device on the plan: its reporter's page follows it by ticket id."""
    api = live.api
    residents = live.public("wanmei")
    filed = httpx.post(api.url("/api/v1/public/hazards"), json={
        "site": "wanmei", "description": "井盖缺失，晚上看不见", "location": {"x": 500, "y": 350, "text": "北门外人行道"},
    }, timeout=WAIT_S)
    assert filed.status_code == 201, filed.text
    ticket_id = filed.json()["ticket_id"]
    opened = residents.next(lambda e: e.event == "ticket" and e.data["id"] == ticket_id, "the hazard's ticket")
    assert opened.data == {"site": "wanmei", "id": ticket_id, "status": "open", "device_ids": [], "at": opened.data["at"]}
    officer = api.user("chen-grid", "grid_officer", sites=("wanmei",), teams=("grid",))
    ack = httpx.post(api.url(f"/api/v1/tickets/{ticket_id}/ack"), json={},
                     headers={"Authorization": f"Bearer {officer}"}, timeout=WAIT_S)
    assert ack.status_code == 200, ack.text
    residents.next(lambda e: e.event == "ticket" and e.data["id"] == ticket_id and e.data["status"] == "acknowledged")
    for event in residents.seen:
        assert private_keys(event.data) == [], event.raw
        assert "井盖" not in event.raw and "北门" not in event.raw and "chen-grid" not in event.raw


def test_a_user_of_one_site_gets_nothing_of_another(live: Live) -> None:
    api = live.api
    wanmei = live.private(api.user("zhang", "manager", sites=("wanmei",)))
    other = live.private(api.user("qian", "manager", sites=("site-b",)))
    wanmei_public = live.public("wanmei")

    far_light = Light(live.mosquitto, "site-b", "SL-07")
    far_light.fail()
    far = other.next(is_ticket("lamp_failure"), "site B's ticket")
    assert far.data["site"] == "site-b"
    # Messages on the platform topic that do not fit are ignored, and the hub goes on.
    junk = Light(live.mosquitto, "wanmei", "SL-12")
    device = {"type": "device", "device_id": "SL-12", "kind": "streetlight", "online": True, "last": {"power_w": 777}}
    for topic, payload in (
        ("linli/v1/wanmei/events", b"not json"), ("linli/v1/wanmei/events", b"[1, 2]"),
        ("linli/v1/nowhere/events", json.dumps(device).encode()),
        ("linli/v1/wanmei/events", json.dumps({**device, "kind": "elevator"}).encode()),
        ("linli/v1/wanmei/events", json.dumps({**device, "device_id": "NOPE"}).encode()),
        ("linli/v1/wanmei/events", json.dumps({**device, "online": 3}).encode()),
        ("linli/v1/wanmei/events", json.dumps({**device, "last": "777"}).encode()),
    ):
        junk.client.publish(topic, payload, qos=1).wait_for_publish(WAIT_S)
    junk.close()
    # Then something in site A: everything before it in site A's streams would be site B's.
    light = Light(live.mosquitto, "wanmei", "SL-12")
    light.fail()
    near = wanmei.next(is_ticket("lamp_failure"), "site A's ticket")
    assert near.data["site"] == "wanmei"
    assert {e.data["site"] for e in wanmei.seen} == {"wanmei"}
    assert all("777" not in e.raw for e in wanmei.seen)  # no junk went out
    wanmei_public.next(lambda e: e.event == "ticket")
    assert {e.data["site"] for e in wanmei_public.seen} == {"wanmei"}
    assert {e.data["site"] for e in other.seen} == {"site-b"}
    far_light.close()
    light.close()


def wait_for_no_stream(hub: LiveHub) -> None:
    deadline = time.monotonic() + WAIT_S
    while hub.stream_count:
        assert time.monotonic() < deadline, "the server kept the stream of a client that left"
        time.sleep(0.05)


def test_a_stream_ends_cleanly_when_its_client_goes(live: Live) -> None:
    api = live.api
    reader = live.private(api.token("admin"))
    assert api.hub.stream_count == 1
    deadline = time.monotonic() + WAIT_S
    while len(reader.comments) < 3:  # "connected", then keep-alives every 0.3 s here
        assert time.monotonic() < deadline, reader.comments
        time.sleep(0.05)
    assert reader.comments[0] == "connected" and "keep-alive" in reader.comments[1:]
    reader.close()
    wait_for_no_stream(api.hub)
    public = live.public("wanmei")
    assert api.hub.stream_count == 1
    public.close()
    wait_for_no_stream(api.hub)
    health = httpx.get(api.url("/healthz"), timeout=WAIT_S)
    assert health.status_code == 200  # and the server serves on


# ---------------------------------------------------------------- refusals, and a slow client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, Settings]]:
    settings = Settings(
        _env_file=None, data_dir=tmp_path, mqtt_url=f"mqtt://127.0.0.1:{free_port()}", secret_key=SECRET,
        admin_password="admin-secret-for-tests", live_updates=False,
    )
    with TestClient(create_app(settings, clock=ManualClock(NIGHT))) as test_client:
        yield test_client, settings


def test_bad_or_expired_tokens_are_refused_with_401(client: tuple[TestClient, Settings]) -> None:
    test_client, settings = client
    expired = create_access_token("admin", settings, now=1_000_000.0).token
    forged = create_access_token("admin", Settings(_env_file=None, secret_key="another-secret-" * 3)).token
    ghost = create_access_token("nobody", settings).token
    for params, headers in (
        ({}, {}),
        ({"token": "not-a-jwt"}, {}),
        ({"token": expired}, {}),
        ({}, {"Authorization": f"Bearer {expired}"}),
        ({"token": forged}, {}),
        ({}, {"Authorization": f"Bearer {ghost}"}),
        ({"token": ""}, {}),
    ):
        response = test_client.get("/api/v1/events", params=params, headers=headers)
        assert response.status_code == 401, (params, headers, response.text)
        assert isinstance(response.json()["detail"], str)
        assert response.headers["www-authenticate"] == "Bearer"
    response = test_client.get("/api/v1/events", params={"token": expired})
    assert "expired" in response.json()["detail"]

    db = Database(settings.db_url)
    with db.session() as session:
        create_user(session, "gone", "gone-password", "manager", sites=["wanmei"], now=NIGHT)
        user = session.query(User).filter_by(username="gone").one()
        user.disabled = True
    db.close()
    disabled = create_access_token("gone", settings).token
    assert test_client.get("/api/v1/events", params={"token": disabled}).status_code == 401
    assert test_client.get("/api/v1/public/events", params={"site": "nowhere"}).status_code == 404
    assert test_client.get("/api/v1/public/events").status_code == 422


def test_a_slow_client_is_dropped_and_the_others_go_on(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, live_updates=False, live_client_queue=10)
    hub = LiveHub(settings=settings, db=Database(f"sqlite:///{tmp_path / 'x.db'}"), sites=lambda: SiteRegistry([]),
                  clock=ManualClock(NIGHT))

    async def scenario() -> None:
        hub.start()
        slow = hub.open(Audience(sites=frozenset({"wanmei"})))
        quick = hub.open(Audience(sites=frozenset({"wanmei"})))
        elsewhere = hub.open(Audience(sites=frozenset({"site-b"})))
        got: list[str] = []
        for n in range(25):
            hub.deliver([Frame("wanmei", False, None, f"event: device\ndata: {n}\n\n")])
            while not quick.queue.empty():
                text = quick.queue.get_nowait()
                assert text is not None
                got.append(text)
        assert slow.dropped and slow.queue.qsize() == 1 and slow.queue.get_nowait() is None
        assert not quick.dropped and len(got) == 25
        assert elsewhere.queue.empty() and not elsewhere.dropped
        assert hub.stream_count == 2 and hub.streams_dropped == 1
        hub.stop()  # the server stopping ends every stream
        assert quick.queue.get_nowait() is None and elsewhere.queue.get_nowait() is None

    # A thread of its own: a session-wide Playwright browser (tests/e2e) keeps an event loop running
    # in the main thread, where asyncio.run() refuses to start another.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, scenario()).result()
