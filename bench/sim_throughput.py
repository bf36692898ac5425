"""How many devices and messages per second one simulator process sustains, against a real Mosquitto.

One command (it starts its own Mosquitto on a free port and stops it)::

    .venv/bin/python bench/sim_throughput.py            # both phases, ~2 minutes
    .venv/bin/python bench/sim_throughput.py --seconds 20 --devices 1000 --fleet 20x10x500

Phases, each in its own process (so peak RSS is the phase's own), each bounded (<= 60 s):

(a) per-device connections: ``--devices`` streetlights (default 1,000), one MQTT connection each,
    ``--speed max`` (a ManualClock driven as fast as publishing allows), QoS 1 telemetry;
(b) fleet: a synthetic county (default 20 sites x 10 concentrators x 500 lights = 100,000 devices)
    through 200 concentrator connections, ``--speed max``.

For each: messages/s published (and PUBACKed) by the simulator in the measuring window, its CPU %
(one core = 100 %), its peak RSS, and the ceiling measured in the same run: ``mosquitto_sub`` (C)
subscribed to ``estate/#`` receiving the same stream (its rate, and the simulator's rate / its
rate). Last, the publisher ceiling: ``mosquitto_pub -l`` (C) pushing telemetry-sized QoS 1
messages over one connection as fast as it can. Results: a table on stdout, ``--json`` for JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_mosquitto(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = workdir / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false", "max_queued_messages 1000",
             "max_inflight_messages 100", "log_dest none"]
    if os.geteuid() == 0:
        lines.append("user root")
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], preexec_fn=raise_nofile,  # noqa: PLW1509
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("mosquitto did not start")


class Subscriber:
    """``mosquitto_sub -t estate/#`` counting what it receives (one line per message)."""

    def __init__(self, port: int, topic: str = "estate/#") -> None:
        self.count = 0
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-q", "0", "-F", "%t"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            chunk = self.proc.stdout.read1(1 << 16)
            if not chunk:
                return
            self.count += chunk.count(b"\n")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def run_phase(phase: str, port: int, seconds: float, devices: int, fleet: tuple[int, int, int]) -> dict[str, Any]:
    """One phase, in this process: build, connect, warm up, then measure for ``seconds``."""
    import psutil

    from firmware_sim.fleet import county, fleet_models
    from firmware_sim.runtime import Simulator
    from linli.clock import ManualClock

    built = time.monotonic()
    if phase == "a":
        per = min(devices, 500)
        sites = county(1, (devices + per - 1) // per, per, seed=1, prefix="bench-a", own_uplink=True)
    else:
        sites = county(*fleet, seed=1, prefix="bench-b")
    clock = ManualClock(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))  # 20:00 local: lights on
    simulator = Simulator(sites, f"mqtt://127.0.0.1:{port}", clock=clock, drive_clock=True, seed=1, boot=1,
                          model_factory=fleet_models(1), report_every_s=3600, keepalive_s=60)
    build_s = time.monotonic() - built
    subscriber = Subscriber(port)
    process = psutil.Process()
    started = time.monotonic()
    simulator.start(connect_timeout=60)
    connect_s = time.monotonic() - started
    simulator.wait_until(lambda s: s.telemetry_sent >= 5000, 30)  # warm-up: statuses out, telemetry flowing
    process.cpu_percent(None)
    t0, s0, r0 = time.monotonic(), simulator.stats(), subscriber.count
    deadline = t0 + seconds
    while time.monotonic() < deadline:
        time.sleep(0.5)
        sys.stderr.write(f"\r  phase {phase}: {simulator.stats().telemetry_sent - s0.telemetry_sent} msgs")
        sys.stderr.flush()
    t1, s1, r1 = time.monotonic(), simulator.stats(), subscriber.count
    cpu = process.cpu_percent(None)
    sys.stderr.write("\n")
    simulator.stop(timeout=20)
    subscriber.close()
    elapsed = t1 - t0
    sent = s1.telemetry_sent - s0.telemetry_sent
    received = r1 - r0
    sim_span = (s1.sim_now - s0.sim_now).total_seconds() if s1.sim_now and s0.sim_now else 0.0
    return {
        "phase": phase, "devices": s1.devices, "connections": s1.connections, "connected": s1.connected,
        "build_s": round(build_s, 1), "connect_s": round(connect_s, 1), "seconds": round(elapsed, 1),
        "msgs_per_s": round(sent / elapsed), "sub_msgs_per_s": round(received / elapsed),
        "ratio_to_sub": round(sent / received, 3) if received else None,
        "sim_speedup": round(sim_span / elapsed, 1), "cpu_pct": round(cpu),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "dropped": s1.buffer_dropped, "unacked_end": s1.unacked,
    }


def publisher_ceiling(port: int, count: int = 200_000) -> dict[str, Any]:
    """``mosquitto_pub -l`` (C, one connection, QoS 1) publishing telemetry-sized lines as fast as it can."""
    line = (b'{"ts":1795680000000,"seq":812,"relay":true,"dim_pct":100,"power_w":58.91,"voltage_v":229.4,'
            b'"current_a":0.270,"energy_kwh":1234.560}\n')
    subscriber = Subscriber(port)
    started = time.monotonic()
    proc = subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", "estate/v1/bench-pub/streetlight/L1/telemetry",
         "-q", "1", "-l"], input=line * count, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False,
    )
    elapsed = time.monotonic() - started
    time.sleep(0.5)
    subscriber.close()
    return {"phase": "mosquitto_pub", "msgs": count, "seconds": round(elapsed, 1), "msgs_per_s": round(count / elapsed),
            "sub_received": subscriber.count, "rc": proc.returncode}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring window per phase (default 30, max 45)")
    parser.add_argument("--devices", type=int, default=1000, help="phase (a): devices with their own connection")
    parser.add_argument("--fleet", default="20x10x500", help="phase (b): SITESxCONCENTRATORSxLIGHTS")
    parser.add_argument("--phases", default="a,b,pub", help="which phases, comma-separated (a, b, pub)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from firmware_sim.fleet import parse_fleet

    fleet = parse_fleet(args.fleet)
    seconds = min(args.seconds, 45.0)
    if args.phase:  # a child: one phase against the given broker
        raise_nofile()
        print(json.dumps(run_phase(args.phase, args.port, seconds, args.devices, fleet)))
        return 0
    for tool in ("mosquitto", "mosquitto_sub", "mosquitto_pub"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install mosquitto mosquitto-clients")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sim-bench-") as tmp:
        broker, port = start_mosquitto(Path(tmp))
        try:
            for phase in args.phases.split(","):
                if phase == "pub":
                    results.append(publisher_ceiling(port))
                    continue
                sys.stderr.write(f"phase {phase} ...\n")
                out = subprocess.run(
                    [sys.executable, __file__, "--phase", phase, "--port", str(port), "--seconds", str(seconds),
                     "--devices", str(args.devices), "--fleet", args.fleet],
                    capture_output=True, text=True, timeout=seconds + 120, check=False,
                )
                sys.stderr.write(out.stderr[-2000:])
                if out.returncode != 0:
                    raise SystemExit(f"phase {phase} failed")
                results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        finally:
            broker.terminate()
            broker.wait(10)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print("  ".join(f"{k}={v}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
