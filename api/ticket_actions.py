"""What a person may do to a ticket, as events appended through ``linli.storage.tickets``.

Each action decides who may act and for which team, claims the ticket at the version it was
read (so two people acting at once cannot both win), and appends one event.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from linli.storage.models import TicketRow, User
from linli.storage.tickets import StaleTicket, append_event
from linli.tickets import EventType, TicketEvent

MANAGING_ROLES = frozenset({"admin", "manager"})
TEAM_ROLES = frozenset({"technician", "grid_officer"})


class Forbidden(Exception):
    """The account may not do this to this ticket (HTTP 403)."""


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


__all__ = ["Forbidden", "StaleTicket", "acknowledge", "claim", "team_to_acknowledge"]
