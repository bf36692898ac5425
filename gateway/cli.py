"""`linli gateway`: run the gateway configured by LINLI_* environment variables."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from pydantic import ValidationError

from gateway.settings import GatewaySettings
from linli.site import SiteConfigError


def main(argv: list[str] | None = None) -> int:
    del argv  # configured by environment only; see the README's table
    try:
        settings = GatewaySettings()
    except ValidationError as exc:
        print(f"linli gateway: bad configuration: {exc}", file=sys.stderr)
        return 2
    from gateway.logs import configure

    configure(settings.log_level, settings.log_format)
    from linli.ops.memtrace import start_from_env

    start_from_env("gateway")
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
    held = gateway.held_sites().ids()
    standby = [site for site in gateway.sites.ids() if site not in held]
    logging.getLogger("linli.gateway").info(
        "serving sites %s%s", ", ".join(held) or "(none yet)",
        f"; standby for {', '.join(standby)} (taken over when their lease expires)" if standby else "")
    stop.wait()
    gateway.stop()
    return 0
