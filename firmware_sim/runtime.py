"""The simulator's I/O: real MQTT connections for simulated devices, all driven by one thread.

Connections. A device with its own uplink gets its own MQTT connection (client id
``sim-{site}-{device_id}``, its own credentials, last will ``{"online": false}`` retained QoS 1 on
its ``status`` topic). A device whose ``concentrator`` field is set has no uplink: its concentrator
connects (client id ``sim-{site}-concentrator-{id}``, its own credentials, last will on
``estate/v1/{site}/concentrator/{id}/status``) and publishes each child's ``status``, ``telemetry``,
``event`` and ``cmd/ack`` under the child's own topics, a whole batch of children per tick, and
reads the children's ``cmd``. This is how one process simulates a county (``firmware_sim.fleet``).

Firmware behaviour, per connection:

* on every (re)connection: the retained ``status`` (each child's too), a subscription to ``cmd``,
  then the offline buffer replayed in order;
* ``telemetry`` at QoS 1 every ``interval_s`` (the first one right after connecting, first messages
  spread over ~2 s), the model's ``events(now)`` (when the model has it) on ``event``;
* while the broker is away, QoS 1 messages go to a bounded buffer (oldest dropped first and
  counted) and are replayed on reconnection with their original ``ts`` and ``seq``; QoS 1 messages
  in flight when the connection dropped are resent first (paho keeps them across ``reconnect()``);
* reconnection with exponential backoff and jitter (:class:`Backoff`, wall-clock seconds);
* commands (``set_light``, ``set_schedule``, ``set_available``, ``refresh``) acked on ``cmd/ack``
  (QoS 1, ``{id, ts, ok, error}``); a command past its ``expires_ts`` by the device's clock is
  ignored: not executed and not acked. ``clockless`` devices omit ``ts`` everywhere and cannot
  check expiry;
* a model that says it is not ``powered(now)`` (when the model has it), or a hard ``offline``
  injection, drops the connection without DISCONNECT (the broker fires the last will) and reboots
  when power is back (``boot`` + 1, ``seq`` from 0). A concentrator's child that loses power gets
  ``{"online": false}`` published by its concentrator.

Threads. One thread (``sim-loop``) owns everything: a heap of next-due ticks against the injected
clock, the device models and fault transitions, and every paho client, driven through paho's
external-loop API (``loop_read`` / ``loop_write`` / ``loop_misc``) over one ``selectors`` poller:
no thread per connection, no locks on the data path. Other threads talk to it through a queue
and a wake-up socket (``inject``, ``kill_connection``, ``stop``) and read :meth:`Simulator.stats`.

Time. ``clock`` is a ``SystemClock`` (real time), a ``ScaledClock`` (``time_scale`` = its speed,
used only to sleep the right amount) or, with ``drive_clock=True``, a ``ManualClock`` the loop
moves forward itself as fast as publishing allows (``--speed max``: no sleeps; the clock holds
while a connection is down or too many messages await their PUBACK).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import math
import queue
import random
import resource
import secrets
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from pydantic import ValidationError

from firmware_sim.faults import Fault, FaultSchedule, Injection, Transition, expand, resolve
from firmware_sim.models import Sky, StreetlightModel, model_for
from firmware_sim.simclock import CLOCK_TOPIC, ClockAnnouncement
from firmware_sim.truth import GroundTruthWriter
from linli.clock import CLOCK_REACHED_TOPIC, Clock, ManualClock, SystemClock, from_ms, to_ms
from linli.contract import MAX_FUTURE_MS, Channel, Command, CommandAck, Status, topic_for
from linli.mqtt_tls import MqttTls
from linli.site import Concentrator, Device, Site

log = logging.getLogger("firmware_sim")

DeviceKey = tuple[str, str]  # (site id, device id)
# Per-connection MQTT credentials: a mapping from device id, "site/device" or, for a concentrator,
# "site/concentrator/ID", to (username, password); or a callable (site id, name) -> (username,
# password) | None where name is the device id or "concentrator/ID". None: the broker-wide ones.
Credentials = Mapping[str, tuple[str, str | None]] | Callable[[str, str], tuple[str, str | None] | None]

CONCENTRATOR = "concentrator"
_FAR = datetime.max.replace(tzinfo=UTC)


class SimulatorError(Exception):
    """The simulator cannot run as asked (bad broker URL, unreachable broker, refused login, ...)."""


class Payload(Protocol):
    def to_json(self) -> bytes: ...


class SimModel(Protocol):
    """What the runtime needs of a device model (``firmware_sim.models`` or ``firmware_sim.fleet``).

    Optional, looked up with ``getattr``: ``events(now) -> list[Event]``, ``powered(now) -> bool``,
    ``command(action, params, now) -> (ok, error)``.
    """

    seq: int
    boot: int

    def messages(self, now: datetime) -> Sequence[Payload]: ...

    def status(self, now: datetime, interval_s: int | None = None, *, online: bool = True) -> Status: ...

    def reboot(self) -> None: ...

    def set_fault(self, fault: Fault, active: bool, now: datetime) -> None: ...


class ModelFactory(Protocol):
    def __call__(self, site: Site, device: Device, *, start: datetime, seed: int, boot: int, sky: Sky) -> SimModel: ...


def default_model(site: Site, device: Device, *, start: datetime, seed: int, boot: int, sky: Sky) -> SimModel:
    return model_for(site, device, start=start, seed=seed, boot=boot, sky=sky)


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    host: str
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = None
    # mqtts:// only: the CA to verify the broker with (None: the system's), a client certificate and key
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def secure(self, client: mqtt.Client) -> None:
        """TLS on `client` for an mqtts:// broker (verified; with the client certificate when given)."""
        if self.tls:
            MqttTls(self.ca_file, self.cert_file, self.key_file).apply(client)

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


class Backoff:
    """Reconnection delays: exponential from ``min_s``, capped at ``max_s``, with jitter.

    The n-th delay is ``min(max_s, min_s * 2**n)`` scaled by a random factor in
    ``[1 - jitter, 1]`` drawn from the device's own seeded ``rng`` (so devices that lost the
    broker together do not all come back in the same instant). :meth:`reset` after a success.
    """

    def __init__(self, rng: random.Random, min_s: float = 0.5, max_s: float = 30.0, jitter: float = 0.5) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError("backoff needs 0 < min_s <= max_s")
        if not 0 <= jitter < 1:
            raise ValueError("jitter is a fraction in [0, 1)")
        self.rng, self.min_s, self.max_s, self.jitter = rng, min_s, max_s, jitter
        self.attempts = 0

    def base(self, attempt: int) -> float:
        return min(self.max_s, self.min_s * 2.0 ** min(attempt, 60))

    def next_delay(self) -> float:
        base = self.base(self.attempts)
        self.attempts += 1
        return base * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        self.attempts = 0


class OfflineBuffer:
    """The QoS 1 messages a connection holds while the broker is away: bounded, oldest dropped first."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("the buffer limit cannot be negative")
        self.limit = limit
        self.items: deque[tuple[str, bytes]] = deque()
        self.dropped = 0

    def add(self, topic: str, payload: bytes) -> None:
        if self.limit == 0:
            self.dropped += 1
            return
        if len(self.items) >= self.limit:
            self.items.popleft()
            self.dropped += 1
        self.items.append((topic, payload))

    def __len__(self) -> int:
        return len(self.items)

    def take(self) -> list[tuple[str, bytes]]:
        items, self.items = list(self.items), deque()
        return items


@dataclass(frozen=True, slots=True)
class SimStats:
    devices: int
    connected: int  # connections up (a device's own, or a concentrator's)
    silent: int  # offline injections in force (soft and hard)
    telemetry_sent: int
    status_sent: int  # birth statuses (online: true) published, children's included
    skipped: int  # ticks that produced nothing because the device was silent or powered off
    connections: int = 0
    devices_online: int = 0  # devices whose connection is up and that are powered
    buffered: int = 0  # messages waiting in offline buffers now
    buffered_total: int = 0  # messages ever put in an offline buffer
    buffer_dropped: int = 0  # oldest buffered messages dropped because a buffer was full
    replayed: int = 0  # buffered messages published after a reconnection
    events_sent: int = 0
    commands_acked: int = 0  # acks published (ok or not)
    commands_expired: int = 0  # commands ignored because past expires_ts
    reconnects: int = 0  # successful reconnections (not the first connection)
    unacked: int = 0  # QoS 1 messages published and not PUBACKed yet
    sim_now: datetime | None = None


class _Dev:
    """One simulated device: its model, topics and power state (loop-thread state)."""

    __slots__ = ("ack_topic", "cmd_topic", "conn", "device", "event_topic", "hard_off", "key", "model", "offline",
                 "override", "silent", "site", "status_topic", "telemetry_topic", "unpowered")

    def __init__(self, site: Site, device: Device, model: SimModel) -> None:
        self.site = site
        self.device = device
        self.model = model
        self.key: DeviceKey = (site.id, device.id)
        self.status_topic = topic_for(site.id, device.kind, device.id, Channel.STATUS)
        self.telemetry_topic = topic_for(site.id, device.kind, device.id, Channel.TELEMETRY)
        self.event_topic = topic_for(site.id, device.kind, device.id, Channel.EVENT)
        self.cmd_topic = topic_for(site.id, device.kind, device.id, Channel.CMD)
        self.ack_topic = topic_for(site.id, device.kind, device.id, Channel.CMD_ACK)
        self.conn: _Conn | None = None
        self.offline: list[Injection] = []  # offline injections in force
        self.silent = False  # an offline injection is in force: publishes nothing
        self.hard_off = False  # a hard offline injection: no power
        self.unpowered = False  # the model says it has no power (model.powered(now) is False)
        self.override: dict[str, Any] = {}  # runtime-side commanded state (see _fallback_command)

    @property
    def off(self) -> bool:
        return self.hard_off or self.unpowered


class _Conn:
    """One MQTT connection: a device with its own uplink, or a concentrator and its children."""

    def __init__(self, site: Site, name: str, client_id: str, devices: list[_Dev], *, interval_s: float,
                 concentrator: Concentrator | None, backoff: Backoff, buffer_limit: int) -> None:
        self.site = site
        self.name = name  # device id, or "concentrator/ID"
        self.client_id = client_id
        self.devices = devices
        self.by_cmd_topic = {d.cmd_topic: d for d in devices}
        self.interval_s = interval_s
        self.status_interval_s = max(1, math.ceil(interval_s - 1e-9))
        self.concentrator = concentrator
        if concentrator is not None:
            self.will_topic = topic_for(site.id, CONCENTRATOR, concentrator.id, Channel.STATUS)
        else:
            self.will_topic = devices[0].status_topic if devices else CLOCK_TOPIC
        self.backoff = backoff
        self.buffer = OfflineBuffer(buffer_limit)
        self.client: mqtt.Client | None = None
        self.sock: Any = None
        self.events = 0  # selector events registered
        self.connected = False  # CONNACK accepted, socket up
        self.announced = False  # statuses published on this connection
        self.fresh = False  # connected in the last read: announce after paho resent its in-flight messages
        self.ever_connected = False
        self.retry_at: float | None = None  # monotonic time of the next connection attempt
        self.refusal: str | None = None
        self.powered = True  # False: the connection itself is cut (a standalone device without power, a killed concentrator)
        self.boot = 1
        self.unacked = 0
        self.tick_due: datetime | None = None

    @property
    def standalone(self) -> _Dev | None:
        return self.devices[0] if self.concentrator is None else None


class Simulator:
    """Simulated devices of one or more sites talking to an MQTT broker.

    ``start()`` connects every device and starts the loop; ``stop()`` publishes
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
        drive_clock: bool = False,
        clockless: bool = False,
        buffer_limit: int = 1000,
        backoff_s: tuple[float, float] = (0.5, 30.0),
        model_factory: ModelFactory | None = None,
        announce_clock: bool = False,
        max_unacked: int = 20_000,
        truth: GroundTruthWriter | None = None,
        run_until: datetime | None = None,
        wait_for: Sequence[str] = (),
        lead_s: float = 30.0,
        staging_until: datetime | None = None,
        staging_lead_s: float = 3600.0,
    ) -> None:
        """
        ``devices``: device ids (or ``site:device``) to simulate, default all. ``interval_s``
        overrides every device's (and concentrator's) telemetry period. ``boot``: the boot counter
        the devices report (default: derived from the wall clock so it grows from run to run).
        ``time_scale``: how many clock seconds pass per wall second (a ``ScaledClock``'s speed),
        used only to sleep the right amount. ``drive_clock``: ``clock`` is a ``ManualClock`` the
        simulator moves itself, as fast as publishing allows. ``buffer_limit``: QoS 1 messages
        kept per device while the broker is away (a concentrator keeps this many per child, at
        most 50,000). ``backoff_s``: (first, longest) reconnection delay. ``announce_clock``:
        publish the clock, retained, on ``linli/v1/clock``. ``report_every_s``: progress log
        period in wall seconds (default 5). ``truth``: records each injection's start and end (a group
        injection once, under its group) for ``linli sim-check``. ``wait_for``: with ``drive_clock``,
        followers of the clock (a gateway's client id) the simulated time never runs more than
        ``lead_s`` ahead of: each says on ``linli/v1/clock/reached/{id}`` how far it has got.
        Raises :class:`SimulatorError` or ``InjectionError`` for bad input.
        """
        if not sites:
            raise SimulatorError("no site to simulate")
        if interval_s is not None and not interval_s > 0:
            raise SimulatorError("the telemetry interval must be positive")
        if drive_clock and not isinstance(clock, ManualClock):
            raise SimulatorError("drive_clock needs a ManualClock")
        if wait_for and not (drive_clock and announce_clock):
            raise SimulatorError("waiting for followers needs a driven, announced clock (--speed max)")
        if not lead_s > 0:
            raise SimulatorError("the lead over the clock's followers must be positive")
        self.broker = broker if isinstance(broker, BrokerConfig) else BrokerConfig.from_url(broker)
        self.clock: Clock = clock or SystemClock()
        self.sites = list(sites)
        self._credentials = credentials
        self._keepalive = keepalive_s
        self._spread_s = first_spread_s
        self._time_scale = time_scale
        self._drive = drive_clock
        self._clockless = clockless
        self._announce_clock = announce_clock
        self._max_unacked = max_unacked
        self._seed = seed
        self._jitter = random.Random(f"{seed}/runtime")
        start = self.clock.now()
        boot_number = boot if boot is not None else int(time.time()) - 1_700_000_000
        selected = self._select(devices)
        injections = list(injections)
        # Staging (baseline days): a device silenced by it from the start to its end is not installed yet: its
        # model starts, and the device ticks, only when the staging ends (15 days of 100 silent models: minutes).
        self._dormant = _dormant(self.sites, injections, selected, start, staging_until)
        self._staging_until = staging_until
        factory = model_factory or default_model
        self._units: dict[DeviceKey, _Dev] = {}
        self._conns: list[_Conn] = []
        for site in self.sites:
            sky = Sky.for_site(site)
            children: dict[str, list[_Dev]] = {}
            for device in site.spec.devices:
                if (site.id, device.id) not in selected:
                    continue
                born = staging_until if staging_until is not None and (site.id, device.id) in self._dormant else start
                unit = _Dev(site, device, factory(site, device, start=born, seed=seed, boot=boot_number, sky=sky))
                self._units[unit.key] = unit
                if device.concentrator is not None:
                    children.setdefault(device.concentrator, []).append(unit)
                else:
                    period = interval_s if interval_s is not None else float(device.interval_s)
                    self._add_conn(site, device.id, f"sim-{site.id}-{device.id}", [unit], period=period, conc=None,
                                   buffer_limit=buffer_limit, backoff_s=backoff_s, boot=boot_number)
            concentrators = {c.id: c for c in site.spec.concentrators}
            for conc_id, units in children.items():
                conc = concentrators[conc_id]
                period = interval_s if interval_s is not None else float(conc.interval_s)
                self._add_conn(site, f"{CONCENTRATOR}/{conc_id}", f"sim-{site.id}-{CONCENTRATOR}-{conc_id}", units,
                               period=period, conc=conc, buffer_limit=min(50_000, buffer_limit * len(units)),
                               backoff_s=backoff_s, boot=boot_number)
        self._truth = truth
        self._run_until = run_until  # with drive_clock: simulated time stops exactly here
        self.reached_end = False
        self._truth_groups: dict[tuple[str, str, str, datetime], int] = {}  # group → members still in force
        self._faults = FaultSchedule()
        for injection in injections:
            for one in self._expand(injection):
                self._faults.add(one)
        self._silent_units: set[_Dev] = set()  # kept by the loop, so stats() stays cheap at 100,000 devices
        self._off_units: set[_Dev] = set()
        self._dead: dict[_Conn, set[Injection]] = {}  # concentrator_offline injections in force, per concentrator
        self._report_every_s = report_every_s if report_every_s is not None else 5.0

        self._heap: list[tuple[datetime, int, _Conn]] = []
        self._order = itertools.count()
        self._requests: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._selector: selectors.BaseSelector | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._writers: set[_Conn] = set()
        self._stopping = threading.Event()
        self._stop_timeout = 5.0
        self._thread: threading.Thread | None = None
        self._progress = threading.Condition()
        self._started = False
        self._done = False
        self._clock_client: mqtt.Client | None = None
        self._clock_conn: _Conn | None = None
        self._clock_start: tuple[int, int] | None = None  # (wall ms, sim ms) at start
        # counters: written by the loop thread only
        self._n_connected = 0
        self._telemetry_sent = 0
        self._status_sent = 0
        self._skipped = 0
        self._events_sent = 0
        self._buffered_total = 0
        self._replayed = 0
        self._acked = 0
        self._expired = 0
        self._reconnects = 0
        self._reported_at = time.monotonic()
        self._reported_sent = 0
        self._misc_at = 0.0
        self._clock_announced_at = 0.0
        # Followers of the driven clock, and the simulated ms each has reported reaching (loop thread).
        self._followers = tuple(dict.fromkeys(wait_for))
        self._lead_ms = int(lead_s * 1000)
        # Before `staging_until` (baseline days: a few lights report, nothing is injected) the followers
        # only need to keep up, not to run their timers finely: a longer lead, far fewer round trips.
        self._staging_until_ms = to_ms(staging_until) if staging_until is not None else None
        # ...but never further ahead than a follower accepts a timestamp: it refuses one more than 5 min past its
        # clock (linli.contract.MAX_FUTURE_MS), and its clock may trail its own report by a thread's hiccup.
        self._staging_lead_ms = int(min(staging_lead_s * 1000, MAX_FUTURE_MS - 60_000))
        self._reached: dict[str, int] = {}
        self._announced_ms: int | None = None  # the simulated time last announced

    def _add_conn(self, site: Site, name: str, client_id: str, units: list[_Dev], *, period: float,
                  conc: Concentrator | None, buffer_limit: int, backoff_s: tuple[float, float], boot: int) -> None:
        rng = random.Random(f"{self._seed}/backoff/{site.id}/{name}")
        conn = _Conn(site, name, client_id, units, interval_s=period, concentrator=conc, backoff=Backoff(rng, *backoff_s),
                     buffer_limit=buffer_limit)
        conn.boot = boot
        for unit in units:
            unit.conn = conn
        self._conns.append(conn)

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

    def _expand(self, injection: Injection) -> list[Injection]:
        """A group injection (circuit:ID, building:ID, concentrator:ID) as one per simulated device."""
        return expand(injection, self.sites, self._units.keys())

    def _check(self, injection: Injection) -> DeviceKey:
        site, device = resolve(injection, self.sites, self._units.keys())
        return (site.id, device.id)

    @property
    def device_keys(self) -> list[DeviceKey]:
        return list(self._units)

    @property
    def connection_ids(self) -> list[str]:
        """Client ids of the simulator's device and concentrator connections."""
        return [c.client_id for c in self._conns]

    def model(self, device_id: str, site_id: str | None = None) -> SimModel:
        """A device's model (read it from the loop's side only: for tests and tools)."""
        for (s, d), unit in self._units.items():
            if d == device_id and (site_id is None or s == site_id):
                return unit.model
        raise KeyError(device_id)

    def _credentials_for(self, conn: _Conn) -> tuple[str, str | None] | None:
        source = self._credentials
        if source is None:
            if self.broker.username is None:
                return None
            return (self.broker.username, self.broker.password)
        if callable(source):
            return source(conn.site.id, conn.name)
        return source.get(f"{conn.site.id}/{conn.name}") or source.get(conn.name)

    def _preflight(self) -> None:
        try:
            with socket.create_connection((self.broker.host, self.broker.port), timeout=5.0):
                pass
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise SimulatorError(f"cannot reach the MQTT broker at {self.broker.url}: {reason}") from None
        wanted = len(self._conns) * 2 + 256
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))

    # ------------------------------------------------------------ lifecycle (any thread)

    def start(self, connect_timeout: float = 10.0) -> None:
        """Connect every device and start publishing; :class:`SimulatorError` when no device gets in."""
        if self._started:
            raise SimulatorError("the simulator is already started")
        self._preflight()
        self._started = True
        self._thread = threading.Thread(target=self._run, name="sim-loop", daemon=True)
        self._thread.start()
        expected = len(self._conns)

        def settled() -> bool:
            up = self._n_connected
            refused = any(c.refusal is not None for c in self._conns)
            due = sum(1 for c in self._conns if c.powered)
            return self._done or up >= due or (refused and up == 0) or (up >= expected)

        self._wait(settled, connect_timeout)
        up = self._n_connected
        due = sum(1 for c in self._conns if c.powered)
        if up == 0 and due > 0:
            refusal = next((c.refusal for c in self._conns if c.refusal), None)
            self.stop(timeout=1.0)
            why = f"refused: {refusal}" if refusal else f"no device connected within {connect_timeout:g} s"
            raise SimulatorError(f"the MQTT broker at {self.broker.url} {why}")
        level = logging.INFO if up >= due else logging.WARNING
        log.log(level, "connected %d/%d connections (%d devices) to %s", up, len(self._conns), len(self._units),
                self.broker.url)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop publishing, mark every device offline (retained) and disconnect."""
        self._stop_timeout = timeout
        self._stopping.set()
        self.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout + 5.0)

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, injection: Injection) -> None:
        """Schedule one more injection while running (thread-safe); bad ones raise at once."""
        for one in self._expand(injection):
            self._requests.put(("inject", one))
        self.wake()

    def kill_connection(self, client_id: str, *, restore_after_s: float | None = None) -> None:
        """Cut a connection hard, without DISCONNECT (the broker fires its last will): a concentrator
        losing power, say. With ``restore_after_s`` it powers up again (reboots) after that many wall seconds."""
        if client_id not in {c.client_id for c in self._conns}:
            raise KeyError(client_id)
        self._requests.put(("kill", (client_id, restore_after_s)))
        self.wake()

    def wake(self) -> None:
        """Ask the loop to look at the clock now (after moving a ManualClock, say)."""
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def wait_until(self, predicate: Callable[[SimStats], bool], timeout: float) -> bool:
        """Block until ``predicate(stats())`` holds after a loop pass, or ``timeout`` wall seconds pass."""
        return self._wait(lambda: predicate(self.stats()), timeout)

    def _wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._progress:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._done:
                    return predicate()
                self._progress.wait(min(remaining, 0.2))
        return True

    def stats(self) -> SimStats:
        conns = list(self._conns)
        return SimStats(
            devices=len(self._units),
            connected=self._n_connected,
            silent=len(self._silent_units),
            telemetry_sent=self._telemetry_sent,
            status_sent=self._status_sent,
            skipped=self._skipped,
            connections=len(conns),
            devices_online=sum(len(c.devices) for c in conns if c.connected)
            - sum(1 for u in list(self._off_units) if u.conn is not None and u.conn.connected),
            buffered=sum(len(c.buffer) for c in conns),
            buffered_total=self._buffered_total,
            buffer_dropped=sum(c.buffer.dropped for c in conns),
            replayed=self._replayed,
            events_sent=self._events_sent,
            commands_acked=self._acked,
            commands_expired=self._expired,
            reconnects=self._reconnects,
            unacked=sum(c.unacked for c in conns),
            sim_now=self.clock.now(),
        )

    # ------------------------------------------------------------ paho callbacks (loop thread)

    def _new_client(self, conn: _Conn) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=conn.client_id, protocol=mqtt.MQTTv311,
                             clean_session=True, userdata=conn)
        credentials = self._credentials_for(conn)
        if credentials is not None:
            client.username_pw_set(credentials[0], credentials[1])
        self.broker.secure(client)
        client.will_set(conn.will_topic, Status(online=False).to_json(), qos=1, retain=True)
        client.max_inflight_messages_set(1000)
        client.connect_timeout = 3.0
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        self._on_our_poller(client)
        return client

    def _on_our_poller(self, client: mqtt.Client) -> None:
        """Every connection's socket joins the one poller thread instead of a paho thread of its own."""
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        client.connect_async(self.broker.host, self.broker.port, keepalive=self._keepalive)

    def _on_socket_open(self, client: mqtt.Client, conn: _Conn, sock: Any) -> None:
        if conn.client is not client or self._selector is None:
            return
        conn.sock = sock
        conn.events = selectors.EVENT_READ
        self._selector.register(sock, selectors.EVENT_READ, conn)

    def _on_socket_close(self, client: mqtt.Client, conn: _Conn, sock: Any) -> None:
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
        if conn.sock is sock:
            conn.sock = None
            conn.events = 0
        self._writers.discard(conn)

    def _on_register_write(self, client: mqtt.Client, conn: _Conn, sock: Any) -> None:
        if conn.client is client:
            self._writers.add(conn)

    def _on_unregister_write(self, client: mqtt.Client, conn: _Conn, sock: Any) -> None:
        if conn.client is client and conn.sock is sock and conn.events & selectors.EVENT_WRITE and self._selector:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.modify(sock, selectors.EVENT_READ, conn)
                conn.events = selectors.EVENT_READ

    def _on_connect(self, client: mqtt.Client, conn: _Conn, flags: Any, reason: Any, props: Any) -> None:
        if conn.client is not client:
            return
        if reason.is_failure:
            if conn.refusal is None:
                log.warning("the broker refused %s: %s", conn.client_id, reason)
            conn.refusal = str(reason)
            return
        conn.refusal = None
        conn.connected = True
        conn.fresh = True  # announced after this read, once paho has resent what was in flight
        conn.backoff.reset()
        if conn.ever_connected:
            self._reconnects += 1
        conn.ever_connected = True
        self._n_connected += 1
        if self._n_connected == len(self._conns) and conn.ever_connected and self._reconnects:
            log.info("every connection is up again to %s", self.broker.url)

    def _on_disconnect(self, client: mqtt.Client, conn: _Conn, flags: Any, reason: Any, props: Any) -> None:
        if conn.client is not client:
            return
        if conn.connected:
            conn.connected = False
            self._n_connected -= 1
            if not self._stopping.is_set() and self._n_connected == len(self._conns) - 1:
                log.warning("lost the connection to %s (%s: %s); reconnecting", self.broker.url, conn.client_id, reason)
        conn.announced = conn.fresh = False
        if not self._stopping.is_set() and conn.powered:
            conn.retry_at = time.monotonic() + conn.backoff.next_delay()

    def _on_publish(self, client: mqtt.Client, conn: _Conn, mid: int, reason: Any, props: Any) -> None:
        if conn.client is client and conn.unacked > 0:
            conn.unacked -= 1

    def _on_message(self, client: mqtt.Client, conn: _Conn, message: mqtt.MQTTMessage) -> None:
        if conn.client is not client:
            return
        unit = conn.by_cmd_topic.get(message.topic)
        if unit is None or unit.off:
            return
        try:
            self._command(unit, bytes(message.payload))
        except Exception:  # one bad command never stops the simulator
            log.exception("%s: handling a command failed", unit.device.id)

    # ------------------------------------------------------------ the loop thread

    def _run(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            now = self.clock.now()
            for conn in self._conns:
                first = min(self._spread_s, conn.interval_s)
                begins = now
                if self._staging_until is not None and all(u.key in self._dormant for u in conn.devices):
                    begins = max(now, self._staging_until)  # installed when the staging ends
                self._push(begins + timedelta(seconds=self._jitter.uniform(0.0, first)), conn)
            # Faults in force from the start apply before anything connects (a hard offline never does).
            for transition in self._faults.due(now):
                self._apply(transition, now)
            if self._announce_clock:
                self._clock_start = (int(time.time() * 1000), to_ms(now))
                self._open_clock_client()
            for conn in self._conns:
                if conn.powered:
                    conn.client = self._new_client(conn)
                    conn.retry_at = time.monotonic()
            self._connect_due(time.monotonic(), limit=None)
            notified = 0.0
            while not self._stopping.is_set():
                try:
                    self._pass()
                except Exception:  # the simulator keeps running whatever one device does
                    log.exception("simulator loop error")
                    time.sleep(0.05)
                if time.monotonic() - notified >= 0.02:  # waiters re-check at most 50 times a second
                    notified = time.monotonic()
                    with self._progress:
                        self._progress.notify_all()
            self._shutdown(self._stop_timeout)
        except Exception:
            log.exception("simulator loop failed")
        finally:
            self._done = True
            with contextlib.suppress(Exception):
                self._selector.close()
            self._wake_r.close()
            self._wake_w.close()
            with self._progress:
                self._progress.notify_all()

    def _pass(self) -> None:
        self._drain_requests()
        now = self.clock.now()
        self._run_due(now)
        if self._drive:
            self._drive_clock()
        wall = time.monotonic()
        self._connect_due(wall, limit=200)
        if wall - self._misc_at >= 1.0:
            self._misc_at = wall
            self._misc(wall)
        self._flush()
        self._poll(self._timeout())
        self._after_reads()
        self._flush()
        if time.monotonic() - self._reported_at >= self._report_every_s:
            self._report()

    def _timeout(self) -> float:
        if self._requests.qsize() or self._writers:
            return 0.0
        wait = 0.25
        upcoming = [t for t in (self._heap[0][0] if self._heap else None, self._faults.next_at()) if t is not None]
        if upcoming:
            if self._drive:
                return 0.0 if self._can_advance() and not self._held_by_followers() else 0.02
            wait = min(wait, max(0.0, (min(upcoming) - self.clock.now()).total_seconds() / self._time_scale))
        retries = [c.retry_at for c in self._conns if c.retry_at is not None]
        if retries:
            wait = min(wait, max(0.0, min(retries) - time.monotonic()))
        return wait

    def _poll(self, timeout: float) -> None:
        assert self._selector is not None
        for key, mask in self._selector.select(timeout):
            conn = key.data
            if conn is None:
                with contextlib.suppress(OSError):
                    while self._wake_r.recv(4096):
                        pass
                continue
            client = conn.client
            if client is None:
                continue
            if mask & selectors.EVENT_READ:
                client.loop_read()
            if mask & selectors.EVENT_WRITE and conn.client is client:
                client.loop_write()
                self._watch_write(conn)

    def _flush(self) -> None:
        while self._writers:
            conn = self._writers.pop()
            client = conn.client
            if client is None or conn.sock is None:
                continue
            client.loop_write()
            self._watch_write(conn)

    def _watch_write(self, conn: _Conn) -> None:
        client, sock = conn.client, conn.sock
        if client is None or sock is None or self._selector is None:
            return
        wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.want_write() else 0)
        if wanted != conn.events:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.modify(sock, wanted, conn)
                conn.events = wanted

    def _misc(self, wall: float) -> None:
        for conn in self._conns:
            if conn.client is not None and conn.sock is not None:
                conn.client.loop_misc()
        if self._clock_client is not None and self._clock_conn is not None:
            if self._clock_conn.sock is not None:
                self._clock_client.loop_misc()
            if self._drive and self._clock_conn.connected and wall - self._clock_announced_at >= 1.0 and \
                    not (self._followers and any(c.unacked for c in self._conns)):  # see _announce_if_moved
                self._publish_clock()

    def _connect_due(self, wall: float, limit: int | None) -> None:
        done = 0
        for conn in [*self._conns, *([self._clock_conn] if self._clock_conn else [])]:
            if conn.retry_at is None or conn.retry_at > wall or conn.client is None:
                continue
            conn.retry_at = None
            try:
                conn.client.reconnect()
            except (OSError, ValueError) as exc:
                if conn.refusal is None and not conn.ever_connected and not conn.backoff.attempts:
                    log.debug("%s: cannot connect: %s", conn.client_id, exc)
                conn.retry_at = time.monotonic() + conn.backoff.next_delay()
            done += 1
            if limit is not None and done >= limit:
                break

    def _after_reads(self) -> None:
        now = None
        for conn in self._conns:
            if conn.fresh and conn.connected and conn.client is not None:
                conn.fresh = False
                now = now or self.clock.now()
                self._announce(conn, now)
        if self._clock_conn is not None and self._clock_conn.fresh:
            self._clock_conn.fresh = False
            self._publish_clock()

    def _announce(self, conn: _Conn, now: datetime) -> None:
        """On a new connection: statuses, the cmd subscriptions, then the offline buffer in order."""
        client = conn.client
        assert client is not None
        if conn.concentrator is not None:
            own = Status(online=True, ts=None if self._clockless else to_ms(now), fw="1.4.0", model="CC-500",
                         interval_s=conn.status_interval_s, boot=conn.boot)
            self._raw_publish(conn, conn.will_topic, own.to_json(), retain=True)
        for unit in conn.devices:
            if unit.off:
                if conn.concentrator is not None:
                    self._raw_publish(conn, unit.status_topic, self._offline_status(unit, now), retain=True)
                continue
            if not unit.silent:
                self._publish_status(unit, now)
        topics = [(u.cmd_topic, 1) for u in conn.devices]
        for start in range(0, len(topics), 500):
            client.subscribe(topics[start:start + 500])
        conn.announced = True
        backlog = conn.buffer.take()
        for topic, payload in backlog:
            self._raw_publish(conn, topic, payload)
        self._replayed += len(backlog)

    def _raw_publish(self, conn: _Conn, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> bool:
        client = conn.client
        if client is None:
            return False
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            if qos:
                conn.unacked += 1  # NO_CONN: paho keeps a QoS 1 message and sends it on reconnection
            return True
        return False

    def _send(self, unit: _Dev, topic: str, payload: bytes) -> None:
        """A QoS 1 message of a device: published now, or buffered while the broker is away."""
        conn = unit.conn
        assert conn is not None
        if conn.connected and conn.announced and self._raw_publish(conn, topic, payload):
            return
        conn.buffer.add(topic, payload)
        self._buffered_total += 1

    def _encode(self, body: Payload) -> bytes:
        data = body.to_json()
        if self._clockless:
            document = json.loads(data)
            document.pop("ts", None)
            data = json.dumps(document, separators=(",", ":")).encode()
        return data

    def _offline_status(self, unit: _Dev, now: datetime) -> bytes:
        return self._encode(unit.model.status(now, online=False))

    def _publish_status(self, unit: _Dev, now: datetime) -> None:
        conn = unit.conn
        assert conn is not None
        status = unit.model.status(now, conn.status_interval_s)
        if self._raw_publish(conn, unit.status_topic, self._encode(status), retain=True):
            self._status_sent += 1

    # -- the clock announcement (a platform connection, not a device's)

    def _open_clock_client(self) -> None:
        site = self.sites[0]
        conn = _Conn(site, "clock", f"sim-clock-{secrets.token_hex(4)}", [], interval_s=1.0, concentrator=None,
                     backoff=Backoff(random.Random(f"{self._seed}/clock")), buffer_limit=0)
        conn.will_topic = CLOCK_TOPIC
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=conn.client_id, protocol=mqtt.MQTTv311,
                             clean_session=True, userdata=conn)
        if self.broker.username is not None:
            client.username_pw_set(self.broker.username, self.broker.password)
        self.broker.secure(client)
        client.on_connect = self._on_clock_connect
        client.on_message = self._on_reached
        client.on_disconnect = self._on_clock_disconnect
        self._on_our_poller(client)
        conn.client = client
        conn.retry_at = time.monotonic()
        self._clock_client, self._clock_conn = client, conn

    def _on_clock_connect(self, client: mqtt.Client, conn: _Conn, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            conn.connected = conn.fresh = True
            conn.backoff.reset()
            if self._followers:
                client.subscribe([(CLOCK_REACHED_TOPIC.format(follower=f), 0) for f in self._followers])

    def _on_reached(self, client: mqtt.Client, conn: _Conn, message: mqtt.MQTTMessage) -> None:
        """A follower's report of the simulated time it has reached (loop thread)."""
        follower = message.topic.rsplit("/", 1)[-1]
        if follower not in self._followers:
            return
        try:
            sim_ms = int(json.loads(message.payload)["sim_ms"])
        except (ValueError, TypeError, KeyError):
            log.warning("ignored a bad clock report of %s: %r", follower, bytes(message.payload[:80]))
            return
        self._reached[follower] = max(sim_ms, self._reached.get(follower, sim_ms))

    def _follower_limit_ms(self) -> int | None:
        """How far the driven clock may go: the slowest follower's report + the lead (None: no followers).
        Until every follower has reported, it may not leave the announced time."""
        if not self._followers:
            return None
        reached = [self._reached.get(f) for f in self._followers]
        if any(r is None for r in reached):
            return self._announced_ms if self._announced_ms is not None else to_ms(self.clock.now())
        slowest = min(r for r in reached if r is not None)
        if self._staging_until_ms is not None and slowest < self._staging_until_ms:
            return min(slowest + self._staging_lead_ms, self._staging_until_ms)
        return slowest + self._lead_ms

    def _current_lead_ms(self) -> int:
        staging = self._staging_until_ms is not None and to_ms(self.clock.now()) < self._staging_until_ms
        return self._staging_lead_ms if staging else self._lead_ms

    def _announce_every_ms(self) -> int:
        """Half the lead, and never more than half the future a follower accepts: it judges a message's ``ts``
        against the time last announced and refuses one more than 5 min ahead (``linli.contract.MAX_FUTURE_MS``),
        which a 1 h staging lead announced every 30 min would do to most of the baseline days' telemetry."""
        return min(self._current_lead_ms() // 2, MAX_FUTURE_MS // 2)

    def _held_by_followers(self) -> bool:
        limit = self._follower_limit_ms()
        if limit is None:
            return False
        upcoming = [t for t in (self._heap[0][0] if self._heap else None, self._faults.next_at()) if t is not None]
        if not upcoming:
            return False
        if self._run_until is not None and min(upcoming) > self._run_until:  # the end: until they have reached it
            return any(self._reached.get(f, -1) < to_ms(self._run_until) for f in self._followers)
        return to_ms(min(upcoming)) > limit and to_ms(self.clock.now()) >= limit

    def _on_clock_disconnect(self, client: mqtt.Client, conn: _Conn, flags: Any, reason: Any, props: Any) -> None:
        conn.connected = False
        if not self._stopping.is_set():
            conn.retry_at = time.monotonic() + conn.backoff.next_delay()

    def clock_announcement(self) -> ClockAnnouncement | None:
        if self._clock_start is None:
            return None
        wall_ms, sim_ms = self._clock_start
        if self._drive:
            return ClockAnnouncement(wall_ms, sim_ms, None, to_ms(self.clock.now()))
        return ClockAnnouncement(wall_ms, sim_ms, self._time_scale)

    def _publish_clock(self, payload: bytes | None = None) -> None:
        announcement = self.clock_announcement()
        if self._clock_client is None or announcement is None:
            return
        self._clock_client.publish(CLOCK_TOPIC, announcement.to_json() if payload is None else payload, qos=1, retain=True)
        self._clock_announced_at = time.monotonic()
        self._announced_ms = announcement.sim_ms

    # -- requests from other threads

    def _drain_requests(self) -> None:
        while True:
            try:
                what, arg = self._requests.get_nowait()
            except queue.Empty:
                return
            if what == "inject":
                self._faults.add(arg)
            elif what == "kill":
                client_id, restore = arg
                conn = next(c for c in self._conns if c.client_id == client_id)
                self._cut(conn)
                if restore is not None:
                    threading.Timer(restore, lambda c=client_id: self._requests.put(("restore", c))).start()
            elif what == "restore":
                conn = next(c for c in self._conns if c.client_id == arg)
                blocked = self._dead.get(conn) or (conn.concentrator is None and conn.devices[0].off)
                if not conn.powered and not blocked:
                    self._power_on(conn)

    # -- ticks

    def _push(self, due: datetime, conn: _Conn) -> None:
        conn.tick_due = due
        heapq.heappush(self._heap, (due, next(self._order), conn))

    def _run_due(self, now: datetime) -> None:
        for transition in self._faults.due(now):
            self._apply(transition, now)
        while self._heap and self._heap[0][0] <= now and not self._stopping.is_set():
            due, _, conn = heapq.heappop(self._heap)
            self._tick(conn, due, now)

    def _can_advance(self) -> bool:
        if self._writers:
            return False
        if any(c.powered and not c.connected for c in self._conns):
            return False  # the clock holds while a connection is down: nothing could be published
        return sum(c.unacked for c in self._conns) < self._max_unacked

    def _drive_clock(self) -> None:
        """``--speed max``: move the ManualClock to the next due moment(s), a batch at a time."""
        clock = self.clock
        assert isinstance(clock, ManualClock)
        budget = 2000  # messages per pass before the loop looks at its sockets again
        while budget > 0 and self._can_advance() and not self._stopping.is_set() and self._requests.qsize() == 0:
            upcoming = [t for t in (self._heap[0][0] if self._heap else None, self._faults.next_at()) if t is not None]
            if not upcoming:
                return
            target = min(upcoming)
            if self._run_until is not None and target > self._run_until:
                clock.set(max(clock.now(), self._run_until))
                if not self._followers_reached(to_ms(self._run_until)):
                    return  # the end is theirs too: they handle the last minute before the devices stop
                self.reached_end = True
                return
            limit = self._follower_limit_ms()
            if limit is not None and to_ms(target) > limit:
                if from_ms(limit) > clock.now():
                    clock.set(from_ms(limit))  # nothing is due before: time passes up to the limit
                self._announce_if_moved()  # they learn how far we are, handle it, report: we go on
                return
            if target > clock.now():
                clock.set(target)
            if limit is not None and self._announced_ms is not None and \
                    to_ms(clock.now()) - self._announced_ms >= self._announce_every_ms():
                self._announce_if_moved()  # half the lead: they work on it while we run ahead
            before = self._telemetry_sent
            self._run_due(clock.now())
            budget -= max(1, self._telemetry_sent - before)
            self._flush()

    def _followers_reached(self, sim_ms: int) -> bool:
        if not self._followers:
            return True
        if all(self._reached.get(f, -1) >= sim_ms for f in self._followers):
            return True
        self._announce_if_moved()
        return False

    def _announce_if_moved(self) -> None:
        if self._followers and any(c.unacked for c in self._conns):
            # Not before the broker has every message sent so far: a follower gets the clock over another
            # connection than the devices' messages, and a step that overtook them would make the devices
            # look silent there (3 x interval). The broker's PUBACK says it has queued them for the follower.
            return
        if self._clock_conn is not None and self._clock_conn.connected and self._announced_ms != to_ms(self.clock.now()):
            self._publish_clock()
            self._flush()

    def _tick(self, conn: _Conn, due: datetime, now: datetime) -> None:
        period = timedelta(seconds=conn.interval_s)
        following = due + period
        self._push(following if following > now else now + period, conn)
        for unit in conn.devices:
            self._check_power(unit, now)
            if unit.silent or unit.off:
                self._skipped += 1
                continue
            for message in unit.model.messages(now):
                self._send(unit, unit.telemetry_topic, self._encode(message))
                self._telemetry_sent += 1
            events = getattr(unit.model, "events", None)
            if callable(events):
                for event in events(now):
                    self._send(unit, unit.event_topic, self._encode(event))
                    self._events_sent += 1

    def _check_power(self, unit: _Dev, now: datetime) -> None:
        powered = getattr(unit.model, "powered", None)
        if not callable(powered):
            return
        off = not powered(now)
        if off != unit.unpowered:
            was_off = unit.off
            unit.unpowered = off
            if unit.off != was_off:
                self._power_changed(unit, now)

    def _power_changed(self, unit: _Dev, now: datetime) -> None:
        if unit.off:
            self._off_units.add(unit)
        else:
            self._off_units.discard(unit)
        conn = unit.conn
        assert conn is not None
        if conn.concentrator is None:
            if unit.off and conn.powered:
                self._cut(conn)
            elif not unit.off and not conn.powered:
                self._power_on(conn)
            return
        # A child of a concentrator: its concentrator tells the platform.
        if unit.off:
            if conn.connected and conn.announced:
                self._raw_publish(conn, unit.status_topic, self._offline_status(unit, now), retain=True)
        else:
            unit.model.reboot()
            _clear_override(unit)
            if conn.connected and conn.announced and not unit.silent:
                self._publish_status(unit, now)

    def _cut(self, conn: _Conn) -> None:
        """Drop the connection without DISCONNECT, so the broker publishes its last will."""
        client, conn.client = conn.client, None
        conn.powered = False
        conn.retry_at = None
        if conn.connected:
            conn.connected = False
            self._n_connected -= 1
        conn.announced = conn.fresh = False
        conn.buffer.take()  # RAM is lost with the power
        conn.unacked = 0
        self._writers.discard(conn)
        sock, conn.sock, conn.events = conn.sock, None, 0
        if client is None:
            return
        if sock is None:
            sock = client.socket()
        if isinstance(sock, socket.socket):  # plain TCP or TLS (ssl.SSLSocket is a socket.socket)
            if self._selector is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(sock)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _power_on(self, conn: _Conn) -> None:
        """Power is back: the device (or concentrator) boots again and connects."""
        conn.powered = True
        conn.boot += 1
        for unit in conn.devices:
            if conn.concentrator is None or not unit.off:
                unit.model.reboot()
                _clear_override(unit)
        conn.backoff.reset()
        conn.client = self._new_client(conn)
        conn.retry_at = time.monotonic()

    def _record_truth(self, transition: Transition, site: str, now: datetime) -> None:
        """One ground-truth line per injected fault: a circuit outage is one fault, not one per light."""
        injection = transition.injection
        if self._truth is None or not injection.recorded:
            return
        target_type, target_id = injection.group.split(":", 1) if injection.group else ("device", injection.device_id)
        key = (site, injection.group or injection.device_id, injection.name, injection.at)
        members = self._truth_groups.get(key, 0)
        self._truth_groups[key] = members + (1 if transition.starting else -1)
        if transition.starting and members == 0:
            self._truth.injected(site, target_type, target_id, injection.name, now, injection.until)
        elif not transition.starting and members == 1:
            self._truth.cleared(site, target_type, target_id, injection.name, now)
            del self._truth_groups[key]

    def _apply(self, transition: Transition, now: datetime) -> None:
        injection = transition.injection
        unit = self._units[self._check(injection)]
        self._record_truth(transition, unit.site.id, now)
        verb = "starts" if transition.starting else "ends"
        log.info("injection %s: %s %s", verb, "offline_hard" if injection.hard else injection.fault, unit.device.id)
        if injection.fault is Fault.OFFLINE:
            if transition.starting:
                unit.offline.append(injection)
            elif injection in unit.offline:
                unit.offline.remove(injection)
            was_silent, was_off = unit.silent, unit.off
            unit.silent = bool(unit.offline)
            if unit.silent:
                self._silent_units.add(unit)
            else:
                self._silent_units.discard(unit)
            unit.hard_off = any(i.hard for i in unit.offline)
            if unit.off != was_off:
                self._power_changed(unit, now)
            elif was_silent and not unit.silent and not unit.off:  # awake again on the same connection
                conn = unit.conn
                if conn is not None and conn.connected and conn.announced:
                    self._publish_status(unit, now)
        elif injection.fault is Fault.CONCENTRATOR_OFFLINE:
            conn = unit.conn
            assert conn is not None
            if conn.concentrator is None:  # a device with its own uplink: as a hard offline
                unit.hard_off = transition.starting or any(i.hard for i in unit.offline)
                self._power_changed(unit, now)
                return
            dead = self._dead.setdefault(conn, set())
            if transition.starting:
                dead.add(injection)
                if conn.powered:
                    self._cut(conn)
            else:
                dead.discard(injection)
                if not dead and not conn.powered:
                    self._power_on(conn)
        else:
            try:
                unit.model.set_fault(injection.fault, transition.starting, now)
            except ValueError as exc:  # a model that cannot show this fault (yet)
                log.warning("injection %s: %s", injection, exc)
            self._check_power(unit, now)

    # -- commands

    def _command(self, unit: _Dev, payload: bytes) -> None:
        try:
            command = Command.model_validate_json(payload)
        except ValidationError as exc:
            log.warning("%s: ignoring a malformed command: %s", unit.device.id, str(exc).splitlines()[0])
            return
        now = self.clock.now()
        if not self._clockless and command.expires_ts is not None and to_ms(now) > command.expires_ts:
            self._expired += 1
            log.info("%s: ignoring command %s (%s): expired", unit.device.id, command.id, command.action)
            return
        handler = getattr(unit.model, "command", None)
        if command.action == "refresh":
            ok, error = True, None
        elif callable(handler):
            ok, error = handler(command.action, dict(command.params), now)
        else:
            ok, error = _fallback_command(unit, command.action, dict(command.params), now)
        log.info("%s: command %s (%s) %s", unit.device.id, command.id, command.action, "ok" if ok else f"failed: {error}")
        ack = CommandAck(id=command.id, ts=None if self._clockless else to_ms(now), ok=ok, error=None if ok else error)
        self._send(unit, unit.ack_topic, ack.to_json())
        self._acked += 1
        if ok and command.action == "refresh":
            conn = unit.conn
            if conn is not None and conn.connected and conn.announced:
                self._publish_status(unit, now)
            for message in unit.model.messages(now):
                self._send(unit, unit.telemetry_topic, self._encode(message))
                self._telemetry_sent += 1

    # -- stopping

    def _shutdown(self, timeout: float) -> None:
        now = self.clock.now()
        deadline = time.monotonic() + timeout
        for conn in self._conns:
            if conn.client is None or not conn.connected:
                continue
            for unit in conn.devices:
                self._raw_publish(conn, unit.status_topic, self._offline_status(unit, now), retain=True)
            if conn.concentrator is not None:
                offline = Status(online=False, ts=None if self._clockless else to_ms(now)).to_json()
                self._raw_publish(conn, conn.will_topic, offline, retain=True)
        if self._clock_client is not None and self._clock_conn is not None and self._clock_conn.connected:
            self._clock_client.publish(CLOCK_TOPIC, b"", qos=1, retain=True)
        self._flush()
        while time.monotonic() < deadline and any(c.unacked and c.connected for c in self._conns):
            self._poll(0.05)
            self._flush()
        for conn in [*self._conns, *([self._clock_conn] if self._clock_conn else [])]:
            conn.retry_at = None
            if conn.client is not None and conn.sock is not None:
                conn.client.disconnect()
        self._flush()
        while time.monotonic() < deadline and any(c.sock is not None for c in self._conns):
            self._poll(0.05)
            self._flush()
        for conn in [*self._conns, *([self._clock_conn] if self._clock_conn else [])]:
            sock = conn.sock
            if sock is not None:
                if self._selector is not None:
                    with contextlib.suppress(KeyError, ValueError):
                        self._selector.unregister(sock)
                conn.sock, conn.events = None, 0
                with contextlib.suppress(OSError):
                    sock.close()
            if conn.connected:
                conn.connected = False
            conn.client = None
        self._n_connected = 0

    def _report(self) -> None:
        wall = time.monotonic()
        stats = self.stats()
        sent = stats.telemetry_sent + stats.events_sent
        rate = (sent - self._reported_sent) / max(1e-6, wall - self._reported_at)
        self._reported_sent, self._reported_at = sent, wall
        extra = ""
        if stats.buffered or stats.buffer_dropped:
            extra += f", {stats.buffered} buffered ({stats.buffer_dropped} dropped)"
        if stats.silent:
            extra += f", {stats.silent} silent"
        sim = stats.sim_now.isoformat(timespec="seconds") if stats.sim_now else "?"
        log.info(
            "%d/%d connections up, %d/%d devices online, %.0f msg/s, %d sent%s; sim time %s",
            stats.connected, stats.connections, stats.devices_online, stats.devices, rate, sent, extra, sim,
        )


def _dormant(sites: Sequence[Site], injections: Sequence[Injection], selected: set[DeviceKey], start: datetime,
             staging_until: datetime | None) -> set[DeviceKey]:
    """Devices a staging injection (an unrecorded soft offline) keeps silent from ``start`` to ``staging_until``."""
    if staging_until is None:
        return set()
    out: set[DeviceKey] = set()
    for injection in injections:
        if injection.recorded or injection.fault is not Fault.OFFLINE or injection.hard or injection.is_group:
            continue
        until = injection.until
        if injection.at > start or (until is not None and until < staging_until):
            continue
        with contextlib.suppress(ValueError):
            site, device = resolve(injection, sites, selected)
            out.add((site.id, device.id))
    return out


# ---------------------------------------------------------------- commands without a model hook


class _CommandedSky:
    """A streetlight's sky with the relay held where a ``set_light`` command put it."""

    def __init__(self, sky: Sky, relay: bool) -> None:
        self._sky = sky
        self._relay = relay

    def lights_on(self, now: datetime) -> bool:
        return self._relay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sky, name)


def _clear_override(unit: _Dev) -> None:
    """Back to the schedule (after a reboot or a set_schedule): undo what _fallback_command held."""
    model: Any = unit.model
    if "sky" in unit.override:
        model.sky = unit.override["sky"]
    if isinstance(model, StreetlightModel):
        model.__dict__.pop("dim_pct", None)
    unit.override.clear()


def _fallback_command(unit: _Dev, action: str, params: dict[str, Any], now: datetime) -> tuple[bool, str | None]:
    """Commands for models that have no ``command(action, params, now)`` hook (yet).

    ``set_light`` holds a streetlight's relay (and dim level) where commanded until a
    ``set_schedule`` or a reboot; ``set_schedule`` sets new astronomical offsets and returns to
    the schedule; ``set_available`` puts every connector of a charger in ``Unavailable`` (ending a
    session) or back in ``Available``. Elevators take no command.
    """
    model: Any = unit.model
    kind = unit.device.kind
    if kind == "elevator":
        return False, "elevators accept no commands"
    if action == "set_light":
        if kind != "streetlight":
            return False, f"set_light applies to streetlights, not to a {kind}"
        relay, dim = params.get("relay"), params.get("dim_pct")
        if not isinstance(relay, bool):
            return False, "set_light needs relay: true or false"
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int | float) or not 0 <= dim <= 100):
            return False, "dim_pct must be a number from 0 to 100"
        if not isinstance(model, StreetlightModel):
            return False, "this device model cannot switch its light"
        model.advance(now)
        sky = unit.override.get("sky", model.sky)
        unit.override["sky"] = sky
        model.sky = _CommandedSky(sky, relay)  # type: ignore[assignment]  # duck-typed: lights_on is what is read
        if dim is not None:
            level = float(dim)
            model.dim_pct = lambda now: level  # type: ignore[method-assign]
        if relay and not model.relay:
            model.switch_count += 1
        model.relay = relay
        return True, None
    if action == "set_schedule":
        if kind != "streetlight" or not isinstance(model, StreetlightModel):
            return False, f"set_schedule applies to streetlights, not to a {kind}"
        offsets = {k: params.get(k, 0) for k in ("on_offset_min", "off_offset_min")}
        if any(isinstance(v, bool) or not isinstance(v, int) or not -180 <= v <= 180 for v in offsets.values()):
            return False, "on_offset_min and off_offset_min are whole minutes from -180 to 180"
        model.advance(now)
        info = unit.site.spec.site
        _clear_override(unit)
        model.sky = Sky(info.coordinates.latitude, info.coordinates.longitude, info.timezone,
                        offsets["on_offset_min"], offsets["off_offset_min"])
        return True, None
    if action == "set_available":
        if kind != "charger":
            return False, f"set_available applies to chargers, not to a {kind}"
        available = params.get("available")
        if not isinstance(available, bool):
            return False, "set_available needs available: true or false"
        connectors = getattr(model, "connectors", None)
        if connectors is None:
            return False, "this device model has no connectors"
        model.advance(now)
        for conn in connectors:
            if not available:
                conn.status, conn.session_id, conn.until = "Unavailable", None, _FAR
                for name in ("power_kw", "car_kw"):  # whichever the model has: no more charging
                    if hasattr(conn, name):
                        setattr(conn, name, 0.0)
            elif conn.status == "Unavailable":
                conn.status = "Available"
                arrival = getattr(model, "_next_arrival", None)
                conn.until = arrival(now) if callable(arrival) else now + timedelta(hours=1)
        return True, None
    return False, f"unknown action {action!r}"
