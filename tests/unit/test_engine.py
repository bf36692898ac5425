"""The engine's own timers and rules around the device detectors: `lamp_failure` through the engine,
`offline` (silence, last will, the grouping window), driven by a moved clock, never by sleeping."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from linli.catalog import Severity
from linli.clock import ManualClock, to_ms
from linli.contract import Message, parse
from linli.engine import Decision, Engine, FaultCleared, FaultRaised
from linli.engine.decisions import DeviceCommand, MemberChanged
from linli.site import SiteRegistry, builtin_site_path

NIGHT = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # 21:00 in Fujian
DAY = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)  # 12:00 in Fujian
SITES = SiteRegistry.load([builtin_site_path()])


class Rig:
    def __init__(self, start: datetime) -> None:
        self.clock = ManualClock(start)
        self.engine = Engine(SITES, start)
        self.seq = 0

    def send(self, device: str, channel: str, body: dict[str, object], *, kind: str = "streetlight",
             stamp: bool = True) -> list[FaultRaised | FaultCleared]:
        now = self.clock.now()
        if stamp and channel == "telemetry":
            body = {"ts": to_ms(now), "seq": self.seq, **body}
            self.seq += 1
        message = parse(f"estate/v1/wanmei/{kind}/{device}/{channel}", json.dumps(body).encode(),
                        received_ms=to_ms(now), device_kind=lambda s, d: SITES[s].devices[d].kind if d in SITES[s].devices
                        else None, known_site=lambda s: s in SITES)
        assert isinstance(message, Message), message
        return self.engine.observe(message, now)

    def light(self, device: str = "SL-07", *, relay: bool = True, power: float = 40.0, volts: float = 229.0,
              dim: float | None = None, after: float = 30) -> list[FaultRaised | FaultCleared]:
        self.clock.advance(after)
        body: dict[str, object] = {"relay": relay, "power_w": power, "voltage_v": volts}
        if dim is not None:
            body["dim_pct"] = dim
        return self.send(device, "telemetry", body)

    def tick(self, after: float) -> list[FaultRaised | FaultCleared]:
        return self.engine.tick(self.clock.advance(after))


def codes(decisions: list[Decision]) -> list[str]:
    return [f"{'+' if isinstance(d, FaultRaised) else '-'}{d.fault}:{d.subject.id}" for d in decisions
            if isinstance(d, FaultRaised | FaultCleared)]


def lamp(decisions: list[Decision]) -> list[str]:
    """Only lamp_failure (a lamp going dark and lit again is also `cycling`, another detector's business)."""
    return [c for c in codes(decisions) if "lamp_failure" in c]


def test_lamp_failure_fires_once_after_two_dark_samples_and_a_minute_dark() -> None:
    rig = Rig(NIGHT)  # SL-07: 40 W on the always-powered square circuit
    assert rig.light() == []
    assert rig.light(power=0) == []
    assert rig.light(power=0) == []  # two dark samples, but dark for 30 s only (a cycling lamp is not failed)
    fired = rig.light(power=0)
    assert codes(fired) == ["+lamp_failure:SL-07"]
    raised = fired[0]
    assert isinstance(raised, FaultRaised) and raised.severity is Severity.P2 and raised.device_ids == ("SL-07",)
    assert [rig.light(power=0) for _ in range(5)] == [[]] * 5  # repeats add nothing


def test_one_dark_sample_or_a_dim_but_lit_lamp_fires_nothing() -> None:
    rig = Rig(NIGHT)
    rig.light()
    assert lamp(rig.light(power=0)) == []
    assert lamp(rig.light(power=40)) == []
    assert lamp(rig.light(power=0)) == []  # the run was broken: one in a row again
    assert lamp(rig.light(power=3.0, dim=50)) == []  # 3 W of 20 W expected is above 10%
    assert lamp(rig.light(power=1.5, dim=50)) == []  # the first dark one at 50 % (1.5 < 2 W)
    assert lamp(rig.light(power=1.5, dim=50)) == []
    assert lamp(rig.light(power=1.5, dim=50)) == ["+lamp_failure:SL-07"]


def test_warm_up_after_the_relay_closes() -> None:
    rig = Rig(NIGHT)
    rig.light(relay=False, power=0.3)
    assert lamp(rig.light(power=0, after=10)) == []  # first seen closed: the warm-up starts here
    assert lamp(rig.light(power=0, after=30)) == []  # 30 s: still warming up
    assert lamp(rig.light(power=0, after=25)) == []  # 55 s
    assert lamp(rig.light(power=0, after=15)) == []  # 70 s: the first dark sample that counts
    assert lamp(rig.light(power=0, after=20)) == ["+lamp_failure:SL-07"]  # the second, dark for 80 s


def test_no_supply_is_not_a_lamp_failure() -> None:
    rig = Rig(NIGHT)
    rig.light()
    for _ in range(5):
        assert rig.light(power=0, volts=0) == []


def test_lamp_failure_clears_only_after_two_lit_samples() -> None:
    rig = Rig(NIGHT)
    rig.light()
    rig.light(power=0)
    rig.light(power=0)
    assert codes(rig.light(power=0)) == ["+lamp_failure:SL-07"]
    assert rig.light(power=40) == []
    assert codes(rig.light(power=40)) == ["-lamp_failure:SL-07"]


def others_keep_talking(rig: Rig, *but: str) -> None:
    for device in SITES["wanmei"].devices:
        if device not in but:
            rig.engine.live("wanmei", device).last_seen = NIGHT + timedelta(days=1)  # type: ignore[union-attr]


def test_a_silent_light_goes_offline_after_three_intervals_and_the_grouping_window() -> None:
    rig = Rig(NIGHT)
    others_keep_talking(rig)
    rig.light()  # SL-07 at NIGHT + 30 s; interval 30 s
    assert rig.tick(89) == []
    assert rig.tick(1) == []  # silent for 3 intervals: it waits 30 s for a parent fault (a circuit outage)
    assert rig.tick(29) == []
    fired = rig.tick(1)
    assert codes(fired) == ["+offline:SL-07"]
    assert isinstance(fired[0], FaultRaised) and fired[0].severity is Severity.P2  # at night
    assert rig.tick(600) == []  # one fault, not one per tick
    assert codes(rig.light()) == ["-offline:SL-07"]


def test_offline_by_day_is_p3_and_switched_circuits_are_silent_by_day() -> None:
    rig = Rig(DAY)
    decisions = rig.tick(91) + rig.tick(30)
    raised = [d for d in decisions if isinstance(d, FaultRaised)]
    silent = {m for d in raised for m in d.device_ids} | {d.device_id for d in decisions if isinstance(d, MemberChanged)}
    switched = {d.id for d in SITES["wanmei"].devices.values()
                if d.circuit and SITES["wanmei"].circuits[d.circuit].switched}
    assert silent and not (silent & switched)
    assert "SL-07" in silent and "EL-1A" in silent and "CP-01" in silent
    # The whole site silent at once: the always-powered circuit and each building are one ticket each.
    by_subject = {(d.subject.type, d.subject.id): d for d in raised}
    assert by_subject[("circuit", "C1")].fault == "circuit_outage"
    assert by_subject[("building", "B1")].fault == "building_power_loss"
    assert by_subject[("device", "CP-01")].fault == "offline" and by_subject[("device", "CP-01")].severity is Severity.P2
    alone = Rig(DAY)
    others_keep_talking(alone, "SL-07")
    (offline,) = [d for d in alone.tick(91) + alone.tick(30) if isinstance(d, FaultRaised)]
    assert offline.subject.id == "SL-07" and offline.severity is Severity.P3  # by day


def test_switched_circuit_silence_counts_from_switch_on() -> None:
    sunset_local = datetime(2026, 11, 26, 9, 20, tzinfo=UTC)  # about 17:20 local, near sunset
    rig = Rig(sunset_local)
    others_keep_talking(rig, "SL-10")
    decisions = rig.tick(0)
    assert all(d.subject.id != "SL-10" for d in decisions)
    later = rig.tick(3 * 3600) + rig.tick(30)  # deep into the night with no word from SL-10
    assert "+offline:SL-10" in codes(later)


def test_last_will_is_offline_at_once_except_on_a_switched_circuit_by_day() -> None:
    night = Rig(NIGHT)
    others_keep_talking(night)
    assert night.send("SL-07", "status", {"online": False}) == []  # held for the grouping window...
    assert codes(night.tick(30)) == ["+offline:SL-07"]  # ...then its own ticket: no parent came
    day = Rig(DAY)
    others_keep_talking(day)
    assert day.send("SL-10", "status", {"online": False}) == []  # its contactor opened at dawn
    assert day.tick(60) == []
    assert day.send("SL-07", "status", {"online": False}) == []
    assert codes(day.tick(30)) == ["+offline:SL-07"]


def test_silence_while_the_gateway_is_disconnected_does_not_count() -> None:
    rig = Rig(NIGHT)
    rig.engine.broker_connection(False, rig.clock.now())
    assert rig.tick(3600) == []
    rig.engine.broker_connection(True, rig.clock.now())
    assert rig.tick(89) == []
    parents = codes(rig.tick(1))  # the whole site silent: parents at once, lone devices after the window
    assert "+circuit_outage:C1" in parents and "+offline:CP-01" not in parents
    assert "+offline:CP-01" in codes(rig.tick(30))


def test_status_interval_sets_the_offline_delay() -> None:
    rig = Rig(NIGHT)
    others_keep_talking(rig, "EL-1A")
    rig.send("EL-1A", "status", {"online": True, "interval_s": 120}, kind="elevator")
    assert all(d.subject.id != "EL-1A" for d in rig.tick(300) + rig.tick(30))
    assert any(d.subject.id == "EL-1A" for d in rig.tick(61) + rig.tick(30))


@pytest.mark.parametrize("seq_after_reboot", [0, 5])
def test_duplicates_are_recognised_by_seq_and_a_reboot_resets_them(seq_after_reboot: int) -> None:
    rig = Rig(NIGHT)
    now = rig.clock.now()

    def message(seq: int) -> Message:
        body = {"seq": seq, "relay": True, "power_w": 40, "voltage_v": 229}
        result = parse("estate/v1/wanmei/streetlight/SL-07/telemetry", json.dumps(body).encode(), received_ms=to_ms(now),
                       device_kind=lambda s, d: "streetlight", known_site=lambda s: True)
        assert isinstance(result, Message)
        return result

    for seq in range(10):
        assert not rig.engine.is_duplicate(message(seq))
        rig.engine.observe(message(seq), now)
    assert rig.engine.is_duplicate(message(seq_after_reboot))
    rig.send("SL-07", "status", {"online": True, "boot": 2})
    assert not rig.engine.is_duplicate(message(seq_after_reboot))


def test_the_schedule_is_pushed_once_and_not_again_after_a_restart() -> None:
    first = Engine(SITES, NIGHT)
    pushed = [d for d in first.schedule_pushes() if isinstance(d, DeviceCommand)]
    lights = {d.id for d in SITES["wanmei"].devices.values() if d.kind == "streetlight"}
    assert {c.device_id for c in pushed} == lights and all(c.action == "set_schedule" for c in pushed)
    assert first.schedule_pushes() == []
    again = Engine(SITES, NIGHT + timedelta(minutes=5))  # the gateway restarted: state from the database
    for live in first.devices():
        restored = again.live(live.site, live.device_id)
        assert restored is not None
        restored.restore(online=live.online, last_seen=live.last_seen, status=live.status, last=live.last,
                         last_seq=live.last_seq, boot=live.boot, snapshot=live.snapshot())
    assert again.schedule_pushes() == []
