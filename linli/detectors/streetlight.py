"""A streetlight's detectors (fault catalog, "Streetlight"): lamp, power, daylight, supply, leakage, energy.

Expected power = rated power x ``dim_pct`` / 100 while the relay is closed. Rules that read the
lamp (lamp_failure, lamp_power_*, power_factor_low, cycling) have no evidence while the relay is
open or the supply is lost (voltage under ``supply_present_v``): their timers stop and restart.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from linli.astro import sun_times
from linli.catalog import Severity
from linli.contract import Command, StreetlightTelemetry
from linli.detectors.base import DetectorBase, Signal, _dt, _iso, dump_times, load_times
from linli.detectors.energy import EnergyBaseline
from linli.detectors.samples import LightSample
from linli.detectors.thresholds import Thresholds
from linli.site import Device, Site

# Faults whose night says nothing about the light's normal energy.
_ENERGY_EXPLAINED = ("lamp_failure", "lamp_power_high", "lamp_power_low", "cycling", "day_burning")


class StreetlightDetectors(DetectorBase):
    __slots__ = ("energy", "lit", "off_offset_min", "on_offset_min", "rated_w", "relay_closed_at", "sample",
                 "seen_relay_open", "staff_on_until", "transitions", "tz")
    kind = "streetlight"
    OWNED = (
        "lamp_failure", "lamp_power_high", "lamp_power_low", "day_burning", "cycling", "supply_voltage_high",
        "supply_voltage_low", "power_factor_low", "leakage", "end_of_life", "energy_anomaly",
    )

    def __init__(self, site: Site, device: Device, thresholds: Thresholds) -> None:
        super().__init__(site, device, thresholds)
        assert device.rated_power_w is not None  # the site loader guarantees it for a streetlight
        self.rated_w = device.rated_power_w
        schedule = site.spec.site.lighting_schedule
        self.on_offset_min, self.off_offset_min = schedule.on_offset_min, schedule.off_offset_min
        self.tz = ZoneInfo(site.spec.site.timezone)
        self.sample: LightSample | None = None  # the latest telemetry (a tuple: kept per device)
        self.relay_closed_at: datetime | None = None
        self.seen_relay_open = False
        self.lit: bool | None = None  # the lamp's last lit/dark state while the relay is closed and warm
        self.transitions: list[datetime] | None = None  # lit/dark changes within the cycling window; None: none
        self.staff_on_until: datetime | None = None
        self.energy = EnergyBaseline(site, thresholds, self.on_offset_min, self.off_offset_min)

    # ------------------------------------------------------------ inputs

    def supply_lost(self) -> bool:
        return self.sample is not None and self.sample.voltage_v < self.th.supply_present_v

    def _command(self, command: Command, at: datetime) -> None:
        params = command.params
        if command.action == "set_light":
            self.energy.mark(at, "a staff command")
            if params.get("relay") is True:
                self.staff_on_until = self._daylight_end(at)
            elif params.get("relay") is False:
                self.staff_on_until = None
        elif command.action == "set_schedule":
            on, off = params.get("on_offset_min"), params.get("off_offset_min")
            on = on if isinstance(on, int) and not isinstance(on, bool) else self.on_offset_min
            off = off if isinstance(off, int) and not isinstance(off, bool) else self.off_offset_min
            if (on, off) != (self.on_offset_min, self.off_offset_min):  # a re-push of the same schedule changes nothing
                self.energy.mark(at, "a schedule change")
            self.on_offset_min = self.energy.on_offset_min = on
            self.off_offset_min = self.energy.off_offset_min = off

    def _sample(self, body: Any, at: datetime) -> None:
        if not isinstance(body, StreetlightTelemetry):
            return
        th = self.th
        self.sample = body = LightSample.of(body)
        supplied = body.voltage_v >= th.supply_present_v
        if not body.relay:
            self.relay_closed_at, self.seen_relay_open, self.lit = None, True, None
        elif self.relay_closed_at is None:
            # A light first seen with its relay already closed counts as warmed up.
            self.relay_closed_at = at if self.seen_relay_open else at - timedelta(seconds=th.lamp_warm_up_s)
        dark = self._dark(body)
        warm = self._warm(at)
        lamp_seen = body.relay and supplied and dark is not None
        # lamp_failure: dark counted from the first dark sample, samples once warmed up.
        self._feed("dark", lamp_seen and dark, at)
        self._feed("dark_warm", lamp_seen and dark and warm, at)
        # cycling: a lit/dark change between two warm samples with the relay closed.
        if lamp_seen and warm:
            assert dark is not None
            if self.lit is not None and self.lit == dark:
                if self.transitions is None:
                    self.transitions = []
                self.transitions.append(at)
            self.lit = not dark
        elif not (body.relay and supplied):
            self.lit = None
        lit_warm = lamp_seen and warm and not dark
        expected = self._expected(body)
        tolerance = th.lamp_power_tolerance_pct / 100 * self.rated_w
        self._feed("power_high", lit_warm and body.power_w - expected > tolerance, at)
        self._feed("power_low", lit_warm and expected - body.power_w > tolerance, at)
        self._feed("day", self._day_burning(body, at), at)
        self._feed("volt_high", supplied and body.voltage_v > th.supply_voltage_high_v, at)
        self._feed("volt_low", supplied and body.voltage_v < th.supply_voltage_low_v, at)
        self._feed("pf", self._pf_low(body, at), at)
        leak = body.leakage_ma if supplied else None
        self._feed("leak_p2", leak is not None and leak >= th.leakage_p2_ma, at)
        self._feed("leak_p0", leak is not None and leak >= th.leakage_p0_ma, at)
        if not supplied:
            self.energy.mark(at, "supply lost")

    # ------------------------------------------------------------ rules

    def _expected(self, body: LightSample) -> float:
        dim = body.dim_pct if body.dim_pct is not None else 100.0
        return self.rated_w * dim / 100 if body.relay else 0.0

    def _dark(self, body: LightSample) -> bool | None:
        expected = self._expected(body)
        if expected <= 0:
            return None
        return body.power_w < self.th.lamp_dark_pct / 100 * expected

    def _dark_needed_s(self) -> float:
        """Dark for the catalog's samples' worth of reporting intervals, at most `lamp_failure_dark_s`:
        a driver relighting by itself within a minute is cycling, and a fast reporter (the demo's 2 s)
        is not made to wait a minute for two samples."""
        th = self.th
        return min(th.lamp_failure_dark_s, th.lamp_failure_samples * self.interval_s)

    def _warm(self, at: datetime) -> bool:
        return self.relay_closed_at is not None and (at - self.relay_closed_at).total_seconds() >= self.th.lamp_warm_up_s

    def _daylight(self, at: datetime) -> bool | None:
        """The astronomical clock says off: sun up and `day_burning_after_sunrise_min` past sunrise + offset."""
        local = at.astimezone(self.tz)
        try:
            sunrise, sunset = sun_times(self.site, local.date())
        except ValueError:  # a polar day or night: no astronomical clock to judge by
            return None
        begin = sunrise + timedelta(minutes=self.off_offset_min + self.th.day_burning_after_sunrise_min)
        return begin <= local < sunset + timedelta(minutes=self.on_offset_min)

    def _daylight_end(self, at: datetime) -> datetime | None:
        local = at.astimezone(self.tz)
        for day in (local.date(), local.date() + timedelta(days=1)):
            try:
                end = sun_times(self.site, day)[1] + timedelta(minutes=self.on_offset_min)
            except ValueError:
                return None
            if end > local:
                return end
        return None

    def _day_burning(self, body: LightSample, at: datetime) -> bool | None:
        if not self._daylight(at) or body.voltage_v < self.th.supply_present_v:
            return None
        if self.staff_on_until is not None and at < self.staff_on_until:
            return None  # staff switched it on: lit by day on purpose
        return body.power_w > self.th.day_burning_pct / 100 * self.rated_w

    def _pf_low(self, body: LightSample, at: datetime) -> bool | None:
        dark = self._dark(body)
        dim = body.dim_pct if body.dim_pct is not None else 100.0
        if (body.pf is None or dark is not False or not self._warm(at) or body.voltage_v < self.th.supply_present_v
                or dim < self.th.power_factor_full_dim_pct):
            return None
        return body.pf < self.th.power_factor_min

    def _evaluate(self, at: datetime, is_sample: bool, out: list[Signal]) -> None:
        body = self.sample
        if body is None:
            return
        th = self.th
        supplied = body.voltage_v >= th.supply_present_v
        sample_at = self.last_sample_at or at
        expected = self._expected(body)
        dark = self._dark(body)
        lamp_seen = body.relay and supplied and dark is not None

        # lamp_failure: sample-confirmed (a tick must not finish a dark spell that may have relit).
        ready = (lamp_seen and bool(dark) and self._count("dark_warm") >= th.lamp_failure_samples
                 and self._held("dark", sample_at) >= self._dark_needed_s())
        cond = None if not lamp_seen or (dark and not self._warm(sample_at)) else bool(dark)
        self._step("lamp_failure", cond, ready, at, out, is_sample=is_sample, clear_s=0,
                   clear_samples=th.lamp_clear_samples,
                   detail=f"灯具不亮：继电器闭合，电压 {body.voltage_v:.0f} V，功率 {body.power_w:.1f} W"
                          f"（预期 {expected:.0f} W）")

        lit_warm = lamp_seen and dark is False and self._warm(sample_at)
        for code, name, sign in (("lamp_power_high", "power_high", 1), ("lamp_power_low", "power_low", -1)):
            off = sign * (body.power_w - expected)
            cond = (off > th.lamp_power_tolerance_pct / 100 * self.rated_w) if lit_warm else None
            self._step(code, cond, bool(cond) and self._held(name, at) >= th.lamp_power_hold_s, at, out, is_sample=is_sample,
                       detail=f"{'功率偏高' if sign > 0 else '功率偏低'}：{body.power_w:.1f} W，预期 {expected:.0f} W"
                              f"（允差 {th.lamp_power_tolerance_pct:g}% 额定 {self.rated_w:g} W）")

        day = self._day_burning(body, sample_at)
        self._step("day_burning", day, bool(day) and self._held("day", at) >= th.day_burning_hold_s, at, out,
                   is_sample=is_sample, detail=f"白天亮灯：功率 {body.power_w:.1f} W（额定 {self.rated_w:g} W）")

        window = timedelta(seconds=th.cycling_window_s)
        transitions = self.transitions
        if transitions is not None:
            while transitions and at - transitions[0] > window:
                del transitions[0]
            if not transitions:
                self.transitions = None
        count = len(transitions) if transitions else 0
        cycling = count >= th.cycling_transitions
        self._step("cycling", cycling, cycling, at, out, is_sample=is_sample,
                   detail=f"灯具闪烁：{th.cycling_window_s / 60:.0f} 分钟内亮灭变化 {count} 次（继电器保持闭合）")
        if is_sample:
            self._healthy["cycling"] = count == 0

        volts = body.voltage_v
        high = volts > th.supply_voltage_high_v if supplied else None
        low = volts < th.supply_voltage_low_v if supplied else None
        self._step("supply_voltage_high", high, bool(high) and self._held("volt_high", at) >= th.supply_voltage_hold_s,
                   at, out, is_sample=is_sample,
                   detail=f"供电电压偏高：{volts:.0f} V（上限 {th.supply_voltage_high_v:g} V）")
        self._step("supply_voltage_low", low, bool(low) and self._held("volt_low", at) >= th.supply_voltage_hold_s,
                   at, out, is_sample=is_sample,
                   detail=f"供电电压偏低：{volts:.0f} V（下限 {th.supply_voltage_low_v:g} V）")

        pf = self._pf_low(body, sample_at)
        self._step("power_factor_low", pf, bool(pf) and self._held("pf", at) >= th.power_factor_hold_s, at, out,
                   is_sample=is_sample, detail=f"功率因数低：{body.pf}（下限 {th.power_factor_min:g}，满功率）")

        leak = body.leakage_ma if supplied else None
        p0 = leak is not None and leak >= th.leakage_p0_ma and self._count("leak_p0") >= th.leakage_p0_samples
        p2 = leak is not None and leak >= th.leakage_p2_ma and self._held("leak_p2", at) >= th.leakage_p2_hold_s
        limit = th.leakage_p0_ma if p0 else th.leakage_p2_ma
        self._step("leakage", None if leak is None else leak >= th.leakage_p2_ma, p0 or p2, at, out,
                   is_sample=is_sample, severity=Severity.P0 if p0 else Severity.P2, clear_s=th.leakage_clear_after_s,
                   detail=f"漏电 {leak if leak is not None else 0:.0f} mA（阈值 {limit:g} mA）")

        hours = body.burn_hours
        life = self.device.rated_life_h * th.end_of_life_pct / 100
        eol = None if hours is None else hours >= life
        self._step("end_of_life", eol, bool(eol), at, out, is_sample=is_sample, clear_samples=2,
                   detail=f"灯具寿命到期：累计点亮 {hours or 0:.0f} h（额定寿命 {life:g} h）")

        if is_sample:
            for code in _ENERGY_EXPLAINED:
                if self.holds.get(code) is not None and self.holds[code].active:
                    self.energy.mark(at, code)
            self._judge_night(self.energy.sample(at, body.energy_kwh), at, out)

    def _timed(self, now: datetime, out: list[Signal]) -> None:
        self._judge_night(self.energy.close(now), now, out)

    def _judge_night(self, verdict: Any, at: datetime, out: list[Signal]) -> None:
        if verdict is None:
            return
        direction = "偏高" if verdict.energy_kwh > verdict.median_kwh else "偏低"
        self._step("energy_anomaly", verdict.anomalous, verdict.anomalous, at, out, is_sample=True, clear_s=0,
                   detail=f"能耗异常：昨夜 {verdict.energy_kwh:.3f} kWh {direction}"
                          f"（基线中位数 {verdict.median_kwh:.3f} kWh，稳健 z={verdict.z:.1f}）")

    # ------------------------------------------------------------ snapshot

    def _extra_dump(self) -> dict[str, Any]:
        return {
            "relay_closed_at": _iso(self.relay_closed_at), "seen_relay_open": self.seen_relay_open, "lit": self.lit,
            "transitions": dump_times(self.transitions or []), "staff_on_until": _iso(self.staff_on_until),
            "on_offset_min": self.on_offset_min, "off_offset_min": self.off_offset_min,
            "sample": self.sample.dump() if self.sample else None,
            "energy": self.energy.dump(),
        }

    def _extra_load(self, data: dict[str, Any]) -> None:
        self.relay_closed_at = _dt(data.get("relay_closed_at"))
        self.seen_relay_open = bool(data.get("seen_relay_open"))
        lit = data.get("lit")
        self.lit = lit if isinstance(lit, bool) else None
        self.transitions = list(load_times(data.get("transitions"))) or None
        self.staff_on_until = _dt(data.get("staff_on_until"))
        self.on_offset_min = int(data.get("on_offset_min", self.on_offset_min))
        self.off_offset_min = int(data.get("off_offset_min", self.off_offset_min))
        sample = data.get("sample")
        self.sample = (LightSample.of(StreetlightTelemetry.model_validate(sample, strict=False))
                       if isinstance(sample, dict) else None)
        energy = data.get("energy")
        if isinstance(energy, dict):
            self.energy.load(energy)
