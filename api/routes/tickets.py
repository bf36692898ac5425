"""Tickets of the caller's sites: list, detail with history, acknowledge."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Query, status
from sqlalchemy import String, cast, false, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, selectinload
from sqlalchemy.sql.elements import ColumnElement

from api.deps import ClockDep, CurrentUser, SessionDep, SitesDep, VisibleSites
from api.routes.devices import site_or_404
from api.schemas import NO_NUL, AckRequest, TicketPublic, TicketsPublic
from api.ticket_actions import Forbidden, acknowledge
from api.views import ticket_public
from linli.catalog import Severity, Team
from linli.site import DEVICE_ID
from linli.storage.models import TicketRow
from linli.storage.tickets import StaleTicket
from linli.tickets import TicketStatus, TransitionError

router = APIRouter(prefix="/tickets", tags=["tickets"])


_PLAIN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _json_list_contains(column: InstrumentedAttribute[list[str]], value: str) -> ColumnElement[bool]:
    """`value` is an element of a JSON list of ids, on SQLite and PostgreSQL alike.

    Ids (device ids, team codes) are plain ASCII, so the JSON text holds them verbatim between
    quotes; anything else cannot be in such a list.
    """
    if not _PLAIN_ID.match(value):
        return false()
    escaped = value.replace("_", "\\_")  # `_` is LIKE's one-character wildcard
    return cast(column, String).like(f'%"{escaped}"%', escape="\\")


def ticket_or_404(session: SessionDep, visible: list[str], ticket_id: int) -> TicketRow:
    row = session.scalars(
        select(TicketRow).options(selectinload(TicketRow.events)).where(TicketRow.id == ticket_id)
    ).first()
    if row is None or row.site not in visible:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"ticket {ticket_id} not found")
    return row


@router.get("", response_model=TicketsPublic)
def list_tickets(
    *,
    session: SessionDep,
    sites: SitesDep,
    visible: VisibleSites,
    status_: Annotated[list[TicketStatus] | None, Query(alias="status", description="repeat for several")] = None,
    device_id: Annotated[str | None, Query(pattern=DEVICE_ID, description="tickets whose devices include this one")] = None,
    fault: Annotated[str | None, Query(max_length=64, pattern=NO_NUL, description="a fault code or report category")] = None,
    team: Annotated[Team | None, Query(description="tickets dispatched to this team")] = None,
    severity: Severity | None = None,
    site: Annotated[str | None, Query(description="only this site (default: every site you see)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> TicketsPublic:
    """Tickets newest first, each with its history."""
    site_ids = [site_or_404(sites, visible, site).id] if site is not None else visible
    conditions: list[ColumnElement[bool]] = [TicketRow.site.in_(site_ids)]
    if status_:
        conditions.append(TicketRow.status.in_([s.value for s in status_]))
    if device_id is not None:
        conditions.append(or_(TicketRow.device_id == device_id, _json_list_contains(TicketRow.device_ids, device_id)))
    if fault is not None:
        conditions.append(TicketRow.fault == fault)
    if team is not None:
        conditions.append(_json_list_contains(TicketRow.teams, team.value))
    if severity is not None:
        conditions.append(TicketRow.severity == severity.value)
    total = session.scalar(select(func.count()).select_from(TicketRow).where(*conditions)) or 0
    rows = session.scalars(
        select(TicketRow)
        .options(selectinload(TicketRow.events))
        .where(*conditions)
        .order_by(TicketRow.opened_at.desc(), TicketRow.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return TicketsPublic(items=[ticket_public(row) for row in rows], total=total)


@router.get("/{ticket_id}", response_model=TicketPublic, responses={404: {"description": "no such ticket"}})
def get_ticket(ticket_id: int, *, session: SessionDep, visible: VisibleSites) -> TicketPublic:
    """One ticket with its full history (every event: who, when, from, to, note)."""
    return ticket_public(ticket_or_404(session, visible, ticket_id))


@router.post(
    "/{ticket_id}/ack",
    response_model=TicketPublic,
    responses={
        403: {"description": "you may not acknowledge for that team"},
        404: {"description": "no such ticket"},
        409: {"description": "the ticket's state does not allow it, or it changed meanwhile"},
    },
)
def acknowledge_ticket(
    ticket_id: int,
    *,
    session: SessionDep,
    user: CurrentUser,
    visible: VisibleSites,
    clock: ClockDep,
    body: Annotated[AckRequest | None, Body()] = None,
) -> TicketPublic:
    """签收: a team member acknowledges for their team; a manager for the lead team or a named one."""
    request = body or AckRequest()
    row = ticket_or_404(session, visible, ticket_id)
    try:
        acknowledge(
            session, row, user, team=request.team, note=request.note, at=clock.now(), expected_version=request.version
        )
        session.commit()
    except Forbidden as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except (TransitionError, StaleTicket) as exc:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return ticket_public(row)
