"""A standby gateway takes a site over when its gateway dies: two gateway processes configured for
the same site on a real Mosquitto, sharing PostgreSQL. The first serves; it is killed (SIGKILL);
the second takes the lease within the TTL plus a margin, inherits the site's MQTT session (so the
QoS 1 messages published while nobody held the site reach it) and turns a fault injected after the
kill into exactly one ticket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import servers
from sqlalchemy import func, select

from integration.test_gateway_resilience import LIGHTS, Publisher, _metrics, _wait_metric, seqs_in_store
from linli.storage import Database, SiteLease, TicketRow, migrate

TTL_S, RENEW_S = 4.0, 1.0
MARGIN_S = 3.0  # the standby's next try after the expiry (RENEW_S), its restore and its session's connect


def test_the_standby_takes_the_site_over_when_its_gateway_is_killed_and_loses_nothing(
    mosquitto: Any, postgres_url: str, tmp_path: Path,
) -> None:
    migrate(postgres_url)  # once, before both start
    store_url = f"sqlite:///{tmp_path / 'ts.db'}"
    prefix = f"linli-{uuid.uuid4().hex[:6]}"  # the site's session, shared by the pair
    log = (tmp_path / "gateways.log").open("ab")

    def run(name: str) -> tuple[subprocess.Popen[bytes], int]:
        port = servers.free_port()
        env = {**os.environ, "LINLI_DATA_DIR": str(tmp_path / name), "LINLI_MQTT_URL": mosquitto.url,
               "LINLI_TSDB_URL": store_url, "LINLI_DATABASE_URL": postgres_url, "LINLI_SITES": "",
               "LINLI_MQTT_CLIENT_ID": f"{prefix}-{name}", "LINLI_GATEWAY_SESSION_PREFIX": prefix,
               "LINLI_GATEWAY_LEASE_TTL_S": str(TTL_S), "LINLI_GATEWAY_LEASE_RENEW_S": str(RENEW_S),
               "LINLI_GATEWAY_METRICS_PORT": str(port), "LINLI_GATEWAY_METRICS_HOST": "127.0.0.1"}
        proc = subprocess.Popen([sys.executable, "-m", "linli.cli", "gateway"], env=env, stdout=log, stderr=log)
        _wait_metric(port, "linli_gateway_broker_connected", 1, proc)
        return proc, port

    now_ms = int(time.time() * 1000)
    before, after = 20, 20
    active, active_port = run("a")
    standby: subprocess.Popen[bytes] | None = None
    publisher = Publisher(mosquitto)
    try:
        _wait_metric(active_port, "linli_gateway_leases_held", 1, active)
        standby, standby_port = run("b")
        time.sleep(RENEW_S * 2)  # it has tried, and been refused, at least once
        assert _metrics(standby_port)["linli_gateway_leases_held"] == 0
        for seq in range(before):
            for device in LIGHTS:
                publisher.telemetry(device, seq, now_ms - 300_000 + seq * 5000)
        publisher.flush()
        _wait_metric(active_port, "linli_gateway_messages_acked_total", before * len(LIGHTS), active)
        assert _metrics(standby_port).get("linli_gateway_messages_received_total", 0) == 0

        active.send_signal(signal.SIGKILL)
        active.wait(10)
        killed_at = time.monotonic()
        # Published while nobody holds the site; SL-01's lamp fails now (dark for 100 s of samples, over the
        # 60 s the rule asks).
        for seq in range(before, before + after):
            for device in LIGHTS:
                publisher.telemetry(device, seq, now_ms - 300_000 + seq * 5000, 0.0 if device == "SL-01" else 40.0)
        publisher.flush()
        _wait_metric(standby_port, "linli_gateway_leases_held", 1, standby, timeout=TTL_S + MARGIN_S + 5)
        took_over_s = time.monotonic() - killed_at
        assert took_over_s <= TTL_S + MARGIN_S, f"took over after {took_over_s:.1f} s"
        _wait_metric(standby_port, "linli_gateway_messages_acked_total", after * len(LIGHTS), standby)
        print(f"standby took over {took_over_s:.2f} s after the kill (TTL {TTL_S} s)")
    finally:
        publisher.close()
        for proc in (active, standby):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
        log.close()
    since = datetime.fromtimestamp(now_ms / 1000 - 400, UTC)
    for device in LIGHTS:
        seqs = seqs_in_store(store_url, device, since, since + timedelta(minutes=5))
        assert seqs == list(range(before + after)), f"{device}: {len(seqs)} seqs"
    database = Database(postgres_url)
    try:
        with database.session() as session:
            lamp = session.scalars(select(TicketRow).where(TicketRow.fault == "lamp_failure")).all()
            repeated = session.execute(
                select(TicketRow.subject_id, TicketRow.fault, func.count())
                .group_by(TicketRow.subject_id, TicketRow.fault).having(func.count() > 1)).all()
            lease = session.get(SiteLease, "wanmei")
    finally:
        database.close()
    assert [(t.device_id, t.status) for t in lamp] == [("SL-01", "open")]
    assert repeated == []
    # The standby, stopped cleanly, gave the site back (expired now) under the epoch it took it with.
    assert lease is not None and (lease.holder, lease.epoch) == (f"{prefix}-b", 2)
