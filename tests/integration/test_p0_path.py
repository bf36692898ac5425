"""A trapped passenger through the whole gateway: MQTT in, a P0 ticket for the elevator contractor
and the property crew, a WeCom message within a second, and escalation at the deadline."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from sqlalchemy import select

from gateway.runtime import Gateway
from linli.clock import ManualClock, to_ms
from linli.settings import Settings
from linli.site import builtin_site_path
from linli.storage import TicketEventRow, TicketRow
from tests.notify_receivers import Receiver, receiver

NIGHT = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)  # 22:00 in Fujian
WAIT_S = 15.0


@pytest.fixture
def wecom() -> Iterator[Receiver]:
    with receiver("wecom", ManualClock(NIGHT)) as server:
        yield server


@pytest.fixture
def gateway(mosquitto: Any, tmp_path: Path, wecom: Receiver) -> Iterator[Gateway]:
    document = yaml.safe_load(builtin_site_path().read_text(encoding="utf-8"))
    document["site"]["id"] = f"p0-{uuid.uuid4().hex[:6]}"  # the broker is shared: a site of our own
    document["teams"]["elevator_contractor"]["channels"] = [{"type": "wecom", "name": "duty", "url": wecom.url}]
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    settings = Settings(data_dir=tmp_path, sites=str(site_file), mqtt_url=mosquitto.url,
                        mqtt_client_id=f"gw-{uuid.uuid4().hex[:8]}", public_base_url="https://linli.example.cn")
    gw = Gateway(settings, clock=ManualClock(NIGHT))
    gw.start()
    assert gw.wait_until(lambda: gw.connected, WAIT_S), "gateway did not connect"
    for live in gw.engine.devices():  # everyone has just spoken: no silence in this test
        live.last_seen = NIGHT + timedelta(days=1)
    yield gw
    gw.stop()


def publish(mosquitto: Any, topic: str, body: dict[str, Any]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}")
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    client.publish(topic, json.dumps(body).encode(), qos=1).wait_for_publish(WAIT_S)
    client.disconnect()
    client.loop_stop()


def trapped_tickets(gw: Gateway) -> list[TicketRow]:
    with gw.database.session() as session:
        return list(session.scalars(select(TicketRow).where(TicketRow.fault == "trapped")))


def test_a_trapped_passenger_is_a_p0_ticket_a_message_within_a_second_and_escalates(
    gateway: Gateway, mosquitto: Any, wecom: Receiver,
) -> None:
    site = gateway.sites.ids()[0]
    publish(mosquitto, f"estate/v1/{site}/elevator/EL-1A/event",
            {"ts": to_ms(NIGHT), "seq": 1, "code": "trapped", "detail": {"floor": 7}})
    assert gateway.wait_until(lambda: bool(trapped_tickets(gateway)), WAIT_S)
    seen_at = time.monotonic()
    (ticket,) = trapped_tickets(gateway)
    assert ticket.severity == "P0" and ticket.teams == ["elevator_contractor", "property"]
    deadline = time.monotonic() + 1.0  # the promise: the duty phone hears of it within a second
    while not wecom.texts() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert wecom.texts(), "no WeCom message within a second of the ticket"
    assert time.monotonic() - seen_at <= 1.0
    (text,) = wecom.texts()
    assert "电梯困人" in text and "P0" in text and f"https://linli.example.cn/tickets/{ticket.id}" in text

    # Nobody acknowledges: at the 5-minute deadline it escalates, and the duty group hears of it again.
    clock = gateway.clock
    assert isinstance(clock, ManualClock)
    clock.set(NIGHT + timedelta(minutes=5, seconds=1))

    def escalated() -> list[TicketEventRow]:
        with gateway.database.session() as session:
            return list(session.scalars(select(TicketEventRow).where(
                TicketEventRow.ticket_id == ticket.id, TicketEventRow.type == "escalated")))

    assert gateway.wait_until(lambda: bool(escalated()), WAIT_S)
    teams = {event.data["team"] for event in escalated()}
    assert "elevator_contractor" in teams
    deadline = time.monotonic() + WAIT_S
    while len(wecom.texts()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(wecom.texts()) >= 2 and "电梯困人" in wecom.texts()[-1]
