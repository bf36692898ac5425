"""Devices of the caller's sites: list, one device, its lifecycle events, its telemetry from the
time-series store."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status

from api.deps import ClockDep, SessionDep, SitesDep, StoreDep, VisibleSites
from api.schemas import DeviceDetailPublic, DevicesPublic, Health, LifecyclePublic, TelemetryPoint, TelemetryPublic
from api.views import LiveView, device_detail, device_public, lifecycle_events, lifecycle_public, telemetry_fields
from linli.site import Device, Site, SiteRegistry
from linli.tsdb import Sample, StoreError

log = logging.getLogger(__name__)
router = APIRouter(prefix="/devices", tags=["devices"])

DEFAULT_TELEMETRY_WINDOW = timedelta(hours=24)
EVENTS_FIELD = "events"  # field=events: the device's own events (their `code`s), counted per bucket
AGGREGATED_READ_MAX = 200_000  # samples read for one aggregated answer (a day of 1 s telemetry and more)
Aggregation = Literal["mean", "min", "max", "last", "increase", "distinct", "count"]
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
    every: Annotated[int | None, Query(ge=60, le=86_400, description=(
        "seconds: one point per bucket of this length from `since` (its start; empty buckets left out), "
        "the `agg` of the bucket's samples"))] = None,
    agg: Annotated[Aggregation, Query(description=(
        "with `every`: mean, min, max, last; increase (of a counter such as trips or energy_kwh, a reset "
        "counting from zero); distinct (different values: charging sessions from session_id); count"))] = "mean",
    code: Annotated[list[str] | None, Query(max_length=20, description=(
        "with field=events: count only these event codes (e.g. door_fault, door_open_moving)"))] = None,
) -> TelemetryPublic:
    """Points of one field, ascending, read from the time-series store; with `every`, aggregated per
    bucket (the device panel's 24 h charts). `field=events` reads the device's own events."""
    found_site, device = resolve_device(sites, visible, device_id, site)
    known = [*telemetry_fields(device.kind), EVENTS_FIELD]
    if field not in known:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"unknown field {field!r} for a {device.kind}; known fields: {', '.join(known)}",
        )
    if field == EVENTS_FIELD and every is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "field=events is counted per bucket: give every=")
    end = _aware("until", until) or clock.now()
    try:
        start = _aware("since", since) or end - DEFAULT_TELEMETRY_WINDOW
    except OverflowError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "until is too early to look back from") from exc
    if start > end:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "since must not be after until")
    if store is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the time-series store is not available; try again later")
    kind, name = ("event", "code") if field == EVENTS_FIELD else (device.kind, field)

    def read(since_: datetime, limit_: int, field_: str | None = None) -> list[Sample]:
        return store.query(site=found_site.id, kind=kind, device_id=device.id, field=field_ or name, since=since_,
                           until=end, limit=limit_)

    try:
        if every is None:
            samples = read(start, limit)
        else:
            wanted = set(code) if code else None
            raw = [s for s in read_all(read, start) if wanted is None or s.value in wanted]
            meters: dict[datetime, object] | None = None
            if agg == "increase" and device.kind == "charger":  # each connector has its own meter
                connectors = read_all(lambda since_, limit_: read(since_, limit_, "connector_id"), start)
                meters = {sample.ts: sample.value for sample in connectors}
            samples = aggregate(raw, start, timedelta(seconds=every), "count" if field == EVENTS_FIELD else agg,
                                meters)
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


def read_all(read: Callable[[datetime, int], list[Sample]], start: datetime) -> list[Sample]:
    """Every sample from `start` (page by page of the store's limit), up to AGGREGATED_READ_MAX."""
    out: list[Sample] = []
    since = start
    while len(out) < AGGREGATED_READ_MAX:
        page = read(since, 10_000)
        out += page
        if len(page) < 10_000:
            break
        since = page[-1].ts + timedelta(milliseconds=1)
    return out


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    return float(value) if isinstance(value, int | float) else None


def aggregate(samples: Sequence[Sample], start: datetime, every: timedelta, agg: str,
              meters: dict[datetime, object] | None = None) -> list[Sample]:
    """One sample per non-empty bucket [start + k*every, ...), at the bucket's start. `meters` says
    which counter a sample is of (a charger's connector, by time) for `increase`."""
    buckets: dict[int, list[Sample]] = {}
    for sample in samples:
        buckets.setdefault(int((sample.ts - start) / every), []).append(sample)
    out: list[Sample] = []
    previous: dict[object, float] = {}  # each counter's last value before the bucket (increase)
    for index in sorted(buckets):
        group = buckets[index]
        at = (start + index * every).astimezone(UTC)
        if agg == "count":
            out.append(Sample(at, float(len(group))))
            continue
        if agg == "distinct":
            out.append(Sample(at, float(len({s.value for s in group}))))
            continue
        values = [v for v in (_number(s.value) for s in group) if v is not None]
        if not values:
            continue
        if agg == "increase":
            total = 0.0
            for sample in group:
                value = _number(sample.value)
                if value is None:
                    continue
                meter = meters.get(sample.ts) if meters is not None else None
                before = previous.get(meter)
                if before is not None:
                    total += value - before if value >= before else value  # a reset counts from zero
                previous[meter] = value
            out.append(Sample(at, round(total, 6)))
        else:
            value = {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}.get(agg, values[-1])
            out.append(Sample(at, round(value, 6)))
    return out
