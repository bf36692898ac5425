"""Routes for residents and mobile grid officers, without an account.

They say what a resident needs to know, in a resident's terms, and nothing about people:
no assignee, no acknowledgements, no notes, no history.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from api import schemas
from api.deps import ClockDep, SessionDep, SitesDep
from api.views import LiveView, charger_state, devices_of, elevator_state, fault_name, streetlight_state

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
    site: Annotated[str, Query(description="site id, e.g. wanmei")],
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
