"""The fault engine end to end without a broker: contract messages through the real pipeline (parse,
engine, correlation, ticket store on SQLite and PostgreSQL), the clock moved by the test."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway.broker import Inbound
from gateway.pipeline import Pipeline
from linli.clock import ManualClock, to_ms
from linli.engine import Engine
from linli.engine.verification import Resolution
from linli.site import SiteRegistry, builtin_site_path
from linli.storage import Database, TicketRow, migrate
from linli.storage.tickets import append_event, view_of
from linli.tickets import EventType, Subject, TicketEvent, TicketStatus
from linli.tsdb import open_store

NIGHT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # 20:00 in Fujian: every circuit is on
SITES = SiteRegistry.load([builtin_site_path()])
SITE = SITES["wanmei"]


class Rig:
    """The Wanmei site's devices, each sending healthy telemetry every `every_s` unless told otherwise."""

    def __init__(self, database: Database, tmp_path: Path, start: datetime = NIGHT) -> None:
        self.clock = ManualClock(start)
        self.engine = Engine(SITES, start)
        self.database = database
        self.published: list[tuple[str, bytes]] = []
        self.pipeline = Pipeline(sites=SITES, engine=self.engine, database=database,
                                 store=open_store(f"sqlite:///{tmp_path / 'ts.db'}"),
                                 publish=lambda t, p: self.published.append((t, p)))
        self.seq: dict[str, int] = {}
        self.overrides: dict[str, dict[str, Any]] = {}  # device -> fields replacing the healthy ones

    def healthy(self, device_id: str) -> dict[str, Any]:
        device = SITE.devices[device_id]
        if device.kind == "streetlight":
            rated = device.rated_power_w or 60.0
            return {"relay": True, "dim_pct": 100.0, "power_w": rated, "voltage_v": 226.0, "current_a": rated / 226 / 0.95,
                    "pf": 0.95, "leakage_ma": 1.0, "burn_hours": 1000.0, "energy_kwh": 100.0}
        if device.kind == "elevator":
            return {"floor": 1, "moving": False, "direction": "none", "speed_mps": 0.0, "door": "closed",
                    "door_zone": True, "occupied": False, "mode": "normal", "mains": True, "safety_circuit": True,
                    "alarm": False, "trips": 100}
        return {"status": "Available", "error_code": "NoError", "connector_id": 1, "power_kw": 0.0, "voltage_v": 230.0,
                "current_a": 0.0, "temp_c": 30.0}

    def message(self, device_id: str, channel: str = "telemetry", body: dict[str, Any] | None = None) -> Inbound:
        device = SITE.devices[device_id]
        now = self.clock.now()
        if body is None:
            body = self.healthy(device_id) | self.overrides.get(device_id, {})
        if channel in ("telemetry", "event"):
            seq = self.seq.get(device_id, 0)
            self.seq[device_id] = seq + 1
            body = {"ts": to_ms(now), "seq": seq, **body}
        topic = f"estate/v1/wanmei/{device.kind}/{device_id}/{channel}"
        return Inbound(topic, json.dumps(body).encode(), 1, False, to_ms(now))

    def run(self, seconds: int, *, every_s: int = 10, devices: list[str] | None = None, tick_s: int = 1) -> None:
        """Every device reports every `every_s` seconds of simulated time; timers tick every `tick_s`."""
        devices = devices if devices is not None else sorted(SITE.devices)
        for second in range(0, seconds, tick_s):
            self.clock.advance(tick_s)
            if second % every_s == 0:
                self.pipeline.process([self.message(d) for d in devices], self.clock.now())
            self.pipeline.tick(self.clock.now())

    def tickets(self) -> list[TicketRow]:
        with self.database.session() as session:
            rows = list(session.scalars(select(TicketRow).order_by(TicketRow.id)))
            for row in rows:
                session.expunge(row)
            return rows

    def view(self, ticket_id: int) -> Any:
        with self.database.session() as session:
            row = session.get(TicketRow, ticket_id)
            assert row is not None
            return view_of(row)

    def act(self, ticket_id: int, *events: tuple[EventType, str, dict[str, Any]]) -> None:
        with self.database.session() as session:
            for kind, actor, data in events:
                row = session.get(TicketRow, ticket_id)
                append_event(session, row, TicketEvent(kind, self.clock.now(), actor, "现场处理", data))


@pytest.fixture
def database(database_url: str) -> Database:
    migrate(database_url)
    return Database(database_url)


def lights(circuit: str) -> list[str]:
    return sorted(d.id for d in SITE.devices.values() if d.circuit == circuit)


def summary(rows: list[TicketRow]) -> list[tuple[str, str, str]]:
    return sorted((r.subject_type, r.subject_id, r.fault) for r in rows)


def test_eight_lights_losing_supply_and_an_unrelated_lamp_failure(database: Database, tmp_path: Path) -> None:
    rig = Rig(database, tmp_path)
    rig.run(120)  # everything healthy and warmed up
    assert rig.tickets() == []
    c5 = lights("C5")
    other = lights("C1")[4]
    for i, device_id in enumerate(c5):  # staggered over 90 s
        rig.run(90 // 7 if i else 1)
        rig.overrides[device_id] = {"relay": False, "dim_pct": 0.0, "power_w": 0.0, "voltage_v": 0.5, "current_a": 0.0}
        if i == 3:
            rig.overrides[other] = {"power_w": 0.2}
    rig.run(600)
    tickets = rig.tickets()
    assert summary(tickets) == [("circuit", "C5", "circuit_outage"), ("device", other, "lamp_failure")]
    outage = next(t for t in tickets if t.fault == "circuit_outage")
    assert sorted(rig.view(outage.id).device_ids) == c5
    assert outage.severity == "P1" and outage.teams == ["property", "grid"]


def test_one_light_of_the_circuit_failing_alone_is_a_lamp_failure(database: Database, tmp_path: Path) -> None:
    rig = Rig(database, tmp_path)
    rig.run(120)
    one = lights("C5")[2]
    rig.overrides[one] = {"power_w": 0.3}
    rig.run(300)
    assert summary(rig.tickets()) == [("device", one, "lamp_failure")]


def test_trapped_during_the_buildings_power_loss_is_p0_at_once_and_linked(database: Database, tmp_path: Path) -> None:
    rig = Rig(database, tmp_path)
    rig.run(60)
    b5 = sorted(d.id for d in SITE.devices.values() if d.kind == "elevator" and d.building == "B5")
    for device_id in b5:
        rig.overrides[device_id] = {"mains": False, "mode": "emergency_power"}
    rig.run(120)
    (building,) = [t for t in rig.tickets() if t.fault == "building_power_loss"]
    assert building.subject_id == "B5" and building.severity == "P1"
    # A car stuck between floors, doors closed, someone inside: P0 after its 30 s, never held back.
    rig.overrides[b5[0]] |= {"floor": 7, "door_zone": False, "occupied": True, "moving": False, "door": "closed"}
    rig.run(45, every_s=5, devices=b5)
    trapped = [t for t in rig.tickets() if t.fault == "trapped"]
    assert len(trapped) == 1 and trapped[0].severity == "P0"
    assert trapped[0].parent_id == building.id
    assert trapped[0].teams == ["elevator_contractor", "property"]
    assert summary(rig.tickets()) == [("building", "B5", "building_power_loss"), ("device", b5[0], "trapped")]


def resolve(rig: Rig, ticket_id: int, technician: str) -> None:
    rig.act(ticket_id, (EventType.ACKNOWLEDGED, technician, {"team": "property"}), (EventType.STARTED, technician, {}),
            (EventType.RESOLVED, technician, {}))
    view = rig.view(ticket_id)
    assert view.status is TicketStatus.RESOLVED and view.assignee == technician
    resolution = Resolution(ticket_id, "wanmei", view.subject, view.fault, "streetlight", view.device_ids, rig.clock.now())
    rig.pipeline.tick_with(rig.engine.sync_resolutions([resolution], rig.clock.now()), rig.clock.now())


def repaired_lamp(rig: Rig, light: str, technician: str) -> TicketRow:
    """A lamp fails, gets its ticket, is repaired (lit again) and the technician resolves it."""
    rig.run(60, every_s=30)
    rig.overrides[light] = {"power_w": 0.2}
    rig.run(120, every_s=30)
    (ticket,) = rig.tickets()
    rig.overrides.pop(light)
    rig.run(60, every_s=30)
    resolve(rig, ticket.id, technician)
    return ticket


def test_repair_soak_verify_close(database: Database, tmp_path: Path) -> None:
    rig = Rig(database, tmp_path)
    light = lights("C1")[1]
    ticket = repaired_lamp(rig, light, "wang")
    # The rest of this night is not the soak: the next full night is (it ends about 35 h from now).
    rig.run(36 * 3600, every_s=60, tick_s=60, devices=[light])
    view = rig.view(ticket.id)
    assert view.status is TicketStatus.CLOSED
    with database.session() as session:
        row = session.get(TicketRow, ticket.id)
        assert row is not None
        types = [e.type for e in row.events]
    assert types[-2:] == ["verified", "closed"]


def test_relapse_during_the_soak_reopens_to_the_same_technician(database: Database, tmp_path: Path) -> None:
    rig = Rig(database, tmp_path)
    light = lights("C1")[1]
    ticket = repaired_lamp(rig, light, "wang")
    rig.run(22 * 3600, every_s=60, tick_s=60, devices=[light])  # into the next night's soak
    assert rig.view(ticket.id).status is TicketStatus.RESOLVED
    rig.overrides[light] = {"power_w": 0.2}
    rig.run(600, every_s=60, tick_s=60, devices=[light])
    view = rig.view(ticket.id)
    assert view.status is TicketStatus.OPEN and view.reopen_count == 1 and view.assignee == "wang"
    assert [t.id for t in rig.tickets() if t.fault == "lamp_failure"] == [ticket.id]  # the same ticket
    assert view.subject == Subject("device", light)


def test_a_residents_ticket_on_a_light_is_verified_by_the_lights_whole_health(database: Database, tmp_path: Path) -> None:
    """A resident's `light_out` has no detector of its own: the light healthy through its night verifies it."""
    rig = Rig(database, tmp_path)
    light = lights("C1")[3]
    rig.run(60, every_s=30, devices=[light])
    now = rig.clock.now()
    opened = {"site": "wanmei", "subject_type": "device", "subject_id": light, "fault": "light_out", "severity": "P2",
              "teams": ["grid"], "source": "resident", "device_ids": [light], "ack_due_at": now.isoformat(),
              "start_due_at": None, "resolve_due_at": now.isoformat()}
    with database.session() as session:
        row = append_event(session, None, TicketEvent(EventType.OPENED, now, "resident", "路灯不亮", opened))
        ticket_id = row.id
    rig.act(ticket_id, (EventType.ACKNOWLEDGED, "zhou", {"team": "grid"}), (EventType.RESOLVED, "zhou", {}))
    view = rig.view(ticket_id)
    resolution = Resolution(ticket_id, "wanmei", view.subject, view.fault, "streetlight", view.device_ids, now)
    rig.pipeline.tick_with(rig.engine.sync_resolutions([resolution], now), now)
    rig.run(36 * 3600, every_s=60, tick_s=60, devices=[light])
    assert rig.view(ticket_id).status is TicketStatus.CLOSED
