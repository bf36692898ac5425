"""Residents' reports (一键报修) and mobile grid officers' hazards, on SQLite and PostgreSQL.

The app runs in-process with its real lifespan (the `api` fixture of test_api.py); tickets are
seeded through the storage layer as the gateway writes them; the clock is moved, never slept on.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from integration.test_api import NOW, Api
from linli.storage import ResidentReport, TicketRow
from linli.tickets import EventType

CONTACT = "13800000000"
REPORTS = "/api/v1/public/reports"


def report(api: Api, **fields: Any) -> Any:
    body = {"site": "wanmei", "category": "light_out", "description": "广场7号灯晚上不亮", "contact": CONTACT, **fields}
    return api.client.post(REPORTS, json=body)


def ticket_row(api: Api, ticket_id: int) -> TicketRow:
    with api.db.sessions() as session:
        row = session.get(TicketRow, ticket_id)
        assert row is not None
        _ = row.events  # loaded before the session closes
        session.expunge(row)
        return row


def count(api: Api, model: type[Any]) -> int:
    with api.db.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_a_report_on_a_light_with_an_open_ticket_joins_that_ticket(api: Api) -> None:
    open_ticket = api.ticket("SL-07", "lamp_failure")

    response = report(api, device_id="SL-07")
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["ticket_id"] == open_ticket
    assert created["duplicate_of"] == open_ticket
    assert count(api, TicketRow) == 1  # no second ticket

    row = ticket_row(api, open_ticket)
    joined = row.events[-1]
    assert (joined.type, joined.actor, joined.to_status) == ("commented", "resident", "open")
    assert "广场7号灯晚上不亮" in (joined.note or "")
    assert CONTACT not in (joined.note or "") and CONTACT not in str(joined.data)  # the contact stays in the report
    assert row.source == "detector" and row.teams == ["property"]  # the ticket is the crew's still

    # the reporter follows that ticket's progress with the report's id
    api.event(open_ticket, EventType.ACKNOWLEDGED, "li", team="property")
    progress = api.client.get(f"{REPORTS}/{created['id']}")
    assert progress.status_code == 200
    body = progress.json()
    assert body["ticket"]["id"] == open_ticket
    assert body["ticket"]["status"] == "acknowledged"
    assert [step["status"] for step in body["ticket"]["progress"]] == ["open", "acknowledged"]
    assert body["ticket"]["fault_name"] == {"zh": "灯具不亮", "en": "Lamp failure"}


def test_a_report_on_a_healthy_light_opens_a_ticket_for_the_grid_centre(api: Api) -> None:
    first = report(api, device_id="SL-03", description="3号灯一直闪")
    assert first.status_code == 201, first.text
    created = first.json()
    assert created["duplicate_of"] is None
    row = ticket_row(api, created["ticket_id"])
    assert (row.site, row.subject_type, row.subject_id, row.device_ids) == ("wanmei", "device", "SL-03", ["SL-03"])
    assert (row.source, row.teams, row.fault, row.status, row.severity) == ("resident", ["grid"], "light_out", "open", "P2")
    assert row.ack_due_at - row.opened_at <= timedelta(hours=24)  # the 24-hour response promise
    assert row.opened_at == NOW
    assert row.events[0].actor == "resident"

    # a neighbour reporting the same light joins the ticket the first report opened
    second = report(api, device_id="SL-03", category="light_flicker", description="闪烁", contact=None)
    assert second.status_code == 201
    assert second.json()["ticket_id"] == created["ticket_id"]
    assert second.json()["duplicate_of"] == created["ticket_id"]
    assert count(api, TicketRow) == 1
    assert second.json()["id"] != created["id"]
    assert len(created["id"]) >= 24  # unguessable


def test_a_report_with_no_device_goes_to_the_grid_centre_and_an_elevator_rescue_to_the_contractor(api: Api) -> None:
    response = report(api, category="other", description="3栋门口积水", location={"text": "3栋门口"})
    assert response.status_code == 201, response.text
    row = ticket_row(api, response.json()["ticket_id"])
    assert (row.subject_type, row.device_id, row.device_ids, row.teams) == ("place", None, [], ["grid"])
    assert row.title == "3栋门口 · 其他问题"

    trapped = report(api, device_id="EL-1A", category="elevator_trapped", description="有人被困在1A电梯")
    assert trapped.status_code == 201
    rescue = ticket_row(api, trapped.json()["ticket_id"])
    assert (rescue.severity, rescue.teams) == ("P0", ["elevator_contractor", "grid"])
    assert rescue.ack_due_at - rescue.opened_at == timedelta(minutes=5)


def test_reports_that_do_not_fit_are_refused_with_a_reason_and_store_nothing(api: Api) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"device_id": "SL-404"}, "no device"),
        ({"site": "nowhere"}, "not found"),
        ({"device_id": "EL-1A"}, "not about a elevator"),  # light_out on an elevator
        ({"category": "light_out"}, "needs the device_id"),
        ({"category": "fire"}, "category"),
        ({"description": ""}, "description"),
        ({"description": "a\x00b"}, "description"),
        ({"contact": "1" * 129}, "contact"),
        ({"category": "hazard", "location": {"x": 10}}, "both x and y"),
        ({"category": "hazard", "location": {"x": 1001, "y": 10}}, "off the site plan"),
        ({"unexpected": 1, "device_id": "SL-07"}, "unexpected"),
    ]
    for fields, why in cases:
        response = report(api, **fields)
        assert response.status_code == 422, (fields, response.text)
        assert why in response.json()["detail"], (fields, response.json())
    bad_json = api.client.post(REPORTS, content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 422
    as_text = api.client.post(REPORTS, content=b"site=wanmei", headers={"Content-Type": "text/plain"})
    assert as_text.status_code == 415
    assert count(api, ResidentReport) == 0
    assert count(api, TicketRow) == 0


def test_a_mobile_grid_officer_reports_a_hazard_at_a_place_on_the_plan(api: Api) -> None:
    off_plan = api.client.post("/api/v1/public/hazards", json={
        "site": "wanmei", "description": "井盖缺失", "location": {"x": 500, "y": 700.5},
    })
    assert off_plan.status_code == 422
    assert "off the site plan" in off_plan.json()["detail"]
    nowhere = api.client.post("/api/v1/public/hazards", json={"site": "wanmei", "description": "井盖缺失",
                                                               "location": {"text": "北门"}})
    assert nowhere.status_code == 422

    response = api.client.post("/api/v1/public/hazards", data={
        "site": "wanmei", "description": "井盖缺失，晚上看不见", "x": "500", "y": "350", "place": "北门外人行道",
    }, files={"photos": ("manhole.png", tiny_png(), "image/png")})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["photos"] == 1
    row = ticket_row(api, created["ticket_id"])
    assert (row.source, row.teams, row.fault, row.subject_type) == ("grid_officer", ["grid"], "hazard", "place")
    assert row.events[0].actor == "grid_officer"
    with api.db.sessions() as session:
        stored = session.get(ResidentReport, created["id"])
        assert stored is not None
        assert (stored.source, stored.location) == ("grid_officer", {"x": 500.0, "y": 350.0, "text": "北门外人行道"})
    public = api.client.get(f"{REPORTS}/{created['id']}").json()
    assert public["source"] == "grid_officer"
    assert public["category_name"] == {"zh": "安全隐患", "en": "Safety hazard"}


def tiny_png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 10)).save(out, "PNG")
    return out.getvalue()


def test_the_rate_limits_hold_per_client_and_per_device_and_lift_with_time(api: Api) -> None:
    api.settings.report_limit_per_ip = 3
    api.settings.report_limit_per_device = 100
    for n in range(3):
        assert report(api, device_id="SL-07", description=f"第{n}次").status_code == 201
    refused = report(api, device_id="SL-07")
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert count(api, ResidentReport) == 3
    # a header does not make another client (uvicorn trusts X-Forwarded-For from the local proxy only)...
    spoofed = api.client.post(REPORTS, json={"site": "wanmei", "category": "other", "description": "x"},
                              headers={"X-Forwarded-For": "203.0.113.9"})
    assert spoofed.status_code == 429
    # ...another address is one, and is not held back; an IPv6 household counts once by its /64
    other = TestClient(api.client.app, client=("203.0.113.9", 50000))
    assert other.post(REPORTS, json={"site": "wanmei", "category": "other", "description": "x"}).status_code == 201
    for host in ("2001:db8:0:1::1", "2001:db8:0:1::2", "2001:db8:0:1:ffff::3"):
        household = TestClient(api.client.app, client=(host, 50000))
        assert household.post(REPORTS, json={"site": "wanmei", "category": "other", "description": host}).status_code == 201
    fourth = TestClient(api.client.app, client=("2001:db8:0:1::4", 50000))
    assert fourth.post(REPORTS, json={"site": "wanmei", "category": "other", "description": "4"}).status_code == 429

    api.clock.advance(61 * 60)
    assert report(api, device_id="SL-07").status_code == 201

    # per device: everyone together may report one light only so often
    api.clock.advance(61 * 60)
    api.settings.report_limit_per_ip = 100
    api.settings.report_limit_per_device = 2
    assert report(api, device_id="SL-05").status_code == 201
    assert report(api, device_id="SL-05").status_code == 201
    assert report(api, device_id="SL-05").status_code == 429
    assert report(api, device_id="SL-06").status_code == 201


def test_no_public_answer_carries_the_contact_but_staff_who_call_back_see_it(api: Api) -> None:
    created = report(api, device_id="SL-07").json()
    answers = [
        api.client.get(f"{REPORTS}/{created['id']}"),
        api.client.get("/api/v1/public/status", params={"site": "wanmei"}),
    ]
    for answer in answers:
        assert answer.status_code == 200
        assert CONTACT not in answer.text
    assert "contact" not in answers[0].json()

    manager = api.user("zhao", "manager")
    staff = api.client.get("/api/v1/resident-reports", params={"site": "wanmei"}, headers=manager)
    assert staff.status_code == 200
    assert [(r["id"], r["contact"]) for r in staff.json()["items"]] == [(created["id"], CONTACT)]
    viewer = api.user("committee", "viewer")
    assert api.client.get("/api/v1/resident-reports", headers=viewer).json()["items"][0]["contact"] is None
    elsewhere = api.user("b-manager", "manager", sites=("site-b",))
    assert api.client.get("/api/v1/resident-reports", headers=elsewhere).json() == {"items": [], "total": 0}
    assert api.client.get("/api/v1/resident-reports").status_code == 401

    assert api.client.get(f"{REPORTS}/{'x' * 24}").status_code == 404
    assert api.client.get(f"{REPORTS}/{created['id'][:-1]}").status_code == 404


def test_reports_arriving_together_on_a_healthy_light_open_one_ticket(api: Api) -> None:
    api.settings.report_limit_per_ip = 100
    clients = [TestClient(api.client.app, client=(f"198.51.100.{n}", 50000)) for n in range(6)]
    body = {"site": "wanmei", "device_id": "SL-09", "category": "light_out", "description": "不亮"}
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda c: c.post(REPORTS, json=body), clients))
    assert [a.status_code for a in answers] == [201] * 6, [a.text for a in answers]
    assert len({a.json()["ticket_id"] for a in answers}) == 1
    assert sum(a.json()["duplicate_of"] is None for a in answers) == 1
    assert count(api, TicketRow) == 1
