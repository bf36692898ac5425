"""Script in every string people and devices can put into Linli, shown on every page, in headless
Chromium against the running demo (docs/security.md).

The strings: a resident's report text, a staff comment and a ticket title, a staff account's full
name, and a device's own words (the `error` of its command answer, over MQTT). Each carries an
``<img onerror>``, an ``<svg onload>`` and a ``<script>``, plus a visible marker ``XSS-<field>``.
Every page of ``api.app.PAGES`` that exists is opened (pages added later are walked as they
appear), signed in where it asks, and must show the strings as text: no element of theirs in the
DOM, no dialog, no script run, no Content-Security-Policy violation (which would mean something
tried to run inline). Across the pages, each string must show up as text at least once, so the walk
really rendered them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from api.app import DASHBOARDS_DIR, PAGES
from tests.e2e.test_demo import Demo, start_demo, stop_demo

FIELDS = ("report", "comment", "title", "name", "device")
SILENT_LIGHT = "SL-16"  # powered off from the start: the simulator cannot answer its commands; the test does
TECH = ("xss-tech", "xss-tech-password")
SHOW_WAIT_MS = 8_000

HOOKS = """
window.__alerts = [];
window.__csp = [];
window.alert = window.confirm = window.prompt = (m) => { window.__alerts.push(String(m)); };
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(e.violatedDirective + ' ' + (e.sample || ''));
});
"""
# What must not exist once the strings are on the page (no page has inline handlers or scripts of its own).
DOM_CHECK = """() => ({
  injected: Array.from(document.querySelectorAll('[id^="xss-"], [onerror], [onload], script:not([src])'))
    .map((n) => n.outerHTML.slice(0, 120)),
  xss: window.__xss || null,
  alerts: window.__alerts,
  csp: window.__csp,
  shown: Array.from(new Set((document.body.innerText.match(/XSS-[a-z]+/g) || []))),
})"""


def payload(field: str) -> str:
    """Short enough for every field (a title takes 120 characters)."""
    return f"<img src=x id=xss-{field} onerror=alert(1)><svg onload=alert(2)><script>window.__xss=1</script>XSS-{field}"


def existing_pages() -> dict[str, str]:
    return {path: folder for path, folder in PAGES.items() if (DASHBOARDS_DIR / folder / "index.html").is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    running = start_demo(tmp_path_factory.mktemp("demo-xss"), "--sim-interval", "5",
                         "--inject", f"offline_hard:{SILENT_LIGHT}")
    yield running
    stop_demo(running)


@pytest.fixture(scope="module")
def seeded(demo: Demo) -> dict[str, Any]:
    """The hostile strings, put in through the API and MQTT as residents, staff and a device would."""
    admin = demo.token()

    def call(method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        answer = httpx.request(method, f"{demo.base}{path}", headers=headers or admin, timeout=15, **kwargs)
        assert answer.status_code < 300, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json()

    report = call("POST", "/api/v1/public/reports", headers={}, json={
        "site": "wanmei", "device_id": "SL-12", "category": "light_out", "description": payload("report"),
        "contact": "13900000000"})
    call("POST", "/api/v1/users", json={"username": TECH[0], "password": TECH[1], "role": "technician",
                                        "teams": ["property"], "sites": ["wanmei"], "full_name": payload("name")})
    ticket = call("POST", "/api/v1/tickets", json={"site": "wanmei", "device_id": "SL-14", "title": payload("title"),
                                                   "teams": ["property"]})
    call("POST", f"/api/v1/tickets/{ticket['id']}/comments", json={"note": payload("comment")})
    call("POST", f"/api/v1/tickets/{report['ticket_id']}/comments", json={"note": payload("comment")})
    call("POST", f"/api/v1/tickets/{ticket['id']}/assign", json={"assignee": TECH[0]})

    sent = call("POST", f"/api/v1/devices/{SILENT_LIGHT}/commands", params={"site": "wanmei"},
                json={"action": "refresh"})
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"xss-{uuid.uuid4().hex[:6]}")
    device.connect("127.0.0.1", demo.mqtt_port)
    device.loop_start()
    try:
        ack = {"id": sent["id"], "ok": False, "error": payload("device")}
        topic = f"estate/v1/wanmei/streetlight/{SILENT_LIGHT}/cmd/ack"
        device.publish(topic, json.dumps(ack).encode(), qos=1).wait_for_publish(10)
    finally:
        device.disconnect()
        device.loop_stop()
    deadline = time.monotonic() + 15
    while call("GET", f"/api/v1/commands/{sent['id']}")["status"] != "failed":  # the gateway has stored it
        assert time.monotonic() < deadline, (f"the device's answer was not recorded: "
                                             f"{call('GET', f'/api/v1/commands/{sent[chr(105) + chr(100)]}')} "
                                             f"{call('GET', '/api/v1/dead-letters')}")
        time.sleep(0.2)
    return {"report": report, "ticket": ticket}


def _sign_in(page: Any, path: str, demo: Demo) -> None:
    if not page.locator("#sign-in-form").count() or not page.locator("#sign-in-form").is_visible():
        return
    username, password = TECH if path == "/tech" else ("admin", demo.admin_password)
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector("#sign-in-form", state="hidden", timeout=15_000)


def _open_what_shows_more(page: Any, ticket_id: int) -> None:
    """Where a page keeps details behind a click (a ticket's history, a device's panel), open them."""
    row = page.locator(f'#tickets [data-ticket="{ticket_id}"]')
    try:
        row.first.wait_for(timeout=SHOW_WAIT_MS)
    except PlaywrightTimeout:  # this page lists no such ticket
        pass
    else:
        link = row.first.locator("a")
        (link.first if link.count() else row.first).click()
        _wait_for_text(page, "XSS-comment")
    marker = page.locator(f'#plan [data-device="{SILENT_LIGHT}"]')
    if marker.count() and page.locator("#panel").count():
        marker.first.click()
        _wait_for_text(page, "XSS-device")


def _wait_for_text(page: Any, text: str = "XSS-") -> None:
    try:  # a page may show none of the strings (a chart page): then it only has to stay clean
        page.wait_for_function("text => document.body.innerText.includes(text)", arg=text, timeout=SHOW_WAIT_MS)
    except PlaywrightTimeout:  # nothing shown here
        return


def _wait_for_ticket_row(page: Any, demo: Demo, ticket_id: int) -> None:
    """The crew's and the technician's lists show the ticket; if not, say what the API and the page held."""
    try:
        page.wait_for_selector(f'#tickets [data-ticket="{ticket_id}"]', state="attached", timeout=30_000)
    except PlaywrightTimeout:
        shown = page.evaluate("() => Array.from(document.querySelectorAll('#tickets [data-ticket]'))"
                              ".map((row) => row.dataset.ticket)")
        ticket = httpx.get(f"{demo.base}/api/v1/tickets/{ticket_id}", headers=demo.token(), timeout=15).json()
        message = page.locator("#message").inner_text() if page.locator("#message").count() else ""
        raise AssertionError(f"ticket {ticket_id} not listed on {page.url}: rows {shown}, message {message!r}, "
                             f"the API says status {ticket.get('status')!r} teams {ticket.get('teams')}") from None
    _wait_for_text(page, "XSS-title")


def test_hostile_strings_show_as_text_on_every_page(demo: Demo, seeded: dict[str, Any], page_factory: Any) -> None:
    pages = existing_pages()
    assert "/" in pages and "/crew" in pages
    results: dict[str, dict[str, Any]] = {}
    for path in pages:
        view = page_factory(demo.base)
        page = view.page
        page.add_init_script(HOOKS)
        if path == "/":  # the resident page lists the reports this browser sent (their ids are its keys)
            ids = json.dumps([seeded["report"]["id"]])
            page.add_init_script(f"window.localStorage.setItem('linli.resident.reports', {json.dumps(ids)});")
        dialogs: list[str] = []
        page.on("dialog", lambda d, dialogs=dialogs: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{demo.base}{path}")
        _sign_in(page, path, demo)
        _wait_for_text(page)
        _open_what_shows_more(page, seeded["ticket"]["id"])
        if path in ("/crew", "/tech"):  # both list the ticket with the hostile title: its row must come
            _wait_for_ticket_row(page, demo, seeded["ticket"]["id"])
        result = page.evaluate(DOM_CHECK)
        result["dialogs"] = dialogs
        results[path] = result

    problems = {path: {k: v for k, v in r.items() if k != "shown" and v} for path, r in results.items()}
    problems = {path: found for path, found in problems.items() if found}
    assert problems == {}, json.dumps(problems, ensure_ascii=False, indent=1)
    shown = {marker for r in results.values() for marker in r["shown"]}
    per_page = {path: r["shown"] for path, r in results.items()}
    assert {f"XSS-{f}" for f in FIELDS} <= shown, f"not every string reached a page: {per_page}"
