"""One simulated clock for the whole system: a gateway told to follow it runs on the simulator's time."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import select

from gateway.runtime import Gateway
from gateway.settings import GatewaySettings
from linli.clock import CLOCK_TOPIC, ClockAnnouncement, to_ms
from linli.storage import TicketRow

EVENING = datetime(2026, 11, 26, 11, 30, tzinfo=UTC)  # 19:30 in Fujian: the demo scenario's start
WAIT_S = 15.0


@pytest.fixture
def publisher(mosquitto: Any) -> Iterator[mqtt.Client]:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sim-{uuid.uuid4().hex[:6]}")
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    yield client
    client.publish(CLOCK_TOPIC, b"", qos=1, retain=True).wait_for_publish(WAIT_S)  # the broker is shared
    client.disconnect()
    client.loop_stop()


def test_a_following_gateway_stamps_and_tickets_on_the_simulators_clock(
    mosquitto: Any, tmp_path: Path, publisher: mqtt.Client,
) -> None:
    driven = ClockAnnouncement(start_wall_ms=0, start_sim_ms=to_ms(EVENING), speed=None, sim_ms=to_ms(EVENING))
    publisher.publish(CLOCK_TOPIC, driven.to_json(), qos=1, retain=True).wait_for_publish(WAIT_S)
    settings = GatewaySettings(_env_file=None, data_dir=tmp_path, mqtt_url=mosquitto.url, follow_sim_clock=True,
                               mqtt_client_id=f"gw-{uuid.uuid4().hex[:8]}", gateway_metrics_port=0)
    gw = Gateway(settings)
    gw.start()
    try:
        assert gw.wait_until(lambda: gw.clock.now() == EVENING, WAIT_S), gw.clock.now()
        topic = "estate/v1/wanmei/streetlight/SL-07/telemetry"
        for seq, power in enumerate((39.0, 0.0, 0.0, 0.0)):  # no ts: the gateway stamps them with its clock
            at = EVENING + timedelta(seconds=30 * seq)  # the simulator drives its clock 30 s per sample
            driven = ClockAnnouncement(start_wall_ms=0, start_sim_ms=to_ms(EVENING), speed=None, sim_ms=to_ms(at))
            publisher.publish(CLOCK_TOPIC, driven.to_json(), qos=1, retain=True).wait_for_publish(WAIT_S)
            assert gw.wait_until(lambda at=at: gw.clock.now() == at, WAIT_S), gw.clock.now()  # type: ignore[misc]
            body = {"seq": seq, "relay": True, "power_w": power, "voltage_v": 229.0}
            publisher.publish(topic, json.dumps(body), qos=1).wait_for_publish(WAIT_S)
            assert gw.wait_until(lambda seq=seq: gw.messages_done >= seq + 1, WAIT_S)  # type: ignore[misc]
        last = EVENING + timedelta(seconds=90)
        with gw.database.session() as session:
            ticket = session.scalars(select(TicketRow).where(TicketRow.fault == "lamp_failure")).one()
        assert ticket.opened_at == last  # simulated evening, not the wall clock of the test run
        live = gw.engine.live("wanmei", "SL-07")
        assert live is not None and live.last_ts_ms == to_ms(last)
    finally:
        gw.stop()
