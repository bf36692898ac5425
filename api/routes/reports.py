"""The monthly report for the three-party meeting: JSON, CSV, XLSX or a printable page; publishing freezes it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from fastapi.responses import HTMLResponse, JSONResponse

from api.deps import ClockDep, SessionDep, SitesDep, visible_site_ids
from api.deps import require_roles as _require_roles
from api.schemas_reports import MonthlyReport
from linli.reports import store
from linli.reports.export import to_csv, to_html, to_xlsx
from linli.reports.monthly import Month, MonthError
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
