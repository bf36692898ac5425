"""A recorded lamp replacement in the HTTP API: lamp age, energy baseline, lifecycle events.

Runs on SQLite and PostgreSQL with the app of ``test_api`` (two site files, both with an `SL-07`).
The lamp replacement is recorded by ``linli.ops.lifecycle.replace_lamp``, as ``linli device
replace-lamp`` does; other events are written as rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event

from integration.test_api import DEVICE_FIELDS, NOW, Api, aware
from linli.ops.lifecycle import COMMISSIONED, CONTROLLER_REPLACED, LAMP_REPLACED, replace_lamp
from linli.site import builtin_site_path, load_site
from linli.storage.models import DeviceLifecycleEvent

COMMISSIONED_AT = NOW - timedelta(days=2000)
REPLACED_AT = NOW - timedelta(days=1)
LAMP_FIELDS = {"lamp_age_hours", "lamp_replaced_at", "energy_baseline_since"}
EVENT_FIELDS = {"type", "at", "actor", "note"}


def lifecycle_row(api: Api, device_id: str, type_: str, at: datetime, *, site: str = "wanmei",
                  actor: str = "installer", note: str | None = None, **data: Any) -> None:
    with api.db.session() as session:
        session.add(DeviceLifecycleEvent(site=site, device_id=device_id, type=type_, at=at, actor=actor, note=note,
                                         data=data))


def get(api: Api, path: str, headers: dict[str, str] | None = None, **params: Any) -> dict[str, Any]:
    response = api.client.get(f"/api/v1{path}", params=params, headers=api.admin if headers is None else headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def listed(api: Api, device_id: str, site: str = "wanmei") -> dict[str, Any]:
    items: list[dict[str, Any]] = get(api, "/devices", site=site, limit=1000)["items"]
    [item] = [item for item in items if item["id"] == device_id]
    return item


def test_a_recorded_lamp_replacement_shows_in_the_device(api: Api) -> None:
    api.state("SL-07", last={"relay": True, "power_w": 38.0, "voltage_v": 230.0, "burn_hours": 51234})
    api.state("SL-07", site="site-b", last={"relay": True, "power_w": 28.0, "burn_hours": 51234})
    lifecycle_row(api, "SL-07", COMMISSIONED, COMMISSIONED_AT, note="first install")

    before = get(api, "/devices/SL-07", site="wanmei")
    assert before["lamp_age_hours"] == 51234
    assert (before["lamp_replaced_at"], before["energy_baseline_since"]) == (None, None)
    assert before["lifecycle"] == [
        {"type": COMMISSIONED, "at": before["lifecycle"][0]["at"], "actor": "installer", "note": "first install"}
    ]
    assert aware(before["lifecycle"][0]["at"]) == COMMISSIONED_AT

    outcome = replace_lamp(api.db, load_site(builtin_site_path()), "SL-07", 51000, actor="wang", note="new LED module",
                           now=REPLACED_AT)
    assert "51000" in outcome.lines[0]

    after = get(api, "/devices/SL-07", site="wanmei")
    assert after["lamp_age_hours"] == 234
    assert aware(after["lamp_replaced_at"]) == REPLACED_AT
    assert aware(after["energy_baseline_since"]) == REPLACED_AT
    assert [(e["type"], e["actor"], e["note"]) for e in after["lifecycle"]] == [
        (COMMISSIONED, "installer", "first install"), (LAMP_REPLACED, "wang", "new LED module"),
    ]
    assert all(set(e) == EVENT_FIELDS for e in after["lifecycle"])
    assert aware(after["lifecycle"][1]["at"]) == REPLACED_AT

    in_list = listed(api, "SL-07")
    assert set(in_list) == DEVICE_FIELDS | LAMP_FIELDS  # the lifecycle list is for the detail only
    assert (in_list["lamp_age_hours"], aware(in_list["lamp_replaced_at"])) == (234, REPLACED_AT)
    assert aware(in_list["energy_baseline_since"]) == REPLACED_AT

    other = get(api, "/devices/SL-07", site="site-b")  # the other site's SL-07 had no replacement
    assert (other["lamp_age_hours"], other["lamp_replaced_at"], other["lifecycle"]) == (51234, None, [])
    assert listed(api, "SL-07", site="site-b")["lamp_age_hours"] == 51234

    # a new controller restarts the energy baseline, not the lamp's age
    controller_at = NOW - timedelta(hours=2)
    lifecycle_row(api, "SL-07", CONTROLLER_REPLACED, controller_at, actor="li")
    again = get(api, "/devices/SL-07", site="wanmei")
    assert (again["lamp_age_hours"], aware(again["lamp_replaced_at"])) == (234, REPLACED_AT)
    assert aware(again["energy_baseline_since"]) == controller_at
    assert [e["type"] for e in again["lifecycle"]] == [COMMISSIONED, LAMP_REPLACED, CONTROLLER_REPLACED]

    history = get(api, "/devices/SL-07/lifecycle", site="wanmei")
    assert (history["site"], history["device_id"]) == ("wanmei", "SL-07")
    assert history["items"] == again["lifecycle"]


def test_lamp_fields_are_null_when_unknown_or_not_a_streetlight(api: Api) -> None:
    api.state("SL-01", last={"relay": True, "power_w": 38.0, "voltage_v": 230.0})  # reports no burn_hours
    lifecycle_row(api, "SL-01", LAMP_REPLACED, REPLACED_AT, burn_hours_offset=100)
    api.state("EL-1A", "elevator", last={"floor": 3, "mode": "normal"})
    lifecycle_row(api, "EL-1A", CONTROLLER_REPLACED, REPLACED_AT)

    light = get(api, "/devices/SL-01", site="wanmei")
    assert light["lamp_age_hours"] is None
    assert aware(light["lamp_replaced_at"]) == REPLACED_AT  # the replacement is known, the age is not
    never_heard = get(api, "/devices/SL-02", site="wanmei")
    assert (never_heard["lamp_age_hours"], never_heard["lamp_replaced_at"], never_heard["lifecycle"]) == (None, None, [])

    lift = get(api, "/devices/EL-1A")
    assert (lift["lamp_age_hours"], lift["lamp_replaced_at"], lift["energy_baseline_since"]) == (None, None, None)
    assert [e["type"] for e in lift["lifecycle"]] == [CONTROLLER_REPLACED]  # its history is still shown
    assert [e["type"] for e in get(api, "/devices/EL-1A/lifecycle")["items"]] == [CONTROLLER_REPLACED]


def test_lifecycle_is_scoped_to_the_callers_sites(api: Api) -> None:
    lifecycle_row(api, "SL-07", LAMP_REPLACED, REPLACED_AT, note="wanmei lamp", burn_hours_offset=51000)
    lifecycle_row(api, "SL-07", COMMISSIONED, COMMISSIONED_AT, site="site-b", note="site-b light")
    b_only = api.user("chen", "viewer", sites=("site-b",))
    wanmei_only = api.user("zhang", "viewer", sites=("wanmei",))

    for path in ("/api/v1/devices/SL-07", "/api/v1/devices/SL-07/lifecycle"):
        assert api.client.get(path, params={"site": "wanmei"}, headers=b_only).status_code == 404
        assert api.client.get(path, params={"site": "site-b"}, headers=wanmei_only).status_code == 404
        assert api.client.get(path, headers=api.admin).status_code == 400  # in both of the admin's sites
        assert api.client.get(path).status_code == 401
    assert api.client.get("/api/v1/devices/SL-404/lifecycle", headers=api.admin).status_code == 404

    assert [e["note"] for e in get(api, "/devices/SL-07/lifecycle", b_only)["items"]] == ["site-b light"]
    assert [e["note"] for e in get(api, "/devices/SL-07", b_only)["lifecycle"]] == ["site-b light"]
    assert [e["note"] for e in get(api, "/devices/SL-07/lifecycle", wanmei_only)["items"]] == ["wanmei lamp"]
    assert get(api, "/devices/SL-07", b_only)["lamp_replaced_at"] is None


def test_lifecycle_events_are_read_in_one_query_per_request(api: Api) -> None:
    for n in range(1, 11):
        device_id = f"SL-{n:02d}"
        api.state(device_id, last={"relay": True, "power_w": 38.0, "burn_hours": 1000 + n})
        lifecycle_row(api, device_id, LAMP_REPLACED, REPLACED_AT, burn_hours_offset=1000)
    lifecycle_row(api, "SL-07", LAMP_REPLACED, COMMISSIONED_AT, site="site-b", burn_hours_offset=1)

    engine = api.client.app.state.db.engine  # type: ignore[attr-defined]
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "device_lifecycle_events" in statement:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        items = get(api, "/devices", limit=1000)["items"]  # both sites
        assert len(statements) == 1
        ages = {(item["site"], item["id"]): item["lamp_age_hours"] for item in items}
        assert [ages[("wanmei", f"SL-{n:02d}")] for n in range(1, 11)] == list(range(1, 11))
        assert ages[("site-b", "SL-07")] is None  # no burn_hours reported there

        statements.clear()
        get(api, "/devices/SL-05", site="wanmei")
        assert len(statements) == 1
    finally:
        event.remove(engine, "before_cursor_execute", record)
