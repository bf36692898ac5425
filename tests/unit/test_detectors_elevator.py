"""Elevator detectors: every catalog rule fires once after its duration, not under its threshold,
clears only after its hold-off; device events map onto catalog codes; supply_lost() reads mains."""

from __future__ import annotations

from typing import Any

import pytest

from .detector_rig import Rig, check_near_miss, check_timed, codes

# EL-1A: building B1, landings -1..26, rated 2.5 m/s
IDLE: dict[str, Any] = {"floor": 5, "moving": False, "direction": "none", "speed_mps": 0.0, "door": "closed",
                        "door_zone": True, "occupied": False, "mode": "normal", "mains": True, "safety_circuit": True,
                        "alarm": False, "trips": 100}


def car(**changes: Any) -> dict[str, Any]:
    return IDLE | changes


RUN = car(moving=True, direction="up", speed_mps=2.5, door_zone=False)

# code, bad sample, just under the threshold, hold (s), hold-off (s), sample period (s)
TIMED = [
    ("trapped", car(door_zone=False, occupied=True), car(door_zone=False, occupied=True, door="open"), 30, 120, 10),
    ("stopped_outside_zone", car(door_zone=False), car(door_zone=True, occupied=False), 10, 120, 5),
    ("door_open_moving", RUN | {"door": "open"}, RUN | {"door_zone": True, "door": "opening"}, 0, 1800, 30),
    ("overspeed", RUN | {"speed_mps": 2.9}, RUN | {"speed_mps": 2.875}, 0, 1800, 30),
    ("overtravel", car(floor=27, door_zone=False), car(floor=26), 0, 1800, 30),
    ("safety_circuit_open", car(safety_circuit=False), {k: v for k, v in IDLE.items() if k != "safety_circuit"}, 0, 120, 30),
    ("door_fault", car(door="open"), car(door="open", mode="fire"), 120, 120, 30),
    ("power_loss", car(mains=False), {k: v for k, v in IDLE.items() if k != "mains"}, 0, 120, 30),
    ("out_of_service", car(mode="out_of_service"), car(mode="fire"), 300, 120, 30),
]


@pytest.mark.parametrize(("code", "bad", "near", "hold", "clear", "every"), TIMED, ids=[t[0] for t in TIMED])
def test_timed_rule(code: str, bad: dict[str, Any], near: dict[str, Any], hold: float, clear: float, every: float) -> None:
    # a door open for less than 120 s is a healthy door; a car stopped between floors never is
    check_timed(Rig("EL-1A"), code=code, good=IDLE, bad=bad, hold=hold, clear=clear, every=every,
                unhealthy_before_firing=code != "door_fault")
    check_near_miss(Rig("EL-1A"), near=near, seconds=max(3 * hold, 100), every=every, code=code)


def test_trapped_when_occupancy_is_unknown_and_not_when_empty() -> None:
    unknown = {k: v for k, v in IDLE.items() if k != "occupied"} | {"door_zone": False}
    rig = Rig("EL-1A")
    assert codes(rig.repeat("telemetry", unknown, 60)) == ["+trapped"]
    empty = Rig("EL-1A")
    assert codes(empty.repeat("telemetry", car(door_zone=False), 60)) == ["+stopped_outside_zone"]


def test_alarm_held_while_stopped_is_trapped_after_10_s_by_the_tick() -> None:
    rig = Rig("EL-1A")
    rig.send("telemetry", IDLE)
    assert codes(rig.send("telemetry", car(alarm=True), after=30)) == []
    assert codes(rig.tick(5)) == []
    fired = rig.tick(5)
    assert codes(fired) == ["+trapped"] and fired[0].severity.value == "P0"


def test_alarm_button_event_then_trapped_event() -> None:
    rig = Rig("EL-1A")
    rig.send("telemetry", car(door_zone=False, occupied=True))
    assert codes(rig.send("event", {"code": "alarm_button", "detail": {"floor": 5}}, after=2)) == []
    assert codes(rig.tick(10)) == ["+trapped"]
    device = Rig("EL-2A")
    device.send("telemetry", IDLE)
    assert codes(device.send("event", {"code": "trapped"}, after=1)) == ["+trapped"]  # at once
    assert codes(device.send("event", {"code": "trapped"}, after=1)) == []  # never repeated while it holds
    assert codes(device.send("event", {"code": "no_such_code"}, after=1)) == []  # stored and shown, nothing opens


def test_overtravel_stop_is_not_also_a_stop_outside_the_zone() -> None:
    rig = Rig("EL-1A")
    assert codes(rig.repeat("telemetry", car(floor=27, door_zone=False, occupied=True), 120, every=10)) == ["+overtravel"]


def test_a_normal_stop_at_a_landing_and_busy_doors_are_healthy() -> None:
    rig = Rig("EL-1A")
    for trip in range(20):  # the door seen open at every sample, but the car travels in between
        rig.send("telemetry", car(floor=1 + trip % 5, door="open", trips=100 + trip), after=30)
    assert codes(rig.signals) == []
    assert rig.detectors.healthy("door_fault") is True


def test_three_reopenings_within_a_minute_are_a_door_fault() -> None:
    rig = Rig("EL-1A")
    rig.send("telemetry", IDLE)
    rig.send("telemetry", car(door="closing"), after=2)
    assert codes(rig.send("telemetry", car(door="opening"), after=2)) == []
    rig.send("telemetry", car(door="closing"), after=5)
    assert codes(rig.send("telemetry", car(door="opening"), after=2)) == []
    rig.send("telemetry", car(door="closing"), after=5)
    assert codes(rig.send("telemetry", car(door="opening"), after=2)) == ["+door_fault"]


def test_supply_lost_reads_mains() -> None:
    rig = Rig("EL-1A")
    assert rig.detectors.supply_lost() is False
    rig.send("telemetry", car(mains=False))
    assert rig.detectors.supply_lost() is True
    rig.send("telemetry", IDLE)
    assert rig.detectors.supply_lost() is False
