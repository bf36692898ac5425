"""How fast the built-in pages load with the demo running (issue 8: "pages load in under a second").

Starts `linli demo` (broker, gateway, API, simulator), then opens each page in headless Chromium
(Debian's, through the pinned Playwright) in a fresh browser context (cold cache), several times:

- the **ceiling**: a small static file of the same server (`/static/vendor/uplot/uPlot.min.css`),
  navigation start to load: what the server and the browser cost before any page of ours;
- each page: navigation start to `load`, and to **ready**: the moment its content is drawn
  (resident: the lights on the site plan; crew, tech and manager: the sign-in form, and after
  signing in as admin, the plan with its devices, the ticket list, or the SLA charts).

Prints the median of each and its ratio to the ceiling; `--json` for a machine-readable copy.

    .venv/bin/python bench/page_load.py [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import Page, sync_playwright

from tests.e2e.conftest import chromium_path
from tests.e2e.test_demo import Demo, start_demo, stop_demo

READY_TIMEOUT_MS = 15_000


def _sign_in(page: Page, demo: Demo) -> None:
    page.fill("#username", "admin")
    page.fill("#password", demo.admin_password)
    page.click("#sign-in button[type=submit]")


# page -> (path, selector when ready before sign-in, selector when ready after sign-in or None)
PAGES: dict[str, tuple[str, str, str | None]] = {
    "resident": ("/", "#plan .dev", None),
    "crew": ("/crew", "#username", "#plan .dev"),
    "tech": ("/tech", "#username", "#tickets li"),
    "manager": ("/manager", "#username", "canvas"),
}


def _timed(*steps: Callable[[], object]) -> float:
    started = time.perf_counter()
    for step in steps:
        step()
    return (time.perf_counter() - started) * 1000.0


def measure(browser: Any, demo: Demo, path: str, ready: str, after: str | None) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN", timezone_id="Asia/Shanghai")
    page = context.new_page()
    try:
        shown = _timed(lambda: page.goto(demo.base + path, wait_until="commit"),
                       lambda: page.wait_for_selector(ready, state="attached", timeout=READY_TIMEOUT_MS))
        timing = page.evaluate("() => { const t = performance.getEntriesByType('navigation')[0];"
                               " return {dcl: t.domContentLoadedEventEnd, load: t.loadEventEnd}; }")
        out = {"ready_ms": shown, "dom_ms": float(timing["dcl"]), "load_ms": float(timing["load"])}
        if after is not None:
            out["signed_in_ready_ms"] = _timed(
                lambda: _sign_in(page, demo),
                lambda: page.wait_for_selector(after, state="attached", timeout=READY_TIMEOUT_MS))
        return out
    finally:
        context.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="linli-page-load-") as tmp:
        demo = start_demo(Path(tmp), "--sim-interval", "2")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
                time.sleep(5)  # the simulator's devices have spoken once: the plan has its states
                samples = [measure(browser, demo, "/static/vendor/uplot/uPlot.min.css", "body", None)
                           for _ in range(args.runs)]
                results["ceiling (static file)"] = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
                for name, (path, ready, after) in PAGES.items():
                    samples = [measure(browser, demo, path, ready, after) for _ in range(args.runs)]
                    results[name] = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
                browser.close()
        finally:
            stop_demo(demo)
    ceiling = results["ceiling (static file)"]["load_ms"]
    if args.json:
        print(json.dumps({"runs": args.runs, "results": results}, indent=2))
        return 0
    print(f"median of {args.runs} cold loads, 390x844, demo running (ms)")
    print(f"{'page':<24}{'DOM ready':>10}{'load':>8}{'÷ ceiling':>11}{'drawn':>8}{'signed in, drawn':>18}")
    for name, r in results.items():
        signed = f"{r['signed_in_ready_ms']:.0f}" if "signed_in_ready_ms" in r else "—"
        print(f"{name:<24}{r['dom_ms']:>10.0f}{r['load_ms']:>8.0f}{r['load_ms'] / ceiling:>11.1f}"
              f"{r['ready_ms']:>8.0f}{signed:>18}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
