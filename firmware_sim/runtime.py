"""The simulator's I/O: one MQTT connection per simulated device, one scheduler thread for all.

Each device gets its own paho-mqtt client (client id ``sim-{site}-{device_id}``, its own optional
credentials, last will ``{"online": false}`` retained QoS 1 on its ``status`` topic). On every
(re)connection it publishes its retained ``status``; it publishes ``telemetry`` at QoS 1 every
``interval_s``, the first one right after connecting, first messages spread over ~2 s.

A single scheduler thread keeps a heap of next-due times against the injected clock and drives
every device's model (``firmware_sim.models``) and every fault transition
(``firmware_sim.faults``); paho callbacks only record connection changes and wake it. Each client
runs paho's own network thread (``loop_start``), fine for a few hundred devices.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import queue
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from firmware_sim.faults import Fault, FaultSchedule, Injection, Transition, resolve
from firmware_sim.models import AnyModel, Sky, model_for
from linli.clock import Clock, SystemClock
from linli.contract import Channel, Status, topic_for
from linli.site import Device, Site

log = logging.getLogger("firmware_sim")

DeviceKey = tuple[str, str]  # (site id, device id)
# Per-device MQTT credentials: a mapping from device id (or "site/device") to (username, password),
# or a callable (site id, device id) -> (username, password) | None. None: the broker-wide ones.
Credentials = Mapping[str, tuple[str, str | None]] | Callable[[str, str], tuple[str, str | None] | None]


class SimulatorError(Exception):
    """The simulator cannot run as asked (bad broker URL, unreachable broker, refused login, ...)."""


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    host: str
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str, username: str | None = None, password: str | None = None) -> BrokerConfig:
        """``mqtt://host[:port]`` or ``mqtts://user:pass@host[:port]``; explicit credentials win."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise SimulatorError(f"bad broker URL {url!r}: {exc}") from None
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise SimulatorError(f"bad broker URL {url!r}: expected mqtt://host:port or mqtts://host:port")
        if not parts.hostname:
            raise SimulatorError(f"bad broker URL {url!r}: no host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise SimulatorError(f"bad broker URL {url!r}: expected nothing after host:port")
        tls = parts.scheme in ("mqtts", "ssl")
        return cls(
            host=parts.hostname,
            port=port or (8883 if tls else 1883),
            tls=tls,
            username=username if username is not None else (unquote(parts.username) if parts.username else None),
            password=password if password is not None else (unquote(parts.password) if parts.password else None),
        )

    @property
    def url(self) -> str:
        """The URL without credentials, for messages."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SimStats:
    devices: int
    connected: int
    silent: int  # offline injections in force (soft and hard)
    telemetry_sent: int
    status_sent: int
    skipped: int  # telemetry not sent because the device was not connected


class _Unit:
    """One simulated device: its model, its connection and its timing (scheduler-thread state)."""

    def __init__(self, site: Site, device: Device, model: AnyModel, interval_s: float) -> None:
        self.site = site
        self.device = device
        self.model = model
        self.key: DeviceKey = (site.id, device.id)
        self.client_id = f"sim-{site.id}-{device.id}"
        self.interval_s = interval_s
        self.status_interval_s = max(1, math.ceil(interval_s - 1e-9))
        self.status_topic = topic_for(site.id, device.kind, device.id, Channel.STATUS)
        self.telemetry_topic = topic_for(site.id, device.kind, device.id, Channel.TELEMETRY)
        self.client: mqtt.Client | None = None
        self.connected = False  # written by paho's thread, read by the scheduler
        self.announced = False  # status published on the current connection
        self.offline: list[Injection] = []  # offline injections in force
        self.silent = False  # an offline injection is in force: publishes nothing
        self.powered_off = False  # hard offline: no connection at all
        self.generation = 0  # bumped per client, so late callbacks of a dropped client are ignored


class Simulator:
    """Simulated devices of one or more sites talking to an MQTT broker.

    ``start()`` connects every device and starts the scheduler; ``stop()`` publishes
    ``{"online": false}`` for each device and disconnects. Usable as a context manager.
    """

    def __init__(
        self,
        sites: Sequence[Site],
        broker: BrokerConfig | str,
        *,
        clock: Clock | None = None,
        seed: int = 0,
        interval_s: float | None = None,
        devices: Iterable[str] | None = None,
        injections: Iterable[Injection] = (),
        credentials: Credentials | None = None,
        boot: int | None = None,
        first_spread_s: float = 2.0,
        keepalive_s: int = 30,
        report_every_s: float | None = None,
        time_scale: float = 1.0,
    ) -> None:
        """
        ``devices``: device ids (or ``site:device``) to simulate, default all. ``interval_s``
        overrides every device's telemetry period. ``boot``: the boot counter the devices report
        (default: derived from the wall clock so it grows from run to run). ``time_scale``: how
        many clock seconds pass per wall second (a ``ScaledClock``'s speed), used only to sleep
        the right amount. Raises :class:`SimulatorError` or ``InjectionError`` for bad input.
        """
        if not sites:
            raise SimulatorError("no site to simulate")
        if interval_s is not None and not interval_s > 0:
            raise SimulatorError("the telemetry interval must be positive")
        self.broker = broker if isinstance(broker, BrokerConfig) else BrokerConfig.from_url(broker)
        self.clock: Clock = clock or SystemClock()
        self.sites = list(sites)
        self._credentials = credentials
        self._keepalive = keepalive_s
        self._spread_s = first_spread_s
        self._time_scale = time_scale
        self._jitter = random.Random(f"{seed}/runtime")
        start = self.clock.now()
        boot_number = boot if boot is not None else int(time.time()) - 1_700_000_000
        selected = self._select(devices)
        self._units: dict[DeviceKey, _Unit] = {}
        for site in self.sites:
            sky = Sky.for_site(site)
            for device in site.spec.devices:
                if (site.id, device.id) not in selected:
                    continue
                model = model_for(site, device, start=start, seed=seed, boot=boot_number, sky=sky)
                period = interval_s if interval_s is not None else float(device.interval_s)
                self._units[(site.id, device.id)] = _Unit(site, device, model, period)
        self._faults = FaultSchedule()
        for injection in injections:
            self._check(injection)
            self._faults.add(injection)
        shortest = min((u.interval_s for u in self._units.values()), default=30.0)
        self._report_every_s = report_every_s if report_every_s is not None else max(5.0, shortest)

        self._heap: list[tuple[datetime, int, DeviceKey]] = []
        self._order = itertools.count()
        self._notices: queue.SimpleQueue[tuple[str, DeviceKey, int]] = queue.SimpleQueue()
        self._injected: queue.SimpleQueue[Injection] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards the counters and connection bookkeeping below
        self._connected: set[DeviceKey] = set()
        self._refusal: str | None = None
        self._outage = False
        self._telemetry_sent = 0
        self._status_sent = 0
        self._skipped = 0
        self._reported_sent = 0
        self._started = False

    # ------------------------------------------------------------ set-up

    def _select(self, devices: Iterable[str] | None) -> set[DeviceKey]:
        everything = {(s.id, d) for s in self.sites for d in s.devices}
        if devices is None:
            return everything
        chosen: set[DeviceKey] = set()
        for name in devices:
            site_id, _, device_id = name.rpartition(":")
            matches = {(s, d) for s, d in everything if d == device_id and (not site_id or s == site_id)}
            if not matches:
                raise SimulatorError(f"--device {name}: no such device in the simulated sites")
            chosen |= matches
        return chosen

    def _check(self, injection: Injection) -> DeviceKey:
        site, device = resolve(injection, self.sites, self._units.keys())
        return (site.id, device.id)

    @property
    def device_keys(self) -> list[DeviceKey]:
        return list(self._units)

    def model(self, device_id: str, site_id: str | None = None) -> AnyModel:
        """A device's model (read it from the scheduler's side only: for tests and tools)."""
        for (s, d), unit in self._units.items():
            if d == device_id and (site_id is None or s == site_id):
                return unit.model
        raise KeyError(device_id)

    def _credentials_for(self, unit: _Unit) -> tuple[str, str | None] | None:
        source = self._credentials
        if source is None:
            if self.broker.username is None:
                return None
            return (self.broker.username, self.broker.password)
        if callable(source):
            return source(unit.site.id, unit.device.id)
        return source.get(f"{unit.site.id}/{unit.device.id}") or source.get(unit.device.id)

    def _preflight(self) -> None:
        try:
            with socket.create_connection((self.broker.host, self.broker.port), timeout=5.0):
                pass
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise SimulatorError(f"cannot reach the MQTT broker at {self.broker.url}: {reason}") from None

    # ------------------------------------------------------------ lifecycle

    def start(self, connect_timeout: float = 10.0) -> None:
        """Connect every device and start publishing; :class:`SimulatorError` when no device gets in."""
        if self._started:
            raise SimulatorError("the simulator is already started")
        self._preflight()
        self._started = True
        now = self.clock.now()
        for unit in self._units.values():
            self._heap_push(now + timedelta(seconds=self._jitter.uniform(0.0, min(self._spread_s, unit.interval_s))), unit)
        # Faults in force from the start apply before anything connects (a hard offline never does).
        for transition in self._faults.due(now):
            self._apply(transition, now)
        for unit in self._units.values():
            if not unit.powered_off:
                self._connect(unit)
        self._thread = threading.Thread(target=self._run, name="sim-scheduler", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + connect_timeout
        expected = sum(1 for u in self._units.values() if not u.powered_off)
        while time.monotonic() < deadline:
            with self._lock:
                connected, refusal = len(self._connected), self._refusal
            if connected >= expected or (refusal is not None and connected == 0):
                break
            time.sleep(0.02)
        with self._lock:
            connected, refusal = len(self._connected), self._refusal
        if connected == 0 and expected > 0:
            self.stop(timeout=1.0)
            why = f"refused: {refusal}" if refusal else f"no device connected within {connect_timeout:g} s"
            raise SimulatorError(f"the MQTT broker at {self.broker.url} {why}")
        level = logging.INFO if connected >= expected else logging.WARNING
        log.log(level, "connected %d/%d devices to %s", connected, len(self._units), self.broker.url)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop publishing, mark every device offline (retained) and disconnect."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        now = self.clock.now()
        pending: list[mqtt.MQTTMessageInfo] = []
        for unit in self._units.values():
            if unit.client is not None and unit.connected:
                offline = unit.model.status(now, online=False).to_json()
                pending.append(unit.client.publish(unit.status_topic, offline, qos=1, retain=True))
        deadline = time.monotonic() + timeout
        for info in pending:
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        clients: list[mqtt.Client] = []
        for unit in self._units.values():
            client, unit.client = unit.client, None
            unit.generation += 1  # callbacks of this client are ignored from now on
            unit.connected = unit.announced = False
            if client is not None:
                client.disconnect()
                clients.append(client)
        for client in clients:  # each network thread ends on its own once disconnected
            client.loop_stop()
        with self._lock:
            self._connected.clear()

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, injection: Injection) -> None:
        """Schedule one more injection while running (thread-safe); bad ones raise at once."""
        self._check(injection)
        self._injected.put(injection)
        self._wake.set()

    def wake(self) -> None:
        """Ask the scheduler to look at the clock now (after moving a ManualClock, say)."""
        self._wake.set()

    def stats(self) -> SimStats:
        with self._lock:
            return SimStats(
                devices=len(self._units),
                connected=len(self._connected),
                silent=sum(1 for u in self._units.values() if u.silent),
                telemetry_sent=self._telemetry_sent,
                status_sent=self._status_sent,
                skipped=self._skipped,
            )

    # ------------------------------------------------------------ connections (paho threads)

    def _connect(self, unit: _Unit) -> None:
        unit.generation += 1
        generation = unit.generation
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unit.client_id, protocol=mqtt.MQTTv311, clean_session=True)
        credentials = self._credentials_for(unit)
        if credentials is not None:
            client.username_pw_set(credentials[0], credentials[1])
        if self.broker.tls:
            client.tls_set()
        client.will_set(unit.status_topic, Status(online=False).to_json(), qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = lambda c, u, flags, rc, props: self._on_connect(unit, generation, rc)
        client.on_disconnect = lambda c, u, flags, rc, props: self._on_disconnect(unit, generation, rc)
        unit.client = client
        unit.connected = False
        unit.announced = False
        try:
            client.connect_async(self.broker.host, self.broker.port, keepalive=self._keepalive)
        except (OSError, ValueError) as exc:  # connect_async only records; be safe anyway
            log.warning("%s: cannot connect: %s", unit.client_id, exc)
        client.loop_start()

    def _on_connect(self, unit: _Unit, generation: int, reason: ReasonCode) -> None:
        if generation != unit.generation:
            return
        if reason.is_failure:
            with self._lock:
                first = self._refusal is None
                self._refusal = str(reason)
            if first:
                log.warning("the broker refused %s: %s", unit.client_id, reason)
            return
        unit.connected = True
        with self._lock:
            self._connected.add(unit.key)
            back = self._outage and len(self._connected) == sum(1 for u in self._units.values() if not u.powered_off)
            if back:
                self._outage = False
        if back:
            log.info("every device is connected again to %s", self.broker.url)
        self._notices.put(("connected", unit.key, generation))
        self._wake.set()

    def _on_disconnect(self, unit: _Unit, generation: int, reason: ReasonCode) -> None:
        if generation != unit.generation:
            return
        was_connected, unit.connected = unit.connected, False
        with self._lock:
            self._connected.discard(unit.key)
            first = was_connected and not self._outage and not self._stopping.is_set()
            if first:
                self._outage = True
        if first:
            log.warning("lost the connection to %s (%s: %s); reconnecting", self.broker.url, unit.client_id, reason)
        self._notices.put(("disconnected", unit.key, generation))
        self._wake.set()

    def _power_off(self, unit: _Unit) -> None:
        """Drop the device's connection without DISCONNECT, so the broker publishes its last will."""
        client, unit.client = unit.client, None
        unit.generation += 1
        unit.connected = unit.announced = False
        with self._lock:
            self._connected.discard(unit.key)
        if client is None:
            return

        def cut() -> None:
            client.loop_stop()  # first, so paho does not reconnect
            sock = client.socket()
            if isinstance(sock, socket.socket):  # plain TCP or TLS (ssl.SSLSocket is a socket.socket)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

        threading.Thread(target=cut, name=f"sim-cut-{unit.device.id}", daemon=True).start()

    # ------------------------------------------------------------ the scheduler thread

    def _heap_push(self, due: datetime, unit: _Unit) -> None:
        heapq.heappush(self._heap, (due, next(self._order), unit.key))

    def _run(self) -> None:
        last_report = self.clock.now()
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                now = self.clock.now()
                self._drain(now)
                for transition in self._faults.due(now):
                    self._apply(transition, now)
                while self._heap and self._heap[0][0] <= now and not self._stopping.is_set():
                    due, _, key = heapq.heappop(self._heap)
                    self._tick(self._units[key], due, now)
                if (now - last_report).total_seconds() >= self._report_every_s:
                    self._report(now, last_report)
                    last_report = now
                wait = self._max_wait()
                upcoming = [t for t in (self._heap[0][0] if self._heap else None, self._faults.next_at()) if t is not None]
                if upcoming:
                    wait = min(wait, max(0.0, (min(upcoming) - self.clock.now()).total_seconds() / self._time_scale))
            except Exception:  # the simulator keeps running whatever one device does
                log.exception("simulator scheduler error")
                wait = self._max_wait()
            self._wake.wait(wait)

    def _max_wait(self) -> float:
        return 0.25

    def _drain(self, now: datetime) -> None:
        while True:
            try:
                injection = self._injected.get_nowait()
            except queue.Empty:
                break
            self._faults.add(injection)
        while True:
            try:
                notice, key, generation = self._notices.get_nowait()
            except queue.Empty:
                break
            unit = self._units[key]
            if generation != unit.generation:
                continue
            if notice == "connected" and unit.connected:
                unit.announced = False
                if not unit.silent:
                    self._publish_status(unit, now)
            elif notice == "disconnected":
                unit.announced = False

    def _publish_status(self, unit: _Unit, now: datetime) -> None:
        client = unit.client
        if client is None:
            return
        status = unit.model.status(now, unit.status_interval_s)
        info = client.publish(unit.status_topic, status.to_json(), qos=1, retain=True)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            unit.announced = True
            with self._lock:
                self._status_sent += 1

    def _tick(self, unit: _Unit, due: datetime, now: datetime) -> None:
        period = timedelta(seconds=unit.interval_s)
        if unit.silent:
            self._heap_push(max(due + period, now), unit)
            return
        client = unit.client
        if client is None or not unit.connected or not unit.announced:
            # Not connected (yet): try again soon, so the first telemetry follows the connection.
            with self._lock:
                self._skipped += 1
            self._heap_push(now + min(period, timedelta(seconds=0.5)), unit)
            return
        sent = 0
        for message in unit.model.messages(now):
            info = client.publish(unit.telemetry_topic, message.to_json(), qos=1)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                sent += 1
        with self._lock:
            self._telemetry_sent += sent
        following = due + period
        self._heap_push(following if following > now else now + period, unit)

    def _apply(self, transition: Transition, now: datetime) -> None:
        injection = transition.injection
        unit = self._units[self._check(injection)]
        verb = "starts" if transition.starting else "ends"
        log.info("injection %s: %s %s", verb, "offline_hard" if injection.hard else injection.fault, unit.device.id)
        if injection.fault is Fault.OFFLINE:
            if transition.starting:
                unit.offline.append(injection)
            elif injection in unit.offline:
                unit.offline.remove(injection)
            unit.silent = bool(unit.offline)
            hard = any(i.hard for i in unit.offline)
            if hard and not unit.powered_off:
                unit.powered_off = True
                self._power_off(unit)
            elif unit.powered_off and not hard:  # power is back: the device boots again
                unit.powered_off = False
                unit.model.reboot()
                self._connect(unit)
            elif not unit.silent and unit.connected:  # awake again on the same connection
                self._publish_status(unit, now)
        else:
            unit.model.set_fault(injection.fault, transition.starting, now)

    def _report(self, now: datetime, since: datetime) -> None:
        stats = self.stats()
        sent = stats.telemetry_sent - self._reported_sent
        self._reported_sent = stats.telemetry_sent
        seconds = (now - since).total_seconds()
        log.info(
            "%d telemetry messages in %.0f s; %d/%d devices connected%s",
            sent, seconds, stats.connected, stats.devices, f", {stats.silent} silent" if stats.silent else "",
        )
