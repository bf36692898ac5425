"""The latest telemetry a device's detectors keep, as plain tuples instead of the pydantic models.

Every device keeps its latest sample (a charger one per connector, an elevator the one before too):
a validated model costs ~1.4 KB (its ``__dict__``, its fields-set set, its extras), a named tuple of
the same values ~0.2 KB. The fields mirror the contract's models in order (a unit test holds them
to it), plus ``extra``: the unknown fields the model kept, None when there are none. ``dump`` is the
model's ``model_dump(mode="json", exclude_none=True)``, so detector snapshots are unchanged.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import BaseModel

from linli.contract import ChargerTelemetry, ElevatorTelemetry, StreetlightTelemetry


def _values(body: BaseModel, fields: tuple[str, ...]) -> tuple[Any, ...]:
    values = body.__dict__
    return (*[values[name] for name in fields[:-1]], body.__pydantic_extra__ or None)


def _dump(sample: tuple[Any, ...], fields: tuple[str, ...], model: type[BaseModel]) -> dict[str, Any]:
    extra = sample[-1]
    if extra:  # rare: let the model serialize the unknown fields exactly as before (inf -> null, nesting)
        known = dict(zip(fields[:-1], sample[:-1], strict=True))
        return model.model_construct(**known, **extra).model_dump(mode="json", exclude_none=True)
    return {name: value for name, value in zip(fields[:-1], sample[:-1], strict=True) if value is not None}


class LightSample(NamedTuple):
    """A :class:`~linli.contract.StreetlightTelemetry`'s values."""

    ts: int | None
    seq: int | None
    relay: bool
    dim_pct: float | None
    power_w: float
    voltage_v: float
    current_a: float | None
    pf: float | None
    energy_kwh: float | None
    leakage_ma: float | None
    lux: float | None
    driver_temp_c: float | None
    burn_hours: float | None
    switch_count: int | None
    extra: dict[str, Any] | None

    @classmethod
    def of(cls, body: StreetlightTelemetry) -> LightSample:
        return cls._make(_values(body, cls._fields))

    def dump(self) -> dict[str, Any]:
        return _dump(self, self._fields, StreetlightTelemetry)


class LiftSample(NamedTuple):
    """An :class:`~linli.contract.ElevatorTelemetry`'s values."""

    ts: int | None
    seq: int | None
    floor: int
    moving: bool
    direction: str | None
    speed_mps: float | None
    door: str
    door_zone: bool
    occupied: bool | None
    mode: str
    mains: bool | None
    safety_circuit: bool | None
    alarm: bool | None
    trips: int | None
    extra: dict[str, Any] | None

    @classmethod
    def of(cls, body: ElevatorTelemetry) -> LiftSample:
        return cls._make(_values(body, cls._fields))

    def dump(self) -> dict[str, Any]:
        return _dump(self, self._fields, ElevatorTelemetry)


class ConnectorSample(NamedTuple):
    """A :class:`~linli.contract.ChargerTelemetry`'s values (one connector's)."""

    ts: int | None
    seq: int | None
    status: str
    error_code: str
    connector_id: int
    power_kw: float | None
    voltage_v: float | None
    current_a: float | None
    energy_kwh: float | None
    temp_c: float | None
    session_id: str | None
    extra: dict[str, Any] | None

    @classmethod
    def of(cls, body: ChargerTelemetry) -> ConnectorSample:
        return cls._make(_values(body, cls._fields))

    def dump(self) -> dict[str, Any]:
        return _dump(self, self._fields, ChargerTelemetry)


# Each sample type with the contract model it mirrors (the unit test walks these).
MIRRORS: tuple[tuple[type[tuple[Any, ...]], type[BaseModel]], ...] = (
    (LightSample, StreetlightTelemetry), (LiftSample, ElevatorTelemetry), (ConnectorSample, ChargerTelemetry),
)
