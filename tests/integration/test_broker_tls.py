"""The broker beyond provisioning: TLS with our own CA, client certificates, and client ids that cannot
be taken over (docs/security.md).

The test makes a CA, a server certificate for 127.0.0.1 and client certificates with the
``cryptography`` package, plus a second, unrelated CA with certificates of its own (what an
attacker could make). One Mosquitto 2.0 (its own, on free ports, ``per_listener_settings true``)
listens four ways:

- ``tls``: TLS, the broker's certificate only (anyone who trusts our CA may connect);
- ``mtls``: TLS that requires a client certificate from our CA, for the gateway and the simulator;
- ``identity``: TLS with client certificates whose common name *is* the account
  (``use_identity_as_username``) and the client id (``use_username_as_clientid``), with the ACL
  ``linli provision`` writes;
- ``passwords``: the password file and ACL of ``linli provision`` with ``use_username_as_clientid``.

Without ``use_username_as_clientid`` any device that can log in may connect with another device's
client id and Mosquitto drops the other device's connection (its will fires, the two fight for the
id forever; with the gateway's id, its queued session is lost). With it, the broker replaces the
client id by the account, so a device only ever reaches its own session.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import queue
import secrets
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import servers
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError
from sqlalchemy import select

from api.routes.commands import publish
from firmware_sim.cli import main as sim_main
from firmware_sim.runtime import BrokerConfig, Simulator
from gateway.runtime import Gateway
from gateway.settings import GatewaySettings
from integration.test_provision import SITE_YAML
from linli.mqtt_tls import MqttTls
from linli.ops.provision import acl_for, mosquitto_hash
from linli.settings import Settings
from linli.site import builtin_site_path, load_site
from linli.storage import DeviceState

TIMEOUT = 10.0
DEVICE_A, DEVICE_B = "estate.SL-01", "estate.SL-02"  # accounts of `linli provision` for the test site
CMD_A = "estate/v1/estate/streetlight/SL-01/cmd"


# --- certificates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    dir: Path

    def path(self, name: str) -> str:
        return str(self.dir / name)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
    path.parent.joinpath(f"{path.name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        key_path = path.parent / f"{path.name}.key"  # not with_suffix: account names contain dots
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_path.chmod(0o600)


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], name: str, *,
           server: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca[0].subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                              else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(servers.LOCALHOST))]), critical=False)
    return builder.sign(ca[1], hashes.SHA256()), key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """ca.pem (ours), server.pem/.key, client certificates named by their account; rogue-ca.pem
    (another CA) with a server certificate and client certificates of the same names."""
    out = tmp_path_factory.mktemp("pki")
    ours, rogue = _ca("Linli test CA"), _ca("Someone else's CA")
    _write(out / "ca", ours[0])
    _write(out / "rogue-ca", rogue[0])
    _write(out / "server", *_issue(ours, "127.0.0.1", server=True))
    _write(out / "rogue-server", *_issue(rogue, "127.0.0.1", server=True))
    for account in (DEVICE_A, DEVICE_B, "linli-gateway", "linli-api", "linli-sim"):
        _write(out / account, *_issue(ours, account, server=False))
        _write(out / f"rogue-{account}", *_issue(rogue, account, server=False))
    return Pki(out)


# --- the broker --------------------------------------------------------------------------------


@dataclass
class TlsBroker:
    ports: dict[str, int]
    server: servers.Server
    passwords: dict[str, str]

    def logs(self) -> str:
        return self.server.logs()


def _tls_ready(pki: Pki, port: int) -> bool:
    try:
        context = ssl.create_default_context(cafile=pki.path("ca.pem"))
        with socket.create_connection((servers.LOCALHOST, port), timeout=1.0) as raw, \
                context.wrap_socket(raw, server_hostname=servers.LOCALHOST):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    tmp = tmp_path_factory.mktemp("tls-broker")
    site_file = tmp / "estate.yaml"
    site_file.write_text(SITE_YAML, encoding="utf-8")
    site = load_site(site_file)
    (tmp / "acl").write_text(acl_for([site]), encoding="utf-8")  # what `linli provision` writes
    passwords = {DEVICE_A: secrets.token_urlsafe(16), DEVICE_B: secrets.token_urlsafe(16),
                 "linli-api": secrets.token_urlsafe(16)}
    (tmp / "passwd").write_text("".join(f"{u}:{mosquitto_hash(p)}\n" for u, p in passwords.items()), encoding="utf-8")
    ports = {name: servers.free_port() for name in ("tls", "mtls", "identity", "passwords")}
    ours = [f"cafile {pki.path('ca.pem')}", f"certfile {pki.path('server.pem')}", f"keyfile {pki.path('server.key')}"]
    lines = [
        "per_listener_settings true", "persistence false", "log_dest stdout",
        *(f"log_type {t}" for t in ("error", "warning", "notice", "information")), "connection_messages true",
        f"listener {ports['tls']} {servers.LOCALHOST}", *ours, "allow_anonymous true",
        f"listener {ports['mtls']} {servers.LOCALHOST}", *ours, "require_certificate true", "allow_anonymous true",
        f"listener {ports['identity']} {servers.LOCALHOST}", *ours, "require_certificate true",
        "use_identity_as_username true", "use_username_as_clientid true", f"acl_file {tmp / 'acl'}",
        f"listener {ports['passwords']} {servers.LOCALHOST}", "allow_anonymous false", "use_username_as_clientid true",
        f"password_file {tmp / 'passwd'}", f"acl_file {tmp / 'acl'}",
    ]
    if os.geteuid() == 0:
        lines.append("user root")  # else it drops to user `mosquitto`, who cannot read tmp_path
    conf = tmp / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    backend = servers.NativeProcess([servers.MOSQUITTO_BIN, "-c", str(conf)], tmp / "mosquitto.log")

    def start() -> servers.Server:
        server = servers.Server("mosquitto (TLS)", ports["passwords"], backend,
                                lambda host, port: servers.port_answers(host, port) and _tls_ready(pki, ports["tls"]))
        server.start()
        return server

    server = servers.started(start)
    try:
        yield TlsBroker(ports, server, passwords)
    finally:
        server.close()


# --- clients -----------------------------------------------------------------------------------


def connack(port: int, *, cafile: str | None, cert: str | None = None, key: str | None = None,
            tls: bool = True, username: str | None = None, password: str | None = None) -> str:
    """One raw MQTT 3.1.1 CONNECT: "accepted", "refused N" (CONNACK code), or why nothing came back."""
    client_id = f"probe-{uuid.uuid4().hex[:8]}".encode()
    flags, payload = 0x02, len(client_id).to_bytes(2, "big") + client_id
    for flag, field in ((0x80, username), (0x40, password)):
        if field is not None:
            flags |= flag
            payload += len(field.encode()).to_bytes(2, "big") + field.encode()
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + b"\x00\x3c" + payload
    try:
        with socket.create_connection((servers.LOCALHOST, port), timeout=3.0) as raw:
            sock: socket.socket = raw
            if tls:
                context = ssl.create_default_context(cafile=cafile)  # None: the system's CAs
                if cert is not None:
                    context.load_cert_chain(cert, key)
                sock = context.wrap_socket(raw, server_hostname=servers.LOCALHOST)
            sock.sendall(bytes([0x10, len(body)]) + body)
            answer = sock.recv(4)
    except ssl.SSLCertVerificationError as exc:
        return f"broker not trusted: {exc.verify_message}"
    except (OSError, ssl.SSLError) as exc:
        return f"closed: {type(exc).__name__}"
    if len(answer) == 4 and answer[:2] == b"\x20\x02":
        return "accepted" if answer[3] == 0 else f"refused {answer[3]}"
    return f"closed: {answer!r}"


class Peer:
    """A paho client that stays connected; records disconnections and messages."""

    def __init__(self, port: int, client_id: str, *, tls: MqttTls | None = None, username: str | None = None,
                 password: str | None = None) -> None:
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.disconnected = threading.Event()
        connected: queue.Queue[Any] = queue.Queue()
        subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if tls is not None:
            tls.apply(client)
        if username is not None:
            client.username_pw_set(username, password)
        client.on_connect = lambda c, u, f, rc, p: connected.put(rc)
        client.on_disconnect = lambda c, u, f, rc, p: self.disconnected.set()
        client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
        client.on_message = lambda c, u, m: self.inbox.put((m.topic, bytes(m.payload)))
        client.reconnect_delay_set(60, 120)  # a dropped peer stays dropped while the test looks
        client.connect(servers.LOCALHOST, port, keepalive=30)
        client.loop_start()
        self.client, self._subscribed = client, subscribed
        reason = connected.get(timeout=TIMEOUT)
        assert not reason.is_failure, f"{client_id}: refused ({reason})"

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(TIMEOUT)

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()

    def next_message(self) -> tuple[str, bytes]:
        return self.inbox.get(timeout=TIMEOUT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    made: list[Peer] = []
    yield made
    for peer in made:
        peer.close()


def cert_of(pki: Pki, account: str, *, rogue: bool = False) -> MqttTls:
    name = f"rogue-{account}" if rogue else account
    return MqttTls(pki.path("ca.pem"), pki.path(f"{name}.pem"), pki.path(f"{name}.key"))


# --- TLS: who gets in --------------------------------------------------------------------------


def test_only_a_client_that_trusts_our_ca_connects_over_tls(pki: Pki, broker: TlsBroker) -> None:
    port = broker.ports["tls"]
    assert connack(port, cafile=pki.path("ca.pem")) == "accepted"
    assert connack(port, cafile=None).startswith("broker not trusted")  # the system's CAs do not know ours
    assert connack(port, cafile=pki.path("rogue-ca.pem")).startswith("broker not trusted")
    assert connack(port, cafile=None, tls=False).startswith("closed")  # plain MQTT on the TLS port: no CONNACK


def test_a_client_certificate_from_another_ca_or_none_is_refused(pki: Pki, broker: TlsBroker) -> None:
    for listener in ("mtls", "identity"):
        port = broker.ports[listener]
        assert connack(port, cafile=pki.path("ca.pem")).startswith("closed"), listener  # no certificate
        rogue = cert_of(pki, DEVICE_A, rogue=True)  # the right name, signed by someone else
        assert connack(port, cafile=pki.path("ca.pem"), cert=rogue.cert_file, key=rogue.key_file).startswith("closed")
        ours = cert_of(pki, DEVICE_A)
        assert connack(port, cafile=pki.path("ca.pem"), cert=ours.cert_file, key=ours.key_file) == "accepted", listener


def test_the_settings_take_tls_files_only_for_mqtts_and_only_existing_ones(pki: Pki, tmp_path: Path) -> None:
    base: dict[str, Any] = {"_env_file": None, "data_dir": tmp_path}
    ok = Settings(**base, mqtt_url="mqtts://127.0.0.1:8883", mqtt_ca_file=pki.path("ca.pem"),
                  mqtt_cert_file=pki.path("linli-api.pem"), mqtt_key_file=pki.path("linli-api.key"))
    assert ok.mqtt_tls == MqttTls(pki.path("ca.pem"), pki.path("linli-api.pem"), pki.path("linli-api.key"))
    assert Settings(**base, mqtt_url="mqtts://127.0.0.1").mqtt_tls == MqttTls()  # the system's CAs
    assert Settings(**base, mqtt_url="mqtt://127.0.0.1").mqtt_tls is None
    refused = {
        "need a TLS broker URL": {"mqtt_url": "mqtt://127.0.0.1", "mqtt_ca_file": pki.path("ca.pem")},
        "go together": {"mqtt_url": "mqtts://127.0.0.1", "mqtt_cert_file": pki.path("linli-api.pem")},
        "no such file": {"mqtt_url": "mqtts://127.0.0.1", "mqtt_ca_file": str(tmp_path / "missing.pem")},
    }
    for message, fields in refused.items():
        with pytest.raises(ValidationError, match=message):
            Settings(**base, **fields)  # type: ignore[arg-type]


def test_the_gateway_and_the_simulator_talk_over_mutual_tls(pki: Pki, broker: TlsBroker, tmp_path: Path) -> None:
    url = f"mqtts://{servers.LOCALHOST}:{broker.ports['mtls']}"
    gateway_tls = cert_of(pki, "linli-gateway")
    settings = GatewaySettings(
        _env_file=None, data_dir=tmp_path, mqtt_url=url, mqtt_ca_file=gateway_tls.ca_file,
        mqtt_cert_file=gateway_tls.cert_file, mqtt_key_file=gateway_tls.key_file,
        mqtt_client_id=f"gw-{uuid.uuid4().hex[:8]}", gateway_metrics_port=0,
    )
    gw = Gateway(settings)
    gw.start()
    sim_tls = cert_of(pki, "linli-sim")
    sim_broker = BrokerConfig.from_url(url)
    assert sim_broker.tls
    sim_broker = BrokerConfig(sim_broker.host, sim_broker.port, tls=True, ca_file=sim_tls.ca_file,
                              cert_file=sim_tls.cert_file, key_file=sim_tls.key_file)
    simulator = Simulator([load_site(builtin_site_path())], sim_broker, devices=["SL-07"], interval_s=1.0, seed=1)
    try:
        assert gw.wait_until(lambda: gw.connected, TIMEOUT), f"gateway did not connect over TLS\n{broker.logs()}"
        simulator.start()
        assert gw.wait_until(lambda: gw.messages_done >= 2, TIMEOUT), f"nothing came over TLS\n{broker.logs()}"
        with gw.database.session() as session:
            state = session.scalars(select(DeviceState).where(DeviceState.device_id == "SL-07")).one()
        assert state.online is True

        # the API's commands go out over the same kind of connection, its certificate its own
        api_tls = cert_of(pki, "linli-api")
        api_settings = Settings(_env_file=None, data_dir=tmp_path, mqtt_url=url, mqtt_ca_file=api_tls.ca_file,
                                mqtt_cert_file=api_tls.cert_file, mqtt_key_file=api_tls.key_file)
        listener = Peer(broker.ports["mtls"], f"listen-{uuid.uuid4().hex[:6]}", tls=api_tls)
        try:
            listener.subscribe("estate/v1/wanmei/streetlight/SL-99/cmd")
            publish(api_settings, "estate/v1/wanmei/streetlight/SL-99/cmd", b'{"id": "tls"}', 60)
            assert listener.next_message() == ("estate/v1/wanmei/streetlight/SL-99/cmd", b'{"id": "tls"}')
        finally:
            listener.close()
    finally:
        simulator.stop()
        gw.stop()


# --- client ids: nobody takes over another device's session ------------------------------------


def _takeover(a: Peer, b_connect: Any, api: Peer) -> None:
    """B connects with A's client id; A must stay connected and keep getting its own commands, B none."""
    a.subscribe(CMD_A)
    b = b_connect()
    b.subscribe(CMD_A)  # granted or not, A's commands must not reach B (the ACL reads at delivery)
    command = (CMD_A, f'{{"id": "{uuid.uuid4().hex[:6]}"}}'.encode())
    api.publish(*command)
    assert not a.disconnected.is_set(), "A was dropped when B used its client id"
    assert a.next_message() == command  # A's session is A's: its subscription was not taken
    assert b.inbox.empty()


def test_a_device_with_another_devices_client_id_cannot_take_its_session_with_certificates(
    pki: Pki, broker: TlsBroker, peers: list[Peer],
) -> None:
    port = broker.ports["identity"]
    a = Peer(port, DEVICE_A, tls=cert_of(pki, DEVICE_A))
    api = Peer(port, "linli-api", tls=cert_of(pki, "linli-api"))
    peers.extend([a, api])
    def as_b(client_id: str) -> Peer:
        peers.append(Peer(port, client_id, tls=cert_of(pki, DEVICE_B)))
        return peers[-1]

    for stolen in (DEVICE_A, "wanmei-SL-01"):  # A's account name, or whatever id A chose: both are A's
        _takeover(a, lambda stolen=stolen: as_b(stolen), api)


def test_a_device_with_another_devices_client_id_cannot_take_its_session_with_passwords(
    broker: TlsBroker, peers: list[Peer],
) -> None:
    port, passwords = broker.ports["passwords"], broker.passwords
    a = Peer(port, "estate-SL-01", username=DEVICE_A, password=passwords[DEVICE_A])
    api = Peer(port, "linli-api-cmd", username="linli-api", password=passwords["linli-api"])
    peers.extend([a, api])
    def as_b() -> Peer:
        peers.append(Peer(port, "estate-SL-01", username=DEVICE_B, password=passwords[DEVICE_B]))  # A's client id
        return peers[-1]

    _takeover(a, as_b, api)
    # and B cannot log in as A with its own password (the account is the password's)
    assert connack(port, cafile=None, tls=False, username=DEVICE_A, password=passwords[DEVICE_B]) == "refused 5"
    assert not a.disconnected.is_set()


def test_linli_sim_takes_its_tls_files_from_the_environment(
    pki: Pki, broker: TlsBroker, peers: list[Peer], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"mqtts://{servers.LOCALHOST}:{broker.ports['mtls']}"
    listener = Peer(broker.ports["mtls"], f"listen-{uuid.uuid4().hex[:6]}", tls=cert_of(pki, "linli-gateway"))
    peers.append(listener)
    listener.subscribe("estate/v1/wanmei/streetlight/SL-05/telemetry")
    argv = ["--broker", url, "--device", "SL-05", "--interval", "0.3", "--duration", "1.5", "--seed", "3", "--quiet"]
    for name in ("LINLI_MQTT_USERNAME", "LINLI_MQTT_PASSWORD", "LINLI_SITES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LINLI_MQTT_CA_FILE", pki.path("ca.pem"))
    assert sim_main(argv) == 2  # the broker wants a client certificate: refused, said, exit 2
    assert "no device connected" in capsys.readouterr().err  # (TLS 1.3: the broker hangs up after the handshake)
    sim = cert_of(pki, "linli-sim")
    monkeypatch.setenv("LINLI_MQTT_CERT_FILE", str(sim.cert_file))
    monkeypatch.setenv("LINLI_MQTT_KEY_FILE", str(sim.key_file))
    assert sim_main(argv) == 0
    topic, body = listener.next_message()
    assert topic.endswith("/SL-05/telemetry") and json.loads(body)["seq"] >= 0


DEPLOY_CONF = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "mosquitto.conf"


def test_the_shipped_broker_config_keeps_a_device_out_of_another_devices_session(
    tmp_path: Path, peers: list[Peer],
) -> None:
    """deploy/mosquitto/mosquitto.conf as compose runs it (port and paths moved, as test_compose does),
    with the files `linli provision` writes: device B with A's client id must not drop A."""
    site_file = tmp_path / "estate.yaml"
    site_file.write_text(SITE_YAML, encoding="utf-8")
    generated, data = tmp_path / "generated", tmp_path / "data"
    generated.mkdir()
    data.mkdir()
    passwords = {DEVICE_A: secrets.token_urlsafe(16), DEVICE_B: secrets.token_urlsafe(16),
                 "linli-api": secrets.token_urlsafe(16)}
    (generated / "passwd").write_text("".join(f"{u}:{mosquitto_hash(p)}\n" for u, p in passwords.items()))
    (generated / "acl").write_text(acl_for([load_site(site_file)]))
    port = servers.free_port()
    platform_port = servers.free_port()
    text = (DEPLOY_CONF.read_text().replace("listener 1883\n", f"listener {port} 127.0.0.1\n")
            .replace("listener 1884\n", f"listener {platform_port} 127.0.0.1\n")
            .replace("/mosquitto/config/generated/", f"{generated}/").replace("/mosquitto/data/", f"{data}/"))
    if os.geteuid() == 0:
        text += "user root\n"
    (tmp_path / "mosquitto.conf").write_text(text)
    backend = servers.NativeProcess([servers.MOSQUITTO_BIN, "-c", str(tmp_path / "mosquitto.conf")],
                                    tmp_path / "mosquitto.log")

    def start() -> servers.Server:
        server = servers.Server("mosquitto (deploy config)", port, backend, servers.port_answers)
        server.start()
        return server

    server = servers.started(start)
    try:
        a = Peer(port, "estate-SL-01", username=DEVICE_A, password=passwords[DEVICE_A])
        # The platform's listener: one account, several sessions of its own naming (as the gateway's
        # per-site sessions), none dropping another.
        api = Peer(platform_port, "linli-api-cmd", username="linli-api", password=passwords["linli-api"])
        api_live = Peer(platform_port, "linli-api-live", username="linli-api", password=passwords["linli-api"])
        peers.extend([a, api, api_live])

        def as_b() -> Peer:
            peers.append(Peer(port, "estate-SL-01", username=DEVICE_B, password=passwords[DEVICE_B]))
            return peers[-1]

        _takeover(a, as_b, api)
        assert not api.disconnected.is_set() and not api_live.disconnected.is_set()
    finally:
        for peer in peers:
            peer.close()
        peers.clear()
        server.close()
