"""Residents' and mobile grid officers' reports, and the tickets they join or open.

- A report on a device that already has an active ticket (its own, or a circuit's or building's
  that lists it) joins that ticket: a ``commented`` event from ``resident`` / ``grid_officer``,
  without the reporter's contact; the report row points at the ticket.
- A report on a device without an active ticket opens one for the grid centre to triage (lead team
  ``grid``), subject the device, fault the report's category, source ``resident``.
- A report without a device (and every hazard from a mobile grid officer) opens a ticket on a
  place for the grid centre.

The contact stays in the report row only (personal data, removed by ``linli purge-personal-data``).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from linli.catalog import Severity, Team
from linli.site import Device, Site
from linli.storage.models import ResidentReport, TicketRow
from linli.storage.tickets import append_event
from linli.tickets import EventType, Subject, TicketEvent, deadlines, serialise_deadlines


@dataclass(frozen=True, slots=True)
class Category:
    code: str
    kinds: tuple[str, ...]  # device kinds it may name; () = any device, or none
    severity: Severity
    teams: tuple[Team, ...]  # lead team first
    zh: str
    en: str


_G, _E, _C = Team.GRID, Team.ELEVATOR_CONTRACTOR, Team.CHARGER_OPERATOR
CATEGORIES: dict[str, Category] = {
    c.code: c
    for c in (
        Category("light_out", ("streetlight",), Severity.P2, (_G,), "路灯不亮", "Streetlight out"),
        Category("light_flicker", ("streetlight",), Severity.P3, (_G,), "路灯闪烁", "Streetlight flickering"),
        Category("light_on_by_day", ("streetlight",), Severity.P3, (_G,), "白天亮灯", "Streetlight on by day"),
        Category("elevator_fault", ("elevator",), Severity.P2, (_G,), "电梯故障", "Elevator fault"),
        # Someone is shut in: the maintenance contractor leads at once, the grid centre follows.
        Category("elevator_trapped", ("elevator",), Severity.P0, (_E, _G), "电梯困人", "Passenger trapped"),
        Category("charger_fault", ("charger",), Severity.P2, (_G,), "充电桩故障", "Charging pile fault"),
        Category("hazard", (), Severity.P2, (_G,), "安全隐患", "Safety hazard"),
        Category("other", (), Severity.P3, (_G,), "其他问题", "Other problem"),
    )
}
SOURCES = ("resident", "grid_officer")


class ReportRefused(ValueError):
    """The report does not fit the site (an unknown device, a category for another kind, a place off the plan)."""


@dataclass(frozen=True, slots=True)
class NewReport:
    site: str
    category: str
    description: str
    source: str = "resident"  # resident | grid_officer (a mobile grid officer's hazard)
    device_id: str | None = None
    contact: str | None = None
    location: dict[str, Any] | None = None  # {"x", "y"} on the site plan and/or {"text"}


@dataclass(frozen=True, slots=True)
class Filed:
    report: ResidentReport
    ticket: TicketRow
    joined: bool  # True: it joined a ticket that was already open


def new_report_id() -> str:
    """24 URL-safe characters (144 random bits): the report's id is its reporter's access token."""
    return secrets.token_urlsafe(18)


def check_report(site: Site, report: NewReport) -> Device | None:
    """The device the report names, after checking the report against the site; or ReportRefused."""
    category = CATEGORIES.get(report.category)
    if category is None:
        raise ReportRefused(f"unknown category {report.category!r}; one of {', '.join(CATEGORIES)}")
    if report.source not in SOURCES:
        raise ReportRefused(f"unknown source {report.source!r}")
    device = None
    if report.device_id is not None:
        device = site.devices.get(report.device_id)
        if device is None:
            raise ReportRefused(f"site {site.id!r} has no device {report.device_id!r}")
        if category.kinds and device.kind not in category.kinds:
            raise ReportRefused(f"category {category.code!r} is not about a {device.kind}")
    elif category.kinds:
        raise ReportRefused(f"category {category.code!r} needs the device_id of a {'/'.join(category.kinds)}")
    location = report.location or {}
    if "x" in location or "y" in location:
        plan = site.spec.plan
        x, y = location.get("x"), location.get("y")
        if not isinstance(x, int | float) or not isinstance(y, int | float):
            raise ReportRefused("a location on the plan needs both x and y")
        if not (0 <= x <= plan.width and 0 <= y <= plan.height):
            raise ReportRefused(f"({x:g}, {y:g}) is off the site plan (0..{plan.width:g} × 0..{plan.height:g})")
    return device


def open_ticket_of_device(session: Session, site: str, device_id: str) -> TicketRow | None:
    """The active ticket a report on the device joins: the most urgent, its own before a group's, the oldest."""
    rows = session.scalars(
        select(TicketRow).where(TicketRow.site == site, TicketRow.active.is_(True)).order_by(TicketRow.opened_at, TicketRow.id)
    ).all()
    concerned = [r for r in rows if r.device_id == device_id or device_id in (r.device_ids or ())]
    if not concerned:
        return None
    return min(concerned, key=lambda r: (Severity(r.severity).rank, r.device_id != device_id, r.opened_at, r.id))


def _serialise_device(session: Session, site: str, device_id: str) -> None:
    """Two reports on one device at once must not both open a ticket: PostgreSQL takes a transaction
    lock on the device; SQLite takes its one write lock before reading (a transaction that read first
    could not write after another's commit, WAL refuses a stale snapshot). The unique index backs both up."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("UPDATE tickets SET version = version WHERE 0 = 1"))  # a write: takes the lock now
        return
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.blake2b(f"linli-report:{site}:{device_id}".encode(), digest_size=8).digest()
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": int.from_bytes(digest, "big", signed=True)})


def _actor(report: NewReport) -> str:
    return "grid_officer" if report.source == "grid_officer" else "resident"


def _note(report: NewReport, category: Category, photos: int) -> str:
    who = "流动网格员上报" if report.source == "grid_officer" else "居民报修"
    pictured = f"（附照片 {photos} 张）" if photos else ""
    return f"{who}·{category.zh}：{report.description}{pictured}"


def _open(session: Session, site: Site, report: NewReport, device: Device | None, *, at: datetime, photos: int) -> TicketRow:
    category = CATEGORIES[report.category]
    if device is not None:
        subject = Subject("device", device.id)
        name = device.name
    else:
        subject = Subject("place", f"report-{secrets.token_hex(4)}")
        name = str((report.location or {}).get("text") or category.zh)
    level = site.service_level(category.severity, category.code)
    teams = [Team(t).value for t in site.spec.routing.get(category.code, category.teams)]  # a site may route a category
    opened: dict[str, Any] = {
        "site": site.id, "subject_type": subject.type, "subject_id": subject.id, "fault": category.code,
        "severity": category.severity.value, "teams": teams, "source": report.source,
        "device_ids": [device.id] if device is not None else [],
        "title": f"{name} · {category.zh}"[:200],
        **serialise_deadlines(deadlines(at, level)),
    }
    return append_event(session, None, TicketEvent(EventType.OPENED, at, _actor(report), _note(report, category, photos), opened))


def file_report(
    session: Session, site: Site, report: NewReport, *, at: datetime, photos: Sequence[str] = (),
    report_id: str | None = None,
) -> Filed:
    """Store the report and join or open its ticket (in `session`; the caller commits)."""
    device = check_report(site, report)
    category = CATEGORIES[report.category]
    ticket: TicketRow | None = None
    if device is not None:
        _serialise_device(session, site.id, device.id)
        ticket = open_ticket_of_device(session, site.id, device.id)
    joined = ticket is not None
    if ticket is not None:
        data = {"report": report.source, "category": category.code, "photos": len(photos)}
        append_event(session, ticket, TicketEvent(EventType.COMMENTED, at, _actor(report),
                                                  _note(report, category, len(photos)), data))
    else:
        ticket = _open(session, site, report, device, at=at, photos=len(photos))
    row = ResidentReport(
        id=report_id or new_report_id(), site=site.id, device_id=device.id if device else None,
        category=category.code, description=report.description, contact=report.contact,
        location=dict(report.location or {}), photos=list(photos), source=report.source, ticket_id=ticket.id,
        created_at=at, personal_data_removed_at=None,
    )
    session.add(row)
    session.flush()
    return Filed(row, ticket, joined)
