"""VictoriaMetrics store: InfluxDB line protocol in, `/api/v1/export` out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

import httpx

from ._base import (
    Point,
    Sample,
    StoreUnavailable,
    ms_to_datetime,
    normalize,
    time_range_ms,
)
from ._http import (
    PING_TIMEOUT,
    TIMEOUT,
    V2Writer,
    check,
    host_port,
    http_base,
    to_lines,
    transport_errors,
)


def _label_value(value: str) -> str:
    # A JSON string is a valid MetricsQL double-quoted literal (\\, \", \n, \uXXXX); raw UTF-8
    # rather than \u escapes, which Go rejects for surrogate pairs.
    return json.dumps(value, ensure_ascii=False)


def selector(*, kind: str, field: str, site: str, device_id: str) -> str:
    return (
        f"{{__name__={_label_value(f'{kind}_{field}')}"
        f",site={_label_value(site)},device={_label_value(device_id)}}}"
    )


class VictoriaMetricsStore:
    """VictoriaMetrics single-node. URL: `victoriametrics[+https]://host:port`.

    Writes go through influxdb-client's WriteApi to VM's `/api/v2/write` (VM ignores org, bucket
    and token). VM turns each field into a series named `{measurement}_{field}` with the tags
    as labels, and stores only numbers, so what query() returns differs from InfluxDB/SQLite:
    - booleans come back as 1.0 / 0.0;
    - string fields are dropped here before writing (VM would drop them, or, in older releases
      such as 1.79, store a meaningless 0), so querying a string field returns [];
    - several samples at one timestamp (a rewrite) come back as one, the last one exported;
    - samples are visible to export only after VM's in-memory buffer is flushed (about 1 s, or
      `/internal/force_flush`).
    """

    def __init__(self, url: str) -> None:
        u = httpx.URL(url)
        if u.path not in ("", "/") or u.query:
            raise ValueError(f"{url}: expected {u.scheme}://host:port and nothing after it")
        self.url_redacted = f"{u.scheme}://{host_port(u, 8428)}"
        base = http_base(u, 8428)
        self._http = httpx.Client(base_url=base, timeout=TIMEOUT)
        # VM ignores all three, but the client wants them
        self._writer = V2Writer(base, token="linli", org="linli", bucket="linli")  # noqa: S106

    def write(self, points: Sequence[Point]) -> None:
        numeric = [
            replace(p, fields={k: v for k, v in p.fields.items() if not isinstance(v, str)})
            for p in normalize(points)
        ]
        self._writer.write(to_lines(numeric))  # to_lines skips points left without fields

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
        lo, hi = time_range_ms(since, until, limit)
        if hi < 0 or lo > hi:
            return []
        params = {
            "match[]": selector(kind=kind, field=field, site=site, device_id=device_id),
            # whole seconds are understood by every VM release; the exact bounds are applied below
            "start": str(max(lo, 0) // 1000),
            "end": str(-(-hi // 1000)),
        }
        with transport_errors(f"export {self.url_redacted}"):
            resp = check(self._http.get("/api/v1/export", params=params))
        by_ts: dict[int, float] = {}
        try:
            for line in resp.text.splitlines():
                if line.strip():
                    series = json.loads(line)
                    for ts, v in zip(series["timestamps"], series["values"], strict=True):
                        if lo <= ts <= hi:
                            by_ts[int(ts)] = float(v)
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreUnavailable(f"unexpected export answer: {resp.text[:200]!r}") from exc
        return [Sample(ms_to_datetime(ts), by_ts[ts]) for ts in sorted(by_ts)[:limit]]

    def ping(self) -> bool:
        try:
            return self._http.get("/health", timeout=PING_TIMEOUT).is_success
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self._writer.close()
        self._http.close()
