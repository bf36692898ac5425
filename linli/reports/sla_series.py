"""SLA figures over time: per day or week, tickets opened, acknowledged and fixed on time, times taken.

Pure code, like the monthly report and counted by its rules (``docs/reports.md``, "How the figures
are counted"): each ticket is walked once by :func:`linli.reports.monthly._walk`, which applies the
SLA rules of ``linli.sla`` (the 24 h acknowledgement floor, the hold that stops the fix clock,
rounds per dispatch); this module only says in which bucket each settled obligation falls.

- An acknowledgement or a fix counts once, in the bucket where it was settled: met on time (when
  it was met) or late (when its deadline passed while it was owed).
- Times to acknowledge and to fix count in the bucket where the acknowledgement or the
  resolution happened, measured from the round's dispatch (time on hold left out of the fix).
- ``opened`` counts openings (not reopenings) in the bucket.
- Severity and teams are the ticket's as of the cut-off (the end of the range, or ``as_of`` when
  earlier): a ticket raised from P2 to P1 counts as P1 in every bucket.
- Nothing after the cut-off is read, and a deadline still ahead of it is not late yet: the figures
  of a bucket that has not ended are the figures so far.

Buckets are local days, or ISO weeks (Monday to Sunday), in the site's time zone.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from linli.reports.monthly import SEVERITIES, ReportContext, Tally, TicketHistory, _minutes, _walk

BucketSize = Literal["day", "week"]
BUCKET_SIZES: tuple[BucketSize, ...] = ("day", "week")
MAX_BUCKETS: dict[str, int] = {"day": 366, "week": 106}  # a year of days, two years of weeks
DEFAULT_SPAN: dict[str, int] = {"day": 30, "week": 12}  # buckets shown when no range is asked for
EARLIEST, LATEST = date(2000, 1, 3), date(2999, 12, 29)  # whole weeks, far from the calendar's ends
_JUST_AFTER = timedelta(microseconds=1)  # `as_of` includes events at that very moment


class SeriesError(ValueError):
    """A range that is empty, reversed or too long for its bucket size."""


@dataclass(frozen=True, slots=True)
class Range:
    """Whole buckets in the site's time zone: [first day, last day], both included."""

    first: date
    last: date
    size: BucketSize

    def starts(self, timezone: str) -> list[datetime]:
        """Each bucket's start (local midnight), and the end of the last one."""
        zone = ZoneInfo(timezone)
        step = 1 if self.size == "day" else 7
        days = (self.last - self.first).days + 1
        return [datetime.combine(self.first + timedelta(days=n), datetime.min.time(), zone)
                for n in range(0, days + 1, step)]


def series_range(first: date | None, last: date | None, size: str, today: date) -> Range:
    """The buckets asked for: ``first`` and ``last`` widened to whole weeks (Monday to Sunday) for
    weeks. Without ``last``, up to ``today``; without ``first``, the default span before it."""
    if size not in BUCKET_SIZES:
        raise SeriesError(f"bucket must be one of {', '.join(BUCKET_SIZES)}, not {size!r}")
    for day in (first, last):
        if day is not None and not EARLIEST <= day <= LATEST:
            raise SeriesError(f"dates must lie between {EARLIEST} and {LATEST}, not {day}")
    bucket: BucketSize = "day" if size == "day" else "week"
    step = 1 if bucket == "day" else 7
    last = last or (today if first is None else max(today, first))
    if first is None:  # the default span of whole buckets, the last one holding `last`
        first = last - timedelta(days=(last.weekday() if bucket == "week" else 0) + step * (DEFAULT_SPAN[bucket] - 1))
    if first > last:
        raise SeriesError(f"from ({first}) is after to ({last})")
    if first < EARLIEST or last > LATEST:
        raise SeriesError(f"dates must lie between {EARLIEST} and {LATEST}")
    if bucket == "week":
        first = first - timedelta(days=first.weekday())
        last = last + timedelta(days=6 - last.weekday())
    count = ((last - first).days + 1) // step
    if count > MAX_BUCKETS[bucket]:
        raise SeriesError(f"{count} {bucket}s asked for; at most {MAX_BUCKETS[bucket]} at once")
    return Range(first, last, bucket)


@dataclass
class _Figures:
    opened: int = 0
    ack: Tally = field(default_factory=Tally)
    fix: Tally = field(default_factory=Tally)

    def as_dict(self) -> dict[str, Any]:
        return {"opened": self.opened, "ack": self.ack.as_dict(), "fix": self.fix.as_dict()}


@dataclass
class _Breakdown:
    """Figures of the whole, by severity and by team."""

    all: _Figures = field(default_factory=_Figures)
    by_severity: dict[str, _Figures] = field(default_factory=lambda: {s: _Figures() for s in SEVERITIES})
    by_team: dict[str, _Figures] = field(default_factory=dict)

    def groups(self, severity: str, teams: Iterable[str]) -> list[_Figures]:
        return [self.all, self.by_severity.setdefault(severity, _Figures())] + [
            self.by_team.setdefault(team, _Figures()) for team in teams
        ]

    def as_dict(self, teams: Iterable[str]) -> dict[str, Any]:
        return {
            **self.all.as_dict(),
            "by_severity": {s: g.as_dict() for s, g in self.by_severity.items()},
            "by_team": {t: self.by_team.get(t, _Figures()).as_dict() for t in teams},
        }


def build_sla_series(
    context: ReportContext,
    wanted: Range,
    tickets: Iterable[TicketHistory],
    *,
    cutoff: datetime,
    generated_at: datetime,
) -> dict[str, Any]:
    """The figures of each bucket of `wanted` and of the whole range, as of `cutoff` (JSON-ready;
    times in the site's time zone, ISO 8601)."""
    zone = ZoneInfo(context.timezone)
    edges = wanted.starts(context.timezone)
    start, end = edges[0], edges[-1]
    until = min(end, cutoff + _JUST_AFTER)
    buckets = [_Breakdown() for _ in edges[:-1]]
    whole = _Breakdown()

    def at(moment: datetime | None) -> _Breakdown | None:
        """The bucket of `moment`, or None outside the range (or after the cut-off)."""
        if moment is None or not start <= moment < until:
            return None
        return buckets[bisect.bisect_right(edges, moment) - 1]

    for ticket in tickets:
        walk = _walk(ticket, start, until) if until > start else None
        if walk is None:
            continue
        view = walk.view
        severity, teams = view.severity.value, list(view.teams)
        lead = teams[:1]
        bucket = at(view.opened_at)
        if bucket is not None:
            for part in (bucket, whole):
                for group in part.groups(severity, teams):
                    group.opened += 1
        for rnd in walk.rounds:
            for ack in rnd.acks.values():
                on_time = ack.acked_at is not None and ack.missed_at is None
                settled = at(ack.acked_at if on_time else ack.missed_at)
                if settled is not None:
                    for part in (settled, whole):
                        for group in part.groups(severity, [ack.team]):
                            group.ack.counted += 1
                            group.ack.on_time += on_time
                done = at(ack.acked_at)
                if done is not None and ack.acked_at is not None:
                    for part in (done, whole):
                        for group in part.groups(severity, [ack.team]):
                            group.ack.durations.append(_minutes(ack.acked_at - rnd.dispatched_at))
            fixed_on_time = rnd.resolved_at is not None and rnd.fix_missed_at is None
            settled = at(rnd.resolved_at if fixed_on_time else rnd.fix_missed_at)
            if settled is not None:
                for part in (settled, whole):
                    for group in part.groups(severity, lead):
                        group.fix.counted += 1
                        group.fix.on_time += fixed_on_time
            minutes = rnd.fix_minutes()
            resolved = at(rnd.resolved_at)
            if resolved is not None and minutes is not None:
                for part in (resolved, whole):
                    for group in part.groups(severity, lead):
                        group.fix.durations.append(minutes)

    teams_seen = sorted(whole.by_team)
    return {
        "site": context.site, "site_name": context.site_name, "timezone": context.timezone,
        "bucket": wanted.size, "from": wanted.first.isoformat(), "to": wanted.last.isoformat(),
        "as_of": min(end, cutoff).astimezone(zone).isoformat(), "generated_at": generated_at.astimezone(zone).isoformat(),
        "severities": list(SEVERITIES),
        "teams": {t: {"name_zh": context.team_names.get(t, (t, t))[0], "name_en": context.team_names.get(t, (t, t))[1]}
                  for t in teams_seen},
        "buckets": [
            {"start": s.isoformat(), "end": e.isoformat(), "complete": e <= cutoff, **b.as_dict(teams_seen)}
            for s, e, b in zip(edges[:-1], edges[1:], buckets, strict=True)
        ],
        "total": whole.as_dict(teams_seen),
    }
