"""HTTP plumbing shared by the InfluxDB and VictoriaMetrics stores."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import cast

import httpx
import urllib3
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from ._base import FieldValue, Point, StoreError, StoreRejected, StoreUnavailable

TIMEOUT = httpx.Timeout(10.0, connect=3.0)
PING_TIMEOUT = httpx.Timeout(3.0)  # a health check must answer "down" well before a load balancer gives up
_MS = cast(WritePrecision, WritePrecision.MS)  # the generated class declares its members as str
_RETRYABLE_4XX = frozenset({408, 429})  # timeout / rate limit: the server will take it later


def host_port(url: httpx.URL, default_port: int) -> str:
    host = f"[{url.host}]" if ":" in url.host else url.host  # IPv6 literal
    return f"{host}:{url.port or default_port}"


def http_base(url: httpx.URL, default_port: int) -> str:
    scheme = "https" if url.scheme.endswith("+https") else "http"
    return f"{scheme}://{host_port(url, default_port)}"


def _status_error(status: int, message: str) -> StoreError:
    if status == 0 or status >= 500 or status in _RETRYABLE_4XX:
        return StoreUnavailable(f"HTTP {status}: {message}")
    return StoreRejected(f"HTTP {status}: {message}")


def _message(body: str | bytes | None) -> str:
    text = body.decode(errors="replace") if isinstance(body, bytes) else (body or "")
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:500]
    if isinstance(doc, dict):  # InfluxDB 1.x says "error", 2.x/3.x say "message"
        return str(doc.get("error") or doc.get("message") or doc)[:500]
    return text[:500]


def check(resp: httpx.Response) -> httpx.Response:
    """Return a 2xx/3xx response, else raise the matching StoreError."""
    if resp.status_code >= 400:
        raise _status_error(resp.status_code, _message(resp.text))
    return resp


@contextmanager
def transport_errors(what: str) -> Iterator[None]:
    """Connection refused, DNS, timeouts, broken connections: all retryable."""
    try:
        yield
    except httpx.RequestError as exc:
        raise StoreUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


# InfluxDB line protocol escaping. Tab is escaped as influxdb-client always has, so series keys
# written before the direct encoder keep their identity; newlines are rejected by normalize().
_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\t": r"\t"})
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\t": r"\t"})
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})


@lru_cache(maxsize=65_536)
def _series(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """`measurement,k=v,...` escaped, tags in key order (InfluxDB's recommended order)."""
    head = measurement.translate(_ESCAPE_MEASUREMENT)
    return head + "".join(f",{k.translate(_ESCAPE_KEY)}={v.translate(_ESCAPE_KEY)}" for k, v in tags)


@lru_cache(maxsize=4_096)
def _field_key(key: str) -> str:
    return key.translate(_ESCAPE_KEY) + "="


def _field(value: FieldValue) -> str | None:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return '"' + value.translate(_ESCAPE_STRING) + '"'
    f = float(value)  # Linli writes every number as a float (Influx pins a field's type)
    if not math.isfinite(f):
        return None  # Influx cannot store NaN/inf; normalize() rejects them before this
    s = repr(f)
    # "1.0" -> "1": still a float in line protocol (ints carry an "i"), as influxdb-client writes it
    return s[:-2] if s.endswith(".0") else s


@lru_cache(maxsize=4_096)
def _field_order(keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """A point's field names in key order, each with its escaped `key=`: one lookup per point."""
    return tuple((k, _field_key(k)) for k in sorted(keys))


def to_lines(points: Sequence[Point]) -> list[str]:
    """Line protocol of normalized points, timestamps in ms; points without a field are skipped."""
    lines = []
    for p in points:
        values = p.fields
        fields = []
        for k, key in _field_order(tuple(values)):
            v = values[k]
            if type(v) is float and v - v == 0.0:  # the common case, inline (v - v is nan for nan/inf)
                r = repr(v)
                fields.append(key + (r[:-2] if r.endswith(".0") else r))
            else:
                text = _field(v)
                if text is not None:
                    fields.append(key + text)
        if fields:
            series = _series(p.measurement, tuple(sorted(p.tags.items())))
            lines.append(f"{series} {','.join(fields)} {p.ts_ms}")
    return lines


class V2Writer:
    """influxdb-client's synchronous WriteApi against an `/api/v2/write` endpoint."""

    def __init__(self, base_url: str, *, token: str, org: str, bucket: str) -> None:
        # retries stay off (the client's default): the caller decides when to retry
        self._client = InfluxDBClient(url=base_url, token=token, org=org, timeout=(3_000, 10_000))
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        self._org, self._bucket = org, bucket

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            self._api.write(
                bucket=self._bucket,
                org=self._org,
                record="\n".join(lines).encode(),  # already line protocol: sent as is
                write_precision=_MS,
            )
        except ApiException as exc:  # an HTTP answer (status 0: TLS failure)
            raise _status_error(exc.status or 0, _message(exc.body or exc.reason)) from exc
        except (InfluxDBError, urllib3.exceptions.HTTPError) as exc:
            raise StoreUnavailable(f"write to {self._client.url}: {exc}") from exc

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]
