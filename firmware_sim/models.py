"""Device models, pure: one class per kind of device, with state advanced by time and no I/O.

``model.telemetry(now)`` integrates the device's state up to ``now`` (:meth:`DeviceModel.advance`)
and returns one contract payload (a ``linli.contract`` model) with ``ts`` and the next ``seq``;
``model.messages(now)`` is what the device publishes per period (one per connector; an empty list
for a rare single-message dropout); ``model.events(now)`` the ``event`` messages the device
detected itself since the last call; ``model.powered(now)`` whether the controller has power at
all (False: it is silent, the runtime publishes nothing and drops its connection). Every model
draws from its own ``random.Random`` seeded from (seed, site, device), so a fixed seed and the
same sequence of calls reproduce a run exactly.

Physics:

* streetlight: relay closed from sunset (+ the site's on-offset) to sunrise (+ off-offset) at the
  site's coordinates; a :class:`DimmingProfile` (default 100 % until 23:00 local, then 50 %); LED
  driver soft start (~5 s ramp, some drivers wait up to ~40 s first); power = rated x dim with
  +-1.5 % noise; supply voltage a slow random walk around 226 V with an evening dip; pf 0.94-0.97
  at full power, ~0.06 lower dimmed; leakage 0.1-1 mA drifting with humidity; lux from the sun's
  elevation and a cloud cover; energy, burn hours and switch count accumulating. A light on a
  SWITCHED circuit has no supply (``powered`` False, silent) outside the schedule; on an
  always-powered circuit it reports relay false and ~0.3 W standby by day.
* elevator: idles at a landing, answers calls (busier 7-9 and 17-20 local), opens (2 s), holds
  (3-8 s) and closes (3 s) its door, travels between the building's landings with a trapezoidal
  speed profile (0.8 m/s2) capped at rated speed; door zone +-0.2 m around a landing.
* charger: OCPP 1.6 sessions per connector arriving by time of day (evening peak), Available ->
  Preparing -> Charging <-> SuspendedEV/SuspendedEVSE -> Finishing -> Available, Preparing
  sometimes timing out to Available; AC piles ~rated power tapering above 90 % state of charge,
  DC piles on a charging curve; a meter that never decreases; temperature following the load.
  Every status change is kept in ``ChargerModel.status_log``; the allowed edges are
  :data:`OCPP_EDGES`.

Faults (:meth:`DeviceModel.set_fault`): every :class:`~firmware_sim.faults.Fault` is a physical
cause (``firmware_sim.faults.CAUSES``) changing the physics above, never a written threshold.
``offline`` is marked on the model only: silence (and the last will of a hard offline) is the
runtime's business, as is the concentrator's own connection for ``concentrator_offline``
(the model marks ``uplink_lost``).

Harmless noise a real device shows, each kept under the rule it must not trip
(``NOISE`` lists them; ``quiet`` runs of the whole site must open no ticket):

* brief supply sags, 2-8 s down to 188-205 V, ~one per light per 6 h: ``supply_voltage_low``
  needs 5 min outside 198-235 V;
* a single telemetry message lost now and then (``messages`` returns [] at most once in a row,
  the seq moves on): ``offline`` needs 3 intervals of silence;
* a door re-opening on its way closed (an obstruction), at most 2 within 60 s: ``door_fault``
  needs 3 within 60 s (or 120 s open);
* slow drivers taking 10-40 s before their soft start: ``lamp_failure`` waits 60 s after the
  relay closes;
* cars left plugged in after they are full (SuspendedEV, up to hours): ``charging_no_current``
  reads Charging only;
* Preparing sessions timing out to Available after 1-3 min: ``stuck_session`` needs 30 min;
* a brief SuspendedEVSE (load management, 2-5 min) in some sessions: not a fault;
* EVCommunicationError in at most one session per pile per 24 h: ``ev_comm_errors`` needs 3.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar
from zoneinfo import ZoneInfo

from astral import Observer
from astral.sun import elevation, sun

from firmware_sim.faults import Fault
from linli.clock import to_ms
from linli.contract import ChargerTelemetry, ElevatorTelemetry, Event, Status, StreetlightTelemetry
from linli.site import Device, Site

__all__ = [
    "NOISE",
    "OCPP_EDGES",
    "AnyModel",
    "ChargerModel",
    "DeviceModel",
    "DimmingProfile",
    "ElevatorModel",
    "Sky",
    "StreetlightModel",
    "build_models",
    "model_for",
]

NOISE: dict[str, str] = {
    "voltage_sag": "2-8 s down to 188-205 V; supply_voltage_low needs 5 min",
    "dropout": "one telemetry message lost, never two in a row; offline needs 3 intervals",
    "door_reopen": "at most 2 re-openings within 60 s; door_fault needs 3 (or 120 s open)",
    "slow_warm_up": "10-40 s before the soft start; lamp_failure waits 60 s after switch-on",
    "idle_plugged_in": "SuspendedEV for up to hours after the car is full; charging_no_current reads Charging only",
    "preparing_timeout": "Preparing for 1-3 min, then Available; stuck_session needs 30 min",
    "load_management": "SuspendedEVSE for 2-5 min in some sessions; not a fault",
    "ev_comm_once": "EVCommunicationError in at most one session per pile per 24 h; ev_comm_errors needs 3",
}

FAR = timedelta(days=3650)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("device models need timezone-aware datetimes")
    return moment.astimezone(UTC)


def _ou(value: float, mean: float, sigma: float, tau_s: float, dt_s: float, *, rng: random.Random) -> float:
    """One exact step of an Ornstein-Uhlenbeck process: wanders around ``mean`` with spread ``sigma``."""
    if dt_s <= 0:
        return value
    decay = math.exp(-dt_s / tau_s)
    return mean + (value - mean) * decay + rng.gauss(0.0, sigma * math.sqrt(1.0 - decay * decay))


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


# ---------------------------------------------------------------- the sky over a site


class Sky:
    """Sunrise, sunset and daylight at one site, cached per local date; shared by its streetlights."""

    def __init__(self, latitude: float, longitude: float, timezone: str, on_offset_min: int = 0, off_offset_min: int = 0) -> None:
        self.tz = ZoneInfo(timezone)
        self._observer = Observer(latitude=latitude, longitude=longitude)
        self._on_offset = timedelta(minutes=on_offset_min)
        self._off_offset = timedelta(minutes=off_offset_min)
        self._days: dict[date, tuple[datetime, datetime] | None] = {}
        self._elevations: dict[datetime, float] = {}

    @classmethod
    def for_site(cls, site: Site) -> Sky:
        info = site.spec.site
        schedule = info.lighting_schedule
        return cls(
            info.coordinates.latitude, info.coordinates.longitude, info.timezone,
            schedule.on_offset_min, schedule.off_offset_min,
        )

    def local(self, now: datetime) -> datetime:
        return now.astimezone(self.tz)

    def sun_times(self, day: date) -> tuple[datetime, datetime] | None:
        """(sunrise, sunset) of a local date, or None on a polar day or night."""
        if day not in self._days:
            try:
                times = sun(self._observer, date=day, tzinfo=self.tz)
                self._days[day] = (times["sunrise"], times["sunset"])
            except ValueError:  # the sun never rises or never sets that day
                self._days[day] = None
            if len(self._days) > 64:
                self._days.pop(next(iter(self._days)))
        return self._days[day]

    def elevation(self, now: datetime) -> float:
        """The sun's elevation in degrees; cached per moment (every light of a site asks at once)."""
        now = _utc(now)
        value = self._elevations.get(now)
        if value is None:
            value = float(elevation(self._observer, now))
            if len(self._elevations) > 256:
                self._elevations.clear()
            self._elevations[now] = value
        return value

    def lights_on(self, now: datetime) -> bool:
        """The astronomical schedule: on from sunset + on-offset until sunrise + off-offset."""
        local = self.local(now)
        times = self.sun_times(local.date())
        if times is None:
            return self.elevation(now) < -0.833
        sunrise, sunset = times
        # After midnight the light belongs to the previous evening's night until this morning's sunrise.
        return local < sunrise + self._off_offset or local >= sunset + self._on_offset

    def daylight_off(self, now: datetime) -> bool:
        """The sun is up and it is 30 min past sunrise + off-offset (the catalog's day-burning window)."""
        local = self.local(now)
        times = self.sun_times(local.date())
        if times is None:
            return self.elevation(now) > 0
        sunrise, sunset = times
        return sunrise + self._off_offset + timedelta(minutes=30) <= local < sunset + self._on_offset

    def lux(self, now: datetime, rng: random.Random, cloud: float | None = None) -> float:
        """Ambient illuminance at a luminaire's sensor (shaded by its own housing at night).

        ``cloud``: cloud cover 0 (clear) to 1 (overcast); drawn per sample when not given.
        """
        height = self.elevation(now)
        clear = 1.0 - 0.75 * (cloud if cloud is not None else rng.uniform(0.0, 0.9))
        if height > 0:
            value = 400.0 + 90_000.0 * math.sin(math.radians(height)) * clear
        elif height > -6:  # civil twilight: roughly 3 lx at -6 degrees to 400 lx at sunrise
            value = 3.0 * 10 ** ((height + 6.0) / 6.0 * 2.12) * (0.5 + 0.5 * clear)
        else:
            value = rng.uniform(0.5, 3.0)
        return round(value * rng.uniform(0.97, 1.03), 1)


# ---------------------------------------------------------------- the common part


T = TypeVar("T", StreetlightTelemetry, ElevatorTelemetry, ChargerTelemetry)


class DeviceModel(ABC, Generic[T]):
    """State of one device, advanced by time; builds its contract payloads (``T``)."""

    kind: ClassVar[str]
    model_name: str  # a class attribute, or set per instance when it depends on the device
    fw: ClassVar[str]
    supported_faults: ClassVar[frozenset[Fault]] = frozenset({Fault.OFFLINE, Fault.CONCENTRATOR_OFFLINE})
    DROPOUT_P: ClassVar[float] = 0.002  # a single lost telemetry message (noise)

    def __init__(self, site: Site, device: Device, *, start: datetime, seed: int = 0, boot: int = 1) -> None:
        if device.kind != self.kind:
            raise ValueError(f"{device.id} is a {device.kind}, not a {self.kind}")
        self.site_id = site.id
        self.device = device
        self.tz = ZoneInfo(site.spec.site.timezone)
        self.rng = random.Random(f"{seed}/{site.id}/{device.id}")
        self._noise = random.Random(f"{seed}/{site.id}/{device.id}/noise")  # dropouts: not to disturb the physics
        self.seq = 0  # the next message's seq; shared by telemetry and events
        self.boot = boot
        self.faults: set[Fault] = set()
        self.fault_since: dict[Fault, datetime] = {}
        self.now = _utc(start)  # the state describes this moment
        self._pending_events: list[tuple[datetime, str, dict[str, Any] | None]] = []
        self._dropped_last = False

    @property
    def device_id(self) -> str:
        return self.device.id

    @property
    def uplink_lost(self) -> bool:
        """The device's concentrator is down (its own controller may be fine)."""
        return Fault.CONCENTRATOR_OFFLINE in self.faults

    def powered(self, now: datetime) -> bool:
        """Whether the device's controller has power at ``now`` (False: silent, no connection)."""
        self.advance(now)
        return True

    def advance(self, now: datetime) -> None:
        """Integrate the state up to ``now``; a ``now`` in the past changes nothing."""
        now = _utc(now)
        if now > self.now:
            self._advance(self.now, now)
            self.now = now

    def telemetry(self, now: datetime) -> T:
        """The device's measurement at ``now`` (advancing its state first); uses one ``seq``."""
        self.advance(now)
        return self._sample(self.now, self.next_seq())

    def messages(self, now: datetime) -> list[T]:
        """Every telemetry message the device publishes per period (one per connector for chargers);
        now and then (noise) none: one message lost, never two periods in a row."""
        out = self._messages(now)
        if not self._dropped_last and self._noise.random() < self.DROPOUT_P:
            self._dropped_last = True
            return []
        self._dropped_last = False
        return out

    def _messages(self, now: datetime) -> list[T]:
        return [self.telemetry(now)]

    def events(self, now: datetime) -> list[Event]:
        """Events the device detected itself up to ``now`` (each once), with their own ``ts``."""
        self.advance(now)
        due = sorted((e for e in self._pending_events if e[0] <= self.now), key=lambda e: e[0])
        self._pending_events = [e for e in self._pending_events if e[0] > self.now]
        return [Event(ts=to_ms(at), seq=self.next_seq(), code=code, detail=detail) for at, code, detail in due]

    def _event(self, at: datetime, code: str, detail: dict[str, Any] | None = None) -> None:
        self._pending_events.append((at, code, detail))

    def next_seq(self) -> int:
        seq = self.seq
        self.seq += 1
        return seq

    def status(self, now: datetime, interval_s: int | None = None, *, online: bool = True) -> Status:
        if not online:
            return Status(online=False, ts=to_ms(_utc(now)))
        interval = interval_s if interval_s is not None else self.device.interval_s
        return Status(online=True, ts=to_ms(_utc(now)), fw=self.fw, model=self.model_name, interval_s=interval, boot=self.boot)

    def reboot(self) -> None:
        """A restart: the boot counter moves on and ``seq`` starts again at 0."""
        self.boot += 1
        self.seq = 0

    def active(self, fault: Fault) -> bool:
        return fault in self.faults

    def set_fault(self, fault: Fault, active: bool, now: datetime) -> None:
        """Start or end a fault's physical cause (state is advanced to ``now`` first)."""
        if fault not in self.supported_faults:
            raise ValueError(f"a {self.kind} model cannot show {fault}")
        self.advance(now)
        at = self.now
        if active and fault not in self.faults:
            self.faults.add(fault)
            self.fault_since[fault] = at
            self._fault_started(fault, at)
        elif not active and fault in self.faults:
            self.faults.discard(fault)
            self.fault_since.pop(fault, None)
            self._fault_ended(fault, at)

    def _fault_started(self, fault: Fault, at: datetime) -> None:
        """A fault's cause begins (the state is at ``at``)."""

    def _fault_ended(self, fault: Fault, at: datetime) -> None:
        """A fault's cause is removed (the state is at ``at``)."""

    @abstractmethod
    def _advance(self, start: datetime, end: datetime) -> None: ...

    @abstractmethod
    def _sample(self, now: datetime, seq: int) -> T: ...


# ---------------------------------------------------------------- streetlight


@dataclass(frozen=True, slots=True)
class DimmingProfile:
    """Dim level through the night: ``full_pct`` from dusk until ``night_from`` local, then ``night_pct``."""

    full_pct: float = 100.0
    night_from: time = time(23, 0)
    night_pct: float = 50.0

    def pct(self, local: datetime) -> float:
        moment, noon = local.time(), time(12, 0)
        # A night level from after midnight when night_from is in the morning.
        full = noon <= moment < self.night_from if self.night_from >= noon else moment >= noon or moment < self.night_from
        return self.full_pct if full else self.night_pct


class StreetlightModel(DeviceModel[StreetlightTelemetry]):
    kind = "streetlight"
    model_name = "LC-200"
    fw = "2.3.1"
    supported_faults = DeviceModel.supported_faults | frozenset({
        Fault.LAMP_FAILURE, Fault.LAMP_POWER_HIGH, Fault.LAMP_POWER_LOW, Fault.DAY_BURNING, Fault.CYCLING,
        Fault.SUPPLY_VOLTAGE_HIGH, Fault.SUPPLY_VOLTAGE_LOW, Fault.POWER_FACTOR_LOW, Fault.LEAKAGE,
        Fault.CIRCUIT_OUTAGE, Fault.END_OF_LIFE, Fault.ENERGY_ANOMALY,
    })

    STANDBY_W = 0.3
    MAX_STEP_S = 60.0  # switching is resolved to this step when advancing over long spans
    SOFT_START_S = 5.0  # LED driver soft start
    BOOT_S = 20.0  # a controller getting its supply back boots before it closes its relay
    NOMINAL_V = 226.0
    DRIFT = 0.25  # lamp_power_high/low: the driver's regulation off by 25 % of rated
    WASTE = 0.13  # energy_anomaly: extra input power, fraction of rated (under the 15 % power tolerance)
    CYCLE_LIT_S, CYCLE_DARK_S = 100.0, 50.0
    LEAK_RISE_MA_PER_MIN, LEAK_MAX_MA = 2.5, 48.0
    SUPPLY_HIGH_V, SUPPLY_LOW_V = 19.0, -37.0
    SAG_EVERY_S = 6 * 3600.0

    def __init__(
        self, site: Site, device: Device, *, start: datetime, seed: int = 0, boot: int = 1, sky: Sky | None = None,
        dimming: DimmingProfile | None = None,
    ) -> None:
        super().__init__(site, device, start=start, seed=seed, boot=boot)
        assert device.rated_power_w is not None and device.circuit is not None  # the site loader guarantees them
        self.rated_w = device.rated_power_w
        self.rated_life_h = device.rated_life_h
        self.circuit = device.circuit
        self.switched = site.circuits[device.circuit].switched
        self.sky = sky or Sky.for_site(site)  # the controller's schedule (a command may hold it)
        self.cabinet_sky = self.sky  # the cabinet's own timer switches a switched circuit's supply
        self.dimming = dimming or DimmingProfile()
        rng = self.rng
        self.burn_hours = rng.uniform(1_500.0, 25_000.0)
        self.switch_count = int(self.burn_hours / 11.5) + rng.randint(0, 40)
        self.energy_kwh = self.burn_hours * self.rated_w * 0.8 / 1000.0
        self.voltage_v = rng.uniform(222.0, 230.0)  # the supply's slow random walk (without faults and sags)
        self._pf = rng.uniform(0.945, 0.965)
        self._leak_ma = rng.uniform(0.1, 0.8)
        self._humidity = rng.uniform(0.5, 0.9)
        self._cloud = rng.uniform(0.0, 0.8)
        # Most drivers start at once; some wait a while before their soft start (noise, < 60 s).
        self.start_delay_s = rng.uniform(10.0, 40.0) if rng.random() < 0.1 else rng.uniform(0.2, 1.0)
        self._sag_next = self.now + timedelta(seconds=rng.expovariate(1.0 / self.SAG_EVERY_S))
        self._sag: tuple[datetime, datetime, float] | None = None
        self.supplied = self._supply(self.now)
        self.supplied_since = self.now - timedelta(hours=1)
        self.relay = self.supplied and self._relay_wanted(self.now)
        self.on_since = self.now - timedelta(hours=1)  # a light first seen lit is warmed up
        self.driver_temp_c = self._temp_target(self.now)

    # -- what the light does at a moment

    @property
    def lamp_failed(self) -> bool:
        return Fault.LAMP_FAILURE in self.faults

    def powered(self, now: datetime) -> bool:
        self.advance(now)
        return self.supplied

    def dim_pct(self, now: datetime) -> float:
        return self.dimming.pct(now.astimezone(self.tz))

    def expected_power_w(self, now: datetime) -> float:
        """What the fault catalog expects: rated x dim / 100 while the relay is closed, else 0."""
        return self.rated_w * self.dim_pct(now) / 100.0 if self.relay else 0.0

    def _supply(self, t: datetime) -> bool:
        if Fault.CIRCUIT_OUTAGE in self.faults:
            return False
        return not self.switched or Fault.DAY_BURNING in self.faults or self.cabinet_sky.lights_on(t)

    def _relay_wanted(self, t: datetime) -> bool:
        return Fault.DAY_BURNING in self.faults or self.sky.lights_on(t)  # a stuck relay stays closed

    def _update_switch(self, t: datetime) -> None:
        supplied = self._supply(t)
        if supplied and not self.supplied:
            self.supplied_since = t  # the controller boots before it closes its relay
        booted = (t - self.supplied_since).total_seconds() >= self.BOOT_S
        relay = supplied and booted and self._relay_wanted(t)
        if relay and not self.relay:
            self.switch_count += 1
            self.on_since = t
        self.supplied, self.relay = supplied, relay

    def _cycling_dark(self, t: datetime) -> bool:
        since = self.fault_since.get(Fault.CYCLING)
        if since is None:
            return False
        phase = (t - since).total_seconds() % (self.CYCLE_LIT_S + self.CYCLE_DARK_S)
        return phase >= self.CYCLE_LIT_S

    def _lamp_w(self, t: datetime) -> float:
        """The lamp's own draw at ``t`` (0 when dark)."""
        if not (self.supplied and self.relay) or self.lamp_failed or self._cycling_dark(t):
            return 0.0
        watts = self.rated_w * self.dim_pct(t) / 100.0
        if Fault.LAMP_POWER_HIGH in self.faults:
            watts += self.DRIFT * self.rated_w
        if Fault.LAMP_POWER_LOW in self.faults:
            watts = max(watts - self.DRIFT * self.rated_w, 0.05 * self.rated_w)
        if Fault.ENERGY_ANOMALY in self.faults:
            watts += self.WASTE * self.rated_w
        warm = (t - self.on_since).total_seconds() - self.start_delay_s
        if warm <= 0:
            return 0.0
        return watts * min(1.0, warm / self.SOFT_START_S)

    def _power_w(self, t: datetime) -> float:
        if not self.supplied:
            return 0.0
        lamp = self._lamp_w(t)
        return lamp if lamp > 0 else self.STANDBY_W

    def _voltage_offset(self) -> float:
        if Fault.SUPPLY_VOLTAGE_HIGH in self.faults:
            return self.SUPPLY_HIGH_V
        if Fault.SUPPLY_VOLTAGE_LOW in self.faults:
            return self.SUPPLY_LOW_V
        return 0.0

    def _voltage_mean(self, t: datetime) -> float:
        local = t.astimezone(self.tz)
        hour = local.hour + local.minute / 60
        dip = 4.0 * math.exp(-(((hour - 20.0) / 1.5) ** 2))  # the evening peak load pulls the supply down
        return self.NOMINAL_V - dip

    def _temp_target(self, t: datetime) -> float:
        local = t.astimezone(self.tz)
        local_hour = local.hour + local.minute / 60
        ambient = 22.0 + 5.0 * math.cos((local_hour - 15.0) / 24.0 * 2 * math.pi)
        if not self.supplied:
            return ambient
        lit = self._lamp_w(t) / self.rated_w
        return ambient + (18.0 * lit if lit > 0 else 2.0) + (8.0 if Fault.ENERGY_ANOMALY in self.faults else 0.0)

    def leakage_ma(self, t: datetime) -> float:
        base = _clamp(self._leak_ma * (0.6 + 0.6 * self._humidity), 0.1, 1.0)
        since = self.fault_since.get(Fault.LEAKAGE)
        if since is None:
            return base
        minutes = (t - since).total_seconds() / 60.0
        return base + min(self.LEAK_MAX_MA, self.LEAK_RISE_MA_PER_MIN * minutes) * (0.85 + 0.3 * self._humidity)

    # -- faults

    def _fault_started(self, fault: Fault, at: datetime) -> None:
        if fault is Fault.END_OF_LIFE:
            self.burn_hours = max(self.burn_hours, self.rated_life_h + self.rng.uniform(2.0, 200.0))
        self._update_switch(at)

    def _fault_ended(self, fault: Fault, at: datetime) -> None:
        self._update_switch(at)  # burn hours never go back: a replacement is recorded by the platform

    # -- time

    def _advance(self, start: datetime, end: datetime) -> None:
        step = timedelta(seconds=10.0 if Fault.CYCLING in self.faults else self.MAX_STEP_S)
        t = start
        while t < end:
            step_end = min(end, t + step)
            self._update_switch(t)
            dt_s = (step_end - t).total_seconds()
            middle = t + (step_end - t) / 2
            self.energy_kwh += self._power_w(middle) * dt_s / 3.6e6
            if self._lamp_w(middle) > 0:
                self.burn_hours += dt_s / 3600.0
            t = step_end
        # The relay follows the schedule at `end` too, so a sample right after switching time shows it.
        self._update_switch(end)
        dt_total = (end - start).total_seconds()
        rng = self.rng
        self.voltage_v = _clamp(_ou(self.voltage_v, self._voltage_mean(end), 2.0, 900.0, dt_total, rng=rng), 218.0, 232.0)
        self._humidity = _clamp(_ou(self._humidity, 0.75, 0.1, 7200.0, dt_total, rng=rng), 0.3, 1.0)
        self._cloud = _clamp(_ou(self._cloud, 0.4, 0.25, 3600.0, dt_total, rng=rng), 0.0, 1.0)
        self.driver_temp_c = _ou(self.driver_temp_c, self._temp_target(end), 0.5, 900.0, dt_total, rng=rng)
        while self._sag_next <= end:
            begin = self._sag_next
            self._sag = (begin, begin + timedelta(seconds=rng.uniform(2.0, 8.0)), rng.uniform(188.0, 205.0))
            self._sag_next = begin + timedelta(seconds=max(60.0, rng.expovariate(1.0 / self.SAG_EVERY_S)))

    def _sample(self, now: datetime, seq: int) -> StreetlightTelemetry:
        rng = self.rng
        if not self.supplied:  # no supply: what a controller with a backup cell would read
            return StreetlightTelemetry(
                ts=to_ms(now), seq=seq, relay=False, dim_pct=0.0, power_w=0.0, voltage_v=round(rng.uniform(0.0, 1.5), 1),
                current_a=0.0, energy_kwh=round(self.energy_kwh, 3), leakage_ma=0.0, lux=self.sky.lux(now, rng, self._cloud),
                driver_temp_c=round(self.driver_temp_c, 1), burn_hours=round(self.burn_hours, 2), switch_count=self.switch_count,
            )
        voltage = self.voltage_v + self._voltage_offset()
        if self._sag is not None and self._sag[0] <= now < self._sag[1]:
            voltage = min(voltage, self._sag[2])
        voltage = max(0.0, voltage + rng.gauss(0.0, 0.3))
        capacitor_failed = Fault.POWER_FACTOR_LOW in self.faults
        lamp = self._lamp_w(now)
        if self.relay and lamp > 0:
            dim = self.dim_pct(now)
            power = lamp * (1.0 + _clamp(rng.gauss(0.0, 0.006), -0.015, 0.015))
            pf = (0.66 if capacitor_failed else self._pf) - 0.12 * (1.0 - dim / 100.0) + rng.gauss(0.0, 0.003)
        elif self.relay:  # dark with the relay closed (failed, cycling, warming up): the controller's own draw
            dim = self.dim_pct(now)
            power = rng.uniform(0.1, 0.5)
            pf = rng.uniform(0.3, 0.5)
        else:
            dim = 0.0
            power = self.STANDBY_W + rng.uniform(-0.05, 0.05)
            pf = rng.uniform(0.4, 0.5)
        pf = _clamp(pf, 0.05, 0.99)
        current = power / (voltage * pf) if voltage > 1.0 else 0.0
        leakage = self.leakage_ma(now) + rng.gauss(0.0, 0.02)
        return StreetlightTelemetry(
            ts=to_ms(now),
            seq=seq,
            relay=self.relay,
            dim_pct=dim,
            power_w=round(power, 2),
            voltage_v=round(voltage, 1),
            current_a=round(current, 3),
            pf=round(pf, 3),
            energy_kwh=round(self.energy_kwh, 3),
            leakage_ma=round(max(0.05, leakage), 2),
            lux=self.sky.lux(now, rng, self._cloud),
            driver_temp_c=round(self.driver_temp_c + rng.gauss(0.0, 0.2), 1),
            burn_hours=round(self.burn_hours, 2),
            switch_count=self.switch_count,
        )


# ---------------------------------------------------------------- elevator


class _Car(Enum):
    IDLE = "idle"  # stopped at a landing, door closed, waiting for a call
    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"
    MOVING = "moving"
    STALLED = "stalled"  # stopped between landings, outside the door zone
    OVERSHOOT = "overshoot"  # stopped past an end landing


@dataclass(slots=True)
class _Step:
    phase: _Car
    target: int = 0  # landing index, for MOVING
    board: bool | None = None  # OPEN: True = a passenger gets in, False = gets out
    hold_s: float | None = None  # OPEN: how long the door stays open (default 3-8 s)


class ElevatorModel(DeviceModel[ElevatorTelemetry]):
    kind = "elevator"
    model_name = "EM-24476"
    fw = "1.8.0"
    supported_faults = DeviceModel.supported_faults | frozenset({
        Fault.TRAPPED, Fault.STOPPED_OUTSIDE_ZONE, Fault.DOOR_OPEN_MOVING, Fault.OVERSPEED, Fault.OVERTRAVEL,
        Fault.SAFETY_CIRCUIT_OPEN, Fault.DOOR_FAULT, Fault.POWER_LOSS, Fault.BUILDING_POWER_LOSS, Fault.OUT_OF_SERVICE,
    })
    BLOCKING = frozenset({Fault.POWER_LOSS, Fault.BUILDING_POWER_LOSS, Fault.OUT_OF_SERVICE, Fault.SAFETY_CIRCUIT_OPEN})
    STALLING = frozenset({Fault.TRAPPED, Fault.STOPPED_OUTSIDE_ZONE})
    FORCING = frozenset({Fault.DOOR_OPEN_MOVING, Fault.OVERSPEED, Fault.OVERTRAVEL})

    FLOOR_HEIGHT_M = 3.0
    ACCEL_MPS2 = 0.8
    DOOR_OPENING_S = 2.0
    DOOR_CLOSING_S = 3.0
    DOOR_ZONE_M = 0.2  # the levelling zone either side of a landing
    OVERSPEED_FACTOR = 1.25
    OVERSHOOT_S = 6.0  # an overtravel re-levels before stopped_outside_zone's 10 s
    ALARM_AFTER_S = 15.0  # a trapped passenger presses and holds the alarm button
    FAULT_REOPENS = 4  # door_fault: re-openings before the door sticks open
    REOPEN_P = 0.05  # noise: a closing door re-opens (at most 2 within 60 s)

    def __init__(self, site: Site, device: Device, *, start: datetime, seed: int = 0, boot: int = 1) -> None:
        super().__init__(site, device, start=start, seed=seed, boot=boot)
        assert device.building is not None
        building = site.buildings[device.building]
        low, high = building.lowest_floor, building.highest_floor
        # Chinese buildings number B1 as -1 and the ground floor 1: there is no floor 0 between them.
        self.landings = [f for f in range(low, high + 1) if not (f == 0 and low < 0 < high)]
        self.rated_mps = building.rated_speed_mps
        self.lobby = self.landings.index(1) if 1 in self.landings else 0
        rng = self.rng
        self.trips = rng.randint(5_000, 60_000)
        self.occupied = False
        self.index = rng.choice([self.lobby, self.lobby, rng.randrange(len(self.landings))])  # current landing
        self._plan: deque[_Step] = deque()
        self._phase = _Car.IDLE
        self._phase_start = self.now
        self._phase_end = self._next_call(self.now)
        self._from = self.index
        self._to = self.index
        self._run_v = self.rated_mps
        self._pos = float(self.index)  # STALLED / OVERSHOOT: where the car stands, in landing-index units
        self._alarm_at: datetime | None = None
        self._forced: int | None = None  # a landing a fault sends the car to next
        self._overshoot = False  # this run overtravels its end landing
        self._reopens: deque[datetime] = deque()  # noise re-openings, for the 2-in-60-s cap
        self._fault_reopens = 0
        self._stuck_open = False
        self.out_mode = "out_of_service"

    # -- timing

    def _call_mean_s(self, now: datetime) -> float:
        hour = now.astimezone(self.tz).hour
        if 7 <= hour < 9 or 17 <= hour < 20:
            return 45.0
        if hour >= 22 or hour < 6:
            return 900.0
        return 150.0

    def _next_call(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.rng.expovariate(1.0 / self._call_mean_s(now)))

    def _travel(self, floors: int) -> tuple[float, float, float]:
        """(total time, time at full speed, peak speed) of a run over ``floors`` landings."""
        distance = abs(floors) * self.FLOOR_HEIGHT_M
        v, a = self._run_v, self.ACCEL_MPS2
        if distance >= v * v / a:
            return 2 * v / a + (distance - v * v / a) / v, (distance - v * v / a) / v, v
        peak = math.sqrt(distance * a)
        return 2 * peak / a, 0.0, peak

    def _run_state(self, elapsed: float) -> tuple[float, float]:
        """(distance covered in metres, speed) ``elapsed`` seconds into the current run."""
        total, cruise, peak = self._travel(self._to - self._from)
        a = self.ACCEL_MPS2
        accel_t = peak / a
        elapsed = _clamp(elapsed, 0.0, total)
        if elapsed < accel_t:
            return 0.5 * a * elapsed * elapsed, a * elapsed
        covered = 0.5 * a * accel_t * accel_t
        if elapsed < accel_t + cruise:
            return covered + peak * (elapsed - accel_t), peak
        left = total - elapsed
        full = abs(self._to - self._from) * self.FLOOR_HEIGHT_M
        return full - 0.5 * a * left * left, a * left

    def _position(self, now: datetime) -> float:
        """Where the car is, in landing-index units."""
        if self._phase is _Car.MOVING:
            covered, _ = self._run_state((now - self._phase_start).total_seconds())
            sign = 1 if self._to > self._from else -1
            return self._from + sign * covered / self.FLOOR_HEIGHT_M
        if self._phase in (_Car.STALLED, _Car.OVERSHOOT):
            return self._pos
        return float(self.index)

    def _floor_at(self, position: float) -> int:
        nearest = math.floor(position + 0.5)
        last = len(self.landings) - 1
        if nearest > last:
            return self.landings[-1] + (nearest - last)
        if nearest < 0:
            return self.landings[0] + nearest
        return self.landings[nearest]

    @property
    def blocked(self) -> bool:
        return bool(self.faults & self.BLOCKING)

    # -- the state machine

    def _plan_trip(self) -> None:
        rng, count = self.rng, len(self.landings)
        others = [i for i in range(count) if i != self.lobby]
        roll = rng.random()
        if roll < 0.45:  # from the lobby up (or down to the car park)
            call, dest = self.lobby, rng.choice(others)
        elif roll < 0.85:  # home to the lobby
            call, dest = rng.choice(others), self.lobby
        else:
            call = rng.randrange(count)
            dest = rng.choice([i for i in range(count) if i != call])
        if call != self.index:
            self._plan.append(_Step(_Car.MOVING, target=call))
        self._plan.extend([
            _Step(_Car.OPENING), _Step(_Car.OPEN, board=True), _Step(_Car.CLOSING),
            _Step(_Car.MOVING, target=dest),
            _Step(_Car.OPENING), _Step(_Car.OPEN, board=False), _Step(_Car.CLOSING),
        ])

    def _plan_forced(self, target: int) -> None:
        self._plan.extend([
            _Step(_Car.MOVING, target=target), _Step(_Car.OPENING), _Step(_Car.OPEN, board=False), _Step(_Car.CLOSING),
        ])

    def _begin(self, step: _Step, at: datetime) -> None:
        self._phase = step.phase
        self._phase_start = at
        if step.phase is _Car.MOVING:
            self._from, self._to = self.index, step.target
            self._run_v = self.rated_mps * (self.OVERSPEED_FACTOR if Fault.OVERSPEED in self.faults else 1.0)
            self.trips += 1
            duration = self._travel(self._to - self._from)[0]
            self._overshoot = Fault.OVERTRAVEL in self.faults and self._to in (0, len(self.landings) - 1)
            if self._run_v > 1.15 * self.rated_mps and duration > 2 * self._run_v / self.ACCEL_MPS2:
                self._event(at + timedelta(seconds=1.15 * self.rated_mps / self.ACCEL_MPS2), "overspeed",
                            {"speed_mps": round(self._run_v, 2), "rated_mps": self.rated_mps})
            if Fault.DOOR_OPEN_MOVING in self.faults:
                self._event(at + timedelta(seconds=1.5), "door_open_moving", {"floor": self.landings[self._from]})
        elif step.phase is _Car.OPENING:
            duration = self.DOOR_OPENING_S
        elif step.phase is _Car.OPEN:
            if step.board is not None:
                self.occupied = step.board
            duration = step.hold_s if step.hold_s is not None else self.rng.uniform(3.0, 8.0)
        else:
            duration = self.DOOR_CLOSING_S
        self._phase_end = at + timedelta(seconds=duration)

    def _reopen(self) -> None:
        self._plan.appendleft(_Step(_Car.CLOSING))
        self._plan.appendleft(_Step(_Car.OPEN, hold_s=self.rng.uniform(1.0, 2.5)))
        self._plan.appendleft(_Step(_Car.OPENING))

    def _finish_phase(self) -> None:
        at = self._phase_end
        if self._phase is _Car.MOVING:
            self.index = self._to
            if self._overshoot:
                self._overshoot = False
                last = len(self.landings) - 1
                self._pos = self.index + (0.6 if self.index == last else -0.6)
                self._phase, self._phase_start = _Car.OVERSHOOT, at
                self._phase_end = at + timedelta(seconds=self.OVERSHOOT_S)
                self._event(at, "overtravel", {"floor": self._floor_at(self._pos)})
                return
        if self._phase is _Car.CLOSING:
            if Fault.DOOR_FAULT in self.faults:
                self._fault_reopens += 1
                if self._fault_reopens <= self.FAULT_REOPENS:
                    self._reopen()
                else:  # the operator gives up: the door sticks open until repaired
                    self._plan.appendleft(_Step(_Car.CLOSING))
                    self._stuck_open = True
                    self._phase, self._phase_start, self._phase_end = _Car.OPEN, at, at + FAR
                    return
            else:
                while self._reopens and (at - self._reopens[0]).total_seconds() > 60:
                    self._reopens.popleft()
                if len(self._reopens) < 2 and self.rng.random() < self.REOPEN_P:
                    self._reopens.append(at)
                    self._reopen()
        if self._phase is _Car.IDLE and not self._plan and not self.blocked:
            if self._forced is not None:
                self._plan_forced(self._forced)
                self._forced = None
            else:
                self._plan_trip()
        if self._plan:
            self._begin(self._plan.popleft(), at)
            return
        self._phase, self._phase_start = _Car.IDLE, at
        if self.blocked:
            self._phase_end = at + FAR
        elif self._forced is not None:
            self._phase_end = at + timedelta(seconds=2)
        else:
            self.occupied = False
            self._phase_end = self._next_call(at)

    def _advance(self, start: datetime, end: datetime) -> None:
        while self._phase_end <= end:
            self._finish_phase()

    # -- faults

    def _farthest(self) -> int:
        return max(range(len(self.landings)), key=lambda i: abs(i - self.index))

    def _force(self, target: int, at: datetime) -> None:
        """Someone calls the car to ``target`` (a fault shows on its next run)."""
        if self._phase is _Car.IDLE and not self._plan and not self.blocked:
            self._plan_forced(target)
            self._phase_end = at + timedelta(seconds=2)
        else:
            self._forced = target

    def _fault_started(self, fault: Fault, at: datetime) -> None:
        rng = self.rng
        if fault in self.BLOCKING:
            if fault is Fault.OUT_OF_SERVICE:
                self.out_mode = "out_of_service" if rng.random() < 0.7 else "inspection"
            self._forced = None
            if self._phase is _Car.MOVING:  # finish the run (a rescue device levels the car), let people out
                self._plan = deque([_Step(_Car.OPENING), _Step(_Car.OPEN, board=False), _Step(_Car.CLOSING)])
            elif self._phase in (_Car.OPENING, _Car.OPEN):
                self.occupied = False
                self._plan = deque([_Step(_Car.CLOSING)])
                if self._stuck_open:
                    self._phase_end = at
            elif self._phase in (_Car.CLOSING, _Car.IDLE):
                self._plan.clear()
                if self._phase is _Car.IDLE:
                    self._phase_end = at + FAR
        elif fault in self.STALLING:
            if self._phase is _Car.MOVING:
                pos = self._position(at)
            else:  # the car had just left its landing
                pos = self.index + (0.45 if self.index < len(self.landings) - 1 else -0.45)
            nearest = math.floor(pos + 0.5)
            if abs(pos - nearest) * self.FLOOR_HEIGHT_M < 3 * self.DOOR_ZONE_M:
                pos = nearest + (0.4 if nearest < len(self.landings) - 1 else -0.4)
            self._pos = _clamp(pos, 0.0, len(self.landings) - 1.0)
            self._phase, self._phase_start, self._phase_end = _Car.STALLED, at, at + FAR
            self._plan.clear()
            self._stuck_open = False
            self.occupied = fault is Fault.TRAPPED
            if fault is Fault.TRAPPED:
                self._alarm_at = at + timedelta(seconds=self.ALARM_AFTER_S)
                self._event(self._alarm_at, "alarm_button", {"floor": self._floor_at(self._pos)})
        elif fault in self.FORCING:
            if fault is Fault.OVERTRAVEL:
                last = len(self.landings) - 1
                self._force(last if self.index != last else 0, at)
            else:
                self._force(self._farthest(), at)
        elif fault is Fault.DOOR_FAULT:
            self._fault_reopens = 0
            if self._phase is _Car.IDLE and not self._plan and not self.blocked:  # a call at this landing
                self._plan.extend([_Step(_Car.OPENING), _Step(_Car.OPEN, board=True), _Step(_Car.CLOSING)])
                self._phase_end = at + timedelta(seconds=2)

    def _fault_ended(self, fault: Fault, at: datetime) -> None:
        if fault in self.STALLING and not self.faults & self.STALLING and self._phase is _Car.STALLED:
            # Rescued: the technician levels the car to the nearest landing and lets the passenger out.
            self.index = int(_clamp(math.floor(self._pos + 0.5), 0, len(self.landings) - 1))
            self._alarm_at = None
            self._plan = deque([_Step(_Car.OPENING), _Step(_Car.OPEN, board=False), _Step(_Car.CLOSING)])
            self._phase, self._phase_start, self._phase_end = _Car.IDLE, at, at
        elif fault is Fault.DOOR_FAULT:
            self._fault_reopens = 0
            if self._stuck_open:
                self._stuck_open = False
                self._phase_end = at
        elif fault in self.BLOCKING and not self.blocked and self._phase is _Car.IDLE:
            self._phase_end = self._next_call(at)
        if fault in self.FORCING and not self.faults & self.FORCING:
            self._forced = None

    # -- sampling

    def _sample(self, now: datetime, seq: int) -> ElevatorTelemetry:
        moving = self._phase is _Car.MOVING
        if moving:
            _, speed = self._run_state((now - self._phase_start).total_seconds())
            position = self._position(now)
            door_zone = abs(position - round(position)) * self.FLOOR_HEIGHT_M < self.DOOR_ZONE_M
            floor = self._floor_at(_clamp(position, 0, len(self.landings) - 1))
            direction = "up" if self._to > self._from else "down"
            speed = min(speed * (1.0 + self.rng.uniform(-0.01, 0.01)), self._run_v * 1.02)
            door = "open" if Fault.DOOR_OPEN_MOVING in self.faults and not door_zone else "closed"
        elif self._phase in (_Car.STALLED, _Car.OVERSHOOT):
            floor, door_zone, direction, speed, door = self._floor_at(self._pos), False, "none", 0.0, "closed"
        else:
            floor, door_zone, direction, speed = self.landings[self.index], True, "none", 0.0
            door = {_Car.OPENING: "opening", _Car.OPEN: "open", _Car.CLOSING: "closing"}.get(self._phase, "closed")
        mode = self.out_mode if Fault.OUT_OF_SERVICE in self.faults else "normal"
        return ElevatorTelemetry(
            ts=to_ms(now),
            seq=seq,
            floor=floor,
            moving=moving,
            direction=direction,  # type: ignore[arg-type]  # one of the Literal's values
            speed_mps=round(speed, 2),
            door=door,  # type: ignore[arg-type]
            door_zone=door_zone,
            occupied=self.occupied,
            mode=mode,  # type: ignore[arg-type]
            mains=not (self.faults & {Fault.POWER_LOSS, Fault.BUILDING_POWER_LOSS}),
            safety_circuit=Fault.SAFETY_CIRCUIT_OPEN not in self.faults,
            alarm=self._alarm_at is not None and now >= self._alarm_at,
            trips=self.trips,
        )


# ---------------------------------------------------------------- charger

_STATUSES = (
    "Available", "Preparing", "Charging", "SuspendedEVSE", "SuspendedEV", "Finishing", "Reserved", "Unavailable", "Faulted",
)

# OCPP 1.6 connector status changes this model makes (from, to).
OCPP_EDGES: frozenset[tuple[str, str]] = frozenset({
    ("Available", "Preparing"),
    ("Preparing", "Charging"),
    ("Preparing", "Available"),  # the session never started (timeout, no authorisation)
    ("Charging", "SuspendedEV"),
    ("Charging", "SuspendedEVSE"),
    ("SuspendedEV", "Charging"),
    ("SuspendedEVSE", "Charging"),
    ("Charging", "Finishing"),
    ("SuspendedEV", "Finishing"),
    ("SuspendedEVSE", "Finishing"),
    ("Finishing", "Available"),
    ("Faulted", "Available"),
} | {(s, "Faulted") for s in _STATUSES if s != "Faulted"})

_FAULTING: dict[Fault, str] = {
    Fault.GROUND_FAILURE: "GroundFailure",
    Fault.POWER_SWITCH_FAILURE: "PowerSwitchFailure",
    Fault.FAULTED: "InternalError",
}
_EPISODES: dict[Fault, str] = {
    Fault.OVER_CURRENT: "OverCurrentFailure",
    Fault.OVER_VOLTAGE: "OverVoltage",
    Fault.UNDER_VOLTAGE: "UnderVoltage",
}


@dataclass(slots=True)
class _Connector:
    connector_id: int
    status: str = "Available"
    until: datetime = field(default_factory=lambda: datetime.max.replace(tzinfo=UTC))
    energy_kwh: float = 0.0  # the connector's meter
    shown_kwh: float | None = None  # a failed meter's frozen reading
    session_id: str | None = None
    battery_kwh: float = 0.0
    soc: float = 0.0
    soc_target: float = 1.0
    car_kw: float = 0.0  # what the car accepts
    battery_v: float = 0.0  # DC: the car's battery voltage
    timeout: bool = False  # this Preparing ends without a session
    ev_error: bool = False  # this session's EV handshake reports EVCommunicationError
    break_at: datetime | None = None  # a load-management pause (SuspendedEVSE)
    break_s: float = 0.0


class ChargerModel(DeviceModel[ChargerTelemetry]):
    kind = "charger"
    fw = "1.6.4"
    supported_faults = DeviceModel.supported_faults | frozenset({
        Fault.GROUND_FAILURE, Fault.POWER_SWITCH_FAILURE, Fault.HIGH_TEMPERATURE, Fault.OVER_CURRENT,
        Fault.OVER_VOLTAGE, Fault.UNDER_VOLTAGE, Fault.FAULTED, Fault.CHARGING_NO_CURRENT, Fault.STUCK_SESSION,
        Fault.METER_FAILURE, Fault.READER_FAILURE, Fault.EV_COMM_ERRORS,
    })

    AC_VOLTAGE_V = 228.0
    STEP_S = 60.0
    EPISODE_EVERY_S = 15 * 60.0  # over_current/over_voltage/under_voltage: one episode per 15 min ...
    EPISODE_S = 100.0  # ... of ~3 samples
    HOT_C, COOL_C = 75.0, 70.0  # HighTemperature above 75, cleared below 70

    def __init__(self, site: Site, device: Device, *, start: datetime, seed: int = 0, boot: int = 1) -> None:
        super().__init__(site, device, start=start, seed=seed, boot=boot)
        assert device.rated_power_kw is not None
        self.rated_kw = device.rated_power_kw
        self.dc = self.rated_kw > 22.0
        self.model_name = f"DC{self.rated_kw:g}-OCPP16" if self.dc else f"AC{self.rated_kw:g}-OCPP16"
        rng = self.rng
        self.voltage_v = rng.uniform(224.0, 232.0)
        self.temp_c = rng.uniform(26.0, 30.0)
        self.hot = False
        self.sessions = rng.randint(0, 9_000)
        self.status_log: deque[tuple[datetime, int, str, str]] = deque(maxlen=20_000)
        self._last_ev_error: datetime | None = None
        self.connectors = [_Connector(i) for i in range(1, device.connectors + 1)]
        for conn in self.connectors:
            conn.energy_kwh = rng.uniform(500.0, 20_000.0) * (4.0 if self.dc else 1.0)
            if rng.random() < 0.3:  # some piles are busy when the simulation starts
                self._start_session(conn, self.now)
                conn.status, conn.until = "Charging", self.now + FAR
            else:
                conn.until = self._next_arrival(self.now)

    # -- sessions

    def _next_arrival(self, now: datetime) -> datetime:
        hour = now.astimezone(self.tz).hour
        if Fault.EV_COMM_ERRORS in self.faults:
            return now + timedelta(minutes=self.rng.uniform(8.0, 12.0))
        if self.dc:
            mean_h = 0.7 if 7 <= hour < 23 else 3.0
        else:  # residential: the evening peak
            mean_h = 1.5 if 18 <= hour < 23 else (4.0 if hour >= 23 or hour < 7 else 3.0)
        return now + timedelta(hours=self.rng.expovariate(1.0 / mean_h))

    def _set(self, conn: _Connector, status: str, at: datetime) -> None:
        if status != conn.status:
            self.status_log.append((at, conn.connector_id, conn.status, status))
            conn.status = status

    def _start_session(self, conn: _Connector, at: datetime) -> None:
        rng = self.rng
        self.sessions += 1
        conn.session_id = f"S-{at.astimezone(self.tz):%Y%m%d}-{self.device_id}-{self.sessions % 10_000:04d}"
        if self.dc:
            conn.battery_kwh = rng.uniform(50.0, 90.0)
            conn.soc, conn.soc_target = rng.uniform(0.1, 0.4), rng.uniform(0.8, 0.9)
            conn.car_kw = min(self.rated_kw, self.rated_kw * rng.uniform(0.7, 1.3))
            conn.battery_v = rng.uniform(330.0, 360.0)
        else:
            conn.battery_kwh = rng.uniform(40.0, 80.0)
            conn.soc, conn.soc_target = rng.uniform(0.2, 0.6), rng.uniform(0.9, 1.0)
            conn.car_kw = self.rated_kw * rng.uniform(0.93, 0.99)
        conn.timeout = conn.ev_error = False
        conn.break_at = None
        if rng.random() < 0.1:  # load management pauses some sessions for a few minutes
            conn.break_at = at + timedelta(minutes=rng.uniform(5.0, 60.0))
            conn.break_s = rng.uniform(120.0, 300.0)

    def _arrive(self, conn: _Connector, at: datetime, *, prepare_s: float | None = None) -> None:
        """A car plugs in: Preparing, then Charging (or back to Available)."""
        rng = self.rng
        self._start_session(conn, at)
        self._set(conn, "Preparing", at)
        conn.until = at + timedelta(seconds=prepare_s if prepare_s is not None else rng.uniform(15.0, 90.0))
        if prepare_s is None and rng.random() < 0.06:  # the driver gives up / the car never answers
            conn.timeout, conn.until = True, at + timedelta(seconds=rng.uniform(60.0, 180.0))
        recent = self._last_ev_error is not None and at - self._last_ev_error < timedelta(hours=24)
        if Fault.EV_COMM_ERRORS in self.faults:
            conn.ev_error, conn.timeout, conn.until = True, True, at + timedelta(seconds=rng.uniform(60.0, 90.0))
        elif prepare_s is None and not recent and rng.random() < 0.04:  # noise: once per pile per 24 h at most
            conn.ev_error = True
        if conn.ev_error:
            self._last_ev_error = at
        if Fault.READER_FAILURE in self.faults:  # nobody can authorise
            conn.timeout, conn.until = True, at + timedelta(seconds=rng.uniform(60.0, 120.0))
        if Fault.STUCK_SESSION in self.faults:
            conn.until = at + FAR

    def _end_session(self, conn: _Connector, at: datetime) -> None:
        conn.session_id, conn.car_kw, conn.timeout, conn.ev_error, conn.break_at = None, 0.0, False, False, None
        conn.until = self._next_arrival(at)

    def _full(self, conn: _Connector, at: datetime) -> None:
        """The car is full: it stays plugged in a while (SuspendedEV) or the driver ends the session."""
        rng = self.rng
        if rng.random() < (0.6 if not self.dc else 0.15):
            self._set(conn, "SuspendedEV", at)
            conn.until = at + timedelta(minutes=rng.uniform(10.0, 240.0) if not self.dc else rng.uniform(2.0, 15.0))
        else:
            self._set(conn, "Finishing", at)
            conn.until = at + (FAR if Fault.STUCK_SESSION in self.faults else timedelta(seconds=rng.uniform(30.0, 300.0)))

    def _step(self, conn: _Connector) -> None:
        """The connector's current state ends at ``conn.until``; move to the next one."""
        at, rng, status = conn.until, self.rng, conn.status
        if status == "Available":
            self._arrive(conn, at)
        elif status == "Preparing":
            if conn.timeout:
                self._set(conn, "Available", at)
                self._end_session(conn, at)
            else:  # the handshake went through (at last)
                self._set(conn, "Charging", at)
                conn.ev_error = False
                conn.until = conn.break_at if conn.break_at is not None and conn.break_at > at else at + FAR
        elif status == "Charging":  # a load-management pause
            self._set(conn, "SuspendedEVSE", at)
            conn.break_at, conn.until = None, at + timedelta(seconds=conn.break_s)
        elif status in ("SuspendedEVSE",):
            self._set(conn, "Charging", at)
            conn.until = at + FAR
        elif status == "SuspendedEV":
            self._set(conn, "Finishing", at)
            conn.until = at + (FAR if Fault.STUCK_SESSION in self.faults else timedelta(seconds=rng.uniform(30.0, 300.0)))
        elif status == "Finishing":
            self._set(conn, "Available", at)
            self._end_session(conn, at)
        else:  # Faulted: until the fault is removed
            conn.until = at + FAR

    def charge_kw(self, conn: _Connector) -> float:
        """What the car draws now, from its state of charge (AC tapering above 90 %, DC on a curve)."""
        if Fault.CHARGING_NO_CURRENT in self.faults:
            return 0.0
        soc = conn.soc
        if self.dc:
            if soc < 0.1:
                shape = 0.7 + 3.0 * soc
            elif soc < 0.55:
                shape = 1.0
            else:
                shape = max(0.25, 1.0 - 0.75 * (soc - 0.55) / 0.4)
        else:
            shape = 1.0 if soc < 0.9 else max(0.25, (1.0 - soc) / 0.1)
        return conn.car_kw * shape

    def _advance(self, start: datetime, end: datetime) -> None:
        step = timedelta(seconds=self.STEP_S)
        for conn in self.connectors:
            t = start
            while t < end:
                if conn.status == "Charging":
                    stop = min(end, conn.until, t + step)
                    kwh = self.charge_kw(conn) * (stop - t).total_seconds() / 3600.0
                    conn.energy_kwh += kwh
                    conn.soc = min(1.0, conn.soc + kwh / conn.battery_kwh)
                    t = stop
                    if conn.soc >= conn.soc_target and Fault.CHARGING_NO_CURRENT not in self.faults:
                        self._full(conn, t)
                    elif conn.until <= t:
                        self._step(conn)
                elif conn.until <= end:
                    t = max(t, conn.until)
                    self._step(conn)
                else:
                    break
        dt_s = (end - start).total_seconds()
        load = sum(self.charge_kw(c) for c in self.connectors if c.status == "Charging") / (self.rated_kw * len(self.connectors))
        if Fault.HIGH_TEMPERATURE in self.faults:  # no airflow: the power stage heats the enclosure
            self.temp_c = _ou(self.temp_c, 92.0, 0.5, 400.0, dt_s, rng=self.rng)
        else:
            target = 27.0 + (22.0 if self.dc else 15.0) * load
            self.temp_c = _ou(self.temp_c, target, 0.5, 600.0, dt_s, rng=self.rng)
            if self.temp_c < 50.0:
                self.temp_c = _clamp(self.temp_c, 20.0, 48.0)
        self.voltage_v = _clamp(_ou(self.voltage_v, self.AC_VOLTAGE_V, 1.5, 600.0, dt_s, rng=self.rng), 220.0, 236.0)
        if self.temp_c > self.HOT_C:
            self.hot = True
        elif self.temp_c < self.COOL_C:
            self.hot = False

    # -- faults

    def _episode(self, now: datetime) -> Fault | None:
        """The over-current/voltage fault whose episode is in progress at ``now``."""
        for fault in _EPISODES:
            since = self.fault_since.get(fault)
            if since is None:
                continue
            offset = (now - since).total_seconds() - 30.0
            if offset >= 0 and offset % self.EPISODE_EVERY_S < self.EPISODE_S:
                return fault
        return None

    def _ensure_session(self, conn: _Connector, at: datetime) -> None:
        """A fault that shows under load: a car arrives now if the connector is free."""
        if conn.status == "Finishing":  # the last car leaves, the next one plugs in
            self._set(conn, "Available", at)
            self._end_session(conn, at)
        if conn.status == "Available":
            self._arrive(conn, at, prepare_s=20.0)
            conn.soc_target = 1.0
            conn.timeout = conn.ev_error = False
        elif conn.status == "Preparing":
            conn.soc_target, conn.timeout = 1.0, False
        elif conn.status in ("SuspendedEV", "SuspendedEVSE"):
            self._set(conn, "Charging", at)
            conn.until, conn.soc_target = at + FAR, 1.0
        elif conn.status == "Charging":
            conn.soc_target = 1.0

    def _fault_started(self, fault: Fault, at: datetime) -> None:
        for conn in self.connectors:
            if fault in _FAULTING:
                if conn.status != "Faulted":
                    self._set(conn, "Faulted", at)
                conn.session_id, conn.car_kw, conn.until = None, 0.0, at + FAR
            elif conn.status == "Faulted":
                continue
            elif fault in (Fault.CHARGING_NO_CURRENT, Fault.OVER_CURRENT, Fault.HIGH_TEMPERATURE):
                self._ensure_session(conn, at)
            elif fault is Fault.STUCK_SESSION:
                if conn.status == "Available":
                    self._arrive(conn, at)
                elif conn.status in ("Charging", "SuspendedEV", "SuspendedEVSE"):
                    self._set(conn, "Finishing", at)
                conn.timeout, conn.until = conn.status == "Preparing", at + FAR
            elif fault is Fault.EV_COMM_ERRORS:
                if conn.status == "Available":
                    conn.until = min(conn.until, at + timedelta(seconds=10))
                elif conn.status == "Preparing":
                    conn.ev_error = conn.timeout = True
                elif conn.status in ("Charging", "SuspendedEV", "SuspendedEVSE"):  # the car drops the session
                    conn.ev_error = True
                    self._set(conn, "Finishing", at)
                    conn.until = at + timedelta(seconds=60)
                if conn.ev_error:
                    self._last_ev_error = at
            elif fault is Fault.METER_FAILURE:
                conn.shown_kwh = conn.energy_kwh

    def _fault_ended(self, fault: Fault, at: datetime) -> None:
        for conn in self.connectors:
            if fault in _FAULTING and conn.status == "Faulted" and not self.faults & _FAULTING.keys():
                self._set(conn, "Available", at)
                self._end_session(conn, at)
            elif fault is Fault.STUCK_SESSION and conn.status in ("Preparing", "Finishing"):
                conn.until = at  # the lock is freed: the session ends
                conn.timeout = True
            elif fault is Fault.METER_FAILURE:
                conn.shown_kwh = None
            elif fault is Fault.EV_COMM_ERRORS and conn.status == "Available":
                conn.until = self._next_arrival(at)

    # -- sampling

    def telemetry(self, now: datetime, connector_id: int = 1) -> ChargerTelemetry:
        self.advance(now)
        return self._sample_connector(self.now, self.next_seq(), self.connectors[connector_id - 1])

    def _messages(self, now: datetime) -> list[ChargerTelemetry]:
        self.advance(now)
        return [self._sample_connector(self.now, self.next_seq(), conn) for conn in self.connectors]

    def _sample(self, now: datetime, seq: int) -> ChargerTelemetry:
        return self._sample_connector(now, seq, self.connectors[0])

    def error_code(self, conn: _Connector, now: datetime) -> str:
        if conn.status == "Faulted":
            for fault, code in _FAULTING.items():
                if fault in self.faults:
                    return code
            return "InternalError"
        episode = self._episode(now)
        if episode is not None and (episode is not Fault.OVER_CURRENT or conn.status == "Charging"):
            return _EPISODES[episode]
        if self.hot:
            return "HighTemperature"
        if Fault.METER_FAILURE in self.faults:
            return "PowerMeterFailure"
        if Fault.READER_FAILURE in self.faults:
            return "ReaderFailure"
        if conn.ev_error and (conn.status == "Preparing" or (conn.status == "Finishing" and Fault.EV_COMM_ERRORS in self.faults)):
            return "EVCommunicationError"
        return "NoError"

    def _sample_connector(self, now: datetime, seq: int, conn: _Connector) -> ChargerTelemetry:
        rng = self.rng
        charging = conn.status == "Charging"
        power = self.charge_kw(conn) * (1.0 + rng.uniform(-0.01, 0.01)) if charging else 0.0
        if self.dc:
            voltage = conn.battery_v + 60.0 * conn.soc + rng.uniform(-1.0, 1.0) if charging else 0.0
        else:
            voltage = self.voltage_v + rng.gauss(0.0, 0.3)
        episode = self._episode(now)
        if episode is Fault.OVER_VOLTAGE:
            voltage = rng.uniform(252.0, 260.0) if not self.dc else voltage
        elif episode is Fault.UNDER_VOLTAGE:
            voltage = rng.uniform(180.0, 188.0) if not self.dc else voltage
        current = power * 1000.0 / voltage if charging and voltage > 0 else 0.0
        if charging and Fault.CHARGING_NO_CURRENT in self.faults:  # the car draws next to nothing
            current = rng.uniform(0.05, 0.3)
            power = current * voltage / 1000.0
        elif charging and episode is Fault.OVER_CURRENT:
            current *= rng.uniform(1.25, 1.4)
        energy = conn.shown_kwh if conn.shown_kwh is not None else conn.energy_kwh
        return ChargerTelemetry(
            ts=to_ms(now),
            seq=seq,
            status=conn.status,  # type: ignore[arg-type]  # one of the Literal's values
            error_code=self.error_code(conn, now),  # type: ignore[arg-type]
            connector_id=conn.connector_id,
            power_kw=round(power, 2),
            voltage_v=round(voltage, 1),
            current_a=round(current, 2),
            energy_kwh=round(energy, 3),
            temp_c=round(self.temp_c + rng.gauss(0.0, 0.2), 1),
            session_id=conn.session_id,
        )


# ---------------------------------------------------------------- building a site's models

AnyModel = StreetlightModel | ElevatorModel | ChargerModel


def model_for(
    site: Site, device: Device, *, start: datetime, seed: int = 0, boot: int = 1, sky: Sky | None = None
) -> AnyModel:
    """The model of one device of a site."""
    if device.kind == "streetlight":
        return StreetlightModel(site, device, start=start, seed=seed, boot=boot, sky=sky)
    if device.kind == "elevator":
        return ElevatorModel(site, device, start=start, seed=seed, boot=boot)
    return ChargerModel(site, device, start=start, seed=seed, boot=boot)


def build_models(
    site: Site, *, start: datetime, seed: int = 0, boot: int = 1, device_ids: Iterable[str] | None = None
) -> dict[str, AnyModel]:
    """Models of a site's devices (all, or those named), keyed by device id; one shared :class:`Sky`."""
    sky = Sky.for_site(site)
    wanted: Sequence[str] = list(site.devices) if device_ids is None else list(device_ids)
    unknown = [d for d in wanted if d not in site.devices]
    if unknown:
        raise KeyError(f"no device {', '.join(map(repr, unknown))} in site {site.id!r}")
    return {d: model_for(site, site.devices[d], start=start, seed=seed, boot=boot, sky=sky) for d in wanted}
