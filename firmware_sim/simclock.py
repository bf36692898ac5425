"""One simulated clock for the whole system: what the simulator announces, and how to follow it.

An accelerated simulator (``linli sim --speed 60``, ``--start ...``, ``--speed max``) publishes its
clock, retained, on the platform topic :data:`CLOCK_TOPIC` (``linli/v1/clock``)::

    {"start_wall_ms": 1795680000123, "start_sim_ms": 1795687200000, "speed": 60}

meaning: at wall-clock time ``start_wall_ms`` (Unix ms) the simulated time was ``start_sim_ms``,
and it runs ``speed`` times faster than the wall clock. With ``--speed max`` the simulator drives
its clock itself as fast as publishing allows: ``speed`` is ``null`` and ``sim_ms`` carries the
simulated time, republished about every second. The simulator clears the retained message
(empty payload) when it stops.

A gateway (or a test, or a dashboard) follows it with :class:`FollowedClock`, which satisfies
``linli.clock.Clock``: ``FollowedClock.fetch(mqtt_url)`` reads the retained announcement once;
:meth:`FollowedClock.update` applies a later one (for ``--speed max``, subscribe to the topic and
feed every message to ``update``). Pure apart from :meth:`FollowedClock.fetch`.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from linli.clock import from_ms

CLOCK_TOPIC = "linli/v1/clock"


@dataclass(frozen=True, slots=True)
class ClockAnnouncement:
    start_wall_ms: int
    start_sim_ms: int
    speed: float | None  # None: the simulator drives the clock (--speed max); see sim_ms
    sim_ms: int | None = None

    def to_json(self) -> bytes:
        body: dict[str, float | int | None] = {
            "start_wall_ms": self.start_wall_ms, "start_sim_ms": self.start_sim_ms, "speed": self.speed,
        }
        if self.sim_ms is not None:
            body["sim_ms"] = self.sim_ms
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> ClockAnnouncement:
        """ValueError for anything but a well-formed announcement."""
        try:
            body = json.loads(payload)
            speed = body["speed"]
            announcement = cls(
                start_wall_ms=int(body["start_wall_ms"]), start_sim_ms=int(body["start_sim_ms"]),
                speed=None if speed is None else float(speed),
                sim_ms=None if body.get("sim_ms") is None else int(body["sim_ms"]),
            )
        except (TypeError, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a clock announcement: {exc}") from None
        if announcement.speed is not None and not announcement.speed > 0:
            raise ValueError("not a clock announcement: speed must be positive")
        if announcement.speed is None and announcement.sim_ms is None:
            raise ValueError("not a clock announcement: a driven clock needs sim_ms")
        return announcement


class FollowedClock:
    """The simulator's clock as announced on ``linli/v1/clock``; the system clock until told otherwise."""

    def __init__(self, announcement: ClockAnnouncement | None = None, *, wall_ms: Callable[[], float] | None = None) -> None:
        self._wall_ms = wall_ms or (lambda: time.time() * 1000.0)
        self._lock = threading.Lock()
        self._announcement = announcement

    @property
    def announcement(self) -> ClockAnnouncement | None:
        with self._lock:
            return self._announcement

    def update(self, payload: bytes) -> None:
        """Apply a message of the clock topic; an empty one (the simulator stopped) goes back to real time."""
        announcement = ClockAnnouncement.from_json(payload) if payload else None
        with self._lock:
            self._announcement = announcement

    def now(self) -> datetime:
        with self._lock:
            a = self._announcement
        if a is None:
            return datetime.now(tz=UTC)
        if a.speed is None:
            return from_ms(a.sim_ms if a.sim_ms is not None else a.start_sim_ms)
        elapsed_ms = (self._wall_ms() - a.start_wall_ms) * a.speed
        return from_ms(a.start_sim_ms) + timedelta(milliseconds=elapsed_ms)

    @classmethod
    def fetch(
        cls, mqtt_url: str, *, username: str | None = None, password: str | None = None, timeout: float = 5.0
    ) -> FollowedClock:
        """Read the retained announcement once (the system clock when there is none within ``timeout``)."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from firmware_sim.runtime import BrokerConfig

        broker = BrokerConfig.from_url(mqtt_url, username, password)
        got = threading.Event()
        clock = cls()

        def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
            if message.payload:
                clock.update(bytes(message.payload))
            got.set()

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"linli-clock-{secrets.token_hex(4)}")
        if broker.username is not None:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            client.tls_set()
        client.on_connect = lambda c, u, flags, rc, props: c.subscribe(CLOCK_TOPIC, qos=1)
        client.on_message = on_message
        client.connect(broker.host, broker.port)
        client.loop_start()
        try:
            got.wait(timeout)
        finally:
            client.disconnect()
            client.loop_stop()
        return clock
