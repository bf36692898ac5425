"""``linli sim``: run simulated devices of one or more sites against an MQTT broker.

``main(argv)`` returns the exit code: 0 after a normal stop (``--duration`` elapsed, SIGINT or
SIGTERM), 2 for bad input or a broker that cannot be used, with a one-line message on stderr.
Progress goes to stderr through the ``firmware_sim`` logger.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from firmware_sim.faults import INJECT_GRAMMAR, InjectionError, parse_delay, parse_injection
from firmware_sim.runtime import BrokerConfig, Simulator, SimulatorError
from linli.clock import SystemClock
from linli.site import Site, SiteConfigError, builtin_site_path, load_site

PROG = "linli sim"
DEFAULT_BROKER = "mqtt://127.0.0.1:1883"

log = logging.getLogger("firmware_sim")


def _seconds(text: str) -> float:
    try:
        seconds = parse_delay(text).total_seconds()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive duration")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Simulate the streetlights, elevators and chargers of a site over MQTT (device contract v1): "
        "a retained status with a last will, periodic telemetry, and injected faults.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=INJECT_GRAMMAR + "\n\nEnvironment: LINLI_MQTT_URL, LINLI_MQTT_USERNAME, LINLI_MQTT_PASSWORD, LINLI_SITES "
        "(comma-separated site files).",
    )
    parser.add_argument(
        "--broker", metavar="URL", default=os.environ.get("LINLI_MQTT_URL") or DEFAULT_BROKER,
        help="mqtt://host:port or mqtts://host:port (default: $LINLI_MQTT_URL or %(default)s)",
    )
    parser.add_argument(
        "--site", metavar="FILE", action="append", default=None,
        help="a site file; repeatable (default: $LINLI_SITES, else the built-in wanmei site)",
    )
    parser.add_argument(
        "--interval", metavar="SECONDS", type=_seconds, default=None,
        help="telemetry period of every device, e.g. 5 or 2s (default: each device's interval_s in the site file)",
    )
    parser.add_argument(
        "--inject", metavar="SPEC", action="append", default=[],
        help="inject a fault, e.g. lamp_failure:SL-07 or offline:SL-12@+60s/10m (grammar below); repeatable",
    )
    parser.add_argument(
        "--seed", metavar="N", type=int, default=0, help="random seed; the same seed reproduces a run (default 0)"
    )
    parser.add_argument(
        "--duration", metavar="SECONDS", type=_seconds, default=None,
        help="stop after this long, e.g. 600 or 10m (default: run until SIGINT/SIGTERM)",
    )
    parser.add_argument(
        "--device", metavar="ID", action="append", default=None,
        help="simulate only this device (ID or SITE:ID); repeatable (default: every device)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only warnings and errors")
    return parser


def _site_paths(given: list[str] | None) -> list[Path]:
    if given:
        return [Path(p) for p in given]
    env = [p.strip() for p in os.environ.get("LINLI_SITES", "").split(",") if p.strip()]
    return [Path(p) for p in env] if env else [builtin_site_path()]


def _setup_logging(quiet: bool) -> None:
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s sim: %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.WARNING if quiet else logging.INFO)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse has printed why
        return exc.code if isinstance(exc.code, int) else 0
    _setup_logging(args.quiet)

    try:
        sites: list[Site] = [load_site(path) for path in _site_paths(args.site)]
    except SiteConfigError as exc:
        return _fail(str(exc).replace("\n", "; "))
    ids = [s.id for s in sites]
    if len(set(ids)) != len(ids):
        return _fail(f"the same site is given twice ({', '.join(ids)})")

    clock = SystemClock()
    try:
        broker = BrokerConfig.from_url(
            args.broker, os.environ.get("LINLI_MQTT_USERNAME") or None, os.environ.get("LINLI_MQTT_PASSWORD") or None
        )
        start = clock.now()
        injections = [parse_injection(spec, start=start) for spec in args.inject]
        simulator = Simulator(
            sites, broker, clock=clock, seed=args.seed, interval_s=args.interval, devices=args.device, injections=injections
        )
    except (SimulatorError, InjectionError) as exc:
        return _fail(str(exc))

    count = len(simulator.device_keys)
    period = f"every {args.interval:g} s" if args.interval else "at each device's interval"
    noun = "device" if count == 1 else "devices"
    log.info("simulating %d %s of %s, telemetry %s, broker %s", count, noun, ", ".join(ids), period, broker.url)
    for injection in injections:
        log.info("scheduled injection: %s", injection)

    stop = threading.Event()
    previous: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.signal(signum, on_signal)
            if handler is not None:  # None: installed outside Python, cannot be put back
                previous[signum] = handler
    try:
        try:
            simulator.start()
        except SimulatorError as exc:
            return _fail(str(exc))
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait(args.duration)
        log.info("stopping: marking devices offline")
        simulator.stop()
        stats = simulator.stats()
        log.info("sent %d telemetry and %d status messages", stats.telemetry_sent, stats.status_sent)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
