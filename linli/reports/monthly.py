"""The monthly report for the three-party meeting on the 5th: the month's figures and three lists.

Pure code: ticket histories (``linli.tickets`` events) in, a :class:`MonthlyReport` out. Only the
events before the month's end are read, so a past month's report is the same whenever it is asked.
The rules (``docs/reports.md``):

- The month runs from local midnight on the 1st to local midnight on the 1st of the next month,
  in the site's time zone.
- Each dispatch (the opening, and every reopening) is a *round* with its own deadlines. In a
  round every team owes its own acknowledgement (the lead team's start counts as one) and the
  lead team owes the fix.
- An obligation is counted once, in the month it was settled: met on time (counted when met), or
  its deadline passed while it was still owed (counted late at the deadline, whenever it is met).
  An obligation that stops being owed before its deadline (the ticket cancelled, or resolved
  before an assisting team acknowledged) is not counted.
- On hold stops the fix clock: the fix deadline moves by the time held (as the state machine
  does) and the time to fix leaves the time held out.
- Times to acknowledge and to fix are measured from the round's dispatch, for the
  acknowledgements and resolutions that happened in the month.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from linli.catalog import Severity
from linli.sla import ACK_FLOOR
from linli.tickets import ACTIVE, EventType, TicketEvent, TicketStatus, TicketView, apply

SEVERITIES = tuple(s.value for s in Severity)
# A new ticket for a subject and fault that had one opened this recently is a repeat fault.
REPEAT_WINDOW = timedelta(days=30)
# States in which the lead team still owes the fix (on hold: owed, but its clock stands still).
_FIX_OWED = frozenset({TicketStatus.OPEN, TicketStatus.ACKNOWLEDGED, TicketStatus.IN_PROGRESS, TicketStatus.ON_HOLD})
_ACK_OWED = _FIX_OWED


class MonthError(ValueError):
    """A month that is not YYYY-MM (or out of range)."""


@dataclass(frozen=True, slots=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        parts = text.strip().split("-")
        if len(parts) != 2 or len(parts[0]) != 4 or len(parts[1]) != 2 or not all(p.isdigit() for p in parts):
            raise MonthError(f"month must be YYYY-MM, e.g. 2026-03, not {text!r}")
        year, month = int(parts[0]), int(parts[1])
        if not 1 <= month <= 12 or not 2000 <= year <= 2999:
            raise MonthError(f"month {text!r} is out of range")
        return cls(year, month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def next(self) -> Month:
        return Month(self.year + 1, 1) if self.month == 12 else Month(self.year, self.month + 1)

    def bounds(self, timezone: str) -> tuple[datetime, datetime]:
        """[start, end) as aware datetimes in `timezone`: local midnight of the 1st of this and the next month."""
        zone = ZoneInfo(timezone)
        nxt = self.next()
        start = datetime(self.year, self.month, 1, tzinfo=zone)
        end = datetime(nxt.year, nxt.month, 1, tzinfo=zone)
        return start, end

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)


@dataclass(frozen=True, slots=True)
class TicketHistory:
    id: int
    events: Sequence[TicketEvent]


@dataclass(frozen=True, slots=True)
class ResidentReportEntry:
    """A resident's or mobile grid officer's report (``resident_reports``): when, from whom, its ticket."""

    at: datetime
    source: str  # resident | grid_officer
    ticket_id: int | None = None


# --- one ticket walked through ----------------------------------------------------------------


@dataclass
class _Ack:
    team: str
    lead: bool
    acked_at: datetime | None = None
    missed_at: datetime | None = None  # the deadline passed while owed


@dataclass
class _Round:
    number: int  # 1 for the opening, 2 after the first reopening...
    dispatched_at: datetime
    acks: dict[str, _Ack]
    resolved_at: datetime | None = None
    fix_missed_at: datetime | None = None
    held: timedelta = timedelta(0)
    hold_from: datetime | None = None

    def held_until(self, moment: datetime) -> timedelta:
        """Time held in this round, a hold still going counted up to `moment`."""
        return self.held + (moment - self.hold_from if self.hold_from is not None else timedelta(0))

    def fix_minutes(self) -> float | None:
        if self.resolved_at is None:
            return None
        return _minutes(self.resolved_at - self.dispatched_at - self.held)


@dataclass
class _Walk:
    """A ticket as of the month's end: its rounds and the moments that matter to the report."""

    id: int
    view: TicketView  # as of the month's end
    view_at_start: TicketView | None  # as of the month's start (None: not opened yet)
    rounds: list[_Round]
    status_changes: list[datetime]  # times of the events that changed its status
    occurrences: list[tuple[datetime, str]]  # (when, "opened" | "reopened")
    closed_at: datetime | None  # the closing (or cancelling) in force at the month's end


def _minutes(delta: timedelta) -> float:
    return delta.total_seconds() / 60


def _walk(ticket: TicketHistory, start: datetime, end: datetime) -> _Walk | None:
    view: TicketView | None = None
    view_at_start: TicketView | None = None
    rounds: list[_Round] = []
    changes: list[datetime] = []
    occurrences: list[tuple[datetime, str]] = []
    prev_at: datetime | None = None
    reached_start = False

    def check_deadlines(until: datetime) -> None:
        """Deadlines that passed between the previous event and `until` while owed."""
        if view is None or prev_at is None or not rounds:
            return
        current = rounds[-1]
        if view.status in _ACK_OWED:
            due = min(view.ack_due_at, current.dispatched_at + ACK_FLOOR)
            for ack in current.acks.values():
                if ack.acked_at is None and ack.missed_at is None and due < until:
                    ack.missed_at = max(due, prev_at)
        if (view.status in _FIX_OWED and view.status is not TicketStatus.ON_HOLD
                and current.resolved_at is None and current.fix_missed_at is None and view.resolve_due_at < until):
            current.fix_missed_at = max(view.resolve_due_at, prev_at)

    for event in ticket.events:
        if event.at >= end:
            break
        if not reached_start and event.at >= start:
            reached_start, view_at_start = True, view  # None when it opens during the month
        check_deadlines(event.at)
        before = view
        view = apply(view, event)
        prev_at = event.at
        if before is None or before.status is not view.status:
            changes.append(event.at)
        t = event.type
        if t is EventType.OPENED or t is EventType.REOPENED:
            occurrences.append((event.at, t.value))
            rounds.append(_Round(len(rounds) + 1, event.at, {
                team: _Ack(team, i == 0) for i, team in enumerate(view.teams)
            }))
        elif t is EventType.ACKNOWLEDGED:
            ack = rounds[-1].acks.get(str(event.data["team"]))
            if ack is not None and ack.acked_at is None:
                ack.acked_at = event.at
        elif t is EventType.STARTED:
            lead = rounds[-1].acks.get(view.teams[0])
            if lead is not None and lead.acked_at is None:
                lead.acked_at = event.at  # a lead team that started has acknowledged
        elif t is EventType.HELD:
            rounds[-1].hold_from = event.at
        elif t is EventType.RESUMED:
            current = rounds[-1]
            if current.hold_from is not None:
                current.held += event.at - current.hold_from
                current.hold_from = None
        elif t is EventType.RESOLVED:
            rounds[-1].resolved_at = event.at
    if view is None:
        return None
    if not reached_start:
        view_at_start = view  # no event since the month began (or a ticket that opens later: not counted)
    check_deadlines(end)
    closed_at = view.closed_at if view.status in (TicketStatus.CLOSED, TicketStatus.CANCELLED) else None
    return _Walk(ticket.id, view, view_at_start, rounds, changes, occurrences, closed_at)


def _in_month(moment: datetime | None, start: datetime, end: datetime) -> bool:
    return moment is not None and start <= moment < end


def _active_in_month(w: _Walk, start: datetime, end: datetime) -> bool:
    """Active at some moment of the month: active at its start, or its status changed during it."""
    if w.view.opened_at >= end:
        return False
    if w.view_at_start is not None and w.view_at_start.is_active:
        return True
    return any(_in_month(t, start, end) for t in w.status_changes)


# --- the report -------------------------------------------------------------------------------


@dataclass
class Tally:
    """On time out of counted, and the measured durations (minutes)."""

    counted: int = 0
    on_time: int = 0
    durations: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "counted": self.counted,
            "on_time": self.on_time,
            "late": self.counted - self.on_time,
            "within_sla_pct": pct(self.on_time, self.counted),
            "measured": len(self.durations),
            "mean_minutes": round(statistics.fmean(self.durations), 1) if self.durations else None,
            "median_minutes": round(statistics.median(self.durations), 1) if self.durations else None,
        }


def pct(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


@dataclass
class _Group:
    opened: int = 0
    closed: int = 0
    cancelled: int = 0
    open_at_end: int = 0
    ack: Tally = field(default_factory=Tally)
    fix: Tally = field(default_factory=Tally)

    def as_dict(self) -> dict[str, Any]:
        return {
            "opened": self.opened, "closed": self.closed, "cancelled": self.cancelled, "open_at_end": self.open_at_end,
            "ack": self.ack.as_dict(), "fix": self.fix.as_dict(),
        }


@dataclass(frozen=True, slots=True)
class ReportContext:
    """What the report says about its site; names come from the site file and the catalog."""

    site: str
    site_name: str
    timezone: str
    team_names: Mapping[str, tuple[str, str]]  # team -> (zh, en)
    fault_names: Mapping[str, tuple[str, str]]  # fault code -> (zh, en)


def build_monthly_report(
    context: ReportContext,
    month: Month,
    tickets: Iterable[TicketHistory],
    resident_reports: Iterable[ResidentReportEntry] = (),
    *,
    generated_at: datetime,
) -> dict[str, Any]:
    """The month's report as a JSON-ready dict (times in the site's time zone, ISO 8601)."""
    start, end = month.bounds(context.timezone)
    zone = ZoneInfo(context.timezone)
    # A month still running is judged up to now: a deadline still ahead is not missed yet.
    cut = max(start, min(end, generated_at))
    walks = [w for w in (_walk(t, start, cut) for t in tickets) if w is not None]
    walks.sort(key=lambda w: (w.view.opened_at, w.id))

    def local(moment: datetime | None) -> str | None:
        return moment.astimezone(zone).isoformat() if moment is not None else None

    total = _Group()
    by_severity = {s: _Group() for s in SEVERITIES}
    by_team: dict[str, _Group] = {}
    counts = {"carried_in": 0, "resolved": 0, "reopened": 0}
    problems: list[dict[str, Any]] = []
    responsibilities: list[dict[str, Any]] = []
    rectifications: list[dict[str, Any]] = []

    def team_group(team: str) -> _Group:
        return by_team.setdefault(team, _Group())

    for w in walks:
        view = w.view
        severity = view.severity.value
        groups_all = [total, by_severity[severity]] + [team_group(t) for t in view.teams]
        opened_now = _in_month(view.opened_at, start, end)
        if opened_now:
            for g in groups_all:
                g.opened += 1
        if view.status is TicketStatus.CLOSED and _in_month(w.closed_at, start, end):
            for g in groups_all:
                g.closed += 1
        if view.status is TicketStatus.CANCELLED and _in_month(w.closed_at, start, end):
            for g in groups_all:
                g.cancelled += 1
        if view.is_active:
            for g in groups_all:
                g.open_at_end += 1
        if w.view_at_start is not None and w.view_at_start.is_active:
            counts["carried_in"] += 1
        counts["reopened"] += sum(1 for at, kind in w.occurrences if kind == "reopened" and _in_month(at, start, end))
        for rnd in w.rounds:
            for ack in rnd.acks.values():
                tallies = [total.ack, by_severity[severity].ack, team_group(ack.team).ack]
                on_time = ack.acked_at is not None and ack.missed_at is None
                settled = ack.acked_at if on_time else ack.missed_at
                if _in_month(settled, start, end):
                    for tally in tallies:
                        tally.counted += 1
                        tally.on_time += on_time
                if ack.acked_at is not None and _in_month(ack.acked_at, start, end):
                    for tally in tallies:
                        tally.durations.append(_minutes(ack.acked_at - rnd.dispatched_at))
            lead = view.teams[0] if view.teams else None
            fix_tallies = [total.fix, by_severity[severity].fix] + ([team_group(lead).fix] if lead else [])
            fixed_on_time = rnd.resolved_at is not None and rnd.fix_missed_at is None
            fix_settled = rnd.resolved_at if fixed_on_time else rnd.fix_missed_at
            if _in_month(fix_settled, start, end):
                for tally in fix_tallies:
                    tally.counted += 1
                    tally.on_time += fixed_on_time
            minutes = rnd.fix_minutes()
            if minutes is not None and _in_month(rnd.resolved_at, start, end):
                counts["resolved"] += 1
                for tally in fix_tallies:
                    tally.durations.append(minutes)

        if not _active_in_month(w, start, end):
            continue
        last = w.rounds[-1]
        fault_zh, fault_en = context.fault_names.get(view.fault, (view.fault, view.fault))
        problems.append({
            "ticket_id": w.id, "opened_at": local(view.opened_at), "title": view.title or f"{view.subject.id} · {fault_zh}",
            "subject_type": view.subject.type, "subject_id": view.subject.id, "fault": view.fault,
            "fault_zh": fault_zh, "fault_en": fault_en, "severity": severity, "source": view.source,
            "status": view.status.value, "carried_in": bool(w.view_at_start and w.view_at_start.is_active),
        })
        for i, team in enumerate(view.teams):
            owed = last.acks.get(team)
            responsibilities.append({
                "ticket_id": w.id, "team": team, "team_zh": context.team_names.get(team, (team, team))[0],
                "team_en": context.team_names.get(team, (team, team))[1], "role": "lead" if i == 0 else "assist",
                "assignee": view.assignee if i == 0 else None,
                "dispatched_at": local(last.dispatched_at),
                "ack_due_at": local(min(view.ack_due_at, last.dispatched_at + ACK_FLOOR)),
                "acknowledged_at": local(owed.acked_at if owed else None),
                "ack_on_time": _on_time(owed.acked_at, owed.missed_at) if owed else None,
            })
        rectifications.append({
            "ticket_id": w.id, "status": view.status.value, "resolve_due_at": local(view.resolve_due_at),
            "resolved_at": local(last.resolved_at), "closed_at": local(w.closed_at),
            "fix_minutes": _round(last.fix_minutes()), "held_minutes": _round(_minutes(last.held_until(cut))),
            "fix_on_time": _on_time(last.resolved_at, last.fix_missed_at), "reopen_count": view.reopen_count,
            "outcome": _outcome(view.status),
        })

    repeats = _repeat_faults(walks, start, end, local)
    reports = [r for r in resident_reports if _in_month(r.at, start, end)]
    by_source: dict[str, int] = {}
    for r in reports:
        by_source[r.source] = by_source.get(r.source, 0) + 1
    resident_tickets = sum(
        1 for w in walks if w.view.source in ("resident", "grid_officer") and _in_month(w.view.opened_at, start, end)
    )
    figures = {
        "opened": total.opened, "closed": total.closed, "cancelled": total.cancelled,
        "resolved": counts["resolved"], "reopened": counts["reopened"],
        "carried_in": counts["carried_in"], "open_at_end": total.open_at_end,
        "reopen_rate_pct": pct(counts["reopened"], counts["resolved"]),
        "ack": total.ack.as_dict(), "fix": total.fix.as_dict(),
        "by_severity": {s: g.as_dict() for s, g in by_severity.items()},
        "by_team": {t: {"name_zh": context.team_names.get(t, (t, t))[0], "name_en": context.team_names.get(t, (t, t))[1],
                        **g.as_dict()} for t, g in sorted(by_team.items())},
        "repeat_faults": len(repeats),
        "resident_reports": {"total": len(reports), "by_source": dict(sorted(by_source.items())),
                             "tickets_opened": resident_tickets},
    }
    return {
        "site": context.site, "site_name": context.site_name, "month": str(month), "timezone": context.timezone,
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "generated_at": local(generated_at), "frozen": False, "published_at": None, "published_by": None,
        "figures": figures, "repeat_faults": repeats,
        "problems": problems, "responsibilities": responsibilities, "rectifications": rectifications,
    }


def _on_time(done_at: datetime | None, missed_at: datetime | None) -> bool | None:
    """True: done before its deadline; False: the deadline passed; None: still owed and not late."""
    if missed_at is not None:
        return False
    return True if done_at is not None else None


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def _outcome(status: TicketStatus) -> str:
    if status is TicketStatus.CLOSED:
        return "closed"
    if status is TicketStatus.CANCELLED:
        return "cancelled"
    return "in_progress" if status in ACTIVE else status.value


def _repeat_faults(walks: Sequence[_Walk], start: datetime, end: datetime, local: Any) -> list[dict[str, Any]]:
    """Occurrences in the month that repeat a fault: a reopening, or a new ticket for a subject and
    fault that had one opened within the previous 30 days."""
    openings: dict[tuple[str, str, str], list[tuple[datetime, int]]] = {}
    for w in walks:
        key = (w.view.subject.type, w.view.subject.id, w.view.fault)
        openings.setdefault(key, []).append((w.view.opened_at, w.id))
    out: list[dict[str, Any]] = []
    for w in walks:
        key = (w.view.subject.type, w.view.subject.id, w.view.fault)
        for at, kind in w.occurrences:
            if not _in_month(at, start, end):
                continue
            previous: int | None = None
            if kind == "opened":
                earlier = [(t, i) for t, i in openings[key] if at - REPEAT_WINDOW <= t < at and i != w.id]
                if not earlier:
                    continue
                previous = max(earlier)[1]
            out.append({
                "at": local(at), "ticket_id": w.id, "kind": kind, "previous_ticket_id": previous,
                "subject_type": key[0], "subject_id": key[1], "fault": key[2],
            })
    out.sort(key=lambda r: (r["at"], r["ticket_id"]))
    return out
