"""Property-based run of schemathesis against the app's own `/openapi.json` (issue 7).

The app runs in-process (ASGI) with its real lifespan: two site files, migrations, SQLite or the
real PostgreSQL, a SQLite time-series store and the real Mosquitto (so commands are really
published). Every operation but the endless Server-Sent Events streams is called with generated
input (valid and invalid), once as an admin and once as a technician, and every answer must:
not be a 5xx; have a status code the operation declares; have a declared content type; match the
declared schema of that status. Examples are capped (20 per operation and phase) so the whole module
fits CI: about 40 s per database on 2 cores.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import servers  # tests/ is on sys.path (the rootdir conftest's folder)
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.python import asgi as schemathesis_asgi

from api import create_app
from integration.test_api import api_settings
from linli.clock import ManualClock
from linli.settings import Settings

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ADMIN_PASSWORD = "admin-secret-for-fuzzing"
TECH_PASSWORD = "tech-secret-for-fuzzing"
# The accounts the run acts as: generated account edits are pointed at a spare account instead, so
# that a fuzzed `disable` or password change cannot lock the run out halfway.
ACTORS = {"admin": ADMIN_PASSWORD, "fuzz-tech": TECH_PASSWORD}
SPARE_ACCOUNT = "fuzz-spare"
MAX_EXAMPLES = 20
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance]
SSE_PATHS = r"/events$"  # /api/v1/events and /api/v1/public/events never end: not for a request/response fuzzer

@dataclass
class FuzzedApi:
    app: Any
    tokens: dict[str, str]  # actor -> bearer token


def _settings(tmp_path: Path, database_url: str, mqtt_url: str) -> Settings:
    return api_settings(tmp_path, database_url, mqtt_url=mqtt_url, admin_password=ADMIN_PASSWORD)


def _is_event_stream(ctx: Any) -> bool:
    """Any operation that answers `text/event-stream` (whatever its path) is left out."""
    responses = ctx.operation.definition.raw.get("responses", {})
    return any("text/event-stream" in (answer.get("content") or {}) for answer in responses.values())


# The schema the app serves at /openapi.json, built at collection time (no lifespan needed for it) so that
# each operation is a test item of its own; the fixture checks the running app serves exactly this.
with tempfile.TemporaryDirectory(prefix="linli-openapi-") as _scratch:
    OPENAPI = create_app(_settings(Path(_scratch), "sqlite://", "mqtt://127.0.0.1:1")).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI).exclude(path_regex=SSE_PATHS).exclude(func=_is_event_stream)


def _seed(client: Any) -> dict[str, str]:
    """Accounts, tokens and a little of everything, through the API itself, so the generated ids meet
    existing rows now and then (ticket 1, the report, command and window ids are in the data)."""

    def ok(response: Any, *expected: int) -> Any:
        assert response.status_code in expected, f"{response.request.method} {response.request.url}: {response.text}"
        return response.json()

    def token(username: str, password: str) -> str:
        body = ok(client.post("/api/v1/auth/token", data={"username": username, "password": password}), 200)
        return str(body["access_token"])

    tokens = {"admin": token("admin", ADMIN_PASSWORD)}
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    for username, role, teams in (("fuzz-tech", "technician", ["property"]), (SPARE_ACCOUNT, "manager", [])):
        ok(client.post("/api/v1/users", headers=admin, json={
            "username": username, "password": ACTORS.get(username, secrets.token_hex(8)), "role": role,
            "teams": teams, "sites": ["wanmei"],
        }), 201)
    tokens["technician"] = token("fuzz-tech", TECH_PASSWORD)

    ok(client.post("/api/v1/tickets", headers=admin, json={
        "site": "wanmei", "device_id": "SL-07", "fault": "lamp_failure", "description": "巡查发现不亮",
    }), 201)
    ok(client.post("/api/v1/tickets", headers=admin, json={
        "site": "wanmei", "place": "中心广场", "title": "井盖松动", "severity": "P2", "teams": ["property"],
    }), 201)
    ok(client.post("/api/v1/public/reports", json={
        "site": "wanmei", "category": "other", "description": "3栋门口积水", "location": {"x": 100, "y": 120},
    }), 201)
    ok(client.post("/api/v1/maintenance", headers=admin, json={
        "site": "wanmei", "subject": {"type": "circuit", "id": "C1"}, "ends_at": "2026-11-27T05:00:00Z", "reason": "换电缆",
    }), 201)
    ok(client.post("/api/v1/devices/SL-07/commands?site=wanmei", headers=admin, json={"action": "refresh"}), 202)
    return tokens


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzzed_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, mosquitto: servers.MosquittoServer,
) -> Iterator[FuzzedApi]:
    tmp_path = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    drop = None
    if request.param == "sqlite":
        database_url = f"sqlite:///{tmp_path / 'linli.db'}"
    else:
        postgres: servers.PostgresServer = request.getfixturevalue("postgres_server")
        name = f"linli_fuzz_{secrets.token_hex(6)}"
        postgres.create_database(name)
        database_url, drop = postgres.database_url(name), lambda: postgres.drop_database(name)
    app = create_app(_settings(tmp_path, database_url, mosquitto.url), clock=ManualClock(NOW))
    try:
        # The first request starts the app's lifespan; schemathesis keeps it running for the cases' requests.
        with schemathesis_asgi.get_client(app) as client:
            assert client.get("/openapi.json").json() == OPENAPI
            tokens = _seed(client)
        yield FuzzedApi(app, tokens)
    finally:
        schemathesis_asgi.shutdown_lifespans()  # closes the database and the store before it is dropped
        if drop is not None:
            drop()


def _spare_the_actors(case: schemathesis.Case) -> None:
    username = (case.path_parameters or {}).get("username")
    if case.operation.path.startswith("/api/v1/users/{username}") and case.method != "GET" and username in ACTORS:
        case.path_parameters = {**(case.path_parameters or {}), "username": SPARE_ACCOUNT}


def _call_and_validate(case: schemathesis.Case, fuzzed_api: FuzzedApi, actor: str) -> None:
    _spare_the_actors(case)
    case.call_and_validate(app=fuzzed_api.app, headers={"Authorization": f"Bearer {fuzzed_api.tokens[actor]}"},
                           checks=CHECKS)


FUZZ_SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@schema.parametrize()
@FUZZ_SETTINGS
def test_as_admin_no_server_error_and_every_answer_as_declared(case: schemathesis.Case, fuzzed_api: FuzzedApi) -> None:
    """An admin reaches every route of every site."""
    _call_and_validate(case, fuzzed_api, "admin")


@schema.parametrize()
@FUZZ_SETTINGS
def test_as_technician_no_server_error_and_every_answer_as_declared(case: schemathesis.Case, fuzzed_api: FuzzedApi) -> None:
    """A technician of one team and one site meets the role, team and site refusals."""
    _call_and_validate(case, fuzzed_api, "technician")


def test_the_fuzzed_schema_leaves_out_only_the_event_streams() -> None:
    """The exclusions are narrow: every other operation is fuzzed, and no event stream is."""
    every = {(method.upper(), path) for path, item in OPENAPI["paths"].items() for method in item}
    kept = {(op.method.upper(), op.path) for op in (result.ok() for result in schema.get_all_operations())}
    assert ("POST", "/api/v1/tickets/{ticket_id}/resolve") in kept
    assert ("POST", "/api/v1/public/reports") in kept
    streams = {("GET", "/api/v1/events"), ("GET", "/api/v1/public/events")}
    assert every - kept == streams & every
    assert not streams & kept
