"""Device models, pure: one class per kind of device, with state advanced by time and no I/O.

``model.telemetry(now)`` integrates the device's state up to ``now`` (:meth:`DeviceModel.advance`)
and returns one contract payload (a ``linli.contract`` model) with ``ts`` and the next ``seq``.
Every model draws from its own ``random.Random`` seeded from (seed, site, device), so a fixed seed
and the same sequence of calls reproduce a run exactly.

First-cut physics:

* streetlight: relay closed from sunset (+ the site's on-offset) to sunrise (+ off-offset) at the
  site's coordinates (``astral``); 100 % until 23:00 local, then 50 %; power = rated x dim with
  +-2 % noise, a supply voltage wandering in 220-232 V, current = P / (V pf), energy, burn hours and
  switch count accumulating; ~0.3 W standby by day.
* elevator: idles at a landing, answers calls (busier at rush hours), opens and closes its door,
  travels between the building's landings with a trapezoidal speed profile capped at rated speed.
* charger: Available -> Preparing -> Charging -> Finishing -> Available sessions per connector;
  near-rated power while charging, an energy meter that never decreases.

Faults a model itself shows (:meth:`DeviceModel.set_fault`): ``lamp_failure`` on a streetlight.
Whether a device publishes at all (``offline``) is the runtime's business.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import ClassVar, Generic, TypeVar
from zoneinfo import ZoneInfo

from astral import Observer
from astral.sun import elevation, sun

from firmware_sim.faults import Fault
from linli.clock import to_ms
from linli.contract import ChargerTelemetry, ElevatorTelemetry, Status, StreetlightTelemetry
from linli.site import Device, Site

__all__ = [
    "AnyModel",
    "ChargerModel",
    "DeviceModel",
    "ElevatorModel",
    "Sky",
    "StreetlightModel",
    "build_models",
    "model_for",
]


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
        return float(elevation(self._observer, _utc(now)))

    def lights_on(self, now: datetime) -> bool:
        """The astronomical schedule: on from sunset + on-offset until sunrise + off-offset."""
        local = self.local(now)
        times = self.sun_times(local.date())
        if times is None:
            return self.elevation(now) < -0.833
        sunrise, sunset = times
        # After midnight the light belongs to the previous evening's night until this morning's sunrise.
        return local < sunrise + self._off_offset or local >= sunset + self._on_offset

    def lux(self, now: datetime, rng: random.Random) -> float:
        """Ambient illuminance at a luminaire's sensor (shaded by its own housing at night)."""
        height = self.elevation(now)
        if height > 0:
            value = 400.0 + 90_000.0 * math.sin(math.radians(height)) * rng.uniform(0.3, 1.0)
        elif height > -6:  # civil twilight: roughly 3 lx at -6 degrees to 400 lx at sunrise
            value = 3.0 * 10 ** ((height + 6.0) / 6.0 * 2.12)
        else:
            value = rng.uniform(0.5, 3.0)
        return round(value * rng.uniform(0.95, 1.05), 1)


# ---------------------------------------------------------------- the common part


T = TypeVar("T", StreetlightTelemetry, ElevatorTelemetry, ChargerTelemetry)


class DeviceModel(ABC, Generic[T]):
    """State of one device, advanced by time; builds its contract payloads (``T``)."""

    kind: ClassVar[str]
    model_name: str  # a class attribute, or set per instance when it depends on the device
    fw: ClassVar[str]
    supported_faults: ClassVar[frozenset[Fault]] = frozenset()

    def __init__(self, site: Site, device: Device, *, start: datetime, seed: int = 0, boot: int = 1) -> None:
        if device.kind != self.kind:
            raise ValueError(f"{device.id} is a {device.kind}, not a {self.kind}")
        self.site_id = site.id
        self.device = device
        self.tz = ZoneInfo(site.spec.site.timezone)
        self.rng = random.Random(f"{seed}/{site.id}/{device.id}")
        self.seq = 0  # the next message's seq; shared by telemetry and events
        self.boot = boot
        self.faults: set[Fault] = set()
        self.now = _utc(start)  # the state describes this moment

    @property
    def device_id(self) -> str:
        return self.device.id

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
        """Every telemetry message the device publishes per period (one per connector for chargers)."""
        return [self.telemetry(now)]

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

    def set_fault(self, fault: Fault, active: bool, now: datetime) -> None:
        """Start or end a fault the device's measurements show (state is advanced to ``now`` first)."""
        if fault not in self.supported_faults:
            raise ValueError(f"a {self.kind} model cannot show {fault}")
        self.advance(now)
        if active:
            self.faults.add(fault)
        else:
            self.faults.discard(fault)

    @abstractmethod
    def _advance(self, start: datetime, end: datetime) -> None: ...

    @abstractmethod
    def _sample(self, now: datetime, seq: int) -> T: ...


# ---------------------------------------------------------------- streetlight


class StreetlightModel(DeviceModel[StreetlightTelemetry]):
    kind = "streetlight"
    model_name = "LC-200"
    fw = "2.3.1"
    supported_faults = frozenset({Fault.LAMP_FAILURE})

    STANDBY_W = 0.3
    MAX_STEP_S = 60.0  # switching is resolved to this step when advancing over long spans
    NIGHT_DIM_FROM_HOUR = 23  # 100 % until 23:00 local, then 50 % until morning
    NIGHT_DIM_PCT = 50.0

    def __init__(
        self, site: Site, device: Device, *, start: datetime, seed: int = 0, boot: int = 1, sky: Sky | None = None
    ) -> None:
        super().__init__(site, device, start=start, seed=seed, boot=boot)
        assert device.rated_power_w is not None  # the site loader guarantees it for streetlights
        self.rated_w = device.rated_power_w
        self.sky = sky or Sky.for_site(site)
        rng = self.rng
        self.relay = self.sky.lights_on(self.now)
        self.burn_hours = rng.uniform(1_500.0, 25_000.0)
        self.switch_count = int(self.burn_hours / 11.5) + rng.randint(0, 40)
        self.energy_kwh = self.burn_hours * self.rated_w * 0.8 / 1000.0
        self.voltage_v = rng.uniform(222.0, 230.0)
        self._pf = rng.uniform(0.945, 0.965)
        self._leak_ma = rng.uniform(0.1, 0.8)
        self.driver_temp_c = self._temp_target(self.now)

    @property
    def lamp_failed(self) -> bool:
        return Fault.LAMP_FAILURE in self.faults

    def dim_pct(self, now: datetime) -> float:
        hour = now.astimezone(self.tz).hour
        return self.NIGHT_DIM_PCT if hour >= self.NIGHT_DIM_FROM_HOUR or hour < 12 else 100.0

    def expected_power_w(self, now: datetime) -> float:
        """What the fault catalog expects: rated x dim / 100 while the relay is closed, else 0."""
        return self.rated_w * self.dim_pct(now) / 100.0 if self.relay else 0.0

    def _nominal_power_w(self, now: datetime) -> float:
        if not self.relay:
            return self.STANDBY_W
        if self.lamp_failed:
            return self.STANDBY_W + 0.1
        return self.rated_w * self.dim_pct(now) / 100.0

    def _temp_target(self, now: datetime) -> float:
        local = now.astimezone(self.tz)
        local_hour = local.hour + local.minute / 60
        ambient = 22.0 + 5.0 * math.cos((local_hour - 15.0) / 24.0 * 2 * math.pi)
        lit = self.relay and not self.lamp_failed
        return ambient + (18.0 * self.dim_pct(now) / 100.0 if lit else 2.0)

    def _advance(self, start: datetime, end: datetime) -> None:
        t = start
        while t < end:
            step_end = min(end, t + timedelta(seconds=self.MAX_STEP_S))
            on = self.sky.lights_on(t)
            if on != self.relay:
                self.relay = on
                if on:
                    self.switch_count += 1
            dt_s = (step_end - t).total_seconds()
            self.energy_kwh += self._nominal_power_w(t) * dt_s / 3.6e6
            if self.relay and not self.lamp_failed:
                self.burn_hours += dt_s / 3600.0
            t = step_end
        # The relay follows the schedule at `end` too, so a sample right after switching time shows it.
        on = self.sky.lights_on(end)
        if on != self.relay:
            self.relay = on
            if on:
                self.switch_count += 1
        dt_total = (end - start).total_seconds()
        self.voltage_v = _clamp(_ou(self.voltage_v, 226.0, 2.0, 600.0, dt_total, rng=self.rng), 220.0, 232.0)
        self.driver_temp_c = _ou(self.driver_temp_c, self._temp_target(end), 0.5, 900.0, dt_total, rng=self.rng)

    def _sample(self, now: datetime, seq: int) -> StreetlightTelemetry:
        rng = self.rng
        voltage = _clamp(self.voltage_v + rng.gauss(0.0, 0.3), 220.0, 232.0)
        if self.relay and not self.lamp_failed:
            dim = self.dim_pct(now)
            power = self.rated_w * dim / 100.0 * (1.0 + rng.uniform(-0.02, 0.02))
            pf = self._pf - (0.015 if dim < 100 else 0.0) + rng.gauss(0.0, 0.003)
        elif self.relay:  # driver open circuit: the controller's own draw only
            dim = self.dim_pct(now)
            power = rng.uniform(0.0, 0.5)
            pf = rng.uniform(0.3, 0.5)
        else:
            dim = 0.0
            power = self.STANDBY_W + rng.uniform(-0.05, 0.05)
            pf = rng.uniform(0.4, 0.5)
        pf = _clamp(pf, 0.0, 0.99)
        current = power / (voltage * pf) if pf > 0 else 0.0
        leakage = _clamp(self._leak_ma + rng.gauss(0.0, 0.03), 0.1, 1.0)
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
            leakage_ma=round(leakage, 2),
            lux=self.sky.lux(now, rng),
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


@dataclass(slots=True)
class _Step:
    phase: _Car
    target: int = 0  # landing index, for MOVING
    board: bool | None = None  # OPEN: True = a passenger gets in, False = gets out


class ElevatorModel(DeviceModel[ElevatorTelemetry]):
    kind = "elevator"
    model_name = "EM-24476"
    fw = "1.8.0"

    FLOOR_HEIGHT_M = 3.0
    ACCEL_MPS2 = 0.8
    DOOR_OPENING_S = 2.0
    DOOR_CLOSING_S = 3.0
    DOOR_ZONE_M = 0.2  # the levelling zone either side of a landing

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
        v, a = self.rated_mps, self.ACCEL_MPS2
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

    def _begin(self, step: _Step, at: datetime) -> None:
        self._phase = step.phase
        self._phase_start = at
        if step.phase is _Car.MOVING:
            self._from, self._to = self.index, step.target
            self.trips += 1
            duration = self._travel(self._to - self._from)[0]
        elif step.phase is _Car.OPENING:
            duration = self.DOOR_OPENING_S
        elif step.phase is _Car.OPEN:
            if step.board is not None:
                self.occupied = step.board
            duration = self.rng.uniform(3.0, 8.0)
        else:
            duration = self.DOOR_CLOSING_S
        self._phase_end = at + timedelta(seconds=duration)

    def _finish_phase(self) -> None:
        at = self._phase_end
        if self._phase is _Car.MOVING:
            self.index = self._to
        if self._phase is _Car.IDLE:
            self._plan_trip()
        if self._plan:
            self._begin(self._plan.popleft(), at)
        else:
            self.occupied = False
            self._phase = _Car.IDLE
            self._phase_start = at
            self._phase_end = self._next_call(at)

    def _advance(self, start: datetime, end: datetime) -> None:
        while self._phase_end <= end:
            self._finish_phase()

    def _sample(self, now: datetime, seq: int) -> ElevatorTelemetry:
        moving = self._phase is _Car.MOVING
        if moving:
            covered, speed = self._run_state((now - self._phase_start).total_seconds())
            sign = 1 if self._to > self._from else -1
            position = self._from + sign * covered / self.FLOOR_HEIGHT_M
            nearest = round(position)
            door_zone = abs(position - nearest) * self.FLOOR_HEIGHT_M < self.DOOR_ZONE_M
            floor = self.landings[int(_clamp(nearest, 0, len(self.landings) - 1))]
            direction = "up" if sign > 0 else "down"
            speed = min(speed * (1.0 + self.rng.uniform(-0.01, 0.01)), self.rated_mps * 1.02)
            door = "closed"
        else:
            floor, door_zone, direction, speed = self.landings[self.index], True, "none", 0.0
            door = {_Car.OPENING: "opening", _Car.OPEN: "open", _Car.CLOSING: "closing"}.get(self._phase, "closed")
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
            mode="normal",
            mains=True,
            safety_circuit=True,
            alarm=False,
            trips=self.trips,
        )


# ---------------------------------------------------------------- charger


@dataclass(slots=True)
class _Connector:
    connector_id: int
    status: str = "Available"
    until: datetime = field(default_factory=lambda: datetime.max.replace(tzinfo=UTC))
    energy_kwh: float = 0.0  # the connector's meter
    session_id: str | None = None
    power_kw: float = 0.0  # this session's charging power
    target_kwh: float = 0.0
    battery_v: float = 0.0  # DC: the car's battery voltage


class ChargerModel(DeviceModel[ChargerTelemetry]):
    kind = "charger"
    fw = "1.6.4"

    AC_VOLTAGE_V = 228.0

    def __init__(self, site: Site, device: Device, *, start: datetime, seed: int = 0, boot: int = 1) -> None:
        super().__init__(site, device, start=start, seed=seed, boot=boot)
        assert device.rated_power_kw is not None
        self.rated_kw = device.rated_power_kw
        self.dc = self.rated_kw > 22.0
        self.model_name = f"DC{self.rated_kw:g}-OCPP16" if self.dc else f"AC{self.rated_kw:g}-OCPP16"
        rng = self.rng
        self.voltage_v = rng.uniform(224.0, 232.0)
        self.temp_c = rng.uniform(26.0, 30.0)
        self.sessions = rng.randint(0, 9_000)
        self.connectors = [_Connector(i) for i in range(1, device.connectors + 1)]
        for conn in self.connectors:
            conn.energy_kwh = rng.uniform(500.0, 20_000.0) * (4.0 if self.dc else 1.0)
            if rng.random() < 0.3:  # some piles are busy when the simulation starts
                self._start_session(conn, self.now)
                conn.status = "Charging"
                conn.until = self.now + timedelta(hours=rng.uniform(0.1, 1.0) * conn.target_kwh / conn.power_kw)
            else:
                conn.until = self._next_arrival(self.now)

    def _next_arrival(self, now: datetime) -> datetime:
        hour = now.astimezone(self.tz).hour
        if self.dc:
            mean_h = 0.7 if 7 <= hour < 23 else 3.0
        else:
            mean_h = 1.5 if 18 <= hour < 23 else (4.0 if hour >= 23 or hour < 7 else 3.0)
        return now + timedelta(hours=self.rng.expovariate(1.0 / mean_h))

    def _start_session(self, conn: _Connector, at: datetime) -> None:
        rng = self.rng
        self.sessions += 1
        conn.session_id = f"S-{at.astimezone(self.tz):%Y%m%d}-{self.sessions % 10_000:04d}"
        if self.dc:
            conn.power_kw = self.rated_kw * rng.uniform(0.65, 0.95)
            conn.target_kwh = rng.uniform(15.0, 45.0)
            conn.battery_v = rng.uniform(350.0, 400.0)
        else:
            conn.power_kw = self.rated_kw * rng.uniform(0.93, 0.99)
            conn.target_kwh = rng.uniform(5.0, 35.0)

    def _step(self, conn: _Connector) -> None:
        """The connector's current state ends at ``conn.until``; move to the next one."""
        at, rng = conn.until, self.rng
        if conn.status == "Available":
            self._start_session(conn, at)
            conn.status, conn.until = "Preparing", at + timedelta(seconds=rng.uniform(15.0, 90.0))
        elif conn.status == "Preparing":
            conn.status, conn.until = "Charging", at + timedelta(hours=conn.target_kwh / conn.power_kw)
        elif conn.status == "Charging":
            conn.status, conn.until = "Finishing", at + timedelta(seconds=rng.uniform(60.0, 900.0))
        else:
            conn.status, conn.session_id, conn.power_kw = "Available", None, 0.0
            conn.until = self._next_arrival(at)

    def _advance(self, start: datetime, end: datetime) -> None:
        for conn in self.connectors:
            t = start
            while True:
                stop = min(conn.until, end)
                if conn.status == "Charging" and stop > t:
                    conn.energy_kwh += conn.power_kw * (stop - t).total_seconds() / 3600.0
                t = stop
                if conn.until > end:
                    break
                self._step(conn)
        dt_s = (end - start).total_seconds()
        load = sum(c.power_kw for c in self.connectors if c.status == "Charging") / (self.rated_kw * len(self.connectors))
        self.voltage_v = _clamp(_ou(self.voltage_v, self.AC_VOLTAGE_V, 1.5, 600.0, dt_s, rng=self.rng), 220.0, 236.0)
        self.temp_c = _clamp(_ou(self.temp_c, 27.0 + 15.0 * load, 0.5, 600.0, dt_s, rng=self.rng), 25.0, 45.0)

    def telemetry(self, now: datetime, connector_id: int = 1) -> ChargerTelemetry:
        self.advance(now)
        return self._sample_connector(self.now, self.next_seq(), self.connectors[connector_id - 1])

    def messages(self, now: datetime) -> list[ChargerTelemetry]:
        self.advance(now)
        return [self._sample_connector(self.now, self.next_seq(), conn) for conn in self.connectors]

    def _sample(self, now: datetime, seq: int) -> ChargerTelemetry:
        return self._sample_connector(now, seq, self.connectors[0])

    def _sample_connector(self, now: datetime, seq: int, conn: _Connector) -> ChargerTelemetry:
        rng = self.rng
        charging = conn.status == "Charging"
        power = conn.power_kw * (1.0 + rng.uniform(-0.01, 0.01)) if charging else 0.0
        if self.dc:
            voltage = conn.battery_v + rng.uniform(-1.0, 1.0) if charging else 0.0
        else:
            voltage = self.voltage_v + rng.gauss(0.0, 0.3)
        current = power * 1000.0 / voltage if charging and voltage > 0 else 0.0
        return ChargerTelemetry(
            ts=to_ms(now),
            seq=seq,
            status=conn.status,  # type: ignore[arg-type]  # one of the Literal's values
            error_code="NoError",
            connector_id=conn.connector_id,
            power_kw=round(power, 2),
            voltage_v=round(voltage, 1),
            current_a=round(current, 1),
            energy_kwh=round(conn.energy_kwh, 3),
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
