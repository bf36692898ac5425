"""The monthly report's edges: ticket histories read from the database, published months kept frozen."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from linli.catalog import FAULTS, TEAM_NAMES
from linli.reports.monthly import (
    REPEAT_WINDOW,
    Month,
    ReportContext,
    ResidentReportEntry,
    TicketHistory,
    build_monthly_report,
)
from linli.site import Site
from linli.storage.models import ResidentReport, TicketRow
from linli.storage.published_reports import PublishedMonthlyReport
from linli.storage.tickets import event_of


class AlreadyPublished(Exception):
    """The month was published before; a published month does not change."""


def context_for(site: Site) -> ReportContext:
    """Names from the site file (its team names) over the catalog's."""
    teams = dict(TEAM_NAMES)
    for team, config in site.spec.teams.items():
        name = getattr(config, "name", None)
        if name:
            teams[team.value] = (name, teams.get(team.value, (name, name))[1])
    return ReportContext(
        site=site.id, site_name=site.name, timezone=site.spec.site.timezone, team_names=teams,
        fault_names={code: (spec.zh, spec.en) for code, spec in FAULTS.items()},
    )


def load_histories(session: Session, site: str, start: datetime, end: datetime) -> list[TicketHistory]:
    """Every ticket the month can need: opened before its end and active, or changed since 30 days
    before its start (a changed ticket's `updated_at` is its latest event; the 30 days find repeats)."""
    rows = session.scalars(
        select(TicketRow)
        .where(TicketRow.site == site, TicketRow.opened_at < end,
               or_(TicketRow.active.is_(True), TicketRow.updated_at >= start - REPEAT_WINDOW))
        .options(selectinload(TicketRow.events))
        .order_by(TicketRow.id)
    )
    return [TicketHistory(row.id, [event_of(e) for e in row.events]) for row in rows]


def load_resident_reports(session: Session, site: str, start: datetime, end: datetime) -> list[ResidentReportEntry]:
    rows = session.execute(
        select(ResidentReport.created_at, ResidentReport.source, ResidentReport.ticket_id)
        .where(ResidentReport.site == site, ResidentReport.created_at >= start, ResidentReport.created_at < end)
    )
    return [ResidentReportEntry(at, source, ticket_id) for at, source, ticket_id in rows]


def compute(session: Session, site: Site, month: Month, now: datetime) -> dict[str, Any]:
    start, end = month.bounds(site.spec.site.timezone)
    return build_monthly_report(
        context_for(site), month, load_histories(session, site.id, start, end),
        load_resident_reports(session, site.id, start, end), generated_at=now,
    )


def published(session: Session, site: str, month: Month) -> dict[str, Any] | None:
    """The frozen copy of a published month, or None."""
    row = session.get(PublishedMonthlyReport, (site, str(month)))
    return dict(row.body) if row is not None else None


def monthly_report(session: Session, site: Site, month: Month, now: datetime) -> dict[str, Any]:
    """The published copy when there is one, else the report computed now."""
    return published(session, site.id, month) or compute(session, site, month, now)


def publish(session: Session, site: Site, month: Month, by: str, now: datetime) -> dict[str, Any]:
    """Freeze the month as computed now. Raises :class:`AlreadyPublished` the second time (also
    when two managers publish at once: the primary key lets one through). The caller commits."""
    if published(session, site.id, month) is not None:
        raise AlreadyPublished(f"{site.id} {month} was already published")
    body = {**compute(session, site, month, now), "frozen": True, "published_at": now.isoformat(), "published_by": by}
    body["published_at"] = body["generated_at"]  # the same moment, in the site's zone
    session.add(PublishedMonthlyReport(site=site.id, month=str(month), published_at=now, published_by=by, body=body))
    try:
        session.flush()
    except IntegrityError as exc:
        raise AlreadyPublished(f"{site.id} {month} was already published") from exc
    return body
