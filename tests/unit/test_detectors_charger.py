"""Charger detectors: OCPP error codes at once, held statuses after their duration, episodes and
EV communication errors counted as the catalog says."""

from __future__ import annotations

from typing import Any

import pytest

from .detector_rig import Rig, check_near_miss, check_timed, codes

CHARGING: dict[str, Any] = {"status": "Charging", "error_code": "NoError", "power_kw": 6.8, "voltage_v": 228.0,
                            "current_a": 29.8, "energy_kwh": 8812.3, "temp_c": 38.0, "session_id": "S-1"}


def pile(**changes: Any) -> dict[str, Any]:
    return CHARGING | changes


# code, bad sample, just under the threshold, hold (s)
TIMED = [
    ("ground_failure", pile(status="Faulted", error_code="GroundFailure"), pile(error_code="ConnectorLockFailure"), 0),
    ("power_switch_failure", pile(status="Faulted", error_code="PowerSwitchFailure"), pile(error_code="OtherError"), 0),
    ("high_temperature", pile(temp_c=75.1), pile(temp_c=75.0), 0),
    ("faulted", pile(status="Faulted", error_code="InternalError"), pile(status="Unavailable"), 60),
    ("charging_no_current", pile(current_a=0.4), pile(current_a=0.5), 300),
    ("stuck_session", pile(status="Preparing", current_a=0.0), pile(status="SuspendedEV", current_a=0.0), 1800),
    ("meter_failure", pile(error_code="PowerMeterFailure"), pile(error_code="WeakSignal"), 0),
    ("reader_failure", pile(status="Available", error_code="ReaderFailure"), pile(status="Available"), 0),
]


@pytest.mark.parametrize(("code", "bad", "near", "hold"), TIMED, ids=[t[0] for t in TIMED])
def test_timed_rule(code: str, bad: dict[str, Any], near: dict[str, Any], hold: float) -> None:
    # A session's normal Preparing or Finishing is not unhealthy until it has lasted the rule's 30 min.
    check_timed(Rig("CP-01"), code=code, good=CHARGING, bad=bad, hold=hold, clear=120,
                unhealthy_before_firing=code != "stuck_session")
    check_near_miss(Rig("CP-01"), near=near, seconds=max(3 * hold, 600))


def test_a_cars_ordinary_preparing_and_finishing_stay_healthy_for_stuck_session() -> None:
    """What verification reads after a repair: a car arriving (2 min Preparing), charging and leaving
    (1 min Finishing) is healthy throughout, so it cannot reopen a repaired pile's ticket."""
    rig = Rig("CP-09")
    rig.repeat("telemetry", pile(status="Available", current_a=0.0), 120, every=30)
    for status, seconds in (("Preparing", 120), ("Charging", 600), ("Finishing", 60), ("Available", 60)):
        for _ in range(int(seconds // 30)):
            rig.send("telemetry", pile(status=status, current_a=16.0 if status == "Charging" else 0.0), after=30)
            assert rig.detectors.healthy("stuck_session") is True, status


def test_high_temperature_from_the_ocpp_code_alone() -> None:
    rig = Rig("CP-01")
    assert codes(rig.send("telemetry", pile(error_code="HighTemperature", temp_c=None))) == ["+high_temperature"]


def test_faulted_with_a_code_of_its_own_is_only_that_code() -> None:
    rig = Rig("CP-01")
    assert codes(rig.repeat("telemetry", pile(status="Faulted", error_code="GroundFailure"), 600)) == ["+ground_failure"]


@pytest.mark.parametrize(("code", "ocpp"), [("over_current", "OverCurrentFailure"), ("over_voltage", "OverVoltage"),
                                            ("under_voltage", "UnderVoltage")])
def test_two_separate_episodes_within_an_hour(code: str, ocpp: str) -> None:
    rig = Rig("CP-01")
    assert codes(rig.repeat("telemetry", pile(error_code=ocpp), 300)) == []  # one long episode is one
    assert rig.detectors.healthy(code) is False
    assert codes(rig.repeat("telemetry", CHARGING, 30 * 60)) == []
    assert rig.detectors.healthy(code) is True
    fired = rig.send("telemetry", pile(error_code=ocpp))
    assert codes(fired) == [f"+{code}"] and fired[0].severity.value == "P2"
    # the first episode leaves the hour: fewer than 2, cleared after the 120 s hold-off
    assert codes(rig.repeat("telemetry", CHARGING, 30 * 60)) == [f"-{code}"]
    apart = Rig("CP-01")
    apart.send("telemetry", pile(error_code=ocpp))
    apart.repeat("telemetry", CHARGING, 61 * 60)
    assert codes(apart.send("telemetry", pile(error_code=ocpp))) == []  # more than an hour apart


def test_ev_communication_errors_in_three_sessions_within_24_hours() -> None:
    rig = Rig("CP-01")
    for index, gap in enumerate((0, 8 * 3600, 8 * 3600)):
        rig.repeat("telemetry", pile(session_id=f"S-{index}"), gap)
        out = rig.repeat("telemetry", pile(status="Preparing", error_code="EVCommunicationError",
                                           session_id=f"S-{index}", current_a=0.0), 90)
        assert codes(out) == ([] if index < 2 else ["+ev_comm_errors"])
    assert rig.signals[0].severity.value == "P3"
    spread = Rig("CP-01")
    for index in range(3):  # a day apart: the car's problem, never the pile's
        spread.repeat("telemetry", pile(session_id=f"S-{index}"), 12 * 3600 + 60, every=300)
        spread.send("telemetry", pile(status="Preparing", error_code="EVCommunicationError", session_id=f"S-{index}"))
    same = Rig("CP-01")  # one session erring for hours is one session
    same.repeat("telemetry", pile(status="Preparing", error_code="EVCommunicationError"), 25 * 60)
    assert codes(spread.signals + same.signals) == []


def test_device_events_fire_at_once_and_clear_through_telemetry() -> None:
    rig = Rig("CP-01")
    rig.send("telemetry", CHARGING)
    assert codes(rig.send("event", {"code": "ground_failure"}, after=1)) == ["+ground_failure"]
    assert codes(rig.repeat("telemetry", CHARGING, 150)) == ["-ground_failure"]
