"""Commands to devices through the API, on SQLite and PostgreSQL with the real Mosquitto: published on the
device's `cmd` topic, stored as `sent`, and ended by the device's `cmd/ack` as the gateway's pipeline
records it (acked, failed), or by time (expired): the audit trail."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from gateway.broker import Inbound
from gateway.pipeline import Pipeline
from integration.test_api import NOW, Api
from linli.clock import to_ms
from linli.engine import Engine
from linli.site import SiteRegistry
from linli.tsdb import open_store

CMD_TOPIC = "estate/v1/wanmei/streetlight/SL-07/cmd"


def answer(pipeline: Pipeline, api: Api, kind: str, device_id: str, body: dict[str, Any], *, site: str = "wanmei") -> None:
    """The device's `cmd/ack`, through the gateway's pipeline as the broker delivers it."""
    now = api.clock.now()
    topic = f"estate/v1/{site}/{kind}/{device_id}/cmd/ack"
    pipeline.process([Inbound(topic, json.dumps({"ts": to_ms(now), **body}).encode(), 1, False, to_ms(now))], now)


def gateway(api: Api, tmp_path: Path) -> Pipeline:
    sites: SiteRegistry = api.client.app.state.site_source.current  # type: ignore[attr-defined]
    engine = Engine(sites, api.clock.now())
    return Pipeline(sites=sites, engine=engine, database=api.db, store=open_store(f"sqlite:///{tmp_path / 'gw-ts.db'}"))


def test_a_command_is_published_and_its_answer_recorded(api: Api, mosquitto: Any, listen: Any, tmp_path: Path) -> None:
    api.settings.mqtt_url = mosquitto.url
    technician = api.user("zhao", "technician", teams=("property",))
    device = listen(CMD_TOPIC)
    pipeline = gateway(api, tmp_path)

    response = api.client.post("/api/v1/devices/SL-07/commands", params={"site": "wanmei"}, headers=technician,
                               json={"action": "set_light", "params": {"relay": True, "dim_pct": 70}, "reason": "试灯"})
    assert response.status_code == 202, response.text
    sent = response.json()
    assert sent["status"] == "sent"
    message = device.expect("the command on the device's cmd topic", lambda m: m.topic == CMD_TOPIC)
    body = json.loads(message.payload)
    assert (body["id"], body["action"], body["params"]) == (sent["id"], "set_light", {"relay": True, "dim_pct": 70})
    assert body["expires_ts"] == to_ms(NOW + timedelta(minutes=5))

    command = api.client.get(f"/api/v1/commands/{sent['id']}", headers=api.admin).json()
    assert (command["status"], command["requested_by"], command["reason"], command["answered_at"]) == (
        "sent", "zhao", "试灯", None)

    answer(pipeline, api, "streetlight", "SL-07", {"id": sent["id"], "ok": True})
    acked = api.client.get(f"/api/v1/commands/{sent['id']}", headers=api.admin).json()
    assert (acked["status"], acked["error"]) == ("acked", None)
    api.clock.advance(600)
    assert api.client.get(f"/api/v1/commands/{sent['id']}", headers=api.admin).json()["status"] == "acked"

    # A device that says no; another device cannot answer for it; a duplicate answer changes nothing.
    refused = api.client.post("/api/v1/devices/SL-07/commands", params={"site": "wanmei"}, headers=technician,
                              json={"action": "refresh"}).json()["id"]
    answer(pipeline, api, "streetlight", "SL-08", {"id": refused, "ok": True})
    assert api.client.get(f"/api/v1/commands/{refused}", headers=api.admin).json()["status"] == "sent"
    answer(pipeline, api, "streetlight", "SL-07", {"id": refused, "ok": False, "error": "relay stuck"})
    answer(pipeline, api, "streetlight", "SL-07", {"id": refused, "ok": True})
    failed = api.client.get(f"/api/v1/commands/{refused}", headers=api.admin).json()
    assert (failed["status"], failed["error"]) == ("failed", "relay stuck")

    # No answer before it expires: expired; an answer after that does not make it acked.
    api.clock.advance(1)
    silent = api.client.post("/api/v1/devices/SL-07/commands", params={"site": "wanmei"}, headers=technician,
                             json={"action": "set_schedule", "params": {"on_offset_min": -10}, "ttl_s": 60}).json()["id"]
    api.clock.advance(59)
    assert api.client.get(f"/api/v1/commands/{silent}", headers=api.admin).json()["status"] == "sent"
    api.clock.advance(2)
    assert api.client.get(f"/api/v1/commands/{silent}", headers=api.admin).json()["status"] == "expired"
    answer(pipeline, api, "streetlight", "SL-07", {"id": silent, "ok": True})
    late = api.client.get(f"/api/v1/commands/{silent}", headers=api.admin).json()
    assert late["status"] == "expired"
    assert "after expiry" in late["error"]

    trail = api.client.get("/api/v1/devices/SL-07/commands", params={"site": "wanmei"}, headers=api.admin).json()
    assert trail["total"] == 3
    assert [(c["id"], c["status"]) for c in trail["items"]] == [(silent, "expired"), (refused, "failed"), (sent["id"], "acked")]
    other_site = api.client.get("/api/v1/devices/SL-07/commands", params={"site": "site-b"}, headers=api.admin).json()
    assert other_site["total"] == 0
    b_viewer = api.user("chen", "viewer", sites=("site-b",))
    assert api.client.get(f"/api/v1/commands/{sent['id']}", headers=b_viewer).status_code == 404


def test_commands_are_checked_before_anything_is_sent(api: Api, mosquitto: Any) -> None:
    api.settings.mqtt_url = mosquitto.url
    manager = api.user("boss", "manager")
    url = "/api/v1/devices/{}/commands"
    cases = [
        ("EL-1A", {"action": "set_light", "params": {"relay": True}}, 422, "elevator"),
        ("SL-01", {"action": "set_light", "params": {"relay": "on"}}, 422, "relay"),
        ("SL-01", {"action": "set_light", "params": {"relay": True, "dim_pct": 140}}, 422, "dim_pct"),
        ("SL-01", {"action": "set_light", "params": {"relay": True, "colour": "red"}}, 422, "colour"),
        ("CP-01", {"action": "set_available", "params": {}}, 422, "available"),
        ("SL-01", {"action": "set_schedule", "params": {"on_offset_min": 9999}}, 422, "on_offset_min"),
        ("SL-01", {"action": "reboot"}, 422, "action"),
        ("SL-404", {"action": "refresh"}, 404, "SL-404"),
    ]
    for device_id, body, expected, word in cases:
        response = api.client.post(url.format(device_id), headers=manager, json=body)
        assert response.status_code == expected, (device_id, body, response.text)
        assert word in response.json()["detail"], response.text
    assert api.client.get("/api/v1/devices/SL-01/commands", headers=manager).json()["total"] == 0
    ok = api.client.post(url.format("CP-01"), headers=manager, json={"action": "set_available", "params": {"available": False}})
    assert ok.status_code == 202

    # Technicians command the kinds their team maintains; viewers and grid officers none.
    contractor = api.user("li", "technician", teams=("elevator_contractor",))
    refused = api.client.post(url.format("SL-01"), headers=contractor, json={"action": "refresh"})
    assert refused.status_code == 403
    assert "property" in refused.json()["detail"]
    assert api.client.post(url.format("EL-1A"), headers=contractor, json={"action": "refresh"}).status_code == 202
    for role in ("viewer", "grid_officer"):
        headers = api.user(f"{role}-1", role)
        assert api.client.post(url.format("SL-01"), headers=headers, json={"action": "refresh"}).status_code == 403


def test_a_command_the_broker_cannot_take_is_recorded_as_failed(api: Api) -> None:
    manager = api.user("boss", "manager")  # the fixture's broker port is closed
    response = api.client.post("/api/v1/devices/SL-01/commands", headers=manager, json={"action": "refresh"})
    assert response.status_code == 503
    assert "not sent" in response.json()["detail"]
    trail = api.client.get("/api/v1/devices/SL-01/commands", headers=manager).json()
    assert trail["total"] == 1
    assert trail["items"][0]["status"] == "failed"
    assert trail["items"][0]["error"].startswith("not sent")


def test_automatic_actions_of_the_gateway_are_in_the_audit_trail(api: Api, tmp_path: Path) -> None:
    from linli.engine.decisions import DeviceCommand

    sites: SiteRegistry = api.client.app.state.site_source.current  # type: ignore[attr-defined]
    published: list[tuple[str, bytes]] = []
    pipeline = Pipeline(sites=sites, engine=Engine(sites, api.clock.now()), database=api.db,
                        store=open_store(f"sqlite:///{tmp_path / 'gw-ts.db'}"), publish=lambda t, p: published.append((t, p)))
    pipeline.tick_with([DeviceCommand("wanmei", "CP-01", "set_available", {"available": False}, "ground failure")], NOW)
    commands = [(t, p) for t, p in published if t.endswith("/cmd")]  # besides, live updates on linli/v1/...
    assert [t for t, _ in commands] == ["estate/v1/wanmei/charger/CP-01/cmd"]
    command_id = json.loads(commands[0][1])["id"]
    trail = api.client.get("/api/v1/devices/CP-01/commands", headers=api.admin).json()["items"]
    assert [(c["id"], c["requested_by"], c["reason"], c["status"]) for c in trail] == [
        (command_id, "system", "ground failure", "sent")]
    answer(pipeline, api, "charger", "CP-01", {"id": command_id, "ok": True})
    assert api.client.get(f"/api/v1/commands/{command_id}", headers=api.admin).json()["status"] == "acked"
