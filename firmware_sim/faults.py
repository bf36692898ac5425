"""Fault injection, pure: what goes wrong with which device, when, and for how long.

An :class:`Injection` names a device, a :class:`Fault`, the moment it starts and optionally how
long it lasts. A :class:`FaultSchedule` turns a set of injections into start/end
:class:`Transition` s as time passes; the runtime applies them (a physical cause to the device
model through ``model.set_fault``, an offline to the device's connection). Nothing here does I/O
or reads a clock.

Every fault of the fault catalog (``linli.catalog.FAULTS``, except the derived ``intermittent``)
is injectable. An injection is a PHYSICAL CAUSE, never a written detector threshold: the model
changes the device's physics so that its telemetry shows what the catalog's rule reads (see
:data:`CAUSES` and ``firmware_sim/models.py``).

Targets: a device id, or a group: ``circuit:ID`` (every light of the circuit), ``building:ID``
(every elevator of the building), ``concentrator:ID`` (every child of the concentrator).
A group injection is EXPANDED to one injection per device (:func:`expand`); each keeps the
group in :attr:`Injection.group`, so the runtime and the ground truth can treat the group as one
fault (one circuit outage, one building power loss, one concentrator down) while each device
model shows its part of it. ``circuit_outage``, ``building_power_loss`` and
``concentrator_offline`` need their group target.

Command-line form, parsed by :func:`parse_injection` (see :data:`INJECT_GRAMMAR`)::

    FAULT:[SITE:]TARGET[@+DELAY][/DURATION]     TARGET = DEVICE | circuit:ID | building:ID | concentrator:ID
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from linli.site import Device, Site, parse_duration


class Fault(StrEnum):
    """An injectable fault; its value is the fault-catalog code it makes the gateway detect."""

    # streetlight
    LAMP_FAILURE = "lamp_failure"
    LAMP_POWER_HIGH = "lamp_power_high"
    LAMP_POWER_LOW = "lamp_power_low"
    DAY_BURNING = "day_burning"
    CYCLING = "cycling"
    SUPPLY_VOLTAGE_HIGH = "supply_voltage_high"
    SUPPLY_VOLTAGE_LOW = "supply_voltage_low"
    POWER_FACTOR_LOW = "power_factor_low"
    LEAKAGE = "leakage"
    CIRCUIT_OUTAGE = "circuit_outage"
    CONCENTRATOR_OFFLINE = "concentrator_offline"
    END_OF_LIFE = "end_of_life"
    ENERGY_ANOMALY = "energy_anomaly"
    # elevator
    TRAPPED = "trapped"
    STOPPED_OUTSIDE_ZONE = "stopped_outside_zone"
    DOOR_OPEN_MOVING = "door_open_moving"
    OVERSPEED = "overspeed"
    OVERTRAVEL = "overtravel"
    SAFETY_CIRCUIT_OPEN = "safety_circuit_open"
    DOOR_FAULT = "door_fault"
    POWER_LOSS = "power_loss"
    BUILDING_POWER_LOSS = "building_power_loss"
    OUT_OF_SERVICE = "out_of_service"
    # charger
    GROUND_FAILURE = "ground_failure"
    POWER_SWITCH_FAILURE = "power_switch_failure"
    HIGH_TEMPERATURE = "high_temperature"
    OVER_CURRENT = "over_current"
    OVER_VOLTAGE = "over_voltage"
    UNDER_VOLTAGE = "under_voltage"
    FAULTED = "faulted"
    CHARGING_NO_CURRENT = "charging_no_current"
    STUCK_SESSION = "stuck_session"
    METER_FAILURE = "meter_failure"
    READER_FAILURE = "reader_failure"
    EV_COMM_ERRORS = "ev_comm_errors"
    # every kind (the runtime silences the device; hard: it drops the connection -> last will)
    OFFLINE = "offline"


_SL, _EL, _CP = ("streetlight",), ("elevator",), ("charger",)
_ANY = ("streetlight", "elevator", "charger")

# Which kinds of device each fault applies to.
FAULT_KINDS: dict[Fault, tuple[str, ...]] = {
    **{f: _SL for f in (
        Fault.LAMP_FAILURE, Fault.LAMP_POWER_HIGH, Fault.LAMP_POWER_LOW, Fault.DAY_BURNING, Fault.CYCLING,
        Fault.SUPPLY_VOLTAGE_HIGH, Fault.SUPPLY_VOLTAGE_LOW, Fault.POWER_FACTOR_LOW, Fault.LEAKAGE,
        Fault.CIRCUIT_OUTAGE, Fault.END_OF_LIFE, Fault.ENERGY_ANOMALY,
    )},
    **{f: _EL for f in (
        Fault.TRAPPED, Fault.STOPPED_OUTSIDE_ZONE, Fault.DOOR_OPEN_MOVING, Fault.OVERSPEED, Fault.OVERTRAVEL,
        Fault.SAFETY_CIRCUIT_OPEN, Fault.DOOR_FAULT, Fault.POWER_LOSS, Fault.BUILDING_POWER_LOSS, Fault.OUT_OF_SERVICE,
    )},
    **{f: _CP for f in (
        Fault.GROUND_FAILURE, Fault.POWER_SWITCH_FAILURE, Fault.HIGH_TEMPERATURE, Fault.OVER_CURRENT,
        Fault.OVER_VOLTAGE, Fault.UNDER_VOLTAGE, Fault.FAULTED, Fault.CHARGING_NO_CURRENT, Fault.STUCK_SESSION,
        Fault.METER_FAILURE, Fault.READER_FAILURE, Fault.EV_COMM_ERRORS,
    )},
    Fault.CONCENTRATOR_OFFLINE: _ANY,
    Fault.OFFLINE: _ANY,
}

# The physical cause each injection simulates (also the CLI's help text).
CAUSES: dict[str, str] = {
    "lamp_failure": "the LED driver fails open: relay closed, supply present, ~0 W",
    "lamp_power_high": "the driver's current regulation drifts high: +25 % of rated power",
    "lamp_power_low": "the driver's current regulation drifts low: -25 % of rated power",
    "day_burning": "the relay (or photocell) sticks closed: the lamp stays lit by day",
    "cycling": "the driver's thermal protection trips: dark ~50 s, lit ~100 s, by itself",
    "supply_voltage_high": "a wrong transformer tap: the supply sits ~19 V high (>235 V)",
    "supply_voltage_low": "a long, loaded feeder: the supply sits ~37 V low (<198 V)",
    "power_factor_low": "the driver's PFC capacitor fails: pf ~0.65 at full power",
    "leakage": "the insulation decays: leakage rises ~2.5 mA/min through 10 mA to ~48 mA",
    "circuit_outage": "the circuit's contactor drops out / its breaker trips: lights and controllers lose power",
    "concentrator_offline": "the cabinet concentrator dies: its children lose their uplink",
    "end_of_life": "the lamp has aged past its rated life: burn_hours beyond rated_life_h",
    "energy_anomaly": "a failing driver wastes ~13 % of rated power all night (+~20 % energy)",
    "trapped": "a drive trip mid-run with a passenger: stopped between floors, doors closed, alarm held",
    "stopped_outside_zone": "a drive trip mid-run with the car empty: stopped between floors",
    "door_open_moving": "a bridged door contact: the car door drifts open while the car travels",
    "overspeed": "a governor/brake fault: the car runs at ~125 % of rated speed",
    "overtravel": "a worn brake: the car overshoots the end landing (floor out of range, event overtravel)",
    "safety_circuit_open": "a safety-chain contact opens: the car parks at a landing, safety_circuit false",
    "door_fault": "a worn door operator: the door re-opens again and again, then sticks open",
    "power_loss": "the elevator's mains supply is lost (a rescue device levels the car)",
    "building_power_loss": "the building's supply is lost: every elevator of the building loses mains",
    "out_of_service": "a technician switches the car to out-of-service/inspection outside a maintenance window",
    "ground_failure": "an earth fault in the cable or the car: Faulted/GroundFailure",
    "power_switch_failure": "a welded contactor: Faulted/PowerSwitchFailure, the connector may stay live",
    "high_temperature": "the cooling fan fails: temp_c climbs past 75 C, then HighTemperature",
    "over_current": "a car's on-board charger overdraws: OverCurrentFailure episodes every ~15 min",
    "over_voltage": "grid swells: OverVoltage episodes every ~15 min",
    "under_voltage": "grid sags under load: UnderVoltage episodes every ~15 min",
    "faulted": "the pile's controller fails: Faulted/InternalError",
    "charging_no_current": "a car stops drawing while the session stays Charging",
    "stuck_session": "the connector lock jams: the connector stays Preparing/Finishing",
    "meter_failure": "the energy meter stops answering: PowerMeterFailure, the meter reading freezes",
    "reader_failure": "the RFID reader dies: ReaderFailure, nobody can start a session",
    "ev_comm_errors": "cars fail the EV handshake: EVCommunicationError in session after session",
    "offline": "the device stops publishing (its connection stays up)",
    "offline_hard": "the device loses power: its connection drops, the broker publishes its last will",
}

# Faults that need a group target (the group is the fault's subject).
GROUP_FAULTS: dict[Fault, str] = {
    Fault.CIRCUIT_OUTAGE: "circuit",
    Fault.BUILDING_POWER_LOSS: "building",
    Fault.CONCENTRATOR_OFFLINE: "concentrator",
}
GROUP_KINDS = ("circuit", "building", "concentrator")

# Command-line names: offline_hard is the offline fault with hard=True.
_CLI_FAULTS: dict[str, tuple[Fault, bool]] = {f.value: (f, False) for f in Fault} | {"offline_hard": (Fault.OFFLINE, True)}
INJECTABLE: tuple[str, ...] = tuple(_CLI_FAULTS)


def fault_named(name: str) -> tuple[Fault, bool]:
    """(fault, hard) of a command-line/scenario fault name; KeyError when unknown."""
    return _CLI_FAULTS[name]


def _grammar() -> str:
    lines = [
        "--inject FAULT:[SITE:]TARGET[@+DELAY][/DURATION]   (repeatable)",
        "  TARGET    a device id, or circuit:ID (every light of it), building:ID (every elevator of it),",
        "            concentrator:ID (every child of it)",
        "  FAULT     a fault-catalog code; the simulator injects its physical cause:",
    ]
    lines.extend(f"    {name:<21} {cause}" for name, cause in CAUSES.items())
    lines.extend([
        "  SITE      needed only when several sites have a device of that id",
        "  DELAY     when it starts, after the simulator starts (default: at once)",
        "  DURATION  how long it lasts (default: until the simulator stops)",
        "  DELAY and DURATION: a number of seconds or 90s, 5m, 2h, 1d",
        "  examples: lamp_failure:SL-07   offline:SL-12@+60s   offline_hard:EL-2A@+2m/10m",
        "            circuit_outage:circuit:C2@+1m/20m   building_power_loss:building:B1/10m",
    ])
    return "\n".join(lines)


INJECT_GRAMMAR = _grammar()

_SPEC = re.compile(
    r"^(?P<fault>[a-z_]+):(?P<target>[A-Za-z0-9_:-]+?)"
    r"(?:@\+?(?P<delay>[^/@]+))?(?:/(?P<duration>[^/@]+))?$"
)
_SITE = re.compile(r"^[a-z0-9-]{1,32}$")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class InjectionError(ValueError):
    """An injection that cannot be used; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class Injection:
    device_id: str  # a device id; for a group injection not yet expanded, the group target ("circuit:C2")
    fault: Fault
    at: datetime
    duration: timedelta | None = None
    hard: bool = False  # offline only: drop the connection so the broker fires the last will
    site: str | None = None  # needed only when several simulated sites share the device id
    group: str | None = None  # "circuit:C2", "building:B1", "concentrator:CON-1" when the target was a group
    recorded: bool = True  # False: staging (a baseline's silent devices), not in the ground truth

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

    @property
    def name(self) -> str:
        """The fault's command-line name (``offline_hard`` for a hard offline)."""
        return "offline_hard" if self.hard else str(self.fault)

    @property
    def is_group(self) -> bool:
        """A group injection not yet expanded to its devices."""
        return self.group is not None and self.device_id == self.group

    def active_at(self, now: datetime) -> bool:
        return self.at <= now and (self.until is None or now < self.until)

    def __str__(self) -> str:
        where = f"{self.site}:{self.device_id}" if self.site else self.device_id
        if self.group and not self.is_group:
            where += f" ({self.group})"
        text = f"{self.name}:{where} at {self.at.isoformat(timespec='seconds')}"
        return text + (f" for {self.duration}" if self.duration is not None else "")


def parse_delay(text: str) -> timedelta:
    """A number of seconds (``90``, ``0.5``) or ``90s``, ``5m``, ``2h``, ``1d``; ValueError otherwise."""
    if re.fullmatch(r"\s*\d+(\.\d+)?\s*", text):
        return timedelta(seconds=float(text))
    return parse_duration(text)


def split_target(text: str) -> tuple[str | None, str, str | None]:
    """``[SITE:]DEVICE`` or ``[SITE:]GROUP:ID`` -> (site, device id or group target, group or None).

    A group keyword (circuit, building, concentrator) wins over a site of that name.
    ValueError when the text is not a target.
    """
    parts = text.split(":")
    site: str | None = None
    if len(parts) == 3 or (len(parts) == 2 and parts[0] not in GROUP_KINDS):
        site, parts = parts[0], parts[1:]
        if not _SITE.match(site):
            raise ValueError(f"{site!r} is not a site id")
    if len(parts) == 2 and parts[0] in GROUP_KINDS and _ID.match(parts[1]):
        target = f"{parts[0]}:{parts[1]}"
        return site, target, target
    if len(parts) == 1 and _ID.match(parts[0]):
        return site, parts[0], None
    raise ValueError(f"{text!r} is not a device id or circuit:ID, building:ID, concentrator:ID")


def make_injection(
    name: str, target: str, at: datetime, duration: timedelta | None = None, *, label: str | None = None
) -> Injection:
    """An injection from a fault name (``offline_hard`` too) and a target text; InjectionError when bad."""
    label = label or f"{name}:{target}"
    if name not in _CLI_FAULTS:
        raise InjectionError(f"{label}: unknown fault {name!r} (known: {', '.join(INJECTABLE)})")
    fault, hard = _CLI_FAULTS[name]
    try:
        site, device, group = split_target(target)
    except ValueError as exc:
        raise InjectionError(f"{label}: {exc}") from None
    needed = GROUP_FAULTS.get(fault)
    if needed is not None and (group is None or not group.startswith(needed + ":")):
        raise InjectionError(f"{label}: {fault} needs a {needed}:ID target")
    if duration is not None and duration <= timedelta(0):
        raise InjectionError(f"{label}: the duration must be positive")
    return Injection(device, fault, at, duration, hard, site, group)


def parse_injection(text: str, *, start: datetime) -> Injection:
    """``lamp_failure:SL-07``, ``offline:SL-12@+60s``, ``offline_hard:wanmei:EL-2A@+2m/10m``,
    ``circuit_outage:circuit:C2@+1m/20m`` (a group injection: :func:`expand` it against the sites)."""
    match = _SPEC.match(text.strip())
    if match is None:
        raise InjectionError(f"--inject {text!r}: expected FAULT:[SITE:]DEVICE[@+DELAY][/DURATION], e.g. lamp_failure:SL-07")
    if match["fault"] not in _CLI_FAULTS:
        raise InjectionError(f"--inject {text!r}: unknown fault {match['fault']!r} (known: {', '.join(INJECTABLE)})")
    try:
        delay = parse_delay(match["delay"]) if match["delay"] else timedelta(0)
        duration = parse_delay(match["duration"]) if match["duration"] else None
    except ValueError as exc:
        raise InjectionError(f"--inject {text!r}: {exc}") from None
    try:
        split_target(match["target"])
    except ValueError:
        usage = "expected FAULT:[SITE:]TARGET[@+DELAY][/DURATION], e.g. lamp_failure:SL-07"
        raise InjectionError(f"--inject {text!r}: {usage}") from None
    return make_injection(match["fault"], match["target"], start + delay, duration, label=f"--inject {text!r}")


def parse_injections(text: str, *, start: datetime, sites: Sequence[Site]) -> list[Injection]:
    """:func:`parse_injection` then :func:`expand`: one injection per device targeted."""
    return expand(parse_injection(text, start=start), sites)


def group_members(site: Site, group: str) -> list[Device]:
    """The devices (in service) of ``circuit:ID``, ``building:ID`` or ``concentrator:ID`` in one site."""
    kind, _, ident = group.partition(":")
    if kind == "circuit":
        return [d for d in site.devices.values() if d.circuit == ident]
    if kind == "building":
        return [d for d in site.devices.values() if d.kind == "elevator" and d.building == ident]
    return [d for d in site.devices.values() if d.concentrator == ident]


def _group_exists(site: Site, group: str) -> bool:
    kind, _, ident = group.partition(":")
    if kind == "circuit":
        return ident in site.circuits
    if kind == "building":
        return ident in site.buildings
    return any(c.id == ident for c in site.spec.concentrators)


def expand(injection: Injection, sites: Sequence[Site], simulated: Iterable[tuple[str, str]] | None = None) -> list[Injection]:
    """A group injection as one injection per device of the group (each keeping ``group``);
    a device injection as itself. Checked with :func:`resolve`; :class:`InjectionError` when unusable."""
    if not injection.is_group:
        resolve(injection, sites, simulated)
        return [injection]
    assert injection.group is not None
    label = f"{injection.name}:{injection.group}"
    candidates = [s for s in sites if (injection.site is None or s.id == injection.site) and _group_exists(s, injection.group)]
    if not candidates:
        where = f"site {injection.site!r}" if injection.site else "any simulated site"
        kind, _, ident = injection.group.partition(":")
        raise InjectionError(f"{label}: no {kind} {ident!r} in {where}")
    if len(candidates) > 1:
        ids = ", ".join(s.id for s in candidates)
        raise InjectionError(f"{label}: {injection.group} is in several sites ({ids}); write FAULT:SITE:{injection.group}")
    site = candidates[0]
    wanted = None if simulated is None else set(simulated)
    members = [d for d in group_members(site, injection.group) if wanted is None or (site.id, d.id) in wanted]
    members = [d for d in members if d.kind in FAULT_KINDS[injection.fault]]
    if not members:
        raise InjectionError(f"{label}: no simulated device in {injection.group} that can show {injection.fault}")
    return [replace(injection, device_id=d.id, site=injection.site) for d in members]


def expand_all(
    injections: Iterable[Injection], sites: Sequence[Site], simulated: Iterable[tuple[str, str]] | None = None
) -> list[Injection]:
    """Every injection expanded (:func:`expand`), in order."""
    chosen = None if simulated is None else list(simulated)
    return [one for injection in injections for one in expand(injection, sites, chosen)]


def resolve(
    injection: Injection, sites: Sequence[Site], simulated: Iterable[tuple[str, str]] | None = None
) -> tuple[Site, Device]:
    """The site and device an injection targets; :class:`InjectionError` when unknown or unsuitable.

    ``simulated`` (pairs of site id and device id) restricts the devices that can be targeted,
    e.g. after a ``--device`` filter. A group injection must be :func:`expand` ed first.
    """
    label = f"{injection.name}:{injection.device_id}"
    if injection.is_group:
        raise InjectionError(f"{label}: a group target; expand it to its devices first (firmware_sim.faults.expand)")
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
