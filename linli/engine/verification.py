"""Verification: a resolved ticket closes only when the device's own telemetry proves the repair.

Pure code. After a technician resolves a ticket, the device must be healthy through a soak period
(a streetlight: its next full night, the next full day for `day_burning`; an elevator: 20 trips;
a charger: 2 sessions or 24 h), with healthy samples covering at least 90% of it. Silence never
verifies: a soak without enough healthy samples starts again. The fault coming back during the soak
reopens the ticket.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from linli.astro import sun_times
from linli.site import Site
from linli.tickets import Subject

COVERAGE = 0.90  # healthy samples must cover this share of the soak
ELEVATOR_TRIPS = 20
CHARGER_SESSIONS = 2
CHARGER_SOAK = timedelta(hours=24)
RELAPSE_SAMPLES = 2  # unhealthy samples in a row that count as the fault coming back
MAX_CREDIT_INTERVALS = 2  # a sample vouches for at most this many reporting intervals of time


class SoakOutcome(StrEnum):
    VERIFIED = "verified"
    RELAPSED = "relapsed"
    INCONCLUSIVE = "inconclusive"  # not enough healthy samples (silence): the soak starts again


@dataclass(frozen=True, slots=True)
class Resolution:
    """A resolved ticket the gateway watches (read from the ticket store)."""

    ticket_id: int
    site: str
    subject: Subject
    fault: str
    kind: str  # the device kind
    device_ids: tuple[str, ...]
    resolved_at: datetime


@dataclass(slots=True)
class _DeviceSoak:
    healthy_s: float = 0.0
    last_sample: datetime | None = None
    unhealthy_run: int = 0
    trips_at_start: int | None = None
    trips: int = 0
    sessions: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Soak:
    resolution: Resolution
    starts: datetime
    ends: datetime | None  # None: ends by count (elevator trips, charger sessions)
    devices: dict[str, _DeviceSoak]
    attempt: int = 1

    def coverage(self, now: datetime) -> float:
        span = ((self.ends or now) - self.starts).total_seconds()
        if span <= 0:
            return 0.0
        return min(min(d.healthy_s for d in self.devices.values()) / span, 1.0) if self.devices else 0.0


def soak_window(site: Site, resolution: Resolution, after: datetime) -> tuple[datetime, datetime | None]:
    """When the soak of `resolution` starts and (for time-based soaks) ends, from `after` on."""
    if resolution.kind == "streetlight":
        return _next_full_period(site, after, day=resolution.fault in ("day_burning", "light_on_by_day"))
    if resolution.kind == "charger":
        return after, after + CHARGER_SOAK
    return after, None


def _next_full_period(site: Site, after: datetime, *, day: bool) -> tuple[datetime, datetime]:
    """The next whole night (lights scheduled on) or day (scheduled off) beginning at or after `after`."""
    schedule = site.spec.site.lighting_schedule
    zone = ZoneInfo(site.spec.site.timezone)
    local_day = after.astimezone(zone).date()
    for offset in range(0, 3):
        today = local_day + timedelta(days=offset)
        sunrise, sunset = sun_times(site, today)
        next_sunrise, _ = sun_times(site, today + timedelta(days=1))
        on_at = sunset + timedelta(minutes=schedule.on_offset_min)
        off_today = sunrise + timedelta(minutes=schedule.off_offset_min)
        off_next = next_sunrise + timedelta(minutes=schedule.off_offset_min)
        start, end = (off_today, on_at) if day else (on_at, off_next)
        if start >= after:
            return start, end
    raise AssertionError("a night and a day always begin within three days")  # pragma: no cover


class Verifier:
    """Soaks of the resolved tickets of one engine: fed samples, it says when each ends and how."""

    def __init__(self) -> None:
        self._soaks: dict[int, Soak] = {}

    def watching(self) -> set[int]:
        return set(self._soaks)

    def soaks(self) -> list[Soak]:
        return list(self._soaks.values())

    def sync(self, site_of: dict[str, Site], resolutions: list[Resolution], now: datetime) -> None:
        """Watch the tickets now resolved; forget those no longer resolved (reopened, cancelled...)."""
        current = {r.ticket_id: r for r in resolutions}
        for ticket_id in list(self._soaks):
            if ticket_id not in current:
                del self._soaks[ticket_id]
        for ticket_id, resolution in current.items():
            site = site_of.get(resolution.site)
            if ticket_id in self._soaks or site is None:
                continue
            starts, ends = soak_window(site, resolution, max(resolution.resolved_at, now - timedelta(days=1)))
            self._soaks[ticket_id] = Soak(resolution, starts, ends, {d: _DeviceSoak() for d in resolution.device_ids})

    def sample(
        self, site: str, device_id: str, at: datetime, interval_s: float, healthy: dict[str, bool | None],
        *, trips: int | None = None, session: str | None = None,
    ) -> list[tuple[Soak, SoakOutcome]]:
        """One sample of a device; `healthy` maps fault code to the device's health for it now."""
        ended: list[tuple[Soak, SoakOutcome]] = []
        for soak in list(self._soaks.values()):
            r = soak.resolution
            state = soak.devices.get(device_id)
            if r.site != site or state is None or at < soak.starts or (soak.ends is not None and at > soak.ends):
                continue
            verdict = healthy.get(r.fault)
            if verdict is False:
                state.unhealthy_run += 1
                state.last_sample = at
                if state.unhealthy_run >= RELAPSE_SAMPLES:
                    del self._soaks[r.ticket_id]
                    ended.append((soak, SoakOutcome.RELAPSED))
                continue
            state.unhealthy_run = 0
            if verdict is True:
                since = state.last_sample or soak.starts
                credit = min((at - since).total_seconds(), MAX_CREDIT_INTERVALS * interval_s)
                state.healthy_s += max(credit, 0.0)
            state.last_sample = at
            if trips is not None:
                if state.trips_at_start is None:
                    state.trips_at_start = trips
                state.trips = trips - state.trips_at_start
            if session:
                state.sessions.add(session)
            if soak.ends is None and self._count_done(soak):
                ended.append(self._end(soak, at))
        return ended

    def tick(self, site_of: dict[str, Site], now: datetime) -> list[tuple[Soak, SoakOutcome]]:
        """Time-based soaks that are over; a charger's ends early after 2 sessions."""
        ended: list[tuple[Soak, SoakOutcome]] = []
        for soak in list(self._soaks.values()):
            if soak.ends is not None and (now >= soak.ends or (soak.resolution.kind == "charger" and self._count_done(soak))):
                outcome_soak = self._end(soak, min(now, soak.ends))
                ended.append(outcome_soak)
                if outcome_soak[1] is SoakOutcome.INCONCLUSIVE:
                    site = site_of.get(soak.resolution.site)
                    if site is not None:  # silence never verifies: watch the next period instead
                        starts, ends = soak_window(site, soak.resolution, soak.ends)
                        self._soaks[soak.resolution.ticket_id] = Soak(
                            soak.resolution, starts, ends, {d: _DeviceSoak() for d in soak.resolution.device_ids},
                            soak.attempt + 1,
                        )
        return ended

    def _count_done(self, soak: Soak) -> bool:
        kind = soak.resolution.kind
        if kind == "elevator":
            return all(d.trips >= ELEVATOR_TRIPS for d in soak.devices.values())
        if kind == "charger":
            return all(len(d.sessions) >= CHARGER_SESSIONS for d in soak.devices.values())
        return False

    def _end(self, soak: Soak, at: datetime) -> tuple[Soak, SoakOutcome]:
        self._soaks.pop(soak.resolution.ticket_id, None)
        if soak.ends is None or (soak.resolution.kind == "charger" and at < soak.ends):
            soak.ends = at
        return soak, SoakOutcome.VERIFIED if soak.coverage(at) >= COVERAGE else SoakOutcome.INCONCLUSIVE
