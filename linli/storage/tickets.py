"""Ticket persistence: events appended, the projection rewritten from their fold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from linli.catalog import FAULTS
from linli.engine.decisions import Decision, FaultCleared, FaultRaised
from linli.site import SiteRegistry
from linli.storage.models import TicketEventRow, TicketRow
from linli.tickets import (
    ACTIVE,
    EventType,
    Subject,
    TicketEvent,
    TicketStatus,
    TicketView,
    apply,
    deadlines,
    fold,
    serialise_deadlines,
)

REOPEN_WINDOW = timedelta(hours=72)
SYSTEM = "system"


class StaleTicket(Exception):
    """The ticket changed since the caller read it (versioned write)."""


def event_of(row: TicketEventRow) -> TicketEvent:
    return TicketEvent(EventType(row.type), row.at, row.actor, row.note, row.data or {})


def view_of(row: TicketRow) -> TicketView:
    return fold(event_of(e) for e in row.events)


def _project(row: TicketRow, view: TicketView, now: datetime) -> None:
    row.site, row.subject_type, row.subject_id = view.site, view.subject.type, view.subject.id
    row.device_id, row.device_ids = view.device_id, list(view.device_ids)
    row.fault, row.title, row.severity, row.teams = view.fault, view.title, view.severity.value, list(view.teams)
    row.acks = {k: dict(v) for k, v in view.acks.items()}
    row.assignee, row.status, row.active, row.source = view.assignee, view.status.value, view.is_active, view.source
    row.opened_at, row.ack_due_at, row.start_due_at = view.opened_at, view.ack_due_at, view.start_due_at
    row.resolve_due_at, row.acknowledged_at, row.acknowledged_by = view.resolve_due_at, view.acknowledged_at, view.acknowledged_by
    row.resolved_at, row.closed_at, row.parent_id = view.resolved_at, view.closed_at, view.parent_id
    row.signal_cleared_at, row.reopen_count = view.signal_cleared_at, view.reopen_count
    row.updated_at = now


def append_event(
    session: Session, row: TicketRow | None, event: TicketEvent, *, expected_version: int | None = None
) -> TicketRow:
    """Check `event` against the state machine, store it, and rewrite the projection.

    Raises ``linli.tickets.TransitionError`` for a transition the ticket's state does not allow,
    and :class:`StaleTicket` when `expected_version` is given and the ticket has moved on.
    """
    if row is None:
        view_before = None
        row = TicketRow(version=0)
        session.add(row)
    else:
        if expected_version is not None and row.version != expected_version:
            raise StaleTicket(f"ticket {row.id} is at version {row.version}, not {expected_version}")
        view_before = view_of(row)
    view_after = apply(view_before, event)
    row.events.append(TicketEventRow(
        type=event.type.value, at=event.at, actor=event.actor, note=event.note, data=dict(event.data),
        from_status=view_before.status.value if view_before else None, to_status=view_after.status.value,
    ))
    _project(row, view_after, event.at)
    row.version += 1
    session.flush()
    return row


def find_active(session: Session, site: str, subject: Subject, fault: str) -> TicketRow | None:
    return session.scalars(
        select(TicketRow).where(
            TicketRow.site == site, TicketRow.subject_type == subject.type, TicketRow.subject_id == subject.id,
            TicketRow.fault == fault, TicketRow.active.is_(True),
        )
    ).first()


@dataclass(frozen=True, slots=True)
class TicketChange:
    ticket_id: int
    site: str
    event: EventType
    status: TicketStatus
    fault: str = ""  # the fault code (metrics count opened tickets by it)


class TicketService:
    """Turns the engine's decisions into tickets: one open ticket per subject and fault."""

    def __init__(self, sites: SiteRegistry) -> None:
        self._sites = sites

    def apply(self, session: Session, decisions: Sequence[Decision]) -> list[TicketChange]:
        changes: list[TicketChange] = []
        for decision in decisions:
            raised = isinstance(decision, FaultRaised)
            change = self._raised(session, decision) if raised else self._cleared(session, decision)  # type: ignore[arg-type]
            if change is not None:
                changes.append(change)
        return changes

    def _raised(self, session: Session, d: FaultRaised) -> TicketChange | None:
        site = self._sites[d.site]
        row = find_active(session, d.site, d.subject, d.fault)
        if row is not None:
            view = view_of(row)
            if d.severity.rank < view.severity.rank:
                level = site.service_level(d.severity, d.fault)
                data = {"severity": d.severity.value, **serialise_deadlines(deadlines(view.opened_at, level))}
                append_event(session, row, TicketEvent(EventType.SEVERITY_RAISED, d.at, SYSTEM, d.detail, data))
                return TicketChange(row.id, row.site, EventType.SEVERITY_RAISED, TicketStatus(row.status), d.fault)
            if view.signal_cleared_at is not None:
                append_event(session, row, TicketEvent(EventType.SIGNAL_RETURNED, d.at, SYSTEM, d.detail))
                return TicketChange(row.id, row.site, EventType.SIGNAL_RETURNED, TicketStatus(row.status), d.fault)
            return None  # a repeat of a fault already ticketed changes nothing
        level = site.service_level(d.severity, d.fault)
        recent = self._recently_ended(session, d)
        if recent is not None:
            reopen = serialise_deadlines(deadlines(d.at, level))
            append_event(session, recent, TicketEvent(EventType.REOPENED, d.at, SYSTEM, f"recurred: {d.detail}", reopen))
            return TicketChange(recent.id, recent.site, EventType.REOPENED, TicketStatus.OPEN, d.fault)
        spec = FAULTS[d.fault]
        device = site.devices.get(d.subject.id) if d.subject.type == "device" else None
        title = f"{device.name if device else d.subject.id} · {spec.zh}"
        opened: dict[str, Any] = {
            "site": d.site, "subject_type": d.subject.type, "subject_id": d.subject.id, "fault": d.fault,
            "severity": d.severity.value, "teams": [t.value for t in site.teams_for(d.fault, d.kind)],
            "source": "detector", "device_ids": list(d.device_ids), "title": title,
            **serialise_deadlines(deadlines(d.at, level)),
        }
        row = append_event(session, None, TicketEvent(EventType.OPENED, d.at, SYSTEM, d.detail, opened))
        return TicketChange(row.id, row.site, EventType.OPENED, TicketStatus.OPEN, d.fault)

    def _recently_ended(self, session: Session, d: FaultRaised) -> TicketRow | None:
        """A closed ticket of the same subject and fault within 72 h: a recurrence reopens it."""
        row = session.scalars(
            select(TicketRow).where(
                TicketRow.site == d.site, TicketRow.subject_type == d.subject.type, TicketRow.subject_id == d.subject.id,
                TicketRow.fault == d.fault, TicketRow.status == TicketStatus.CLOSED.value,
                TicketRow.closed_at >= d.at - REOPEN_WINDOW,
            ).order_by(TicketRow.closed_at.desc())
        ).first()
        return row

    def _cleared(self, session: Session, d: FaultCleared) -> TicketChange | None:
        row = find_active(session, d.site, d.subject, d.fault)
        if row is None or row.signal_cleared_at is not None or TicketStatus(row.status) not in ACTIVE:
            return None
        # The signal went away before anyone acted: recorded, but the ticket stays open for a person.
        append_event(session, row, TicketEvent(EventType.SIGNAL_CLEARED, d.at, SYSTEM, None))
        return TicketChange(row.id, row.site, EventType.SIGNAL_CLEARED, TicketStatus(row.status), d.fault)
