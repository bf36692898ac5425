"""`GET /devices/{id}/telemetry?every=&agg=`: the device panel's 24 h charts, aggregated by the API
from the real SQLite time-series store (``api/routes/devices.py``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from linli.clock import to_ms
from linli.tsdb import Point, open_store
from tests.integration import test_api
from tests.integration.test_api import NOW, Api

api = test_api.api  # test_api's app on SQLite, with its ManualClock at NOW

URL = "/api/v1/devices/{}/telemetry"
DAY_AGO = NOW - timedelta(hours=24)


def write(api: Api, points: list[Point]) -> None:
    store = open_store(api.settings.timeseries_url)
    try:
        store.write(points)
    finally:
        store.close()


def series(api: Api, device_id: str, **params: Any) -> list[tuple[float, Any]]:
    answer = api.client.get(URL.format(device_id), headers=api.admin,
                            params={"site": "wanmei", "since": DAY_AGO.isoformat(), "until": NOW.isoformat(), **params})
    assert answer.status_code == 200, answer.text
    return [((datetime.fromisoformat(p["ts"]) - DAY_AGO).total_seconds() / 3600, p["value"])
            for p in answer.json()["points"]]


def test_readings_are_averaged_per_bucket_and_empty_buckets_left_out(api: Api) -> None:
    light = {"site": "wanmei", "device": "SL-07"}
    write(api, [
        Point("streetlight", light, {"power_w": 40.0, "voltage_v": 230.0}, to_ms(DAY_AGO + timedelta(minutes=1))),
        Point("streetlight", light, {"power_w": 20.0, "voltage_v": 220.0}, to_ms(DAY_AGO + timedelta(minutes=50))),
        Point("streetlight", light, {"power_w": 10.0, "voltage_v": 228.0}, to_ms(DAY_AGO + timedelta(hours=5, minutes=5))),
    ])
    assert series(api, "SL-07", every=3600) == [(0.0, 30.0), (5.0, 10.0)]
    assert series(api, "SL-07", every=3600, agg="max", field="voltage_v") == [(0.0, 230.0), (5.0, 228.0)]
    assert series(api, "SL-07", every=3600, agg="last") == [(0.0, 20.0), (5.0, 10.0)]
    assert series(api, "SL-07")[0] == (1 / 60, 40.0)  # without `every`: the raw points, as before
    too_fine = api.client.get(URL.format("SL-07"), headers=api.admin, params={"site": "wanmei", "every": 5})
    assert too_fine.status_code == 422


def test_counters_increase_per_bucket_across_a_reset_and_per_connector(api: Api) -> None:
    lift = {"site": "wanmei", "device": "EL-1A"}
    trips = [(0, 100.0), (20, 104.0), (70, 110.0), (80, 3.0), (90, 5.0)]  # a controller reset at minute 80
    write(api, [Point("elevator", lift, {"trips": value}, to_ms(DAY_AGO + timedelta(minutes=m))) for m, value in trips])
    assert series(api, "EL-1A", field="trips", every=3600, agg="increase") == [(0.0, 4.0), (1.0, 11.0)]  # 6 + 3 + 2

    charger = {"site": "wanmei", "device": "CP-01"}
    meters = [(0, 1, 500.0), (1, 2, 9000.0), (30, 1, 507.5), (31, 2, 9001.0), (61, 1, 510.0)]
    write(api, [Point("charger", charger, {"energy_kwh": kwh, "connector_id": float(connector),
                                            "session_id": f"S-{connector}"}, to_ms(DAY_AGO + timedelta(minutes=m)))
                for m, connector, kwh in meters])
    # each connector's own meter: 7.5 + 1.0 in the first hour, never 9000 - 507.5 as one counter
    assert series(api, "CP-01", field="energy_kwh", every=3600, agg="increase") == [(0.0, 8.5), (1.0, 2.5)]
    assert series(api, "CP-01", field="session_id", every=3600, agg="distinct") == [(0.0, 2.0), (1.0, 1.0)]


def test_a_devices_own_events_are_counted_by_code(api: Api) -> None:
    tags = {"site": "wanmei", "device": "EL-1A", "kind": "elevator"}
    codes = [(5, "door_fault"), (10, "alarm_button"), (15, "door_open_moving"), (125, "door_fault")]
    write(api, [Point("event", tags, {"code": code}, to_ms(DAY_AGO + timedelta(minutes=m))) for m, code in codes])
    doors = series(api, "EL-1A", field="events", every=3600, code=["door_fault", "door_open_moving"])
    assert doors == [(0.0, 2.0), (2.0, 1.0)]
    assert series(api, "EL-1A", field="events", every=3600) == [(0.0, 3.0), (2.0, 1.0)]  # every code
    raw = api.client.get(URL.format("EL-1A"), headers=api.admin, params={"site": "wanmei", "field": "events"})
    assert raw.status_code == 422 and "every" in raw.json()["detail"]
