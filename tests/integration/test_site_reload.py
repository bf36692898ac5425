"""Editing a site file under a running gateway and API: applied without a restart, an invalid edit
refused while the running sites keep serving. Real Mosquitto, a moved clock, no sleeps."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from api import create_app
from api.security import create_access_token
from gateway.runtime import Gateway
from linli.clock import ManualClock
from linli.detectors.streetlight import StreetlightDetectors
from linli.settings import Settings
from linli.site import builtin_site_path
from linli.storage import DeadLetter, DeviceState

NIGHT = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)
WAIT_S = 15.0
SL44 = {"id": "SL-44", "kind": "streetlight", "name": "新44号灯", "circuit": "C1", "rated_power_w": 60,
        "position": {"x": 100, "y": 200}}


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    path = tmp_path / "sites" / "wanmei.yaml"
    path.parent.mkdir()
    path.write_text(builtin_site_path().read_text(encoding="utf-8"), encoding="utf-8")
    return path


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(document)
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")


def add_sl44(circuit: str = "C1") -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document["devices"] = [d for d in document["devices"] if d["id"] != "SL-44"] + [{**SL44, "circuit": circuit}]
    return change


def retire(device_id: str) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        next(d for d in document["devices"] if d["id"] == device_id)["retired"] = True
    return change


@pytest.fixture
def gateway(mosquitto: Any, tmp_path: Path, site_file: Path) -> Iterator[Gateway]:
    settings = Settings(
        _env_file=None, data_dir=tmp_path, sites=str(site_file), mqtt_url=mosquitto.url,
        tsdb_url=f"sqlite:///{tmp_path / 'ts.db'}", mqtt_client_id=f"gw-{uuid.uuid4().hex[:8]}",
    )
    gw = Gateway(settings, clock=ManualClock(NIGHT))
    gw.site_source.min_interval_s = 0.2  # production polls every 2 s; the tests need not wait that long
    gw.start()
    assert gw.wait_until(lambda: gw.connected, WAIT_S), "gateway did not connect"
    for live in gw.engine.devices():
        live.last_seen = NIGHT
    yield gw
    gw.stop()


class Light:
    def __init__(self, mosquitto: Any, device_id: str) -> None:
        self.topic = f"estate/v1/wanmei/streetlight/{device_id}/telemetry"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}")
        self.client.connect(mosquitto.host, mosquitto.port)
        self.client.loop_start()
        self.seq = 0

    def send(self, power: float) -> None:
        self.seq += 1
        body = {"seq": self.seq, "relay": True, "power_w": power, "voltage_v": 229.0}
        self.client.publish(self.topic, json.dumps(body).encode(), qos=1).wait_for_publish(WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def settle(gw: Gateway, received: int) -> None:
    assert gw.wait_until(lambda: gw.messages_done >= received, WAIT_S), gw.pipeline.counters


def state(gw: Gateway, device_id: str) -> DeviceState | None:
    with gw.database.session() as session:
        return session.get(DeviceState, ("wanmei", device_id))


def letters(gw: Gateway, device_id: str) -> list[tuple[str, str]]:
    with gw.database.session() as session:
        rows = session.scalars(select(DeadLetter).where(DeadLetter.device_id == device_id).order_by(DeadLetter.id))
        return [(row.reason, row.detail) for row in rows]


def has_device(gw: Gateway, device_id: str) -> bool:
    return device_id in gw.sites["wanmei"].devices


def test_a_device_added_to_the_file_is_served_after_the_reload(gateway: Gateway, mosquitto: Any, site_file: Path) -> None:
    light = Light(mosquitto, "SL-44")
    light.send(55.0)
    settle(gateway, 1)
    assert [reason for reason, _ in letters(gateway, "SL-44")] == ["unknown_device"]

    edit(site_file, add_sl44())
    assert gateway.wait_until(lambda: has_device(gateway, "SL-44"), WAIT_S), gateway.site_source.last_error
    live = gateway.engine.live("wanmei", "SL-44")
    assert live is not None and isinstance(live.detectors, StreetlightDetectors) and live.detectors.rated_w == 60
    light.send(58.5)
    settle(gateway, 2)
    found = state(gateway, "SL-44")
    assert found is not None and found.online is True and found.last["power_w"] == 58.5
    assert len(letters(gateway, "SL-44")) == 1  # the one from before the reload
    light.close()


def test_an_invalid_edit_is_refused_and_the_running_sites_keep_serving(
    gateway: Gateway, mosquitto: Any, site_file: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="linli.sites"):
        edit(site_file, add_sl44(circuit="C9"))
        assert gateway.wait_until(lambda: gateway.site_source.last_error is not None, WAIT_S)
    error = gateway.site_source.last_error
    assert error is not None and "unknown circuit 'C9'" in error and str(site_file) in error
    assert any("unknown circuit 'C9'" in record.getMessage() for record in caplog.records)
    assert not has_device(gateway, "SL-44")

    sl07 = Light(mosquitto, "SL-07")
    sl07.send(40.0)
    settle(gateway, 1)
    found = state(gateway, "SL-07")
    assert found is not None and found.last["power_w"] == 40.0

    edit(site_file, add_sl44(circuit="C1"))  # fixed
    assert gateway.wait_until(lambda: has_device(gateway, "SL-44"), WAIT_S)
    assert gateway.site_source.last_error is None
    sl07.close()


def test_a_retired_device_is_no_longer_monitored_and_its_messages_say_so(
    gateway: Gateway, mosquitto: Any, site_file: Path,
) -> None:
    edit(site_file, retire("SL-07"))
    assert gateway.wait_until(lambda: not has_device(gateway, "SL-07"), WAIT_S), gateway.site_source.last_error
    assert gateway.engine.live("wanmei", "SL-07") is None
    light = Light(mosquitto, "SL-07")
    light.send(40.0)
    settle(gateway, 1)
    assert letters(gateway, "SL-07") == [("unknown_device", "device 'SL-07' of site 'wanmei' is retired")]
    light.close()


def test_the_api_serves_the_edited_file(tmp_path: Path, site_file: Path) -> None:
    settings = Settings(
        _env_file=None, data_dir=tmp_path, sites=str(site_file), tsdb_url=f"sqlite:///{tmp_path / 'ts.db'}",
        mqtt_url="mqtt://127.0.0.1:9", secret_key="k" * 40, admin_password="admin-secret-for-tests",
    )
    headers = {"Authorization": f"Bearer {create_access_token('admin', settings).token}"}
    app = create_app(settings, clock=ManualClock(NIGHT))
    with TestClient(app) as client:
        app.state.site_source.min_interval_s = 0  # every request looks at the file

        def ids() -> set[str]:
            body = client.get("/api/v1/devices", params={"site": "wanmei", "limit": 1000}, headers=headers).json()
            return {item["id"] for item in body["items"]}

        def public_ids() -> set[str]:
            body = client.get("/api/v1/public/status", params={"site": "wanmei"}).json()
            return {light["id"] for light in body["streetlights"]}

        assert "SL-44" not in ids() and "SL-08" in ids()
        edit(site_file, lambda d: (add_sl44()(d), retire("SL-08")(d)))
        assert "SL-44" in ids() and "SL-08" not in ids()
        assert "SL-44" in public_ids() and "SL-08" not in public_ids()
        assert client.get("/api/v1/devices/SL-44", params={"site": "wanmei"}, headers=headers).status_code == 200
        assert client.get("/api/v1/devices/SL-08", params={"site": "wanmei"}, headers=headers).status_code == 404

        edit(site_file, add_sl44(circuit="C9"))  # refused: the API keeps the sites it had
        assert "SL-44" in ids() and app.state.site_source.last_error is not None
