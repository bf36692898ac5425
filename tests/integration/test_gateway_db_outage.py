"""A database outage loses no acknowledged message: a real PostgreSQL of the test's own is stopped
while QoS 1 telemetry flows through a real Mosquitto, then started again. Nothing is acknowledged
while commits fail; afterwards every message is in the store and the ticket opened during the
outage exists once."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import servers
from sqlalchemy import select

from gateway.runtime import Gateway
from gateway.settings import GatewaySettings
from integration.test_gateway_resilience import LIGHTS, Publisher, seqs_in_store
from linli.clock import ManualClock, to_ms
from linli.storage import DeviceState, TicketRow

NIGHT = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)
WAIT_S = 60.0
BEFORE, DURING = 40, 60  # messages per light before the outage, and sent while the database is down


def test_a_database_outage_keeps_batches_unacknowledged_and_commits_them_once_when_it_returns(
    mosquitto: Any, private_postgres: servers.PrivatePostgres, tmp_path: Path,
) -> None:
    database_url = private_postgres.database_url("postgres")
    settings = GatewaySettings(
        _env_file=None, data_dir=tmp_path, mqtt_url=mosquitto.url, tsdb_url=f"sqlite:///{tmp_path / 'ts.db'}",
        database_url=database_url, mqtt_client_id=f"gw-{uuid.uuid4().hex[:8]}", gateway_metrics_port=0,
        gateway_lease_ttl_s=120, gateway_lease_renew_s=5,  # the lease outlives the outage: the retry path alone
    )
    clock = ManualClock(NIGHT)
    gw = Gateway(settings, clock=clock)
    gw.start()
    publisher = Publisher(mosquitto)
    total = BEFORE + DURING
    base_ms = to_ms(NIGHT) - 300_000  # samples 2 s apart: the lamp is dark for 2 minutes (over the 60 s rule)
    try:
        assert gw.wait_until(lambda: gw.connected and bool(gw.site_links.links), WAIT_S)
        for live in gw.engine.devices():
            live.last_seen = NIGHT + timedelta(days=1)  # only the lamp under test may raise anything
        for seq in range(BEFORE):
            for device in LIGHTS:
                publisher.telemetry(device, seq, base_ms + seq * 2000)
        publisher.flush()
        assert gw.wait_until(lambda: gw.messages_acked >= BEFORE * len(LIGHTS), WAIT_S), gw.messages_acked

        private_postgres.stop()
        # SL-01's lamp goes dark now: its lamp_failure is decided in batches whose commit fails.
        for seq in range(BEFORE, total):
            for device in LIGHTS:
                publisher.telemetry(device, seq, base_ms + seq * 2000, 0.0 if device == "SL-01" else 40.0)
        publisher.flush()
        assert gw.wait_until(lambda: gw.db_errors >= 2, WAIT_S), "no commit failed while the database was down"
        # Batches that needed no database write before the first failure may have been acknowledged
        # (their points are stored; live state rows are saved lazily under load). From the first
        # failed commit on, nothing is acknowledged while the outage lasts.
        acked_at_failure = gw.messages_acked
        assert acked_at_failure < total * len(LIGHTS)
        time.sleep(2.0)  # the outage goes on: retries with backoff
        assert gw.messages_acked == acked_at_failure
        assert gw._worker.is_alive() and gw.connected  # the worker and the broker link live on

        private_postgres.start()
        assert gw.wait_until(lambda: gw.messages_acked >= total * len(LIGHTS), WAIT_S), (
            gw.messages_acked, gw.db_errors)
    finally:
        publisher.close()
        gw.stop()
    since, until = datetime.fromtimestamp(base_ms / 1000 - 60, UTC), NIGHT + timedelta(minutes=1)
    for device in LIGHTS:
        assert seqs_in_store(settings.timeseries_url, device, since, until) == list(range(total)), device
    from linli.storage import Database

    database = Database(database_url)
    try:
        with database.session() as session:
            lamp = session.scalars(select(TicketRow).where(TicketRow.fault == "lamp_failure")).all()
            others = session.scalars(select(TicketRow).where(TicketRow.fault != "lamp_failure")).all()
            states = {s.device_id: s.last_seq for s in session.scalars(select(DeviceState))
                      if s.device_id in LIGHTS}
    finally:
        database.close()
    assert [(t.device_id, t.status) for t in lamp] == [("SL-01", "open")]
    assert others == []
    assert states == dict.fromkeys(LIGHTS, total - 1)
    assert gw.db_errors >= 2
