"""What a person may do to a ticket, as events appended through ``linli.storage.tickets``.

Each action decides who may act and for which team, claims the ticket at the version it was
read (so two people acting at once cannot both win), and appends one event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from linli.catalog import FAULTS, Severity, Team
from linli.site import Device, Site
from linli.storage.models import TicketRow, User
from linli.storage.tickets import StaleTicket, append_event, find_active
from linli.storage.users import get_user
from linli.tickets import ENDED, EventType, Subject, TicketEvent, TicketStatus, deadlines, serialise_deadlines

MANAGING_ROLES = frozenset({"admin", "manager"})
TEAM_ROLES = frozenset({"technician", "grid_officer"})


FREE_FAULT = "other"  # the fault of a staff ticket with a free title instead of a catalog code


class Forbidden(Exception):
    """The account may not do this to this ticket (HTTP 403)."""


class BadRequest(Exception):
    """The request names something that does not fit the ticket (an assignee, a fault; HTTP 422)."""


class NotNow(Exception):
    """Not allowed in the ticket's state, beyond the state machine's own rules (HTTP 409)."""


class DuplicateTicket(Exception):
    """The subject already has an active ticket for this fault (HTTP 409)."""

    def __init__(self, ticket_id: int) -> None:
        super().__init__(f"ticket {ticket_id} is already open for this subject and fault: act on it instead")
        self.ticket_id = ticket_id


def claim(session: Session, row: TicketRow, expected_version: int | None = None) -> None:
    """Lock the ticket at the version this request read, or raise :class:`StaleTicket`.

    The conditional UPDATE takes the row's write lock (PostgreSQL) or the database's (SQLite)
    and matches nothing when someone else appended an event since our read.
    """
    seen = row.version
    if expected_version is not None and expected_version != seen:
        raise StaleTicket(f"ticket {row.id} is at version {seen}, not {expected_version}: reload it and try again")
    result = session.execute(
        update(TicketRow)
        .where(TicketRow.id == row.id, TicketRow.version == seen)
        .values(version=seen)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 1) != 1:
        raise StaleTicket(f"ticket {row.id} changed while this request was handled: reload it and try again")


def team_to_acknowledge(user: User, row: TicketRow, requested: str | None) -> str:
    """The team `user` acknowledges for: theirs on the ticket, or (a manager) the lead or a named team."""
    teams = list(row.teams or ())
    if user.role in MANAGING_ROLES:
        team = requested or (teams[0] if teams else None)
        if team is None or team not in teams:
            raise Forbidden(f"team {team!r} is not dispatched on ticket {row.id} (its teams: {', '.join(teams)})")
        return team
    if user.role not in TEAM_ROLES:
        raise Forbidden(f"a {user.role} cannot acknowledge tickets")
    mine = [t for t in teams if t in (user.teams or ())]
    if requested is not None:
        if requested not in teams:
            raise Forbidden(f"team {requested!r} is not dispatched on ticket {row.id} (its teams: {', '.join(teams)})")
        if requested not in mine:
            raise Forbidden(f"you are not a member of team {requested!r}")
        return requested
    if not mine:
        raise Forbidden(f"none of your teams ({', '.join(user.teams or ()) or 'none'}) is dispatched on ticket {row.id}")
    pending = [t for t in mine if t not in (row.acks or {})]
    return pending[0] if pending else mine[0]  # all acknowledged already: the state machine says so


def acknowledge(
    session: Session,
    row: TicketRow,
    user: User,
    *,
    team: str | None,
    note: str | None,
    at: datetime,
    expected_version: int | None = None,
) -> TicketRow:
    """Append one team's acknowledgement. Raises Forbidden, StaleTicket or TransitionError."""
    chosen = team_to_acknowledge(user, row, team)
    claim(session, row, expected_version)
    event = TicketEvent(EventType.ACKNOWLEDGED, at, user.username, note, {"team": chosen})
    return append_event(session, row, event, expected_version=row.version)




# ---------------------------------------------------------------- who may see and act


def team_scoped(user: User) -> bool:
    """Technicians see their own teams' tickets only; other roles see every ticket of their sites."""
    return user.role == "technician"


def may_see(user: User, row: TicketRow) -> bool:
    return not team_scoped(user) or bool(set(user.teams or ()) & set(row.teams or ()))


def may_work_on(user: User, row: TicketRow) -> None:
    """Managers act on every ticket of their sites; technicians and grid officers on their teams' tickets."""
    if user.role in MANAGING_ROLES:
        return
    if user.role not in TEAM_ROLES:
        raise Forbidden(f"a {user.role} cannot change tickets")
    if not set(user.teams or ()) & set(row.teams or ()):
        raise Forbidden(
            f"ticket {row.id} is dispatched to {', '.join(row.teams or ())}, none of your teams "
            f"({', '.join(user.teams or ()) or 'none'})"
        )


def must_manage(user: User, what: str) -> None:
    if user.role not in MANAGING_ROLES:
        raise Forbidden(f"only a manager may {what}")


# ---------------------------------------------------------------- actions


def act(
    session: Session, row: TicketRow, user: User, kind: EventType, *, note: str | None, at: datetime,
    expected_version: int | None = None, data: dict[str, Any] | None = None,
) -> TicketRow:
    """Claim the ticket at the version read and append one event (the state machine checks it)."""
    claim(session, row, expected_version)
    return append_event(session, row, TicketEvent(kind, at, user.username, note, data or {}), expected_version=row.version)


def work(
    session: Session, row: TicketRow, user: User, kind: EventType, *, note: str | None, at: datetime,
    expected_version: int | None = None, data: dict[str, Any] | None = None,
) -> TicketRow:
    """start, hold, resume, resolve, comment: a member of one of the ticket's teams, or a manager."""
    may_work_on(user, row)
    return act(session, row, user, kind, note=note, at=at, expected_version=expected_version, data=data)


def cancel(
    session: Session, row: TicketRow, user: User, *, reason: str, at: datetime, expected_version: int | None = None
) -> TicketRow:
    must_manage(user, "cancel a ticket")
    return act(session, row, user, EventType.CANCELLED, note=reason, at=at, expected_version=expected_version)


def close(
    session: Session, row: TicketRow, user: User, *, note: str | None, at: datetime, expected_version: int | None = None
) -> TicketRow:
    """销号 by a manager: only tickets with no device (a device ticket is closed once telemetry verifies it)."""
    must_manage(user, "close a ticket")
    if row.device_id or row.device_ids:
        raise NotNow(
            f"ticket {row.id} concerns devices: it is closed by the system once telemetry verifies the repair"
        )
    return act(session, row, user, EventType.CLOSED, note=note, at=at, expected_version=expected_version)


def assign(
    session: Session, row: TicketRow, user: User, *, assignee: str | None, note: str | None, at: datetime,
    expected_version: int | None = None,
) -> TicketRow:
    """派单 to a person: a manager to any technician or grid officer of the ticket's teams; a team member
    to someone of a team they share on the ticket (themselves included). Only a manager unassigns."""
    may_work_on(user, row)
    if TicketStatus(row.status) in ENDED:
        raise NotNow(f"cannot assign a ticket that is {row.status}")
    teams = set(row.teams or ())
    if assignee is None:
        must_manage(user, "unassign a ticket")
    else:
        person = get_user(session, assignee)
        if person is None or person.disabled or person.role not in TEAM_ROLES:
            raise BadRequest(f"{assignee!r} is not an active technician or grid officer")
        if row.site not in (person.sites or ()):
            raise BadRequest(f"{assignee!r} does not work at site {row.site!r}")
        shared = teams & set(person.teams or ())
        if user.role not in MANAGING_ROLES:
            shared &= set(user.teams or ())
        if not shared:
            raise BadRequest(f"{assignee!r} is in none of the ticket's teams you may assign for ({', '.join(sorted(teams))})")
    return act(session, row, user, EventType.ASSIGNED, note=note, at=at, expected_version=expected_version,
               data={"assignee": assignee})


def open_ticket(
    session: Session, site: Site, user: User, *, device: Device | None, place: str | None, fault: str | None,
    title: str | None, severity: Severity | None, teams: Sequence[Team] | None, description: str | None, at: datetime,
) -> TicketRow:
    """A ticket raised by staff (立案): on a device or a place, a catalog fault or a free title."""
    if user.role not in (*MANAGING_ROLES, *TEAM_ROLES):
        raise Forbidden(f"a {user.role} cannot open tickets")
    spec = FAULTS.get(fault) if fault is not None else None
    if fault is not None and spec is None:
        raise BadRequest(f"unknown fault code {fault!r}: give a catalog code, or leave it out and give a title")
    if spec is not None and device is not None and device.kind not in spec.kinds:
        raise BadRequest(f"fault {fault!r} does not apply to a {device.kind}")
    code = spec.code if spec is not None else FREE_FAULT
    subject = Subject("device", device.id) if device is not None else Subject("place", str(place))
    existing = find_active(session, site.id, subject, code)
    if existing is not None:
        raise DuplicateTicket(existing.id)
    if teams:
        team_codes = list(dict.fromkeys(t.value for t in teams))
    elif spec is not None:
        team_codes = [t.value for t in site.teams_for(code, device.kind if device else None)]
    else:
        team_codes = [Team.PROPERTY.value]
    level_severity = severity or (spec.severity if spec is not None else Severity.P2)
    level = site.service_level(level_severity, code)
    name = device.name if device is not None else str(place)
    opened: dict[str, Any] = {
        "site": site.id, "subject_type": subject.type, "subject_id": subject.id, "fault": code,
        "severity": level_severity.value, "teams": team_codes,
        "source": "grid_officer" if user.role == "grid_officer" else "staff",
        "device_ids": [device.id] if device is not None else [],
        "title": (title or f"{name} · {spec.zh if spec else code}")[:200],
        **serialise_deadlines(deadlines(at, level)),
    }
    return append_event(session, None, TicketEvent(EventType.OPENED, at, user.username, description, opened))


__all__ = [
    "BadRequest", "DuplicateTicket", "Forbidden", "NotNow", "StaleTicket", "acknowledge", "act",
    "assign", "cancel", "claim", "close", "may_see", "may_work_on", "open_ticket", "team_scoped", "team_to_acknowledge",
    "work",
]
