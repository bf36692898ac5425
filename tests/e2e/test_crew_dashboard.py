"""The crew dashboard (/crew) in headless Chromium against the running demo: sign-in, the site
plan with every device, a fault arriving live over SSE, the English toggle, a phone's width, the
device panel's 24 h charts, a light switched off from the panel with its answer arriving live, and
the SLA countdowns on the system's (the simulator's) clock.

Screenshots land in docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from linli.clock import CLOCK_TOPIC, FollowedClock
from tests.e2e.conftest import ApiRequests, BrowserPage, assert_no_polling, open_page, screenshot
from tests.e2e.test_demo import Demo, eventually

LIVE_BOUND_S = 3.0  # a fault in the API shows on the open page within this, without a reload
INJECTED_LIGHT = "SL-30"  # live_demo injects its lamp failure a minute in
FAULT_RED = "rgb(198, 40, 40)"  # --fault in dashboards/crew/style.css
SWITCHED_LIGHT = "SL-03"  # switched off from the panel: on C1, not a switched circuit, no scenario fault
CHARTED_LIGHT = "SL-05"
COUNTDOWN_SLACK_S = 3.0


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


def wait_for_telemetry(demo: Demo, device_id: str) -> None:
    def has_data() -> bool:
        return len(demo.get(f"/api/v1/devices/{device_id}/telemetry", field="power_w", limit=5)["points"]) >= 3

    eventually(has_data, f"{device_id}'s telemetry in the store", timeout=60)


def test_a_360_px_phone_has_no_horizontal_scrolling(live_demo: Demo, page_factory: Any) -> None:
    wait_for_telemetry(live_demo, "SL-01")
    view = page_factory(live_demo.base, width=360, height=740)
    page = sign_in(view, live_demo)
    page.wait_for_selector("#tickets .row, #tickets .empty")
    widths = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide in a {widths[1]} px viewport"
    page.click('#plan [data-device="SL-01"]')
    page.wait_for_selector("#panel:not([hidden])")
    page.wait_for_selector('#panel-charts figure[data-chart="power_w"] canvas', timeout=15_000)
    widths = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], "the device panel makes the page scroll sideways"
    # the charts fit the phone: no chart is wider than the panel
    panel_width = page.evaluate("() => document.getElementById('panel').clientWidth")
    chart_widths = page.eval_on_selector_all("#panel-charts canvas", "nodes => nodes.map(n => n.getBoundingClientRect().width)")
    assert len(chart_widths) == 3 and all(0 < w <= panel_width for w in chart_widths), (chart_widths, panel_width)
    assert page.locator("#cmd-off").is_visible()  # the light's buttons too
    screenshot(page, "crew-panel-phone")
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


# ---------------------------------------------------------------- the device panel


def test_a_lights_panel_draws_its_last_24_hours(live_demo: Demo, page_factory: Any) -> None:
    wait_for_telemetry(live_demo, CHARTED_LIGHT)
    view = page_factory(live_demo.base)
    page = sign_in(view, live_demo)
    page.click(f'#plan [data-device="{CHARTED_LIGHT}"]')
    page.wait_for_selector("#panel:not([hidden])")
    for field in ("power_w", "voltage_v", "leakage_ma"):
        page.wait_for_selector(f'#panel-charts figure[data-chart="{field}"] canvas', timeout=15_000)
        points = int(page.get_attribute(f'#panel-charts figure[data-chart="{field}"]', "data-points") or 0)
        assert points > 0, f"the {field} chart has no points"
    # the series really are on the canvas: pixels of its colour (#17324d), not only axes and grid
    for field in ("power_w", "voltage_v", "leakage_ma"):
        painted = page.eval_on_selector(f'#panel-charts figure[data-chart="{field}"] canvas', """canvas => {
            const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            let ink = 0;
            for (let i = 0; i < data.length; i += 4) {
                if (data[i + 3] > 200 && Math.abs(data[i] - 23) < 12 && Math.abs(data[i + 1] - 50) < 12 &&
                    Math.abs(data[i + 2] - 77) < 12) ink++;
            }
            return ink;
        }""")
        assert painted > 10, f"the {field} chart drew no series ({painted} px of its colour)"
    titles = page.inner_text("#panel-charts")
    assert "功率" in titles and "电压" in titles and "漏电" in titles
    # the requests asked for the system's last 24 h, aggregated
    telemetry = [url for url in view.requests.all if "/telemetry?" in url]
    assert len(telemetry) == 3 and all("every=600" in url for url in telemetry)
    page.click("#lang")
    assert "Power" in page.inner_text("#panel-charts")
    page.click("#lang")
    page.wait_for_selector('#panel-charts figure[data-chart="power_w"] canvas')
    screenshot(page, "crew-device-panel")


def test_switching_a_light_off_reaches_the_device_and_its_answer_shows_live(
    live_demo: Demo, page_factory: Any,
) -> None:
    eventually(lambda: live_demo.get(f"/api/v1/devices/{SWITCHED_LIGHT}")["last"].get("relay") is True,
               f"{SWITCHED_LIGHT} reporting its relay on", timeout=60)
    view = page_factory(live_demo.base)
    page = sign_in(view, live_demo)
    page.wait_for_selector("#live[data-state=live]", timeout=10_000)
    page.evaluate("() => { window.__sameDocument = true; }")
    page.click(f'#plan [data-device="{SWITCHED_LIGHT}"]')
    page.wait_for_selector("#panel:not([hidden]) #cmd-off")
    page.wait_for_selector("#panel-commands .empty, #panel-commands .row")
    page.click("#cmd-off")
    # shown at once as sent, then acked when the device's answer is recorded: pushed, not polled
    # Ours is the row named exactly 关灯: the gateway's own set_schedule pushes are in the list too,
    # and their name (改开关灯时间) contains 关灯.
    ours = page.locator("#panel-commands .row.command").filter(
        has=page.locator(".row-name", has_text=re.compile(r"^关灯$")))
    ours.first.wait_for(timeout=5_000)
    assert ours.count() == 1
    command_id = ours.first.get_attribute("data-command")
    assert command_id
    page.wait_for_selector(f'#panel-commands .row[data-command="{command_id}"][data-status=acked]', timeout=15_000)
    assert "已执行" in page.locator(f'#panel-commands .row[data-command="{command_id}"]').inner_text()
    assert page.evaluate("() => window.__sameDocument") is True  # no reload
    command = live_demo.get(f"/api/v1/commands/{command_id}")
    assert (command["status"], command["params"], command["device_id"]) == ("acked", {"relay": False}, SWITCHED_LIGHT)
    assert command["requested_by"] == "admin"
    # the simulated light did it: it reports its relay off
    eventually(lambda: live_demo.get(f"/api/v1/devices/{SWITCHED_LIGHT}")["last"].get("relay") is False,
               f"{SWITCHED_LIGHT} reporting its relay off", timeout=30)
    # the command list was loaded once; the answer came over SSE
    commands_gets = [url for url in view.requests.all if url.startswith("GET") and "/commands" in url]
    assert len(commands_gets) == 1, commands_gets


# ---------------------------------------------------------------- the countdowns


def simulators_now(port: int) -> datetime:
    """The simulator's clock, read as the gateway reads it: its retained announcement on linli/v1/clock."""
    clock = FollowedClock()
    got = threading.Event()

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        if message.topic == CLOCK_TOPIC and message.payload:
            clock.update(bytes(message.payload))
            got.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"clock-reader-{time.monotonic_ns()}")
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(CLOCK_TOPIC, qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert got.wait(15), "the simulator announced no clock"
    finally:
        client.disconnect()
        client.loop_stop()
    return clock.now()


def test_the_countdowns_run_on_the_systems_clock_not_the_browsers(live_demo: Demo, page_factory: Any) -> None:
    def open_tickets() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = live_demo.get("/api/v1/tickets", status="open", limit=50)["items"]
        return [t for t in items if t.get("ack_due_at")]

    eventually(open_tickets, "an open ticket with an acknowledgement deadline", timeout=90)
    sim_now = simulators_now(live_demo.mqtt_port)
    wall_gap = abs((sim_now - datetime.now(tz=UTC)).total_seconds())
    assert wall_gap > 60, "the simulated clock must differ from wall time for this check to mean anything"
    view = page_factory(live_demo.base)
    page = sign_in(view, live_demo)
    page.wait_for_selector("#tickets .countdown[data-left-ms]", timeout=15_000)
    ticket_id, left_ms = page.evaluate("""() => {
        const row = document.querySelector('#tickets .row[data-ticket]');
        const node = row.querySelector('.countdown');
        return [Number(row.dataset.ticket), Number(node.dataset.leftMs)];
    }""")
    shown_at = simulators_now(live_demo.mqtt_port)
    ticket = live_demo.get(f"/api/v1/tickets/{ticket_id}")
    deadline_key = {"open": "ack_due_at", "acknowledged": "start_due_at"}.get(ticket["status"], "resolve_due_at")
    due = datetime.fromisoformat(ticket[deadline_key] or ticket["resolve_due_at"])
    expected_s = (due - shown_at).total_seconds()
    print(f"ticket {ticket_id}: page {left_ms / 1000:.1f} s, deadline - system now {expected_s:.1f} s "
          f"(simulated clock {wall_gap:.0f} s from wall time)")
    assert abs(left_ms / 1000 - expected_s) <= COUNTDOWN_SLACK_S + 1.0  # the page ticks each second
    text = page.inner_text(f'#tickets .row[data-ticket="{ticket_id}"] .countdown')
    if expected_s > COUNTDOWN_SLACK_S + 1:
        assert "剩余" in text, text
    elif expected_s < -COUNTDOWN_SLACK_S - 1:
        assert "已超时" in text, text
    # the API tells the page the same time: its answers carry X-Linli-Now on the simulator's clock
    header = httpx.get(f"{live_demo.base}/healthz", timeout=10).headers["x-linli-now"]
    assert abs((datetime.fromisoformat(header) - simulators_now(live_demo.mqtt_port)).total_seconds()) < COUNTDOWN_SLACK_S


def test_the_demo_prints_the_link_of_every_page(live_demo: Demo) -> None:
    text = "".join(live_demo.output)
    for path in ("/crew", "/tech", "/manager"):
        assert f"{live_demo.base}{path}\n" in text, path
    assert f"{live_demo.base}/\n" in text
