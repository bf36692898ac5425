"""The monthly report for the three-party meeting: JSON, CSV, XLSX or a printable page; publishing freezes it.
And the SLA figures over time, per day or week, that the manager page charts."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from api.deps import ClockDep, SessionDep, SitesDep, visible_site_ids
from api.deps import require_roles as _require_roles
from api.schemas_reports import MonthlyReport
from linli.reports import store
from linli.reports.export import to_csv, to_html, to_xlsx
from linli.reports.monthly import Month, MonthError
from linli.reports.sla_series import SeriesError, build_sla_series, series_range
from linli.site import Site
from linli.storage import User

router = APIRouter(prefix="/reports", tags=["reports"])

Reader = Annotated[User, Depends(_require_roles("admin", "manager", "grid_officer"))]
Publisher = Annotated[User, Depends(_require_roles("admin", "manager"))]
SiteQuery = Annotated[str, Query(description="site id, e.g. wanmei", examples=["wanmei"])]
MonthQuery = Annotated[str, Query(description="YYYY-MM, the month in the site's time zone", examples=["2026-10"])]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# The printable page has no script and loads nothing; its one stylesheet is inline.
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"


def _site_and_month(user: User, sites: SitesDep, site: str, month: str) -> tuple[Site, Month]:
    found = sites.get(site)
    if found is None or found.id not in visible_site_ids(user, sites):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"site {site!r} not found")
    try:
        return found, Month.parse(month)
    except MonthError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc


@router.get(
    "/monthly",
    response_model=MonthlyReport,
    responses={
        200: {"content": {"text/csv": {}, XLSX: {}, "text/html": {}}, "description": "the report in the format asked"},
        400: {"description": "a month that is not YYYY-MM"},
        403: {"description": "this needs the role admin, manager or grid_officer"},
        404: {"description": "no such site among the caller's"},
    },
)
def monthly_report(
    *,
    session: SessionDep,
    sites: SitesDep,
    clock: ClockDep,
    user: Reader,
    site: SiteQuery,
    month: MonthQuery,
    format: Annotated[Literal["json", "csv", "xlsx", "html"], Query(description="json | csv | xlsx | html")] = "json",
    lang: Annotated[Literal["zh", "en"], Query(description="zh (default) or en, for csv, xlsx and html")] = "zh",
) -> Any:
    """The month's figures and its three lists (问题清单, 责任清单, 整改清单). A published month is
    returned as published (`frozen: true`)."""
    found, wanted = _site_and_month(user, sites, site, month)
    report = store.monthly_report(session, found, wanted, clock.now())
    name = f"linli-{found.id}-{wanted}"
    if format == "csv":
        body = "\ufeff" + to_csv(report, lang)  # the BOM makes Excel read UTF-8
        return Response(body.encode("utf-8"), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    if format == "xlsx":
        return Response(to_xlsx(report, lang), media_type=XLSX,
                        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})
    if format == "html":
        return HTMLResponse(to_html(report, lang), headers={"Content-Security-Policy": PAGE_CSP})
    return JSONResponse(report)


@router.post(
    "/monthly/publish",
    status_code=status.HTTP_201_CREATED,
    response_model=MonthlyReport,
    responses={
        400: {"description": "a month that is not YYYY-MM"},
        403: {"description": "this needs the role admin or manager"},
        404: {"description": "no such site among the caller's"},
        409: {"description": "the month has not ended, or was already published"},
    },
)
def publish_monthly_report(
    *, session: SessionDep, sites: SitesDep, clock: ClockDep, user: Publisher, site: SiteQuery, month: MonthQuery,
) -> Any:
    """Freeze the month for its meeting: later requests for it return this copy, whatever changes after."""
    found, wanted = _site_and_month(user, sites, site, month)
    now = clock.now()
    if now < wanted.bounds(found.spec.site.timezone)[1]:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"{wanted} has not ended yet; it can be published from the 1st of the next month")
    try:
        body = store.publish(session, found, wanted, user.username, now)
        session.commit()
    except store.AlreadyPublished as exc:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"{wanted} was already published for {found.id}; it stays as published") from exc
    return JSONResponse(body, status_code=status.HTTP_201_CREATED)


# --- SLA figures over time --------------------------------------------------------------------

SeriesReader = Annotated[User, Depends(_require_roles("admin", "manager"))]


class SlaSeries(BaseModel):
    site: str
    site_name: str
    timezone: str
    bucket: Literal["day", "week"]
    from_: str = Field(alias="from", description="the first day of the first bucket (YYYY-MM-DD, local)")
    to: str = Field(description="the last day of the last bucket (YYYY-MM-DD, local, included)")
    as_of: str = Field(description="the cut-off: nothing later is counted (the range's end or `as_of`, if earlier)")
    generated_at: str
    severities: list[str]
    teams: dict[str, dict[str, str]] = Field(description="the teams in the figures, with their Chinese and English names")
    buckets: list[dict[str, Any]] = Field(
        description="per bucket: start, end, complete, opened, ack and fix (counted, on_time, late, within_sla_pct, "
                    "measured, mean_minutes, median_minutes), by_severity and by_team with the same figures")
    total: dict[str, Any] = Field(description="the same figures over the whole range")


@router.get(
    "/sla",
    response_model=SlaSeries,
    responses={
        400: {"description": "a reversed or too long range, or an `as_of` without a UTC offset"},
        403: {"description": "this needs the role admin or manager"},
        404: {"description": "no such site among the caller's"},
    },
)
def sla_series(
    *,
    session: SessionDep,
    sites: SitesDep,
    clock: ClockDep,
    user: SeriesReader,
    site: SiteQuery,
    from_: Annotated[date | None, Query(alias="from", description="first day (YYYY-MM-DD, local); default: "
                                        "12 weeks or 30 days before `to`")] = None,
    to: Annotated[date | None, Query(description="last day, included (YYYY-MM-DD, local); default: today")] = None,
    bucket: Annotated[Literal["day", "week"], Query(description="day, or week (Monday to Sunday)")] = "week",
    as_of: Annotated[datetime | None, Query(description="count only what happened up to this moment "
                                            "(ISO 8601 with offset; default and latest: now)")] = None,
) -> Any:
    """Tickets opened, acknowledged and fixed within SLA, and the median and mean times to acknowledge
    and to fix, per local day or week, by severity and by team (counted as the monthly report counts)."""
    found = sites.get(site)
    if found is None or found.id not in visible_site_ids(user, sites):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"site {site!r} not found")
    now = clock.now()
    if as_of is not None and as_of.tzinfo is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "as_of needs a UTC offset, e.g. 2026-11-26T20:00:00+08:00")
    if as_of is not None and not 2000 <= as_of.year <= 2999:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "as_of must lie between the years 2000 and 2999")
    cutoff = min(as_of, now) if as_of is not None else now
    timezone = found.spec.site.timezone
    try:
        wanted = series_range(from_, to, bucket, now.astimezone(ZoneInfo(timezone)).date())
    except SeriesError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    edges = wanted.starts(timezone)
    histories = store.load_histories(session, found.id, edges[0], min(edges[-1], cutoff + timedelta(seconds=1)))
    return JSONResponse(build_sla_series(store.context_for(found), wanted, histories, cutoff=cutoff, generated_at=now))
