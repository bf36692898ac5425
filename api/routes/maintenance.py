"""Planned maintenance windows: staff silence a device, circuit, cabinet or building while they work on it.

The gateway reads the windows from the database every few seconds (``gateway.upkeep``): faults raised
inside a window open no ticket, and open one when the window ends if they still hold. P0 is never
silenced.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import and_, func, not_, select
from sqlalchemy.sql.elements import ColumnElement

from api.deps import ClockDep, ManagerOrAdmin, SessionDep, SitesDep, VisibleSites, visible_site_ids
from api.routes.devices import site_or_404
from api.schemas_maintenance import MaintenancePublic, MaintenanceRequest, MaintenancesPublic, MaintenanceSubject
from linli.site import Site
from linli.storage.maintenance import MaintenanceWindowRow

router = APIRouter(prefix="/maintenance", tags=["maintenance"])

MAX_WINDOW = timedelta(days=31)  # planned work, not a way to mute a device for good


def window_public(row: MaintenanceWindowRow, now: datetime) -> MaintenancePublic:
    return MaintenancePublic(
        id=row.id, site=row.site, subject=MaintenanceSubject(type=row.subject_type, id=row.subject_id),
        starts_at=row.starts_at, ends_at=row.ends_at, reason=row.reason, created_by=row.created_by,
        created_at=row.created_at, active=row.starts_at <= now < row.ends_at,
    )


def subject_known(site: Site, subject: MaintenanceSubject) -> bool:
    if subject.type == "device":
        return subject.id in site.devices
    if subject.type == "circuit":
        return subject.id in site.circuits
    if subject.type == "cabinet":
        return subject.id in {cabinet.id for cabinet in site.spec.cabinets}
    return subject.id in site.buildings


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"{name} needs an offset, e.g. 2026-11-27T09:00:00+08:00 or ...Z")
    return value


@router.post("", response_model=MaintenancePublic, status_code=status.HTTP_201_CREATED,
             responses={403: {"description": "this needs the role admin or manager"}, 404: {"description": "no such site"},
                        422: {"description": "unknown subject, or bad times"}})
def create_window(
    body: MaintenanceRequest, *, session: SessionDep, user: ManagerOrAdmin, sites: SitesDep, clock: ClockDep,
) -> MaintenancePublic:
    """计划维护: the subject's faults open no tickets from `starts_at` to `ends_at` (P0 still does)."""
    site = site_or_404(sites, visible_site_ids(user, sites), body.site)
    if not subject_known(site, body.subject):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"site {site.id!r} has no {body.subject.type} {body.subject.id!r}")
    now = clock.now()
    starts = _aware("starts_at", body.starts_at) if body.starts_at is not None else now
    ends = _aware("ends_at", body.ends_at)
    if ends <= starts:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "ends_at must be after starts_at")
    if ends <= now:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "ends_at is already past")
    if ends - starts > MAX_WINDOW:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "a maintenance window lasts at most 31 days")
    row = MaintenanceWindowRow(site=site.id, subject_type=body.subject.type, subject_id=body.subject.id,
                               starts_at=starts, ends_at=ends, reason=body.reason, created_by=user.username,
                               created_at=now)
    session.add(row)
    session.commit()
    return window_public(row, now)


@router.get("", response_model=MaintenancesPublic, responses={404: {"description": "no such site among yours (`site`)"}})
def list_windows(
    *,
    session: SessionDep,
    sites: SitesDep,
    visible: VisibleSites,
    clock: ClockDep,
    site: Annotated[str | None, Query(description="only this site (default: every site you see)")] = None,
    active: Annotated[bool | None, Query(description="true: covering now; false: ended or not started")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> MaintenancesPublic:
    """Windows of your sites, latest start first."""
    site_ids = [site_or_404(sites, visible, site).id] if site is not None else visible
    now = clock.now()
    conditions: list[ColumnElement[bool]] = [MaintenanceWindowRow.site.in_(site_ids)]
    covering = and_(MaintenanceWindowRow.starts_at <= now, MaintenanceWindowRow.ends_at > now)
    if active is not None:
        conditions.append(covering if active else not_(covering))
    total = session.scalar(select(func.count()).select_from(MaintenanceWindowRow).where(*conditions)) or 0
    rows = session.scalars(select(MaintenanceWindowRow).where(*conditions).order_by(
        MaintenanceWindowRow.starts_at.desc(), MaintenanceWindowRow.id.desc()).limit(limit).offset(offset))
    return MaintenancesPublic(items=[window_public(row, now) for row in rows], total=total)


@router.delete("/{window_id}", response_model=MaintenancePublic,
               responses={403: {"description": "this needs the role admin or manager"}, 404: {"description": "no such window"},
                          409: {"description": "the window has ended already"}})
def end_window(
    window_id: int, *, session: SessionDep, user: ManagerOrAdmin, sites: SitesDep, clock: ClockDep,
) -> MaintenancePublic:
    """End a window now (one not started yet is cancelled); faults that still hold open their tickets."""
    row = session.get(MaintenanceWindowRow, window_id)
    if row is None or row.site not in visible_site_ids(user, sites):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"maintenance window {window_id} not found")
    now = clock.now()
    if row.ends_at <= now:
        raise HTTPException(status.HTTP_409_CONFLICT, f"maintenance window {window_id} ended at {row.ends_at.isoformat()}")
    row.starts_at = min(row.starts_at, now)
    row.ends_at = now
    session.commit()
    return window_public(row, now)
