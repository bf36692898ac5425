"""How the API presents devices and tickets: the read side, in one place.

Rules that turn live state and tickets into a device's `health`, its `inactive_detectors`,
and the residents' words (`on`/`off`/`fault`/`repairing`, ...) live here, each in one table or
one function, so the operators' view and the residents' view cannot disagree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api import schemas
from linli.catalog import FAULTS
from linli.contract import TELEMETRY_MODELS
from linli.engine.engine import MaintenanceWindow
from linli.ops.lifecycle import LAMP_REPLACED, energy_baseline_start, lamp_age_hours
from linli.site import Device, Site
from linli.storage.maintenance import current_windows
from linli.storage.models import DeviceLifecycleEvent, DeviceState, TicketEventRow, TicketRow
from linli.storage.resident_reports import CATEGORIES
from linli.tickets import TicketStatus

# Detectors that need one optional telemetry field: when the device's latest telemetry lacks it,
# the detector cannot run for that device. Detectors with a second signal (e.g. `trapped` treats
# unknown occupancy as occupied, `high_temperature` also reads the OCPP error code) stay active.
DETECTOR_FIELDS: Mapping[str, Mapping[str, str]] = {
    "streetlight": {"leakage": "leakage_ma", "power_factor_low": "pf", "end_of_life": "burn_hours"},
    "elevator": {"overspeed": "speed_mps", "safety_circuit_open": "safety_circuit", "power_loss": "mains"},
    "charger": {"charging_no_current": "current_a"},
}

WAITING = frozenset({TicketStatus.OPEN, TicketStatus.ACKNOWLEDGED})  # nobody on site yet
BEING_FIXED = frozenset({TicketStatus.IN_PROGRESS, TicketStatus.ON_HOLD, TicketStatus.RESOLVED, TicketStatus.VERIFIED})

LIT_RATIO = 0.10  # a light counts as lit at 10% of its rated power (as the lamp_failure detector)
CHARGER_IN_USE = frozenset({"Charging", "Preparing", "SuspendedEV", "SuspendedEVSE", "Finishing"})


def telemetry_fields(kind: str) -> list[str]:
    """The telemetry field names a device of `kind` may report (device contract v1)."""
    return [name for name in TELEMETRY_MODELS[kind].model_fields if name not in ("ts", "seq")]


def fault_name(code: str) -> schemas.FaultName:
    spec = FAULTS.get(code) or CATEGORIES.get(code)  # a catalog fault, or a resident's report category
    return schemas.FaultName(zh=spec.zh, en=spec.en) if spec else schemas.FaultName(zh=code, en=code)


# ---------------------------------------------------------------- live state of devices


@dataclass(slots=True)
class LiveView:
    """Device states and active tickets of some sites, loaded once per request."""

    states: dict[tuple[str, str], DeviceState] = field(default_factory=dict)
    # (site, device id) -> statuses and ids of the active tickets concerning the device
    tickets: dict[tuple[str, str], list[tuple[int, TicketStatus]]] = field(default_factory=lambda: defaultdict(list))
    active_rows: list[TicketRow] = field(default_factory=list)
    # (site, device id) -> its lifecycle events, oldest first
    lifecycle: dict[tuple[str, str], list[DeviceLifecycleEvent]] = field(default_factory=lambda: defaultdict(list))
    # planned maintenance covering `now` (loaded only when `now` is given)
    windows: list[MaintenanceWindow] = field(default_factory=list)
    now: datetime | None = None

    @classmethod
    def load(cls, session: Session, site_ids: Sequence[str], now: datetime | None = None) -> LiveView:
        view = cls(now=now)
        if not site_ids:
            return view
        if now is not None:
            view.windows = [w for w in current_windows(session, list(site_ids), now) if w.starts <= now]
        for state in session.scalars(select(DeviceState).where(DeviceState.site.in_(site_ids))):
            view.states[(state.site, state.device_id)] = state
        rows = session.scalars(
            select(TicketRow).where(TicketRow.site.in_(site_ids), TicketRow.active.is_(True)).order_by(TicketRow.id)
        ).all()
        view.active_rows = list(rows)
        for row in rows:
            for device_id in devices_of(row):
                view.tickets[(row.site, device_id)].append((row.id, TicketStatus(row.status)))
        for event in lifecycle_events(session, site_ids):  # one query for every device of the sites
            view.lifecycle[(event.site, event.device_id)].append(event)
        return view

    def under_maintenance(self, site: Site, device: Device) -> bool:
        return self.now is not None and any(w.covers(site, device, self.now) for w in self.windows)

    def ticket_statuses(self, site: str, device_id: str) -> list[TicketStatus]:
        return [status for _, status in self.tickets.get((site, device_id), ())]


def lifecycle_events(session: Session, site_ids: Sequence[str], device_id: str | None = None) -> list[DeviceLifecycleEvent]:
    """Lifecycle events of the sites (of one device, when given), oldest first."""
    query = select(DeviceLifecycleEvent).where(DeviceLifecycleEvent.site.in_(site_ids))
    if device_id is not None:
        query = query.where(DeviceLifecycleEvent.device_id == device_id)
    return list(session.scalars(query.order_by(DeviceLifecycleEvent.at, DeviceLifecycleEvent.id)))


def lifecycle_public(events: Iterable[DeviceLifecycleEvent]) -> list[schemas.LifecycleEventPublic]:
    return [schemas.LifecycleEventPublic(type=e.type, at=e.at, actor=e.actor, note=e.note) for e in events]


def devices_of(row: TicketRow) -> list[str]:
    ids = list(row.device_ids or ())
    if row.device_id and row.device_id not in ids:
        ids.insert(0, row.device_id)
    return ids


def is_online(state: DeviceState | None) -> bool:
    """Online only when the gateway says so; never heard from (no row, or None) counts as offline."""
    return bool(state is not None and state.online)


def health_of(device: Device, state: DeviceState | None, statuses: Iterable[TicketStatus]) -> schemas.Health:
    if not is_online(state):
        return "offline"
    statuses = set(statuses)
    if statuses & WAITING:
        return "fault"
    if statuses & BEING_FIXED:
        return "maintenance"
    last = state.last if state is not None else {}
    if device.kind == "elevator" and last.get("mode") == "inspection":
        return "maintenance"
    return "ok"


def inactive_detectors(kind: str, last: Mapping[str, Any] | None) -> list[str]:
    """Codes that cannot run for lack of a field; empty until the device has reported telemetry."""
    if not last:
        return []
    return [code for code, needed in DETECTOR_FIELDS.get(kind, {}).items() if last.get(needed) is None]


def location_of(site: Site, device: Device) -> schemas.Location:
    tags = site.location_tags(device)
    position = device.position
    if position is None and device.building and site.buildings[device.building].position is not None:
        position = site.buildings[device.building].position
    return schemas.Location(
        compound=tags.get("compound"),
        building=tags.get("building"),
        circuit=tags.get("circuit"),
        cabinet=tags.get("cabinet"),
        position=schemas.Position(x=position.x, y=position.y) if position else None,
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def lamp_fields(device: Device, last: Mapping[str, Any], events: Sequence[DeviceLifecycleEvent]) -> dict[str, Any]:
    """A streetlight's lamp age, last lamp replacement and energy baseline start (the other kinds: none)."""
    if device.kind != "streetlight":
        return {}
    burn_hours = _number(last.get("burn_hours"))
    replacements = [event.at for event in events if event.type == LAMP_REPLACED]
    return {
        "lamp_age_hours": lamp_age_hours(events, burn_hours) if burn_hours is not None else None,
        "lamp_replaced_at": max(replacements, default=None),
        "energy_baseline_since": energy_baseline_start(events),
    }


def device_public(site: Site, device: Device, live: LiveView) -> schemas.DevicePublic:
    return schemas.DevicePublic(**_device_fields(site, device, live))


def device_detail(site: Site, device: Device, live: LiveView) -> schemas.DeviceDetailPublic:
    events = live.lifecycle.get((site.id, device.id), [])
    return schemas.DeviceDetailPublic(**_device_fields(site, device, live), lifecycle=lifecycle_public(events))


def _device_fields(site: Site, device: Device, live: LiveView) -> dict[str, Any]:
    state = live.states.get((site.id, device.id))
    last = dict(state.last or {}) if state is not None else {}
    return dict(
        id=device.id,
        site=site.id,
        kind=device.kind,
        name=device.name,
        location=location_of(site, device),
        online=is_online(state),
        # planned work explains silence and faults alike (its P0 tickets still show in open_tickets)
        health="maintenance" if live.under_maintenance(site, device) else health_of(
            device, state, live.ticket_statuses(site.id, device.id)),
        last_seen=state.last_seen if state is not None else None,
        last=last,
        open_tickets=[ticket_id for ticket_id, _ in live.tickets.get((site.id, device.id), ())],
        inactive_detectors=inactive_detectors(device.kind, last),
        **lamp_fields(device, last, live.lifecycle.get((site.id, device.id), [])),
    )


# ---------------------------------------------------------------- tickets


def _aware(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def history_entry(ticket_id: int, event: TicketEventRow) -> schemas.HistoryEntry:
    """One event of a ticket's history as the API shows it (also in the live `ticket` events)."""
    data = event.data or {}
    photos = data.get("photos") if event.type == "resolved" else None
    return schemas.HistoryEntry(
        type=event.type,
        at=event.at,
        actor=event.actor,
        from_=event.from_status,
        to=event.to_status,
        note=event.note,
        team=data.get("team") if event.type == "acknowledged" else None,
        severity=data.get("severity") if event.type in ("opened", "severity_raised") else None,
        photos=[f"/api/v1/tickets/{ticket_id}/photos/{p}" for p in photos if isinstance(p, str)] if photos else None,
    )


def ticket_public(row: TicketRow) -> schemas.TicketPublic:
    history = [history_entry(row.id, event) for event in row.events]
    acks = {
        team: schemas.AckPublic(by=str(ack.get("by")), at=_aware(ack.get("at")))
        for team, ack in (row.acks or {}).items()
    }
    return schemas.TicketPublic(
        id=row.id,
        site=row.site,
        title=row.title,
        subject=schemas.SubjectPublic(type=row.subject_type, id=row.subject_id),
        device_id=row.device_id,
        device_ids=list(row.device_ids or ()),
        fault=row.fault,
        fault_name=fault_name(row.fault),
        severity=row.severity,
        teams=list(row.teams or ()),
        acks=acks,
        assignee=row.assignee,
        status=row.status,
        source=row.source,
        opened_at=row.opened_at,
        ack_due_at=row.ack_due_at,
        start_due_at=row.start_due_at,
        resolve_due_at=row.resolve_due_at,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        resolved_at=row.resolved_at,
        closed_at=row.closed_at,
        parent_id=row.parent_id,
        signal_cleared_at=row.signal_cleared_at,
        reopen_count=row.reopen_count,
        version=row.version,
        history=history,
    )


# ---------------------------------------------------------------- residents' words


def streetlight_state(device: Device, state: DeviceState | None, statuses: Iterable[TicketStatus]) -> schemas.LightState:
    statuses = set(statuses)
    if statuses & WAITING:
        return "fault"
    if statuses & BEING_FIXED:
        return "repairing"
    if not is_online(state) or state is None:
        return "off"  # an offline light without a ticket is simply dark to a resident
    last = state.last or {}
    power = last.get("power_w")
    lit = (
        last.get("relay") is True
        and isinstance(power, int | float)
        and device.rated_power_w is not None
        and power >= LIT_RATIO * device.rated_power_w
    )
    return "on" if lit else "off"


def elevator_state(state: DeviceState | None, statuses: Iterable[TicketStatus]) -> schemas.ElevatorState:
    if not is_online(state) or state is None or any(True for _ in statuses):
        return "out_of_service"
    return "in_service" if (state.last or {}).get("mode") == "normal" else "out_of_service"


def charger_state(state: DeviceState | None, statuses: Iterable[TicketStatus]) -> schemas.ChargerState:
    if not is_online(state) or state is None or any(True for _ in statuses):
        return "unavailable"
    status = (state.last or {}).get("status")
    if status == "Available":
        return "available"
    if status in CHARGER_IN_USE:
        return "in_use"
    return "unavailable"
