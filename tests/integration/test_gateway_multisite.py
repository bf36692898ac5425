"""Per-site partitioning: two gateway processes on one broker, each serving its own sites, sharing
PostgreSQL and InfluxDB. Neither sees the other's traffic; both write to the shared stores."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import servers
import yaml
from sqlalchemy import select

from integration.test_gateway_resilience import _metrics, _wait_metric
from linli.site import builtin_site_path
from linli.storage import Database, DeviceState
from linli.tsdb import open_store


@pytest.fixture
def site_b(tmp_path: Path) -> Path:
    document = yaml.safe_load(builtin_site_path().read_text(encoding="utf-8"))
    document["site"]["id"] = "site-b"
    path = tmp_path / "site-b.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def test_two_gateways_serve_different_sites_on_one_broker(
    mosquitto: Any, influxdb1: str, postgres_url: str, tmp_path: Path, site_b: Path,
) -> None:
    store_url = influxdb1.rsplit("/", 1)[0] + f"/multi_{uuid.uuid4().hex[:8]}"
    Database(postgres_url).close()
    from linli.storage import migrate

    migrate(postgres_url)  # once, before both start (each would otherwise race to create the schema)
    procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    logs = (tmp_path / "gateways.log").open("ab")
    try:
        for site, files in (("wanmei", str(builtin_site_path())), ("site-b", str(site_b))):
            port = servers.free_port()
            env = {"PATH": "/usr/bin:/bin", "LINLI_DATA_DIR": str(tmp_path / site), "LINLI_MQTT_URL": mosquitto.url,
                   "LINLI_TSDB_URL": store_url, "LINLI_DATABASE_URL": postgres_url, "LINLI_SITES": files,
                   "LINLI_MQTT_CLIENT_ID": f"gw-{site}-{uuid.uuid4().hex[:6]}",
                   "LINLI_GATEWAY_METRICS_PORT": str(port), "LINLI_GATEWAY_METRICS_HOST": "127.0.0.1"}
            proc = subprocess.Popen([sys.executable, "-m", "linli.cli", "gateway"], env=env, stdout=logs, stderr=logs)
            procs[site] = (proc, port)
        for proc, port in procs.values():
            _wait_metric(port, "linli_gateway_broker_connected", 1, proc)

        device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}")
        device.connect(mosquitto.host, mosquitto.port)
        device.loop_start()
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        sent = {"wanmei": 30, "site-b": 20}
        for site, count in sent.items():
            for seq in range(count):
                body = {"ts": now_ms - 10_000 + seq, "seq": seq, "relay": True, "power_w": 40.0, "voltage_v": 230}
                info = device.publish(f"estate/v1/{site}/streetlight/SL-02/telemetry", json.dumps(body), qos=1)
        info.wait_for_publish(15)
        device.disconnect()
        device.loop_stop()
        for site, (proc, port) in procs.items():
            _wait_metric(port, "linli_gateway_messages_processed_total", sent[site], proc)
        for site, (_, port) in procs.items():
            metrics = _metrics(port)
            assert metrics["linli_gateway_messages_received_total"] == sent[site]  # only its own site's traffic
            assert metrics.get("linli_gateway_dead_letters_total", 0) == 0
    finally:
        for proc, _ in procs.values():
            proc.terminate()
            proc.wait(20)
        logs.close()
    store = open_store(store_url)
    try:
        for site, count in sent.items():
            since = datetime.fromtimestamp(now_ms / 1000, UTC) - timedelta(minutes=1)
            samples = store.query(site=site, kind="streetlight", device_id="SL-02", field="seq", since=since,
                                  until=since + timedelta(minutes=2))
            assert [int(s.value) for s in samples] == list(range(count))  # type: ignore[arg-type]
    finally:
        store.close()
    database = Database(postgres_url)
    try:
        with database.session() as session:
            states = {s.site: s.last_seq for s in session.scalars(select(DeviceState).where(DeviceState.device_id == "SL-02"))}
    finally:
        database.close()
    assert states == {"wanmei": 29, "site-b": 19}
