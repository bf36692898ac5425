"""Devices of the caller's sites: list, one device, its lifecycle events, its telemetry from the
time-series store."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status

from api.deps import ClockDep, SessionDep, SitesDep, StoreDep, VisibleSites
from api.schemas import DeviceDetailPublic, DevicesPublic, Health, LifecyclePublic, TelemetryPoint, TelemetryPublic
from api.views import LiveView, device_detail, device_public, lifecycle_events, lifecycle_public, telemetry_fields
from linli.site import Device, Site, SiteRegistry
from linli.tsdb import StoreError

log = logging.getLogger(__name__)
router = APIRouter(prefix="/devices", tags=["devices"])

DEFAULT_TELEMETRY_WINDOW = timedelta(hours=24)
SiteQuery = Annotated[
    str | None,
    Query(description="site id; may be left out when the device id is unique among the sites you see", examples=["wanmei"]),
]
DeviceIdPath = Annotated[str, Path(description="the device's id in its site's file", examples=["SL-07"])]


def site_or_404(sites: SiteRegistry, visible: list[str], site_id: str) -> Site:
    """A site the caller sees; an unknown site and another account's site look the same (404)."""
    if site_id not in visible:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"site {site_id!r} not found")
    return sites[site_id]


def resolve_device(sites: SiteRegistry, visible: list[str], device_id: str, site_id: str | None) -> tuple[Site, Device]:
    if site_id is not None:
        site = sites.get(site_id) if site_id in visible else None
        device = site.devices.get(device_id) if site else None
        if site is None or device is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"device {device_id!r} not found in site {site_id!r}")
        return site, device
    holders = [sites[s] for s in visible if device_id in sites[s].devices]
    if not holders:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"device {device_id!r} not found")
    if len(holders) > 1:
        names = ", ".join(site.id for site in holders)
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"device {device_id!r} exists in several sites ({names}): say which with ?site=",
        )
    return holders[0], holders[0].devices[device_id]


@router.get("", response_model=DevicesPublic, responses={404: {"description": "no such site among yours (`site`)"}})
def list_devices(
    *,
    session: SessionDep,
    sites: SitesDep,
    visible: VisibleSites,
    clock: ClockDep,
    site: Annotated[str | None, Query(description="only this site (default: every site you see)")] = None,
    kind: Literal["streetlight", "elevator", "charger"] | None = None,
    health: Health | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> DevicesPublic:
    """Devices in site-file order, with their live state and open tickets."""
    site_ids = [site_or_404(sites, visible, site).id] if site is not None else visible
    live = LiveView.load(session, site_ids, clock.now())
    items = [
        device_public(sites[site_id], device, live)
        for site_id in site_ids
        for device in sites[site_id].devices.values()
        if kind is None or device.kind == kind
    ]
    if health is not None:
        items = [item for item in items if item.health == health]
    return DevicesPublic(items=items[offset : offset + limit], total=len(items))


# The answers of every route that finds one device by id (see resolve_device).
DEVICE_LOOKUP_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "the id exists in several of your sites"}, 404: {"description": "no such device"},
}


@router.get(
    "/{device_id}",
    response_model=DeviceDetailPublic,
    responses=DEVICE_LOOKUP_ERRORS,
)
def get_device(
    device_id: DeviceIdPath, *, session: SessionDep, sites: SitesDep, visible: VisibleSites, clock: ClockDep,
    site: SiteQuery = None,
) -> DeviceDetailPublic:
    """The device as in the list, with its lifecycle events."""
    found_site, device = resolve_device(sites, visible, device_id, site)
    return device_detail(found_site, device, LiveView.load(session, [found_site.id], clock.now()))


@router.get(
    "/{device_id}/lifecycle",
    response_model=LifecyclePublic,
    responses=DEVICE_LOOKUP_ERRORS,
)
def get_lifecycle(
    device_id: DeviceIdPath, *, session: SessionDep, sites: SitesDep, visible: VisibleSites, site: SiteQuery = None
) -> LifecyclePublic:
    """Its lifecycle events (commissioned, controller or lamp replaced, retired), oldest first."""
    found_site, device = resolve_device(sites, visible, device_id, site)
    events = lifecycle_events(session, [found_site.id], device.id)
    return LifecyclePublic(site=found_site.id, device_id=device.id, items=lifecycle_public(events))


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{name} needs an offset, e.g. 2026-11-26T18:00:00+08:00 (write + as %2B in a URL) or ...Z",
        )
    return value


@router.get(
    "/{device_id}/telemetry",
    response_model=TelemetryPublic,
    responses={
        **DEVICE_LOOKUP_ERRORS,
        422: {"description": "unknown field, or a time without an offset"},
        503: {"description": "the time-series store is unavailable"},
    },
)
def get_telemetry(
    device_id: DeviceIdPath,
    *,
    sites: SitesDep,
    visible: VisibleSites,
    store: StoreDep,
    clock: ClockDep,
    site: SiteQuery = None,
    field: Annotated[str, Query(description="a telemetry field of the device's kind")] = "power_w",
    since: Annotated[datetime | None, Query(description="ISO 8601 with offset; default: 24 h before `until`")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601 with offset; default: now")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
) -> TelemetryPublic:
    """Points of one field, ascending, read from the time-series store."""
    found_site, device = resolve_device(sites, visible, device_id, site)
    known = telemetry_fields(device.kind)
    if field not in known:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"unknown field {field!r} for a {device.kind}; known fields: {', '.join(known)}",
        )
    end = _aware("until", until) or clock.now()
    try:
        start = _aware("since", since) or end - DEFAULT_TELEMETRY_WINDOW
    except OverflowError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "until is too early to look back from") from exc
    if start > end:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "since must not be after until")
    if store is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the time-series store is not available; try again later")
    try:
        samples = store.query(
            site=found_site.id, kind=device.kind, device_id=device.id, field=field, since=start, until=end, limit=limit
        )
    except StoreError as exc:
        log.warning("telemetry query for %s/%s failed on %s: %s", found_site.id, device.id, store.url_redacted, exc)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the time-series store is not answering; try again later"
        ) from exc
    return TelemetryPublic(
        site=found_site.id,
        device_id=device.id,
        field=field,
        points=[TelemetryPoint(ts=sample.ts, value=sample.value) for sample in samples],
    )
