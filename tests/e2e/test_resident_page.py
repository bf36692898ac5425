"""The resident page (/) on a phone, in headless Chromium against the running demo: the site's
lights on the plan, a fault arriving live over SSE, 一键报修 with a photo followed in 我的报修 as staff
acknowledge it, a courier's hazard, the English toggle and a 360 px phone.

Screenshots land in docs/screenshots/ (the README shows resident-phone.png).
"""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
from PIL import Image

from tests.e2e.conftest import BrowserPage, assert_no_polling, screenshot
from tests.e2e.test_demo import Demo, eventually

LIVE_BOUND_S = 5.0  # a change in the API shows on the open page within this, without a reload
INJECTED_LIGHT = "SL-30"  # live_demo injects its lamp failure a minute in
REPORTED_LIFT = "EL-5B"  # no scenario fault: the resident's report opens its own ticket
PHONE = {"width": 390, "height": 844}


def open_resident_page(view: BrowserPage) -> Any:
    page: Any = view.page
    page.goto(f"{view.base}/")
    page.wait_for_selector("#plan [data-kind=streetlight][data-state]", timeout=15_000)
    page.wait_for_selector("#live[data-state=live]", timeout=10_000)
    return page


def small_jpeg() -> bytes:
    """A real photo file: 64x48 pixels, JPEG-encoded by Pillow."""
    out = io.BytesIO()
    image = Image.new("RGB", (64, 48), (40, 90, 160))
    for x in range(20, 44):
        for y in range(12, 36):
            image.putpixel((x, y), (230, 200, 40))
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def large_jpeg() -> bytes:
    """A phone camera's photo: 2600x2000 pixels of noise, about 4 MB."""
    out = io.BytesIO()
    Image.effect_noise((2600, 2000), 60).convert("RGB").save(out, format="JPEG", quality=92)
    return out.getvalue()


def attach_photo(page: Any, name: str, data: bytes | None = None) -> None:
    photo = data if data is not None else small_jpeg()
    page.set_input_files("#report-photo", files=[{"name": name, "mimeType": "image/jpeg", "buffer": photo}])
    page.wait_for_selector("#report-preview:not([hidden])")


def page_width(page: Any) -> tuple[int, int]:
    scroll, client = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    return int(scroll), int(client)


def kept_report_ids(page: Any) -> list[str]:
    return list(page.evaluate("() => JSON.parse(localStorage.getItem('linli.resident.reports') || '[]')"))


def test_the_page_shows_the_sites_lights_and_a_fault_arrives_live(live_demo: Demo, page_factory: Any) -> None:
    view = page_factory(live_demo.base, **PHONE)
    page = open_resident_page(view)
    assert page.locator("#plan [data-kind=streetlight]").count() == 43
    assert page.locator("#plan [data-kind=elevator]").count() == 12
    assert page.locator("#plan [data-kind=charger]").count() == 18
    states = set(page.eval_on_selector_all("#plan [data-kind=streetlight]", "nodes => nodes.map(n => n.dataset.state)"))
    assert states <= {"on", "off", "fault", "repairing"} and states, states
    # elevators in or out of service per building, chargers free or busy
    assert page.locator("#list-elevator .building").count() == 8
    assert page.locator("#list-elevator .lift[data-state]").count() == 12
    assert page.locator("#list-charger .badge").count() == 18
    assert page.locator("#count-streetlight .counter-total").inner_text() == "43"
    before = page.get_attribute(f'#plan [data-device="{INJECTED_LIGHT}"]', "data-state")
    assert before != "fault", "the page opened after the injected lamp failure: nothing left to see arrive live"
    page.evaluate("""id => {
        window.__sameDocument = true;
        const node = document.querySelector('#plan [data-device="' + id + '"]');
        new MutationObserver(() => {
            if (node.dataset.state === 'fault' && !window.__faultAt) window.__faultAt = Date.now();
        }).observe(node, { attributes: true });
    }""", INJECTED_LIGHT)

    def fault_in_public_status() -> float | None:
        answer = httpx.get(f"{live_demo.base}/api/v1/public/status", params={"site": "wanmei"}, timeout=10)
        light = next(item for item in answer.json()["streetlights"] if item["id"] == INJECTED_LIGHT)
        return time.time() if light["state"] == "fault" else None

    # The simulator's lamp failure goes over MQTT to the gateway, which opens the ticket.
    seen_at = eventually(fault_in_public_status, f"{INJECTED_LIGHT} in fault in the public status", timeout=150)
    page.wait_for_function("() => window.__faultAt", timeout=LIVE_BOUND_S * 1000 + 1000)
    fault_at = page.evaluate("() => window.__faultAt") / 1000
    print(f"{INJECTED_LIGHT} in fault on the page {fault_at - seen_at:+.2f} s after the public status said so")
    assert fault_at - seen_at <= LIVE_BOUND_S
    fill = page.eval_on_selector(f'#plan [data-device="{INJECTED_LIGHT}"] > :first-child', "n => getComputedStyle(n).fill")
    assert fill == "rgb(198, 40, 40)"  # --fault
    assert page.evaluate("() => window.__sameDocument") is True  # no reload
    # its repair is listed, in residents' words
    name = page.evaluate(f"""() => document.querySelector('#plan [data-device="{INJECTED_LIGHT}"] title').textContent""")
    assert name.endswith("故障")
    page.locator("#tickets .row", has_text=name.split(" · ")[0]).first.wait_for(timeout=LIVE_BOUND_S * 1000)
    assert_no_polling(view.requests)
    page.evaluate("() => window.scrollTo(0, 0)")
    screenshot(page, "resident-live")


def test_the_public_plan_gives_geometry_only(live_demo: Demo) -> None:
    plan = httpx.get(f"{live_demo.base}/api/v1/public/plan", params={"site": "wanmei"}, timeout=10).json()
    kinds = [d["kind"] for d in plan["devices"]]
    assert (kinds.count("streetlight"), kinds.count("elevator"), kinds.count("charger")) == (43, 12, 18)
    assert all(d["position"] for d in plan["devices"]) and len(plan["buildings"]) == 8
    assert "cabinets" not in plan and all("circuit" not in d for d in plan["devices"])
    missing = httpx.get(f"{live_demo.base}/api/v1/public/plan", params={"site": "nowhere"}, timeout=10)
    assert missing.status_code == 404 and "nowhere" in missing.json()["detail"]
    for bad, expected in (("\x00", 404), ("x" * 65, 422)):
        answer = httpx.get(f"{live_demo.base}/api/v1/public/plan", params={"site": bad}, timeout=10)
        assert answer.status_code == expected and isinstance(answer.json()["detail"], str | list), answer.text
    assert httpx.get(f"{live_demo.base}/api/v1/public/plan", timeout=10).status_code == 422


def test_a_resident_reports_with_a_photo_and_follows_its_progress_live(live_demo: Demo, page_factory: Any) -> None:
    view = page_factory(live_demo.base, **PHONE)
    page = open_resident_page(view)
    assert page.inner_text("#mine") == "您还没有报修。提交后可在这里查看进度。"
    page.click(f'#plan [data-device="{REPORTED_LIFT}"]')  # tap the lift on the plan
    assert page.input_value("#report-device") == REPORTED_LIFT
    assert "湾美三期5号楼B梯" in page.inner_text("#picked")
    categories = page.eval_on_selector_all("#report-category option", "nodes => nodes.map(n => n.value)")
    assert "elevator_fault" in categories and "light_out" not in categories
    page.select_option("#report-category", "elevator_fault")
    page.fill("#report-text", "电梯门关不上，来回开合")
    attach_photo(page, "lift.jpg")
    page.click("#report-submit")
    page.wait_for_selector("#mine .row[data-report] .progress .step", timeout=15_000)
    assert "工单号" in page.inner_text("#report-status")
    [report_id] = kept_report_ids(page)  # the id is the access key, kept on the phone
    report = httpx.get(f"{live_demo.base}/api/v1/public/reports/{report_id}", timeout=10).json()
    assert report["device_id"] == REPORTED_LIFT and report["category"] == "elevator_fault"
    assert len(report["photos"]) == 1 and report["ticket"]["status"] == "open"
    row = page.locator(f'#mine .row[data-report="{report_id}"]')
    assert "电梯故障" in row.inner_text() and "已立案" in row.inner_text()
    row.locator(".thumb").wait_for()
    assert row.locator(".thumb").evaluate("img => img.complete && img.naturalWidth") == 64  # its own photo
    assert row.locator(".badge").get_attribute("data-status") == "open"
    # the lift is reported: its state on the plan follows over the stream
    page.wait_for_selector(f'#plan [data-device="{REPORTED_LIFT}"][data-state="out_of_service"]', timeout=LIVE_BOUND_S * 1000)

    # Staff acknowledge the ticket through the API: the page shows it without a reload.
    page.evaluate("() => { window.__sameDocument = true; }")
    ticket_id = report["ticket"]["id"]
    answer = httpx.post(f"{live_demo.base}/api/v1/tickets/{ticket_id}/ack", headers=live_demo.token(), json={}, timeout=10)
    assert answer.status_code == 200, answer.text
    acked_at = time.time()
    page.wait_for_selector(f'#mine .row[data-report="{report_id}"] .badge[data-status="acknowledged"]',
                           timeout=LIVE_BOUND_S * 1000)
    print(f"acknowledged on the page within {time.time() - acked_at:.2f} s")
    steps = row.locator(".step").evaluate_all("nodes => nodes.map(n => n.dataset.status)")
    assert steps == ["open", "acknowledged"]
    assert "已签收" in row.inner_text()
    assert page.evaluate("() => window.__sameDocument") is True
    assert_no_polling(view.requests)
    assert view.requests.gets[f"/api/v1/public/reports/{report_id}"] == 1  # once; the rest came live
    page.evaluate("() => window.scrollTo(0, 0)")  # the sticky header where it belongs
    screenshot(page, "resident-phone")

    # Another visit on the same phone (a new tab: this one's requests stay counted once) lists the
    # report from its kept id, with its progress.
    again = page.context.new_page()
    again.goto(f"{view.base}/")
    again.wait_for_selector(f'#mine .row[data-report="{report_id}"] .badge[data-status="acknowledged"]', timeout=15_000)
    again.close()


def test_a_courier_reports_a_hazard_with_a_photo(live_demo: Demo, page_factory: Any) -> None:
    view = page_factory(live_demo.base, **PHONE)
    page = open_resident_page(view)
    page.click("#mode-courier")
    assert page.is_visible("#courier-note") and not page.is_visible("#report-device")
    page.fill("#report-text", "井盖松动，电动车经过会翻")
    page.click("#report-submit")
    assert "平面图" in page.inner_text("#report-status")  # a hazard needs its place first
    plan = page.locator("#plan")
    plan.scroll_into_view_if_needed()
    box = plan.bounding_box()
    plan.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.5})  # the middle of the plan
    page.wait_for_selector("#plan .place-pin")
    page.fill("#report-place", "中心广场北侧")
    big = large_jpeg()
    assert len(big) > 2 * 1024 * 1024
    attach_photo(page, "hazard.jpg", big)  # a cheap phone on a slow link sends it smaller
    page.click("#report-submit")
    page.wait_for_selector("#mine .row[data-report]", timeout=15_000)
    [report_id] = kept_report_ids(page)
    report = httpx.get(f"{live_demo.base}/api/v1/public/reports/{report_id}", timeout=10).json()
    assert report["source"] == "grid_officer" and report["category"] == "hazard" and len(report["photos"]) == 1
    stored = httpx.get(f"{live_demo.base}{report['photos'][0]}", timeout=10)
    assert stored.status_code == 200 and len(stored.content) < len(big)
    assert Image.open(io.BytesIO(stored.content)).size == (2048, 1575)  # shrunk on the phone, proportions kept
    staff = live_demo.get("/api/v1/resident-reports", site="wanmei", ticket_id=report["ticket"]["id"])
    [filed] = staff["items"]
    assert filed["location"]["text"] == "中心广场北侧"
    assert abs(filed["location"]["x"] - 500) <= 20 and abs(filed["location"]["y"] - 350) <= 20  # where it was tapped
    row = page.locator(f'#mine .row[data-report="{report_id}"]')
    assert "安全隐患" in row.inner_text()
    assert not page.is_visible("#plan .place-pin")  # the form is ready for the next one


def test_the_english_toggle_changes_the_pages_words(live_demo: Demo, page_factory: Any) -> None:
    view = page_factory(live_demo.base, **PHONE)
    page = open_resident_page(view)
    chinese = page.inner_text("body")
    assert "一键报修" in chinese and "我的报修" in chinese and "各楼电梯" in chinese
    assert page.get_attribute("html", "lang") == "zh-CN"
    page.click("#lang")
    english = page.inner_text("body")
    assert "Report a problem" in english and "My reports" in english and "Elevators by building" in english
    assert "一键报修" not in english and "我的报修" not in english
    assert page.get_attribute("html", "lang") == "en"
    assert page.locator("#plan [data-kind=streetlight]").count() == 43  # the plan is redrawn, still live
    page.evaluate("() => window.scrollTo(0, 0)")
    screenshot(page, "resident-page-en")
    page.click("#lang")
    assert "我的报修" in page.inner_text("body")


def test_a_360_px_phone_has_no_horizontal_scrolling(live_demo: Demo, page_factory: Any) -> None:
    view = page_factory(live_demo.base, width=360, height=740)
    page = open_resident_page(view)
    scroll, client = page_width(page)
    assert scroll <= client, f"the page is {scroll} px wide in a {client} px viewport"
    page.click("#mode-courier")
    page.click("#lang")  # English words are longer
    scroll, client = page_width(page)
    assert scroll <= client, f"in English the page is {scroll} px wide in a {client} px viewport"
