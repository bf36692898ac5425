"""``linli sim``: run simulated devices of one or more sites against an MQTT broker.

``main(argv)`` returns the exit code: 0 after a normal stop (``--duration`` or ``--sim-duration``
elapsed, SIGINT or SIGTERM), 2 for bad input or a broker that cannot be used, with a one-line
message on stderr. Progress goes to stderr through the ``firmware_sim`` logger, every
``--progress`` seconds: connections up, devices online, messages per second, buffered messages.

Time: ``--speed 1`` (default) is real time; ``--speed 60`` runs a ``ScaledClock`` 60 times faster
(a night in 12 minutes), from ``--start`` if given; ``--speed max`` drives a ``ManualClock`` as fast
as publishing allows. Any clock but plain real time is announced, retained, on ``linli/v1/clock``
(``firmware_sim.simclock``) so a gateway can follow it. ``--fleet SxCxK`` simulates a synthetic
county through concentrators (``firmware_sim.fleet``) instead of site files.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from firmware_sim.faults import INJECT_GRAMMAR, Fault, Injection, InjectionError, parse_delay, parse_injection
from firmware_sim.fleet import county, fleet_models, parse_fleet
from firmware_sim.runtime import BrokerConfig, ModelFactory, Simulator, SimulatorError
from firmware_sim.scenarios import ScenarioError, builtin_scenarios, load_scenario
from firmware_sim.truth import GroundTruthWriter, TruthError
from linli.clock import Clock, ManualClock, ScaledClock, SystemClock
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


def _speed(text: str) -> float | None:
    """A positive factor, or ``max`` (None)."""
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number or max") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number or max")
    return value


def _start(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an ISO 8601 time, e.g. 2026-11-26T18:00+08:00") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a UTC offset, e.g. 2026-11-26T18:00+08:00")
    return moment.astimezone(UTC)


def _fleet(text: str) -> tuple[int, int, int]:
    try:
        return parse_fleet(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def read_credentials(path: Path) -> dict[str, tuple[str, str | None]]:
    """The table ``linli provision`` prints (SITE DEVICE KIND USERNAME PASSWORD, header optional)
    as the simulator's credentials: ``site/device`` or ``site/concentrator/ID`` -> (user, password)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SimulatorError(f"--credentials {path}: cannot read it: {exc.strerror or exc}") from None
    out: dict[str, tuple[str, str | None]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        cells = line.split()
        if not cells or cells[0].startswith("#") or cells[:2] == ["SITE", "DEVICE"]:
            continue
        if len(cells) != 5:
            raise SimulatorError(f"--credentials {path}:{number}: expected SITE DEVICE KIND USERNAME PASSWORD")
        site, device, kind, username, password = cells
        out[f"{site}/concentrator/{device}" if kind == "concentrator" else f"{site}/{device}"] = (username, password)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Simulate the streetlights, elevators and chargers of a site over MQTT (device contract v1): "
        "a retained status with a last will, periodic telemetry, and injected faults.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=INJECT_GRAMMAR + "\n\nEnvironment: LINLI_MQTT_URL, LINLI_MQTT_USERNAME, LINLI_MQTT_PASSWORD, LINLI_MQTT_CA_FILE, "
        "LINLI_MQTT_CERT_FILE, LINLI_MQTT_KEY_FILE (mqtts://), LINLI_SITES "
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
        "--scenario", metavar="NAME|FILE",
        help=f"run a scenario: built-in {', '.join(builtin_scenarios())}, or a YAML file (docs/simulator.md); "
             "it sets the start time and the faults; at --speed max it also sets how long simulated time runs",
    )
    parser.add_argument(
        "--truth", metavar="FILE", type=Path,
        help="write what was injected, when and where, as JSON Lines, for `linli sim-check`",
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
    parser.add_argument(
        "--speed", metavar="X|max", type=_speed, default=1.0,
        help="simulated seconds per wall second, e.g. 60 (a night in 12 minutes), or max: as fast as publishing "
        "allows, no sleeps (default 1: real time)",
    )
    parser.add_argument(
        "--start", metavar="TIME", type=_start, default=None,
        help="simulated start time, ISO 8601 with an offset, e.g. 2026-11-26T18:00+08:00 (default: now)",
    )
    parser.add_argument(
        "--sim-duration", metavar="SECONDS", type=_seconds, default=None,
        help="stop once this much simulated time has passed, e.g. 12h (with --speed 60 or max)",
    )
    parser.add_argument(
        "--baseline-days", metavar="N", type=_count, default=0,
        help="with --scenario: start N days earlier with only the scenario's energy_anomaly lights reporting (the "
        "other devices silent, as if not installed yet), so the lights have the nightly baseline energy_anomaly "
        "needs (14 nights) when the scenario begins; not in the ground truth",
    )
    parser.add_argument(
        "--wait-for", metavar="CLIENT_ID", action="append", default=[],
        help="with --speed max: a follower of the clock (a gateway's LINLI_MQTT_CLIENT_ID, following with "
        "LINLI_FOLLOW_SIM_CLOCK) the simulated time waits for, never more than --lead ahead of it; repeatable",
    )
    parser.add_argument(
        "--lead", metavar="SECONDS", type=_seconds, default=30.0,
        help="with --wait-for: how far simulated time may run ahead of the slowest follower (default %(default)g s)",
    )
    parser.add_argument(
        "--fleet", metavar="SxCxK", type=_fleet, default=None,
        help="simulate a synthetic county instead of site files: S sites x C concentrators x K streetlights, "
        "e.g. 20x10x500 (100,000 lights over 200 concentrator connections)",
    )
    parser.add_argument(
        "--clockless", action="store_true",
        help="devices without a clock: no ts in any message (the gateway stamps arrival; expiry is not checked)",
    )
    parser.add_argument(
        "--buffer", metavar="N", type=_count, default=1000,
        help="QoS 1 messages each device keeps while the broker is away, replayed on reconnection (default %(default)s)",
    )
    parser.add_argument(
        "--credentials", metavar="FILE", type=Path, default=None,
        help="per-device broker credentials: the table `linli provision` prints (SITE DEVICE KIND USERNAME PASSWORD)",
    )
    parser.add_argument("--boot", metavar="N", type=_count, default=None,
                        help="the boot counter devices report (default: grows with the wall clock)")
    parser.add_argument("--progress", metavar="SECONDS", type=_seconds, default=5.0,
                        help="progress line on stderr every this many seconds (default 5)")
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


def _baseline_silence(sites: Sequence[Site], injections: Sequence[Injection], first: datetime, length: timedelta,
                      selected: Sequence[str] | None) -> list[Injection]:
    """During the baseline days every device but the energy_anomaly targets is silent (not recorded)."""
    targets = {(i.site, i.device_id) for i in injections if i.fault is Fault.ENERGY_ANOMALY}
    wanted = set(selected) if selected else None
    return [
        Injection(device.id, Fault.OFFLINE, first, length, site=site.id if len(sites) > 1 else None, recorded=False)
        for site in sites for device in site.spec.devices
        if not device.retired and (site.id, device.id) not in targets and (None, device.id) not in targets
        and (wanted is None or device.id in wanted or f"{site.id}:{device.id}" in wanted)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse has printed why
        return exc.code if isinstance(exc.code, int) else 0
    _setup_logging(args.quiet)

    factory: ModelFactory | None = None
    try:
        if args.fleet is not None:
            sites: list[Site] = county(*args.fleet, seed=args.seed)
            factory = fleet_models(args.seed)
        else:
            sites = [load_site(path) for path in _site_paths(args.site)]
    except SiteConfigError as exc:
        return _fail(str(exc).replace("\n", "; "))
    ids = [s.id for s in sites]
    if len(set(ids)) != len(ids):
        return _fail(f"the same site is given twice ({', '.join(ids)})")

    scenario = None
    if args.scenario is not None:
        try:
            scenario = load_scenario(args.scenario)
        except ScenarioError as exc:
            return _fail(str(exc))
    now = SystemClock().now()
    start = args.start or (scenario.start_at(now, sites[0].spec.site.timezone) if scenario else now)
    sim_duration = args.sim_duration
    if sim_duration is None and scenario is not None and args.speed is None:
        # At full speed a scenario ends with its last minute; in real or scaled time the devices
        # keep running after the last fault until stopped (a demo, a trial).
        sim_duration = scenario.duration.total_seconds()
    if args.wait_for and args.speed is not None:
        return _fail("--wait-for needs --speed max (a clock the simulator drives)")
    if args.baseline_days and scenario is None:
        return _fail("--baseline-days needs --scenario")
    baseline = timedelta(days=args.baseline_days)
    first = start - baseline  # the clock starts here; the scenario (and the ground truth) at `start`
    clock: Clock
    if args.speed is None:
        clock = ManualClock(first)
    elif args.speed == 1.0 and first == now:
        clock = SystemClock()
    else:
        clock = ScaledClock(first, args.speed)
    try:
        broker = BrokerConfig.from_url(
            args.broker, os.environ.get("LINLI_MQTT_USERNAME") or None, os.environ.get("LINLI_MQTT_PASSWORD") or None
        )
        if broker.tls:  # mqtts://: the CA, client certificate and key as the platform's settings name them
            broker = dataclasses.replace(broker, ca_file=os.environ.get("LINLI_MQTT_CA_FILE") or None,
                                         cert_file=os.environ.get("LINLI_MQTT_CERT_FILE") or None,
                                         key_file=os.environ.get("LINLI_MQTT_KEY_FILE") or None)
        credentials = read_credentials(args.credentials) if args.credentials is not None else None
        injections = [parse_injection(spec, start=start) for spec in args.inject]
        if scenario is not None:
            injections.extend(scenario.injections(start, sites))
            if baseline:
                injections.extend(_baseline_silence(sites, injections, first, baseline, args.device))
        truth = None
        if args.truth is not None:
            truth = GroundTruthWriter(
                args.truth, seed=args.seed, sites=ids, scenario=scenario.name if scenario else None,
                speed=args.speed or 0.0, started_at=start, interval_s=args.interval, site_objects=sites,
            )
        simulator = Simulator(
            sites, broker, clock=clock, seed=args.seed, interval_s=args.interval, devices=args.device, injections=injections,
            credentials=credentials, boot=args.boot, report_every_s=args.progress, time_scale=args.speed or 1.0,
            drive_clock=args.speed is None, clockless=args.clockless, buffer_limit=args.buffer, model_factory=factory,
            announce_clock=not isinstance(clock, SystemClock), truth=truth,
            run_until=start + timedelta(seconds=sim_duration) if sim_duration is not None and args.speed is None else None,
            wait_for=args.wait_for, lead_s=args.lead, staging_until=start if baseline else None,
        )
    except (SimulatorError, InjectionError, ScenarioError, TruthError) as exc:
        return _fail(str(exc))

    count = len(simulator.device_keys)
    period = f"every {args.interval:g} s" if args.interval else "at each device's interval"
    noun = "device" if count == 1 else "devices"
    where = ", ".join(ids) if len(ids) <= 4 else f"{len(ids)} sites"
    pace = "as fast as possible" if args.speed is None else f"x{args.speed:g}"
    log.info("simulating %d %s of %s over %d connections, telemetry %s, broker %s, time %s from %s", count, noun, where,
             len(simulator.connection_ids), period, broker.url, pace, start.isoformat(timespec="seconds"))
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
        deadline = None if args.duration is None else time.monotonic() + args.duration
        sim_end = None if sim_duration is None else start.timestamp() + sim_duration
        with contextlib.suppress(KeyboardInterrupt):
            while not stop.is_set():
                left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
                if left <= 0 or simulator.reached_end or (sim_end is not None and clock.now().timestamp() >= sim_end):
                    break
                stop.wait(left)
        log.info("stopping: marking devices offline")
        simulator.stop()
        if truth is not None:
            truth.close(at=clock.now())
            log.info("ground truth written to %s", args.truth)
        stats = simulator.stats()
        log.info("sent %d telemetry, %d event and %d status messages; %d replayed from offline buffers, %d dropped",
                 stats.telemetry_sent, stats.events_sent, stats.status_sent, stats.replayed, stats.buffer_dropped)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
