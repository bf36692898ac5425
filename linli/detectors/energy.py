"""`energy_anomaly`: each light's nightly energy against its own robust baseline.

A night runs from sunset + on-offset to the next sunrise + off-offset (local time). Its energy is
the ``energy_kwh`` meter's rise from the night's first to its last sample, scaled to the whole
night (the samples must span ``energy_min_coverage_pct`` of it, with no gap over
``energy_max_gap_s``). A night with a schedule change or a staff command, a supply loss, a
power-related fault of the light, a meter going backwards or missing data is skipped: it is
neither judged nor added to the baseline.

The baseline is the last ``energy_baseline_nights`` judged-normal nights. Once it has
``energy_min_nights``, a night is anomalous when its robust z, ``(energy - median) / (1.4826 *
max(MAD, floor% * median))``, is above ``energy_z`` in either direction; an anomalous night does
not enter the baseline (a lasting fault must not become the new normal).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from linli.astro import sun_times
from linli.detectors.thresholds import Thresholds
from linli.site import Site

MAD_SCALE = 1.4826  # MAD of a normal distribution = 0.6745 sigma


@dataclass(slots=True)
class Night:
    evening: date  # the local date the night began
    start: datetime
    end: datetime
    first_at: datetime | None = None
    first_kwh: float = 0.0
    last_at: datetime | None = None
    last_kwh: float = 0.0
    max_gap_s: float = 0.0
    skip: str | None = None  # why the night cannot be judged

    def dump(self) -> dict[str, Any]:
        return {
            "evening": self.evening.isoformat(), "start": self.start.isoformat(), "end": self.end.isoformat(),
            "first_at": self.first_at.isoformat() if self.first_at else None, "first_kwh": self.first_kwh,
            "last_at": self.last_at.isoformat() if self.last_at else None, "last_kwh": self.last_kwh,
            "max_gap_s": self.max_gap_s, "skip": self.skip,
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> Night:
        def moment(key: str) -> datetime | None:
            value = data.get(key)
            return datetime.fromisoformat(value) if isinstance(value, str) else None

        start, end = moment("start"), moment("end")
        assert start is not None and end is not None
        return cls(date.fromisoformat(data["evening"]), start, end, moment("first_at"), float(data.get("first_kwh", 0)),
                   moment("last_at"), float(data.get("last_kwh", 0)), float(data.get("max_gap_s", 0)), data.get("skip"))


@dataclass(frozen=True, slots=True)
class Verdict:
    """A night judged: anomalous or not, with the numbers for the ticket's text."""

    anomalous: bool
    energy_kwh: float
    median_kwh: float
    z: float


@dataclass(slots=True)
class EnergyBaseline:
    site: Site
    th: Thresholds
    on_offset_min: int
    off_offset_min: int
    night: Night | None = None
    # The judged-normal nights' energies, oldest first: 8 bytes each, created when the first night
    # completes (one of these per light: no container before that).
    baseline: array[float] | None = None
    skipped: int = 0  # nights skipped so far (for the device page)

    def night_of(self, at: datetime) -> tuple[date, datetime, datetime] | None:
        """The night `at` falls in: (evening date, start, end), or None by day (or on a polar day/night)."""
        local = at.astimezone(ZoneInfo(self.site.spec.site.timezone))
        try:
            for evening in (local.date(), local.date() - timedelta(days=1)):
                start = sun_times(self.site, evening)[1] + timedelta(minutes=self.on_offset_min)
                end = sun_times(self.site, evening + timedelta(days=1))[0] + timedelta(minutes=self.off_offset_min)
                if start <= local < end:
                    return evening, start, end
        except ValueError:
            return None
        return None

    def mark(self, at: datetime, reason: str) -> None:
        """Something makes the night containing `at` unjudgeable (a command, a fault, a supply loss)."""
        if self.night is not None and self.night.start <= at < self.night.end and self.night.skip is None:
            self.night.skip = reason

    def sample(self, at: datetime, energy_kwh: float | None) -> Verdict | None:
        """Feed one sample; returns the verdict of a night that ended before it, if one could be judged."""
        verdict = self.close(at)
        current = self.night_of(at)
        if current is None:
            return verdict
        evening, start, end = current
        if self.night is None or self.night.evening != evening:
            self.night = Night(evening, start, end)
        night = self.night
        if energy_kwh is None:
            night.skip = night.skip or "no energy_kwh"
            return verdict
        if night.last_at is not None:
            night.max_gap_s = max(night.max_gap_s, (at - night.last_at).total_seconds())
            if energy_kwh < night.last_kwh:
                night.skip = night.skip or "the meter went backwards"
        if night.first_at is None:
            night.first_at, night.first_kwh = at, energy_kwh
        night.last_at, night.last_kwh = at, energy_kwh
        return verdict

    def close(self, now: datetime) -> Verdict | None:
        """Judge the current night once `now` is past its end."""
        night = self.night
        if night is None or now < night.end:
            return None
        self.night = None
        energy = self._energy(night)
        if energy is None:
            self.skipped += 1
            return None
        if self.baseline is None or len(self.baseline) < self.th.energy_min_nights:
            self._add(energy)
            return None
        values = np.array(self.baseline, dtype=float)  # a copy: a view would pin the array's size
        median = float(np.median(values))
        mad = float(np.median(np.abs(values - median)))
        spread = MAD_SCALE * max(mad, self.th.energy_mad_floor_pct / 100 * abs(median))
        z = (energy - median) / spread if spread > 0 else 0.0
        anomalous = abs(z) > self.th.energy_z
        if not anomalous:
            self._add(energy)
        return Verdict(anomalous, energy, median, z)

    def _energy(self, night: Night) -> float | None:
        if night.skip is not None or night.first_at is None or night.last_at is None:
            return None
        length = (night.end - night.start).total_seconds()
        covered = (night.last_at - night.first_at).total_seconds()
        edges = max((night.first_at - night.start).total_seconds(), (night.end - night.last_at).total_seconds())
        if length <= 0 or covered < self.th.energy_min_coverage_pct / 100 * length:
            return None
        if night.max_gap_s > self.th.energy_max_gap_s or edges > max(self.th.energy_max_gap_s, length - covered):
            return None
        return (night.last_kwh - night.first_kwh) * length / covered

    def _add(self, energy: float) -> None:
        if self.baseline is None:
            self.baseline = array("d")
        self.baseline.append(energy)
        excess = len(self.baseline) - self.th.energy_baseline_nights
        if excess > 0:
            del self.baseline[:excess]

    def dump(self) -> dict[str, Any]:
        return {"night": self.night.dump() if self.night else None, "baseline": list(self.baseline or ()),
                "skipped": self.skipped, "on_offset_min": self.on_offset_min, "off_offset_min": self.off_offset_min}

    def load(self, data: dict[str, Any]) -> None:
        night = data.get("night")
        self.night = Night.load(night) if isinstance(night, dict) else None
        self.baseline = array("d", (float(v) for v in data.get("baseline") or [])) or None
        self.skipped = int(data.get("skipped", 0))
        self.on_offset_min = int(data.get("on_offset_min", self.on_offset_min))
        self.off_offset_min = int(data.get("off_offset_min", self.off_offset_min))
