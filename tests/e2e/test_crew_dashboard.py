"""The crew dashboard (/crew) in headless Chromium against the running demo: sign-in, the site
plan with every device, a fault arriving live over SSE, the English toggle, a phone's width.

Screenshots land in docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ApiRequests, BrowserPage, assert_no_polling, open_page, screenshot
from tests.e2e.test_demo import Demo, eventually

LIVE_BOUND_S = 3.0  # a fault in the API shows on the open page within this, without a reload
INJECTED_LIGHT = "SL-30"  # live_demo injects its lamp failure a minute in
FAULT_RED = "rgb(198, 40, 40)"  # --fault in dashboards/crew/style.css


def sign_in(view: BrowserPage, demo: Demo, path: str = "/crew") -> Any:
    page: Any = view.page
    page.goto(f"{view.base}{path}")
    page.fill("#username", "admin")
    page.fill("#password", demo.admin_password)
    page.click("#sign-in form button[type=submit]")
    page.wait_for_selector("#plan [data-kind=streetlight]", timeout=15_000)
    return page


def marker_fill(page: Any, device_id: str) -> str:
    return str(page.eval_on_selector(f'#plan [data-device="{device_id}"] > :first-child',
                                     "node => getComputedStyle(node).fill"))


def test_the_dashboard_shows_every_device_of_the_site_plan(live_demo: Demo, page_factory: Any) -> None:
    view = page_factory(live_demo.base)
    page = sign_in(view, live_demo)
    assert page.locator("#plan [data-kind=streetlight]").count() == 43
    assert page.locator("#plan [data-kind=elevator]").count() == 12
    assert page.locator("#plan [data-kind=charger]").count() == 18
    # every marker has a health the legend explains
    healths = set(page.eval_on_selector_all("#plan .dev", "nodes => nodes.map(n => n.dataset.health)"))
    assert healths <= {"ok", "fault", "offline", "maintenance"}
    assert page.locator("#count-lights .counter-value").inner_text().endswith("/ 43")
    assert page.locator("#count-elevators .counter-value").inner_text().endswith("/ 12")
    # the token is kept for the tab only
    assert page.evaluate("() => sessionStorage.getItem('linli.crew.token')")
    assert page.evaluate("() => localStorage.getItem('linli.crew.token')") is None


def test_a_lamp_failure_turns_its_light_red_live_without_a_reload(live_demo: Demo, page_factory: Any) -> None:
    view = page_factory(live_demo.base)
    page = sign_in(view, live_demo)
    page.wait_for_selector("#live[data-state=live]", timeout=10_000)
    before = page.get_attribute(f'#plan [data-device="{INJECTED_LIGHT}"]', "data-health")
    assert before != "fault", "the page opened after the injected lamp failure: nothing left to see arrive live"
    # When the marker turns to fault, the page notes the wall-clock time (the same clock as ours).
    page.evaluate("""id => {
        window.__loadedOnce = true;
        const node = document.querySelector('#plan [data-device="' + id + '"]');
        new MutationObserver(() => {
            if (node.dataset.health === 'fault' && !window.__redAt) window.__redAt = Date.now();
        }).observe(node, { attributes: true });
    }""", INJECTED_LIGHT)

    def ticket_in_api() -> float | None:
        answer = httpx.get(f"{live_demo.base}/api/v1/tickets", headers=live_demo.token(),
                           params={"device_id": INJECTED_LIGHT, "fault": "lamp_failure"}, timeout=10)
        return time.time() if answer.json()["total"] else None

    seen_at = eventually(ticket_in_api, f"a lamp_failure ticket for {INJECTED_LIGHT}", timeout=150)
    page.wait_for_function("() => window.__redAt", timeout=LIVE_BOUND_S * 1000 + 1000)
    red_at = page.evaluate("() => window.__redAt") / 1000
    print(f"{INJECTED_LIGHT} red on the page {red_at - seen_at:+.2f} s after the API showed its ticket")
    assert red_at - seen_at <= LIVE_BOUND_S, f"red {red_at - seen_at:.1f} s after the API had the ticket"
    assert marker_fill(page, INJECTED_LIGHT) == FAULT_RED
    assert page.evaluate("() => window.__loadedOnce") is True  # the same document: no reload
    # the new ticket is in the list, with its countdown
    name = live_demo.get(f"/api/v1/devices/{INJECTED_LIGHT}")["name"]
    row = page.locator("#tickets .row", has_text=name)
    row.first.wait_for(timeout=LIVE_BOUND_S * 1000)
    assert row.first.locator(".countdown").inner_text()
    assert page.locator("#count-faults .counter-value").inner_text() != "0"
    screenshot(page, "crew-dashboard")


def test_clicking_a_device_opens_its_panel_with_its_tickets(live_demo: Demo, page_factory: Any) -> None:
    view = page_factory(live_demo.base)
    page = sign_in(view, live_demo)
    eventually(lambda: live_demo.get("/api/v1/tickets", device_id="SL-07")["total"], "the scenario's SL-07 ticket", 90)
    page.click('#plan [data-device="SL-07"]')
    page.wait_for_selector("#panel:not([hidden])")
    assert "SL-07" in page.inner_text("#panel-title")
    page.wait_for_selector("#panel-tickets .row", timeout=10_000)
    assert "灯" in page.inner_text("#panel-tickets")  # the fault's Chinese name (灯具不亮)
    assert page.locator("#panel-readings dt").count() > 0  # its latest telemetry


def test_the_english_toggle_changes_the_pages_words(live_demo: Demo, page_factory: Any) -> None:
    view = page_factory(live_demo.base)
    page = sign_in(view, live_demo)
    chinese = page.inner_text("body")
    assert "路灯亮" in chinese and "待办工单" in chinese and page.get_attribute("html", "lang") == "zh-CN"
    page.click("#lang")
    english = page.inner_text("body")
    assert "Lights on" in english and "Open tickets" in english and "Site plan" in english
    assert "路灯亮" not in english and "待办工单" not in english
    assert page.get_attribute("html", "lang") == "en"
    page.click("#lang")
    assert "路灯亮" in page.inner_text("body")


def test_a_360_px_phone_has_no_horizontal_scrolling(live_demo: Demo, page_factory: Any) -> None:
    view = page_factory(live_demo.base, width=360, height=740)
    page = sign_in(view, live_demo)
    page.wait_for_selector("#tickets .row, #tickets .empty")
    widths = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide in a {widths[1]} px viewport"
    page.click('#plan [data-device="SL-01"]')
    page.wait_for_selector("#panel:not([hidden])")
    widths = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], "the device panel makes the page scroll sideways"
    page.click("#panel-close")
    screenshot(page, "crew-dashboard-phone")


def test_the_resident_page_screenshot(live_demo: Demo, page_factory: Any) -> None:
    view = page_factory(live_demo.base, width=390, height=844)
    page: Any = view.page
    page.goto(f"{live_demo.base}/")
    page.wait_for_selector("#plan circle", timeout=15_000)
    assert page.locator("#plan circle").count() == 43
    screenshot(page, "resident-page")


def test_a_page_that_polls_the_api_fails_the_check(live_demo: Demo, browser: Any) -> None:
    context, page, requests = open_page(browser, live_demo.base)
    try:
        page.goto(f"{live_demo.base}/crew")  # type: ignore[attr-defined]
        page.evaluate("""async () => {  // what a polling page does: ask again and again
            for (let i = 0; i < 3; i++) await fetch('/api/v1/public/status?site=wanmei');
        }""")  # type: ignore[attr-defined]
    finally:
        context.close()  # type: ignore[attr-defined]
    assert isinstance(requests, ApiRequests)
    with pytest.raises(AssertionError, match="polled the API"):
        assert_no_polling(requests)


def test_the_plan_route_gives_the_site_files_geometry_to_staff_only(live_demo: Demo) -> None:
    plan = live_demo.get("/api/v1/sites/wanmei/plan")
    kinds = [d["kind"] for d in plan["devices"]]
    assert (kinds.count("streetlight"), kinds.count("elevator"), kinds.count("charger")) == (43, 12, 18)
    assert all(d["position"] is not None for d in plan["devices"])  # every device has a place on the plan
    assert len(plan["compounds"]) == 4 and all(c["area"] for c in plan["compounds"])
    assert {c["id"] for cab in plan["cabinets"] for c in cab["circuits"]} == {
        d["circuit"] for d in plan["devices"] if d["kind"] == "streetlight"}
    lamp = next(d for d in plan["devices"] if d["id"] == "SL-07")
    assert (lamp["rated_power_w"], lamp["cabinet"], lamp["position"]) == (40, "CAB-1", {"x": 450, "y": 380})
    assert httpx.get(f"{live_demo.base}/api/v1/sites/wanmei/plan").status_code == 401
    missing = httpx.get(f"{live_demo.base}/api/v1/sites/nowhere/plan", headers=live_demo.token())
    assert missing.status_code == 404 and "nowhere" in missing.json()["detail"]
