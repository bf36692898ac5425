"""Ticket persistence: events appended, the projection rewritten from their fold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from linli.catalog import FAULTS
from linli.engine.decisions import (
    ChildAttached,
    Decision,
    DeviceCommand,
    FaultCleared,
    FaultRaised,
    MemberChanged,
    SoakEnded,
)
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
            change: TicketChange | None = None
            if isinstance(decision, FaultRaised):
                change = self._raised(session, decision)
                if change is not None and decision.parent is not None:
                    self._link(session, change, decision)
            elif isinstance(decision, FaultCleared):
                change = self._cleared(session, decision)
            elif isinstance(decision, ChildAttached):
                change = self._attached(session, decision)
            elif isinstance(decision, MemberChanged):
                change = self._member(session, decision)
            elif isinstance(decision, SoakEnded):
                change = self._soak_ended(session, decision)
            elif isinstance(decision, DeviceCommand):
                continue  # the gateway publishes it; nothing to store on a ticket
            if change is not None:
                changes.append(change)
        return changes

    def _link(self, session: Session, change: TicketChange, d: FaultRaised) -> None:
        """A fault raised under a correlated parent (a trapped passenger in a building without power)."""
        assert d.parent is not None
        parent = find_active(session, d.site, d.parent[0], d.parent[1])
        row = session.get(TicketRow, change.ticket_id)
        if parent is None or row is None or row.parent_id == parent.id:
            return
        append_event(session, row, TicketEvent(EventType.ATTACHED, d.at, SYSTEM, f"关联 #{parent.id}",
                                               {"parent_id": parent.id}))

    def _attached(self, session: Session, d: ChildAttached) -> TicketChange | None:
        child = find_active(session, d.site, d.child, d.child_fault)
        parent = find_active(session, d.site, d.parent, d.parent_fault)
        if child is None or parent is None or child.parent_id == parent.id:
            return None
        append_event(session, child, TicketEvent(EventType.ATTACHED, d.at, SYSTEM, f"归入 #{parent.id}",
                                                 {"parent_id": parent.id}))
        return TicketChange(child.id, child.site, EventType.ATTACHED, TicketStatus(child.status), d.child_fault)

    def _member(self, session: Session, d: MemberChanged) -> TicketChange | None:
        parent = find_active(session, d.site, d.parent, d.parent_fault)
        if parent is None:
            return None
        if d.active and d.device_id in (parent.device_ids or []):
            return None  # a member it was raised with
        data = {"device_id": d.device_id, "fault": d.fault, "active": d.active}
        append_event(session, parent, TicketEvent(EventType.MEMBER_CHANGED, d.at, SYSTEM, d.detail or None, data))
        return TicketChange(parent.id, parent.site, EventType.MEMBER_CHANGED, TicketStatus(parent.status), d.parent_fault)

    def _soak_ended(self, session: Session, d: SoakEnded) -> TicketChange | None:
        row = session.get(TicketRow, d.ticket_id)
        if row is None or row.status != TicketStatus.RESOLVED.value:
            return None  # moved on meanwhile (reopened by a relapse, cancelled): nothing to verify
        if d.outcome == "verified":
            append_event(session, row, TicketEvent(EventType.VERIFIED, d.at, SYSTEM, d.detail))
            append_event(session, row, TicketEvent(EventType.CLOSED, d.at, SYSTEM, "运行验证通过，销号"))
            return TicketChange(row.id, row.site, EventType.CLOSED, TicketStatus.CLOSED, row.fault)
        if d.outcome == "relapsed":
            return self._reopen(session, row, d.at, d.detail)
        append_event(session, row, TicketEvent(EventType.COMMENTED, d.at, SYSTEM, d.detail))
        return None

    def _reopen(self, session: Session, row: TicketRow, at: datetime, why: str) -> TicketChange:
        """Back to its previous assignee (the REOPENED event keeps the assignee), with fresh deadlines."""
        view = view_of(row)
        level = self._sites[row.site].service_level(view.severity, view.fault)
        data = serialise_deadlines(deadlines(at, level))
        append_event(session, row, TicketEvent(EventType.REOPENED, at, SYSTEM, why, data))
        return TicketChange(row.id, row.site, EventType.REOPENED, TicketStatus.OPEN, row.fault)

    def _raised(self, session: Session, d: FaultRaised) -> TicketChange | None:
        site = self._sites[d.site]
        row = find_active(session, d.site, d.subject, d.fault)
        if row is not None:
            view = view_of(row)
            if view.status in (TicketStatus.RESOLVED, TicketStatus.VERIFIED):
                return self._reopen(session, row, d.at, f"修复后复发：{d.detail}")
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
            return self._reopen(session, recent, d.at, f"72 小时内复发：{d.detail}")
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
