"""Escalation made durable: overdue tickets get their ``escalated`` events, once each.

The gateway's timer calls :meth:`EscalationService.run` with its clock's time, commits, and hands
the returned :class:`EscalationRecorded` items to the notifier. What is due comes from
``linli.sla`` over each ticket's events, so a run that finds nothing new records nothing, and a
restart or a second runner cannot send the same level twice (each ticket is claimed at the version
read, and the state machine refuses a level out of order).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, selectinload

from linli.catalog import Severity
from linli.oncall import Person
from linli.site import SiteRegistry
from linli.sla import ACK_FLOOR, ESCALATING, Escalation, due_escalations
from linli.storage.models import TicketRow
from linli.storage.tickets import StaleTicket, append_event, event_of
from linli.tickets import TransitionError, fold

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EscalationRecorded:
    """One escalation stored on a ticket: who to tell, about what."""

    ticket_id: int
    event_id: int  # the ``escalated`` event: a notifier's idempotency key
    site: str
    title: str | None
    fault: str
    severity: Severity
    team: str
    deadline: str  # ack | start | resolve
    level: int
    reason: str  # missed_ack | missed_start | missed_fix | reminder
    people: tuple[Person, ...]
    due_at: datetime
    at: datetime  # when it was recorded


class EscalationService:
    """Escalates the tickets of the sites it is given, and only those: give it the sites this
    process holds (the standby lease), and the new registry after a site-file reload."""

    def __init__(self, sites: SiteRegistry) -> None:
        self._sites = sites

    def use_sites(self, sites: SiteRegistry) -> None:
        self._sites = sites

    def candidates(self, session: Session, now: datetime) -> list[TicketRow]:
        """Active tickets of our sites with a deadline (or the 24 h floor) passed: the only ones
        that can have an escalation due. Events are loaded with them (one query, not one per ticket)."""
        if not len(self._sites):
            return []
        statuses = [s.value for s in ESCALATING]
        return list(session.scalars(
            select(TicketRow)
            .where(
                TicketRow.active.is_(True), TicketRow.status.in_(statuses), TicketRow.site.in_(self._sites.ids()),
                or_(
                    TicketRow.ack_due_at <= now, TicketRow.start_due_at <= now, TicketRow.resolve_due_at <= now,
                    TicketRow.opened_at <= now - ACK_FLOOR,
                ),
            )
            .order_by(TicketRow.id)
            .options(selectinload(TicketRow.events))
        ))

    def run(self, session: Session, now: datetime) -> list[EscalationRecorded]:
        """Record every escalation due at `now`; the caller commits, then notifies what is returned."""
        recorded: list[EscalationRecorded] = []
        for row in self.candidates(session, now):
            site = self._sites.get(row.site)
            if site is None:
                continue
            history = [event_of(e) for e in row.events]
            view = fold(history)
            due = due_escalations(view, history, site, now)
            if not due:
                continue
            try:
                _claim(session, row)
                for escalation in due:
                    append_event(session, row, escalation.event(now), expected_version=row.version)
                    recorded.append(_recorded(row, escalation, now))
            except (StaleTicket, TransitionError) as exc:
                # Someone acted on the ticket meanwhile: the next run sees its new state.
                log.info("escalation of ticket %s skipped: %s", row.id, exc)
                session.expire(row)
        return recorded


def _claim(session: Session, row: TicketRow) -> None:
    """Lock the ticket at the version read, or raise StaleTicket: an acknowledgement committed since
    our read must win over an escalation computed without it."""
    seen = row.version
    result = session.execute(
        update(TicketRow).where(TicketRow.id == row.id, TicketRow.version == seen).values(version=seen)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 1) != 1:
        raise StaleTicket(f"ticket {row.id} changed since it was read")


def _recorded(row: TicketRow, escalation: Escalation, now: datetime) -> EscalationRecorded:
    return EscalationRecorded(
        ticket_id=row.id, event_id=row.events[-1].id, site=row.site, title=row.title, fault=row.fault,
        severity=Severity(row.severity), team=escalation.team, deadline=escalation.deadline, level=escalation.level,
        reason=escalation.reason, people=escalation.people, due_at=escalation.due_at, at=now,
    )


__all__ = ["EscalationRecorded", "EscalationService"]
