"""Types, errors and checks shared by every time-series backend."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

FieldValue = float | bool | str

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# Required tags; they also must not be field names, so InfluxQL's WHERE on them is unambiguous.
_KEY_TAGS = ("site", "device")


@dataclass(frozen=True, slots=True)
class Point:
    measurement: str  # the device kind: "streetlight" | "elevator" | "charger"
    tags: Mapping[str, str]  # always "site" and "device", plus optional location tags
    fields: Mapping[str, FieldValue]  # ints are written as floats (Influx pins a field's type)
    ts_ms: int  # ms since epoch, UTC


@dataclass(frozen=True, slots=True)
class Sample:
    ts: datetime  # timezone-aware UTC
    value: FieldValue


class StoreError(Exception):
    """Any failure of a time-series store."""


class StoreUnavailable(StoreError):
    """Connection refused, timeout, 5xx: retry later."""


class StoreRejected(StoreError):
    """4xx or an invalid point: retrying will not help (the caller dead-letters)."""


class TimeSeriesStore(Protocol):
    url_redacted: str  # the URL without secrets, for logs and health

    def write(self, points: Sequence[Point]) -> None: ...

    def query(
        self,
        *,
        site: str,
        kind: str,
        device_id: str,
        field: str,
        since: datetime,
        until: datetime,
        limit: int = 10_000,
    ) -> list[Sample]:
        """Samples with since <= ts <= until, ascending by ts, the earliest `limit` of them."""
        ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


def ms_to_datetime(ts_ms: int) -> datetime:
    # timedelta arithmetic, not fromtimestamp(ms / 1000): float division can lose a microsecond
    return _EPOCH + ts_ms * _MS


def time_range_ms(since: datetime, until: datetime, limit: int) -> tuple[int, int]:
    """Inclusive [since, until] in whole ms: since rounds up, until rounds down."""
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("since and until must be timezone-aware datetimes")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    return -((_EPOCH - since) // _MS), (until - _EPOCH) // _MS


def _text_ok(s: object) -> bool:
    # Line protocol cannot carry a newline in a name or tag value, nor a trailing backslash
    # (it would escape the separator; influxdb-client then stores "x\\" as "x ").
    return (
        isinstance(s, str) and s != "" and "\n" not in s and "\r" not in s and not s.endswith("\\")
    )


# Shapes (measurement, tag names, field names) whose names have passed every check of `_problem`:
# a point of a known shape needs only its values checked. Bounded: odd input cannot grow it forever.
_GOOD_SHAPES: set[tuple[object, tuple[object, ...], tuple[object, ...]]] = set()
_GOOD_SHAPES_MAX = 4096


def normalize(points: Sequence[Point]) -> list[Point]:
    """Validate points and turn int fields into floats; StoreRejected names the first bad one."""
    out: list[Point] = []
    for p in points:
        known = _known_shape(p)
        if known is not None:
            out.append(known)
            continue
        problem = _problem(p)
        if problem:
            raise StoreRejected(f"invalid point {p!r}: {problem}")
        fields = {
            k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in p.fields.items()
        }
        out.append(Point(p.measurement, dict(p.tags), fields, p.ts_ms))
        try:
            if len(_GOOD_SHAPES) >= _GOOD_SHAPES_MAX:
                _GOOD_SHAPES.clear()
            _GOOD_SHAPES.add((p.measurement, tuple(p.tags), tuple(p.fields)))
        except TypeError:  # an unhashable measurement: checked in full every time
            pass
    return out


def _known_shape(p: Point) -> Point | None:
    """The normalized point when its shape is known good and its values pass `_problem`'s value
    checks; None sends it through the full check (which also words any problem exactly as before)."""
    tags, fields, ts_ms = p.tags, p.fields, p.ts_ms
    if type(tags) is not dict or type(fields) is not dict or type(ts_ms) is not int:
        return None
    try:
        if (p.measurement, tuple(tags), tuple(fields)) not in _GOOD_SHAPES:
            return None
    except TypeError:
        return None
    for v in tags.values():
        if type(v) is not str or not v or "\n" in v or "\r" in v or v.endswith("\\"):
            return None
    normal: dict[str, FieldValue] = {}
    for k, value in fields.items():
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                return None
            normal[k] = value
        elif kind is int:
            try:
                normal[k] = float(value)  # overflows exactly when `_problem`'s math.isfinite would
            except OverflowError:
                return None
        elif kind is bool or kind is str:
            normal[k] = value
        else:
            return None
    return Point(p.measurement, dict(tags), normal, ts_ms)


def _problem(p: Point) -> str | None:
    if not _text_ok(p.measurement):
        return "measurement must be a non-empty single-line string not ending in a backslash"
    if not isinstance(p.ts_ms, int) or isinstance(p.ts_ms, bool):
        return "ts_ms must be an int"
    for tag in _KEY_TAGS:
        if not p.tags.get(tag):
            return f"tag {tag!r} is required"
    for k, v in p.tags.items():
        if not (_text_ok(k) and _text_ok(v)) or k == "time":
            return f"bad tag {k!r}={v!r}"
    if not p.fields:
        return "no fields"
    for k, fv in p.fields.items():
        if not _text_ok(k) or k == "time" or k in _KEY_TAGS:
            return f"bad field name {k!r}"
        if isinstance(fv, bool | str):
            continue
        if not isinstance(fv, int | float):
            return f"field {k!r} has unsupported type {type(fv).__name__}"
        if not math.isfinite(fv):
            return f"field {k!r} is not finite"  # Influx cannot store NaN/inf
    return None
