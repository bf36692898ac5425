"""Response and request models of HTTP API v1 (``shared/spec/api-contract.md``).

Families follow the template's habit: ``XPublic`` is what a signed-in client sees, ``XsPublic``
a page of them, ``XRequest`` a body a client sends. Every time is timezone-aware and serialised
as ISO 8601 with its offset (UTC, ``Z``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Text a client sends that reaches the database: PostgreSQL refuses NUL characters in text.
NO_NUL = r"^[^\x00]*$"

Health = Literal["ok", "fault", "offline", "maintenance"]
LightState = Literal["on", "off", "fault", "repairing"]
ElevatorState = Literal["in_service", "out_of_service"]
ChargerState = Literal["available", "in_use", "unavailable"]
TelemetryValue = bool | float | str


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


# ---------------------------------------------------------------- health and auth


class HealthPublic(_Out):
    status: Literal["ok", "degraded", "unavailable"] = Field(
        description="ok: everything answers; degraded: the database answers but the broker or the "
        "time-series store does not; unavailable (HTTP 503): the database does not answer"
    )
    database: bool = Field(description="the database answered a query")
    timeseries: bool = Field(description="the time-series store answered")
    broker: bool = Field(description="a TCP connection to the MQTT broker succeeded within 1 s")
    sites: list[str] = Field(description="ids of the sites this API serves", examples=[["wanmei"]])


class TokenPublic(_Out):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int = Field(description="seconds until the token expires", examples=[28800])


class UserPublic(_Out):
    username: str
    role: Literal["admin", "manager", "technician", "grid_officer", "viewer"]
    full_name: str | None
    teams: list[str] = Field(description="teams the account acknowledges tickets for")
    sites: list[str] = Field(description="sites the account sees (an admin sees every site)")


# ---------------------------------------------------------------- devices


class Position(_Out):
    x: float = Field(description="plan units, 0 at the left")
    y: float = Field(description="plan units, 0 at the top")


class Location(_Out):
    compound: str | None = Field(None, description="compound (小区) id, for elevators and chargers")
    building: str | None = Field(None, description="building id, for elevators")
    circuit: str | None = Field(None, description="lighting circuit id, for streetlights")
    cabinet: str | None = Field(None, description="distribution cabinet (配电箱) id, for streetlights")
    position: Position | None = Field(None, description="position on the site plan")


class DevicePublic(_Out):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{
                "id": "SL-07", "site": "wanmei", "kind": "streetlight", "name": "中心广场7号灯",
                "location": {"compound": None, "building": None, "circuit": "C1", "cabinet": "CAB-1",
                             "position": {"x": 450, "y": 380}},
                "online": True, "health": "fault", "last_seen": "2026-11-26T12:00:00Z",
                "last": {"relay": True, "power_w": 0.4, "voltage_v": 229.4},
                "open_tickets": [12], "inactive_detectors": ["leakage", "power_factor_low", "end_of_life"],
            }]
        }
    )

    id: str
    site: str
    kind: Literal["streetlight", "elevator", "charger"]
    name: str
    location: Location
    online: bool = Field(description="false when the gateway declared it offline or has never heard from it")
    health: Health = Field(
        description="offline: not online; fault: an active ticket waits for acknowledgement or a start; "
        "maintenance: its active tickets are being worked on (or an elevator is in inspection mode); else ok"
    )
    last_seen: datetime | None = Field(description="when the gateway last heard from it")
    last: dict[str, Any] = Field(description="the latest telemetry values")
    open_tickets: list[int] = Field(description="ids of the active tickets that concern it")
    inactive_detectors: list[str] = Field(
        description="fault codes that cannot be detected because the device does not report a field they need"
    )
    lamp_age_hours: float | None = Field(
        None,
        description="streetlight: hours the lamp in it has burnt, its reported burn_hours less the counter "
        "at its latest recorded lamp replacement; null when burn_hours is unknown, and for other kinds",
    )
    lamp_replaced_at: datetime | None = Field(
        None, description="streetlight: when its latest lamp replacement was recorded; null if never"
    )
    energy_baseline_since: datetime | None = Field(
        None,
        description="streetlight: from when its nights count towards its energy baseline (its latest lamp or "
        "controller replacement); null when neither was ever replaced",
    )


class LifecycleEventPublic(_Out):
    type: str = Field(description="commissioned | controller_replaced | lamp_replaced | retired")
    at: datetime
    actor: str = Field(description="who recorded it (`linli device ... --actor`, default the login name)")
    note: str | None


class DeviceDetailPublic(DevicePublic):
    lifecycle: list[LifecycleEventPublic] = Field(
        description="its lifecycle events (commissioned, controller or lamp replaced, retired), oldest first"
    )


class LifecyclePublic(_Out):
    site: str
    device_id: str
    items: list[LifecycleEventPublic] = Field(description="oldest first")


class DevicesPublic(_Out):
    items: list[DevicePublic]
    total: int = Field(description="devices matching the filters, before limit/offset")


class TelemetryPoint(_Out):
    ts: datetime
    value: TelemetryValue


class TelemetryPublic(_Out):
    site: str
    device_id: str
    field: str
    points: list[TelemetryPoint] = Field(description="ascending by time, since <= ts <= until")


# ---------------------------------------------------------------- tickets


class SubjectPublic(_Out):
    type: Literal["device", "circuit", "cabinet", "building", "concentrator", "place"]
    id: str


class FaultName(_Out):
    zh: str = Field(examples=["灯具不亮"])
    en: str = Field(examples=["Lamp failure"])


class AckPublic(_Out):
    by: str = Field(description="the username who acknowledged for the team")
    at: datetime


class HistoryEntry(_Out):
    type: str = Field(description="the event: opened, acknowledged, started, held, resolved, ...")
    at: datetime
    actor: str = Field(description="a username, or 'system' for the engine")
    from_: str | None = Field(alias="from", description="status before the event (null for 'opened')")
    to: str = Field(description="status after the event")
    note: str | None = None
    team: str | None = Field(None, description="the team an acknowledgement was for")
    severity: str | None = Field(None, description="the new severity of a severity rise")
    photos: list[str] | None = Field(
        None, description="a resolve's photos: URLs of `GET /api/v1/tickets/{id}/photos/{photo_id}`")


class TicketPublic(_Out):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 12, "site": "wanmei", "title": "中心广场7号灯 · 灯具不亮", "subject": {"type": "device", "id": "SL-07"},
        "device_id": "SL-07", "device_ids": ["SL-07"], "fault": "lamp_failure",
        "fault_name": {"zh": "灯具不亮", "en": "Lamp failure"}, "severity": "P2", "teams": ["property"],
        "acks": {"property": {"by": "zhao", "at": "2026-11-26T11:20:00Z"}}, "assignee": "zhao",
        "status": "in_progress", "source": "detector", "opened_at": "2026-11-26T11:00:00Z",
        "ack_due_at": "2026-11-26T12:00:00Z", "start_due_at": None, "resolve_due_at": "2026-11-27T11:00:00Z",
        "acknowledged_at": "2026-11-26T11:20:00Z", "acknowledged_by": "zhao", "resolved_at": None, "closed_at": None,
        "parent_id": None, "signal_cleared_at": None, "reopen_count": 0, "version": 3,
        "history": [
            {"type": "opened", "at": "2026-11-26T11:00:00Z", "actor": "system", "from": None, "to": "open",
             "note": "detected"},
            {"type": "acknowledged", "at": "2026-11-26T11:20:00Z", "actor": "zhao", "from": "open",
             "to": "acknowledged", "team": "property"},
            {"type": "started", "at": "2026-11-26T11:45:00Z", "actor": "zhao", "from": "acknowledged",
             "to": "in_progress", "note": "到场处理"},
        ],
    }]})

    id: int
    site: str
    title: str | None = Field(description="a short human title, e.g. '中心广场7号灯 · 灯具不亮'")
    subject: SubjectPublic
    device_id: str | None = Field(description="the subject's id when it is a device, else null")
    device_ids: list[str] = Field(description="every device affected")
    fault: str = Field(description="a fault catalog code or a report category")
    fault_name: FaultName
    severity: Literal["P0", "P1", "P2", "P3"]
    teams: list[str] = Field(description="teams dispatched, lead team first")
    acks: dict[str, AckPublic] = Field(description="per team: who acknowledged and when")
    assignee: str | None
    status: Literal["open", "acknowledged", "in_progress", "on_hold", "resolved", "verified", "closed", "cancelled"]
    source: str = Field(description="detector | resident | grid_officer | staff")
    opened_at: datetime
    ack_due_at: datetime
    start_due_at: datetime | None = Field(description="on site by (P0/P1 only)")
    resolve_due_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None = Field(description="who acknowledged for the lead team")
    resolved_at: datetime | None
    closed_at: datetime | None
    parent_id: int | None
    signal_cleared_at: datetime | None
    reopen_count: int
    version: int = Field(description="bumped by every event; send it back to act only on what you saw")
    history: list[HistoryEntry]


class TicketsPublic(_Out):
    items: list[TicketPublic]
    total: int = Field(description="tickets matching the filters, before limit/offset")


class AckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team: str | None = Field(
        None,
        max_length=64,
        description="the team to acknowledge for; default: your team on the ticket (a manager: the lead team)",
        examples=["property"],
    )
    note: str | None = Field(None, max_length=2000, pattern=NO_NUL)
    version: int | None = Field(
        None, ge=1, description="the ticket version you saw; 409 if the ticket has changed since"
    )


# ---------------------------------------------------------------- operator


class DeadLetterPublic(_Out):
    id: int
    received_at: datetime
    reason: str = Field(examples=["not_json"])
    detail: str
    topic: str
    site: str | None
    device_id: str | None
    payload_excerpt: str = Field(description="the start of the payload as text (undecodable bytes replaced), <= 512 chars")


class DeadLettersPublic(_Out):
    items: list[DeadLetterPublic]
    total: int
    counts: dict[str, int] = Field(description="dead letters per reason, over your sites and the site filter")


# ---------------------------------------------------------------- public (no account)


class PublicSite(_Out):
    id: str = Field(examples=["wanmei"])
    name: str = Field(examples=["湾美社区"])
    name_en: str | None = Field(None, examples=["Wanmei Community"])


class PlanArea(_Out):
    name: str
    name_en: str | None
    x: float
    y: float
    w: float
    h: float


class PublicPlan(_Out):
    width: float
    height: float
    areas: list[PlanArea] = Field(description="the compounds' outlines, to draw under the lights")


class PublicStreetlight(_Out):
    id: str
    name: str
    name_en: str | None
    state: LightState
    position: Position | None


class PublicElevator(_Out):
    id: str
    name: str
    name_en: str | None
    building: str | None = Field(description="building id")
    state: ElevatorState


class PublicCharger(_Out):
    id: str
    name: str
    name_en: str | None
    state: ChargerState


class PublicTicket(_Out):
    id: int
    fault_name: FaultName
    status: str = Field(description="open | acknowledged | in_progress | on_hold | resolved | verified")
    opened_at: datetime
    device_ids: list[str] = Field(description="the devices it concerns")


class PublicStatus(_Out):
    site: str
    name: str
    name_en: str | None
    generated_at: datetime
    plan: PublicPlan
    streetlights: list[PublicStreetlight]
    elevators: list[PublicElevator]
    chargers: list[PublicCharger]
    tickets: list[PublicTicket] = Field(description="active device tickets: progress only, no people, no notes")
