"""Device contract v1: the one place a raw MQTT message becomes a typed message or a rejection.

``parse(topic, payload, ...)`` returns a :class:`Message` or a :class:`Rejection` with its
reason; it never raises for bad input. The gateway validates every message here, and the
simulator builds its payloads from the same models, so both sides agree by construction.
Absent optional fields stay ``None`` (unknown), never false or zero.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

TOPIC_ROOT = "estate/v1"
MAX_PAYLOAD_BYTES = 16 * 1024
MAX_FUTURE_MS = 5 * 60 * 1000

_TOPIC = re.compile(
    r"^estate/v1/(?P<site>[a-z0-9-]{1,32})/(?P<kind>streetlight|elevator|charger|concentrator)"
    r"/(?P<device>[A-Za-z0-9_-]{1,32})/(?P<channel>status|telemetry|event|cmd|cmd/ack)$"
)


class Channel(StrEnum):
    STATUS = "status"
    TELEMETRY = "telemetry"
    EVENT = "event"
    CMD = "cmd"
    CMD_ACK = "cmd/ack"


class RejectReason(StrEnum):
    TOPIC = "topic"  # not a topic of the contract
    UNKNOWN_SITE = "unknown_site"
    UNKNOWN_DEVICE = "unknown_device"
    KIND_MISMATCH = "kind_mismatch"  # the topic's kind is not the device's kind in the site file
    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    SCHEMA = "schema"
    FUTURE_TS = "future_ts"


def topic_for(site: str, kind: str, device_id: str, channel: Channel | str) -> str:
    return f"{TOPIC_ROOT}/{site}/{kind}/{device_id}/{channel}"


# ---------------------------------------------------------------- payload models


class _Body(BaseModel):
    # strict: JSON true is a bool and 1 is an int; "1" is neither. Floats accept integers.
    model_config = ConfigDict(strict=True, extra="allow", frozen=True, allow_inf_nan=False)

    def extras(self) -> dict[str, float | bool]:
        """Unknown extra fields kept for the time-series store: numbers and booleans only."""
        extra = self.__pydantic_extra__ or {}
        return {k: v for k, v in extra.items() if isinstance(v, bool) or (isinstance(v, int | float) and math.isfinite(v))}

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


Ts = Annotated[int, Field(ge=0)]
Seq = Annotated[int, Field(ge=0)]
NonNeg = Annotated[float, Field(ge=0)]


class Status(_Body):
    online: bool
    ts: Ts | None = None
    fw: str | None = None
    model: str | None = None
    interval_s: Annotated[int, Field(gt=0, le=86400)] | None = None
    boot: Annotated[int, Field(ge=0)] | None = None


class StreetlightTelemetry(_Body):
    ts: Ts | None = None
    seq: Seq | None = None
    relay: bool
    dim_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    power_w: NonNeg
    voltage_v: NonNeg
    current_a: NonNeg | None = None
    pf: Annotated[float, Field(ge=0, le=1)] | None = None
    energy_kwh: NonNeg | None = None
    leakage_ma: NonNeg | None = None
    lux: NonNeg | None = None
    driver_temp_c: float | None = None
    burn_hours: NonNeg | None = None
    switch_count: Annotated[int, Field(ge=0)] | None = None


class ElevatorTelemetry(_Body):
    ts: Ts | None = None
    seq: Seq | None = None
    floor: int
    moving: bool
    direction: Literal["up", "down", "none"] | None = None
    speed_mps: NonNeg | None = None
    door: Literal["open", "closed", "opening", "closing"]
    door_zone: bool
    occupied: bool | None = None
    mode: Literal["normal", "inspection", "fire", "out_of_service", "emergency_power"]
    mains: bool | None = None
    safety_circuit: bool | None = None
    alarm: bool | None = None
    trips: Annotated[int, Field(ge=0)] | None = None


ChargerStatus = Literal[
    "Available", "Preparing", "Charging", "SuspendedEVSE", "SuspendedEV", "Finishing", "Reserved", "Unavailable", "Faulted"
]
ChargerError = Literal[
    "NoError", "ConnectorLockFailure", "EVCommunicationError", "GroundFailure", "HighTemperature", "InternalError",
    "LocalListConflict", "OtherError", "OverCurrentFailure", "OverVoltage", "PowerMeterFailure", "PowerSwitchFailure",
    "ReaderFailure", "ResetFailure", "UnderVoltage", "WeakSignal",
]


class ChargerTelemetry(_Body):
    ts: Ts | None = None
    seq: Seq | None = None
    status: ChargerStatus
    error_code: ChargerError
    connector_id: Annotated[int, Field(ge=1)] = 1
    power_kw: NonNeg | None = None
    voltage_v: NonNeg | None = None
    current_a: NonNeg | None = None
    energy_kwh: NonNeg | None = None
    temp_c: float | None = None
    session_id: Annotated[str, Field(max_length=64)] | None = None


class Event(_Body):
    ts: Ts | None = None
    seq: Seq | None = None
    code: Annotated[str, Field(min_length=1, max_length=64)]
    detail: dict[str, Any] | None = None


class Command(_Body):
    id: Annotated[str, Field(min_length=1, max_length=64)]
    ts: Ts | None = None
    action: Literal["set_light", "set_schedule", "set_available", "refresh"]
    params: dict[str, Any] = Field(default_factory=dict)
    expires_ts: Ts | None = None


class CommandAck(_Body):
    id: Annotated[str, Field(min_length=1, max_length=64)]
    ts: Ts | None = None
    ok: bool
    error: str | None = None


Body = Status | StreetlightTelemetry | ElevatorTelemetry | ChargerTelemetry | Event | Command | CommandAck
Telemetry = StreetlightTelemetry | ElevatorTelemetry | ChargerTelemetry

TELEMETRY_MODELS: dict[str, type[_Body]] = {
    "streetlight": StreetlightTelemetry,
    "elevator": ElevatorTelemetry,
    "charger": ChargerTelemetry,
}
_CHANNEL_MODELS: dict[Channel, type[_Body]] = {
    Channel.STATUS: Status,
    Channel.EVENT: Event,
    Channel.CMD: Command,
    Channel.CMD_ACK: CommandAck,
}


# ---------------------------------------------------------------- parse results


@dataclass(frozen=True, slots=True)
class Message:
    site: str
    kind: str
    device_id: str
    channel: Channel
    body: Body
    ts_ms: int  # when the device measured, or when the gateway received it for devices without a clock
    received_ms: int

    @property
    def device_stamped(self) -> bool:
        return getattr(self.body, "ts", None) is not None

    @property
    def seq(self) -> int | None:
        return getattr(self.body, "seq", None)


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: RejectReason
    detail: str
    topic: str
    received_ms: int
    site: str | None = None
    device_id: str | None = None
    payload: bytes = field(default=b"", repr=False)  # an excerpt, kept for the operator


# Returns the device's kind in that site, or None when the site or device is unknown;
# the gateway passes its site registry's lookup. `known_site` tells the two cases apart.
DeviceLookup = Callable[[str, str], str | None]
SiteLookup = Callable[[str], bool]

_EXCERPT = 2048


def parse(
    topic: str,
    payload: bytes,
    *,
    received_ms: int,
    device_kind: DeviceLookup,
    known_site: SiteLookup,
    concentrator_known: DeviceLookup | None = None,
) -> Message | Rejection:
    """Validate one raw MQTT message against the contract and the site configuration."""

    def reject(reason: RejectReason, detail: str, site: str | None = None, device: str | None = None) -> Rejection:
        return Rejection(reason, detail, topic, received_ms, site, device, bytes(payload[:_EXCERPT]))

    parts = _topic_parts(topic)
    if parts is None:
        return reject(RejectReason.TOPIC, "not a topic of device contract v1 (estate/v1/{site}/{kind}/{device_id}/{channel})")
    site, kind, device_id, channel = parts
    if not known_site(site):
        return reject(RejectReason.UNKNOWN_SITE, f"site {site!r} is not served here", site, device_id)
    if kind == "concentrator":
        if channel not in (Channel.STATUS, Channel.EVENT):
            return reject(RejectReason.TOPIC, f"a concentrator has no {channel} channel", site, device_id)
        if concentrator_known is None or concentrator_known(site, device_id) is None:
            return reject(RejectReason.UNKNOWN_DEVICE, f"concentrator {device_id!r} is not in site {site!r}", site, device_id)
    else:
        actual = device_kind(site, device_id)
        if actual is None:
            return reject(RejectReason.UNKNOWN_DEVICE, f"device {device_id!r} is not in site {site!r}", site, device_id)
        if actual != kind:
            article = "an" if kind[0] in "aeiou" else "a"
            return reject(RejectReason.KIND_MISMATCH, f"{device_id!r} is a {actual}, not {article} {kind}", site, device_id)
    if len(payload) > MAX_PAYLOAD_BYTES:
        return reject(RejectReason.TOO_LARGE, f"payload of {len(payload)} bytes is over 16 KiB", site, device_id)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return reject(RejectReason.NOT_UTF8, f"payload is not UTF-8: {exc.reason} at byte {exc.start}", site, device_id)
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        return reject(RejectReason.NOT_JSON, f"payload is not JSON: {exc}", site, device_id)
    if not isinstance(document, dict):
        return reject(RejectReason.NOT_OBJECT, f"payload is a JSON {type(document).__name__}, not an object", site, device_id)
    model = TELEMETRY_MODELS[kind] if channel is Channel.TELEMETRY else _CHANNEL_MODELS[channel]
    try:
        body: Body = model.__pydantic_validator__.validate_python(document)  # model_validate, one call less
    except ValidationError as exc:
        return reject(RejectReason.SCHEMA, _schema_problem(exc), site, device_id)
    ts = getattr(body, "ts", None)
    if ts is not None and ts > received_ms + MAX_FUTURE_MS:
        ahead = (ts - received_ms) / 1000
        return reject(RejectReason.FUTURE_TS, f"ts is {ahead:.0f} s in the future (limit 300 s)", site, device_id)
    return Message(site, kind, device_id, channel, body, ts if ts is not None else received_ms, received_ms)


@lru_cache(maxsize=65_536)
def _topic_parts(topic: str) -> tuple[str, str, str, Channel] | None:
    """(site, kind, device_id, channel) of a contract topic; a device sends on a handful of topics."""
    match = _TOPIC.match(topic)
    if match is None:
        return None
    return match["site"], match["kind"], match["device"], Channel(match["channel"])


def _schema_problem(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in error["loc"]) or "(payload)"
        parts.append(f"{loc}: {error['msg']}")
    return "; ".join(parts)
