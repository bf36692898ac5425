"""Routes for residents and mobile grid officers, without an account.

They say what a resident needs to know, in a resident's terms, and nothing about people:
no assignee, no acknowledgements, no notes, no contacts. Reports (一键报修) and hazards from
mobile grid officers are rate-limited per client address and per device, and their photos are
checked and stripped of metadata before anything is stored (``linli.uploads``, ``docs/residents.md``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from api import schemas
from api.deps import ClockDep, SessionDep, SettingsDep, SitesDep
from api.limits import BodyTooLarge, body_limited, client_key, enforce, get_limiter
from api.routes.sites import PlanBuilding, PlanCompound, PlanRect
from api.routes.uploads import PhotoStoreDep, photo_name_of, photo_response
from api.schemas_public import HazardRequest, ProgressStep, ReportCreated, ReportPublic, ReportRequest, ReportTicket
from api.views import LiveView, charger_state, devices_of, elevator_state, fault_name, location_of, streetlight_state
from linli.clock import Clock
from linli.settings import Settings
from linli.site import DeviceKind, Site
from linli.storage.models import ResidentReport, TicketRow
from linli.storage.resident_reports import CATEGORIES, Filed, NewReport, ReportRefused, file_report, new_report_id
from linli.tickets import EventType
from linli.uploads import PhotoLimits, PhotoRefused, PhotoStore, clean_photo, new_key

log = logging.getLogger(__name__)

router = APIRouter(prefix="/public", tags=["public"])


@router.get("/sites", response_model=list[schemas.PublicSite])
def public_sites(sites: SitesDep) -> list[schemas.PublicSite]:
    """The communities this server serves, in configuration order (the first is the default)."""
    return [schemas.PublicSite(id=s.id, name=s.name, name_en=s.spec.site.name_en) for s in sites]


@router.get("/status", response_model=schemas.PublicStatus, responses={404: {"description": "no such site"}})
def public_status(
    session: SessionDep,
    sites: SitesDep,
    clock: ClockDep,
    site: Annotated[str, Query(description="site id, e.g. wanmei", examples=["wanmei"])],
) -> schemas.PublicStatus:
    """Every streetlight, elevator and charger of a site in residents' words, and repairs in progress."""
    found = sites.get(site)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"site {site!r} not found")
    live = LiveView.load(session, [found.id])
    lights: list[schemas.PublicStreetlight] = []
    elevators: list[schemas.PublicElevator] = []
    chargers: list[schemas.PublicCharger] = []
    for device in found.devices.values():
        state = live.states.get((found.id, device.id))
        statuses = live.ticket_statuses(found.id, device.id)
        if device.kind == "streetlight":
            lights.append(schemas.PublicStreetlight(
                id=device.id, name=device.name, name_en=device.name_en,
                state=streetlight_state(device, state, statuses),
                position=schemas.Position(x=device.position.x, y=device.position.y) if device.position else None,
            ))
        elif device.kind == "elevator":
            elevators.append(schemas.PublicElevator(
                id=device.id, name=device.name, name_en=device.name_en, building=device.building,
                state=elevator_state(state, statuses),
            ))
        else:
            chargers.append(schemas.PublicCharger(
                id=device.id, name=device.name, name_en=device.name_en,
                state=charger_state(state, statuses),
            ))
    tickets = [
        schemas.PublicTicket(
            id=row.id, fault_name=fault_name(row.fault), status=row.status, opened_at=row.opened_at,
            device_ids=devices_of(row),
        )
        for row in sorted(live.active_rows, key=lambda r: (r.opened_at, r.id), reverse=True)
        if devices_of(row)
    ]
    plan = found.spec.plan
    areas = [
        schemas.PlanArea(name=c.name, name_en=c.name_en, x=c.area.x, y=c.area.y, w=c.area.w, h=c.area.h)
        for c in found.spec.compounds
        if c.area is not None
    ]
    return schemas.PublicStatus(
        site=found.id,
        name=found.name,
        name_en=found.spec.site.name_en,
        generated_at=clock.now(),
        plan=schemas.PublicPlan(width=plan.width, height=plan.height, areas=areas),
        streetlights=lights,
        elevators=elevators,
        chargers=chargers,
        tickets=tickets,
    )


class PublicPlanDevice(BaseModel):
    id: str
    kind: DeviceKind
    name: str
    name_en: str | None
    building: str | None = Field(description="an elevator's building id")
    position: schemas.Position | None = Field(description="its own position, else its building's")


class PublicSitePlan(BaseModel):
    """What the resident page draws: compounds, buildings, where each device is (no cabinets, no circuits)."""

    site: str
    width: float
    height: float
    compounds: list[PlanCompound]
    buildings: list[PlanBuilding]
    devices: list[PublicPlanDevice]


@router.get("/plan", response_model=PublicSitePlan, responses={404: {"description": "no such site"}})
def public_plan(
    sites: SitesDep,
    site: Annotated[str, Query(description="site id, e.g. wanmei", examples=["wanmei"], max_length=64)],
) -> PublicSitePlan:
    """The site plan for the resident page: compounds, buildings and where every device is, so that a
    resident can tap a device (or a courier a place) on it. Geometry only; states are in `/public/status`."""
    found = sites.get(site)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"site {site!r} not found")
    spec = found.spec
    return PublicSitePlan(
        site=found.id, width=spec.plan.width, height=spec.plan.height,
        compounds=[
            PlanCompound(id=c.id, name=c.name, name_en=c.name_en,
                         area=PlanRect(x=c.area.x, y=c.area.y, w=c.area.w, h=c.area.h) if c.area else None)
            for c in spec.compounds
        ],
        buildings=[
            PlanBuilding(id=b.id, compound=b.compound, name=b.name, name_en=b.name_en,
                         position=schemas.Position(x=b.position.x, y=b.position.y) if b.position else None)
            for b in spec.buildings
        ],
        devices=[
            PublicPlanDevice(id=d.id, kind=d.kind, name=d.name, name_en=d.name_en, building=d.building,
                             position=location_of(found, d).position)
            for d in found.devices.values()
        ],
    )


# ---------------------------------------------------------------- reports (一键报修) and hazards

MAX_PHOTOS = 3
FORM_FIELD_BYTES = 8 * 1024  # a form field is a short text; photos are files
JSON_BODY_BYTES = 16 * 1024
REPORT_ID = re.compile(r"^[A-Za-z0-9_-]{16,43}$")
RACE_RETRIES = 3
# Events that change what the reporter sees; the others (comments, escalations...) are staff's.
PUBLIC_STEPS = frozenset({
    EventType.OPENED, EventType.ACKNOWLEDGED, EventType.STARTED, EventType.HELD, EventType.RESUMED,
    EventType.RESOLVED, EventType.VERIFIED, EventType.CLOSED, EventType.CANCELLED, EventType.REOPENED,
})


async def _read_body(
    request: Request, settings: Settings, model: type[BaseModel], form_location: bool,
) -> tuple[BaseModel, list[bytes]]:
    """The report (JSON, or multipart fields and up to 3 photos) and the raw photo files."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    max_photo = settings.upload_max_bytes
    try:
        if ctype == "application/json":
            body = await body_limited(request, JSON_BODY_BYTES).body()
            try:
                raw: Any = json.loads(body)
            except ValueError as exc:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"the body is not JSON: {exc}") from exc
            photos: list[bytes] = []
        elif ctype == "multipart/form-data":
            limited = body_limited(request, MAX_PHOTOS * (max_photo + 64 * 1024) + 64 * 1024)
            async with limited.form(max_files=MAX_PHOTOS, max_fields=16, max_part_size=FORM_FIELD_BYTES) as form:
                raw = {k: v for k, v in form.multi_items() if isinstance(v, str) and v != ""}
                photos = []
                for name, value in form.multi_items():
                    if not isinstance(value, UploadFile):
                        continue
                    if name != "photos":
                        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"unexpected file {name!r}: use 'photos'")
                    data = await value.read(max_photo + 1)
                    if len(data) > max_photo:
                        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                            f"a photo may be at most {max_photo // (1024 * 1024)} MiB")
                    if data:
                        photos.append(data)
            raw = _form_to_report(raw, form_location)
        else:
            raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send application/json or multipart/form-data")
    except BodyTooLarge as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "the request is too large") from exc
    try:
        return model.model_validate(raw), photos
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problems) from exc


def _form_to_report(fields: dict[str, str], form_location: bool) -> dict[str, Any]:
    """Flat form fields (``x``, ``y``, ``place``) to the JSON shape of the report."""
    out: dict[str, Any] = {k: v for k, v in fields.items() if k not in ("x", "y", "place")}
    if form_location and any(k in fields for k in ("x", "y", "place")):
        location: dict[str, Any] = {"text": fields.get("place")}
        for axis in ("x", "y"):
            location[axis] = fields.get(axis)
        out["location"] = location
    return out


def _site_or_422(sites: SitesDep, site_id: str) -> Site:
    site = sites.get(site_id)
    if site is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"site {site_id!r} not found")
    return site


def _file_once_more_if_raced(
    session: Session, site: Site, report: NewReport, *, at: datetime, photos: list[str], report_id: str,
) -> Filed:
    """Two reports on a device without a ticket, at once: the one index allows one active ticket, so
    the loser of the race (SQLite: its snapshot predates the winner's ticket) joins the winner's."""
    for attempt in range(RACE_RETRIES):
        try:
            with session.begin_nested():
                return file_report(session, site, report, at=at, photos=photos, report_id=report_id)
        except IntegrityError:
            if attempt == RACE_RETRIES - 1:
                raise
            session.rollback()
            log.info("report on %s/%s raced another; joining its ticket", site.id, report.device_id)
    raise AssertionError("unreachable")


def _file(
    session: Session, store: PhotoStore, site: Site, report: NewReport, photos: list[bytes], *,
    limits: PhotoLimits, at: datetime,
) -> ReportCreated:
    """Check and clean every photo, then store the report, its ticket and its photos at once."""
    try:
        cleaned = [clean_photo(data, limits) for data in photos]
    except PhotoRefused as exc:
        raise HTTPException(exc.status, f"photo refused: {exc}") from exc
    report_id = new_report_id()
    keys = [new_key(f"reports/{report_id}", photo) for photo in cleaned]
    stored: list[str] = []
    try:
        filed = _file_once_more_if_raced(session, site, report, at=at, photos=keys, report_id=report_id)
        for key, photo in zip(keys, cleaned, strict=True):
            store.put(key, photo.data, photo.content_type)
            stored.append(key)
        session.commit()
    except BaseException:
        session.rollback()
        for key in stored:  # nothing of a report that was not taken stays behind
            with contextlib.suppress(Exception):
                store.delete(key)
        raise
    return ReportCreated(
        id=filed.report.id, ticket_id=filed.ticket.id, duplicate_of=filed.ticket.id if filed.joined else None,
        photos=len(keys),
    )


_FORM_DOC: dict[str, Any] = {"schema": {
    "type": "object",
    "properties": {
        "site": {"type": "string"}, "device_id": {"type": "string"}, "category": {"type": "string"},
        "description": {"type": "string"}, "contact": {"type": "string"},
        "x": {"type": "number"}, "y": {"type": "number"}, "place": {"type": "string"},
        "photos": {"type": "array", "maxItems": MAX_PHOTOS, "items": {"type": "string", "format": "binary"}},
    },
    "required": ["site", "description"],
}}


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """The request body in OpenAPI: the route reads it itself (JSON or multipart, with a size limit)."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()}, "multipart/form-data": _FORM_DOC,
    }}}


_REFUSALS: dict[int | str, dict[str, Any]] = {
    413: {"description": "a photo over the size limit, or too many pixels"},
    415: {"description": "a photo that is not a JPEG, PNG or WebP image (or hides another file)"},
    422: {"description": "a field, site, device or location that does not fit"},
    429: {"description": "too many reports from this client or on this device; see Retry-After"},
}


async def _create(
    *, request: Request, settings: Settings, sites: SitesDep, clock: Clock, session: Session, store: PhotoStore,
    hazard: bool,
) -> ReportCreated:
    limiter = get_limiter(request, "reports")
    client = ("client", client_key(request))
    # A client over its limit is refused before its body is read; a request counts once its fields
    # are valid, before the photos are decoded (the costly part), whether it is then taken or not.
    enforce(limiter, client, settings.report_limit_per_ip, "too many reports from this address", count=False)
    body, photos = await _read_body(request, settings, HazardRequest if hazard else ReportRequest, form_location=True)
    if len(photos) > MAX_PHOTOS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"at most {MAX_PHOTOS} photos")
    if isinstance(body, HazardRequest):
        site = _site_or_422(sites, body.site)
        report = NewReport(site.id, "hazard", body.description, source="grid_officer", contact=body.contact,
                           location=body.location.as_dict())
    else:
        assert isinstance(body, ReportRequest)
        site = _site_or_422(sites, body.site)
        report = NewReport(site.id, body.category, body.description, device_id=body.device_id, contact=body.contact,
                           location=body.location.as_dict() if body.location else None)
    enforce(limiter, client, settings.report_limit_per_ip, "too many reports from this address")
    if report.device_id is not None:
        enforce(limiter, ("device", site.id, report.device_id), settings.report_limit_per_device,
                "too many reports on this device")
    try:
        return await run_in_threadpool(
            _file, session, store, site, report, photos, limits=PhotoLimits.of(settings), at=clock.now()
        )
    except ReportRefused as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


@router.post("/reports", status_code=status.HTTP_201_CREATED, response_model=ReportCreated,
             openapi_extra=_body_doc(ReportRequest), responses=_REFUSALS)
async def create_report(
    *, request: Request, settings: SettingsDep, sites: SitesDep, clock: ClockDep, session: SessionDep, store: PhotoStoreDep,
) -> ReportCreated:
    """一键报修: a resident reports a problem, about a device or not, with up to 3 photos.

    On a device that already has an open ticket the report joins it (`duplicate_of` says which);
    otherwise it opens a ticket for the grid centre. Keep the `id`: it is the only way to follow
    the repair (`GET /api/v1/public/reports/{id}`).
    """
    return await _create(request=request, settings=settings, sites=sites, clock=clock, session=session, store=store,
                         hazard=False)


@router.post("/hazards", status_code=status.HTTP_201_CREATED, response_model=ReportCreated, responses=_REFUSALS,
             openapi_extra=_body_doc(HazardRequest))
async def create_hazard(
    *, request: Request, settings: SettingsDep, sites: SitesDep, clock: ClockDep, session: SessionDep, store: PhotoStoreDep,
) -> ReportCreated:
    """安全隐患: a mobile grid officer (a courier or rider passing by) reports a hazard at a place on the
    site plan (`x`, `y` within the plan), with up to 3 photos. It opens a ticket for the grid centre."""
    return await _create(request=request, settings=settings, sites=sites, clock=clock, session=session, store=store,
                         hazard=True)


def _report_or_404(session: Session, report_id: str) -> ResidentReport:
    report = session.get(ResidentReport, report_id) if REPORT_ID.match(report_id) else None
    if report is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such report")
    return report


def _progress(ticket: TicketRow) -> list[ProgressStep]:
    """Each change of status, as the events recorded it (another team's acknowledgement changes none)."""
    steps: list[ProgressStep] = []
    for event in ticket.events:
        if EventType(event.type) in PUBLIC_STEPS and (not steps or steps[-1].status != event.to_status):
            steps.append(ProgressStep(status=event.to_status, at=event.at))
    return steps


ReportId = Annotated[str, Path(max_length=64, description="the id the report was given")]


@router.get("/reports/{report_id}", response_model=ReportPublic, responses={404: {"description": "no such report"}})
def report_progress(report_id: ReportId, session: SessionDep) -> ReportPublic:
    """The reporter's view of their report: its ticket's progress and their own photos; no contact, no names."""
    report = _report_or_404(session, report_id)
    ticket = session.get(TicketRow, report.ticket_id) if report.ticket_id is not None else None
    category = CATEGORIES.get(report.category)
    return ReportPublic(
        id=report.id, site=report.site, source="grid_officer" if report.source == "grid_officer" else "resident",
        category=report.category,
        category_name=schemas.FaultName(zh=category.zh, en=category.en) if category else fault_name(report.category),
        description=report.description, device_id=report.device_id, created_at=report.created_at,
        photos=[f"/api/v1/public/reports/{report.id}/photos/{photo_name_of(k)}" for k in report.photos or ()],
        ticket=None if ticket is None else ReportTicket(
            id=ticket.id, fault_name=_fault_name(ticket.fault), status=ticket.status, opened_at=ticket.opened_at,
            acknowledged_at=ticket.acknowledged_at, resolved_at=ticket.resolved_at, closed_at=ticket.closed_at,
            device_ids=devices_of(ticket), progress=_progress(ticket),
        ),
    )


def _fault_name(code: str) -> schemas.FaultName:
    category = CATEGORIES.get(code)
    return schemas.FaultName(zh=category.zh, en=category.en) if category else fault_name(code)


@router.get("/reports/{report_id}/photos/{name}", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}, 404: {"description": "none"}})
def report_photo(*, report_id: ReportId, name: Annotated[str, Path(max_length=80)], session: SessionDep,
                 store: PhotoStoreDep) -> Response:
    """One of the report's own photos, for the reporter (the report id is the key)."""
    report = _report_or_404(session, report_id)
    key = f"reports/{report.id}/{name}"
    if key not in (report.photos or ()):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such photo")
    return photo_response(store, key)

