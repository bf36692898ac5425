"""The permission matrix of ``docs/permissions.md``, walked: every role against every route that changes
something, on SQLite and PostgreSQL, expecting exactly what the table says (403, or success). The test
reads the table itself, so the documentation and the behaviour cannot drift apart."""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from integration.test_api import NOW, Api
from linli.tickets import EventType

DOC = Path(__file__).resolve().parents[2] / "docs" / "permissions.md"
ROLES = ("admin", "manager", "technician", "grid_officer", "viewer")
CELLS = {"yes", "no", "own teams"}
UNCHANGING = {"GET", "HEAD", "OPTIONS"}
NEEDS_NO_ACCOUNT = re.compile(r"^/api/v1/(public/|auth/token$)")


def matrix() -> dict[tuple[str, str], dict[str, str]]:
    """(method, path) -> role -> cell, from the table between the permission-matrix markers."""
    text = DOC.read_text(encoding="utf-8")
    table = text.split("<!-- permission-matrix -->", 1)[1].split("<!-- /permission-matrix -->", 1)[0]
    rows = [line for line in table.strip().splitlines()[2:] if line.startswith("|")]
    out: dict[tuple[str, str], dict[str, str]] = {}
    for line in rows:
        route, *cells = (cell.strip() for cell in line.strip().strip("|").split("|"))
        method, path = route.strip("`").split(" ", 1)
        assert len(cells) == len(ROLES) and set(cells) <= CELLS, f"bad row in {DOC.name}: {line}"
        out[(method, path)] = dict(zip(ROLES, cells, strict=True))
    return out


MATRIX = matrix()


def test_every_route_that_changes_something_is_in_the_matrix(api: Api) -> None:
    paths: dict[str, dict[str, Any]] = api.client.get("/openapi.json").json()["paths"]
    changing = {
        (method.upper(), path)
        for path, operations in paths.items()
        if not NEEDS_NO_ACCOUNT.match(path)
        for method in operations
        if method.upper() not in UNCHANGING
    }
    documented = {(method, re.sub(r"\{id\}", "{ticket_id}", path)) for method, path in MATRIX}
    assert changing - documented == set(), f"routes missing from {DOC.name}"
    assert documented - changing == set(), f"{DOC.name} names routes the API does not have"


# ---------------------------------------------------------------- the walk


class Walk:
    """Fresh things to act on for each call, so every allowed call can succeed."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.count = itertools.count(1)
        self.headers = {
            "admin": api.admin,
            "manager": api.user("boss", "manager"),
            "technician": api.user("tech", "technician", teams=("property",)),
            "technician/other": api.user("tech-other", "technician", teams=("elevator_contractor",)),
            "grid_officer": api.user("grid", "grid_officer"),
            "viewer": api.user("owner", "viewer"),
        }
        self.usernames = {"admin": "admin", "manager": "boss", "technician": "tech", "technician/other": "tech-other",
                          "grid_officer": "grid", "viewer": "owner"}

    def ticket(self, state: str, teams: tuple[str, ...]) -> int:
        ticket_id = self.api.ticket(f"place-{next(self.count)}", "leakage", subject_type="place", device_ids=(),
                                    teams=teams)
        steps = {"open": [], "in_progress": [EventType.STARTED], "on_hold": [EventType.STARTED, EventType.HELD],
                 "resolved": [EventType.STARTED, EventType.RESOLVED]}[state]
        for step in steps:
            self.api.event(ticket_id, step, "someone", "reason")
        return ticket_id


TICKET_ACTIONS: dict[str, tuple[str, Callable[[str], dict[str, Any] | None]]] = {
    "ack": ("open", lambda actor: None),
    "start": ("open", lambda actor: None),
    "hold": ("in_progress", lambda actor: {"reason": "等待备件"}),
    "resume": ("on_hold", lambda actor: None),
    "resolve": ("in_progress", lambda actor: {"note": "fixed", "photos": ["u_1"]}),
    "comments": ("open", lambda actor: {"note": "看过了"}),
    "assign": ("open", lambda actor: {"assignee": actor if actor in ("tech", "grid") else "tech"}),
    "cancel": ("open", lambda actor: {"reason": "误报"}),
    "close": ("resolved", lambda actor: None),
}


@dataclass(frozen=True)
class Form:
    """A multipart body (the photo upload), where the other routes take JSON."""

    data: dict[str, str]
    files: dict[str, tuple[str, bytes, str]]


def tiny_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(out, "JPEG")
    return out.getvalue()


def request_for(walk: Walk, method: str, path: str, who: str,
                in_team: bool) -> tuple[str, str, dict[str, Any] | Form | None]:
    """(method, url, body) of one call of `path` by `who`, on something fresh to act on."""
    api, n = walk.api, next(walk.count)
    actor = walk.usernames[who]
    action = re.fullmatch(r"/api/v1/tickets/\{id\}/(\w+)", path)
    if action:
        state, body = TICKET_ACTIONS[action.group(1)]
        # in team: the ticket is the technician's (property) and the grid officer's (grid); out of team:
        # a contractor technician, and a ticket without the grid team
        teams = ("property", "grid") if in_team or who.startswith("technician") else ("property",)
        return method, f"/api/v1/tickets/{walk.ticket(state, teams)}/{action.group(1)}", body(actor)
    if path == "/api/v1/tickets":
        return method, path, {"site": "wanmei", "place": f"new-place-{n}", "title": "井盖松动"}
    if path == "/api/v1/uploads":  # a photo of the repair, on a ticket in progress (teams as for the actions)
        teams = ("property", "grid") if in_team or who.startswith("technician") else ("property",)
        ticket = walk.ticket("in_progress", teams)
        return method, path, Form({"ticket_id": str(ticket)}, {"photo": ("fixed.jpg", tiny_jpeg(), "image/jpeg")})
    if path == "/api/v1/devices/{device_id}/commands":
        return method, "/api/v1/devices/SL-01/commands?site=wanmei", {"action": "refresh"}
    if path == "/api/v1/maintenance":
        return method, path, {"site": "wanmei", "subject": {"type": "device", "id": f"SL-{n % 40 + 1:02d}"},
                              "ends_at": (NOW + timedelta(hours=2)).isoformat(), "reason": "检修"}
    if path == "/api/v1/maintenance/{window_id}":
        created = api.client.post("/api/v1/maintenance", headers=api.admin, json={
            "site": "wanmei", "subject": {"type": "circuit", "id": "C1"},
            "ends_at": (NOW + timedelta(hours=2)).isoformat(), "reason": "检修"})
        assert created.status_code == 201, created.text
        return method, f"/api/v1/maintenance/{created.json()['id']}", None
    if path == "/api/v1/reports/monthly/publish":
        year, month = divmod(2026 * 12 - n, 12)  # a different past month each call: one publication each
        return method, f"{path}?site=wanmei&month={year}-{month + 1:02d}", None
    if path == "/api/v1/users":
        return method, path, {"username": f"new-{n}", "password": "long-enough-pw", "role": "viewer", "sites": ["wanmei"]}
    target = f"target-{n}"
    api.user(target, "viewer")
    if path == "/api/v1/users/{username}":
        return method, f"/api/v1/users/{target}", {"full_name": "改名"}
    if path == "/api/v1/users/{username}/disable":
        return method, f"/api/v1/users/{target}/disable", None
    raise AssertionError(f"test_permissions does not know how to call {method} {path}: add it to request_for")


def test_every_role_against_every_route_is_exactly_the_matrix(api: Api, mosquitto: Any) -> None:
    api.settings.mqtt_url = mosquitto.url  # commands really go out
    walk = Walk(api)
    expected: dict[tuple[str, str, str], str] = {}
    actual: dict[tuple[str, str, str], str] = {}
    for (method, path), cells in MATRIX.items():
        for role, cell in cells.items():
            variants = [(role, True, "yes"), ("technician/other" if role == "technician" else role, False, "no")] \
                if cell == "own teams" else [(role, True, cell)]
            for who, in_team, want in variants:
                key = (f"{method} {path}", who, "in team" if in_team else "other team")
                verb, url, body = request_for(walk, method, path, who, in_team)
                if isinstance(body, Form):
                    response = api.client.request(verb, url, headers=walk.headers[who], data=body.data,
                                                  files=body.files)
                else:
                    response = api.client.request(verb, url, headers=walk.headers[who], json=body)
                expected[key] = want
                if response.status_code in (200, 201, 202):
                    actual[key] = "yes"
                elif response.status_code == 403:
                    actual[key] = "no"
                else:
                    actual[key] = f"{response.status_code}: {response.text[:200]}"
    wrong = {key: (expected[key], actual[key]) for key in expected if expected[key] != actual[key]}
    assert wrong == {}, "\n".join(f"{k}: expected {e}, got {a}" for k, (e, a) in wrong.items())
    assert len(expected) >= 5 * len(MATRIX)


@pytest.mark.parametrize("role", ROLES)
def test_signed_out_calls_change_nothing(api: Api, role: str) -> None:
    for method, path in MATRIX:
        url = path.replace("{id}", "1").replace("{device_id}", "SL-01").replace("{window_id}", "1").replace(
            "{username}", "admin")
        assert api.client.request(method, url, json={}).status_code == 401, (method, path)
