"""What every detector shares: hysteresis, one signal per transition, intermittent, snapshot/restore,
and the site file's `detection` thresholds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from linli.catalog import FAULTS
from linli.detectors import KIND_NAMES, Thresholds, detectors_for, owned_codes
from linli.site import SiteConfigError, builtin_site_path, parse_site

from .detector_rig import SITE, Rig, codes

LIT: dict[str, Any] = {"relay": True, "dim_pct": 100, "power_w": 40.0, "voltage_v": 229.0, "leakage_ma": 0.4}
HIGH = LIT | {"voltage_v": 240.0}


def test_every_owned_code_is_in_the_catalog_and_every_catalog_device_code_is_owned() -> None:
    owned = {code for kind in ("streetlight", "elevator", "charger") for code in owned_codes(kind)}
    assert owned <= set(FAULTS)
    lead = {"offline", "circuit_outage", "building_power_loss", "concentrator_offline"}
    assert set(FAULTS) - lead == owned


def test_a_fault_flapping_three_times_within_an_hour_becomes_one_intermittent() -> None:
    rig = Rig("SL-07")
    seen: list[str] = []
    for _ in range(5):
        seen += codes(rig.repeat("telemetry", HIGH, 330))
        seen += codes(rig.repeat("telemetry", LIT, 150))
    assert seen == ["+supply_voltage_high", "-supply_voltage_high"] * 3 + ["+intermittent"]
    intermittent = next(s for s in rig.signals if s.code == "intermittent")
    assert intermittent.severity.value == "P2" and "supply_voltage_high" in intermittent.detail
    assert codes(rig.repeat("telemetry", LIT, 3600)) == ["-intermittent"]  # calm for an hour
    assert codes(rig.repeat("telemetry", HIGH, 330)) == ["+supply_voltage_high"]  # a new fault counts again


def test_p0_faults_are_never_folded_into_intermittent() -> None:
    rig = Rig("EL-1A")
    idle = {"floor": 5, "moving": False, "door": "closed", "door_zone": True, "mode": "normal", "occupied": False}
    trapped = idle | {"door_zone": False, "occupied": True}
    for _ in range(4):
        rig.repeat("telemetry", trapped, 60)
        rig.repeat("telemetry", idle, 150)
    assert codes(rig.signals) == ["+trapped", "-trapped"] * 4


def test_a_short_dip_inside_the_hold_off_does_not_clear() -> None:
    rig = Rig("SL-07")
    assert codes(rig.repeat("telemetry", HIGH, 330)) == ["+supply_voltage_high"]
    for _ in range(5):  # clear for 90 s, then back: never cleared, never raised again
        assert codes(rig.repeat("telemetry", LIT, 90) + rig.repeat("telemetry", HIGH, 60)) == []


@pytest.mark.parametrize("device_id", ["SL-07", "EL-1A", "CP-01"])
def test_snapshot_restore_round_trip_resumes_mid_hold(device_id: str) -> None:
    bodies: dict[str, tuple[dict[str, Any], float, str]] = {
        "SL-07": (HIGH, 300, "supply_voltage_high"),
        "EL-1A": ({"floor": 5, "moving": False, "door": "closed", "door_zone": True, "mode": "out_of_service"}, 300,
                  "out_of_service"),
        "CP-01": ({"status": "Preparing", "error_code": "NoError", "session_id": "S-1"}, 1800, "stuck_session"),
    }
    body, hold, code = bodies[device_id]
    rig = Rig(device_id)
    assert codes(rig.repeat("telemetry", body, hold - 30)) == []  # held hold - 60 s
    snapshot = json.loads(json.dumps(rig.detectors.snapshot()))  # JSON-able
    restarted = detectors_for(SITE, rig.device, SITE.thresholds(rig.device.kind))
    restarted.restore(snapshot)
    assert restarted.snapshot() == snapshot
    rig.detectors = restarted
    assert codes(rig.repeat("telemetry", body, 60)) == [f"+{code}"]  # the hold went on across the restart
    assert codes(rig.repeat("telemetry", body, 60)) == []
    again = detectors_for(SITE, rig.device, SITE.thresholds(rig.device.kind))
    again.restore(json.loads(json.dumps(rig.detectors.snapshot())))
    rig.detectors = again
    assert codes(rig.repeat("telemetry", body, 120)) == []  # still active after a restart: not raised twice


def test_a_snapshot_of_another_kind_or_version_is_ignored() -> None:
    rig = Rig("SL-07")
    rig.repeat("telemetry", HIGH, 240)
    fresh = Rig("EL-1A")
    fresh.detectors.restore(rig.detectors.snapshot())
    fresh.detectors.restore({"v": 99})
    assert fresh.detectors.healthy("supply_voltage_high") is None


def test_status_and_ack_messages_fire_nothing() -> None:
    rig = Rig("SL-07")
    assert rig.send("status", {"online": True, "interval_s": 60}) == []
    assert rig.send("status", {"online": False}) == []
    assert rig.send("cmd/ack", {"id": "c-1", "ok": True}) == []
    rig.repeat("telemetry", HIGH, 300, every=60)
    assert codes(rig.tick(150)) == ["+supply_voltage_high"]  # fresh for 3 x the 60 s interval the status gave


def _site_with(detection: str) -> str:
    text = builtin_site_path().read_text(encoding="utf-8")
    return text + "\n" + detection


def test_site_file_overrides_thresholds_per_kind() -> None:
    site = parse_site(_site_with("detection:\n  streetlight: {leakage_p2_ma: 8, supply_voltage_hold_s: 600}\n"
                                 "  elevator: {trapped_hold_s: 20}\n"), Path("wanmei.yaml"))
    assert site.thresholds("streetlight").leakage_p2_ma == 8
    assert site.thresholds("streetlight").supply_voltage_hold_s == 600
    assert site.thresholds("elevator").trapped_hold_s == 20
    assert site.thresholds("charger") == Thresholds()
    assert SITE.thresholds("streetlight").leakage_p2_ma == 10


@pytest.mark.parametrize(("detection", "message"), [
    ("detection:\n  streetlight: {leakage_ma: 8}\n", "detection.streetlight.leakage_ma: unknown streetlight threshold"),
    ("detection:\n  charger: {trapped_hold_s: 8}\n", "detection.charger.trapped_hold_s: unknown charger threshold"),
    ("detection:\n  elevator: {overspeed_pct: 90}\n", "detection.elevator.overspeed_pct: Input should be greater than 100"),
    ("detection:\n  lamp: {x: 1}\n", "detection.lamp"),
])
def test_site_file_rejects_bad_thresholds_with_their_location(detection: str, message: str) -> None:
    with pytest.raises(SiteConfigError) as caught:
        parse_site(_site_with(detection), Path("wanmei.yaml"))
    assert message in str(caught.value)


def test_every_threshold_belongs_to_a_kind() -> None:
    named = set().union(*KIND_NAMES.values())
    assert named == set(Thresholds.model_fields)
