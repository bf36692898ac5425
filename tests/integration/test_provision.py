"""`linli provision` against a real Mosquitto that uses the files it writes.

Each test provisions a small site (two lights, an elevator, a concentrator with two child lights)
into SQLite with the real command, then starts its own Mosquitto (`allow_anonymous false`, the
written `password_file` and `acl_file`; not the shared anonymous broker). Every device logs in
with the secret the command printed, hashed by our code: Mosquitto accepting them is the check
that our `$7$` hashes are its own.

Mosquitto 2.0 drops an unauthorised QoS 0/1 publish silently (it even acknowledges it). So a
forbidden publish is made at QoS 1 and acknowledged first, then a marker is published on a
topic the observer may read; the observer must get the marker and must not have got the
forbidden message before it (the broker routes a QoS 1 message before it acknowledges it, and
delivers to one subscriber in order). Nothing sleeps for behaviour it can observe: tests wait on
CONNACKs, SUBACKs, PUBACKs and messages, with bounded timeouts.
"""

from __future__ import annotations

import os
import queue
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import servers
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import select

from linli.ops.provision import (
    PlatformAccount,
    broker_accounts,
    issue_credentials,
    main,
    mosquitto_verify,
    read_env_file,
    read_passwd,
    revoke,
    rotate,
    write_broker_files,
)
from linli.site import load_site
from linli.storage import Database, DeviceCredential, migrate

TIMEOUT = 10.0
SITE = "estate"

SITE_YAML = """\
site:
  id: estate
  name: Test estate
  coordinates: {latitude: 26.1, longitude: 119.3}
compounds:
  - {id: c1, name: Compound 1}
buildings:
  - {id: B1, compound: c1, name: Building 1, lowest_floor: -1, highest_floor: 18, rated_speed_mps: 1.75}
cabinets:
  - id: CAB-1
    name: Cabinet 1
    circuits:
      - {id: C1, name: Circuit 1, switched: true}
concentrators:
  - {id: CON-1, name: Concentrator 1, cabinet: CAB-1}
teams:
  property: {name: Property}
devices:
  - {id: SL-01, kind: streetlight, name: Light 1, circuit: C1, rated_power_w: 60}
  - {id: SL-02, kind: streetlight, name: Light 2, circuit: C1, rated_power_w: 60}
  - {id: EL-1, kind: elevator, name: Elevator 1, building: B1}
  - {id: SL-10, kind: streetlight, name: Light 10, circuit: C1, rated_power_w: 60, concentrator: CON-1}
  - {id: SL-11, kind: streetlight, name: Light 11, circuit: C1, rated_power_w: 60, concentrator: CON-1}
"""


def topic(kind: str, device: str, channel: str) -> str:
    return f"estate/v1/{SITE}/{kind}/{device}/{channel}"


# --- a Mosquitto with passwords and an ACL -----------------------------------------------------


def connack_code(host: str, port: int) -> int | None:
    """An anonymous MQTT 3.1.1 CONNECT; the CONNACK's return code (5: not authorised), or None."""
    client_id = f"probe-{uuid.uuid4().hex[:8]}".encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
    try:
        with socket.create_connection((host, port), timeout=2.0) as s:
            s.sendall(bytes([0x10, len(body)]) + body)
            connack = s.recv(4)
    except OSError:
        return None
    return connack[3] if len(connack) == 4 and connack[:2] == b"\x20\x02" else None


class SecuredBroker:
    """Mosquitto on a free port that refuses anonymous clients and uses `out`/passwd and `out`/acl."""

    def __init__(self, tmp: Path, out: Path) -> None:
        self.port = servers.free_port()
        self.pidfile = tmp / "mosquitto.pid"
        conf = tmp / "mosquitto.conf"
        lines = [
            f"listener {self.port} {servers.LOCALHOST}",
            "allow_anonymous false",
            f"password_file {out / 'passwd'}",
            f"acl_file {out / 'acl'}",
            "persistence false",
            f"pid_file {self.pidfile}",
            "log_dest stdout",
            *(f"log_type {t}" for t in ("error", "warning", "notice", "information", "subscribe")),
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to user `mosquitto`, who cannot read tmp_path
        conf.write_text("\n".join(lines) + "\n")
        if not Path(servers.MOSQUITTO_BIN).exists():
            pytest.fail(f"{servers.MOSQUITTO_BIN} not found: `apt-get install mosquitto`", pytrace=False)
        backend = servers.NativeProcess([servers.MOSQUITTO_BIN, "-c", str(conf)], tmp / "mosquitto.log")
        self.server = servers.started(lambda: self._start(backend))
        self.host = self.server.host

    def _start(self, backend: servers.NativeProcess) -> servers.Server:
        server = servers.Server("mosquitto (passwords, ACL)", self.port, backend,
                                lambda host, port: connack_code(host, port) is not None)
        server.start()
        return server

    def logs(self) -> str:
        return self.server.logs()

    def close(self) -> None:
        self.server.close()


# --- MQTT clients ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes


class Refused(Exception):
    def __init__(self, reason: ReasonCode) -> None:
        super().__init__(str(reason))
        self.reason = reason


class Peer:
    """A paho client logged in as one account; received messages queue up in arrival order."""

    def __init__(self, broker: SecuredBroker, username: str | None, password: str | None, *,
                 protocol: MQTTProtocolVersion = mqtt.MQTTv311, will: tuple[str, bytes] | None = None) -> None:
        self.name = username or "(anonymous)"
        self.broker = broker
        self.inbox: queue.Queue[Message] = queue.Queue()
        self.disconnected = threading.Event()
        self._connacks: queue.Queue[ReasonCode] = queue.Queue()
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._subacked = threading.Condition()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{secrets.token_hex(5)}", protocol=protocol)
        if username is not None:
            client.username_pw_set(username, password)
        if will is not None:
            client.will_set(will[0], will[1], qos=1)
        client.on_connect = lambda c, u, flags, rc, props: self._connacks.put(rc)
        client.on_disconnect = lambda c, u, flags, rc, props: self.disconnected.set()
        client.on_message = lambda c, u, m: self.inbox.put(Message(m.topic, bytes(m.payload)))
        client.on_subscribe = self._on_subscribe
        self.client = client
        client.connect(broker.host, broker.port, keepalive=30)
        client.loop_start()
        try:
            reason = self._connacks.get(timeout=TIMEOUT)
        except queue.Empty:
            self.close()
            pytest.fail(f"{self.name}: no CONNACK within {TIMEOUT:g} s\n{broker.logs()}")
        if reason.is_failure:
            self.close()  # else paho keeps reconnecting
            raise Refused(reason)

    def _on_subscribe(self, _c: mqtt.Client, _u: object, mid: int, codes: list[ReasonCode], _p: object) -> None:
        with self._subacked:
            self._subacks[mid] = codes
            self._subacked.notify_all()

    def subscribe(self, *topics: str) -> list[bool]:
        """Subscribe at QoS 1; whether the broker granted each (SUBACK)."""
        result, mid = self.client.subscribe([(t, 1) for t in topics])
        assert result == mqtt.MQTT_ERR_SUCCESS and mid is not None
        with self._subacked:
            assert self._subacked.wait_for(lambda: mid in self._subacks, TIMEOUT), f"{self.name}: no SUBACK"
            codes = self._subacks.pop(mid)
        return [not code.is_failure for code in codes]

    def publish(self, topic: str, payload: bytes | str) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK (it routes before it acknowledges)."""
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"{self.name}: no PUBACK for {topic}"

    def until(self, marker: Message) -> list[Message]:
        """Everything received up to and including `marker`; fails when it does not come."""
        got: list[Message] = []
        deadline = time.monotonic() + TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.inbox.get(timeout=left)
            except queue.Empty:
                break
            got.append(message)
            if message == marker:
                return got
        pytest.fail(f"{self.name}: no {marker} within {TIMEOUT:g} s; got {got}\n{self.broker.logs()}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Provisioned:
    broker: SecuredBroker
    out: Path
    secrets: dict[str, str]  # device username -> password, as printed
    platform: dict[str, str]  # platform username -> password
    peers: list[Peer]
    run: Callable[[list[str]], tuple[int, str]]  # `linli provision ARGS` -> (exit code, stdout)

    def login(self, username: str, password: str | None = None, *,
              protocol: MQTTProtocolVersion = mqtt.MQTTv311, will: tuple[str, bytes] | None = None) -> Peer:
        if password is None:
            password = self.secrets[username] if username in self.secrets else self.platform[username]
        peer = Peer(self.broker, username, password, protocol=protocol, will=will)
        self.peers.append(peer)
        return peer

    def refusal(self, username: str | None, password: str | None) -> ReasonCode:
        with pytest.raises(Refused) as refused:
            self.peers.append(Peer(self.broker, username, password))
        return refused.value.reason


def secrets_table(stdout: str) -> dict[str, str]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["SITE", "DEVICE"])
    return {line.split()[3]: line.split()[4] for line in lines[start + 1:] if len(line.split()) == 5}


@pytest.fixture
def estate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Provisioned]:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("LINLI_"):
            monkeypatch.delenv(name)
    (tmp_path / "estate.yaml").write_text(SITE_YAML, encoding="utf-8")
    monkeypatch.setenv("LINLI_SITES", str(tmp_path / "estate.yaml"))
    monkeypatch.setenv("LINLI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LINLI_DATABASE_URL", f"sqlite:///{tmp_path / 'linli.db'}")

    def run(argv: list[str]) -> tuple[int, str]:
        capsys.readouterr()
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 0 or captured.err, "a failing command says why"
        return code, captured.out

    code, stdout = run([])
    assert code == 0
    out = tmp_path / "data" / "broker"
    env = read_env_file(out / "platform-accounts.env")
    platform = {u: env[u.upper().replace("-", "_") + "_MQTT_PASSWORD"]
                for u in ("linli-gateway", "linli-api", "linli-watchdog", "linli-sim")}
    broker = SecuredBroker(tmp_path, out)
    provisioned = Provisioned(broker, out, secrets_table(stdout), platform, [], run)
    try:
        yield provisioned
    finally:
        for peer in provisioned.peers:
            peer.close()
        broker.close()


def test_only_provisioned_accounts_get_in(estate: Provisioned) -> None:
    assert set(estate.secrets) == {"estate.SL-01", "estate.SL-02", "estate.EL-1", "estate.concentrator.CON-1"}
    assert connack_code(estate.broker.host, estate.broker.port) == 5  # raw CONNECT, no username: not authorised
    assert estate.refusal(None, None).is_failure
    assert estate.refusal("estate.SL-01", "wrong-password").is_failure
    assert estate.refusal("estate.SL-01", estate.secrets["estate.SL-02"]).is_failure  # another device's secret
    assert estate.refusal("estate.SL-10", estate.secrets["estate.concentrator.CON-1"]).is_failure  # a child has no account
    assert estate.refusal("linli-gateway", "guess").is_failure
    for username in [*estate.secrets, *estate.platform]:  # every printed secret works: Mosquitto takes our hashes
        estate.login(username)


def test_a_device_publishes_only_under_its_own_topics(estate: Provisioned) -> None:
    gateway = estate.login("linli-gateway")
    assert gateway.subscribe(f"estate/v1/{SITE}/#") == [True]
    api = estate.login("linli-api")
    assert api.subscribe("linli/#") == [True]
    light = estate.login("estate.SL-01")

    own = [Message(topic("streetlight", "SL-01", c), f'{{"own": "{c}"}}'.encode())
           for c in ("status", "telemetry", "event", "cmd/ack")]
    for message in own:
        light.publish(message.topic, message.payload)
    assert gateway.until(own[-1]) == own

    forbidden = [
        topic("streetlight", "SL-02", "telemetry"),  # another device
        topic("elevator", "EL-1", "status"),
        topic("streetlight", "SL-10", "telemetry"),  # a concentrator's child
        topic("concentrator", "CON-1", "status"),
        topic("streetlight", "SL-01", "cmd"),  # commands come from the platform only
        topic("charger", "SL-01", "telemetry"),  # its own id under another kind
        f"estate/v1/{SITE}/streetlight/SL-01",
        "estate/v1/other-site/streetlight/SL-01/telemetry",
    ]
    for name in forbidden:
        light.publish(name, b'{"spoof": true}')
    marker = Message(topic("streetlight", "SL-01", "telemetry"), b'{"marker": 1}')
    light.publish(marker.topic, marker.payload)
    assert gateway.until(marker) == [marker]

    light.publish("linli/v1/estate/events", b'{"spoof": true}')  # the platform's own root
    platform_marker = Message("linli/v1/estate/marker", b"after")
    gateway.publish(platform_marker.topic, platform_marker.payload)
    assert api.until(platform_marker) == [platform_marker]


def test_a_device_reads_only_its_own_commands(estate: Provisioned) -> None:
    light = estate.login("estate.SL-01")
    other = estate.login("estate.SL-02")
    assert other.subscribe(topic("streetlight", "SL-02", "cmd")) == [True]
    assert light.subscribe(topic("streetlight", "SL-01", "cmd")) == [True]
    # Mosquitto 2.0.11 grants these in its SUBACK (its password-file ACL checks reads at delivery):
    # whatever the SUBACK says, nothing foreign may arrive through them.
    light.subscribe(topic("streetlight", "SL-02", "cmd"), topic("streetlight", "SL-02", "telemetry"), "linli/#")
    light.subscribe(f"estate/v1/{SITE}/#")

    api = estate.login("linli-api")
    theirs = Message(topic("streetlight", "SL-02", "cmd"), b'{"id": "for-sl-02", "action": "refresh"}')
    api.publish(theirs.topic, theirs.payload)
    estate.login("estate.EL-1").publish(topic("elevator", "EL-1", "telemetry"), b'{"floor": 3}')
    gateway = estate.login("linli-gateway")
    gateway.publish("linli/v1/estate/events", b"{}")
    mine = Message(topic("streetlight", "SL-01", "cmd"), b'{"id": "for-sl-01", "action": "refresh"}')
    api.publish(mine.topic, mine.payload)
    assert other.until(theirs) == [theirs]  # it was delivered, to its device
    assert light.until(mine) == [mine]


def test_a_concentrator_speaks_for_its_children_only(estate: Provisioned) -> None:
    gateway = estate.login("linli-gateway")
    assert gateway.subscribe(f"estate/v1/{SITE}/#") == [True]
    concentrator = estate.login("estate.concentrator.CON-1")
    assert concentrator.subscribe(topic("streetlight", "SL-10", "cmd"), topic("streetlight", "SL-11", "cmd")) == [True, True]
    concentrator.subscribe(topic("streetlight", "SL-01", "cmd"))  # granted or not, nothing may arrive through it

    allowed = [
        Message(topic("concentrator", "CON-1", "status"), b'{"online": true}'),
        Message(topic("concentrator", "CON-1", "event"), b'{"code": "field_bus_error"}'),
        Message(topic("streetlight", "SL-10", "status"), b'{"online": true}'),
        Message(topic("streetlight", "SL-10", "telemetry"), b'{"relay": true}'),
        Message(topic("streetlight", "SL-11", "event"), b'{"code": "lamp_failure"}'),
        Message(topic("streetlight", "SL-11", "cmd/ack"), b'{"id": "x", "ok": true}'),
    ]
    for message in allowed:
        concentrator.publish(message.topic, message.payload)
    assert gateway.until(allowed[-1]) == allowed

    for name in (topic("streetlight", "SL-01", "telemetry"), topic("elevator", "EL-1", "status"),
                 topic("concentrator", "CON-2", "status"), topic("concentrator", "CON-1", "telemetry"),
                 topic("streetlight", "SL-10", "cmd")):
        concentrator.publish(name, b'{"spoof": true}')
    marker = Message(topic("streetlight", "SL-11", "telemetry"), b'{"marker": 1}')
    concentrator.publish(marker.topic, marker.payload)
    assert gateway.until(marker) == [marker]

    api = estate.login("linli-api")
    api.publish(topic("streetlight", "SL-01", "cmd"), b'{"id": "not-yours"}')
    child_cmd = Message(topic("streetlight", "SL-10", "cmd"), b'{"id": "for-sl-10"}')
    api.publish(child_cmd.topic, child_cmd.payload)
    assert concentrator.until(child_cmd) == [child_cmd]


def test_a_device_last_will_goes_out_on_its_status(estate: Provisioned) -> None:
    gateway = estate.login("linli-gateway")
    assert gateway.subscribe(topic("elevator", "EL-1", "status")) == [True]
    will = Message(topic("elevator", "EL-1", "status"), b'{"online": false}')
    elevator = estate.login("estate.EL-1", protocol=mqtt.MQTTv5, will=(will.topic, will.payload))
    elevator.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
    assert gateway.until(will) == [will]


def test_platform_accounts(estate: Provisioned) -> None:
    gateway = estate.login("linli-gateway")
    assert gateway.subscribe(f"estate/v1/{SITE}/#") == [True]
    watchdog = estate.login("linli-watchdog")
    assert watchdog.subscribe("linli/#") == [True]
    watchdog.subscribe(f"estate/v1/{SITE}/#")  # granted or not, nothing may arrive through it
    light = estate.login("estate.SL-01")
    assert light.subscribe(topic("streetlight", "SL-01", "cmd")) == [True]

    # the simulator publishes for any device, but sends no commands
    sim = estate.login("linli-sim")
    simulated = Message(topic("streetlight", "SL-02", "telemetry"), b'{"relay": false}')
    sim.publish(topic("streetlight", "SL-01", "cmd"), b'{"id": "from-sim"}')
    sim.publish(simulated.topic, simulated.payload)
    assert gateway.until(simulated) == [simulated]

    # the gateway and the API command devices but cannot pose as one
    for account in ("linli-gateway", "linli-api"):
        peer = estate.login(account) if account != "linli-gateway" else gateway
        peer.publish(topic("streetlight", "SL-01", "telemetry"), b'{"spoof": true}')
        peer.publish("estate/v1/other-site/streetlight/SL-01/cmd", b'{"id": "other site"}')
        command = Message(topic("streetlight", "SL-01", "cmd"), f'{{"id": "{account}"}}'.encode())
        peer.publish(command.topic, command.payload)
        assert light.until(command) == [command]
        assert gateway.until(command) == [command]  # the gateway reads its site's commands too

    heartbeat = Message("linli/v1/estate/heartbeat", b'{"ok": true}')
    gateway.publish(heartbeat.topic, heartbeat.payload)
    assert watchdog.until(heartbeat) == [heartbeat]


def test_a_revoked_device_is_refused_after_reload(estate: Provisioned) -> None:
    gateway = estate.login("linli-gateway")
    assert gateway.subscribe(f"estate/v1/{SITE}/#") == [True]
    revoked, kept = estate.login("estate.SL-02"), estate.login("estate.SL-01")

    code, stdout = estate.run(["revoke", f"{SITE}/SL-02", "--reload-pidfile", str(estate.broker.pidfile)])
    assert code == 0 and "revoked estate/SL-02" in stdout and "sent SIGHUP" in stdout

    # Mosquitto re-checks connected clients when it reloads: the revoked one is dropped
    assert revoked.disconnected.wait(TIMEOUT), f"revoked session not dropped\n{estate.broker.logs()}"
    assert estate.refusal("estate.SL-02", estate.secrets["estate.SL-02"]).is_failure
    assert not kept.disconnected.is_set()
    marker = Message(topic("streetlight", "SL-01", "telemetry"), b'{"still": "here"}')
    kept.publish(marker.topic, marker.payload)
    assert gateway.until(marker) == [marker]
    estate.login("estate.SL-01")  # and new logins of others still work


def test_a_rotated_secret_replaces_the_old_one(estate: Provisioned) -> None:
    old = estate.secrets["estate.EL-1"]
    code, stdout = estate.run(["--rotate", f"{SITE}/EL-1", "--reload-pid", estate.broker.pidfile.read_text().strip()])
    assert code == 0
    new = secrets_table(stdout)
    assert list(new) == ["estate.EL-1"] and new["estate.EL-1"] != old
    deadline = time.monotonic() + TIMEOUT
    while True:  # the reload is asynchronous: the old secret works until Mosquitto has read the new file
        try:
            estate.login("estate.EL-1", old)
        except Refused:
            break
        assert time.monotonic() < deadline, f"old secret still accepted\n{estate.broker.logs()}"
    estate.login("estate.EL-1", new["estate.EL-1"])


def test_credentials_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    """The same bookkeeping on PostgreSQL, with the longest ids a site file allows (its column
    lengths are enforced there): a revoked row keeps a unique username within 80 characters."""
    site_id, conc_id = "s" * 32, "C" * 32
    text = SITE_YAML.replace("  id: estate\n", f"  id: {site_id}\n").replace("CON-1", conc_id)
    (tmp_path / "long.yaml").write_text(text, encoding="utf-8")
    site = load_site(tmp_path / "long.yaml")
    migrate(postgres_url)
    database = Database(postgres_url)
    now = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    try:
        with database.session() as session:
            issued = {s.username: s.password for s in issue_credentials(session, [site], now)}
            assert set(issued) == {a.username for a in broker_accounts([site])}
            assert f"{site_id}.concentrator.{conc_id}" in issued
        for hour in (1, 2):  # two rotations: two revoked rows of the same account
            with database.session() as session:
                renewed = rotate(session, [site], site_id, conc_id, now + timedelta(hours=hour))
        with database.session() as session:
            assert revoke(session, site_id, "SL-01", now + timedelta(hours=3))
            assert issue_credentials(session, [site], now + timedelta(hours=4)) == []
            write_broker_files(session, [site], tmp_path, [PlatformAccount("linli-gateway", "gw")])
            rows = session.scalars(select(DeviceCredential).order_by(DeviceCredential.id)).all()
    finally:
        database.close()
    revoked = [r for r in rows if not r.active]
    assert len(revoked) == 3 and all(len(r.username) <= 80 and r.revoked_at is not None for r in revoked)
    assert len({r.username for r in rows}) == len(rows)
    assert sorted((r.revoked_at, r.device_id) for r in revoked) == [
        (now + timedelta(hours=1), conc_id), (now + timedelta(hours=2), conc_id), (now + timedelta(hours=3), "SL-01")]
    entries = read_passwd(tmp_path / "passwd")
    assert mosquitto_verify(renewed.password, entries[renewed.username])
    assert f"{site_id}.SL-01" not in entries and mosquitto_verify(issued[f"{site_id}.SL-02"], entries[f"{site_id}.SL-02"])
