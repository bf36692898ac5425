"""The ticket state machine: every change is an appended event, the ticket is their fold.

Pure code. ``fold(events)`` derives a :class:`TicketView` from a ticket's history and
``apply(view, event)`` checks one transition; the storage layer keeps the events and a
projection of the fold for queries, so the history residents and auditors see is the truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from linli.catalog import ServiceLevel, Severity


class TicketStatus(StrEnum):
    OPEN = "open"  # 立案
    ACKNOWLEDGED = "acknowledged"  # 签收
    IN_PROGRESS = "in_progress"
    ON_HOLD = "on_hold"
    RESOLVED = "resolved"  # 办结
    VERIFIED = "verified"  # 核查
    CLOSED = "closed"  # 销号
    CANCELLED = "cancelled"


ENDED = frozenset({TicketStatus.CLOSED, TicketStatus.CANCELLED})
# States in which a ticket is "the open ticket" of its subject and fault.
ACTIVE = frozenset(set(TicketStatus) - ENDED)


class EventType(StrEnum):
    OPENED = "opened"
    ACKNOWLEDGED = "acknowledged"  # one team's acknowledgement
    STARTED = "started"
    HELD = "held"
    RESUMED = "resumed"
    RESOLVED = "resolved"
    VERIFIED = "verified"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    REOPENED = "reopened"
    SEVERITY_RAISED = "severity_raised"
    SIGNAL_CLEARED = "signal_cleared"
    SIGNAL_RETURNED = "signal_returned"
    COMMENTED = "commented"
    ASSIGNED = "assigned"
    ATTACHED = "attached"  # linked to a correlated parent ticket
    MEMBER_CHANGED = "member_changed"  # a child of a correlated parent lost or got back supply (recorded here)
    ESCALATED = "escalated"  # a missed deadline escalated to one team's next level, or a reminder (linli.sla)
    NOTIFIED = "notified"  # a notification sent (or tried) about it: recorded, changes nothing


class TransitionError(Exception):
    """A transition the state machine does not allow from the ticket's current state."""


@dataclass(frozen=True, slots=True)
class TicketEvent:
    type: EventType
    at: datetime
    actor: str  # a username, or "system" for the engine
    note: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Subject:
    type: str  # device | circuit | cabinet | building | concentrator | place
    id: str


# What an ESCALATED event is about: the deadline missed. The fix deadline is "resolve".
ESCALATION_DEADLINES = ("ack", "start", "resolve")
REMINDER = "reminder"


@dataclass(frozen=True, slots=True)
class EscalationMark:
    """How far one team has been escalated for one missed deadline."""

    level: int  # the highest level reached (1 = the chain's first)
    at: datetime  # when that level, or its latest reminder, was recorded
    reminders: int = 0  # reminders sent at this level


@dataclass(frozen=True, slots=True)
class TicketView:
    site: str
    subject: Subject
    fault: str
    severity: Severity
    teams: tuple[str, ...]
    source: str
    status: TicketStatus
    opened_at: datetime
    ack_due_at: datetime
    start_due_at: datetime | None
    resolve_due_at: datetime
    device_ids: tuple[str, ...] = ()
    title: str | None = None
    acks: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    assignee: str | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    parent_id: int | None = None
    signal_cleared_at: datetime | None = None
    reopen_count: int = 0
    hold_started_at: datetime | None = None
    held_for: timedelta = timedelta(0)
    # (deadline, team) -> escalation so far; cleared when the ticket reopens
    escalations: Mapping[tuple[str, str], EscalationMark] = field(default_factory=dict)

    @property
    def device_id(self) -> str | None:
        return self.subject.id if self.subject.type == "device" else None

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE


def deadlines(opened_at: datetime, level: ServiceLevel) -> dict[str, Any]:
    return {
        "ack_due_at": opened_at + level.ack,
        "start_due_at": opened_at + level.start if level.start else None,
        "resolve_due_at": opened_at + level.resolve,
    }


_FROM: dict[EventType, frozenset[TicketStatus]] = {
    EventType.STARTED: frozenset({TicketStatus.OPEN, TicketStatus.ACKNOWLEDGED}),
    EventType.HELD: frozenset({TicketStatus.IN_PROGRESS}),
    EventType.RESUMED: frozenset({TicketStatus.ON_HOLD}),
    EventType.RESOLVED: frozenset({TicketStatus.ACKNOWLEDGED, TicketStatus.IN_PROGRESS}),
    EventType.VERIFIED: frozenset({TicketStatus.RESOLVED}),
    EventType.CLOSED: frozenset({TicketStatus.VERIFIED, TicketStatus.RESOLVED}),
    EventType.CANCELLED: ACTIVE,
    EventType.REOPENED: frozenset({TicketStatus.RESOLVED, TicketStatus.VERIFIED, TicketStatus.CLOSED}),
}


def apply(view: TicketView | None, event: TicketEvent) -> TicketView:
    """The ticket after `event`; raises :class:`TransitionError` if the event is not allowed now."""
    if view is None:
        if event.type is not EventType.OPENED:
            raise TransitionError(f"a ticket's history starts with 'opened', not {event.type!r}")
        d = event.data
        severity = Severity(d["severity"])
        return TicketView(
            site=d["site"],
            subject=Subject(d["subject_type"], d["subject_id"]),
            fault=d["fault"],
            severity=severity,
            teams=tuple(d["teams"]),
            source=d.get("source", "detector"),
            status=TicketStatus.OPEN,
            opened_at=event.at,
            ack_due_at=_dt(d["ack_due_at"]),
            start_due_at=_dt(d["start_due_at"]) if d.get("start_due_at") else None,
            resolve_due_at=_dt(d["resolve_due_at"]),
            device_ids=tuple(d.get("device_ids", ())),
            title=d.get("title"),
        )
    if event.type is EventType.OPENED:
        raise TransitionError("the ticket is already open")
    allowed = _FROM.get(event.type)
    if allowed is not None and view.status not in allowed:
        raise TransitionError(f"cannot {event.type.value} a ticket that is {view.status.value}")
    t, at = event.type, event.at
    if t is EventType.ACKNOWLEDGED:
        team = str(event.data["team"])
        if team not in view.teams:
            raise TransitionError(f"team {team!r} is not one of this ticket's teams")
        if team in view.acks:
            raise TransitionError(f"team {team!r} has already acknowledged")
        if view.status in ENDED:
            raise TransitionError(f"cannot acknowledge a ticket that is {view.status.value}")
        acks = {**view.acks, team: {"by": event.actor, "at": at.isoformat()}}
        if team != view.teams[0]:
            return replace(view, acks=acks)
        status = TicketStatus.ACKNOWLEDGED if view.status is TicketStatus.OPEN else view.status
        return replace(view, acks=acks, status=status, acknowledged_at=at, acknowledged_by=event.actor)
    if t is EventType.STARTED:
        return replace(view, status=TicketStatus.IN_PROGRESS, assignee=view.assignee or event.actor)
    if t is EventType.HELD:
        if not (event.note or "").strip():
            raise TransitionError("putting a ticket on hold needs a reason")  # the fix clock stops: say why
        return replace(view, status=TicketStatus.ON_HOLD, hold_started_at=at)
    if t is EventType.RESUMED:
        held = view.held_for + (at - view.hold_started_at if view.hold_started_at else timedelta(0))
        # on_hold pauses the fix clock: the deadline moves by the time spent on hold.
        pause = at - view.hold_started_at if view.hold_started_at else timedelta(0)
        return replace(
            view, status=TicketStatus.IN_PROGRESS, hold_started_at=None, held_for=held,
            resolve_due_at=view.resolve_due_at + pause,
        )
    if t is EventType.RESOLVED:
        return replace(view, status=TicketStatus.RESOLVED, resolved_at=at)
    if t is EventType.VERIFIED:
        return replace(view, status=TicketStatus.VERIFIED)
    if t is EventType.CLOSED:
        return replace(view, status=TicketStatus.CLOSED, closed_at=at)
    if t is EventType.CANCELLED:
        return replace(view, status=TicketStatus.CANCELLED, closed_at=at)
    if t is EventType.REOPENED:
        return replace(
            view, status=TicketStatus.OPEN, reopen_count=view.reopen_count + 1, resolved_at=None, closed_at=None,
            acks={}, acknowledged_at=None, acknowledged_by=None, signal_cleared_at=None, escalations={},
            **deadlines_from(event.data),
        )
    if t is EventType.SEVERITY_RAISED:
        new = Severity(event.data["severity"])
        if new.rank >= view.severity.rank:
            raise TransitionError(f"severity can only rise: {view.severity} to {new} is not a rise")
        return replace(view, severity=new, **deadlines_from(event.data))
    if t is EventType.SIGNAL_CLEARED:
        return replace(view, signal_cleared_at=at)
    if t is EventType.SIGNAL_RETURNED:
        return replace(view, signal_cleared_at=None)
    if t is EventType.ASSIGNED:
        return replace(view, assignee=event.data.get("assignee"))
    if t is EventType.MEMBER_CHANGED:
        device = str(event.data["device_id"])
        if event.data.get("active") and device not in view.device_ids:
            return replace(view, device_ids=(*view.device_ids, device))
        return view
    if t is EventType.ATTACHED:
        return replace(view, parent_id=int(event.data["parent_id"]))
    if t is EventType.ESCALATED:
        return _escalated(view, event)
    if t is EventType.COMMENTED or t is EventType.NOTIFIED:
        return view
    raise TransitionError(f"unknown event type {t!r}")  # pragma: no cover - the enum is exhaustive


def _escalated(view: TicketView, event: TicketEvent) -> TicketView:
    """One level up a team's chain (or a reminder at its level): levels are never skipped or repeated."""
    if view.status in ENDED:
        raise TransitionError(f"cannot escalate a ticket that is {view.status.value}")
    d = event.data
    team, deadline, level = str(d.get("team")), str(d.get("deadline")), d.get("level")
    if team not in view.teams:
        raise TransitionError(f"team {team!r} is not one of this ticket's teams")
    if deadline not in ESCALATION_DEADLINES:
        raise TransitionError(f"escalation deadline must be one of {', '.join(ESCALATION_DEADLINES)}, not {deadline!r}")
    mark = view.escalations.get((deadline, team))
    current = mark.level if mark else 0
    if d.get("reason") == REMINDER:
        if mark is None or level != current:
            raise TransitionError(f"a reminder repeats team {team!r}'s current level {current}, not {level!r}")
        new = EscalationMark(current, event.at, mark.reminders + 1)
    elif level != current + 1:
        raise TransitionError(f"team {team!r} is at level {current} for {deadline}: the next is {current + 1}, not {level!r}")
    else:
        new = EscalationMark(current + 1, event.at)
    return replace(view, escalations={**view.escalations, (deadline, team): new})


def deadlines_from(data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "ack_due_at": _dt(data["ack_due_at"]),
        "start_due_at": _dt(data["start_due_at"]) if data.get("start_due_at") else None,
        "resolve_due_at": _dt(data["resolve_due_at"]),
    }


def fold(events: Iterable[TicketEvent]) -> TicketView:
    view: TicketView | None = None
    for event in events:
        view = apply(view, event)
    if view is None:
        raise TransitionError("a ticket needs at least its 'opened' event")
    return view


def _dt(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def serialise_deadlines(values: Mapping[str, datetime | None]) -> dict[str, str | None]:
    return {k: v.isoformat() if v else None for k, v in values.items()}


def transitions(history: Sequence[TicketEvent]) -> list[tuple[TicketStatus | None, TicketStatus]]:
    """(from, to) status of each event, for the API's history."""
    out: list[tuple[TicketStatus | None, TicketStatus]] = []
    view: TicketView | None = None
    for event in history:
        before = view.status if view else None
        view = apply(view, event)
        out.append((before, view.status))
    return out
