"""The staff workflow over HTTP, on SQLite and PostgreSQL: technicians' actions on their teams' tickets,
manual tickets, list filters and sorting, accounts, teams on duty, and the secrets and tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from api.security import create_access_token
from integration.test_api import NOW, Api, aware
from linli.settings import DEV_SECRET, Settings
from linli.tickets import EventType


def post(api: Api, url: str, headers: dict[str, str], body: dict[str, Any] | None = None) -> Any:
    return api.client.post(url, headers=headers, json=body)


def test_a_technician_works_a_ticket_through_and_every_step_is_in_its_history(api: Api) -> None:
    crew = api.user("zhao", "technician", teams=("property",))
    ticket_id = api.ticket("SL-07", "lamp_failure")
    url = f"/api/v1/tickets/{ticket_id}"

    api.clock.advance(60)
    started = post(api, f"{url}/start", crew, {"note": "到场"})
    assert started.status_code == 200, started.text
    assert (started.json()["status"], started.json()["assignee"]) == ("in_progress", "zhao")
    no_reason = post(api, f"{url}/hold", crew, {})
    assert no_reason.status_code == 422
    assert "reason" in no_reason.json()["detail"]
    wrong = post(api, f"{url}/resume", crew)
    assert wrong.status_code == 409
    assert "in_progress" in wrong.json()["detail"]

    version = api.client.get(url, headers=crew).json()["version"]
    held = post(api, f"{url}/hold", crew, {"reason": "等待备件", "version": version}).json()
    assert held["status"] == "on_hold"
    stale = post(api, f"{url}/resume", crew, {"version": version})  # what we saw is gone
    assert stale.status_code == 409
    assert "version" in stale.json()["detail"]
    api.clock.advance(3600)
    resumed = post(api, f"{url}/resume", crew, {"version": held["version"]}).json()
    assert aware(resumed["resolve_due_at"]) == aware(held["resolve_due_at"]) + timedelta(hours=1)  # the clock stood still
    assert post(api, f"{url}/comments", crew, {"note": "驱动已换"}).status_code == 200
    bad_photo = post(api, f"{url}/resolve", crew, {"note": "fixed", "photos": ["../etc/passwd"]})
    assert bad_photo.status_code == 422
    resolved = post(api, f"{url}/resolve", crew, {"note": "更换驱动", "photos": ["u_1", "u_2"]})
    assert resolved.status_code == 200
    ticket = resolved.json()
    assert ticket["status"] == "resolved"
    assert aware(ticket["resolved_at"]) == NOW + timedelta(seconds=3660)
    steps = [(h["type"], h["actor"], h["from"], h["to"], h["note"]) for h in ticket["history"]]
    assert steps[1:] == [
        ("started", "zhao", "open", "in_progress", "到场"),
        ("held", "zhao", "in_progress", "on_hold", "等待备件"),
        ("resumed", "zhao", "on_hold", "in_progress", None),
        ("commented", "zhao", "in_progress", "in_progress", "驱动已换"),
        ("resolved", "zhao", "in_progress", "resolved", "更换驱动"),
    ]
    assert post(api, f"{url}/start", crew).status_code == 409  # resolved: the soak decides now
    closed = post(api, f"{url}/close", api.admin)
    assert closed.status_code == 409
    assert "verifies" in closed.json()["detail"]


def test_technicians_see_and_act_on_their_own_teams_tickets_only(api: Api) -> None:
    lamp = api.ticket("SL-07", "lamp_failure")
    lift = api.ticket("EL-1A", "door_fault")
    crew = api.user("zhao", "technician", teams=("property",))
    contractor = api.user("li", "technician", teams=("elevator_contractor",))
    grid = api.user("wang", "grid_officer")

    listed = api.client.get("/api/v1/tickets", headers=crew).json()
    assert (listed["total"], [t["id"] for t in listed["items"]]) == (1, [lamp])
    assert [t["id"] for t in api.client.get("/api/v1/tickets", headers=contractor).json()["items"]] == [lift]
    assert api.client.get("/api/v1/tickets", headers=grid).json()["total"] == 2  # grid officers see the site's tickets
    hidden = api.client.get(f"/api/v1/tickets/{lift}", headers=crew)
    assert hidden.status_code == 403
    for action, body in (("start", None), ("comments", {"note": "x"}), ("hold", {"reason": "x"})):
        assert post(api, f"/api/v1/tickets/{lift}/{action}", crew, body).status_code == 403
        assert post(api, f"/api/v1/tickets/{lamp}/{action}", grid, body).status_code == 403  # grid is not on it
    assert post(api, f"/api/v1/tickets/{lift}/start", contractor).status_code == 200


def test_assign_cancel_and_close(api: Api) -> None:
    manager = api.user("boss", "manager")
    crew = api.user("zhao", "technician", teams=("property",))
    api.user("qian", "technician", teams=("property",))
    api.user("li", "technician", teams=("elevator_contractor",))
    api.user("far", "technician", teams=("property",), sites=("site-b",))
    ticket_id = api.ticket("SL-07", "lamp_failure")
    url = f"/api/v1/tickets/{ticket_id}"

    assert post(api, f"{url}/assign", manager, {"assignee": "li"}).status_code == 422  # not on the ticket's teams
    assert post(api, f"{url}/assign", manager, {"assignee": "far"}).status_code == 422  # another site
    assert post(api, f"{url}/assign", manager, {"assignee": "ghost"}).status_code == 422
    assigned = post(api, f"{url}/assign", manager, {"assignee": "qian", "note": "你去"}).json()
    assert assigned["assignee"] == "qian"
    assert (assigned["history"][-1]["type"], assigned["history"][-1]["note"]) == ("assigned", "你去")
    assert post(api, f"{url}/assign", crew, {"assignee": "zhao"}).json()["assignee"] == "zhao"
    assert post(api, f"{url}/assign", crew, {"assignee": None}).status_code == 403
    assert post(api, f"{url}/assign", manager, {"assignee": None}).json()["assignee"] is None

    assert post(api, f"{url}/cancel", crew, {"reason": "dup"}).status_code == 403
    assert post(api, f"{url}/cancel", manager, {}).status_code == 422
    cancelled = post(api, f"{url}/cancel", manager, {"reason": "误报 / false alarm"}).json()
    assert (cancelled["status"], cancelled["history"][-1]["note"]) == ("cancelled", "误报 / false alarm")
    again = post(api, f"{url}/cancel", manager, {"reason": "again"})
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]
    assert post(api, f"{url}/assign", manager, {"assignee": "zhao"}).status_code == 409

    place = post(api, "/api/v1/tickets", crew, {"site": "wanmei", "place": "中心广场", "title": "井盖松动"}).json()
    purl = f"/api/v1/tickets/{place['id']}"
    post(api, f"{purl}/start", crew)
    post(api, f"{purl}/resolve", crew, {"note": "已固定"})
    assert post(api, f"{purl}/close", crew).status_code == 403
    closed = post(api, f"{purl}/close", manager, {"note": "核查通过"}).json()
    assert (closed["status"], aware(closed["closed_at"])) == ("closed", NOW)


def test_staff_open_tickets_on_devices_and_places(api: Api) -> None:
    crew = api.user("zhao", "technician", teams=("property",))
    grid = api.user("wang", "grid_officer")
    viewer = api.user("owner", "viewer")

    device = post(api, "/api/v1/tickets", crew, {"device_id": "SL-01", "fault": "lamp_failure", "description": "巡查发现"})
    assert device.status_code == 201, device.text
    ticket = device.json()
    assert (ticket["site"], ticket["subject"], ticket["device_ids"]) == ("wanmei", {"type": "device", "id": "SL-01"}, ["SL-01"])
    assert (ticket["fault"], ticket["severity"], ticket["teams"], ticket["source"]) == (
        "lamp_failure", "P2", ["property"], "staff")
    assert aware(ticket["ack_due_at"]) == NOW + timedelta(hours=24)
    assert (ticket["history"][0]["actor"], ticket["history"][0]["note"]) == ("zhao", "巡查发现")
    duplicate = post(api, "/api/v1/tickets", crew, {"device_id": "SL-01", "fault": "lamp_failure"})
    assert duplicate.status_code == 409
    assert str(ticket["id"]) in duplicate.json()["detail"]

    hazard = post(api, "/api/v1/tickets", grid, {"place": "3号楼北侧", "title": "树枝压线 / branch on a cable",
                                                 "severity": "P1", "teams": ["property", "grid"]}).json()
    assert (hazard["subject"], hazard["device_id"], hazard["fault"], hazard["source"]) == (
        {"type": "place", "id": "3号楼北侧"}, None, "other", "grid_officer")
    assert (hazard["title"], hazard["severity"], hazard["teams"]) == ("树枝压线 / branch on a cable", "P1", ["property", "grid"])
    assert aware(hazard["start_due_at"]) == NOW + timedelta(hours=4)

    assert post(api, "/api/v1/tickets", viewer, {"place": "x", "title": "y"}).status_code == 403
    bad = [
        ({"device_id": "SL-01", "fault": "trapped"}, 422),  # an elevator's fault on a light
        ({"device_id": "SL-01", "fault": "made_up"}, 422),
        ({"device_id": "SL-01", "place": "x", "title": "y"}, 422),
        ({"place": "x"}, 422),
        ({"device_id": "SL-404", "fault": "lamp_failure"}, 404),
        ({"site": "site-b", "place": "x", "title": "y"}, 404),  # not one of the technician's sites
    ]
    for body, expected in bad:
        response = post(api, "/api/v1/tickets", crew, body)
        assert response.status_code == expected, (body, response.text)
        assert isinstance(response.json()["detail"], str)
    both = api.client.post("/api/v1/tickets", headers=api.admin, json={"place": "x", "title": "y"})
    assert both.status_code == 400  # the admin sees two sites


def test_ticket_list_filters_by_time_and_lateness_and_sorts(api: Api) -> None:
    old = api.ticket("SL-01", "lamp_failure", at=NOW - timedelta(hours=30))  # ack due 1 h after: missed
    fresh = api.ticket("SL-02", "lamp_failure", at=NOW - timedelta(minutes=30))  # ack due in 30 min
    lift = api.ticket("EL-1A", "trapped", at=NOW - timedelta(hours=2))  # acked, start due 4 h after: not yet
    api.event(lift, EventType.ACKNOWLEDGED, "li", team="elevator_contractor")
    held = api.ticket("SL-03", "lamp_failure", at=NOW - timedelta(hours=40))  # on hold: the fix clock stands still
    api.event(held, EventType.STARTED, "zhao")
    api.event(held, EventType.HELD, "zhao", "spare part")

    def ids(**params: Any) -> list[int]:
        response = api.client.get("/api/v1/tickets", params=params, headers=api.admin)
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["items"]]

    assert ids(overdue=True) == [old]
    assert set(ids(overdue=False)) == {fresh, lift, held}
    assert ids(opened_since=(NOW - timedelta(hours=3)).isoformat()) == [fresh, lift]
    assert ids(opened_until=(NOW - timedelta(hours=30)).isoformat()) == [held]
    assert ids(sort="opened_at") == [held, old, lift, fresh]
    assert ids(sort="ack_due_at") == [held, old, lift, fresh]
    assert ids(sort="-ack_due_at")[0] == fresh
    assert ids(sort="severity")[0] == lift
    assert ids(severity=["P0", "P2"], status=["open"]) == [fresh, old]
    assert api.client.get("/api/v1/tickets", params={"sort": "password"}, headers=api.admin).status_code == 422
    naive = api.client.get("/api/v1/tickets", params={"opened_since": "2026-11-26T10:00:00"}, headers=api.admin)
    assert naive.status_code == 422


def test_admins_manage_accounts_and_changes_apply_at_once(api: Api) -> None:
    created = api.client.post("/api/v1/users", headers=api.admin, json={
        "username": "zhao", "password": "long-enough-pw", "role": "technician", "teams": ["property"],
        "sites": ["wanmei"], "full_name": "赵师傅"})
    assert created.status_code == 201, created.text
    assert created.json() == {"username": "zhao", "role": "technician", "full_name": "赵师傅", "teams": ["property"],
                              "sites": ["wanmei"], "disabled": False, "created_at": created.json()["created_at"]}
    assert "password" not in created.text
    refused = [
        ({"username": "zhao", "password": "long-enough-pw", "role": "viewer", "sites": ["wanmei"]}, 409),
        ({"username": "a", "password": "short", "role": "viewer", "sites": ["wanmei"]}, 422),
        ({"username": "b", "password": "long-enough-pw", "role": "technician", "sites": ["wanmei"]}, 422),  # no team
        ({"username": "c", "password": "long-enough-pw", "role": "viewer", "sites": ["atlantis"]}, 422),
        ({"username": "d", "password": "long-enough-pw", "role": "viewer", "sites": []}, 422),
        ({"username": "e", "password": "long-enough-pw", "role": "viewer", "teams": ["grid"], "sites": ["wanmei"]}, 422),
        ({"username": "f", "password": "long-enough-pw", "role": "root", "sites": ["wanmei"]}, 422),
        ({"username": "g h", "password": "long-enough-pw", "role": "viewer", "sites": ["wanmei"]}, 422),
    ]
    for body, expected in refused:
        response = api.client.post("/api/v1/users", headers=api.admin, json=body)
        assert response.status_code == expected, (body, response.text)
    grid = api.client.post("/api/v1/users", headers=api.admin, json={
        "username": "wang", "password": "long-enough-pw", "role": "grid_officer", "sites": ["wanmei"]}).json()
    assert grid["teams"] == ["grid"]

    token = api.client.post("/api/v1/auth/token", data={"username": "zhao", "password": "long-enough-pw"}).json()
    zhao = {"Authorization": f"Bearer {token['access_token']}"}
    assert api.client.get("/api/v1/auth/me", headers=zhao).json()["sites"] == ["wanmei"]
    moved = api.client.patch("/api/v1/users/zhao", headers=api.admin, json={"sites": ["site-b"], "role": "manager"})
    assert (moved.json()["role"], moved.json()["teams"], moved.json()["sites"]) == ("manager", [], ["site-b"])
    me = api.client.get("/api/v1/auth/me", headers=zhao).json()  # the same token, the new scope
    assert (me["role"], me["sites"]) == ("manager", ["site-b"])
    listed = api.client.get("/api/v1/users", params={"site": "site-b"}, headers=api.admin).json()
    assert [u["username"] for u in listed["items"]] == ["admin", "zhao"]  # the bootstrapped admin has every site
    assert api.client.get("/api/v1/users", params={"role": "admin"}, headers=api.admin).json()["total"] == 1

    assert api.client.post("/api/v1/users/zhao/disable", headers=api.admin).json()["disabled"] is True
    assert api.client.get("/api/v1/auth/me", headers=zhao).status_code == 401
    again = api.client.post("/api/v1/auth/token", data={"username": "zhao", "password": "long-enough-pw"})
    assert again.status_code == 403
    assert api.client.patch("/api/v1/users/zhao", headers=api.admin,
                            json={"disabled": False, "password": "another-long-pw"}).status_code == 200
    assert api.client.post("/api/v1/auth/token", data={"username": "zhao", "password": "another-long-pw"}).status_code == 200

    last_admin = api.client.post("/api/v1/users/admin/disable", headers=api.admin)
    assert last_admin.status_code == 409
    assert api.client.patch("/api/v1/users/admin", headers=api.admin, json={"role": "viewer", "sites": ["wanmei"]}
                            ).status_code == 409
    assert api.client.patch("/api/v1/users/ghost", headers=api.admin, json={}).status_code == 404
    assert api.client.get("/api/v1/users", headers=zhao).status_code == 403  # enabled again, a manager now
    manager = api.user("boss", "manager")
    assert api.client.get("/api/v1/users", headers=manager).status_code == 403


def test_teams_say_who_is_on_duty_now(api: Api) -> None:
    from linli.sla import on_duty

    crew = api.user("zhao", "technician", teams=("property",))
    viewer = api.user("owner", "viewer")
    api.user("far", "technician", teams=("property",), sites=("site-b",))
    site = api.client.app.state.site_source.current["wanmei"]  # type: ignore[attr-defined]
    body = api.client.get("/api/v1/teams", params={"site": "wanmei"}, headers=crew).json()
    assert aware(body["at"]) == NOW
    teams = {t["team"]: t for t in body["items"]}
    assert set(teams) == {str(t) for t in site.spec.teams}
    for code, team in teams.items():
        assert [p["id"] for p in team["on_duty"]] == [p.id for p in on_duty(site, code, NOW)]
    assert teams["property"]["members"] == ["zhao"]
    assert any(p["on_duty"] for p in teams.values())
    api.clock.advance(12 * 3600)  # another shift
    later = {t["team"]: t for t in api.client.get("/api/v1/teams", params={"site": "wanmei"}, headers=crew).json()["items"]}
    for code, team in later.items():
        assert [p["id"] for p in team["on_duty"]] == [p.id for p in on_duty(site, code, NOW + timedelta(hours=12))]
    seen_by_viewer = api.client.get("/api/v1/teams", params={"site": "wanmei"}, headers=viewer).json()["items"]
    assert all(t["members"] == [] and all(p["phone"] is None for p in t["on_duty"]) for t in seen_by_viewer)
    assert api.client.get("/api/v1/teams", params={"site": "site-b"}, headers=crew).status_code == 404


def test_production_refuses_default_secrets_and_tokens_expire(api: Api) -> None:
    with pytest.raises(ValidationError, match="LINLI_SECRET_KEY"):
        Settings(_env_file=None, env="production")
    with pytest.raises(ValidationError, match="LINLI_SECRET_KEY"):
        Settings(_env_file=None, env="production", secret_key="short-but-not-default")
    assert Settings(_env_file=None, env="production", secret_key="x" * 32).secret_key != DEV_SECRET
    assert Settings(_env_file=None).secret_key == DEV_SECRET  # development may run with it

    issued = create_access_token("admin", api.settings, now=NOW.timestamp())
    assert issued.expires_in == api.settings.token_ttl_min * 60
    import time

    now = time.time()
    valid = create_access_token("admin", api.settings, now=now - issued.expires_in + 30).token
    assert api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {valid}"}).status_code == 200
    expired = create_access_token("admin", api.settings, now=now - issued.expires_in - 1).token
    response = api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
