"""Faults injected into a running system, with real processes: what must hold through each.

The faults already covered elsewhere are not repeated here (docs/reliability.md lists them all):
the store down for a minute, a broker restart, a gateway SIGKILL holding thousands of messages
(test_gateway_resilience.py), PostgreSQL stopped under an in-process gateway
(test_gateway_db_outage.py), the standby taking over (test_gateway_standby.py), the watchdog's
alerts (test_watchdog.py). Here:

* PostgreSQL restarted under a gateway process and an API process (a private cluster of the test's
  own, never the machine's shared one): the API answers 503, promptly, while it is down and 200
  again within RECOVER_S of its return; the gateway acknowledges nothing it could not commit, then
  commits everything once: every QoS 1 message in the store, one ticket for the fault decided
  during the outage.
* PostgreSQL frozen (SIGSTOP) under the API: `/healthz` answers 503 within ANSWER_S, and so does a
  list that takes a pooled connection (the API's request deadline); 200 again once it resumes.
* InfluxDB stopped, then frozen, under the API: health degraded (200), history 503, both bounded,
  and 200 again once it is back.
* The disk under the gateway's point buffer full (a 2 MiB tmpfs) while the store is down: the
  gateway stays up, keeps turning faults into tickets, and once the store is back new telemetry
  reaches it.
* A device's clock jumping hours forward and back: no crash, no false offline ticket, the
  future-stamped messages dead-lettered and the past-stamped ones kept as replays.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import servers
from sqlalchemy import select

from gateway.runtime import Gateway
from gateway.settings import GatewaySettings
from integration.test_gateway_resilience import LIGHTS, Publisher, _metrics, _wait_metric, seqs_in_store
from linli.clock import ManualClock, to_ms
from linli.storage import Database, DeadLetter, TicketRow

ADMIN_PASSWORD = "fault-injection-admin"
RECOVER_S = 30.0  # the API serves again, and the gateway has committed its backlog, within this after PostgreSQL returns
ANSWER_S = 10.0  # while PostgreSQL is down the API answers (503) within this: never hangs
WAIT_S = 60.0
NIGHT = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # 21:00 in Fujian


# ---------------------------------------------------------------- processes


def _env(tmp_path: Path, mosquitto: Any, database_url: str, store_url: str, metrics_port: int) -> dict[str, str]:
    return {**os.environ, "LINLI_DATA_DIR": str(tmp_path / "data"), "LINLI_MQTT_URL": mosquitto.url,
            "LINLI_TSDB_URL": store_url, "LINLI_DATABASE_URL": database_url, "LINLI_SITES": "",
            "LINLI_MQTT_CLIENT_ID": f"gw-{uuid.uuid4().hex[:8]}", "LINLI_GATEWAY_METRICS_PORT": str(metrics_port),
            "LINLI_GATEWAY_METRICS_HOST": "127.0.0.1", "LINLI_ENV": "development", "LINLI_SECRET_KEY": "f" * 40,
            "LINLI_ADMIN_PASSWORD": ADMIN_PASSWORD, "LINLI_LOG_LEVEL": "INFO"}


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait(predicate: Any, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None,
          log: Path | None = None) -> float:
    """Seconds until `predicate()` held (fails after `timeout`, or at once if `proc` exits)."""
    started = time.monotonic()
    while not predicate():
        assert proc is None or proc.poll() is None, f"{what}: the process exited\n{servers.tail(log) if log else ''}"
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout:.0f} s\n{servers.tail(log) if log else ''}"
        time.sleep(0.2)
    return time.monotonic() - started


def _ticket_rows(database_url: str, **where: Any) -> list[TicketRow]:
    database = Database(database_url)
    try:
        with database.session() as session:
            query = select(TicketRow)
            for key, value in where.items():
                query = query.where(getattr(TicketRow, key) == value)
            return list(session.scalars(query))
    finally:
        database.close()


# ---------------------------------------------------------------- PostgreSQL restart under the API and the gateway


def test_a_postgresql_restart_under_the_api_and_the_gateway_gives_503s_then_everything_once(
    mosquitto: Any, private_postgres: servers.PrivatePostgres, tmp_path: Path,
) -> None:
    """Must hold: while PostgreSQL is down, `/healthz` and an authenticated list answer 503 within
    ANSWER_S (no hang, no 500); nothing is acknowledged that was not committed; within RECOVER_S of
    its return the API answers 200 and the gateway has committed every message; the lamp fault
    decided during the outage is one ticket; both processes lived through it; no traceback in logs."""
    database_url = private_postgres.database_url("postgres")
    store_url = f"sqlite:///{tmp_path / 'ts.db'}"
    gw_port, api_port = servers.free_port(), servers.free_port()
    env = _env(tmp_path, mosquitto, database_url, store_url, gw_port)
    gw_log, api_log = tmp_path / "gateway.log", tmp_path / "api.log"
    base = f"http://127.0.0.1:{api_port}"
    gateway = api = None
    publisher = Publisher(mosquitto)
    before, during = 20, 40  # SL-01 dark for 80 s of samples during the outage (over the 60 s rule)
    now_ms = int(time.time() * 1000)
    try:
        with gw_log.open("ab") as out:
            gateway = subprocess.Popen([sys.executable, "-m", "linli.cli", "gateway"], env=env, stdout=out, stderr=out)
        _wait_metric(gw_port, "linli_gateway_broker_connected", 1, gateway)
        with api_log.open("ab") as out:
            api = subprocess.Popen([sys.executable, "-m", "linli.cli", "api", "--host", "127.0.0.1", "--port",
                                    str(api_port)], env=env, stdout=out, stderr=out)
        _wait(lambda: servers.http_ok(f"{base}/healthz"), WAIT_S, "the API", api, api_log)
        http = httpx.Client(base_url=base, timeout=ANSWER_S + 20)
        token = http.post("/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        assert http.get("/api/v1/tickets", headers=auth).status_code == 200

        for seq in range(before):
            for device in LIGHTS:
                publisher.telemetry(device, seq, now_ms - 200_000 + seq * 2000)
        publisher.flush()
        _wait_metric(gw_port, "linli_gateway_messages_acked_total", before * len(LIGHTS), gateway)

        private_postgres.stop()
        for path, headers in (("/healthz", {}), ("/api/v1/tickets", auth), ("/api/v1/devices?site=wanmei", auth)):
            started = time.monotonic()
            answer = http.get(path, headers=headers)
            took = time.monotonic() - started
            assert answer.status_code == 503, (path, answer.status_code, answer.text)
            assert took < ANSWER_S, f"{path} took {took:.1f} s to answer while PostgreSQL was down"
        assert answer.json()["detail"]  # a sentence, not an empty body
        # SL-01's lamp goes dark during the outage: decided in batches whose commit fails.
        for seq in range(before, before + during):
            for device in LIGHTS:
                publisher.telemetry(device, seq, now_ms - 200_000 + seq * 2000, 0.0 if device == "SL-01" else 40.0)
        publisher.flush()
        _wait(lambda: _metrics(gw_port).get("linli_gateway_db_errors_total", 0) >= 2, WAIT_S,
              "a failed commit", gateway, gw_log)
        acked = _metrics(gw_port)["linli_gateway_messages_acked_total"]
        time.sleep(2.0)  # the outage goes on: the gateway retries and acknowledges nothing meanwhile
        assert _metrics(gw_port)["linli_gateway_messages_acked_total"] == acked < (before + during) * len(LIGHTS)

        private_postgres.start()
        api_back = _wait(lambda: http.get("/api/v1/tickets", headers=auth).status_code == 200, RECOVER_S,
                         "the API after PostgreSQL returned", api)
        gw_back = _wait(lambda: _metrics(gw_port).get("linli_gateway_messages_acked_total", 0)
                        >= (before + during) * len(LIGHTS), RECOVER_S, "the gateway's backlog", gateway)
        print(f"API 200 again {api_back:.1f} s after PostgreSQL returned; gateway caught up {gw_back:.1f} s later")
        assert http.get("/healthz").status_code == 200
        listed = http.get("/api/v1/tickets", headers=auth, params={"device_id": "SL-01"}).json()["items"]
        assert [(t["fault"], t["device_id"]) for t in listed] == [("lamp_failure", "SL-01")]
        assert gateway.poll() is None and api.poll() is None
        http.close()
    finally:
        publisher.close()
        _stop(gateway)
        _stop(api)
    since = datetime.fromtimestamp((now_ms - 300_000) / 1000, UTC)
    for device in LIGHTS:
        assert seqs_in_store(store_url, device, since, datetime.now(UTC)) == list(range(before + during)), device
    lamp = _ticket_rows(database_url, fault="lamp_failure")
    assert [(t.device_id, t.status) for t in lamp] == [("SL-01", "open")]
    for log in (gw_log, api_log):
        assert "Traceback" not in log.read_text(encoding="utf-8", errors="replace"), log


# ---------------------------------------------------------------- PostgreSQL frozen under the API


@contextlib.contextmanager
def _api_on(tmp_path: Path, database_url: str, **settings: str) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    """An API process on `database_url` (with more LINLI_* `settings`), a client with a short timeout
    and an admin's header."""
    port = servers.free_port()
    env = {**_env(tmp_path, _NoBroker(), database_url, f"sqlite:///{tmp_path / 'ts.db'}", 0), **settings}
    log = tmp_path / "api.log"
    with log.open("ab") as out:
        api = subprocess.Popen([sys.executable, "-m", "linli.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
                               env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: servers.http_ok(f"{base}/healthz"), WAIT_S, "the API", api, log)
        with httpx.Client(base_url=base, timeout=ANSWER_S + 2) as http:
            token = http.post("/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}).json()
            yield http, {"Authorization": f"Bearer {token['access_token']}"}
    finally:
        _stop(api)


class _NoBroker:
    url = "mqtt://127.0.0.1:9"


@contextlib.contextmanager
def _frozen(cluster: servers.PrivatePostgres) -> Iterator[None]:
    """SIGSTOP every process of the cluster (a hung server: its sockets accept, nothing answers)."""
    import psutil

    pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):  # a backend that ended meanwhile needs no stop
            proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):  # seen once in CI: gone, so nothing to resume
                proc.send_signal(signal.SIGCONT)


def _warm_pool(http: httpx.Client, auth: dict[str, str]) -> None:
    """Concurrent requests, so the API's pool holds several idle connections."""
    from concurrent.futures import ThreadPoolExecutor

    def one(_: int) -> int:
        return httpx.get(f"{str(http.base_url).rstrip('/')}/api/v1/tickets", headers=auth, timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(16))) == {200}


def test_a_frozen_postgresql_makes_healthz_answer_503_within_seconds(
    private_postgres: servers.PrivatePostgres, tmp_path: Path,
) -> None:
    """Must hold: PostgreSQL frozen (every process stopped: a hung server or storage), `/healthz`
    answers 503 within ANSWER_S however many pooled connections the API holds (a load balancer or
    the watchdog must hear "down", not time out), and 200 again within RECOVER_S once it resumes."""
    with _api_on(tmp_path, private_postgres.database_url("postgres")) as (http, auth):
        _warm_pool(http, auth)
        with _frozen(private_postgres):
            for _ in range(2):  # the second while the first ping is still stuck
                started = time.monotonic()
                answer = http.get("/healthz")
                assert answer.status_code == 503 and answer.json()["database"] is False
                assert time.monotonic() - started < ANSWER_S
        _wait(lambda: http.get("/healthz").status_code == 200, RECOVER_S, "/healthz after PostgreSQL resumed")


def test_a_frozen_postgresql_makes_a_list_answer_503_within_seconds(
    private_postgres: servers.PrivatePostgres, tmp_path: Path,
) -> None:
    """Must hold: with PostgreSQL frozen (SIGSTOP: its sockets stay open, nothing answers), a list
    that takes a pooled connection answers 503 with a sentence within the API's request deadline
    (LINLI_REQUEST_TIMEOUT_S, 5 s here), and 200 again once PostgreSQL resumes."""
    with _api_on(tmp_path, private_postgres.database_url("postgres"), LINLI_REQUEST_TIMEOUT_S="5") as (http, auth):
        _warm_pool(http, auth)
        with _frozen(private_postgres):
            started = time.monotonic()
            try:
                answer = http.get("/api/v1/tickets", headers=auth)
            except httpx.TimeoutException:
                pytest.fail(f"GET /api/v1/tickets did not answer within {ANSWER_S + 2:.0f} s while PostgreSQL was frozen")
            assert answer.status_code == 503, answer.text
            assert "did not answer" in answer.json()["detail"] and answer.headers["retry-after"] == "30"
            assert time.monotonic() - started < ANSWER_S
        _wait(lambda: http.get("/api/v1/tickets", headers=auth).status_code == 200, RECOVER_S,
              "the ticket list after PostgreSQL resumed")


# ---------------------------------------------------------------- InfluxDB down and frozen under the API


def test_influxdb_stopped_or_frozen_under_the_api_gives_a_degraded_health_and_503_history_then_200(
    private_postgres: servers.PrivatePostgres, tmp_path: Path,
) -> None:
    """Must hold: InfluxDB stopped, then frozen (SIGSTOP), under an API process: `/healthz` stays 200
    with `timeseries: false` (the database answers: degraded, not down) and a device's history
    answers 503 with a sentence (health within ANSWER_S, history within 15 s: the store client's
    read timeout is 10 s); history answers 200 again within RECOVER_S of
    InfluxDB's return."""
    import psutil

    influx = servers.started(lambda: servers.start_influxdb1(tmp_path / "influxd"))
    database_url = private_postgres.database_url("postgres")
    port = servers.free_port()
    env = _env(tmp_path, _NoBroker(), database_url, influx.store_url("history"), 0)
    log = tmp_path / "api.log"
    with log.open("ab") as out:
        api = subprocess.Popen([sys.executable, "-m", "linli.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
                               env=env, stdout=out, stderr=out)
    history = "/api/v1/devices/SL-01/telemetry"
    try:
        base = f"http://127.0.0.1:{port}"
        _wait(lambda: servers.http_ok(f"{base}/healthz"), WAIT_S, "the API", api, log)
        with httpx.Client(base_url=base, timeout=ANSWER_S + 20) as http:
            token = http.post("/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}).json()
            auth = {"Authorization": f"Bearer {token['access_token']}"}
            assert http.get(history, headers=auth).status_code == 200

            def down_answers() -> None:
                # a health check within ANSWER_S; a history query within the store client's 10 s read timeout
                for path, headers, code, within in (("/healthz", {}, 200, ANSWER_S), (history, auth, 503, 15.0)):
                    started = time.monotonic()
                    answer = http.get(path, headers=headers)
                    took = time.monotonic() - started
                    assert answer.status_code == code, (path, answer.status_code, answer.text)
                    assert took < within, f"{path} took {took:.1f} s"
                    print(f"{path}: {answer.status_code} in {took:.1f} s")
                    if path == "/healthz":
                        assert answer.json()["timeseries"] is False and answer.json()["database"] is True
                    else:
                        assert answer.json()["detail"]

            influx.stop()
            down_answers()
            influx.start()
            _wait(lambda: http.get(history, headers=auth).status_code == 200, RECOVER_S, "history after InfluxDB returned")

            pid = next(p.pid for p in psutil.process_iter(["name", "cmdline"])
                       if p.info["name"] == "influxd" and str(tmp_path) in " ".join(p.info["cmdline"] or []))
            os.kill(pid, signal.SIGSTOP)
            try:
                down_answers()
            finally:
                os.kill(pid, signal.SIGCONT)
            _wait(lambda: http.get(history, headers=auth).status_code == 200, RECOVER_S, "history after InfluxDB resumed")
    finally:
        _stop(api)
        influx.close()
    assert "Traceback" not in log.read_text(encoding="utf-8", errors="replace")


# ---------------------------------------------------------------- disk full under the point buffer


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only); the test is skipped where it cannot be mounted."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the buffer's byte bound is tested in test_gateway_resilience.py")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def test_a_full_disk_under_the_point_buffer_keeps_the_gateway_up_and_ticketing(
    mosquitto: Any, small_disk: Path, tmp_path: Path,
) -> None:
    """Must hold: with the store down and the buffer's disk full (2 MiB; its byte bound set far over
    it, as a misconfigured or shared disk would be), the gateway process stays up, a trapped
    passenger after the disk filled is a P0 ticket, telemetry that could not be kept is counted,
    and when the store returns new telemetry reaches it."""
    influx = servers.started(lambda: servers.start_influxdb1(tmp_path / "influxd"))
    store_url = influx.store_url("diskfull")
    port = servers.free_port()
    database_url = f"sqlite:///{tmp_path / 'linli.db'}"
    env = {**_env(tmp_path, mosquitto, database_url, store_url, port), "LINLI_BUFFER_MAX_MB": "64"}
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "buffer").symlink_to(small_disk)
    log = tmp_path / "gateway.log"
    gateway = None
    publisher = Publisher(mosquitto)
    now_ms = int(time.time() * 1000)
    try:
        with log.open("ab") as out:
            gateway = subprocess.Popen([sys.executable, "-m", "linli.cli", "gateway"], env=env, stdout=out, stderr=out)
        _wait_metric(port, "linli_gateway_broker_connected", 1, gateway)
        influx.stop()
        sent = 0
        for seq in range(4000):  # far more than 2 MiB of buffered points
            for device in LIGHTS[:5]:
                publisher.telemetry(device, seq, now_ms - 900_000 + seq * 200)
                sent += 1
        publisher.flush()
        _wait(lambda: _free_bytes(small_disk) < 64 * 1024 or _metrics(port).get("linli_gateway_points_dropped_total", 0)
              > 0, WAIT_S, "the buffer's disk filling", gateway)
        # A passenger is trapped after the disk filled: the ticket must not wait for disk space.
        publisher.client.publish("estate/v1/wanmei/elevator/EL-1A/telemetry", json.dumps(
            {"ts": int(time.time() * 1000) - 40_000, "seq": 1, "floor": 7, "moving": False, "door": "closed",
             "door_zone": False, "occupied": True, "mode": "normal"}), qos=1).wait_for_publish(10)
        publisher.client.publish("estate/v1/wanmei/elevator/EL-1A/telemetry", json.dumps(
            {"ts": int(time.time() * 1000), "seq": 2, "floor": 7, "moving": False, "door": "closed",
             "door_zone": False, "occupied": True, "mode": "normal"}), qos=1).wait_for_publish(10)
        _wait(lambda: bool(_ticket_rows(database_url, fault="trapped")), WAIT_S, "the trapped ticket", gateway)
        assert gateway.poll() is None
        metrics = _metrics(port)
        assert metrics["linli_gateway_messages_received_total"] >= sent
        lost = metrics.get("linli_gateway_points_dropped_total", 0) + metrics.get("linli_gateway_points_failed_total", 0)
        assert lost > 0, metrics  # what could not be kept is counted, not silently gone
        assert _free_bytes(small_disk) > 0  # the buffer stopped short of the end of its disk

        # Another process takes the rest of the disk: the buffer cannot even grow into its headroom.
        filler = small_disk / "filler"
        with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 4096)
        for seq in range(4000, 4600):
            for device in LIGHTS[:5]:
                publisher.telemetry(device, seq, now_ms - 900_000 + seq * 200)
                sent += 1
        publisher.client.publish("estate/v1/wanmei/charger/CP-01/event", json.dumps(
            {"ts": int(time.time() * 1000), "seq": 1, "code": "ground_failure", "detail": {"connector_id": 1}}),
            qos=1).wait_for_publish(10)
        publisher.flush()
        _wait(lambda: bool(_ticket_rows(database_url, fault="ground_failure")), WAIT_S, "the ground_failure ticket",
              gateway, log)
        _wait(lambda: _metrics(port).get("linli_gateway_messages_acked_total", 0) >= sent + 3, WAIT_S,
              "every message handled on a full disk", gateway, log)
        metrics = _metrics(port)
        print("points buffered, dropped, lost:", [metrics.get(f"linli_gateway_points_{n}_total")
                                                   for n in ("buffered", "dropped", "failed")])
        filler.unlink()

        influx.start()
        fresh = int(time.time() * 1000)
        publisher.telemetry("SL-09", 1, fresh)
        publisher.flush()
        _wait(lambda: bool(seqs_in_store(store_url, "SL-09", datetime.fromtimestamp(fresh / 1000 - 1, UTC),
                                          datetime.fromtimestamp(fresh / 1000 + 1, UTC))),
              WAIT_S, "new telemetry in the store after it returned", gateway, log)
        assert gateway.poll() is None
    finally:
        publisher.close()
        _stop(gateway)
        influx.close()
    text = log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in text


def _free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


# ---------------------------------------------------------------- a device's clock jumping


def test_a_device_clock_jumping_hours_forward_and_back_raises_nothing_false(mosquitto: Any, tmp_path: Path) -> None:
    """Must hold: a light whose clock jumps 6 h ahead (its messages refused: future ts) and one whose
    clock falls 6 h behind (kept as replays) are both still heard, so neither gets an `offline`
    ticket while it keeps sending; nothing else is raised; the gateway's worker lives on; when the
    clocks come back, their telemetry is taken as before. A light that does fall silent is still
    ticketed (the timers work)."""
    settings = GatewaySettings(
        _env_file=None, data_dir=tmp_path, mqtt_url=mosquitto.url, tsdb_url=f"sqlite:///{tmp_path / 'ts.db'}",
        database_url="", mqtt_client_id=f"gw-{uuid.uuid4().hex[:8]}", gateway_metrics_port=0,
    )
    clock = ManualClock(NIGHT)
    gw = Gateway(settings, clock=clock)
    gw.start()
    publisher = Publisher(mosquitto)
    ahead, behind, steady, silent = "SL-02", "SL-03", "SL-04", "SL-05"
    sent = 0
    try:
        assert gw.wait_until(lambda: gw.connected, WAIT_S)
        for live in gw.engine.devices():  # only the lights under test may raise anything
            if live.device_id not in (ahead, behind, steady, silent):
                live.last_seen = NIGHT + timedelta(days=1)
        for step in range(12):  # 12 x 30 s: 6 minutes, 4 times the 90 s silence limit
            now = NIGHT + timedelta(seconds=30 * step)
            clock.set(now)
            assert gw.wait_until(lambda: gw.last_tick_at is not None and gw.last_tick_at >= now, WAIT_S)  # noqa: B023
            offsets = {steady: 0, ahead: 6 * 3600 if 2 <= step < 9 else 0, behind: -6 * 3600 if 2 <= step < 9 else 0}
            if step == 0:
                offsets[silent] = 0  # heard once, then silent
            for device, offset_s in offsets.items():
                publisher.telemetry(device, step, to_ms(now) + offset_s * 1000)
                sent += 1
            publisher.flush()
            assert gw.wait_until(lambda: gw.messages_done >= sent, WAIT_S), gw.pipeline.counters  # noqa: B023
        end = NIGHT + timedelta(seconds=30 * 12)
        clock.set(end)
        assert gw.wait_until(lambda: gw.last_tick_at is not None and gw.last_tick_at >= end, WAIT_S)
        assert gw._worker.is_alive() and gw.connected
        with gw.database.session() as session:
            raised = [(t.device_id, t.fault) for t in session.scalars(select(TicketRow))]
            refused = [(d.device_id, d.reason) for d in session.scalars(select(DeadLetter))]
        assert raised == [(silent, "offline")], raised
        assert refused == [(ahead, "future_ts")] * 7, refused
        assert gw.pipeline.counters.replayed >= 7
    finally:
        publisher.close()
        gw.stop()
    # the light whose clock fell behind: its samples kept under their own (old) time, and the later ones
    since, until = NIGHT - timedelta(hours=7), NIGHT + timedelta(minutes=10)
    assert sorted(seqs_in_store(settings.timeseries_url, behind, since, until)) == list(range(12))
    assert seqs_in_store(settings.timeseries_url, ahead, since, until) == [0, 1, 9, 10, 11]

