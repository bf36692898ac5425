"""The Grafana dashboards in dashboards/grafana/: every panel's query against real data.

A simulated stretch of the Wanmei site (the `storm` scenario plus a few more faults, two hours of
simulated evening) runs through a real gateway into a real InfluxDB 1.x and a real PostgreSQL, and
staff acknowledge and fix two of its tickets through the API's own ticket actions. Then each
dashboard's template variables and each panel target run as Grafana would send them (its macros
and variables filled in the way Grafana fills them): InfluxQL against /query, SQL against
PostgreSQL. Every one must answer without error and with at least one non-empty row. Before that,
each dashboard is checked against a JSON Schema of what Grafana needs to load it, with unique
panel ids and no overlapping panels (docs/grafana.md, docs/decisions.md).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import paho.mqtt.client as mqtt
import psycopg
import pytest
import servers
import yaml
from sqlalchemy import select

from api.ticket_actions import acknowledge, work
from firmware_sim.cli import main as simulate
from gateway.runtime import Gateway
from gateway.settings import GatewaySettings
from linli.clock import CLOCK_TOPIC
from linli.contract import topic_for
from linli.site import builtin_site_path, load_site
from linli.storage import TicketRow, User
from linli.tickets import EventType

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards" / "grafana"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources"
FILES = sorted(DASHBOARDS.glob("*.json"))

START = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)  # 20:30 in Fujian: the lights are on
SIM_SECONDS = 2 * 3600
# What Grafana sends as the dashboard's time range: a little around the simulated stretch.
RANGE = (START - timedelta(minutes=5), START + timedelta(seconds=SIM_SECONDS, minutes=5))
DEFAULT_INTERVAL = "1m"
# Faults beyond the storm's (a circuit outage, leakage, a building power loss, a trapped passenger)
# so that every panel has something to show: a hot pile, a faulted one, a car switched out of
# service, a light that loses power and its connection, a car whose safety chain opens.
INJECT = ["high_temperature:CP-03@+5m", "faulted:CP-05@+10m/40m", "out_of_service:EL-1A@+20m/20m",
          "offline_hard:SL-05@+30m/10m", "safety_circuit_open:EL-2A@+50m/10m"]
INFLUX_TYPES = {"influxdb"}
SQL_TYPES = {"grafana-postgresql-datasource"}
EXPR_TYPE = "__expr__"
SETTLE_S = 120.0


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


# --- the schema ------------------------------------------------------------------------------

_DATASOURCE_REF = {
    "type": "object",
    "required": ["type", "uid"],
    "properties": {"type": {"type": "string", "minLength": 1}, "uid": {"type": "string", "minLength": 1}},
}
_GRID_POS = {
    "type": "object",
    "required": ["h", "w", "x", "y"],
    "properties": {
        "h": {"type": "integer", "minimum": 1},
        "w": {"type": "integer", "minimum": 1, "maximum": 24},
        "x": {"type": "integer", "minimum": 0, "maximum": 23},
        "y": {"type": "integer", "minimum": 0},
    },
}
_INFLUX_TARGET = {
    "required": ["refId", "datasource", "rawQuery", "query", "resultFormat"],
    "properties": {
        "datasource": {"properties": {"type": {"const": "influxdb"}}},
        "rawQuery": {"const": True},
        "query": {"type": "string", "pattern": r"^\s*SELECT\s"},
        "resultFormat": {"enum": ["time_series", "table", "logs"]},
        "alias": {"type": "string"},
    },
}
_SQL_TARGET = {
    "required": ["refId", "datasource", "rawSql", "format", "rawQuery"],
    "properties": {
        "datasource": {"properties": {"type": {"const": "grafana-postgresql-datasource"}}},
        "rawQuery": {"const": True},
        "editorMode": {"const": "code"},
        "rawSql": {"type": "string", "pattern": r"^\s*SELECT\s"},
        "format": {"enum": ["time_series", "table"]},
    },
}
_EXPR_TARGET = {
    "required": ["refId", "datasource", "type", "expression"],
    "properties": {
        "datasource": {"properties": {"type": {"const": "__expr__"}, "uid": {"const": "__expr__"}}},
        "type": {"enum": ["math", "reduce", "resample", "threshold"]},
        "expression": {"type": "string", "minLength": 1},
    },
}
_TARGET = {
    "type": "object",
    "required": ["refId", "datasource"],
    "properties": {"refId": {"type": "string", "pattern": "^[A-Z]$"}, "datasource": _DATASOURCE_REF,
                   "hide": {"type": "boolean"}},
    "oneOf": [_INFLUX_TARGET, _SQL_TARGET, _EXPR_TARGET],
}
_PANEL = {
    "type": "object",
    "required": ["id", "type", "title", "description", "datasource", "gridPos", "fieldConfig", "options", "targets"],
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "type": {"enum": ["timeseries", "stat", "table", "bargauge", "barchart", "state-timeline", "piechart", "gauge"]},
        "title": {"type": "string", "minLength": 1},
        "description": {"type": "string", "minLength": 1},
        "datasource": _DATASOURCE_REF,
        "gridPos": _GRID_POS,
        "interval": {"type": "string", "pattern": r"^\d+[smhd]$"},
        "fieldConfig": {
            "type": "object",
            "required": ["defaults", "overrides"],
            "properties": {
                "defaults": {"type": "object", "required": ["unit"], "properties": {"unit": {"type": "string"}}},
                "overrides": {"type": "array"},
            },
        },
        "options": {"type": "object"},
        "targets": {"type": "array", "minItems": 1, "items": _TARGET},
        "transformations": {"type": "array", "items": {"type": "object", "required": ["id", "options"]}},
    },
}
_VARIABLE = {
    "type": "object",
    "required": ["name", "type", "datasource", "query", "refresh", "multi", "includeAll"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z_]+$"},
        "label": {"type": "string"},
        "type": {"const": "query"},
        "datasource": _DATASOURCE_REF,
        "query": {"type": "string", "minLength": 1},
        "refresh": {"enum": [1, 2]},  # on load / on time range change: never "never" (0)
        "multi": {"type": "boolean"},
        "includeAll": {"type": "boolean"},
    },
}
# What Grafana 11 needs to load a dashboard from a file and what ours promise (bilingual titles,
# a description and a unit on every panel, no legacy "rows").
DASHBOARD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["uid", "title", "schemaVersion", "version", "time", "templating", "panels", "editable", "tags"],
    "not": {"required": ["rows"]},
    "properties": {
        "uid": {"type": "string", "pattern": "^[a-z0-9-]{1,40}$"},
        "id": {"type": "null"},
        "title": {"type": "string", "minLength": 1},
        "schemaVersion": {"type": "integer", "minimum": 36, "maximum": 41},
        "version": {"type": "integer", "minimum": 1},
        "editable": {"const": False},
        "tags": {"type": "array", "contains": {"const": "linli"}},
        "refresh": {"type": "string"},
        "time": {"type": "object", "required": ["from", "to"]},
        "templating": {"type": "object", "required": ["list"],
                       "properties": {"list": {"type": "array", "items": _VARIABLE}}},
        "annotations": {"type": "object", "required": ["list"]},
        "panels": {"type": "array", "minItems": 1, "items": _PANEL},
    },
}

CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN = re.compile(r"[A-Za-z]{2,}")


def datasource_uids() -> dict[str, str]:
    """uid -> type of every provisioned data source."""
    out = {}
    for path in sorted(DATASOURCES.glob("*.yaml")):
        for source in yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]:
            out[source["uid"]] = source["type"]
    return out


def overlaps(a: dict[str, int], b: dict[str, int]) -> bool:
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def test_the_dashboards_are_the_five_of_the_issue() -> None:
    assert {load(f)["uid"] for f in FILES} == {
        "linli-fleet-overview", "linli-streetlight-power", "linli-elevator-availability", "linli-charger-use",
        "linli-tickets-sla"}


def test_the_schema_refuses_what_grafana_would_not_load() -> None:
    good = load(DASHBOARDS / "fleet-overview.json")
    jsonschema.validate(good, DASHBOARD_SCHEMA)
    broken = [
        {**good, "schemaVersion": "39"},
        {**good, "panels": [{**good["panels"][0], "gridPos": {"h": 4, "w": 25, "x": 0, "y": 0}}]},
        {**good, "panels": [{**good["panels"][0], "targets": [{"refId": "A", "datasource": good["panels"][0]["datasource"],
                                                               "rawQuery": True, "resultFormat": "table",
                                                               "query": "DROP DATABASE linli"}]}]},
        {key: value for key, value in good.items() if key != "uid"},
    ]
    for doc in broken:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, DASHBOARD_SCHEMA)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_dashboard_loads_in_the_schema_check(path: Path) -> None:
    doc = load(path)
    jsonschema.validate(doc, DASHBOARD_SCHEMA)
    sources = datasource_uids()
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
    assert CJK.search(doc["title"]) and LATIN.search(doc["title"]), doc["title"]
    for i, panel in enumerate(doc["panels"]):
        title = panel["title"]
        assert CJK.search(title) and LATIN.search(title), f"{path.name}: {title!r} is not 中文 English"
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, title
        for other in doc["panels"][i + 1:]:
            assert not overlaps(panel["gridPos"], other["gridPos"]), f"{title} overlaps {other['title']}"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), title
        for target in panel["targets"]:
            ds = target["datasource"]
            if ds["type"] == EXPR_TYPE:
                used = set(re.findall(r"\$([A-Z])\b", target["expression"]))
                assert used and used <= set(refs) - {target["refId"]}, f"{title}: {target['expression']}"
                continue
            assert sources.get(ds["uid"]) == ds["type"], f"{title}: data source {ds} is not provisioned"
            assert ds == panel["datasource"], title
            assert not target.get("hide") or any(
                t["datasource"]["type"] == EXPR_TYPE for t in panel["targets"]), f"{title}: a hidden query feeds nothing"
        assert any(not t.get("hide") for t in panel["targets"]), f"{title}: nothing shown"
    for variable in doc["templating"]["list"]:
        assert sources.get(variable["datasource"]["uid"]) == variable["datasource"]["type"], variable["name"]
    names = [v["name"] for v in doc["templating"]["list"]]
    assert names and names[0] == "site", f"{path.name}: the first variable picks the site"
    used = {name for p in doc["panels"] for t in p["targets"]
            for name in re.findall(r"\$(\w+)", t.get("query") or t.get("rawSql") or "")}
    assert set(names) <= used, f"{path.name}: a variable no panel uses: {set(names) - used}"


# --- the simulated stretch -------------------------------------------------------------------


@dataclass(frozen=True)
class Stretch:
    site: str
    influx_base: str
    influx_db: str
    pg_dsn: str  # libpq form, for psycopg


def private_site(directory: Path) -> tuple[str, Path]:
    document = yaml.safe_load(builtin_site_path().read_text(encoding="utf-8"))
    site = f"grafana-{uuid.uuid4().hex[:8]}"
    document["site"]["id"] = site
    path = directory / "site.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return site, path


def staff_work(gateway: Gateway, site: str) -> None:
    """A manager acknowledges one ticket in time and fixes it, and acknowledges another late, through the
    same actions the API's routes run."""
    manager = User(username="grafana-test-manager", role="manager", teams=[], sites=[site], full_name=None,
                   disabled=False, password_hash="-", created_at=START)
    with gateway.database.session() as session:
        rows = list(session.scalars(select(TicketRow).where(TicketRow.site == site).order_by(TicketRow.opened_at)))
        assert len(rows) >= 2, [r.fault for r in rows]
        first, second = rows[0], rows[1]
        acknowledge(session, first, manager, team=None, note=None, at=first.opened_at + timedelta(minutes=2))
        work(session, first, manager, EventType.RESOLVED, note="换了漏电保护器 / replaced the RCD",
             at=first.opened_at + timedelta(minutes=20))
        late = max(second.ack_due_at, second.opened_at) + timedelta(minutes=3)
        acknowledge(session, second, manager, team=None, note=None, at=late)
        session.commit()


@pytest.fixture(scope="module")
def stretch(mosquitto: Any, influxdb1_server: servers.InfluxDB1Server, postgres_server: servers.PostgresServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stretch]:
    directory = tmp_path_factory.mktemp("grafana")
    site, site_file = private_site(directory)
    db_name = f"linli_test_{secrets.token_hex(6)}"
    postgres_server.create_database(db_name)
    influx_db = f"grafana_{uuid.uuid4().hex[:8]}"
    client_id = f"gw-{uuid.uuid4().hex[:8]}"
    database_url = postgres_server.database_url(db_name)
    settings = GatewaySettings(
        _env_file=None, data_dir=directory / "data", sites=str(site_file), mqtt_url=mosquitto.url,
        tsdb_url=influxdb1_server.store_url(influx_db), database_url=database_url, mqtt_client_id=client_id,
        follow_sim_clock=True, gateway_metrics_port=0,
    )
    gateway = Gateway(settings)
    gateway.start()
    try:
        args = ["--broker", mosquitto.url, "--site", str(site_file), "--scenario", "storm", "--speed", "max",
                "--start", START.isoformat(), "--sim-duration", str(SIM_SECONDS), "--seed", "8",
                "--wait-for", client_id, "-q"]
        for spec in INJECT:
            args += ["--inject", spec]
        assert simulate(args) == 0
        settled = threading.Event()

        def quiet() -> bool:  # nothing new for a few seconds of processing: the broker's queue is drained
            before = gateway.messages_done
            time.sleep(5.0)
            return gateway.messages_done == before and len(gateway.buffer) == 0

        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline and not settled.is_set():
            if quiet():
                settled.set()
        assert settled.is_set(), gateway.pipeline.counters
        assert gateway.pipeline.counters.points_failed == 0
        staff_work(gateway, site)
    finally:
        gateway.stop()
        clear_retained(mosquitto, site_file)
    try:
        yield Stretch(site=site, influx_base=f"http://{influxdb1_server.host}:{influxdb1_server.port}",
                      influx_db=influx_db, pg_dsn=database_url.replace("postgresql+psycopg://", "postgresql://"))
    finally:
        postgres_server.drop_database(db_name)


def clear_retained(mosquitto: Any, site_file: Path) -> None:
    """The simulator's retained statuses and clock would reach the next test's subscribers (the broker is shared)."""
    site = load_site(site_file)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"cleaner-{uuid.uuid4().hex[:6]}")
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    try:
        for device in site.devices.values():
            client.publish(topic_for(site.id, device.kind, device.id, "status"), b"", qos=1, retain=True).wait_for_publish(10)
        client.publish(CLOCK_TOPIC, b"", qos=1, retain=True).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


# --- Grafana's macros and variables, filled in as Grafana fills them ---------------------------


def _seconds(interval: str) -> int:
    return int(interval[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[interval[-1]]


def _rfc3339(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def fill_influxql(query: str, values: dict[str, list[str]], interval: str) -> str:
    """$timeFilter and $__interval as Grafana's InfluxDB plugin writes them; a multi-value variable as
    the regex alternation `(a|b)` of its escaped values (a single value: the escaped value)."""
    lo, hi = RANGE
    out = query.replace("$timeFilter", f"time >= {int(lo.timestamp() * 1000)}ms and time <= {int(hi.timestamp() * 1000)}ms")
    out = out.replace("$__interval", interval)
    for name in sorted(values, key=len, reverse=True):
        escaped = [re.escape(v).replace("/", "\\/") for v in values[name]]
        out = out.replace(f"${name}", escaped[0] if len(escaped) == 1 else f"({'|'.join(escaped)})")
    assert not re.search(r"\$(\w|\{)", out), f"a macro or variable the test does not know: {out}"
    return out


def fill_sql(query: str, values: dict[str, list[str]], interval: str) -> str:
    """The PostgreSQL plugin's macros ($__timeFilter, $__timeGroupAlias, $__timeTo) as Grafana expands
    them; a multi-value variable as a comma list of single-quoted values."""
    lo, hi = RANGE
    out = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m.group(1)} BETWEEN '{_rfc3339(lo)}' AND '{_rfc3339(hi)}'", query)
    seconds = _seconds(interval)
    out = re.sub(r"\$__timeGroupAlias\(([^,]+),\s*\$__interval\)",
                 lambda m: f'floor(extract(epoch from {m.group(1)})/{seconds})*{seconds} AS "time"', out)
    out = out.replace("$__timeTo()", f"'{_rfc3339(hi)}'").replace("$__timeFrom()", f"'{_rfc3339(lo)}'")
    for name in sorted(values, key=len, reverse=True):
        out = out.replace(f"${name}", ",".join("'" + v.replace("'", "''") + "'" for v in values[name]))
    assert not re.search(r"\$(\w|\{)", out), f"a macro or variable the test does not know: {out}"
    return out


def influxql(stretch: Stretch, query: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{stretch.influx_base}/query", params={"db": stretch.influx_db, "q": query}, timeout=30)
    assert response.status_code == 200, f"{query}: HTTP {response.status_code} {response.text[:300]}"
    (result,) = response.json()["results"]
    assert "error" not in result, f"{query}: {result['error']}"
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def sql(stretch: Stretch, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with psycopg.connect(stretch.pg_dsn) as conn:
        conn.read_only = True  # what Grafana's role should be: docs/grafana.md
        cursor = conn.execute(query)
        columns = [c.name for c in cursor.description or ()]
        return columns, cursor.fetchall()


def variable_values(stretch: Stretch, dashboard: dict[str, Any]) -> dict[str, list[str]]:
    """Each variable's options from its own query (earlier variables filled in): the site is the
    simulated one, every other variable stands at All, as it loads by default."""
    values: dict[str, list[str]] = {}
    for variable in dashboard["templating"]["list"]:
        kind = variable["datasource"]["type"]
        if kind in INFLUX_TYPES:
            series = influxql(stretch, fill_influxql(variable["query"], values, DEFAULT_INTERVAL))
            options = [str(row[-1]) for s in series for row in s["values"]]
        else:
            _columns, rows = sql(stretch, fill_sql(variable["query"], values, DEFAULT_INTERVAL))
            options = [str(row[0]) for row in rows]
        assert options, f"{dashboard['uid']}: variable {variable['name']} has no options"
        if variable["name"] == "site":
            assert stretch.site in options, options
            options = [stretch.site]
        values[variable["name"]] = options
    return values


def targets() -> list[Any]:
    out = []
    for path in FILES:
        for panel in load(path)["panels"]:
            for target in panel["targets"]:
                if target["datasource"]["type"] != EXPR_TYPE:
                    out.append(pytest.param(path, panel["id"], target["refId"],
                                            id=f"{path.stem}-{panel['id']}{target['refId']}"))
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_template_variables_list_the_simulated_site(stretch: Stretch, path: Path) -> None:
    values = variable_values(stretch, load(path))
    assert values["site"] == [stretch.site]


@pytest.mark.parametrize(("path", "panel_id", "ref"), targets())
def test_panel_query_returns_rows(stretch: Stretch, path: Path, panel_id: int, ref: str) -> None:
    dashboard = load(path)
    panel = next(p for p in dashboard["panels"] if p["id"] == panel_id)
    target = next(t for t in panel["targets"] if t["refId"] == ref)
    values = variable_values(stretch, dashboard)
    interval = panel.get("interval", DEFAULT_INTERVAL)
    if target["datasource"]["type"] in INFLUX_TYPES:
        query = fill_influxql(target["query"], values, interval)
        series = influxql(stretch, query)
        rows = [row for s in series for row in s["values"] if any(v is not None for v in row[1:])]
        assert rows, f"{panel['title']}: no rows for {query}"
        for s in series:  # nothing of another site leaks in
            assert s.get("tags", {}).get("site", stretch.site) == stretch.site
            if "site" in s["columns"]:
                assert {row[s["columns"].index("site")] for row in s["values"]} == {stretch.site}
    else:
        query = fill_sql(target["rawSql"], values, interval)
        columns, table = sql(stretch, query)
        filled = [row for row in table if any(v is not None for v in row[1:] or row)]
        assert filled, f"{panel['title']}: no rows for {query}"
        if target["format"] == "time_series":
            assert columns[0] == "time" and "value" in columns, columns


# --- a few figures checked against the truth ----------------------------------------------------


def test_ticket_figures_agree_with_the_ticket_table(stretch: Stretch) -> None:
    dashboard = load(DASHBOARDS / "tickets-sla.json")
    values = variable_values(stretch, dashboard)
    panel = {p["id"]: p for p in dashboard["panels"]}

    def one(panel_id: int) -> Any:
        _columns, rows = sql(stretch, fill_sql(panel[panel_id]["targets"][0]["rawSql"], values, DEFAULT_INTERVAL))
        (row,) = rows
        return row[0]

    _columns, opened = sql(stretch, "SELECT opened_at FROM tickets")
    assert one(4) == sum(RANGE[0] <= at <= RANGE[1] for (at,) in opened) > 0
    # two tickets worked on: the first acknowledged in time, the second late; only the first fixed
    _columns, rows = sql(stretch, "SELECT count(*) FILTER (WHERE acknowledged_at IS NOT NULL), count(*) FILTER "
                                  "(WHERE resolved_at IS NOT NULL) FROM tickets")
    assert rows == [(2, 1)]
    on_time = float(one(5))
    assert 0 < on_time < 100
    assert float(one(6)) == 100.0  # the one fixed was fixed by its deadline; the others are not due yet


def test_streetlight_power_sums_the_lights(stretch: Stretch) -> None:
    """The circuit panel's stacked sums add up to the per-light means it is built from."""
    dashboard = load(DASHBOARDS / "streetlight-power.json")
    values = variable_values(stretch, dashboard)
    circuit_query = next(p for p in dashboard["panels"] if p["id"] == 5)["targets"][0]["query"]
    by_circuit = influxql(stretch, fill_influxql(circuit_query, values, "10m"))
    lights = influxql(stretch, fill_influxql(
        'SELECT mean("power_w") FROM "streetlight" WHERE ("site" =~ /^$site$/) AND $timeFilter '
        'GROUP BY time($__interval), "device"', values, "10m"))
    total_lights: dict[Any, float] = {}
    for s in lights:
        for at, value in s["values"]:
            if value is not None:
                total_lights[at] = total_lights.get(at, 0.0) + value
    total_circuits: dict[Any, float] = {}
    for s in by_circuit:
        for at, value in s["values"]:
            if value is not None:
                total_circuits[at] = total_circuits.get(at, 0.0) + value
    assert total_lights and total_lights.keys() == total_circuits.keys()
    for at, watts in total_lights.items():
        assert total_circuits[at] == pytest.approx(watts, rel=1e-9), at
    # the storm's circuit outage shows: C3's lights (controllers included) are silent for 20 minutes
    buckets = {s["tags"]["circuit"]: sum(v is not None for _at, v in s["values"]) for s in by_circuit}
    assert buckets["C3"] < max(buckets.values()), buckets
