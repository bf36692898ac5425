"""Fault injection, pure: what goes wrong with which device, when, and for how long.

An :class:`Injection` names a device, a :class:`Fault`, the moment it starts and optionally how
long it lasts. A :class:`FaultSchedule` turns a set of injections into start/end
:class:`Transition` s as time passes; the runtime applies them (a lamp failure to the device
model, an offline to the device's connection). Nothing here does I/O or reads a clock.

Command-line form, parsed by :func:`parse_injection` (see :data:`INJECT_GRAMMAR`)::

    FAULT:[SITE:]DEVICE[@+DELAY][/DURATION]
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from linli.site import Device, Site, parse_duration


class Fault(StrEnum):
    LAMP_FAILURE = "lamp_failure"  # streetlight driver open circuit: relay closed, supply present, no light
    OFFLINE = "offline"  # the device goes silent (hard: its connection drops and the broker fires its last will)


# Which kinds of device each fault applies to.
FAULT_KINDS: dict[Fault, tuple[str, ...]] = {
    Fault.LAMP_FAILURE: ("streetlight",),
    Fault.OFFLINE: ("streetlight", "elevator", "charger"),
}

# Command-line names: offline_hard is the offline fault with hard=True.
_CLI_FAULTS: dict[str, tuple[Fault, bool]] = {
    "lamp_failure": (Fault.LAMP_FAILURE, False),
    "offline": (Fault.OFFLINE, False),
    "offline_hard": (Fault.OFFLINE, True),
}

INJECT_GRAMMAR = """\
--inject FAULT:[SITE:]DEVICE[@+DELAY][/DURATION]   (repeatable)
  FAULT     lamp_failure  a streetlight's driver fails open: relay closed, voltage present, ~0 W
            offline       the device stops publishing (its connection stays up)
            offline_hard  the device loses power: its connection drops, the broker publishes
                          its last will {"online": false}; it reboots when the fault ends
  SITE      needed only when several sites have a device of that id
  DELAY     when it starts, after the simulator starts (default: at once)
  DURATION  how long it lasts (default: until the simulator stops)
  DELAY and DURATION: a number of seconds or 90s, 5m, 2h, 1d
  examples: lamp_failure:SL-07   offline:SL-12@+60s   offline_hard:EL-2A@+2m/10m"""

_SPEC = re.compile(
    r"^(?P<fault>[a-z_]+):(?:(?P<site>[a-z0-9-]{1,32}):)?(?P<device>[A-Za-z0-9_-]{1,32})"
    r"(?:@\+?(?P<delay>[^/@]+))?(?:/(?P<duration>[^/@]+))?$"
)


class InjectionError(ValueError):
    """An injection that cannot be used; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class Injection:
    device_id: str
    fault: Fault
    at: datetime
    duration: timedelta | None = None
    hard: bool = False  # offline only: drop the connection so the broker fires the last will
    site: str | None = None  # needed only when several simulated sites share the device id

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise InjectionError("an injection's start time must be timezone-aware")
        if self.duration is not None and self.duration <= timedelta(0):
            raise InjectionError(f"{self.fault}:{self.device_id}: the duration must be positive")
        if self.hard and self.fault is not Fault.OFFLINE:
            raise InjectionError(f"{self.fault}:{self.device_id}: only an offline fault can be hard")

    @property
    def until(self) -> datetime | None:
        return None if self.duration is None else self.at + self.duration

    def active_at(self, now: datetime) -> bool:
        return self.at <= now and (self.until is None or now < self.until)

    def __str__(self) -> str:
        name = "offline_hard" if self.hard else str(self.fault)
        where = f"{self.site}:{self.device_id}" if self.site else self.device_id
        text = f"{name}:{where} at {self.at.isoformat(timespec='seconds')}"
        return text + (f" for {self.duration}" if self.duration is not None else "")


def parse_delay(text: str) -> timedelta:
    """A number of seconds (``90``, ``0.5``) or ``90s``, ``5m``, ``2h``, ``1d``; ValueError otherwise."""
    if re.fullmatch(r"\s*\d+(\.\d+)?\s*", text):
        return timedelta(seconds=float(text))
    return parse_duration(text)


def parse_injection(text: str, *, start: datetime) -> Injection:
    """``lamp_failure:SL-07``, ``offline:SL-12@+60s``, ``offline_hard:wanmei:EL-2A@+2m/10m``."""
    match = _SPEC.match(text.strip())
    if match is None:
        raise InjectionError(f"--inject {text!r}: expected FAULT:[SITE:]DEVICE[@+DELAY][/DURATION], e.g. lamp_failure:SL-07")
    if match["fault"] not in _CLI_FAULTS:
        raise InjectionError(f"--inject {text!r}: unknown fault {match['fault']!r} (known: {', '.join(_CLI_FAULTS)})")
    fault, hard = _CLI_FAULTS[match["fault"]]
    try:
        delay = parse_delay(match["delay"]) if match["delay"] else timedelta(0)
        duration = parse_delay(match["duration"]) if match["duration"] else None
    except ValueError as exc:
        raise InjectionError(f"--inject {text!r}: {exc}") from None
    if duration is not None and duration <= timedelta(0):
        raise InjectionError(f"--inject {text!r}: the duration must be positive")
    return Injection(match["device"], fault, start + delay, duration, hard, match["site"])


def resolve(
    injection: Injection, sites: Sequence[Site], simulated: Iterable[tuple[str, str]] | None = None
) -> tuple[Site, Device]:
    """The site and device an injection targets; :class:`InjectionError` when unknown or unsuitable.

    ``simulated`` (pairs of site id and device id) restricts the devices that can be targeted,
    e.g. after a ``--device`` filter.
    """
    label = f"{injection.fault}:{injection.device_id}"
    candidates = [s for s in sites if (injection.site is None or s.id == injection.site) and injection.device_id in s.devices]
    if not candidates:
        where = f"site {injection.site!r}" if injection.site else "any simulated site"
        raise InjectionError(f"{label}: no device {injection.device_id!r} in {where}")
    if len(candidates) > 1:
        ids = ", ".join(s.id for s in candidates)
        raise InjectionError(f"{label}: device {injection.device_id!r} is in several sites ({ids}); write FAULT:SITE:DEVICE")
    site = candidates[0]
    device = site.devices[injection.device_id]
    if simulated is not None and (site.id, device.id) not in set(simulated):
        raise InjectionError(f"{label}: device {device.id!r} is not simulated (left out by --device)")
    if device.kind not in FAULT_KINDS[injection.fault]:
        kinds = " or ".join(FAULT_KINDS[injection.fault])
        raise InjectionError(f"{label}: {injection.fault} applies to a {kinds} only; {device.id} is {_a(device.kind)}")
    return site, device


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


@dataclass(frozen=True, slots=True)
class Transition:
    """An injection starting (``starting`` true) or ending at ``at``."""

    injection: Injection
    starting: bool
    at: datetime


class FaultSchedule:
    """Injections in time order; :meth:`due` hands out their starts and ends as time passes."""

    def __init__(self, injections: Iterable[Injection] = ()) -> None:
        self._heap: list[tuple[datetime, int, Transition]] = []
        self._order = itertools.count()
        for injection in injections:
            self.add(injection)

    def add(self, injection: Injection) -> None:
        heapq.heappush(self._heap, (injection.at, next(self._order), Transition(injection, True, injection.at)))
        if injection.until is not None:
            until = injection.until
            heapq.heappush(self._heap, (until, next(self._order), Transition(injection, False, until)))

    def next_at(self) -> datetime | None:
        return self._heap[0][0] if self._heap else None

    def due(self, now: datetime) -> list[Transition]:
        """Every start and end at or before ``now`` not handed out yet, in time order."""
        out: list[Transition] = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def __len__(self) -> int:
        return len(self._heap)
