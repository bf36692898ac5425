"""Tickets of the caller's sites: list, detail with history, and the staff workflow: open a ticket,
acknowledge, start, hold, resume, resolve, comment, assign, cancel, close.

Every action appends one event to the ticket's history, checked against the state machine
(``linli.tickets``: a transition it does not allow is 409 with the reason) and claimed at the version
the request read (send `version` to act only on what you saw: a stale one is 409).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, status
from sqlalchemy import String, and_, cast, false, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session, selectinload
from sqlalchemy.sql.elements import ColumnElement

from api.deps import ClockDep, CurrentUser, SessionDep, SitesDep, VisibleSites
from api.routes.devices import resolve_device, site_or_404
from api.schemas import NO_NUL, AckRequest, TicketPublic, TicketsPublic
from api.schemas_workflow import (
    ActionRequest,
    AssignRequest,
    CommentRequest,
    ReasonRequest,
    ResolveRequest,
    TicketCreateRequest,
)
from api.ticket_actions import (
    BadRequest,
    DuplicateTicket,
    Forbidden,
    NotNow,
    acknowledge,
    assign,
    cancel,
    close,
    may_see,
    open_ticket,
    team_scoped,
    work,
)
from api.views import ticket_public
from linli.catalog import Severity, Team
from linli.site import DEVICE_ID
from linli.storage.models import TicketRow, User
from linli.storage.tickets import StaleTicket
from linli.tickets import EventType, TicketStatus, TransitionError

router = APIRouter(prefix="/tickets", tags=["tickets"])


TicketId = Annotated[int, Path(description="the ticket's id", examples=[1])]
_PLAIN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

SORTS: dict[str, InstrumentedAttribute[Any]] = {
    "opened_at": TicketRow.opened_at, "ack_due_at": TicketRow.ack_due_at, "start_due_at": TicketRow.start_due_at,
    "resolve_due_at": TicketRow.resolve_due_at, "severity": TicketRow.severity, "status": TicketRow.status,
    "updated_at": TicketRow.updated_at, "id": TicketRow.id,
}
SortKey = Literal[
    "opened_at", "-opened_at", "ack_due_at", "-ack_due_at", "start_due_at", "-start_due_at", "resolve_due_at",
    "-resolve_due_at", "severity", "-severity", "status", "-status", "updated_at", "-updated_at", "id", "-id",
]


def _json_list_contains(column: InstrumentedAttribute[list[str]], value: str) -> ColumnElement[bool]:
    """`value` is an element of a JSON list of ids, on SQLite and PostgreSQL alike.

    Ids (device ids, team codes) are plain ASCII, so the JSON text holds them verbatim between
    quotes; anything else cannot be in such a list.
    """
    if not _PLAIN_ID.match(value):
        return false()
    escaped = value.replace("_", "\\_")  # `_` is LIKE's one-character wildcard
    return cast(column, String).like(f'%"{escaped}"%', escape="\\")


def overdue_condition(now: datetime) -> ColumnElement[bool]:
    """The lead team's current deadline is missed (as ``linli.sla``): acknowledge while open; be on site
    (P0/P1) until started; fix while acknowledged or in progress. On hold, the fix clock stands still."""
    open_, acked, working = TicketStatus.OPEN.value, TicketStatus.ACKNOWLEDGED.value, TicketStatus.IN_PROGRESS.value
    return or_(
        and_(TicketRow.status == open_, TicketRow.ack_due_at <= now),
        and_(TicketRow.status.in_([open_, acked]), TicketRow.start_due_at.is_not(None), TicketRow.start_due_at <= now),
        and_(TicketRow.status.in_([open_, acked, working]), TicketRow.resolve_due_at <= now),
    )


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"{name} needs an offset, e.g. 2026-11-26T18:00:00+08:00 (write + as %2B in a URL) or ...Z")
    return value


def ticket_or_404(session: Session, visible: list[str], ticket_id: int, user: User | None = None) -> TicketRow:
    """A ticket of the caller's sites (another site's looks absent: 404); a technician's own teams' only (403)."""
    row = session.scalars(
        select(TicketRow).options(selectinload(TicketRow.events)).where(TicketRow.id == ticket_id)
    ).first()
    if row is None or row.site not in visible:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"ticket {ticket_id} not found")
    if user is not None and not may_see(user, row):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"ticket {ticket_id} is not dispatched to your teams ({', '.join(user.teams or ())})"
        )
    return row


@router.get("", response_model=TicketsPublic, responses={404: {"description": "no such site among yours (`site`)"}})
def list_tickets(
    *,
    session: SessionDep,
    user: CurrentUser,
    sites: SitesDep,
    visible: VisibleSites,
    clock: ClockDep,
    status_: Annotated[list[TicketStatus] | None, Query(alias="status", description="repeat for several")] = None,
    device_id: Annotated[str | None, Query(pattern=DEVICE_ID, description="tickets whose devices include this one")] = None,
    fault: Annotated[str | None, Query(max_length=64, pattern=NO_NUL, description="a fault code or report category")] = None,
    team: Annotated[Team | None, Query(description="tickets dispatched to this team")] = None,
    severity: Annotated[list[Severity] | None, Query(description="repeat for several")] = None,
    site: Annotated[str | None, Query(description="only this site (default: every site you see)")] = None,
    opened_since: Annotated[datetime | None, Query(description="opened at or after (ISO 8601 with offset)",
                                                   examples=["2026-11-01T00:00:00+08:00"])] = None,
    opened_until: Annotated[datetime | None, Query(description="opened before (ISO 8601 with offset)")] = None,
    overdue: Annotated[bool | None, Query(
        description="true: the lead team's current deadline (acknowledge, be on site, fix) has passed; false: it has not",
    )] = None,
    sort: Annotated[SortKey, Query(
        description="the order: a field, `-` first for descending; ties by id. Nulls (start_due_at) come last.",
        examples=["ack_due_at", "-opened_at"],
    )] = "-opened_at",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> TicketsPublic:
    """Tickets of your sites (a technician: of their teams), newest first by default, each with its history.

    Filters combine with AND; `status` and `severity` may repeat (OR within). `total` counts every
    match before `limit`/`offset`. Example: `?status=open&status=acknowledged&overdue=true&sort=ack_due_at`.
    """
    site_ids = [site_or_404(sites, visible, site).id] if site is not None else visible
    conditions: list[ColumnElement[bool]] = [TicketRow.site.in_(site_ids)]
    if team_scoped(user):
        conditions.append(or_(false(), *(_json_list_contains(TicketRow.teams, t) for t in user.teams or ())))
    if status_:
        conditions.append(TicketRow.status.in_([s.value for s in status_]))
    if device_id is not None:
        conditions.append(or_(TicketRow.device_id == device_id, _json_list_contains(TicketRow.device_ids, device_id)))
    if fault is not None:
        conditions.append(TicketRow.fault == fault)
    if team is not None:
        conditions.append(_json_list_contains(TicketRow.teams, team.value))
    if severity:
        conditions.append(TicketRow.severity.in_([s.value for s in severity]))
    since, until = _aware("opened_since", opened_since), _aware("opened_until", opened_until)
    if since is not None:
        conditions.append(TicketRow.opened_at >= since)
    if until is not None:
        conditions.append(TicketRow.opened_at < until)
    if overdue is not None:
        late = overdue_condition(clock.now())
        conditions.append(late if overdue else ~late)
    descending = sort.startswith("-")
    column: InstrumentedAttribute[Any] = SORTS[sort.lstrip("-")]
    order: list[ColumnElement[Any]] = [column.desc().nulls_last() if descending else column.asc().nulls_last(),
             TicketRow.id.desc() if descending else TicketRow.id.asc()]
    total = session.scalar(select(func.count()).select_from(TicketRow).where(*conditions)) or 0
    rows = session.scalars(
        select(TicketRow)
        .options(selectinload(TicketRow.events))
        .where(*conditions)
        .order_by(*order)
        .limit(limit)
        .offset(offset)
    ).all()
    return TicketsPublic(items=[ticket_public(row) for row in rows], total=total)


TICKET_ERRORS: dict[int | str, dict[str, str]] = {
    403: {"description": "your role or teams may not do this to this ticket"},
    404: {"description": "no such ticket"},
    409: {"description": "the ticket's state does not allow it (the detail says why), or it changed since `version`"},
}


@router.post(
    "",
    response_model=TicketPublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        400: {"description": "the device id exists in several of your sites: give `site`"},
        403: {"description": "viewers cannot open tickets"},
        404: {"description": "no such site or device"},
        409: {"description": "the subject already has an active ticket for this fault (its id is in the detail)"},
        422: {"description": "unknown fault code, a fault that does not apply to the device, bad fields"},
    },
)
def create_ticket(body: TicketCreateRequest, *, session: SessionDep, user: CurrentUser, sites: SitesDep,
                  visible: VisibleSites, clock: ClockDep) -> TicketPublic:
    """立案 by staff (manager, technician, grid officer): on a device or a place, for a fault catalog code or
    with a free title (its fault is then `other`). Source `staff`, or `grid_officer` for a grid officer."""
    if user.role not in ("admin", "manager", "technician", "grid_officer"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"a {user.role} cannot open tickets")
    device = None
    if body.device_id is not None:
        site, device = resolve_device(sites, visible, body.device_id, body.site)
    elif body.site is not None:
        site = site_or_404(sites, visible, body.site)
    elif len(visible) == 1:
        site = sites[visible[0]]
    else:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "you see several sites: say which with `site`")
    try:
        row = open_ticket(session, site, user, device=device, place=body.place, fault=body.fault, title=body.title,
                          severity=body.severity, teams=body.teams, description=body.description, at=clock.now())
        session.commit()
    except Forbidden as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except BadRequest as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    except DuplicateTicket as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return ticket_public(row)


@router.get("/{ticket_id}", response_model=TicketPublic,
            responses={403: TICKET_ERRORS[403], 404: TICKET_ERRORS[404]})
def get_ticket(ticket_id: TicketId, *, session: SessionDep, user: CurrentUser, visible: VisibleSites) -> TicketPublic:
    """One ticket with its full history (every event: who, when, from, to, note)."""
    return ticket_public(ticket_or_404(session, visible, ticket_id, user))


def _perform(session: Session, row: TicketRow, action: Callable[[], object]) -> TicketPublic:
    """Run one action and commit; its refusals become 403 / 409 / 422 with the reason."""
    try:
        action()
        session.commit()
    except Forbidden as exc:
        session.rollback()
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except BadRequest as exc:
        session.rollback()
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    except (TransitionError, StaleTicket, NotNow) as exc:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return ticket_public(row)


@router.post("/{ticket_id}/ack", response_model=TicketPublic, responses=TICKET_ERRORS)
def acknowledge_ticket(
    ticket_id: TicketId,
    *,
    session: SessionDep,
    user: CurrentUser,
    visible: VisibleSites,
    clock: ClockDep,
    body: Annotated[AckRequest | None, Body()] = None,
) -> TicketPublic:
    """签收: a team member acknowledges for their team; a manager for the lead team or a named one."""
    request = body or AckRequest()
    row = ticket_or_404(session, visible, ticket_id, user)
    return _perform(session, row, lambda: acknowledge(
        session, row, user, team=request.team, note=request.note, at=clock.now(), expected_version=request.version
    ))


@router.post("/{ticket_id}/start", response_model=TicketPublic, responses=TICKET_ERRORS)
def start_ticket(ticket_id: TicketId, *, session: SessionDep, user: CurrentUser, visible: VisibleSites, clock: ClockDep,
                 body: Annotated[ActionRequest | None, Body()] = None) -> TicketPublic:
    """到场: work starts on site (from open or acknowledged); the starter becomes the assignee if none."""
    request = body or ActionRequest()
    row = ticket_or_404(session, visible, ticket_id, user)
    return _perform(session, row, lambda: work(session, row, user, EventType.STARTED, note=request.note,
                                               at=clock.now(), expected_version=request.version))


@router.post("/{ticket_id}/hold", response_model=TicketPublic, responses=TICKET_ERRORS)
def hold_ticket(ticket_id: TicketId, body: ReasonRequest, *, session: SessionDep, user: CurrentUser, visible: VisibleSites,
                clock: ClockDep) -> TicketPublic:
    """挂起 (from in progress), with a reason: the fix clock stops until it is resumed."""
    row = ticket_or_404(session, visible, ticket_id, user)
    return _perform(session, row, lambda: work(session, row, user, EventType.HELD, note=body.reason,
                                               at=clock.now(), expected_version=body.version))


@router.post("/{ticket_id}/resume", response_model=TicketPublic, responses=TICKET_ERRORS)
def resume_ticket(ticket_id: TicketId, *, session: SessionDep, user: CurrentUser, visible: VisibleSites, clock: ClockDep,
                  body: Annotated[ActionRequest | None, Body()] = None) -> TicketPublic:
    """恢复 (from on hold): the fix deadline moves by the time held."""
    request = body or ActionRequest()
    row = ticket_or_404(session, visible, ticket_id, user)
    return _perform(session, row, lambda: work(session, row, user, EventType.RESUMED, note=request.note,
                                               at=clock.now(), expected_version=request.version))


@router.post("/{ticket_id}/resolve", response_model=TicketPublic, responses=TICKET_ERRORS)
def resolve_ticket(ticket_id: TicketId, body: ResolveRequest, *, session: SessionDep, user: CurrentUser,
                   visible: VisibleSites, clock: ClockDep) -> TicketPublic:
    """办结 (from acknowledged or in progress), with a note and optional photo ids: a device ticket is then
    verified by telemetry through the soak and closed by the system."""
    row = ticket_or_404(session, visible, ticket_id, user)
    data = {"photos": list(body.photos)} if body.photos else {}
    return _perform(session, row, lambda: work(session, row, user, EventType.RESOLVED, note=body.note,
                                               at=clock.now(), expected_version=body.version, data=data))


@router.post("/{ticket_id}/comments", response_model=TicketPublic, responses=TICKET_ERRORS)
def comment_ticket(ticket_id: TicketId, body: CommentRequest, *, session: SessionDep, user: CurrentUser,
                   visible: VisibleSites, clock: ClockDep) -> TicketPublic:
    """A note in the history (any state); it changes nothing else."""
    row = ticket_or_404(session, visible, ticket_id, user)
    return _perform(session, row, lambda: work(session, row, user, EventType.COMMENTED, note=body.note,
                                               at=clock.now(), expected_version=body.version))


@router.post("/{ticket_id}/assign", response_model=TicketPublic,
             responses={**TICKET_ERRORS, 422: {"description": "the assignee is not a technician or grid officer "
                                                                "of the ticket's teams at its site"}})
def assign_ticket(ticket_id: TicketId, body: AssignRequest, *, session: SessionDep, user: CurrentUser,
                  visible: VisibleSites, clock: ClockDep) -> TicketPublic:
    """派单 to a person. A manager: anyone of the ticket's teams (or null to unassign); a technician or grid
    officer: someone of a team they share on the ticket, themselves included."""
    row = ticket_or_404(session, visible, ticket_id, user)
    return _perform(session, row, lambda: assign(session, row, user, assignee=body.assignee, note=body.note,
                                                 at=clock.now(), expected_version=body.version))


@router.post("/{ticket_id}/cancel", response_model=TicketPublic, responses=TICKET_ERRORS)
def cancel_ticket(ticket_id: TicketId, body: ReasonRequest, *, session: SessionDep, user: CurrentUser,
                  visible: VisibleSites, clock: ClockDep) -> TicketPublic:
    """撤销 (manager), with a reason, from any active state."""
    row = ticket_or_404(session, visible, ticket_id, user)
    return _perform(session, row, lambda: cancel(session, row, user, reason=body.reason, at=clock.now(),
                                                 expected_version=body.version))


@router.post("/{ticket_id}/close", response_model=TicketPublic, responses=TICKET_ERRORS)
def close_ticket(ticket_id: TicketId, *, session: SessionDep, user: CurrentUser, visible: VisibleSites, clock: ClockDep,
                 body: Annotated[ActionRequest | None, Body()] = None) -> TicketPublic:
    """销号 (manager) of a resolved ticket with no device; device tickets are closed by the system once
    telemetry verifies the repair."""
    request = body or ActionRequest()
    row = ticket_or_404(session, visible, ticket_id, user)
    return _perform(session, row, lambda: close(session, row, user, note=request.note, at=clock.now(),
                                                expected_version=request.version))
