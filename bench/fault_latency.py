"""Fault-to-ticket latency under load: from the message that completes a fault to the ticket in the API.

One command (starts its own Mosquitto, InfluxDB 1.x and a database on the machine's PostgreSQL, the
real gateway and API processes, and stops them; about 4 minutes)::

    .venv/bin/python bench/fault_latency.py            # 200 faults over a 10,000-light background fleet
    .venv/bin/python bench/fault_latency.py --quick    # 20 faults, 2,000 lights (about 1 minute)

What is measured, for each fault: from the moment the bench publishes (QoS 1) the message that
completes the fault's condition, to the first answer of ``GET /api/v1/tickets?device_id=...`` that
holds the ticket (polled every 5 ms over one keep-alive connection). The publish moment is before
the message reaches the broker, so the figure errs on the long side. Faults alternate:

* ``ground_failure`` (P0): one ``event`` from a charger, which fires at once;
* ``lamp_failure`` (P2): two dark samples of a lamp whose relay is closed, 62 s apart in device
  time, sent back to back; the second completes the condition (2 samples, 60 s dark).

Meanwhile a background fleet of streetlights (their own process) sends healthy QoS 1 telemetry,
each light every 30 s (10,000 lights: 333 msg/s), which the gateway validates, detects on, writes
to InfluxDB and commits. The site is placed in a time zone where it is night now (lights lit is
healthy there; the gateway runs on the wall clock). Each fault device is used once; their
``interval_s`` is a day, so their silence never makes an ``offline`` ticket during the run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
import psutil  # noqa: E402
import servers  # noqa: E402  (tests/servers.py: how the test suite starts real servers)
import yaml  # noqa: E402
from astral import LocationInfo  # noqa: E402
from astral.sun import sun  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from bench.processes import metric, start_fleet, stopper, wait_for  # noqa: E402

SITE = "latency"
TARGET_P99_MS = 500.0
POLL_EVERY_S = 0.005
FAULT_TIMEOUT_S = 10.0
BACKGROUND_INTERVAL_S = 30
ADMIN_PASSWORD = "bench-admin-password"
# (time zone, latitude, longitude): one of them is in the night at any hour of the day
PLACES = [
    ("Asia/Shanghai", 26.08, 119.30), ("Europe/London", 51.51, -0.13), ("America/New_York", 40.71, -74.01),
    ("America/Los_Angeles", 34.05, -118.24), ("Asia/Kolkata", 19.08, 72.88), ("Pacific/Auckland", -36.85, 174.76),
    ("America/Sao_Paulo", -23.55, -46.63), ("Asia/Tokyo", 35.68, 139.69),
]


def night_place(now: datetime, lasting: timedelta) -> tuple[str, float, float]:
    """A place where the sun is down, by at least 30 min, from now until `lasting` later."""
    def dark(zone: str, lat: float, lon: float, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(zone))
        times = sun(LocationInfo(latitude=lat, longitude=lon, timezone=zone).observer, date=local.date(),
                    tzinfo=ZoneInfo(zone))
        margin = timedelta(minutes=30)
        return local >= times["sunset"] + margin or local < times["sunrise"] - margin

    for place in PLACES:
        if dark(*place, now) and dark(*place, now + lasting):
            return place
    raise RuntimeError("no place of the list is in the night now")  # pragma: no cover - 8 zones around the globe


def site_file(folder: Path, lights: int, faults: int, place: tuple[str, float, float]) -> Path:
    document = yaml.safe_load((ROOT / "linli" / "sites" / "wanmei.yaml").read_text(encoding="utf-8"))
    document["site"]["id"] = SITE
    document["site"]["timezone"] = place[0]
    document["site"]["coordinates"] = {"latitude": place[1], "longitude": place[2]}
    light = next(d for d in document["devices"] if d["id"] == "SL-01")  # 40 W on C1, an unswitched circuit
    pile = next(d for d in document["devices"] if d["id"] == "CP-01")
    devices = [{**light, "id": f"B{n:06d}", "name": f"B{n}", "interval_s": BACKGROUND_INTERVAL_S}
               for n in range(lights)]
    devices += [{**light, "id": f"FL{n:04d}", "name": f"FL{n}", "interval_s": 86_400} for n in range(faults)]
    devices += [{**pile, "id": f"FC{n:04d}", "name": f"FC{n}", "interval_s": 86_400} for n in range(faults)]
    document["devices"] = devices
    document.pop("concentrators", None)
    path = folder / f"{SITE}.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def background(port: int, lights: int, stop: Any, sent: Any) -> None:
    """Each light's healthy telemetry every BACKGROUND_INTERVAL_S, spread evenly (a process of its own)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-fleet-{secrets.token_hex(3)}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    rate = lights / BACKGROUND_INTERVAL_S
    started, n = time.monotonic(), 0
    while not stop.is_set():
        due = int((time.monotonic() - started) * rate)
        while n < due:
            device, seq = n % lights, n // lights
            body = {"ts": int(time.time() * 1000), "seq": seq, "relay": True, "dim_pct": 100, "power_w": 39.6,
                    "voltage_v": 229.4, "current_a": 0.18, "pf": 0.95, "energy_kwh": 1234.5 + seq / 100, "lux": 2.1}
            client.publish(f"estate/v1/{SITE}/streetlight/B{device:06d}/telemetry", json.dumps(body), qos=1)
            n += 1
        sent.value = n
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()


class Faults:
    """Publishes the fault messages (one connection, QoS 1) and times each ticket's arrival in the API."""

    def __init__(self, port: int, api: str, token: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-faults-{secrets.token_hex(3)}")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.http = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=5)

    def one(self, n: int) -> tuple[str, float | None]:
        """Fault number `n`: (fault code, seconds to the ticket, or None after FAULT_TIMEOUT_S)."""
        now_ms = int(time.time() * 1000)
        if n % 2 == 0:
            fault, device = "ground_failure", f"FC{n // 2:04d}"
            messages = [(f"estate/v1/{SITE}/charger/{device}/event",
                         {"ts": now_ms, "seq": 1, "code": "ground_failure", "detail": {"connector_id": 1}})]
        else:
            fault, device = "lamp_failure", f"FL{n // 2:04d}"
            dark = {"relay": True, "dim_pct": 100, "power_w": 0.0, "voltage_v": 229.0}
            topic = f"estate/v1/{SITE}/streetlight/{device}/telemetry"
            messages = [(topic, {"ts": now_ms - 62_000, "seq": 1, **dark}), (topic, {"ts": now_ms, "seq": 2, **dark})]
        for topic, body in messages[:-1]:
            self.client.publish(topic, json.dumps(body), qos=1).wait_for_publish(5)
        topic, body = messages[-1]
        started = time.perf_counter()  # the completing message leaves for the broker
        self.client.publish(topic, json.dumps(body), qos=1)
        while time.perf_counter() - started < FAULT_TIMEOUT_S:
            response = self.http.get("/api/v1/tickets", params={"device_id": device, "site": SITE})
            if response.status_code == 200 and any(t["fault"] == fault for t in response.json()["items"]):
                return fault, time.perf_counter() - started
            time.sleep(POLL_EVERY_S)
        return fault, None

    def close(self) -> None:
        self.http.close()
        self.client.disconnect()
        self.client.loop_stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]  # nearest rank


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"faults": args.faults, "lights": args.lights, "database": args.database,
                               "background_msg_s": args.lights / BACKGROUND_INTERVAL_S}
    port = servers.free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    f"max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 1000\n"
                    + ("user root\n" if os.geteuid() == 0 else ""))
    place = night_place(datetime.now(UTC), timedelta(minutes=30))
    results["place"] = place[0]
    sites = site_file(folder, args.lights, (args.faults + 1) // 2, place)
    stack: list[Any] = []  # what to stop, last first
    try:
        broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack.append(stopper(broker))
        influx = servers.start_influxdb1(folder / "influx")
        stack.append(influx.close)
        if args.database == "postgresql":
            pg = servers.start_postgres()
            stack.append(pg.close)
            name = f"linli_bench_{secrets.token_hex(4)}"
            pg.create_database(name)
            stack.append(lambda: pg.drop_database(name))
            db_url = pg.database_url(name)
        else:
            db_url = f"sqlite:///{folder / 'linli.db'}"
        servers.wait_until(lambda: servers.mqtt_answers("127.0.0.1", port), what="mosquitto")
        gw_port, api_port = servers.free_port(), servers.free_port()
        env = {**os.environ, "LINLI_DATA_DIR": str(folder / "data"), "LINLI_MQTT_URL": f"mqtt://127.0.0.1:{port}",
               "LINLI_TSDB_URL": influx.store_url("bench"), "LINLI_SITES": str(sites), "LINLI_DATABASE_URL": db_url,
               "LINLI_MQTT_CLIENT_ID": "bench-gw", "LINLI_GATEWAY_METRICS_PORT": str(gw_port),
               "LINLI_GATEWAY_METRICS_HOST": "127.0.0.1", "LINLI_LOG_LEVEL": "WARNING", "LINLI_ENV": "development",
               "LINLI_SECRET_KEY": secrets.token_hex(24), "LINLI_ADMIN_PASSWORD": ADMIN_PASSWORD}
        gw_log, api_log = folder / "gateway.log", folder / "api.log"
        with gw_log.open("ab") as out:
            gateway = subprocess.Popen([sys.executable, "-m", "linli.cli", "gateway"], env=env, stdout=out, stderr=out,
                                       cwd=folder)
        stack.append(stopper(gateway))
        wait_for("the gateway", lambda: metric(gw_port, "linli_gateway_broker_connected") == 1, 120, gateway, gw_log)
        with api_log.open("ab") as out:
            api = subprocess.Popen([sys.executable, "-m", "linli.cli", "api", "--host", "127.0.0.1", "--port",
                                    str(api_port)], env=env, stdout=out, stderr=out, cwd=folder)
        stack.append(stopper(api))
        base = f"http://127.0.0.1:{api_port}"
        wait_for("the API", lambda: servers.http_ok(f"{base}/healthz"), 120, api, api_log)
        token = httpx.post(f"{base}/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}).json()

        sent, stop_fleet = start_fleet(background, port, args.lights)  # no GIL shared with the timing
        stack.append(stop_fleet)
        # Warm up: the start's schedule pushes (a set_schedule per light, echoed back) and a first round
        # of the fleet are through, and the gateway keeps up (its acknowledged count follows what is sent).
        time.sleep(args.warmup)
        done0, sent0, t0 = metric(gw_port, "linli_gateway_messages_received_total"), sent.value, time.monotonic()
        gw_ps = psutil.Process(gateway.pid)
        cpu0 = gw_ps.cpu_times()

        faults = Faults(port, base, token["access_token"])
        latencies: dict[str, list[float]] = {"ground_failure": [], "lamp_failure": []}
        missed: list[int] = []
        rng = random.Random(7)
        try:
            for n in range(args.faults):
                fault, took = faults.one(n)
                if took is None:
                    missed.append(n)
                else:
                    latencies[fault].append(took * 1000)
                time.sleep(rng.uniform(0.05, 0.3))  # faults arrive at random moments of the gateway's cycle
        finally:
            faults.close()
        elapsed = time.monotonic() - t0
        cpu1 = gw_ps.cpu_times()
        done1, sent1 = metric(gw_port, "linli_gateway_messages_received_total"), sent.value
        results["gateway_msg_s"] = (done1 - done0) / elapsed
        results["fleet_sent_msg_s"] = (sent1 - sent0) / elapsed
        results["gateway_cpu_pct"] = 100 * (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / elapsed
        results["queue_depth_at_end"] = metric(gw_port, "linli_gateway_queue_depth")
        results["ticket_changes"] = metric(gw_port, "linli_gateway_ticket_changes_total")
        every = latencies["ground_failure"] + latencies["lamp_failure"]
        results["missed"] = missed
        results["seconds"] = elapsed
        for name, values in (("all", every), *latencies.items()):
            if values:
                results[name] = {"n": len(values), "p50_ms": percentile(values, 50), "p90_ms": percentile(values, 90),
                                 "p99_ms": percentile(values, 99), "max_ms": max(values),
                                 "mean_ms": statistics.fmean(values)}
    finally:
        for stop_it in reversed(stack):
            try:
                stop_it()
            except Exception as exc:  # stop everything else anyway
                print(f"stopping: {exc}", file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", type=int, default=200)
    parser.add_argument("--lights", type=int, default=10_000, help="background fleet (each every 30 s)")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--warmup", type=float, default=45.0, help="seconds of background before the first fault")
    parser.add_argument("--quick", action="store_true", help="20 faults over 2,000 lights, 20 s warm-up")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs) and print it")
    args = parser.parse_args()
    if args.quick:
        args.faults, args.lights, args.warmup = 20, 2_000, 20.0
    folder = Path(tempfile.mkdtemp(prefix="linli-latency-"))
    try:
        results = run(args, folder)
    finally:
        if args.keep:
            print(f"logs in {folder}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{results['faults']} faults over {results['lights']:,} background lights "
              f"({results['background_msg_s']:,.0f} msg/s offered, gateway did {results['gateway_msg_s']:,.0f} msg/s "
              f"at {results['gateway_cpu_pct']:.0f} % CPU); {results['database']}, InfluxDB 1.x; night in {results['place']}")
        print(f"fleet sent {results['fleet_sent_msg_s']:,.0f} msg/s; gateway queue at the end "
              f"{results['queue_depth_at_end']:.0f}; "
              f"ticket changes by the gateway {results['ticket_changes']:.0f}; {results['seconds']:.0f} s of faults")
        print(f"{'fault':<16}{'n':>5}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
        for name in ("all", "ground_failure", "lamp_failure"):
            if name in results:
                r = results[name]
                print(f"{name:<16}{r['n']:>5}{r['p50_ms']:>9.0f}{r['p90_ms']:>9.0f}{r['p99_ms']:>9.0f}{r['max_ms']:>9.0f}")
        if results["missed"]:
            print(f"no ticket within {FAULT_TIMEOUT_S:.0f} s for faults {results['missed']}")
        if "all" in results:
            verdict = "met" if results["all"]["p99_ms"] <= TARGET_P99_MS and not results["missed"] else "NOT met"
            print(f"target p99 <= {TARGET_P99_MS:.0f} ms: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
