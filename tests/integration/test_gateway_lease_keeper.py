"""The gateway's lease keeper: one long processing cycle does not cost a site its lease (seen in the
soak: a 10,000-device site's cycle outlasted the 15 s TTL, the gateway dropped both sites and
restored them from the database, falling further behind), but a worker stuck past
`gateway_worker_stall_s` lets its leases lapse, so a standby can take the site over.

A real gateway on a real Mosquitto and a SQLite database; the worker is held inside
`Pipeline.process` by an event. Leases run on the wall clock (short TTLs: seconds)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from gateway.runtime import Gateway
from gateway.settings import GatewaySettings
from linli.site import builtin_site_path
from linli.storage import SiteLease

TTL_S, RENEW_S = 2.0, 0.5


class HeldWorker:
    """Holds the gateway's worker inside `Pipeline.process` from the first batch until released."""

    def __init__(self, gateway: Gateway) -> None:
        self.entered, self.released = threading.Event(), threading.Event()
        real = gateway.pipeline.process

        def process(batch: Any, now: Any, **kwargs: Any) -> Any:
            self.entered.set()
            self.released.wait(60)
            return real(batch, now, **kwargs)

        gateway.pipeline.process = process  # type: ignore[method-assign]


@pytest.fixture
def start_gateway(mosquitto: Any, tmp_path: Path) -> Iterator[Any]:
    started: list[Gateway] = []

    def start(stall_s: float) -> Gateway:
        settings = GatewaySettings(
            _env_file=None, data_dir=tmp_path, sites=str(builtin_site_path()), mqtt_url=mosquitto.url,
            tsdb_url=f"sqlite:///{tmp_path / 'ts.db'}", database_url="", gateway_metrics_port=0,
            mqtt_client_id=f"gw-lease-{uuid.uuid4().hex[:6]}", gateway_lease_ttl_s=TTL_S,
            gateway_lease_renew_s=RENEW_S, gateway_worker_stall_s=stall_s,
        )
        gateway = Gateway(settings)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


def _hold_the_worker(mosquitto: Any, held: HeldWorker) -> None:
    """A light's telemetry, again each second until the worker holds it (the site's session may
    still be subscribing when the first is published)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"lease-dev-{uuid.uuid4().hex[:6]}")
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    try:
        for seq in range(30):
            body = {"ts": int(time.time() * 1000), "seq": seq, "relay": True, "dim_pct": 100, "power_w": 40.0,
                    "voltage_v": 228.0, "current_a": 0.18, "pf": 0.95, "energy_kwh": 1.0, "leakage_ma": 0.5}
            client.publish("estate/v1/wanmei/streetlight/SL-01/telemetry", json.dumps(body), qos=1).wait_for_publish(10)
            if held.entered.wait(1):
                return
    finally:
        client.disconnect()
        client.loop_stop()
    raise AssertionError("the worker never got a message")


def _expires_at(gateway: Gateway) -> Any:
    with gateway.database.session() as session:
        return session.scalar(select(SiteLease.expires_at).where(SiteLease.site == "wanmei"))


def test_a_long_cycle_keeps_the_sites_lease_and_its_batch_is_then_handled(mosquitto: Any, start_gateway: Any) -> None:
    gateway = start_gateway(stall_s=60.0)
    held = HeldWorker(gateway)
    gateway.start()
    assert gateway.leases.holds("wanmei")
    _hold_the_worker(mosquitto, held)
    first = _expires_at(gateway)
    time.sleep(3 * TTL_S)  # the worker is busy for three TTLs: only the keeper renews
    assert gateway.leases.holds("wanmei"), "the lease lapsed during one long cycle"
    assert _expires_at(gateway) > first  # renewed in the database, not only believed held
    held.released.set()
    assert gateway.wait_until(lambda: gateway.messages_acked >= 1, 30), "the held batch was never acknowledged"
    assert gateway.leases.holds("wanmei")


def test_a_worker_stuck_past_the_stall_limit_lets_the_lease_lapse(mosquitto: Any, start_gateway: Any) -> None:
    stall_s = 2 * TTL_S
    gateway = start_gateway(stall_s=stall_s)
    held = HeldWorker(gateway)
    gateway.start()
    _hold_the_worker(mosquitto, held)
    stuck_at = time.monotonic()
    deadline = stuck_at + stall_s + TTL_S + 10
    while gateway.leases.holds("wanmei") and time.monotonic() < deadline:
        time.sleep(0.1)
    lapsed_after = time.monotonic() - stuck_at
    assert not gateway.leases.holds("wanmei"), "a stuck worker kept its lease"
    assert lapsed_after >= stall_s, f"the lease lapsed {lapsed_after:.1f} s into the cycle, before the stall limit"
    held.released.set()
