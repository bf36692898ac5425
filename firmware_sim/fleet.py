"""A synthetic county for scale runs: N sites x M concentrators x K streetlights, in memory.

:func:`county` builds real ``linli.site.Site`` objects (validated by the site models, deterministic
by seed): each site has M cabinets, each with one circuit and one concentrator (``CC-001`` ...),
and K single-lamp controllers per concentrator (``L001-0001`` ...) whose ``concentrator`` field
names it. :func:`fleet_models` is the cheap per-device model to simulate them with: a
:class:`FleetLight` costs a few hundred bytes and a few microseconds per message (one shared sky
lookup per site and minute, one shared RNG per concentrator, the JSON written directly), so one
process can run 100,000 of them through ~200 concentrator connections::

    sites = county(sites=20, concentrators=10, lights=500, seed=7)     # 100,000 lights
    sim = Simulator(sites, "mqtt://127.0.0.1:1883", model_factory=fleet_models(seed=7))

From the command line: ``linli sim --fleet 20x10x500 --speed max``.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from firmware_sim.faults import Fault
from firmware_sim.models import Sky
from firmware_sim.runtime import ModelFactory, SimModel
from linli.clock import to_ms
from linli.contract import Status
from linli.site import Device, Site, SiteFile, build_site

__all__ = ["FleetLight", "county", "fleet_models", "parse_fleet"]

RATINGS_W = (30.0, 40.0, 60.0, 80.0, 100.0)


def parse_fleet(text: str) -> tuple[int, int, int]:
    """``20x10x500`` -> (sites, concentrators per site, lights per concentrator); ValueError when bad."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        numbers = tuple(int(p) for p in parts)
    except ValueError:
        numbers = ()
    if len(numbers) != 3 or min(numbers) < 1:
        raise ValueError(f"{text!r}: expected SITESxCONCENTRATORSxLIGHTS, e.g. 20x10x500")
    if numbers[1] > 999 or numbers[2] > 9999 or numbers[0] > 999:
        raise ValueError(f"{text!r}: at most 999 sites, 999 concentrators per site, 9999 lights per concentrator")
    return numbers[0], numbers[1], numbers[2]


def county(sites: int, concentrators: int, lights: int, *, seed: int = 0, interval_s: int = 30,
           prefix: str = "county", own_uplink: bool = False) -> list[Site]:
    """``sites`` sites of ``concentrators`` concentrators of ``lights`` streetlights each.

    ``own_uplink``: no concentrators, every light has its own MQTT connection (for the
    per-device benchmark); the cabinets and circuits stay.
    """
    rng = random.Random(f"{seed}/county")
    out: list[Site] = []
    for s in range(1, sites + 1):
        site_id = f"{prefix}-{s:03d}"
        cabinets, concs, devices = [], [], []
        for c in range(1, concentrators + 1):
            cabinets.append({"id": f"CAB-{c:03d}", "name": f"Cabinet {c}",
                             "circuits": [{"id": f"C{c:03d}", "name": f"Circuit {c}", "switched": False}]})
            if not own_uplink:
                concs.append({"id": f"CC-{c:03d}", "name": f"Concentrator {c}", "cabinet": f"CAB-{c:03d}",
                              "interval_s": interval_s})
            for k in range(1, lights + 1):
                devices.append({"id": f"L{c:03d}-{k:04d}", "kind": "streetlight", "name": f"Light {c}-{k}",
                                "circuit": f"C{c:03d}", "rated_power_w": rng.choice(RATINGS_W),
                                "interval_s": interval_s, "concentrator": None if own_uplink else f"CC-{c:03d}"})
        spec = SiteFile.model_validate({
            "site": {"id": site_id, "name": f"Synthetic site {s}", "timezone": "Asia/Shanghai",
                     "coordinates": {"latitude": round(25.5 + rng.random(), 4), "longitude": round(118.8 + rng.random(), 4)}},
            "cabinets": cabinets,
            "concentrators": concs,
            "teams": {"property": {"name": "Property crew"}, "grid": {"name": "Grid centre"}},
            "devices": devices,
        })
        out.append(build_site(spec))
    return out


class _Dusk:
    """A site's lighting schedule, looked up once per minute for all its lights."""

    def __init__(self, sky: Sky) -> None:
        self.sky = sky
        self._minute = -1
        self._state = (False, 0.0)

    def state(self, now: datetime) -> tuple[bool, float]:
        minute = int(now.timestamp() // 60)
        if minute != self._minute:
            self._minute = minute
            on = self.sky.lights_on(now)
            hour = self.sky.local(now).hour
            self._state = (on, 50.0 if on and (hour >= 23 or hour < 12) else (100.0 if on else 0.0))
        return self._state


class _Raw:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def to_json(self) -> bytes:
        return self.data


class FleetLight:
    """A cheap single-lamp controller: relay and dim from the site's schedule (or a command),
    power with 2 % noise, a wandering supply voltage, an energy meter; lamp_failure and
    circuit_outage (no power) as faults."""

    __slots__ = ("boot", "device_id", "dusk", "energy_kwh", "faults", "last", "override", "rated_w", "rng", "seq", "volts")
    fw = "2.1.0"
    model_name = "LC-100"

    def __init__(self, device: Device, *, start: datetime, boot: int, dusk: _Dusk, rng: random.Random) -> None:
        self.device_id = device.id
        self.rated_w = device.rated_power_w or 60.0
        self.seq = 0
        self.boot = boot
        self.dusk = dusk
        self.rng = rng
        self.energy_kwh = round(rng.uniform(50.0, 900.0), 3)
        self.volts = rng.uniform(222.0, 230.0)
        self.last = start
        self.faults: set[Fault] = set()
        self.override: tuple[bool, float] | None = None

    def messages(self, now: datetime) -> list[_Raw]:
        on, dim = self.override if self.override is not None else self.dusk.state(now)
        rng = self.rng
        dt_s = (now - self.last).total_seconds()
        self.last = now
        lit = on and Fault.LAMP_FAILURE not in self.faults
        power = self.rated_w * dim / 100.0 * (0.98 + 0.04 * rng.random()) if lit else 0.3
        if dt_s > 0:
            self.energy_kwh += power * dt_s / 3.6e6
        self.volts = min(232.0, max(220.0, self.volts + (226.0 - self.volts) * 0.05 + rng.gauss(0.0, 0.4)))
        seq = self.seq
        self.seq += 1
        body = (
            f'{{"ts":{to_ms(now)},"seq":{seq},"relay":{"true" if on else "false"},"dim_pct":{dim if on else 0.0:g},'
            f'"power_w":{power:.2f},"voltage_v":{self.volts:.1f},"current_a":{power / self.volts / 0.95:.3f},'
            f'"energy_kwh":{self.energy_kwh:.3f}}}'
        )
        return [_Raw(body.encode())]

    def status(self, now: datetime, interval_s: int | None = None, *, online: bool = True) -> Status:
        if not online:
            return Status(online=False, ts=to_ms(now))
        return Status(online=True, ts=to_ms(now), fw=self.fw, model=self.model_name, interval_s=interval_s, boot=self.boot)

    def reboot(self) -> None:
        self.boot += 1
        self.seq = 0
        self.override = None

    def set_fault(self, fault: Fault, active: bool, now: datetime) -> None:
        if fault not in (Fault.LAMP_FAILURE, Fault.CIRCUIT_OUTAGE):
            raise ValueError(f"a fleet light cannot show {fault}")
        if active:
            self.faults.add(fault)
        else:
            self.faults.discard(fault)

    def powered(self, now: datetime) -> bool:
        return Fault.CIRCUIT_OUTAGE not in self.faults

    def command(self, action: str, params: dict[str, Any], now: datetime) -> tuple[bool, str | None]:
        if action == "set_light":
            relay, dim = params.get("relay"), params.get("dim_pct", 100)
            if not isinstance(relay, bool):
                return False, "set_light needs relay: true or false"
            if isinstance(dim, bool) or not isinstance(dim, int | float) or not 0 <= dim <= 100:
                return False, "dim_pct must be a number from 0 to 100"
            self.override = (relay, float(dim))
            return True, None
        if action == "set_schedule":
            self.override = None
            return True, None
        return False, f"{action} applies to another kind of device"


def fleet_models(base_seed: int = 0) -> ModelFactory:
    """A model factory for :class:`~firmware_sim.runtime.Simulator`: a :class:`FleetLight` per
    streetlight (one RNG per concentrator, one schedule cache per site)."""
    dusks: dict[str, _Dusk] = {}
    rngs: dict[tuple[str, str], random.Random] = {}

    def make(site: Site, device: Device, *, start: datetime, seed: int, boot: int, sky: Sky) -> SimModel:
        if device.kind != "streetlight":
            raise ValueError(f"the fleet model simulates streetlights only, not {device.id} ({device.kind})")
        dusk = dusks.get(site.id)
        if dusk is None or dusk.sky is not sky:
            dusk = dusks[site.id] = _Dusk(sky)
        group = (site.id, device.concentrator or device.id)
        rng = rngs.get(group)
        if rng is None:
            rng = rngs[group] = random.Random(f"{base_seed}/{site.id}/{group[1]}")
        return FleetLight(device, start=start, boot=boot, dusk=dusk, rng=rng)

    return make
