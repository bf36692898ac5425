"""Photos of residents' and mobile grid officers' reports, for signed-in staff; and the reports themselves.

A photo is served only to a signed-in user who may see the report's site (a technician: only for
the tickets of their teams), and, by ``api.routes.public``, to the reporter holding the report's id.
Photo responses are never cached by shared caches and run nothing in a browser.
"""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from sqlalchemy import func, select

from api.deps import CurrentUser, SessionDep, VisibleSites
from api.schemas_public import ReportsStaff, ReportStaff
from api.ticket_actions import may_see
from linli.storage.models import ResidentReport, TicketRow, User
from linli.uploads import PhotoStore, content_type_of, open_photo_store

router = APIRouter(tags=["reports from residents"])

PHOTO_HEADERS = {
    "Cache-Control": "private, no-store",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
}
ROLES_SEEING_CONTACTS = frozenset({"admin", "manager", "technician", "grid_officer"})  # not a viewer
_STORE_LOCK = threading.Lock()


def get_photo_store(request: Request) -> PhotoStore:
    """The app's photo store (local directory or S3 bucket, by settings), made on first use."""
    state = request.app.state
    with _STORE_LOCK:
        store: PhotoStore | None = getattr(state, "photo_store", None)
        if store is None:
            store = open_photo_store(state.settings)
            state.photo_store = store
    return store


PhotoStoreDep = Annotated[PhotoStore, Depends(get_photo_store)]


def photo_response(store: PhotoStore, key: str) -> Response:
    data = store.get(key)
    if data is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this photo is no longer kept")
    return Response(data, media_type=content_type_of(key), headers=PHOTO_HEADERS)


def photo_name_of(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def _visible(session: SessionDep, user: User, report: ResidentReport, sites: list[str]) -> bool:
    if report.site not in sites:
        return False
    if user.role != "technician":
        return True
    ticket = session.get(TicketRow, report.ticket_id) if report.ticket_id is not None else None
    return ticket is not None and may_see(user, ticket)


def _staff_view(report: ResidentReport, user: User) -> ReportStaff:
    return ReportStaff(
        id=report.id, site=report.site, source=report.source, category=report.category,
        description=report.description, device_id=report.device_id, location=dict(report.location or {}),
        contact=report.contact if user.role in ROLES_SEEING_CONTACTS else None,
        ticket_id=report.ticket_id, created_at=report.created_at,
        photos=[f"/api/v1/uploads/{key}" for key in report.photos or ()],
        personal_data_removed_at=report.personal_data_removed_at,
    )


@router.get("/resident-reports", response_model=ReportsStaff,
            responses={404: {"description": "no such site among yours (`site`)"}})
def list_reports(
    *,
    session: SessionDep,
    user: CurrentUser,
    visible: VisibleSites,
    site: Annotated[str | None, Query(max_length=32)] = None,
    ticket_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ReportsStaff:
    """Reports of residents and mobile grid officers, newest first; a viewer sees no contacts."""
    if site is not None and site not in visible:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"site {site!r} not found")
    chosen = [site] if site is not None else visible
    query = select(ResidentReport).where(ResidentReport.site.in_(chosen))
    if ticket_id is not None:
        query = query.where(ResidentReport.ticket_id == ticket_id)
    if user.role == "technician":  # their teams' tickets only: filtered in Python below
        rows = [r for r in session.scalars(query.order_by(ResidentReport.created_at.desc(), ResidentReport.id))
                if _visible(session, user, r, chosen)]
        return ReportsStaff(items=[_staff_view(r, user) for r in rows[offset:offset + limit]], total=len(rows))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = session.scalars(
        query.order_by(ResidentReport.created_at.desc(), ResidentReport.id).limit(limit).offset(offset)
    ).all()
    return ReportsStaff(items=[_staff_view(r, user) for r in page], total=total)


@router.get(
    "/uploads/reports/{report_id}/{name}",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}, 404: {"description": "none"}},
)
def staff_photo(
    *, report_id: str, name: str, session: SessionDep, user: CurrentUser, visible: VisibleSites, store: PhotoStoreDep
) -> Response:
    """A report's photo, for a signed-in user who may see the report (404 for everyone else)."""
    report = session.get(ResidentReport, report_id)
    key = f"reports/{report_id}/{name}"
    if report is None or key not in (report.photos or ()) or not _visible(session, user, report, visible):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such photo")
    return photo_response(store, key)
