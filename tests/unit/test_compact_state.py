"""The engine's per-device state stays small (100,000 devices in a gateway), with unchanged behaviour;
`tsdb.normalize` checks a point's names once per shape and still words every problem as before."""

from __future__ import annotations

import gc
import json
import math
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from linli.clock import to_ms
from linli.contract import ChargerTelemetry, ElevatorTelemetry, Message, StreetlightTelemetry, parse
from linli.detectors import detectors_for, thresholds_for
from linli.detectors.samples import MIRRORS, ConnectorSample, LiftSample, LightSample
from linli.engine import Engine
from linli.site import SiteRegistry, builtin_site_path
from linli.tsdb import Point, StoreRejected
from linli.tsdb import _base as tsdb_base
from linli.tsdb._base import normalize

from .detector_rig import NIGHT, Rig

HEALTHY = {
    "streetlight": {"relay": True, "dim_pct": 100, "power_w": 39.6, "voltage_v": 229.4, "current_a": 0.18, "pf": 0.95,
                    "energy_kwh": 1234.56, "lux": 2.1, "driver_temp_c": 41.5},
    "elevator": {"floor": 3, "moving": False, "direction": "none", "speed_mps": 0.0, "door": "closed", "door_zone": True,
                 "occupied": False, "mode": "normal", "mains": True, "safety_circuit": True, "alarm": False, "trips": 100},
    "charger": {"status": "Charging", "error_code": "NoError", "connector_id": 1, "power_kw": 6.8, "voltage_v": 229.0,
                "current_a": 29.6, "energy_kwh": 12.3, "temp_c": 35.0, "session_id": "S-1"},
}
# Measured 2026-11-27 (one telemetry each, then a tick): streetlight ~3.0 KB, elevator ~2.4 KB, charger
# ~3.0 KB per device (7.9 / 6.4 / 8.9 KB before the compaction). The budget leaves room for small additions.
BUDGET_BYTES = {"streetlight": 4000, "elevator": 3500, "charger": 4000}


def test_the_sample_tuples_mirror_the_contract_models_field_for_field() -> None:
    for sample, model in MIRRORS:
        assert sample._fields[:-1] == tuple(model.model_fields), sample.__name__  # type: ignore[attr-defined]
        assert sample._fields[-1] == "extra"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("sample", "model", "body"), [
    (LightSample, StreetlightTelemetry, {**HEALTHY["streetlight"], "ts": 5, "seq": 1}),
    (LightSample, StreetlightTelemetry, {**HEALTHY["streetlight"], "odd": float("inf"), "gone": None, "nested": {"a": 1}}),
    (LiftSample, ElevatorTelemetry, {**HEALTHY["elevator"], "speed_mps": None}),
    (ConnectorSample, ChargerTelemetry, {**HEALTHY["charger"], "vendor_flag": True}),
])
def test_a_sample_tuple_dumps_exactly_as_its_model_did(sample: type, model: type, body: dict[str, object]) -> None:
    validated = model.model_validate(body)
    assert sample.of(validated).dump() == validated.model_dump(mode="json", exclude_none=True)


def test_a_healthy_light_keeps_no_timer_no_hold_and_no_flapping_containers() -> None:
    rig = Rig("SL-02")
    rig.repeat("telemetry", HEALTHY["streetlight"], 600)
    detectors = rig.detectors
    assert detectors.timers == {} and detectors.holds == {}  # type: ignore[attr-defined]
    assert detectors._emitted is None and detectors._clears is None and detectors._flapping is None  # type: ignore[attr-defined]
    assert detectors.transitions is None and detectors.energy.baseline is None  # type: ignore[attr-defined]
    assert not hasattr(detectors, "__dict__")  # slotted


def test_a_fault_keeps_its_hold_only_while_active_and_the_snapshot_round_trips() -> None:
    rig = Rig("SL-02")
    rig.repeat("telemetry", HEALTHY["streetlight"], 120)
    dark = {**HEALTHY["streetlight"], "power_w": 0.5}
    rig.repeat("telemetry", dark, 180)
    assert "lamp_failure" in rig.detectors.holds  # type: ignore[attr-defined]
    snapshot = json.loads(json.dumps(rig.detectors.snapshot()))
    again = detectors_for(rig.site, rig.device, rig.site.thresholds("streetlight"))
    again.restore(snapshot)
    assert again.snapshot() == snapshot
    rig.repeat("telemetry", HEALTHY["streetlight"], 120)
    assert "lamp_failure" not in rig.detectors.holds  # type: ignore[attr-defined]
    assert rig.detectors._clears == {"lamp_failure": [rig.signals[-1].at]}  # type: ignore[attr-defined]


def test_devices_of_a_kind_share_one_thresholds_object() -> None:
    overrides = {"leakage_p2_ma": 8, "supply_voltage_hold_s": 600}
    assert thresholds_for("streetlight", dict(overrides)) is thresholds_for("streetlight", dict(overrides))
    assert thresholds_for("streetlight", {"lamp_failure_samples": 3}).lamp_failure_samples == 3
    with pytest.raises(ValueError):  # still validated: a bad override is refused, every time
        thresholds_for("streetlight", {"lamp_failure_samples": 0})
    with pytest.raises(ValueError):
        thresholds_for("streetlight", {"lamp_failure_samples": 0})


def _site_of(kind: str, devices: int, folder: Path) -> SiteRegistry:
    document = yaml.safe_load(builtin_site_path().read_text(encoding="utf-8"))
    template = next(d for d in document["devices"] if d["kind"] == kind)
    document["devices"] = [{**template, "id": f"X{n:04d}", "name": f"X{n}"} for n in range(devices)]
    document.pop("concentrators", None)
    out = folder / f"{kind}.yaml"
    out.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return SiteRegistry.load([out])


@pytest.mark.parametrize("kind", ["streetlight", "elevator", "charger"])
def test_live_state_per_device_stays_within_its_budget(kind: str, tmp_path: Path) -> None:
    devices = 300
    registry = _site_of(kind, devices, tmp_path)
    now = NIGHT
    gc.collect()
    tracemalloc.start()
    try:
        engine = Engine(registry, now)
        for site in registry:
            for device in site.devices.values():
                body = {"ts": to_ms(now), "seq": 1, **HEALTHY[kind]}
                message = parse(f"estate/v1/{site.id}/{kind}/{device.id}/telemetry", json.dumps(body).encode(),
                                received_ms=to_ms(now), device_kind=lambda s, d: kind, known_site=lambda s: True)
                assert isinstance(message, Message)
                engine.observe(message, now)
        del message
        engine.tick(now + timedelta(seconds=1))
        gc.collect()
        per_device = tracemalloc.get_traced_memory()[0] / devices
    finally:
        tracemalloc.stop()
    assert per_device <= BUDGET_BYTES[kind], f"{kind}: {per_device:.0f} bytes per device"


# ------------------------------------------------------------ normalize, once per shape

def _point(**fields: object) -> Point:
    return Point("streetlight", {"site": "s", "device": "d", "circuit": "C1"}, fields or {"v": 1.0}, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [
    {"v": math.nan}, {"v": math.inf}, {"v": [1]}, {"v": None}, {"v": 1.0, "w": object()},
])
def test_a_known_shape_still_has_every_value_checked_with_the_same_words(bad: dict[str, object]) -> None:
    fresh = _point(**bad)
    with pytest.raises(StoreRejected) as first:
        normalize([fresh])
    tsdb_base._GOOD_SHAPES.clear()
    normalize([_point(**{k: 2.0 for k in bad})])  # the shape is now known good
    with pytest.raises(StoreRejected) as again:
        normalize([fresh])
    assert str(again.value) == str(first.value)


def test_a_known_shape_still_has_its_tag_values_and_time_checked() -> None:
    normalize([_point(v=1.0)])
    for tags in ({"site": "s", "device": "", "circuit": "C1"}, {"site": "s", "device": "d\n", "circuit": "C1"},
                 {"site": "s", "device": "d", "circuit": "C1\\"}):
        with pytest.raises(StoreRejected, match="tag"):
            normalize([Point("streetlight", tags, {"v": 1.0}, 1)])
    with pytest.raises(StoreRejected, match="ts_ms"):
        normalize([Point("streetlight", {"site": "s", "device": "d", "circuit": "C1"}, {"v": 1.0}, True)])
    with pytest.raises(OverflowError):  # as before: an int too large for a float is not stored as inf
        normalize([_point(v=10**400)])


def test_normalize_gives_the_same_points_on_the_fast_path() -> None:
    points = [_point(v=1, on=True, text="x", f=2.5), _point(v=2, on=False, text="y", f=-0.0)]
    tsdb_base._GOOD_SHAPES.clear()
    slow = normalize(points)
    fast = normalize(points)
    assert fast == slow and all(type(p.fields["v"]) is float for p in fast)
    assert len(tsdb_base._GOOD_SHAPES) == 1


def test_the_shape_cache_is_bounded() -> None:
    tsdb_base._GOOD_SHAPES.clear()
    normalize([_point(**{f"f{n}": 1.0}) for n in range(tsdb_base._GOOD_SHAPES_MAX + 10)])
    assert len(tsdb_base._GOOD_SHAPES) <= tsdb_base._GOOD_SHAPES_MAX

