"""The API under attack, on SQLite and PostgreSQL (docs/security.md): walked from the app itself, so a
new route is attacked as soon as it exists.

- every private route refuses a missing, malformed, expired or forged token with 401;
- an account of one site cannot change anything of another site through any route of the
  permission matrix (``docs/permissions.md``; ``test_permissions`` walks the roles within a site);
- the public routes and the public event stream carry nothing private: no people, contacts, notes,
  reasons, titles or tokens, and one resident's report never shows another's words;
- classic SQL injection in every query parameter of every GET route changes nothing (the whole
  database is compared before and after), answers 4xx or an empty list, never 500;
- the residents' rate limit is shared by reports and hazards and refuses before reading the body.
"""

from __future__ import annotations

import base64
import io
import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import inspect, select, text

from api.security import create_access_token
from integration.test_api import NOW, Api
from integration.test_permissions import MATRIX, Form, tiny_jpeg
from integration.test_sse import SECRET, ServedApi, SseEvent, SseReader, private_keys
from linli.clock import ManualClock
from linli.settings import Settings
from linli.site import builtin_site_path
from linli.storage import Database, ResidentReport

# Routes anyone may call: sign-in, health, and what residents see.
PUBLIC = re.compile(r"^/(healthz|api/v1/auth/token|api/v1/public/.*)$")
# Endless streams: called with bad tokens only (a good one would never end in the in-process client).
STREAMS = {"/api/v1/events"}
PATH_VALUES = {"ticket_id": "1", "device_id": "SL-01", "window_id": "1", "username": "admin", "command_id": "c1",
               "report_id": "r" * 24, "name": "x.jpg", "photo_id": "p1", "site_id": "wanmei"}
REQUIRED_QUERY = {"site": "wanmei", "month": "2026-10"}


def operations(api: Api) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every operation in the OpenAPI document."""
    paths: dict[str, dict[str, Any]] = api.client.get("/openapi.json").json()["paths"]
    return [(method.upper(), path, op) for path, ops in paths.items() for method, op in ops.items()]


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), "x"), path)


def private_operations(api: Api) -> list[tuple[str, str]]:
    found = [(method, path) for method, path, _ in operations(api) if not PUBLIC.match(path)]
    assert len(found) >= 35, found  # the walk really walks
    return found


# ---------------------------------------------------------------- tokens


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def bad_tokens(api: Api) -> dict[str, str]:
    """What a client may present instead of a valid token, by name."""
    key = api.settings.secret_key
    now = int(time.time())
    viewer = create_access_token("vw-sec", api.settings).token
    header, _payload, signature = viewer.split(".")
    return {
        "not a JWT": "not-a-jwt",
        "another secret": jwt.encode({"sub": "admin", "exp": now + 3600}, "another-secret-" * 3, algorithm="HS256"),
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'sub': 'admin', 'exp': now + 3600})}.",
        "HS512 with our secret": jwt.encode({"sub": "admin", "exp": now + 3600}, key, algorithm="HS512"),
        "expired": create_access_token("admin", api.settings, now=now - api.settings.token_ttl_min * 60 - 5).token,
        "payload swapped": f"{header}.{_b64({'sub': 'admin', 'exp': now + 3600})}.{signature}",
        "signature stripped": f"{header}.{_payload}.",
        "no exp": jwt.encode({"sub": "admin"}, key, algorithm="HS256"),
        "no sub": jwt.encode({"exp": now + 3600}, key, algorithm="HS256"),
        "sub not a string": jwt.encode({"sub": 42, "exp": now + 3600}, key, algorithm="HS256"),
        "unknown account": create_access_token("nobody-here", api.settings).token,
        "disabled account": create_access_token("gone-sec", api.settings).token,
    }


def test_every_private_route_refuses_missing_and_forged_tokens_with_401(api: Api) -> None:
    api.user("vw-sec", "viewer")
    api.user("gone-sec", "manager")
    disabled = api.client.post("/api/v1/users/gone-sec/disable", headers=api.admin)
    assert disabled.status_code == 200, disabled.text
    tokens = bad_tokens(api)
    assert api.client.get("/api/v1/auth/me", headers=api.headers("vw-sec")).status_code == 200  # the base is good
    credentials: dict[str, dict[str, str]] = {
        "no header": {}, "empty bearer": {"Authorization": "Bearer "}, "basic": {"Authorization": "Basic YWRtaW46eA=="},
        **{name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()},
    }
    wrong: list[str] = []
    for method, path in private_operations(api):
        url = concrete(path)
        for name, headers in credentials.items():
            answer = api.client.request(method, url, params=REQUIRED_QUERY, headers=headers, json={})
            if answer.status_code != 401 or answer.headers.get("www-authenticate") != "Bearer":
                wrong.append(f"{method} {path} with {name}: {answer.status_code} {answer.text[:120]}")
            elif any(token in answer.text for token in tokens.values()):
                wrong.append(f"{method} {path} with {name}: the answer repeats the token")
        if path in STREAMS:  # EventSource sends the token in the query
            for name, token in tokens.items():
                answer = api.client.get(url, params={"token": token})
                if answer.status_code != 401:
                    wrong.append(f"GET {path}?token= {name}: {answer.status_code}")
    assert wrong == [], "\n".join(wrong)


def test_the_routes_without_an_account_are_exactly_the_public_ones(api: Api) -> None:
    """An operation that declares no security must be one of the public routes or the token-in-query
    stream; anything else would be a private route someone forgot to protect."""
    unsecured = {(m, p) for m, p, op in operations(api) if not op.get("security")}
    assert {(m, p) for m, p in unsecured if not PUBLIC.match(p) and p not in STREAMS} == set()
    pages = [route for route in api.client.app.routes if getattr(route, "include_in_schema", True) is False]  # type: ignore[attr-defined]
    for route in pages:  # the pages themselves hold no data: they fetch it with the signed-in user's token
        assert route.path in ("/", "/crew", "/tech", "/manager", "/docs", "/docs/oauth2-redirect", "/redoc",
                              "/openapi.json"), route.path


def test_tokens_live_in_wall_clock_time_not_in_the_domain_clock(api: Api) -> None:
    """A demo clock running fast must not sign everyone out, and a frozen one must not keep a stolen
    token alive: moving the injected clock past the token's lifetime changes nothing; wall-clock expiry does."""
    fresh = api.admin
    api.clock.advance(api.settings.token_ttl_min * 60 * 3)
    assert api.client.get("/api/v1/auth/me", headers=fresh).status_code == 200
    issued_before = time.time() - api.settings.token_ttl_min * 60 - 1
    old = create_access_token("admin", api.settings, now=issued_before).token
    answer = api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {old}"})
    assert answer.status_code == 401 and "expired" in answer.json()["detail"]


# ---------------------------------------------------------------- another site's things


def snapshot(db: Database) -> dict[str, list[str]]:
    """Every row of every table, as text: equal snapshots mean nothing changed."""
    out: dict[str, list[str]] = {}
    with db.sessions() as session:
        for table in sorted(inspect(session.bind).get_table_names()):
            rows = session.execute(text(f'SELECT * FROM "{table}"')).all()  # table names from the schema itself
            out[table] = sorted(repr(tuple(row)) for row in rows)
    return out


def site_b_request(api: Api, method: str, path: str) -> tuple[str, dict[str, Any] | Form | None] | None:
    """(url, body) of `path` aimed at site B's things, or None for routes that name no site's thing."""
    def ticket() -> int:
        return api.ticket(f"b-place-{uuid.uuid4().hex[:6]}", "leakage", site="site-b", subject_type="place",
                          device_ids=(), teams=("property",))

    action = re.fullmatch(r"/api/v1/tickets/\{id\}/(\w+)", path)
    if action:
        bodies: dict[str, dict[str, Any]] = {
            "hold": {"reason": "r"}, "cancel": {"reason": "r"}, "resolve": {"note": "n"}, "comments": {"note": "n"},
            "assign": {"assignee": "b-tech"}}
        return f"/api/v1/tickets/{ticket()}/{action.group(1)}", bodies.get(action.group(1), {})
    if path == "/api/v1/tickets":
        return path, {"site": "site-b", "place": "b-gate", "title": "跨站"}
    if path == "/api/v1/uploads":  # a repair photo for site B's ticket
        return path, Form({"ticket_id": str(ticket())}, {"photo": ("b.jpg", tiny_jpeg(), "image/jpeg")})
    if path == "/api/v1/devices/{device_id}/commands":
        return "/api/v1/devices/SL-99/commands?site=site-b", {"action": "refresh"}
    if path == "/api/v1/maintenance":
        return path, {"site": "site-b", "subject": {"type": "device", "id": "SL-99"},
                      "ends_at": "2026-11-26T14:00:00+00:00", "reason": "跨站"}
    if path == "/api/v1/maintenance/{window_id}":
        created = api.client.post("/api/v1/maintenance", headers=api.admin, json={
            "site": "site-b", "subject": {"type": "circuit", "id": "CB1"}, "ends_at": "2026-11-26T14:00:00+00:00",
            "reason": "检修"})
        assert created.status_code == 201, created.text
        return f"/api/v1/maintenance/{created.json()['id']}", None
    if path == "/api/v1/reports/monthly/publish":
        return f"{path}?site=site-b&month=2026-10", None
    if path.startswith("/api/v1/users"):
        return None  # accounts belong to no site; only an admin changes them (test_permissions)
    raise AssertionError(f"{method} {path}: tell site_b_request how to aim it at site B")


def _send(api: Api, method: str, url: str, headers: dict[str, str], body: dict[str, Any] | Form | None) -> Any:
    if isinstance(body, Form):
        return api.client.request(method, url, headers=headers, data=body.data, files=body.files)
    return api.client.request(method, url, headers=headers, json=body)


def test_no_route_of_the_matrix_changes_another_sites_things(api: Api) -> None:
    api.user("b-tech", "technician", teams=("property",), sites=("site-b",))
    site_b_manager = api.user("b-boss", "manager", sites=("site-b",))
    actors = {"manager": api.user("a-boss", "manager"),
              "technician": api.user("a-tech", "technician", teams=("property", "charger_operator"))}
    wrong: list[str] = []
    for method, path in MATRIX:
        for role, headers in actors.items():
            aimed = site_b_request(api, method, path)
            if aimed is None:
                continue
            url, body = aimed
            before = snapshot(api.db)
            answer = _send(api, method, url, headers, body)
            if answer.status_code not in (403, 404, 422) or snapshot(api.db) != before:
                wrong.append(f"{role}: {method} {url}: {answer.status_code} {answer.text[:160]}")
        # the control: the same call by site B's own manager reaches its target (2xx, or 409 from the
        # ticket's state machine, or 503 with no broker), so the refusals above are about the site
        control = site_b_request(api, method, path)
        if control is not None:
            url, body = control
            answer = _send(api, method, url, site_b_manager, body)
            if answer.status_code in (401, 403, 404, 422):
                wrong.append(f"control: site B's manager: {method} {url}: {answer.status_code} {answer.text[:160]}")
    assert wrong == [], "\n".join(wrong)


# ---------------------------------------------------------------- SQL injection

PAYLOADS = (
    "' OR '1'='1", "' OR 1=1 --", '" OR ""="', "') OR ('1'='1", "1; DROP TABLE tickets; --",
    "wanmei'; DROP TABLE users; --", "' UNION SELECT username, password_hash FROM users --", "%' OR '%'='",
    "1' AND (SELECT COUNT(*) FROM users) > 0 --", "\\'; DELETE FROM tickets; --", "wanmei' --", "*/ OR 1=1 /*",
)


def listed(body: Any) -> list[Any] | None:
    """The list a 200 answer carries (a bare list or `items`), or None when it is not a list answer."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        items: list[Any] = body["items"]
        return items
    return None


def test_sql_injection_in_every_query_parameter_changes_nothing_and_finds_nothing(api: Api) -> None:
    api.state("SL-01")
    api.ticket("SL-01", "lamp_failure")
    api.user("zhang", "technician", teams=("property",))
    before = snapshot(api.db)
    tables = set(before)
    assert {"tickets", "users"} <= tables, tables
    calls = 0
    wrong: list[str] = []
    for method, path, op in operations(api):
        if method != "GET" or path in STREAMS or path == "/api/v1/public/events":
            continue
        params = [p for p in op.get("parameters", []) if p["in"] in ("query", "path")]
        for param in params:
            for payload in PAYLOADS:
                query = {k: v for k, v in REQUIRED_QUERY.items()
                         if any(p["name"] == k and p["in"] == "query" for p in params)}
                url = concrete(path)
                if param["in"] == "path":
                    url = concrete(path.replace("{" + param["name"] + "}", "@@"))
                    url = url.replace("@@", httpx.URL("", params={"": payload}).query.decode()[1:])
                else:
                    query[param["name"]] = payload
                answer = api.client.get(url, params=query, headers=api.admin)
                calls += 1
                if answer.status_code >= 500:
                    wrong.append(f"{path} {param['name']}={payload!r}: {answer.status_code}")
                elif answer.status_code == 200 and "json" in answer.headers.get("content-type", ""):
                    items = listed(answer.json())
                    if items:
                        wrong.append(f"{path} {param['name']}={payload!r}: 200 with {len(items)} rows")
    assert calls > 200
    assert wrong == [], "\n".join(wrong)
    assert snapshot(api.db) == before  # no row added, changed or deleted, every table still there


# ---------------------------------------------------------------- what the public sees

# Each goes into a field the public must never see; none may appear in any public answer or frame.
CONTACT_A, CONTACT_B = "13912345678", "王秘密 13800001111"
WORDS_B = "REPORT-B-OWN-WORDS-5e1a"  # another resident's description
SENTINELS = {
    "staff full name": "李保密员", "staff username": "secret-grid-zz", "comment": "INTERNAL-NOTE-7f3a",
    "hold reason": "HOLD-REASON-9c1d", "resolve note": "RESOLVE-NOTE-2b8e", "manual title": "TITLE-SECRET-4d2c",
    "manual description": "DESC-SECRET-6a0b", "cancel reason": "CANCEL-REASON-3e7f", "maintenance reason": "MAINT-SECRET-8d4c",
    "ack note": "ACK-NOTE-1f9e", "assign note": "ASSIGN-NOTE-0c5b", "command reason": "CMD-REASON-77aa",
}


@pytest.fixture
def served(mosquitto: Any, tmp_path: Any, database_url: str) -> Iterator[ServedApi]:
    settings = Settings(
        _env_file=None, data_dir=tmp_path, sites=str(builtin_site_path()), mqtt_url=mosquitto.url,
        tsdb_url=f"sqlite:///{tmp_path / 'ts.db'}", database_url=database_url, secret_key=SECRET,
        admin_password="admin-secret-for-tests", live_keepalive_s=0.3, live_ticket_poll_s=0.2,
    )
    api = ServedApi(settings, ManualClock(NOW))
    deadline = time.monotonic() + 15
    while not api.hub.ready():
        assert time.monotonic() < deadline, "the live hub did not subscribe"
        time.sleep(0.05)
    try:
        yield api
    finally:
        api.stop()


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


def test_public_answers_and_public_events_carry_nothing_private(served: ServedApi) -> None:
    def call(method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = httpx.request(method, served.url(path), headers=headers, timeout=15, **kwargs)
        assert answer.status_code < 300, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer

    admin = served.token("admin")
    residents = SseReader(served.url("/api/v1/public/events"), params={"site": "wanmei"})
    assert residents.status == 200
    try:
        call("POST", "/api/v1/users", admin, json={"username": SENTINELS["staff username"], "password": "grid-password-1",
                                                  "role": "grid_officer", "full_name": SENTINELS["staff full name"],
                                                  "sites": ["wanmei"]})
        manager = served.user("mgr-sec", "manager", sites=("wanmei",))
        report_a = call("POST", "/api/v1/public/reports", data={
            "site": "wanmei", "device_id": "SL-07", "category": "light_out", "description": "门口的灯不亮",
            "contact": CONTACT_A}, files=[("photos", ("a.png", _png(), "image/png"))]).json()
        report_b = call("POST", "/api/v1/public/reports", json={
            "site": "wanmei", "device_id": "SL-07", "category": "light_out", "description": WORDS_B,
            "contact": CONTACT_B}).json()
        ticket = report_a["ticket_id"]
        assert report_b["ticket_id"] == ticket
        path = f"/api/v1/tickets/{ticket}"
        call("POST", f"{path}/ack", manager, json={"note": SENTINELS["ack note"]})
        call("POST", f"{path}/assign", manager, json={"assignee": SENTINELS["staff username"],
                                                      "note": SENTINELS["assign note"]})
        call("POST", f"{path}/comments", manager, json={"note": SENTINELS["comment"]})
        call("POST", f"{path}/start", manager, json={})
        call("POST", f"{path}/hold", manager, json={"reason": SENTINELS["hold reason"]})
        call("POST", f"{path}/resume", manager, json={})
        call("POST", f"{path}/resolve", manager, json={"note": SENTINELS["resolve note"]})
        manual = call("POST", "/api/v1/tickets", manager, json={
            "site": "wanmei", "device_id": "SL-08", "title": SENTINELS["manual title"],
            "description": SENTINELS["manual description"], "teams": ["property"]}).json()
        call("POST", f"/api/v1/tickets/{manual['id']}/cancel", manager, json={"reason": SENTINELS["cancel reason"]})
        call("POST", "/api/v1/maintenance", manager, json={
            "site": "wanmei", "subject": {"type": "device", "id": "SL-09"}, "ends_at": "2026-11-26T14:00:00+00:00",
            "reason": SENTINELS["maintenance reason"]})
        residents.next(lambda e: e.event == "ticket" and e.data["id"] == manual["id"]
                       and e.data["status"] == "cancelled", "the cancelled manual ticket")
        # frames come in the order of the changes: the report's ticket was resolved before the cancel
        assert any(e.event == "ticket" and e.data["id"] == ticket and e.data["status"] == "resolved"
                   for e in residents.seen)
    finally:
        residents.close()
    frames: list[SseEvent] = residents.seen

    answers = {
        "sites": call("GET", "/api/v1/public/sites").text,
        "status": call("GET", "/api/v1/public/status", params={"site": "wanmei"}).text,
        "plan": call("GET", "/api/v1/public/plan", params={"site": "wanmei"}).text,
        "report A": call("GET", f"/api/v1/public/reports/{report_a['id']}").text,
        "report B": call("GET", f"/api/v1/public/reports/{report_b['id']}").text,
    }
    photo_url = json.loads(answers["report A"])["photos"][0]
    photo = call("GET", photo_url)
    assert photo.headers["content-type"] == "image/png" and photo.headers["x-content-type-options"] == "nosniff"
    secrets_ = {**SENTINELS, "contact A": CONTACT_A, "contact B": CONTACT_B, "admin token": admin,
                "manager token": manager, "password hash": "$argon2", "staff account": "mgr-sec"}
    leaks = [f"{where}: {what}" for where, body in [*answers.items(), *((f"frame {f.raw}", f.raw) for f in frames)]
             for what, value in secrets_.items() if value in body]
    leaks += [f"report A shows report B's words: {WORDS_B}"] if WORDS_B in answers["report A"] else []
    leaks += [f"{where}: {WORDS_B}" for where in ("status", "plan", "sites") if WORDS_B in answers[where]]
    leaks += [f"frame with keys {private_keys(f.data)}: {f.raw}" for f in frames if private_keys(f.data)]
    assert leaks == [], "\n".join(leaks)
    assert any(f.event == "ticket" for f in frames)  # the walk saw real frames
    assert all(f.data["site"] == "wanmei" for f in frames)


# ---------------------------------------------------------------- rate limits


def test_reports_and_hazards_share_one_budget_per_client_refused_before_the_body(api: Api) -> None:
    api.settings.report_limit_per_ip = 4
    report = {"site": "wanmei", "category": "other", "description": "路面坑洼"}
    hazard = {"site": "wanmei", "description": "井盖松动", "location": {"x": 100, "y": 100}}
    for _ in range(2):
        assert api.client.post("/api/v1/public/reports", json=report).status_code == 201
        answer = api.client.post("/api/v1/public/hazards", json=hazard)
        assert answer.status_code == 201, answer.text
    for path, body in (("/api/v1/public/reports", report), ("/api/v1/public/hazards", hazard)):
        assert api.client.post(path, json=body).status_code == 429
    # over the limit, a large body is not even read: 429, not 413
    big = api.client.post("/api/v1/public/reports", content=b"x" * (2 * 1024 * 1024),
                          headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert big.status_code == 429
    # bad requests do not use up a budget, but neither do they get past it
    other = TestClient(api.client.app, client=("198.51.100.77", 50000))
    for _ in range(10):
        assert other.post("/api/v1/public/reports", json={"site": "wanmei"}).status_code == 422
    assert other.post("/api/v1/public/reports", json=report).status_code == 201
    with api.db.sessions() as session:
        assert len(session.scalars(select(ResidentReport)).all()) == 5
