"""InfluxDB stores: writes by line protocol, reads by InfluxQL on the v1 `/query` endpoint.

`/query` exists in every InfluxDB: 1.x natively, 2.x and 3.x as v1 compatibility (a bucket is
queried as database `BUCKET`; 2.x maps it through its (virtual) DBRP mapping).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from ._base import (
    Point,
    Sample,
    StoreRejected,
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

# "database not found" is an answer, not a failure: nothing was ever written there.
_EMPTY_ERRORS = ("database not found", "retention policy not found")


def quote_ident(name: str) -> str:
    """An InfluxQL identifier, double-quoted; the scanner knows only \\\\, \\", \\' and \\n."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def quote_string(value: str) -> str:
    """An InfluxQL string literal, single-quoted, escaped like quote_ident."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def select_field(
    *, kind: str, site: str, device_id: str, field: str, lo_ms: int, hi_ms: int, limit: int
) -> str:
    # Every user-given name is quoted: this string building is the safe kind. `::field` so that
    # a field name shared with a tag selects the field (or nothing), never the tag.
    where = " AND ".join((
        f"{quote_ident('site')} = {quote_string(site)}",
        f"{quote_ident('device')} = {quote_string(device_id)}",
        f"time >= {lo_ms}ms AND time <= {hi_ms}ms",
    ))
    return f"SELECT {quote_ident(field)}::field FROM {quote_ident(kind)} WHERE {where} ORDER BY time ASC LIMIT {limit}"  # noqa: S608


def _value(v: Any) -> float | bool | str:
    # JSON has no float/int distinction: Influx prints the float 100.0 as 100
    return v if isinstance(v, bool | str) else float(v)


class _InfluxQLReader:
    """query()/ping() over `/query` and `/ping`; subclasses add write()."""

    url_redacted: str
    _db: str
    _http: httpx.Client

    def _influxql(self, q: str, *, post: bool = False) -> dict[str, Any]:
        params = {"db": self._db, "q": q, "epoch": "ms"}
        with transport_errors(f"query {self.url_redacted}"):
            # InfluxDB 1.x takes reads by GET and writes to meta (CREATE ...) only by POST
            send = self._http.post if post else self._http.get
            resp = check(send("/query", params=params))
            try:
                doc: dict[str, Any] = resp.json()
            except ValueError as exc:
                raise StoreUnavailable(f"not JSON from /query: {resp.text[:200]!r}") from exc
        return doc

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
        if lo > hi:
            return []
        doc = self._influxql(
            select_field(
                kind=kind, site=site, device_id=device_id, field=field, lo_ms=lo, hi_ms=hi, limit=limit
            )
        )
        result: Mapping[str, Any] = (doc.get("results") or [{}])[0]
        if "error" in result:
            if str(result["error"]).startswith(_EMPTY_ERRORS):
                return []
            raise StoreRejected(f"InfluxQL error: {result['error']}")
        rows = [
            (int(ts), v)
            for series in result.get("series", [])
            for ts, v in series["values"]
            if v is not None
        ]
        rows.sort(key=lambda r: r[0])  # one series without GROUP BY; sort in case of several
        return [Sample(ms_to_datetime(ts), _value(v)) for ts, v in rows[:limit]]

    def ping(self) -> bool:
        try:
            return self._http.get("/ping", timeout=PING_TIMEOUT).is_success
        except httpx.HTTPError:
            return False


def _db_name(url: httpx.URL, what: str, redacted: str) -> str:
    name = url.path.strip("/")
    if not name or "/" in name:
        raise ValueError(f"{redacted}: expected exactly one path segment, the {what}")
    return name


class InfluxDB1Store(_InfluxQLReader):
    """InfluxDB 1.x (also < 1.8, which has no /api/v2): line protocol to `/write?precision=ms`.

    URL: `influxdb1[+https]://[user:pass@]host:port/DB`. The database is created on first write
    (if the user may not, the write itself tells whether it exists).
    """

    def __init__(self, url: str) -> None:
        u = httpx.URL(url)
        auth = f"{u.username}:***@" if u.username or u.password else ""
        self.url_redacted = f"{u.scheme}://{auth}{host_port(u, 8086)}{u.path}"
        self._db = _db_name(u, "database", self.url_redacted)
        self._http = httpx.Client(
            base_url=http_base(u, 8086),
            timeout=TIMEOUT,
            auth=(u.username, u.password) if u.username or u.password else None,
        )
        self._db_ready = False
        self._db_lock = threading.Lock()

    def _ensure_db(self) -> None:
        with self._db_lock:
            if self._db_ready:
                return
            # not an admin: fine if the database exists, and the write will say if not
            with contextlib.suppress(StoreRejected):
                self._influxql(f"CREATE DATABASE {quote_ident(self._db)}", post=True)
            self._db_ready = True

    def write(self, points: Sequence[Point]) -> None:
        lines = to_lines(normalize(points))
        if not lines:
            return
        self._ensure_db()
        with transport_errors(f"write {self.url_redacted}"):
            check(
                self._http.post(
                    "/write",
                    params={"db": self._db, "precision": "ms"},
                    content="\n".join(lines).encode(),
                )
            )

    def close(self) -> None:
        self._http.close()


class InfluxDB2Store(_InfluxQLReader):
    """InfluxDB 2.x / 3.x / 1.8+: influxdb-client's WriteApi to `/api/v2/write`, InfluxQL reads.

    URL: `influxdb2[+https]://:TOKEN@host:port/BUCKET?org=ORG` (org defaults to "-", which 1.8
    and 3.x ignore; 2.x needs the real one). Percent-encode a token's reserved characters.
    """

    def __init__(self, url: str) -> None:
        u = httpx.URL(url)
        org = u.params.get("org", "-")
        self.url_redacted = (
            f"{u.scheme}://{':***@' if u.password else ''}{host_port(u, 8086)}{u.path}?org={org}"
        )
        self._db = _db_name(u, "bucket", self.url_redacted)
        base = http_base(u, 8086)
        headers = {"Authorization": f"Token {u.password}"} if u.password else {}
        self._http = httpx.Client(base_url=base, timeout=TIMEOUT, headers=headers)
        self._writer = V2Writer(base, token=u.password, org=org, bucket=self._db)

    def write(self, points: Sequence[Point]) -> None:
        self._writer.write(to_lines(normalize(points)))

    def close(self) -> None:
        self._writer.close()
        self._http.close()
