"""Soak: the Wanmei site at 100x real speed plus a 10,000-charger background fleet, for an hour.

One command (starts its own Mosquitto, InfluxDB 1.x and a database of its own on the machine's
PostgreSQL, the real gateway and API processes and the simulator, and stops them)::

    .venv/bin/python bench/soak.py                       # one wall-clock hour (3600 s)
    .venv/bin/python bench/soak.py --duration 120        # a two-minute trial
    .venv/bin/python bench/soak.py --out /work/notes/soak/full   # keep logs and results there

What runs:

* ``linli sim --speed 100`` over the built-in Wanmei site with a scenario written for the soak:
  the all-faults scenario's injections (less ``energy_anomaly``, which needs 14 nights of
  baseline, and the optional ``concentrator_offline``) repeated in rounds every ``--round``
  simulated hours (default 24 h, i.e. every 14.4 wall minutes at 100x, so every round's faults fall
  at the times of day all-faults was written for), after a ``--warmup`` (1 simulated hour) in which
  the background fleet's chargers are first heard, with ``--truth``. ``end_of_life`` and
  ``ev_comm_errors`` come in the first round only (``FIRST_ROUND_ONLY`` says why). The simulator announces its
  clock on ``linli/v1/clock``; the gateway follows it (``LINLI_FOLLOW_SIM_CLOCK=true``).
* The crew: 15 simulated hours into each round it acknowledges and resolves every open ticket, as
  technicians would after the repairs; verification closes them on telemetry, and the next round's
  faults open or reopen tickets (a repeat on a ticket left open would rightly change nothing).
* A background fleet of ``--fleet`` chargers (default 10,000; a second site, ``soakfleet``), each
  sending healthy QoS 1 telemetry every 30 wall seconds (333 msg/s at 10,000) from a process of
  its own, stamped with the simulator's clock (so to the gateway each charger reports every 3,000
  simulated seconds; their ``interval_s`` is 3,600 and no silence timer fires).
* ``linli gateway`` (one process, following the clock), ``linli api``, InfluxDB 1.x, PostgreSQL.

``--trace-memory`` runs the gateway and the API under tracemalloc (``linli/ops/memtrace.py``) and
keeps, every ``--trace-every`` seconds, the places whose memory grew most in ``OUT/memtrace``.

Every ``--sample`` seconds (30): RSS and open file descriptors of the gateway (its process and its
children, summed) and of the API; the gateway's received/acknowledged counters and queue depth.
At the end, before the simulator stops (its stop marks every device offline): every ticket is read
from the API and compared with the simulator's ground truth (``firmware_sim.checker.check``, what
``linli sim-check`` does), the ERROR lines of each log are counted, and the results are written as
``soak.json`` and ``soak.txt`` in the output folder (and the text printed).

The machine may be shared: the figures are what this run saw, with whatever else ran beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
import psutil  # noqa: E402
import servers  # noqa: E402  (tests/servers.py: how the test suite starts real servers)
import yaml  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from bench.processes import metric, start_fleet, stopper, wait_for  # noqa: E402
from firmware_sim.checker import check, fetch_tickets  # noqa: E402
from linli.clock import CLOCK_TOPIC, FollowedClock  # noqa: E402

SITE, FLEET_SITE = "wanmei", "soakfleet"
SPEED = 100.0
FLEET_EVERY_S = 30.0  # wall seconds between two messages of one background charger
ADMIN_PASSWORD = "soak-admin-password"
SKIPPED_FAULTS = {"energy_anomaly", "concentrator_offline"}
# Injected in the first round only: a repeat a day later is not a new fault by the rule itself.
# end_of_life: a lamp past its rated life stays past it until a replacement is recorded (the
# simulator's burn hours never go back), so its ticket rightly reopens at the next lighting.
# ev_comm_errors: "3 sessions within 24 h"; with rounds 24 h apart the last round's errors are still
# in the window when the next round's begin, so the rule sees one episode that never cleared.
FIRST_ROUND_ONLY = {"end_of_life", "ev_comm_errors"}
CREW_AFTER_H = 15.0  # simulated hours into a round when the crew resolves what is open (all-faults ends at 14 h)
ERROR_LINE = re.compile(r"\bERROR\b|Traceback")


# ---------------------------------------------------------------- files


def soak_scenario(folder: Path, sim_hours: float, round_h: float, warmup_h: float) -> Path:
    """All-faults, less what cannot be judged within the run, in rounds every `round_h` simulated hours.

    The simulator starts `warmup_h` earlier than all-faults does (its clock at 19:30 less the
    warm-up) and every injection comes that much later, so each round's faults fall at the times of
    day the all-faults scenario was written for: a lamp fault at 11:30 in the morning would be one
    no detector can see (the lights are off) though the ground truth expects it.
    """
    base = yaml.safe_load((ROOT / "firmware_sim" / "scenarios" / "all-faults.yaml").read_text(encoding="utf-8"))
    once = [i for i in base["injections"] if i["fault"] not in SKIPPED_FAULTS]
    rounds = max(1, int(sim_hours // round_h) + 1)
    injections = []
    for k in range(rounds):
        for item in once:
            if k and item["fault"] in FIRST_ROUND_ONLY:
                continue
            at_s = (warmup_h + k * round_h) * 3600 + _seconds(item.get("at", "+0s"))
            injections.append({**item, "at": f"+{int(at_s)}s"})
    hh, mm = (int(x) for x in str(base["start"]).split(":"))
    start_min = (hh * 60 + mm - int(warmup_h * 60)) % (24 * 60)
    document = {"name": "soak", "description": f"all-faults in {rounds} rounds every {round_h:g} h (bench/soak.py)",
                "start": f"{start_min // 60:02d}:{start_min % 60:02d}",
                "duration": f"{int((warmup_h + rounds * round_h) * 3600)}s", "injections": injections}
    path = folder / "soak-scenario.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def _seconds(text: str) -> float:
    from firmware_sim.faults import parse_delay

    return parse_delay(text.lstrip("+")).total_seconds()


def fleet_site(folder: Path, chargers: int) -> Path:
    document = yaml.safe_load((ROOT / "linli" / "sites" / "wanmei.yaml").read_text(encoding="utf-8"))
    document["site"]["id"] = FLEET_SITE
    pile = next(d for d in document["devices"] if d["id"] == "CP-01")
    document["devices"] = [{**pile, "id": f"F{n:06d}", "name": f"F{n}", "name_en": f"F{n}", "interval_s": 3600}
                           for n in range(chargers)]
    document.pop("concentrators", None)
    path = folder / f"{FLEET_SITE}.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------- the background fleet


def fleet(port: int, chargers: int, stop: Any, sent: Any) -> None:
    """Each charger's healthy telemetry every FLEET_EVERY_S wall seconds, on the simulator's clock."""
    clock = FollowedClock()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"soak-fleet-{secrets.token_hex(3)}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_connect = lambda c, u, flags, rc, props: c.subscribe(CLOCK_TOPIC, qos=1)
    client.on_message = lambda c, u, m: clock.update(bytes(m.payload)) if m.payload else None
    client.connect("127.0.0.1", port)
    client.loop_start()
    while clock.announcement is None and not stop.is_set():
        time.sleep(0.1)
    rate = chargers / FLEET_EVERY_S
    started, n = time.monotonic(), 0
    while not stop.is_set():
        due = int((time.monotonic() - started) * rate)
        ts = int(clock.now().timestamp() * 1000)
        while n < due:
            device, seq = n % chargers, n // chargers
            body = {"ts": ts, "seq": seq, "status": "Available", "error_code": "NoError", "connector_id": 1,
                    "power_kw": 0.0, "voltage_v": 229.5, "current_a": 0.0, "energy_kwh": 100.0 + device % 50,
                    "temp_c": 24.0}
            client.publish(f"estate/v1/{FLEET_SITE}/charger/F{device:06d}/telemetry", json.dumps(body), qos=1)
            n += 1
        sent.value = n
        time.sleep(0.02)
    client.disconnect()
    client.loop_stop()


# ---------------------------------------------------------------- a user of the API


def admin_token(client: httpx.Client) -> str:
    """A bearer token of the soak's admin (the API user's and the crew's)."""
    answer = client.post("/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD})
    answer.raise_for_status()
    return str(answer.json()["access_token"])


class ApiUser:
    """What a dashboard does during the soak: one SSE stream (`/api/v1/events`, re-opened when it
    ends) and, every 10 s, the ticket list and `/healthz`. Counts answers that are not 2xx."""

    def __init__(self, base: str) -> None:
        import threading

        self.base, self.stop = base, threading.Event()
        self.sse_bytes = self.sse_opens = self.requests = self.bad = 0
        self.failures: dict[str, int] = {}
        self.examples: list[str] = []
        self.threads = [threading.Thread(target=self._stream, daemon=True), threading.Thread(target=self._poll, daemon=True)]
        for thread in self.threads:
            thread.start()

    def _stream(self) -> None:
        with httpx.Client(base_url=self.base, timeout=httpx.Timeout(10, read=60)) as client:
            while not self.stop.is_set():
                try:
                    headers = {"Authorization": f"Bearer {admin_token(client)}"}
                    with client.stream("GET", "/api/v1/events", headers=headers) as answer:
                        self.sse_opens += 1
                        if answer.status_code != 200:
                            self._failed("GET /api/v1/events", answer.status_code)
                        for chunk in answer.iter_bytes():
                            self.sse_bytes += len(chunk)
                            if self.stop.is_set():
                                return
                except httpx.HTTPError as exc:
                    self._failed("GET /api/v1/events", type(exc).__name__)
                self.stop.wait(1)

    def _poll(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            token, got_at = "", 0.0
            while not self.stop.wait(10):
                try:
                    if time.monotonic() - got_at > 600:
                        token, got_at = admin_token(client), time.monotonic()
                    for path in ("/api/v1/tickets?limit=50", "/healthz"):
                        self.requests += 1
                        answer = client.get(path, headers={"Authorization": f"Bearer {token}"})
                        if answer.status_code >= 300:
                            self._failed(f"GET {path}", answer.status_code, answer.text[:300])
                except httpx.HTTPError as exc:
                    self._failed("poll", type(exc).__name__)

    def _failed(self, what: str, how: int | str, body: str = "") -> None:
        self.bad += 1
        key = f"{what} -> {how}"
        self.failures[key] = self.failures.get(key, 0) + 1
        if body and len(self.examples) < 5:
            self.examples.append(f"{time.strftime('%H:%M:%S')} {key}: {body}")

    def close(self) -> dict[str, int]:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)
        return {"sse_opens": self.sse_opens, "sse_bytes": self.sse_bytes, "requests": self.requests, "not_2xx": self.bad,
                "failures": self.failures, "examples": self.examples}


# ---------------------------------------------------------------- the crew


class Crew:
    """What the property crew does between two rounds: at `first` and every `every` on the simulated
    clock (each round's faults over, the next not begun), it acknowledges and resolves every active
    ticket of the site, as technicians would after a repair. Verification then closes them on the
    devices' telemetry, and the next round's faults open new tickets or reopen these (a recurrence
    within 72 h), which the ground-truth checker counts either way. Without it a repeat on a ticket
    still open changes nothing (one open ticket per device and fault) and the soak would count
    misses that are the rule working."""

    def __init__(self, base: str, clock: FollowedClock, first: datetime, every: timedelta) -> None:
        import threading

        self.base, self.clock, self.due, self.every = base, clock, first, every
        self.stop = threading.Event()
        self.passes: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while not self.stop.wait(0.5):
                if self.clock.announcement is None or self.clock.now() < self.due:
                    continue
                try:
                    self.passes.append(self._pass(client))
                except httpx.HTTPError as exc:
                    self.passes.append({"at": self.due.isoformat(), "error": repr(exc)})
                self.due += self.every

    def _pass(self, client: httpx.Client) -> dict[str, Any]:
        auth = {"Authorization": f"Bearer {admin_token(client)}"}
        statuses = "&".join(f"status={s}" for s in ("open", "acknowledged", "in_progress", "on_hold"))
        listed = client.get(f"/api/v1/tickets?site={SITE}&{statuses}&limit=500", headers=auth)
        listed.raise_for_status()
        outcome: dict[str, Any] = {"at": self.clock.now().isoformat(timespec="seconds"),
                                   "active": len(listed.json()["items"]), "resolved": 0, "refused": {}}
        for ticket in listed.json()["items"]:
            if ticket.get("parent_id"):
                continue  # attached to its root: resolved with it
            steps = []
            if ticket["status"] == "open":
                steps.append(("ack", {}))
            if ticket["status"] == "on_hold":
                steps.append(("resume", {}))
            steps.append(("resolve", {"note": "soak: repaired"}))
            for step, body in steps:
                done = client.post(f"/api/v1/tickets/{ticket['id']}/{step}", json=body, headers=auth)
                if done.status_code >= 300:
                    key = f"{step} {ticket['status']} -> {done.status_code}"
                    outcome["refused"][key] = outcome["refused"].get(key, 0) + 1
                    outcome.setdefault("why", []).append(f"#{ticket['id']} {ticket['fault']}: {done.text[:200]}")
                    break
            else:
                outcome["resolved"] += 1
        return outcome

    def close(self) -> list[dict[str, Any]]:
        self.stop.set()
        self.thread.join(60)
        return self.passes


# ---------------------------------------------------------------- measuring


def tree(pid: int) -> tuple[float, int]:
    """RSS (MiB) and open fds of a process and its children."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return -1.0, -1
    rss, fds = 0, 0
    for p in procs:
        try:
            rss += p.memory_info().rss
            fds += p.num_fds()
        except psutil.NoSuchProcess:
            continue
    return rss / 2**20, fds


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value), per hour."""
    if len(points) < 3:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return None if den == 0 else 3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


def errors_in(path: Path) -> dict[str, Any]:
    """ERROR lines (and tracebacks) of a log, and its WARNING lines counted by what they say."""
    if not path.exists():
        return {"count": 0, "first": [], "warnings": {}}
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    lines = [line for line in text if ERROR_LINE.search(line)]
    warnings: dict[str, int] = {}
    for line in text:
        if " WARNING " in line:
            said = re.sub(r"\d+", "N", line.split(" WARNING ", 1)[1])[:120]
            warnings[said] = warnings.get(said, 0) + 1
    return {"count": len(lines), "first": lines[:5], "warnings": warnings}


# ---------------------------------------------------------------- the run


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "duration_s": args.duration,
        "speed": SPEED, "fleet_chargers": args.fleet, "fleet_msg_s": args.fleet / FLEET_EVERY_S,
        "round_sim_h": args.round, "warmup_sim_h": args.warmup,
        "host": {"cpus": os.cpu_count(), "load_at_start": os.getloadavg()},
        "note": "shared machine (2 cores, other engineers' tests running): figures include their load",
    }
    port = servers.free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    f"max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 1000\n"
                    + ("user root\n" if os.geteuid() == 0 else ""))
    sim_hours = args.duration * SPEED / 3600
    scenario = soak_scenario(folder, sim_hours, args.round, args.warmup)
    fleet_path = fleet_site(folder, args.fleet)
    wanmei = ROOT / "linli" / "sites" / "wanmei.yaml"
    truth = folder / "truth.jsonl"
    stack: list[Any] = []  # what to stop, last first
    samples: list[dict[str, Any]] = []
    try:
        broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack.append(stopper(broker))
        influx = servers.start_influxdb1(folder / "influx")
        stack.append(influx.close)
        pg = servers.start_postgres()
        stack.append(pg.close)
        name = f"linli_soak_{secrets.token_hex(4)}"
        pg.create_database(name)
        stack.append(lambda: pg.drop_database(name))
        servers.wait_until(lambda: servers.mqtt_answers("127.0.0.1", port), what="mosquitto")
        gw_port, api_port = servers.free_port(), servers.free_port()
        env = {**os.environ, "LINLI_DATA_DIR": str(folder / "data"), "LINLI_MQTT_URL": f"mqtt://127.0.0.1:{port}",
               "LINLI_TSDB_URL": influx.store_url("soak"), "LINLI_SITES": f"{wanmei},{fleet_path}",
               "LINLI_DATABASE_URL": pg.database_url(name), "LINLI_MQTT_CLIENT_ID": "soak-gw",
               "LINLI_GATEWAY_METRICS_PORT": str(gw_port), "LINLI_GATEWAY_METRICS_HOST": "127.0.0.1",
               "LINLI_LOG_LEVEL": "WARNING", "LINLI_ENV": "development", "LINLI_FOLLOW_SIM_CLOCK": "true",
               "LINLI_SECRET_KEY": secrets.token_hex(24), "LINLI_ADMIN_PASSWORD": ADMIN_PASSWORD}
        if args.trace_memory:  # tracemalloc in the gateway and the API (linli/ops/memtrace.py): slower
            env |= {"LINLI_TRACEMALLOC_DIR": str(folder / "memtrace"), "LINLI_TRACEMALLOC_EVERY_S": str(args.trace_every),
                    "LINLI_TRACEMALLOC_WARMUP_S": str(min(300.0, args.duration / 4))}
        logs = {n: folder / f"{n}.log" for n in ("gateway", "api", "sim")}
        with logs["gateway"].open("ab") as out:
            gateway = subprocess.Popen([sys.executable, "-m", "linli.cli", "gateway"], env=env, stdout=out, stderr=out,
                                       cwd=folder)
        stack.append(stopper(gateway))
        wait_for("the gateway", lambda: metric(gw_port, "linli_gateway_broker_connected") == 1, 180, gateway,
                 logs["gateway"])
        with logs["api"].open("ab") as out:
            api = subprocess.Popen([sys.executable, "-m", "linli.cli", "api", "--host", "127.0.0.1", "--port",
                                    str(api_port)], env=env, stdout=out, stderr=out, cwd=folder)
        stack.append(stopper(api))
        base = f"http://127.0.0.1:{api_port}"
        wait_for("the API", lambda: servers.http_ok(f"{base}/healthz"), 180, api, logs["api"])

        with logs["sim"].open("ab") as out:
            sim = subprocess.Popen(
                [sys.executable, "-m", "linli.cli", "sim", "--broker", f"mqtt://127.0.0.1:{port}", "--site", str(wanmei),
                 "--scenario", str(scenario), "--speed", f"{SPEED:g}", "--truth", str(truth), "--seed", str(args.seed),
                 "--progress", "60"], env=env, stdout=out, stderr=out, cwd=folder)
        stack.append(stopper(sim))
        clock = FollowedClock()
        watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"soak-clock-{secrets.token_hex(3)}")
        watcher.on_connect = lambda c, u, flags, rc, props: c.subscribe(CLOCK_TOPIC, qos=1)
        watcher.on_message = lambda c, u, m: clock.update(bytes(m.payload)) if m.payload else None
        watcher.connect("127.0.0.1", port)
        watcher.loop_start()
        stack.append(watcher.loop_stop)
        wait_for("the simulator's clock", lambda: clock.announcement is not None, 120, sim, logs["sim"])

        sent, stop_fleet = start_fleet(fleet, port, args.fleet)
        stack.append(stop_fleet)

        user = ApiUser(base)
        stack.append(lambda: results.__setitem__("api_user", user.close()))
        t0 = time.monotonic()
        sim_start = clock.now()
        results["sim_started_at"] = sim_start.isoformat()
        crew = Crew(base, clock, first=sim_start + timedelta(hours=args.warmup + CREW_AFTER_H),
                    every=timedelta(hours=args.round))
        stack.append(lambda: results.__setitem__("crew_passes", crew.close()))
        while True:
            elapsed = time.monotonic() - t0
            gw_rss, gw_fds = tree(gateway.pid)
            api_rss, api_fds = tree(api.pid)
            sample = {"t_s": round(elapsed, 1), "sim_at": clock.now().isoformat(timespec="seconds"),
                      "gateway_rss_mib": round(gw_rss, 1), "gateway_fds": gw_fds,
                      "api_rss_mib": round(api_rss, 1), "api_fds": api_fds,
                      "received": metric(gw_port, "linli_gateway_messages_received_total"),
                      "queue_depth": metric(gw_port, "linli_gateway_queue_depth"),
                      "fleet_sent": sent.value, "load1": os.getloadavg()[0]}
            samples.append(sample)
            if not args.quiet:
                print(json.dumps(sample), flush=True)
            for what, proc in (("gateway", gateway), ("API", api), ("simulator", sim)):
                if proc.poll() is not None:
                    raise RuntimeError(f"the {what} exited ({proc.returncode}) during the soak; see {folder}")
            if elapsed >= args.duration:
                break
            time.sleep(min(args.sample, max(0.0, args.duration - elapsed)))

        # The tickets, before the simulator stops (its stop marks every device offline).
        sim_end = clock.now()
        results["sim_ended_at"] = sim_end.isoformat()
        results["wall_s"] = round(time.monotonic() - t0, 1)
        time.sleep(args.settle)  # the last messages through the gateway
        tickets = fetch_tickets(base, "admin", ADMIN_PASSWORD)
        fleet_tickets = [t for t in tickets if t.site == FLEET_SITE]
        lines = [json.loads(line) for line in truth.read_text(encoding="utf-8").splitlines() if line.strip()]
        lines = [x for x in lines if x.get("type") != "end"] + [{"type": "end", "at": sim_end.isoformat()}]
        report = check(lines, [t for t in tickets if t.site == SITE], site=SITE)
        # At 100x a wall second is 100 simulated seconds: a slack of 2 wall seconds (the gateway's
        # timer pass, a busy shared machine) shows what is late beyond the pace of the run itself.
        scaled = check(lines, [t for t in tickets if t.site == SITE], site=SITE, slack=2 * SPEED)
        results["late_with_2_wall_s_slack"] = [_as_dict(d) for d in scaled.late]
        (folder / "tickets.json").write_text(json.dumps([_as_dict(t) for t in tickets], default=str), encoding="utf-8")
        results["faults"] = {
            "injected": report.injections, "expected_tickets": len(report.detections) + len(report.missed)
            + len(report.unfinished), "detected": len(report.detections), "late": len(report.late),
            "missed": [_as_dict(m) for m in report.missed],
            "unfinished": len(report.unfinished), "not_expected": len(report.not_expected),
            "wrongly_raised": report.wrong, "per_code": [_as_dict(c) for c in report.per_code],
            "delays_s": _delay_summary([d.delay_s for d in report.detections]),
        }
        results["fleet_tickets"] = [t.summary() for t in fleet_tickets]
        results["tickets_total"] = len(tickets)
        results["fleet_sent"] = sent.value
        results["gateway_received_end"] = metric(gw_port, "linli_gateway_messages_received_total")
        results["gateway_acked_end"] = metric(gw_port, "linli_gateway_messages_acked_total")
        for key in ("sequence_gaps", "duplicates", "dead_letters", "points_failed", "points_dropped", "points_buffered"):
            results[f"gateway_{key}"] = metric(gw_port, f"linli_gateway_{key}_total")
    finally:
        for stop_it in reversed(stack):
            try:
                stop_it()
            except Exception as exc:  # stop everything else anyway
                print(f"stopping: {exc}", file=sys.stderr)
    results["samples"] = samples
    results["memory"] = _trend(samples)
    results["errors"] = {n: errors_in(folder / f"{n}.log") for n in ("gateway", "api", "sim")}
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return results


def _as_dict(item: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(item)


def _delay_summary(delays: list[float]) -> dict[str, float] | None:
    if not delays:
        return None
    ordered = sorted(delays)
    return {"n": len(ordered), "p50": statistics.median(ordered), "p90": ordered[int(0.9 * (len(ordered) - 1))],
            "max": ordered[-1]}


def _trend(samples: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not samples:
        return out
    # The first 5 minutes (or the first third of a short run) are warm-up: caches, the live state filling.
    warm = min(300.0, samples[-1]["t_s"] / 3)
    for key in ("gateway_rss_mib", "gateway_fds", "api_rss_mib", "api_fds"):
        points = [(s["t_s"], float(s[key])) for s in samples if s[key] >= 0]
        after = [p for p in points if p[0] >= warm]
        out[key] = {"start": points[0][1] if points else None, "end": points[-1][1] if points else None,
                    "max": max(p[1] for p in points) if points else None,
                    "slope_per_h_after_warmup": _round(slope_per_hour(after)), "warmup_s": warm}
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def summary(r: dict[str, Any]) -> str:
    m, f = r.get("memory", {}), r.get("faults", {})
    lines = [f"soak {r['started_at']} -> {r['finished_at']}: {r.get('wall_s', 0):.0f} s wall, Wanmei x{r['speed']:g} "
             f"({r.get('sim_started_at', '?')} -> {r.get('sim_ended_at', '?')} simulated) + {r['fleet_chargers']:,} "
             f"chargers at {r['fleet_msg_s']:.0f} msg/s; {r['note']}"]
    for key, unit in (("gateway_rss_mib", "MiB"), ("gateway_fds", "fds"), ("api_rss_mib", "MiB"), ("api_fds", "fds")):
        x = m.get(key) or {}
        lines.append(f"  {key:<16} start {x.get('start')} end {x.get('end')} max {x.get('max')} {unit}; slope after "
                     f"warm-up {x.get('slope_per_h_after_warmup')} {unit}/h")
    lines.append("  ERROR lines: " + ", ".join(f"{n} {e['count']}" for n, e in r["errors"].items()))
    for n, e in r["errors"].items():
        for said, count in sorted(e.get("warnings", {}).items(), key=lambda x: -x[1])[:8]:
            lines.append(f"    {n} WARNING x{count}: {said}")
    if f:
        lines.append(f"  faults: {f['injected']} injected, {f['expected_tickets']} tickets expected, {f['detected']} "
                     f"detected ({f['late']} late), {len(f['missed'])} missed, {f['unfinished']} not yet due at the end, "
                     f"{len(f['wrongly_raised'])} raised wrongly; background fleet tickets {len(r['fleet_tickets'])}")
        lines.append(f"  late beyond a 2-wall-second slack ({2 * r['speed']:g} simulated s): "
                     f"{len(r.get('late_with_2_wall_s_slack', []))}")
        if f["delays_s"]:
            d = f["delays_s"]
            lines.append(f"  detection delay (simulated s): p50 {d['p50']:.0f}, p90 {d['p90']:.0f}, max {d['max']:.0f}")
        for miss in f["missed"][:10]:
            lines.append(f"    missed: {miss.get('fault')} {miss.get('target')} at {miss.get('at')} ({miss.get('reason')})")
        for wrong in f["wrongly_raised"][:10]:
            lines.append(f"    raised wrongly: {wrong}")
    lines.append(f"  API user: {r.get('api_user')}")
    for crew_pass in r.get("crew_passes") or []:
        lines.append(f"  crew pass: {crew_pass}")
    lines.append(f"  fleet sent {r.get('fleet_sent')}, gateway received {r.get('gateway_received_end')}, "
                 f"acknowledged {r.get('gateway_acked_end')}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=3600.0, help="wall seconds of soak (default 3600)")
    parser.add_argument("--fleet", type=int, default=10_000, help="background chargers, each every 30 s (10,000)")
    parser.add_argument("--round", type=float, default=24.0,
                        help="simulated hours between two rounds of faults (24: each round at the same time of day)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="simulated hours before the first round (the background fleet's first messages)")
    parser.add_argument("--trace-memory", action="store_true",
                        help="tracemalloc in the gateway and API: where memory grows, in OUT/memtrace (slower)")
    parser.add_argument("--trace-every", type=float, default=300.0, help="seconds between two memory snapshots")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between two samples (30)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds between the end and reading the tickets")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="folder for logs and results (default: a temp dir)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no sample lines on stdout")
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="linli-soak-"))
    folder.mkdir(parents=True, exist_ok=True)
    results = run(args, folder)
    (folder / "soak.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    text = summary(results)
    (folder / "soak.txt").write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"results and logs in {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
