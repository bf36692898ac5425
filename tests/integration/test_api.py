"""HTTP API v1 against SQLite and PostgreSQL: every test runs on both databases.

The app runs in-process (TestClient) with its real lifespan: sites from two site files
(the built-in Wanmei site and `site-b`, both with an `SL-07`), migrations, the database,
and a SQLite time-series store. Live state and tickets are seeded through the storage layer,
as the gateway writes them.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api import create_app
from api.security import create_access_token
from api.ticket_actions import acknowledge
from linli.catalog import FAULTS
from linli.clock import ManualClock, to_ms
from linli.settings import Settings
from linli.site import builtin_site_path
from linli.storage import Database, DeadLetter, DeviceState, TicketRow
from linli.storage.tickets import StaleTicket, append_event
from linli.storage.users import create_user, get_user, verify_password
from linli.tickets import EventType, TicketEvent
from linli.tsdb import Point, open_store

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ADMIN_PASSWORD = "admin-secret-for-tests"
BOTH_SITES = ["wanmei", "site-b"]
TICKET_FIELDS = {
    "id", "site", "subject", "device_id", "device_ids", "fault", "severity", "teams", "acks", "assignee",
    "status", "source", "opened_at", "ack_due_at", "start_due_at", "resolve_due_at", "acknowledged_at",
    "acknowledged_by", "resolved_at", "closed_at", "parent_id", "signal_cleared_at", "reopen_count", "history",
    "title", "fault_name", "version",
}
DEVICE_FIELDS = {
    "id", "site", "kind", "name", "location", "online", "health", "last_seen", "last", "open_tickets",
    "inactive_detectors", "lamp_age_hours", "lamp_replaced_at", "energy_baseline_since",
}

SITE_B = """\
site:
  id: site-b
  name: 乙社区
  name_en: Site B
  coordinates: {latitude: 26.0, longitude: 119.2}
plan: {width: 400, height: 300}
cabinets:
- id: CAB-B
  name: 乙配电箱
  circuits:
  - {id: CB1, name: 乙回路, switched: false}
teams:
  property: {name: 物业工程部}
devices:
- {id: SL-07, kind: streetlight, name: 乙区7号灯, circuit: CB1, rated_power_w: 30, position: {x: 100, y: 100}}
- {id: SL-99, kind: streetlight, name: 乙区99号灯, circuit: CB1, rated_power_w: 30, position: {x: 200, y: 100}}
"""


def aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None, f"{text!r} has no offset"
    return moment


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Api:
    client: TestClient
    db: Database
    settings: Settings
    clock: ManualClock

    # ---------------------------------------------------------------- accounts

    def headers(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {create_access_token(username, self.settings).token}"}

    def user(
        self, username: str, role: str, *, teams: tuple[str, ...] = (), sites: tuple[str, ...] = ("wanmei",)
    ) -> dict[str, str]:
        with self.db.session() as session:
            create_user(session, username, f"{username}-password", role, teams=teams, sites=sites, now=NOW)
        return self.headers(username)

    @property
    def admin(self) -> dict[str, str]:
        return self.headers("admin")

    # ---------------------------------------------------------------- what the gateway writes

    def state(self, device_id: str, kind: str = "streetlight", *, site: str = "wanmei", online: bool | None = True,
              last: dict[str, Any] | None = None) -> None:
        with self.db.session() as session:
            session.merge(DeviceState(
                site=site, device_id=device_id, kind=kind, online=online, last_seen=NOW - timedelta(seconds=20),
                status={"online": bool(online)}, last=last or {}, updated_at=NOW,
            ))

    def ticket(self, subject_id: str, fault: str, *, site: str = "wanmei", subject_type: str = "device",
               teams: tuple[str, ...] | None = None, device_ids: tuple[str, ...] | None = None,
               severity: str | None = None, at: datetime = NOW - timedelta(hours=1)) -> int:
        spec = FAULTS[fault]
        data = {
            "site": site, "subject_type": subject_type, "subject_id": subject_id, "fault": fault,
            "severity": severity or spec.severity.value, "teams": list(teams or [t.value for t in spec.teams]),
            "source": "detector", "device_ids": list(device_ids or ((subject_id,) if subject_type == "device" else ())),
            "title": f"{subject_id} · {spec.zh}", "ack_due_at": (at + timedelta(hours=1)).isoformat(),
            "start_due_at": (at + timedelta(hours=4)).isoformat(), "resolve_due_at": (at + timedelta(hours=24)).isoformat(),
        }
        with self.db.session() as session:
            row = append_event(session, None, TicketEvent(EventType.OPENED, at, "system", "detected", data))
            return row.id

    def event(self, ticket_id: int, kind: EventType, actor: str, note: str | None = None, **data: Any) -> None:
        with self.db.session() as session:
            row = session.get(TicketRow, ticket_id)
            assert row is not None
            append_event(session, row, TicketEvent(kind, NOW - timedelta(minutes=30), actor, note, data))

    def dead_letter(self, reason: str, *, site: str | None, payload: bytes, device_id: str | None = None) -> None:
        with self.db.session() as session:
            session.add(DeadLetter(
                received_at=NOW, reason=reason, detail=f"{reason} detail", topic=f"estate/v1/{site}/x/{device_id}/telemetry",
                site=site, device_id=device_id, payload=payload,
            ))


def api_settings(tmp_path: Path, database_url: str, *, mqtt_url: str | None = None,
                 admin_password: str = ADMIN_PASSWORD) -> Settings:
    """Wanmei and site B (written into `tmp_path`), SQLite time series; no broker unless `mqtt_url`."""
    site_b = tmp_path / "site-b.yaml"
    site_b.write_text(SITE_B, encoding="utf-8")
    return Settings(
        _env_file=None,
        env="development",
        data_dir=tmp_path,
        sites=f"{builtin_site_path()},{site_b}",
        database_url=database_url,
        tsdb_url=f"sqlite:///{tmp_path / 'ts.db'}",
        mqtt_url=mqtt_url or f"mqtt://127.0.0.1:{closed_port()}",
        secret_key="k" * 40,
        admin_password=admin_password,
    )


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    settings = api_settings(tmp_path, database_url)
    clock = ManualClock(NOW)
    with TestClient(create_app(settings, clock=clock)) as client:
        db = Database(settings.db_url)
        try:
            yield Api(client, db, settings, clock)
        finally:
            db.close()


# ---------------------------------------------------------------- health and auth


def test_healthz_reports_each_dependency_and_degrades_without_the_broker(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    body = api.client.get("/healthz").json()
    assert body == {"status": "degraded", "database": True, "timeseries": True, "broker": False, "sites": BOTH_SITES}

    with socket.socket() as broker:
        broker.bind(("127.0.0.1", 0))
        broker.listen()
        api.settings.mqtt_url = f"mqtt://127.0.0.1:{broker.getsockname()[1]}"
        response = api.client.get("/healthz")
        assert response.status_code == 200
        assert response.json()["status"] == "ok"
        assert response.json()["broker"] is True

        monkeypatch.setattr(api.client.app.state.store, "ping", lambda: False)  # type: ignore[attr-defined]
        assert api.client.get("/healthz").json()["status"] == "degraded"

        monkeypatch.setattr(api.client.app.state.db, "ping", lambda: False)  # type: ignore[attr-defined]
        response = api.client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["status"] == "unavailable"
        assert response.json()["database"] is False


def test_token_for_the_right_password_only(api: Api) -> None:
    response = api.client.post("/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 200
    token = response.json()
    assert token["token_type"] == "bearer"
    me = api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert me.status_code == 200
    assert me.json()["role"] == "admin"
    assert me.json()["sites"] == BOTH_SITES  # the bootstrapped admin sees every site

    wrong = api.client.post("/api/v1/auth/token", data={"username": "admin", "password": "nope"})
    assert wrong.status_code == 401
    assert isinstance(wrong.json()["detail"], str)
    nobody = api.client.post("/api/v1/auth/token", data={"username": "ghost", "password": ADMIN_PASSWORD})
    assert nobody.status_code == 401

    assert api.client.get("/api/v1/devices").status_code == 401
    assert api.client.get("/api/v1/devices", headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
    forged = Settings(_env_file=None, secret_key="another-secret-" * 3)
    other_key = {"Authorization": f"Bearer {create_access_token('admin', forged).token}"}
    assert api.client.get("/api/v1/devices", headers=other_key).status_code == 401
    expired = create_access_token("admin", api.settings, now=1_000_000.0).token
    response = api.client.get("/api/v1/devices", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_users_are_stored_with_argon2_hashes(api: Api) -> None:
    api.user("wang", "grid_officer", sites=("wanmei",))
    with api.db.session() as session:
        user = get_user(session, "wang")
        assert user is not None
        assert user.password_hash.startswith("$argon2id$")
        assert verify_password("wang-password", user.password_hash)
        assert not verify_password("wrong", user.password_hash)
        assert user.teams == ["grid"]  # a grid officer belongs to the grid team
        with pytest.raises(ValueError, match="unknown role"):
            create_user(session, "li", "pw", "superuser")
    response = api.client.post("/api/v1/auth/token", data={"username": "wang", "password": "wang-password"})
    assert response.status_code == 200


# ---------------------------------------------------------------- devices


def test_device_list_totals_filters_and_pages(api: Api) -> None:
    api.state("SL-01", last={"relay": True, "power_w": 39.0, "voltage_v": 230.0})
    api.state("SL-02", last={"relay": True, "power_w": 0.5, "voltage_v": 230.0})
    api.ticket("SL-02", "lamp_failure")

    def devices(**params: Any) -> dict[str, Any]:
        response = api.client.get("/api/v1/devices", params=params, headers=api.admin)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    assert devices(site="wanmei")["total"] == 73
    assert devices()["total"] == 75  # both sites for an admin
    assert devices(site="wanmei", kind="streetlight")["total"] == 43
    assert devices(site="wanmei", kind="elevator")["total"] == 12
    assert devices(site="wanmei", kind="charger")["total"] == 18
    assert [d["id"] for d in devices(site="wanmei", health="ok")["items"]] == ["SL-01"]
    assert [d["id"] for d in devices(site="wanmei", health="fault")["items"]] == ["SL-02"]
    assert devices(site="wanmei", health="offline")["total"] == 71

    page = devices(site="wanmei", limit=10, offset=5)
    assert page["total"] == 73
    assert [d["id"] for d in page["items"]] == [f"SL-{n:02d}" for n in range(6, 16)]
    assert set(page["items"][0]) == DEVICE_FIELDS

    bad = api.client.get("/api/v1/devices", params={"kind": "lamp"}, headers=api.admin)
    assert bad.status_code == 422
    assert "kind" in bad.json()["detail"]
    assert api.client.get("/api/v1/devices", params={"site": "nowhere"}, headers=api.admin).status_code == 404


def test_device_detail_with_live_state_tickets_and_inactive_detectors(api: Api) -> None:
    api.state("SL-03", last={"relay": True, "power_w": 38.5, "voltage_v": 229.0, "pf": 0.95})
    ticket_id = api.ticket("SL-03", "lamp_power_low")
    circuit_ticket = api.ticket("C1", "circuit_outage", subject_type="circuit", device_ids=("SL-03", "SL-04"))
    api.state("EL-1A", "elevator", last={"floor": 3, "moving": False, "door": "closed", "door_zone": True,
                                         "mode": "normal", "speed_mps": 0.0, "mains": True, "safety_circuit": True})
    api.state("CP-01", "charger", online=False, last={"status": "Available", "error_code": "NoError"})

    light = api.client.get("/api/v1/devices/SL-03", params={"site": "wanmei"}, headers=api.admin).json()
    assert light["location"] == {"compound": None, "building": None, "circuit": "C1", "cabinet": "CAB-1",
                                 "position": {"x": 550.0, "y": 320.0}}
    assert light["online"] is True
    assert light["health"] == "fault"
    assert aware(light["last_seen"]) == NOW - timedelta(seconds=20)
    assert light["last"]["power_w"] == 38.5
    assert light["open_tickets"] == [ticket_id, circuit_ticket]
    assert light["inactive_detectors"] == ["leakage", "end_of_life"]  # it reports pf, not leakage_ma nor burn_hours

    lift = api.client.get("/api/v1/devices/EL-1A", headers=api.admin).json()
    assert lift["location"]["building"] == "B1"
    assert lift["location"]["compound"] == "phase1"
    assert (lift["health"], lift["inactive_detectors"], lift["open_tickets"]) == ("ok", [], [])

    pile = api.client.get("/api/v1/devices/CP-01", headers=api.admin).json()
    assert (pile["online"], pile["health"]) == (False, "offline")
    assert pile["inactive_detectors"] == ["charging_no_current"]
    never_heard = api.client.get("/api/v1/devices/CP-02", headers=api.admin).json()
    assert (never_heard["online"], never_heard["health"], never_heard["last_seen"]) == (False, "offline", None)

    api.event(ticket_id, EventType.STARTED, "tech")
    api.event(circuit_ticket, EventType.CANCELLED, "boss", "duplicate")
    assert api.client.get("/api/v1/devices/SL-03", headers=api.admin).json()["health"] == "maintenance"
    assert api.client.get("/api/v1/devices/SL-404", headers=api.admin).status_code == 404


def test_an_id_in_two_sites_needs_the_site_unless_the_account_sees_one(api: Api) -> None:
    response = api.client.get("/api/v1/devices/SL-07", headers=api.admin)
    assert response.status_code == 400
    assert "wanmei" in response.json()["detail"]
    assert "site-b" in response.json()["detail"]
    assert api.client.get("/api/v1/devices/SL-07/telemetry", headers=api.admin).status_code == 400

    in_b = api.client.get("/api/v1/devices/SL-07", params={"site": "site-b"}, headers=api.admin)
    assert (in_b.status_code, in_b.json()["site"], in_b.json()["name"]) == (200, "site-b", "乙区7号灯")

    wanmei_only = api.user("zhang", "viewer", sites=("wanmei",))
    response = api.client.get("/api/v1/devices/SL-07", headers=wanmei_only)
    assert (response.status_code, response.json()["site"]) == (200, "wanmei")
    b_only = api.user("chen", "viewer", sites=("site-b",))
    response = api.client.get("/api/v1/devices/SL-07", headers=b_only)
    assert (response.status_code, response.json()["site"]) == (200, "site-b")


def test_telemetry_is_read_back_from_the_store(api: Api) -> None:
    store = open_store(api.settings.timeseries_url)
    try:
        store.write([
            Point("streetlight", {"site": "wanmei", "device": "SL-07"}, {"power_w": 39.5, "relay": True},
                  to_ms(NOW - timedelta(hours=2))),
            Point("streetlight", {"site": "wanmei", "device": "SL-07"}, {"power_w": 12.0, "relay": True},
                  to_ms(NOW - timedelta(hours=1))),
            Point("streetlight", {"site": "wanmei", "device": "SL-07"}, {"power_w": 40.0}, to_ms(NOW - timedelta(hours=30))),
            Point("streetlight", {"site": "site-b", "device": "SL-07"}, {"power_w": 7.0}, to_ms(NOW - timedelta(hours=1))),
        ])
    finally:
        store.close()
    url = "/api/v1/devices/SL-07/telemetry"

    body = api.client.get(url, params={"site": "wanmei"}, headers=api.admin).json()  # default: the last 24 h
    assert (body["device_id"], body["field"]) == ("SL-07", "power_w")
    assert [p["value"] for p in body["points"]] == [39.5, 12.0]
    assert [aware(p["ts"]) for p in body["points"]] == [NOW - timedelta(hours=2), NOW - timedelta(hours=1)]

    window = {"site": "wanmei", "since": (NOW - timedelta(hours=48)).isoformat(),
              "until": (NOW - timedelta(minutes=90)).isoformat()}
    assert [p["value"] for p in api.client.get(url, params=window, headers=api.admin).json()["points"]] == [40.0, 39.5]
    relay = api.client.get(url, params={"site": "wanmei", "field": "relay"}, headers=api.admin).json()
    assert [p["value"] for p in relay["points"]] == [True, True]
    other_site = api.client.get(url, params={"site": "site-b"}, headers=api.admin).json()
    assert [p["value"] for p in other_site["points"]] == [7.0]

    unknown = api.client.get(url, params={"site": "wanmei", "field": "flux_capacitor"}, headers=api.admin)
    assert unknown.status_code == 422
    assert "power_w" in unknown.json()["detail"]
    assert "leakage_ma" in unknown.json()["detail"]
    naive = api.client.get(url, params={"site": "wanmei", "since": "2026-11-26T10:00:00"}, headers=api.admin)
    assert naive.status_code == 422
    backwards = {"site": "wanmei", "since": NOW.isoformat(), "until": (NOW - timedelta(hours=1)).isoformat()}
    assert api.client.get(url, params=backwards, headers=api.admin).status_code == 422

    api.client.app.state.store.close()  # type: ignore[attr-defined]
    down = api.client.get(url, params={"site": "wanmei"}, headers=api.admin)
    assert down.status_code == 503
    assert "time-series store" in down.json()["detail"]


# ---------------------------------------------------------------- tickets


@pytest.fixture
def tickets(api: Api) -> dict[str, int]:
    return {
        "lamp": api.ticket("SL-07", "lamp_failure", at=NOW - timedelta(hours=4)),
        "trapped": api.ticket("EL-1A", "trapped", at=NOW - timedelta(hours=3)),
        "circuit": api.ticket("C2", "circuit_outage", subject_type="circuit", device_ids=("SL-10", "SL-11"),
                              at=NOW - timedelta(hours=2)),
        "b_lamp": api.ticket("SL-07", "lamp_failure", site="site-b", at=NOW - timedelta(hours=1)),
    }


def test_tickets_list_newest_first_with_filters(api: Api, tickets: dict[str, int]) -> None:
    def ids(**params: Any) -> list[int]:
        response = api.client.get("/api/v1/tickets", params=params, headers=api.admin)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == len(body["items"])
        return [t["id"] for t in body["items"]]

    assert ids() == [tickets["b_lamp"], tickets["circuit"], tickets["trapped"], tickets["lamp"]]
    assert ids(site="wanmei") == [tickets["circuit"], tickets["trapped"], tickets["lamp"]]
    assert ids(device_id="SL-11") == [tickets["circuit"]]
    assert ids(device_id="SL-07", site="wanmei") == [tickets["lamp"]]
    assert ids(device_id="SL_07") == []  # `_` is not a wildcard
    assert ids(fault="trapped") == [tickets["trapped"]]
    assert ids(team="grid") == [tickets["circuit"]]
    assert ids(team="elevator_contractor") == [tickets["trapped"]]
    assert ids(severity="P0") == [tickets["trapped"]]
    assert ids(status="acknowledged") == []
    assert ids(status="open", site="site-b") == [tickets["b_lamp"]]

    page = api.client.get("/api/v1/tickets", params={"limit": 2, "offset": 1}, headers=api.admin).json()
    assert page["total"] == 4
    assert [t["id"] for t in page["items"]] == [tickets["circuit"], tickets["trapped"]]
    assert api.client.get("/api/v1/tickets", params={"severity": "P9"}, headers=api.admin).status_code == 422


def test_ticket_detail_has_the_contract_shape_and_history(api: Api, tickets: dict[str, int]) -> None:
    response = api.client.get(f"/api/v1/tickets/{tickets['trapped']}", headers=api.admin)
    assert response.status_code == 200
    ticket = response.json()
    assert set(ticket) == TICKET_FIELDS
    assert ticket["subject"] == {"type": "device", "id": "EL-1A"}
    assert (ticket["device_id"], ticket["device_ids"]) == ("EL-1A", ["EL-1A"])
    assert ticket["fault_name"] == {"zh": "电梯困人", "en": "Passenger trapped"}
    assert (ticket["severity"], ticket["status"], ticket["source"]) == ("P0", "open", "detector")
    assert ticket["teams"] == ["elevator_contractor", "property"]
    assert aware(ticket["opened_at"]) == NOW - timedelta(hours=3)
    assert aware(ticket["ack_due_at"]) == NOW - timedelta(hours=2)
    assert ticket["history"] == [{
        "type": "opened", "at": ticket["history"][0]["at"], "actor": "system", "from": None, "to": "open",
        "note": "detected", "team": None, "severity": "P0", "photos": None,
    }]
    assert aware(ticket["history"][0]["at"]) == NOW - timedelta(hours=3)

    circuit = api.client.get(f"/api/v1/tickets/{tickets['circuit']}", headers=api.admin).json()
    assert circuit["subject"] == {"type": "circuit", "id": "C2"}
    assert (circuit["device_id"], circuit["device_ids"]) == (None, ["SL-10", "SL-11"])
    missing = api.client.get("/api/v1/tickets/999999", headers=api.admin)
    assert missing.status_code == 404
    assert isinstance(missing.json()["detail"], str)


def test_each_team_acknowledges_for_itself(api: Api, tickets: dict[str, int]) -> None:
    contractor = api.user("li", "technician", teams=("elevator_contractor",))
    crew = api.user("zhao", "technician", teams=("property",))
    operator = api.user("sun", "technician", teams=("charger_operator",))
    ack = f"/api/v1/tickets/{tickets['trapped']}/ack"

    assert api.client.post(ack, headers=operator).status_code == 403
    assert api.client.post(ack, json={"team": "elevator_contractor"}, headers=crew).status_code == 403  # not my team

    api.clock.advance(60)
    response = api.client.post(ack, headers=contractor)
    assert response.status_code == 200, response.text
    ticket = response.json()
    assert ticket["status"] == "acknowledged"
    assert ticket["acknowledged_by"] == "li"
    assert aware(ticket["acknowledged_at"]) == NOW + timedelta(seconds=60)
    assert ticket["acks"] == {"elevator_contractor": {"by": "li", "at": ticket["acknowledged_at"]}}
    last = ticket["history"][-1]
    assert (last["type"], last["actor"], last["from"], last["to"], last["team"]) == (
        "acknowledged", "li", "open", "acknowledged", "elevator_contractor")

    twice = api.client.post(ack, headers=contractor)
    assert twice.status_code == 409
    assert "already acknowledged" in twice.json()["detail"]

    second = api.client.post(ack, json={"note": "on our way"}, headers=crew).json()
    assert set(second["acks"]) == {"elevator_contractor", "property"}
    assert second["acknowledged_by"] == "li"  # the lead team's
    stored = api.client.get(f"/api/v1/tickets/{tickets['trapped']}", headers=api.admin).json()
    assert [h["type"] for h in stored["history"]] == ["opened", "acknowledged", "acknowledged"]
    assert stored["history"][-1]["note"] == "on our way"


def test_managers_acknowledge_for_the_lead_team_and_viewers_cannot(api: Api, tickets: dict[str, int]) -> None:
    manager = api.user("boss", "manager")
    viewer = api.user("owner", "viewer")
    lamp = f"/api/v1/tickets/{tickets['lamp']}/ack"

    assert api.client.post(lamp, headers=viewer).status_code == 403
    wrong_team = api.client.post(lamp, json={"team": "grid"}, headers=manager)
    assert wrong_team.status_code == 403
    assert "grid" in wrong_team.json()["detail"]
    assert api.client.post(lamp, json={"team": "plumbers", "extra": 1}, headers=manager).status_code == 422

    ticket = api.client.post(lamp, headers=manager).json()
    assert (ticket["status"], ticket["acknowledged_by"], list(ticket["acks"])) == ("acknowledged", "boss", ["property"])

    api.event(tickets["circuit"], EventType.CANCELLED, "boss", "false alarm")
    cancelled = api.client.post(f"/api/v1/tickets/{tickets['circuit']}/ack", headers=manager)
    assert cancelled.status_code == 409
    assert "cancelled" in cancelled.json()["detail"]


def test_a_stale_write_is_refused(api: Api, tickets: dict[str, int]) -> None:
    manager = api.user("boss", "manager")
    ticket_id = tickets["trapped"]
    seen = api.client.get(f"/api/v1/tickets/{ticket_id}", headers=manager).json()["version"]
    api.event(ticket_id, EventType.COMMENTED, "li", "checking the car")  # someone else acts meanwhile
    stale = api.client.post(f"/api/v1/tickets/{ticket_id}/ack", json={"version": seen}, headers=manager)
    assert stale.status_code == 409
    assert api.client.get(f"/api/v1/tickets/{ticket_id}", headers=manager).json()["status"] == "open"

    # Two requests at once: the second read the ticket before the first wrote, so its write is refused.
    with api.db.sessions() as slow:
        row = slow.scalars(select(TicketRow).where(TicketRow.id == ticket_id)).one()
        user = get_user(slow, "boss")
        assert user is not None
        fresh = api.client.post(f"/api/v1/tickets/{ticket_id}/ack", headers=manager)
        assert fresh.status_code == 200
        with pytest.raises(StaleTicket):
            acknowledge(slow, row, user, team="property", note=None, at=NOW)
        slow.rollback()
    final = api.client.get(f"/api/v1/tickets/{ticket_id}", headers=manager).json()
    assert list(final["acks"]) == ["elevator_contractor"]


def test_accounts_see_nothing_of_other_sites(api: Api, tickets: dict[str, int]) -> None:
    b_manager = api.user("chen", "manager", sites=("site-b",))
    api.state("EL-1A", "elevator", last={"floor": 1, "moving": False, "door": "closed", "door_zone": True, "mode": "normal"})

    listed = api.client.get("/api/v1/tickets", headers=b_manager).json()
    assert (listed["total"], [t["id"] for t in listed["items"]]) == (1, [tickets["b_lamp"]])
    hidden = api.client.get(f"/api/v1/tickets/{tickets['trapped']}", headers=b_manager)
    absent = api.client.get("/api/v1/tickets/999999", headers=b_manager)
    assert (hidden.status_code, absent.status_code) == (404, 404)
    assert hidden.json()["detail"] == f"ticket {tickets['trapped']} not found"
    assert api.client.post(f"/api/v1/tickets/{tickets['trapped']}/ack", headers=b_manager).status_code == 404
    assert api.client.get("/api/v1/tickets", params={"site": "wanmei"}, headers=b_manager).status_code == 404

    devices = api.client.get("/api/v1/devices", headers=b_manager).json()
    assert (devices["total"], {d["site"] for d in devices["items"]}) == (2, {"site-b"})
    assert api.client.get("/api/v1/devices/EL-1A", headers=b_manager).status_code == 404
    assert api.client.get("/api/v1/devices/EL-1A/telemetry", headers=b_manager).status_code == 404
    assert api.client.get("/api/v1/devices", params={"site": "wanmei"}, headers=b_manager).status_code == 404
    own = api.client.get("/api/v1/devices/SL-07", headers=b_manager).json()
    assert (own["site"], own["open_tickets"]) == ("site-b", [tickets["b_lamp"]])

    nowhere = api.user("nobody", "manager", sites=())
    assert api.client.get("/api/v1/devices", headers=nowhere).json()["total"] == 0
    assert api.client.get("/api/v1/tickets", headers=nowhere).json()["total"] == 0


# ---------------------------------------------------------------- public


def test_public_status_speaks_residents_words_and_names_nobody(api: Api) -> None:
    light = {"relay": True, "voltage_v": 230.0}
    api.state("SL-01", last={**light, "power_w": 38.0})  # lit
    api.state("SL-02", last={**light, "power_w": 2.0})  # relay closed but dark, not ticketed yet
    api.state("SL-03", online=False, last={**light, "power_w": 38.0})  # offline, no ticket
    api.state("SL-04", online=False, last={**light, "power_w": 38.0})
    fault = api.ticket("SL-04", "offline")
    repairing = api.ticket("SL-05", "lamp_failure")
    api.event(repairing, EventType.ACKNOWLEDGED, "zhao", "secret internal note", team="property")
    api.event(repairing, EventType.STARTED, "zhao")
    api.ticket("C2", "circuit_outage", subject_type="circuit", device_ids=("SL-10", "SL-11"))
    api.ticket("phase1", "out_of_service", subject_type="place", device_ids=())  # no device: not public
    lift = {"floor": 1, "moving": False, "door": "closed", "door_zone": True}
    api.state("EL-1A", "elevator", last={**lift, "mode": "normal"})
    api.state("EL-1B", "elevator", last={**lift, "mode": "inspection"})
    api.state("EL-2A", "elevator", online=False, last={**lift, "mode": "normal"})
    api.state("EL-3A", "elevator", last={**lift, "mode": "normal"})
    api.ticket("EL-3A", "door_fault")
    pile = {"error_code": "NoError"}
    api.state("CP-01", "charger", last={**pile, "status": "Available"})
    api.state("CP-02", "charger", last={**pile, "status": "SuspendedEV"})
    api.state("CP-03", "charger", last={**pile, "status": "Faulted"})
    api.state("CP-04", "charger", last={**pile, "status": "Available"})
    api.ticket("CP-04", "meter_failure")
    api.ticket("SL-07", "lamp_failure", site="site-b")

    response = api.client.get("/api/v1/public/status", params={"site": "wanmei"})
    assert response.status_code == 200
    status = response.json()
    assert (status["site"], status["name"]) == ("wanmei", "湾美社区")
    assert aware(status["generated_at"]) == NOW
    assert (status["plan"]["width"], status["plan"]["height"]) == (1000, 700)
    assert (len(status["streetlights"]), len(status["elevators"]), len(status["chargers"])) == (43, 12, 18)

    lights = {d["id"]: d["state"] for d in status["streetlights"]}
    assert [lights[f"SL-0{n}"] for n in range(1, 6)] == ["on", "off", "off", "fault", "repairing"]
    assert (lights["SL-10"], lights["SL-11"], lights["SL-12"]) == ("fault", "fault", "off")
    assert status["streetlights"][0]["position"] == {"x": 450.0, "y": 320.0}
    lifts = {d["id"]: d["state"] for d in status["elevators"]}
    assert [lifts[i] for i in ("EL-1A", "EL-1B", "EL-2A", "EL-3A")] == ["in_service"] + ["out_of_service"] * 3
    piles = {d["id"]: d["state"] for d in status["chargers"]}
    assert [piles[f"CP-0{n}"] for n in range(1, 6)] == ["available", "in_use", "unavailable", "unavailable", "unavailable"]

    public_tickets = {t["id"]: t for t in status["tickets"]}
    assert fault in public_tickets
    assert public_tickets[repairing]["status"] == "in_progress"
    assert public_tickets[repairing]["fault_name"] == {"zh": "灯具不亮", "en": "Lamp failure"}
    assert len(status["tickets"]) == 5  # wanmei's device tickets only
    assert set(public_tickets[repairing]) == {"id", "fault_name", "status", "opened_at", "device_ids"}
    text = response.text
    for secret in ("assignee", "acks", "history", "note", "zhao", "secret internal note", "acknowledged_by", "actor"):
        assert secret not in text

    assert api.client.get("/api/v1/public/status", params={"site": "atlantis"}).status_code == 404
    assert api.client.get("/api/v1/public/status").status_code == 422
    sites = api.client.get("/api/v1/public/sites").json()
    assert [s["id"] for s in sites] == BOTH_SITES


# ---------------------------------------------------------------- operator


def test_dead_letters_for_operators_with_counts(api: Api) -> None:
    api.dead_letter("not_json", site="wanmei", device_id="SL-01", payload=b"\xff\xfe{oops" + b"x" * 3000)
    api.dead_letter("schema", site="wanmei", device_id="SL-02", payload=b'{"relay": "yes"}')
    api.dead_letter("schema", site="site-b", device_id="SL-07", payload=b"{}")
    api.dead_letter("topic", site=None, payload=b"hello")

    everything = api.client.get("/api/v1/dead-letters", headers=api.admin).json()
    assert everything["total"] == 4
    assert everything["counts"] == {"not_json": 1, "schema": 2, "topic": 1}
    not_json = api.client.get("/api/v1/dead-letters", params={"reason": "not_json"}, headers=api.admin).json()
    assert not_json["total"] == 1
    assert not_json["counts"] == everything["counts"]
    item = not_json["items"][0]
    assert (item["site"], item["device_id"], item["reason"]) == ("wanmei", "SL-01", "not_json")
    assert item["payload_excerpt"].startswith("\ufffd\ufffd{oops")
    assert len(item["payload_excerpt"]) == 512
    assert aware(item["received_at"]) == NOW

    manager = api.user("boss", "manager")
    mine = api.client.get("/api/v1/dead-letters", headers=manager).json()
    assert (mine["total"], mine["counts"]) == (2, {"not_json": 1, "schema": 1})
    assert {i["site"] for i in mine["items"]} == {"wanmei"}
    only_b = api.client.get("/api/v1/dead-letters", params={"site": "site-b"}, headers=api.admin).json()
    assert [i["payload_excerpt"] for i in only_b["items"]] == ["{}"]
    assert api.client.get("/api/v1/dead-letters", params={"site": "site-b"}, headers=manager).status_code == 404
    assert api.client.get("/api/v1/dead-letters", params={"limit": 1}, headers=api.admin).json()["total"] == 4
    technician = api.user("zhao", "technician", teams=("property",))
    assert api.client.get("/api/v1/dead-letters", headers=technician).status_code == 403
    assert api.client.get("/api/v1/dead-letters").status_code == 401


# ---------------------------------------------------------------- resident page


def test_the_resident_page_and_its_assets_are_served(api: Api) -> None:
    page = api.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    assert '<html lang="zh-CN">' in html
    assert 'name="viewport"' in html
    for asset, kind in (("i18n.js", "javascript"), ("app.js", "javascript"), ("style.css", "text/css")):
        assert f"/static/resident/{asset}" in html
        response = api.client.get(f"/static/resident/{asset}")
        assert response.status_code == 200, asset
        assert kind in response.headers["content-type"], asset
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "https://" not in response.text and "cdn" not in response.text.lower(), asset
    assert "http" not in html.replace('http-equiv', '')

    script = api.client.get("/static/resident/app.js").text
    for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script  # every text goes through textContent
    assert "setInterval" not in script and "setTimeout" not in script  # loads once, then live over SSE
    assert "/api/v1/public/events?site=" in script and "/static/common/linli.js" in html
    assert "/api/v1/public/status?site=" in script
    assert "/api/v1/public/sites" in script
    catalogues = api.client.get("/static/resident/i18n.js").text
    for word in ("路灯", "电梯", "充电桩", "亮", "灭", "故障", "维修中", "运行中", "停用", "空闲", "使用中", "不可用"):
        assert word in catalogues
    assert '"zh-CN"' in catalogues and "en:" in catalogues
    assert api.client.get("/static/resident/missing.js").status_code == 404


# ---------------------------------------------------------------- bad input


def test_bad_input_is_a_clear_4xx_never_a_500(api: Api, tickets: dict[str, int]) -> None:
    manager = api.user("boss", "manager")
    cases = [
        ("get", "/api/v1/tickets", {"params": {"device_id": "SL\x0007"}}, 422),
        ("get", "/api/v1/tickets", {"params": {"fault": "lamp\x00"}}, 422),
        ("get", "/api/v1/tickets", {"params": {"limit": 100_000}}, 422),
        ("get", "/api/v1/tickets/not-a-number", {}, 422),
        ("get", "/api/v1/dead-letters", {"params": {"reason": "\x00"}}, 422),
        ("get", "/api/v1/devices/SL-07/telemetry", {"params": {"site": "wanmei", "until": "0001-01-01T00:00:00Z"}}, 422),
        ("get", "/api/v1/devices/SL-07/telemetry", {"params": {"site": "wanmei", "since": "yesterday"}}, 422),
        ("get", "/api/v1/devices/路灯", {}, 404),
        ("get", "/api/v1/public/status", {"params": {"site": "\x00"}}, 404),
        ("post", f"/api/v1/tickets/{tickets['lamp']}/ack", {"json": {"note": "a\x00b"}}, 422),
        ("post", f"/api/v1/tickets/{tickets['lamp']}/ack",
         {"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 422),
    ]
    for method, url, kwargs, expected in cases:
        headers = {**manager, **kwargs.pop("headers", {})}
        response = api.client.request(method.upper(), url, headers=headers, **kwargs)
        assert response.status_code == expected, (url, kwargs, response.text)
        assert isinstance(response.json()["detail"], str), response.text
    login = api.client.post("/api/v1/auth/token", data={"username": "ad\x00min", "password": ADMIN_PASSWORD})
    assert login.status_code == 401
