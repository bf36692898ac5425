"""Browser fixtures: the real system (`linli demo`) and a headless Chromium page against it.

Chromium is Debian's (`/usr/bin/chromium`, installed by scripts/test.sh as root), driven by the
pinned Playwright through `executable_path`: nothing is downloaded. Every page records the API
requests it makes; a page that asks for the same API URL twice in a test is polling, and the test
fails (live means pushed over SSE).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.test_demo import Demo, start_demo, stop_demo

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str:
    for candidate in (os.environ.get("LINLI_CHROMIUM"), *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("no Chromium found: install Debian's `chromium` (scripts/test.sh does it as root) or set LINLI_CHROMIUM")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        yield launched
        launched.close()


@dataclass
class ApiRequests:
    """The API requests of one page: GETs counted by full URL (path and query)."""

    gets: Counter[str] = field(default_factory=Counter)
    all: list[str] = field(default_factory=list)

    def record(self, method: str, url: str) -> None:
        parts = urlsplit(url)
        if not parts.path.startswith("/api/"):
            return
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.all.append(f"{method} {target}")
        if method == "GET":
            self.gets[target] += 1

    def repeated(self) -> dict[str, int]:
        return {url: n for url, n in self.gets.items() if n > 1}


@dataclass
class BrowserPage:
    page: object  # playwright.sync_api.Page
    requests: ApiRequests
    base: str


def open_page(browser: object, base: str, width: int = 1440, height: int = 900) -> tuple[object, object, ApiRequests]:
    context = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN",  # type: ignore[attr-defined]
                                  timezone_id="Asia/Shanghai")
    page = context.new_page()
    requests = ApiRequests()
    page.on("request", lambda request: requests.record(request.method, request.url))
    return context, page, requests


def assert_no_polling(requests: ApiRequests) -> None:
    repeated = requests.repeated()
    assert not repeated, f"the page polled the API (same GET more than once): {repeated}"


@pytest.fixture(scope="module")
def live_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`linli demo` with the simulator's evening scenario, and one more lamp failure on SL-30 a minute
    in (late enough that a page opened at start-up sees it arrive)."""
    demo = start_demo(tmp_path_factory.mktemp("demo-browser"), "--sim-interval", "2",
                      "--inject", "lamp_failure:SL-30@+60s")
    yield demo
    stop_demo(demo)


@pytest.fixture
def page_factory(browser: object) -> Iterator[object]:
    """Opens pages (`factory(base, width=..., height=...)`); each fails its test if it polled the API."""
    opened: list[tuple[object, ApiRequests]] = []

    def factory(base: str, width: int = 1440, height: int = 900) -> BrowserPage:
        context, page, requests = open_page(browser, base, width, height)
        opened.append((context, requests))
        return BrowserPage(page, requests, base)

    yield factory
    for context, requests in opened:
        context.close()  # type: ignore[attr-defined]
        assert_no_polling(requests)


def screenshot(page: object, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path
