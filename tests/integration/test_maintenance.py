"""Planned maintenance windows through the API, and what the engine makes of them, on SQLite and PostgreSQL.

The API runs in-process with its real lifespan (the `api` fixture of test_api). The engine side is the
gateway's own parts on the same database: Engine, Pipeline and the upkeep pass that reads the windows
(gateway.upkeep.Upkeep), on the API's ManualClock. Silence does not count (the engine is told the broker
is away), so only the faults each test makes are in play.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from gateway.broker import Inbound
from gateway.pipeline import Pipeline
from gateway.upkeep import Upkeep
from integration.test_api import NOW, Api
from linli.clock import ManualClock, to_ms
from linli.engine import Engine
from linli.site import SiteRegistry, builtin_site_path
from linli.storage import TicketRow
from linli.tsdb import open_store

SITES = SiteRegistry.load([builtin_site_path()])  # NOW is 20:00 in Fujian: every circuit is on
SITE = SITES["wanmei"]


def window(api: Api, headers: dict[str, str], subject: tuple[str, str], *, starts: datetime | None = None,
           ends: datetime, site: str = "wanmei", reason: str = "计划检修") -> Any:
    body: dict[str, Any] = {"site": site, "subject": {"type": subject[0], "id": subject[1]},
                            "ends_at": ends.isoformat(), "reason": reason}
    if starts is not None:
        body["starts_at"] = starts.isoformat()
    return api.client.post("/api/v1/maintenance", json=body, headers=headers)


def health(api: Api, device_id: str) -> str:
    response = api.client.get("/api/v1/devices", params={"site": "wanmei", "limit": 1000}, headers=api.admin)
    assert response.status_code == 200
    (item,) = [d for d in response.json()["items"] if d["id"] == device_id]
    found: str = item["health"]
    return found


# ---------------------------------------------------------------- the API


def test_managers_plan_windows_checked_against_the_site(api: Api) -> None:
    manager = api.user("zhou", "manager")
    technician = api.user("wang", "technician", teams=("property",))
    created = window(api, manager, ("circuit", "C1"), ends=NOW + timedelta(hours=2), reason="更换C1电缆")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["subject"] == {"type": "circuit", "id": "C1"} and body["created_by"] == "zhou"
    assert datetime.fromisoformat(body["starts_at"]) == NOW and body["active"] is True
    assert body["reason"] == "更换C1电缆"

    for subject in (("device", "CP-01"), ("cabinet", "CAB-2"), ("building", "B1")):
        assert window(api, api.admin, subject, starts=NOW + timedelta(hours=1), ends=NOW + timedelta(hours=3)).status_code == 201
    refused = {
        "unknown subject": window(api, manager, ("circuit", "C9"), ends=NOW + timedelta(hours=1)),
        "a circuit named as a cabinet": window(api, manager, ("cabinet", "C1"), ends=NOW + timedelta(hours=1)),
        "bad kind": window(api, manager, ("compound", "A"), ends=NOW + timedelta(hours=1)),
        "ends before it starts": window(api, manager, ("device", "SL-07"), starts=NOW + timedelta(hours=2),
                                        ends=NOW + timedelta(hours=1)),
        "already over": window(api, manager, ("device", "SL-07"), starts=NOW - timedelta(hours=2),
                               ends=NOW - timedelta(hours=1)),
        "too long": window(api, manager, ("device", "SL-07"), ends=NOW + timedelta(days=40)),
    }
    for why, response in refused.items():
        assert response.status_code == 422, why
        assert isinstance(response.json()["detail"], str), why
    assert "C9" in refused["unknown subject"].json()["detail"]
    naive = api.client.post("/api/v1/maintenance", headers=manager, json={
        "site": "wanmei", "subject": {"type": "device", "id": "SL-07"}, "ends_at": "2026-11-26T23:00:00"})
    assert naive.status_code == 422 and "offset" in naive.json()["detail"]
    assert window(api, technician, ("device", "SL-07"), ends=NOW + timedelta(hours=1)).status_code == 403
    assert window(api, manager, ("device", "SL-07"), site="site-b", ends=NOW + timedelta(hours=1)).status_code == 404

    listed = api.client.get("/api/v1/maintenance", headers=technician)  # staff of the site see them
    assert listed.status_code == 200 and listed.json()["total"] == 4
    active = api.client.get("/api/v1/maintenance", params={"active": "true"}, headers=manager).json()
    assert [(w["subject"]["type"], w["subject"]["id"]) for w in active["items"]] == [("circuit", "C1")]
    later = api.client.get("/api/v1/maintenance", params={"active": "false", "site": "wanmei"}, headers=manager).json()
    assert sorted(w["subject"]["id"] for w in later["items"]) == ["B1", "CAB-2", "CP-01"]
    other = api.user("li", "manager", sites=("site-b",))
    assert api.client.get("/api/v1/maintenance", headers=other).json() == {"items": [], "total": 0}
    assert api.client.get("/api/v1/maintenance", params={"site": "wanmei"}, headers=other).status_code == 404


def test_ending_a_window_now_and_cancelling_one_not_started(api: Api) -> None:
    manager = api.user("zhou", "manager")
    running = window(api, manager, ("device", "SL-07"), ends=NOW + timedelta(hours=2)).json()
    planned = window(api, manager, ("device", "SL-08"), starts=NOW + timedelta(hours=1), ends=NOW + timedelta(hours=2)).json()
    api.clock.set(NOW + timedelta(minutes=10))
    viewer = api.user("zhao", "viewer")
    assert api.client.delete(f"/api/v1/maintenance/{running['id']}", headers=viewer).status_code == 403
    ended = api.client.delete(f"/api/v1/maintenance/{running['id']}", headers=manager)
    assert ended.status_code == 200
    assert datetime.fromisoformat(ended.json()["ends_at"]) == NOW + timedelta(minutes=10)
    assert ended.json()["active"] is False
    cancelled = api.client.delete(f"/api/v1/maintenance/{planned['id']}", headers=manager).json()
    assert cancelled["starts_at"] == cancelled["ends_at"]  # covers no moment at all
    again = api.client.delete(f"/api/v1/maintenance/{running['id']}", headers=manager)
    assert again.status_code == 409 and "ended" in again.json()["detail"]
    assert api.client.delete("/api/v1/maintenance/999999", headers=manager).status_code == 404
    other = api.user("li", "manager", sites=("site-b",))
    assert api.client.delete(f"/api/v1/maintenance/{planned['id']}", headers=other).status_code == 404
    assert api.client.get("/api/v1/maintenance", params={"active": "true"}, headers=manager).json()["total"] == 0


def test_a_device_under_an_active_window_shows_maintenance(api: Api) -> None:
    for device_id in ("SL-07", "SL-20"):  # C1 of CAB-1, C3 of CAB-2
        api.state(device_id, online=False)
    api.state("SL-10")
    api.ticket("SL-10", "lamp_failure")
    assert (health(api, "SL-07"), health(api, "SL-10"), health(api, "SL-20")) == ("offline", "fault", "offline")
    cab = window(api, api.admin, ("cabinet", "CAB-1"), starts=NOW + timedelta(minutes=5), ends=NOW + timedelta(hours=1))
    assert health(api, "SL-07") == "offline"  # not started yet
    api.clock.set(NOW + timedelta(minutes=5))
    assert (health(api, "SL-07"), health(api, "SL-10"), health(api, "SL-20")) == ("maintenance", "maintenance", "offline")
    detail = api.client.get("/api/v1/devices/SL-10", params={"site": "wanmei"}, headers=api.admin).json()
    assert detail["health"] == "maintenance" and len(detail["open_tickets"]) == 1  # its ticket still shows
    only = api.client.get("/api/v1/devices", params={"health": "maintenance"}, headers=api.admin).json()
    assert only["total"] == 9 + 9  # circuits C1 and C2 of CAB-1
    api.client.delete(f"/api/v1/maintenance/{cab.json()['id']}", headers=api.admin)
    assert (health(api, "SL-07"), health(api, "SL-10")) == ("offline", "fault")


# ---------------------------------------------------------------- the engine


class Plant:
    """The gateway's engine, pipeline and upkeep pass on the API's database and clock."""

    def __init__(self, api: Api, tmp_path: Path) -> None:
        self.clock: ManualClock = api.clock
        self.engine = Engine(SITES, self.clock.now())
        self.engine.broker_connection(False, self.clock.now())  # silence counts for nothing here
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.pipeline = Pipeline(sites=SITES, engine=self.engine, database=api.db,
                                 store=open_store(f"sqlite:///{tmp_path / 'ts.db'}"),
                                 publish=lambda t, p: self.published.append((t, json.loads(p))))
        self.upkeep = Upkeep(database=api.db, engine=self.engine, sites=SITES, clock=self.clock,
                             base_url="http://linli.test")
        self.seq: dict[str, int] = {}
        self.db = api.db

    def send(self, device_id: str, body: dict[str, Any]) -> None:
        device = SITE.devices[device_id]
        now = self.clock.now()
        seq = self.seq[device_id] = self.seq.get(device_id, 0) + 1
        topic = f"estate/v1/wanmei/{device.kind}/{device_id}/telemetry"
        payload = json.dumps({"ts": to_ms(now), "seq": seq, **body}).encode()
        self.pipeline.process([Inbound(topic, payload, 1, False, to_ms(now))], now)

    def run(self, seconds: int, lights: dict[str, float]) -> None:
        """`lights` (device -> power_w) report every 30 s; timers tick every 10 s; upkeep every 10 s."""
        for second in range(0, seconds, 10):
            self.clock.advance(10)
            now = self.clock.now()
            if second % 30 == 0:
                for device_id, power in lights.items():
                    self.send(device_id, {"relay": True, "dim_pct": 100, "power_w": power, "voltage_v": 226.0})
            self.pipeline.tick(now)
            self.pipeline.tick_with(self.upkeep.run(now), now)

    def tickets(self) -> list[tuple[str, str, str]]:
        with self.db.session() as session:
            return sorted((r.subject_id, r.fault, r.status) for r in session.scalars(select(TicketRow)))


def test_faults_inside_a_window_open_no_ticket_and_open_one_after_it_if_they_still_hold(api: Api, tmp_path: Path) -> None:
    plant = Plant(api, tmp_path)
    rated = {d: SITE.devices[d].rated_power_w or 60.0 for d in ("SL-07", "SL-08", "SL-20")}
    plant.run(60, rated)  # healthy and lit
    c1 = window(api, api.admin, ("circuit", "C1"), ends=plant.clock.now() + timedelta(minutes=10)).json()
    sl20 = window(api, api.admin, ("device", "SL-20"), ends=plant.clock.now() + timedelta(hours=2)).json()
    window(api, api.admin, ("device", "CP-01"), ends=plant.clock.now() + timedelta(hours=2))

    # SL-07 and SL-20 go dark for good; SL-08 goes dark and is lit again before C1's window ends.
    plant.run(180, rated | {"SL-07": 0.0, "SL-08": 0.0, "SL-20": 0.0})
    plant.run(180, rated | {"SL-07": 0.0, "SL-20": 0.0})
    for device_id, silenced in (("SL-07", {"lamp_failure"}), ("SL-08", set()), ("SL-20", {"lamp_failure"})):
        live = plant.engine.live("wanmei", device_id)
        assert live is not None and live.silenced == silenced, device_id
    # A P0 under planned work still opens at once, and the pile is still taken out of use.
    plant.send("CP-01", {"status": "Faulted", "error_code": "GroundFailure", "connector_id": 1})
    assert plant.tickets() == [("CP-01", "ground_failure", "open")]
    assert ("estate/v1/wanmei/charger/CP-01/cmd", "set_available", {"available": False}) in [
        (t, body["action"], body["params"]) for t, body in plant.published if t.endswith("/cmd")]
    assert (health(api, "SL-07"), health(api, "SL-20")) == ("maintenance", "maintenance")

    # C1's window runs out with SL-07 still dark: its ticket opens now; SL-08 healed inside: none.
    assert plant.clock.now() < datetime.fromisoformat(c1["ends_at"])
    plant.run(300, rated | {"SL-07": 0.0, "SL-20": 0.0})
    assert plant.clock.now() >= datetime.fromisoformat(c1["ends_at"])
    assert plant.tickets() == [("CP-01", "ground_failure", "open"), ("SL-07", "lamp_failure", "open")]
    assert health(api, "SL-07") == "fault" and health(api, "SL-20") == "maintenance"
    with plant.db.session() as session:
        row = session.scalars(select(TicketRow).where(TicketRow.device_id == "SL-07")).one()
        assert "计划维护结束" in (row.events[0].note or "")

    # SL-20's window is ended early through the API: the next upkeep pass opens its ticket.
    assert api.client.delete(f"/api/v1/maintenance/{sl20['id']}", headers=api.admin).status_code == 200
    plant.run(10, rated | {"SL-07": 0.0, "SL-20": 0.0})
    assert plant.tickets() == [("CP-01", "ground_failure", "open"), ("SL-07", "lamp_failure", "open"),
                               ("SL-20", "lamp_failure", "open")]
    assert health(api, "SL-20") == "fault"
