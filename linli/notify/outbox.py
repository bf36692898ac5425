"""Choosing who is told of a ticket notice, and writing it to the outbox (``notifications``).

:func:`channels_for` is pure: a site's team channels filtered by severity, notice and local hours.
:func:`enqueue` renders the message once per channel (in its language) and adds one pending row per
channel and recipient, in the caller's transaction, so a notice is stored with the change it
announces. The :class:`~linli.notify.dispatcher.Dispatcher` sends the rows later.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from linli.catalog import Severity
from linli.notify.config import NOTICES, ChannelConfig, in_hours
from linli.notify.render import Message, render
from linli.storage.models import TicketRow
from linli.storage.notifications import Notification, NotificationStatus
from linli.storage.tickets import view_of
from linli.tickets import EventType, TicketView

if TYPE_CHECKING:
    from linli.site import Site


@dataclass(frozen=True, slots=True)
class Route:
    """One of a team's channels, chosen for one notice."""

    team: str
    channel: ChannelConfig


def notice_of(event: EventType | str) -> str:
    value = event.value if isinstance(event, EventType) else str(event)
    if value not in NOTICES:
        raise ValueError(f"{value!r} is not a notice ({', '.join(NOTICES)})")
    return value


def channels_for(site: Site, teams: Iterable[str], notice: EventType | str, severity: Severity,
                 now: datetime) -> list[Route]:
    """The channels of `teams` at `site` that want this notice now (severity, notice and hours filters)."""
    kind = notice_of(notice)
    local = now.astimezone(ZoneInfo(site.spec.site.timezone)).time()
    routes: list[Route] = []
    for team in dict.fromkeys(teams):  # a team named twice is told once
        config = next((c for t, c in site.spec.teams.items() if t.value == team), None)
        if config is None:
            continue
        for channel in config.channels:
            if not channel.enabled:
                continue
            if channel.severities is not None and severity not in channel.severities:
                continue
            if channel.events is not None and kind not in channel.events:
                continue
            if channel.hours is not None and not in_hours(local, channel.hours):
                continue
            routes.append(Route(team, channel))
    return routes


def _key(ticket_id: int, notice: str, occurrence: str, who: str) -> str:
    who = hashlib.sha256(who.encode()).hexdigest()[:24]
    return f"{ticket_id}:{notice}:{occurrence}:{who}"[:255]


def enqueue(
    session: Session,
    ticket: TicketRow,
    notice: EventType | str,
    routes: Sequence[Route],
    now: datetime,
    *,
    site: Site,
    base_url: str,
    note: str | None = None,
    view: TicketView | None = None,
    occurrence: str | None = None,
) -> list[Notification]:
    """Add a pending outbox row per route and recipient; returns the rows added.

    `occurrence` tells two notices of the same kind apart (default: the ticket's version, so each
    ticket change is announced once however often this is called for it).
    """
    kind = notice_of(notice)
    if ticket.id is None:
        session.flush()
    view = view or view_of(ticket)
    occurrence = occurrence or str(ticket.version)
    added: list[Notification] = []
    messages: dict[str, Message] = {}
    for route in routes:
        lang = route.channel.lang
        if lang not in messages:
            messages[lang] = render(view, kind, ticket_id=ticket.id, site=site, base_url=base_url, lang=lang,
                                    note=note, now=now)
        msg = messages[lang]
        for recipient in route.channel.recipients():
            key = _key(ticket.id, kind, occurrence, f"{route.team}/{route.channel.name}/{recipient}")
            if session.scalar(select(Notification.id).where(Notification.key == key)) is not None:
                continue
            row = Notification(
                ticket_id=ticket.id, site=site.id, team=route.team, channel=route.channel.name,
                channel_type=route.channel.type, recipient=recipient, notice=kind, key=key,
                title=msg.title[:200], text=msg.text, markdown=msg.markdown, short=msg.short, link=msg.link[:500],
                lang=lang, status=NotificationStatus.PENDING.value, attempts=0, next_attempt_at=now,
                last_error=None, created_at=now, sent_at=None, updated_at=now,
            )
            session.add(row)
            added.append(row)
    session.flush()
    return added


def notify(
    session: Session,
    site: Site,
    ticket: TicketRow,
    notice: EventType | str,
    now: datetime,
    *,
    base_url: str,
    note: str | None = None,
    teams: Iterable[str] | None = None,
    occurrence: str | None = None,
) -> list[Notification]:
    """Tell the ticket's teams (or `teams`) about `notice` through every channel that wants it."""
    view = view_of(ticket)
    routes = channels_for(site, teams if teams is not None else view.teams, notice, view.severity, now)
    return enqueue(session, ticket, notice, routes, now, site=site, base_url=base_url, note=note, view=view,
                   occurrence=occurrence)
