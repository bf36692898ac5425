"""`linli gateway`: run the gateway configured by LINLI_* environment variables."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from pydantic import ValidationError

from linli.settings import Settings
from linli.site import SiteConfigError


def main(argv: list[str] | None = None) -> int:
    del argv  # configured by environment only; see the README's table
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"linli gateway: bad configuration: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from gateway.runtime import Gateway

    try:
        gateway = Gateway(settings)
        gateway.start()
    except SiteConfigError as exc:
        print(f"linli gateway: {exc}", file=sys.stderr)
        return 2
    except (ConnectionError, ValueError) as exc:
        print(f"linli gateway: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    logging.getLogger("linli.gateway").info("serving sites %s", ", ".join(gateway.sites.ids()))
    stop.wait()
    gateway.stop()
    return 0
