"""An elevator's detectors (fault catalog, "Elevator"); the site file gives its landings and rated speed.

A car standing outside the door zone with its floor outside the landing range has overtravelled:
that is ``overtravel`` (P0), not also a stop outside the zone. A stop outside the door zone in
inspection mode is a technician at work, not a trapped passenger (the alarm button still counts).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from linli.contract import ElevatorTelemetry, Event
from linli.detectors.base import DetectorBase, Signal, dump_times, load_times
from linli.detectors.samples import LiftSample
from linli.detectors.thresholds import Thresholds
from linli.site import Device, Site

# Device event codes (GB/T 24476 items) that map onto catalog codes as they are.
_EVENT_CODES = frozenset({
    "trapped", "stopped_outside_zone", "door_open_moving", "overspeed", "overtravel", "safety_circuit_open",
    "door_fault", "power_loss",
})
# Faults seen in single moments (one trip): their episode lasts until calm for event_clear_after_s.
_MOMENTARY = frozenset({"door_open_moving", "overspeed", "overtravel"})


class ElevatorDetectors(DetectorBase):
    __slots__ = ("highest", "lowest", "prev_door", "rated_mps", "reopens", "sample", "sample_before")
    kind = "elevator"
    OWNED = (
        "trapped", "stopped_outside_zone", "door_open_moving", "overspeed", "overtravel", "safety_circuit_open",
        "door_fault", "power_loss", "out_of_service",
    )

    def __init__(self, site: Site, device: Device, thresholds: Thresholds) -> None:
        super().__init__(site, device, thresholds)
        assert device.building is not None  # the site loader guarantees it for an elevator
        building = site.buildings[device.building]
        self.lowest, self.highest, self.rated_mps = building.lowest_floor, building.highest_floor, building.rated_speed_mps
        self.sample: LiftSample | None = None  # the latest telemetry (a tuple: kept per device)
        self.sample_before: LiftSample | None = None
        self.prev_door: str | None = None
        self.reopens: list[datetime] | None = None  # door reopenings within the window; None: none

    def supply_lost(self) -> bool:
        return self.sample is not None and self.sample.mains is False

    def _event(self, event: Event, at: datetime, out: list[Signal]) -> None:
        if event.code == "alarm_button":
            # The alarm button pressed: held until a sample says otherwise or the car moves.
            if self.sample is None or not self.sample.moving:
                self._feed("alarm", True, at)
            return
        if event.code in _EVENT_CODES:
            clear_s = self.th.event_clear_after_s if event.code in _MOMENTARY else None
            self._step(event.code, True, True, at, out, is_sample=False, clear_s=clear_s,
                       detail=f"设备上报 {event.code}（device event）")

    def _stopped_outside(self, body: LiftSample) -> bool:
        in_range = self.lowest <= body.floor <= self.highest
        return not body.moving and not body.door_zone and in_range and body.mode != "inspection"

    def _sample(self, body: Any, at: datetime) -> None:
        if not isinstance(body, ElevatorTelemetry):
            return
        body = LiftSample.of(body)
        self.sample_before, self.sample = self.sample, body
        stopped_out = self._stopped_outside(body)
        self._feed("stalled_occupied", stopped_out and body.door == "closed" and body.occupied is not False, at)
        self._feed("stalled_empty", stopped_out and body.occupied is False, at)
        if body.moving or body.alarm is False:
            self._feed("alarm", False, at)
        elif body.alarm:
            self._feed("alarm", True, at)
        normal = body.mode == "normal"
        previous = self.sample_before
        if previous is not None and (previous.floor != body.floor or previous.trips != body.trips):
            self._feed("door_open", False, at)  # the car travelled in between: its door closed meanwhile
        self._feed("door_open", normal and not body.moving and body.door != "closed", at)
        same_stop = previous is not None and previous.floor == body.floor and previous.trips == body.trips
        if body.door in ("opening", "open") and self.prev_door == "closing" and same_stop:
            if self.reopens is None:
                self.reopens = []
            self.reopens.append(at)
        self.prev_door = body.door
        self._feed("out_of_service", body.mode in ("out_of_service", "inspection"), at)

    def _evaluate(self, at: datetime, is_sample: bool, out: list[Signal]) -> None:
        body = self.sample
        if body is None:
            return
        th = self.th
        floor = body.floor
        stopped_out = self._stopped_outside(body)
        occupied = stopped_out and body.door == "closed" and body.occupied is not False
        alarmed = "alarm" in self.timers and not body.moving  # a timer is kept only while it runs
        trapped_ready = (occupied and self._held("stalled_occupied", at) >= th.trapped_hold_s) or (
            alarmed and self._held("alarm", at) >= th.trapped_alarm_hold_s)
        why = "报警按钮按下" if alarmed else "轿厢停在非平层区，门关闭，" + ("有人" if body.occupied else "载客情况未知")
        self._step("trapped", occupied or alarmed, trapped_ready, at, out, is_sample=is_sample,
                   detail=f"电梯困人：{why}，{floor} 层附近")

        empty = stopped_out and body.occupied is False
        self._step("stopped_outside_zone", empty, empty and self._held("stalled_empty", at)
                   >= th.stopped_outside_zone_hold_s, at, out, is_sample=is_sample,
                   detail=f"非平层停梯：{floor} 层附近，轿厢无人")

        open_moving = body.moving and body.door != "closed" and not body.door_zone
        self._step("door_open_moving", open_moving, open_moving, at, out, is_sample=is_sample,
                   clear_s=th.event_clear_after_s, detail=f"开门走车：门 {body.door}，运行中，{floor} 层附近")

        limit = self.rated_mps * th.overspeed_pct / 100
        speed = body.speed_mps
        over = None if speed is None else speed > limit
        self._step("overspeed", over, bool(over), at, out, is_sample=is_sample, clear_s=th.event_clear_after_s,
                   detail=f"超速：{speed or 0:.2f} m/s（额定 {self.rated_mps:g} m/s，阈值 {limit:.2f} m/s）")

        travel = not self.lowest <= floor <= self.highest
        self._step("overtravel", travel, travel, at, out, is_sample=is_sample, clear_s=th.event_clear_after_s,
                   detail=f"冲顶/蹲底：楼层 {floor}（范围 {self.lowest}–{self.highest}）")

        safety = None if body.safety_circuit is None else not body.safety_circuit
        self._step("safety_circuit_open", safety, bool(safety), at, out, is_sample=is_sample,
                   detail="安全回路断开（safety_circuit false）")

        window = timedelta(seconds=th.door_reopen_window_s)
        reopens = self.reopens
        if reopens is not None:
            while reopens and at - reopens[0] > window:
                del reopens[0]
            if not reopens:
                self.reopens = None
        reopened = len(reopens) if reopens else 0
        held = self._held("door_open", at)
        door_fault = held >= th.door_open_hold_s or reopened >= th.door_reopenings
        if body.mode != "normal" and held == 0:
            door_bad: bool | None = None
        else:
            door_bad = door_fault
        self._step("door_fault", door_bad, door_fault, at, out, is_sample=is_sample,
                   detail=f"门系统故障：门未关 {held:.0f} s，{th.door_reopen_window_s:g} s 内重开 {reopened} 次")

        mains = None if body.mains is None else not body.mains
        self._step("power_loss", mains, bool(mains), at, out, is_sample=is_sample, detail="电梯停电（mains false）")

        out_of_service = body.mode in ("out_of_service", "inspection")
        self._step("out_of_service", out_of_service, out_of_service and self._held("out_of_service", at)
                   >= th.out_of_service_hold_s, at, out, is_sample=is_sample, detail=f"电梯停用：模式 {body.mode}")

    def _extra_dump(self) -> dict[str, Any]:
        return {"sample": self.sample.dump() if self.sample else None,
                "prev_door": self.prev_door, "reopens": dump_times(self.reopens or [])}

    def _extra_load(self, data: dict[str, Any]) -> None:
        sample = data.get("sample")
        self.sample = (LiftSample.of(ElevatorTelemetry.model_validate(sample, strict=False))
                       if isinstance(sample, dict) else None)
        prev = data.get("prev_door")
        self.prev_door = prev if isinstance(prev, str) else None
        self.reopens = list(load_times(data.get("reopens"))) or None
