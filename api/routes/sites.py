"""The site plan for staff pages: compounds, buildings, cabinets and circuits, and where every device is.

It is the site file's geometry only (no live state): a page draws it once and colours the devices
from `GET /devices` and the live events.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import SitesDep, VisibleSites
from api.routes.devices import site_or_404
from api.schemas import Position
from api.views import location_of
from linli.site import DeviceKind
from linli.site import Position as SitePosition

router = APIRouter(prefix="/sites", tags=["sites"])


class _Out(BaseModel):
    pass


def _position(position: SitePosition | None) -> Position | None:
    return Position(x=position.x, y=position.y) if position is not None else None


class PlanRect(_Out):
    x: float
    y: float
    w: float
    h: float


class PlanCompound(_Out):
    id: str
    name: str
    name_en: str | None
    area: PlanRect | None = Field(description="its outline on the plan, when the site file draws one")


class PlanBuilding(_Out):
    id: str
    compound: str
    name: str
    name_en: str | None
    position: Position | None


class PlanCircuit(_Out):
    id: str
    name: str
    name_en: str | None
    switched: bool


class PlanCabinet(_Out):
    id: str
    name: str
    name_en: str | None
    position: Position | None
    circuits: list[PlanCircuit]


class PlanDevice(_Out):
    id: str
    kind: DeviceKind
    name: str
    name_en: str | None
    position: Position | None = Field(description="its own position, else its building's; none when the file gives neither")
    compound: str | None
    building: str | None
    circuit: str | None
    cabinet: str | None
    group: str | None = Field(description="a charger's group")
    rated_power_w: float | None = Field(description="a streetlight's rated power (lit at 10% of it)")
    rated_power_kw: float | None = Field(description="a charger's rated power")


class SitePlan(_Out):
    site: str
    name: str
    name_en: str | None
    width: float = Field(description="plan units; positions run from 0 to width, left to right")
    height: float = Field(description="plan units; positions run from 0 to height, top to bottom")
    compounds: list[PlanCompound]
    buildings: list[PlanBuilding]
    cabinets: list[PlanCabinet]
    devices: list[PlanDevice] = Field(description="the devices in service, in site-file order")


@router.get("/{site_id}/plan", response_model=SitePlan, responses={404: {"description": "no such site"}})
def site_plan(site_id: str, *, sites: SitesDep, visible: VisibleSites) -> SitePlan:
    """The site plan as the site file draws it, for the crew dashboard: areas, buildings, cabinets
    with their circuits, and every device in service with its position."""
    site = site_or_404(sites, visible, site_id)
    spec = site.spec
    devices = []
    for device in site.devices.values():
        location = location_of(site, device)
        devices.append(PlanDevice(
            id=device.id, kind=device.kind, name=device.name, name_en=device.name_en, position=location.position,
            compound=location.compound, building=location.building, circuit=location.circuit,
            cabinet=location.cabinet, group=device.group, rated_power_w=device.rated_power_w,
            rated_power_kw=device.rated_power_kw,
        ))
    return SitePlan(
        site=site.id,
        name=site.name,
        name_en=spec.site.name_en,
        width=spec.plan.width,
        height=spec.plan.height,
        compounds=[
            PlanCompound(
                id=c.id, name=c.name, name_en=c.name_en,
                area=PlanRect(x=c.area.x, y=c.area.y, w=c.area.w, h=c.area.h) if c.area else None,
            )
            for c in spec.compounds
        ],
        buildings=[
            PlanBuilding(id=b.id, compound=b.compound, name=b.name, name_en=b.name_en, position=_position(b.position))
            for b in spec.buildings
        ],
        cabinets=[
            PlanCabinet(
                id=cab.id, name=cab.name, name_en=cab.name_en, position=_position(cab.position),
                circuits=[PlanCircuit(id=c.id, name=c.name, name_en=c.name_en, switched=c.switched) for c in cab.circuits],
            )
            for cab in spec.cabinets
        ],
        devices=devices,
    )
