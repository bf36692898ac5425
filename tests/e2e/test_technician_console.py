"""The technician console (/tech) on a phone, in headless Chromium against the running demo: a
technician of the property crew signs in, sees the ticket the simulator's lamp failure raised (over
MQTT, through the gateway), acknowledges it for their team, starts, resolves it with a photo chosen
through the camera input; a ticket of two teams is acknowledged for the technician's own team only;
the English toggle; a 360 px phone; no polling.

Screenshots land in docs/screenshots/.
"""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.e2e.conftest import BrowserPage, assert_no_polling, screenshot
from tests.e2e.test_demo import Demo, eventually

TECH = "zhao"
TECH_PASSWORD = "zhao-repairs-lights"
PHONE = {"width": 390, "height": 844}
SCENARIO_LIGHT = "SL-07"  # the demo scenario's lamp failure, 15 s in (the property crew's)


@pytest.fixture(scope="module")
def technician(live_demo: Demo) -> str:
    """A technician of the property crew at Wanmei, made by the admin through the API."""
    answer = httpx.post(f"{live_demo.base}/api/v1/users", headers=live_demo.token(), timeout=10, json={
        "username": TECH, "password": TECH_PASSWORD, "role": "technician", "full_name": "赵师傅",
        "teams": ["property"], "sites": ["wanmei"],
    })
    assert answer.status_code in (201, 409), answer.text
    return TECH


def tech_token(demo: Demo) -> dict[str, str]:
    answer = httpx.post(f"{demo.base}/api/v1/auth/token", data={"username": TECH, "password": TECH_PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def ticket_of(demo: Demo, ticket_id: int) -> Any:
    return demo.get(f"/api/v1/tickets/{ticket_id}")


def scenario_ticket(demo: Demo) -> int:
    """The open lamp-failure ticket the scenario's fault raised on SL-07 (simulator → MQTT → gateway)."""
    def found() -> int | None:
        items = demo.get("/api/v1/tickets", device_id=SCENARIO_LIGHT, fault="lamp_failure", status="open")["items"]
        return items[0]["id"] if items else None

    ticket_id = int(eventually(found, f"an open lamp_failure ticket on {SCENARIO_LIGHT}", timeout=120))
    assert ticket_of(demo, ticket_id)["teams"][0] == "property"
    return ticket_id


SCRIPT_ERRORS: list[str] = []  # uncaught errors of the pages' scripts, checked by each test that signs in


def sign_in(view: BrowserPage) -> Any:
    page: Any = view.page
    SCRIPT_ERRORS.clear()
    page.on("pageerror", lambda error: SCRIPT_ERRORS.append(str(error)))
    page.goto(f"{view.base}/tech")
    page.fill("#username", TECH)
    page.fill("#password", TECH_PASSWORD)
    page.click("#sign-in form button[type=submit]")
    page.wait_for_selector("#tickets .row, #tickets .empty", timeout=15_000)
    page.wait_for_selector("#live[data-state=live]", timeout=10_000)
    return page


def open_ticket(page: Any, ticket_id: int) -> None:
    page.click(f'#tickets .row[data-ticket="{ticket_id}"] a')
    page.wait_for_selector(f'#detail[data-ticket="{ticket_id}"]:not([hidden])')


def jpeg(colour: tuple[int, int, int] = (30, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), colour).save(out, "JPEG")
    return out.getvalue()


def no_sideways_scroll(page: Any, where: str) -> None:
    widths = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"{where}: the page is {widths[0]} px wide in a {widths[1]} px viewport"


def test_a_technician_acknowledges_starts_and_resolves_with_a_photo(
    live_demo: Demo, technician: str, page_factory: Any,
) -> None:
    ticket_id = scenario_ticket(live_demo)
    view = page_factory(live_demo.base, **PHONE)
    page = sign_in(view)
    assert page.get_attribute("html", "lang") == "zh-CN"
    row = page.locator(f'#tickets .row[data-ticket="{ticket_id}"]')
    assert "灯具不亮" in row.inner_text() and "待签收" in row.inner_text()
    open_ticket(page, ticket_id)

    # the device on the plan, its live readings, and who has acknowledged
    assert page.locator(f'#plan .dev.target[data-device="{SCENARIO_LIGHT}"]').count() == 1
    assert page.locator("#plan .dev.target").count() == 1
    assert page.locator("#plan .dev").count() == 73  # the whole site is drawn around it
    readings = page.locator(f'#detail-readings [data-device="{SCENARIO_LIGHT}"]')
    assert readings.locator("dt").count() >= 3  # last report, then power, voltage, relay ...
    assert "功率" in readings.inner_text()
    assert page.get_attribute("#detail-acks li[data-team=property]", "data-acked") == "false"
    assert page.is_visible("#do-ack") and page.is_visible("#do-start")
    assert page.is_hidden("#show-resolve")  # resolving needs an acknowledged or started ticket

    page.click("#do-ack")
    page.wait_for_selector("#detail-acks li[data-team=property][data-acked=true]")
    acked = ticket_of(live_demo, ticket_id)
    assert acked["acks"]["property"]["by"] == TECH
    assert acked["status"] == "acknowledged"
    assert TECH in page.inner_text("#detail-acks li[data-team=property]")
    assert page.is_hidden("#do-ack")  # nothing left to acknowledge for this team

    page.click("#do-start")
    page.wait_for_selector("#detail-status[data-status=in_progress]")
    assert ticket_of(live_demo, ticket_id)["status"] == "in_progress"
    assert page.is_visible("#show-hold") and page.is_hidden("#do-start")

    page.click("#show-resolve")
    page.fill("#resolve-note", "更换灯具驱动，已恢复照明")
    assert page.get_attribute("#resolve-photos", "capture") == "environment"
    assert page.get_attribute("#resolve-photos", "accept") == "image/*"
    page.set_input_files("#resolve-photos", files=[{"name": "repair.jpg", "mimeType": "image/jpeg", "buffer": jpeg()}])
    page.wait_for_selector("#photo-previews img")
    page.click("#resolve-submit")
    page.wait_for_selector('#detail-history .entry[data-type=resolved] img[src^="blob:"]', timeout=15_000)
    assert "更换灯具驱动" in page.inner_text("#detail-history .entry[data-type=resolved]")

    resolved = [e for e in ticket_of(live_demo, ticket_id)["history"] if e["type"] == "resolved"]
    assert len(resolved) == 1 and resolved[0]["actor"] == TECH
    assert resolved[0]["note"] == "更换灯具驱动，已恢复照明"
    assert len(resolved[0]["photos"]) == 1
    photo = httpx.get(f"{live_demo.base}{resolved[0]['photos'][0]}", headers=tech_token(live_demo), timeout=10)
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(photo.content)).size == (320, 240)
    page.evaluate("() => window.scrollTo(0, 0)")
    screenshot(page, "tech-console")
    assert_no_polling(view.requests)
    assert SCRIPT_ERRORS == []


def test_a_ticket_of_two_teams_is_acknowledged_for_the_technicians_team_only(
    live_demo: Demo, technician: str, page_factory: Any,
) -> None:
    view = page_factory(live_demo.base, **PHONE)
    page = sign_in(view)
    # opened after the page loaded: it arrives over SSE
    created = httpx.post(f"{live_demo.base}/api/v1/tickets", headers=live_demo.token(), timeout=10, json={
        "site": "wanmei", "place": "中心广场", "title": "井盖松动 / loose manhole cover", "severity": "P2",
        "teams": ["grid", "property"],
    })
    assert created.status_code == 201, created.text
    ticket_id = created.json()["id"]
    page.wait_for_selector(f'#tickets .row[data-ticket="{ticket_id}"]', timeout=10_000)
    open_ticket(page, ticket_id)
    assert page.get_attribute("#detail-acks li[data-team=grid]", "data-acked") == "false"
    assert "本班组" in page.inner_text("#detail-acks li[data-team=property]")
    assert "本班组" not in page.inner_text("#detail-acks li[data-team=grid]")
    assert "不涉及设备" in page.inner_text("#detail-readings")

    page.click("#do-ack")
    page.wait_for_selector("#detail-acks li[data-team=property][data-acked=true]")
    ticket = ticket_of(live_demo, ticket_id)
    assert set(ticket["acks"]) == {"property"} and ticket["acks"]["property"]["by"] == TECH
    assert ticket["status"] == "open"  # the lead team (grid) has not acknowledged yet
    assert page.get_attribute("#detail-acks li[data-team=grid]", "data-acked") == "false"
    assert "待签收" in page.inner_text("#detail-acks li[data-team=grid]")
    assert page.is_hidden("#do-ack")

    # the grid centre acknowledges in its own time: the page shows it live, without fetching again
    officer = httpx.post(f"{live_demo.base}/api/v1/users", headers=live_demo.token(), timeout=10, json={
        "username": "grid-li", "password": "grid-officer-pass", "role": "grid_officer", "teams": ["grid"],
        "sites": ["wanmei"]})
    assert officer.status_code in (201, 409), officer.text
    token = httpx.post(f"{live_demo.base}/api/v1/auth/token",
                       data={"username": "grid-li", "password": "grid-officer-pass"}).json()["access_token"]
    httpx.post(f"{live_demo.base}/api/v1/tickets/{ticket_id}/ack", headers={"Authorization": f"Bearer {token}"},
               timeout=10).raise_for_status()
    page.wait_for_selector("#detail-acks li[data-team=grid][data-acked=true]", timeout=10_000)
    page.wait_for_selector("#detail-status[data-status=acknowledged]")
    assert "grid-li" in page.inner_text("#detail-acks li[data-team=grid]")
    assert_no_polling(view.requests)
    assert SCRIPT_ERRORS == []


def test_hold_needs_a_reason_and_resume_continues(live_demo: Demo, technician: str, page_factory: Any) -> None:
    created = httpx.post(f"{live_demo.base}/api/v1/tickets", headers=live_demo.token(), timeout=10, json={
        "site": "wanmei", "place": "二期北门", "title": "路面坑洼 / pothole", "teams": ["property"]})
    assert created.status_code == 201, created.text
    ticket_id = created.json()["id"]
    view = page_factory(live_demo.base, **PHONE)
    page = sign_in(view)
    open_ticket(page, ticket_id)
    page.click("#do-start")
    page.wait_for_selector("#detail-status[data-status=in_progress]")
    page.click("#show-hold")
    page.click("#hold-form button[type=submit]")  # no reason: the browser does not send it
    assert page.get_attribute("#detail-status", "data-status") == "in_progress"
    page.fill("#hold-reason", "等待备件")
    page.click("#hold-form button[type=submit]")
    page.wait_for_selector("#detail-status[data-status=on_hold]")
    held = [e for e in ticket_of(live_demo, ticket_id)["history"] if e["type"] == "held"]
    assert [e["note"] for e in held] == ["等待备件"]
    assert "等待备件" in page.inner_text("#detail-history")
    page.click("#do-resume")
    page.wait_for_selector("#detail-status[data-status=in_progress]")
    assert ticket_of(live_demo, ticket_id)["status"] == "in_progress"
    assert SCRIPT_ERRORS == []


def test_the_english_toggle_changes_the_pages_words(live_demo: Demo, technician: str, page_factory: Any) -> None:
    view = page_factory(live_demo.base, **PHONE)
    page = sign_in(view)
    missing = page.evaluate("""() => {  // every word in both catalogues, group by group
        const [zh, en] = [window.LINLI_TECH_I18N["zh-CN"], window.LINLI_TECH_I18N.en];
        const keys = (c) => Object.entries(c).flatMap(([k, v]) => typeof v === "string" ? [k]
            : Object.keys(v).map((sub) => k + "." + sub)).sort();
        const [a, b] = [keys(zh), keys(en)];
        return a.filter((k) => !b.includes(k)).concat(b.filter((k) => !a.includes(k)));
    }""")
    assert missing == [], f"words in one catalogue only: {missing}"
    chinese = page.inner_text("body")
    assert "我的工单" in chinese and "维修工作台" in chinese and "物业工程部" in chinese
    page.click("#lang")
    english = page.inner_text("body")
    assert "My tickets" in english and "Technician console" in english and "Property crew" in english
    assert "我的工单" not in english and "维修工作台" not in english and "物业工程部" not in english
    assert page.get_attribute("html", "lang") == "en"
    first = page.get_attribute("#tickets .row", "data-ticket")
    if first:  # the ticket view's words too
        open_ticket(page, int(first))
        detail = page.inner_text("#detail")
        assert "History" in detail and "Acknowledged by team" in detail and "处理记录" not in detail
    page.click("#lang")
    assert page.get_attribute("html", "lang") == "zh-CN" and "维修工作台" in page.inner_text("body")


def test_a_360_px_phone_has_no_horizontal_scrolling(live_demo: Demo, technician: str, page_factory: Any) -> None:
    view = page_factory(live_demo.base, width=360, height=740)
    page: Any = view.page
    page.goto(f"{view.base}/tech")
    page.wait_for_selector("#sign-in:not([hidden])")
    no_sideways_scroll(page, "the sign-in")
    page = sign_in(view)
    no_sideways_scroll(page, "the ticket list")
    first = page.get_attribute("#tickets .row", "data-ticket")
    assert first, "the demo's faults give the property crew tickets"
    open_ticket(page, int(first))
    if page.is_visible("#show-resolve"):
        page.click("#show-resolve")
    no_sideways_scroll(page, "a ticket")
    page.click("#lang")
    no_sideways_scroll(page, "a ticket in English")
    page.evaluate("() => window.scrollTo(0, 0)")
    screenshot(page, "tech-console-phone")
    assert SCRIPT_ERRORS == []
