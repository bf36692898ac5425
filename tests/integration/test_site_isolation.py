"""Site isolation across every GET route: an account of site A never sees site B's data.

Two sites with the same device ids (site B is the Wanmei site file under another id, plus a device of
its own), data in both (live state, tickets, a telemetry point, a maintenance window, a command, a
resident's report with a photo, a dead letter, an account). Then an account of each role below admin,
scoped to site A, calls every GET route of the app (walked from ``app.routes``) with the ids of site
B's objects, and must get 404, 403, or an answer without anything of site B. A new GET route fails
`test_every_get_route_is_walked` until it is added to ``CALLS`` (or to a list of routes without an
account's data).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from PIL import Image

from api import create_app
from integration.test_api import ADMIN_PASSWORD, NOW, Api
from linli.clock import ManualClock, to_ms
from linli.settings import Settings
from linli.site import builtin_site_path
from linli.storage import Database, DeadLetter
from linli.tickets import EventType
from linli.tsdb import Point, open_store

A, B = "wanmei", "site-b"
SECRET = "SECRET-OF-B"  # written into site B's data wherever text goes
SECRET_READING = 4242.5  # site B's telemetry
ROLES = ("manager", "technician", "grid_officer", "viewer")

# Routes that show no account's data: documentation, static pages, and the public routes, which are
# public by design (what residents may see of every site; ``test_public_reports`` and ``test_sse``
# check what they leave out).
NO_ACCOUNT_DATA = {
    "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/", "/crew", "/tech", "/manager", "/healthz",
    "/api/v1/public/sites", "/api/v1/public/status", "/api/v1/public/plan", "/api/v1/public/reports/{report_id}",
    "/api/v1/public/reports/{report_id}/photos/{name}", "/api/v1/public/events",
}
# Endless Server-Sent Events: the in-process client cannot read them; test_sse walks their isolation
# (test_a_user_of_one_site_gets_nothing_of_another) with a served API.
STREAMS = {"/api/v1/events"}


def get_routes(routes: list[Any], prefix: str = "") -> Iterator[str]:
    """Paths of every GET route, through included routers."""
    for route in routes:
        if isinstance(route, APIRoute) or (hasattr(route, "methods") and hasattr(route, "path")):
            if "GET" in (route.methods or ()):
                yield prefix + route.path
        elif hasattr(route, "original_router"):  # FastAPI's included router
            yield from get_routes(route.original_router.routes, prefix + route.include_context.prefix)


@dataclass
class SiteB:
    """Ids of site B's objects."""

    ticket: int
    place_ticket: int
    window: int
    command: str
    report: str
    photo: str


# path -> the URLs to call it with, given site B's ids
CALLS: dict[str, Callable[[SiteB], list[str]]] = {
    "/api/v1/auth/me": lambda b: ["/api/v1/auth/me"],
    "/api/v1/devices": lambda b: ["/api/v1/devices?limit=1000", f"/api/v1/devices?site={B}",
                                  "/api/v1/devices?health=fault&limit=1000"],
    "/api/v1/devices/{device_id}": lambda b: [
        "/api/v1/devices/SL-07", f"/api/v1/devices/SL-07?site={B}", "/api/v1/devices/SL-B1"],
    "/api/v1/devices/{device_id}/lifecycle": lambda b: [
        "/api/v1/devices/SL-07/lifecycle", f"/api/v1/devices/SL-07/lifecycle?site={B}",
        "/api/v1/devices/SL-B1/lifecycle"],
    "/api/v1/devices/{device_id}/telemetry": lambda b: [
        "/api/v1/devices/SL-07/telemetry?field=power_w", f"/api/v1/devices/SL-07/telemetry?site={B}&field=power_w",
        "/api/v1/devices/SL-B1/telemetry"],
    "/api/v1/devices/{device_id}/commands": lambda b: [
        "/api/v1/devices/SL-07/commands", f"/api/v1/devices/SL-07/commands?site={B}", "/api/v1/devices/SL-B1/commands"],
    "/api/v1/commands/{command_id}": lambda b: [f"/api/v1/commands/{b.command}"],
    "/api/v1/tickets": lambda b: [
        "/api/v1/tickets?limit=500", f"/api/v1/tickets?site={B}", "/api/v1/tickets?device_id=SL-07",
        "/api/v1/tickets?fault=lamp_failure", "/api/v1/tickets?team=grid&limit=500"],
    "/api/v1/tickets/{ticket_id}": lambda b: [f"/api/v1/tickets/{b.ticket}", f"/api/v1/tickets/{b.place_ticket}"],
    "/api/v1/dead-letters": lambda b: ["/api/v1/dead-letters", f"/api/v1/dead-letters?site={B}"],
    "/api/v1/maintenance": lambda b: ["/api/v1/maintenance", f"/api/v1/maintenance?site={B}",
                                      "/api/v1/maintenance?active=true"],
    "/api/v1/users": lambda b: ["/api/v1/users", f"/api/v1/users?site={B}"],
    "/api/v1/users/{username}": lambda b: ["/api/v1/users/b-manager"],
    "/api/v1/teams": lambda b: ["/api/v1/teams", f"/api/v1/teams?site={B}"],
    "/api/v1/reports/monthly": lambda b: [
        f"/api/v1/reports/monthly?site={B}&month=2026-11", f"/api/v1/reports/monthly?site={B}&month=2026-11&format=csv"],
    "/api/v1/reports/sla": lambda b: [f"/api/v1/reports/sla?site={B}", f"/api/v1/reports/sla?site={B}&bucket=day"],
    "/api/v1/resident-reports": lambda b: [
        "/api/v1/resident-reports", f"/api/v1/resident-reports?site={B}", f"/api/v1/resident-reports?ticket_id={b.ticket}"],
    "/api/v1/uploads/reports/{report_id}/{name}": lambda b: [f"/api/v1/uploads/reports/{b.report}/{b.photo}"],
    "/api/v1/tickets/{ticket_id}/photos/{photo_id}": lambda b: [f"/api/v1/tickets/{b.ticket}/photos/{'0' * 32}-jpg"],
    "/api/v1/sites/{site_id}/plan": lambda b: [f"/api/v1/sites/{B}/plan"],
}


@pytest.fixture
def two_sites(database_url: str, tmp_path: Path, mosquitto: Any) -> Iterator[Api]:
    document = yaml.safe_load(builtin_site_path().read_text(encoding="utf-8"))
    document["site"]["id"] = B
    document["site"]["name"] = "乙社区"
    extra = dict(next(d for d in document["devices"] if d["id"] == "SL-07"), id="SL-B1", name="乙区独有的灯")
    document["devices"].append(extra)
    site_b = tmp_path / "site-b.yaml"
    site_b.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    settings = Settings(
        _env_file=None, env="development", data_dir=tmp_path, sites=f"{builtin_site_path()},{site_b}",
        database_url=database_url, tsdb_url=f"sqlite:///{tmp_path / 'ts.db'}", mqtt_url=mosquitto.url,  # commands go out
        secret_key="k" * 40, admin_password=ADMIN_PASSWORD, live_updates=False,
    )
    clock = ManualClock(NOW)
    with TestClient(create_app(settings, clock=clock)) as client:
        db = Database(settings.db_url)
        try:
            yield Api(client, db, settings, clock)
        finally:
            db.close()


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


def seed(api: Api) -> SiteB:
    """The same kinds of data in both sites; site B's carry the secret."""
    admin = api.admin
    for site, power in ((A, 11.5), (B, SECRET_READING)):
        api.state("SL-07", site=site, last={"relay": True, "power_w": power, "voltage_v": 230.0})
        api.state("SL-12", site=site, last={"relay": True, "power_w": 0.5, "voltage_v": 230.0})
    api.state("SL-B1", site=B, last={"relay": True, "power_w": SECRET_READING, "voltage_v": 230.0})
    store = open_store(api.settings.timeseries_url)
    try:
        for site, value in ((A, 11.5), (B, SECRET_READING)):
            store.write([Point("streetlight", {"site": site, "device": "SL-07"}, {"power_w": value},
                               to_ms(NOW - timedelta(minutes=5)))])
    finally:
        store.close()
    api.ticket("SL-12", "lamp_failure", site=A)
    ticket = api.ticket("SL-12", "lamp_failure", site=B)
    api.ticket("SL-B1", "lamp_failure", site=B)
    api.event(ticket, EventType.COMMENTED, "b-manager", f"{SECRET} note")
    place_ticket = api.ticket(f"{SECRET}-place", "leakage", site=B, subject_type="place", device_ids=())

    window = api.client.post("/api/v1/maintenance", headers=admin, json={
        "site": B, "subject": {"type": "device", "id": "SL-07"}, "ends_at": (NOW + timedelta(hours=2)).isoformat(),
        "reason": f"{SECRET} window"})
    assert window.status_code == 201, window.text
    api.client.post("/api/v1/maintenance", headers=admin, json={
        "site": A, "subject": {"type": "device", "id": "SL-07"}, "ends_at": (NOW + timedelta(hours=2)).isoformat(),
        "reason": "A's window"})
    command = api.client.post(f"/api/v1/devices/SL-07/commands?site={B}", headers=admin, json={"action": "refresh"})
    assert command.status_code == 202, command.text
    report = api.client.post("/api/v1/public/reports", data={
        "site": B, "device_id": "SL-07", "category": "light_out", "description": f"{SECRET} report",
        "contact": "13800000000"}, files={"photos": ("light.png", png(), "image/png")})
    assert report.status_code == 201, report.text
    report_id = report.json()["id"]
    photo = api.client.get(f"/api/v1/public/reports/{report_id}").json()["photos"][0].rsplit("/", 1)[1]
    account = api.client.post("/api/v1/users", headers=admin, json={
        "username": "b-manager", "password": "long-enough-pw", "role": "manager", "sites": [B], "full_name": SECRET})
    assert account.status_code == 201, account.text
    with api.db.session() as session:
        session.add(DeadLetter(received_at=NOW, reason="schema", detail=f"{SECRET} dead letter",
                               topic=f"estate/v1/{B}/streetlight/SL-07/telemetry", site=B, device_id="SL-07",
                               payload=SECRET.encode()))
    return SiteB(ticket=ticket, place_ticket=place_ticket, window=window.json()["id"],
                 command=command.json()["id"], report=report_id, photo=photo)


def test_every_get_route_is_walked(two_sites: Api) -> None:
    routes = set(get_routes(list(two_sites.client.app.routes)))  # type: ignore[attr-defined]
    assert "/api/v1/tickets/{ticket_id}" in routes  # the walk goes through included routers
    missing = routes - set(CALLS) - NO_ACCOUNT_DATA - STREAMS
    assert missing == set(), f"GET routes the site-isolation walk does not call: add them to CALLS: {sorted(missing)}"
    assert set(CALLS) | STREAMS <= routes, "CALLS names routes the app no longer has"


@pytest.mark.parametrize("role", ROLES)
def test_an_account_of_site_a_sees_nothing_of_site_b_on_any_route(two_sites: Api, role: str) -> None:
    api = two_sites
    b = seed(api)
    teams = ("property",) if role == "technician" else ()
    headers = api.user(f"a-{role.replace('_', '-')}", role, sites=(A,), teams=teams)
    # What the account may see of its own site shows (so the walk is not all refusals).
    own = api.client.get("/api/v1/tickets?device_id=SL-12", headers=headers)
    assert own.status_code == 200 and own.json()["total"] == 1, own.text
    assert api.client.get("/api/v1/devices/SL-07", headers=headers).json()["site"] == A

    leaks: list[str] = []
    answered = 0
    for path, urls in CALLS.items():
        for url in urls(b):
            response = api.client.get(url, headers=headers)
            text = response.text
            if response.status_code not in (200, 403, 404):
                leaks.append(f"{url}: unexpected {response.status_code} {text[:200]}")
                continue
            if response.status_code == 200:
                answered += 1
                if B in text or "乙社区" in text or str(SECRET_READING) in text or "SL-B1" in text:
                    leaks.append(f"{url} ({path}): site B in {text[:300]}")
            if SECRET in text or "13800000000" in text:
                leaks.append(f"{url} ({path}): site B's text in {text[:300]}")
            if response.status_code == 200 and response.headers.get("content-type", "").startswith("image/"):
                leaks.append(f"{url}: site B's photo served")
    assert leaks == []
    assert answered >= 10, "most of the walk was refused: it proves nothing"


def test_site_b_data_is_there_for_an_account_of_site_b(two_sites: Api) -> None:
    """The control: the same calls by site B's manager do show site B's data (the seed is real)."""
    api = two_sites
    b = seed(api)
    headers = api.headers("b-manager")
    shown = [url for path, urls in CALLS.items() for url in urls(b)
             if api.client.get(url, headers=headers).status_code == 200]
    assert f"/api/v1/tickets/{b.ticket}" in shown
    assert f"/api/v1/commands/{b.command}" in shown
    assert f"/api/v1/uploads/reports/{b.report}/{b.photo}" in shown
    assert f"/api/v1/sites/{B}/plan" in shown
    telemetry = api.client.get(f"/api/v1/devices/SL-07/telemetry?site={B}&field=power_w", headers=headers).json()
    assert [p["value"] for p in telemetry["points"]] == [SECRET_READING]
    windows = api.client.get(f"/api/v1/maintenance?site={B}", headers=headers).text
    assert SECRET in windows
    assert re.search(SECRET, api.client.get(f"/api/v1/tickets/{b.ticket}", headers=headers).text)
