"""Clocks: every detector, SLA timer and verifier asks one of these for the time.

Tests move a :class:`ManualClock` instead of sleeping; accelerated demos use a
:class:`ScaledClock` shared by the simulator and the gateway.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(tz=UTC)


class ManualClock:
    """A clock that only moves when told to; thread-safe so a test can drive a running gateway."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment.astimezone(UTC)


class ScaledClock:
    """Simulated time running `speed` times faster than the wall clock from `start`."""

    def __init__(self, start: datetime, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._start = start.astimezone(UTC)
        self._speed = speed
        self._wall_start = time.monotonic()

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._wall_start) * self._speed
        return self._start + timedelta(seconds=elapsed)


# The simulator announces its clock here (retained) so the whole system runs on it
# (device contract, "Simulated time").
CLOCK_TOPIC = "linli/v1/clock"
# A follower of a driven clock (``--speed max``) says here, QoS 0, up to which simulated time it has
# handled what it received: {"sim_ms": ...}. A simulator told to wait for it stays within its lead.
CLOCK_REACHED_TOPIC = "linli/v1/clock/reached/{follower}"


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
