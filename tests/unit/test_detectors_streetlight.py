"""Streetlight detectors: every catalog rule fires once after its duration, not under its threshold,
clears only after its hold-off; healthy() and supply_lost() tell the truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from linli.detectors import Thresholds

from .detector_rig import DAY, NIGHT, Rig, check_near_miss, check_timed, codes

LIT: dict[str, Any] = {"relay": True, "dim_pct": 100, "power_w": 40.0, "voltage_v": 229.0, "pf": 0.95,
                       "leakage_ma": 0.4, "burn_hours": 10_000, "energy_kwh": 100.0}  # SL-07: 40 W, always powered


def lit(**changes: Any) -> dict[str, Any]:
    return LIT | changes


# code, bad sample, sample just under the threshold, hold (s), hold-off (s)
TIMED = [
    ("lamp_power_high", lit(power_w=46.5), lit(power_w=45.9), 600, 120),
    ("lamp_power_low", lit(power_w=33.5), lit(power_w=34.1), 600, 120),
    ("supply_voltage_high", lit(voltage_v=235.5), lit(voltage_v=235.0), 300, 120),
    ("supply_voltage_low", lit(voltage_v=197.5), lit(voltage_v=198.0), 300, 120),
    ("power_factor_low", lit(pf=0.79), lit(pf=0.80), 1800, 120),
    ("leakage", lit(leakage_ma=10.0), lit(leakage_ma=9.9), 300, 300),
    ("end_of_life", lit(burn_hours=50_000), lit(burn_hours=49_999.9), 0, 120),
]


@pytest.mark.parametrize(("code", "bad", "near", "hold", "clear"), TIMED, ids=[t[0] for t in TIMED])
def test_timed_rule(code: str, bad: dict[str, Any], near: dict[str, Any], hold: float, clear: float) -> None:
    check_timed(Rig("SL-07"), code=code, good=LIT, bad=bad, hold=hold, clear=clear)
    check_near_miss(Rig("SL-07"), near=near, seconds=max(3 * hold, 600))


def test_end_of_life_needs_two_samples_under_the_rated_life_to_clear() -> None:
    rig = Rig("SL-07")
    assert codes(rig.send("telemetry", lit(burn_hours=50_001))) == ["+end_of_life"]
    assert codes(rig.repeat("telemetry", lit(burn_hours=12), 120)) == []  # a replacement resets the counter
    assert codes(rig.send("telemetry", lit(burn_hours=12))) == ["-end_of_life"]


def test_lamp_failure_fires_once_after_a_minute_dark_and_clears_after_two_lit_samples() -> None:
    rig = Rig("SL-07")
    rig.send("telemetry", LIT)
    assert rig.detectors.healthy("lamp_failure") is True
    assert codes(rig.send("telemetry", lit(power_w=3.9))) == []  # under 10% of the expected 40 W
    assert rig.detectors.healthy("lamp_failure") is False
    assert codes(rig.send("telemetry", lit(power_w=0.3))) == []  # 2 samples but dark for 30 s only
    fired = rig.send("telemetry", lit(power_w=0.3))
    assert codes(fired) == ["+lamp_failure"] and fired[0].severity.value == "P2"
    assert "0.3 W" in fired[0].detail and "40 W" in fired[0].detail
    assert codes(rig.repeat("telemetry", lit(power_w=0.3), 300)) == []
    assert codes(rig.send("telemetry", LIT)) == []  # one lit sample is not enough
    assert codes(rig.send("telemetry", LIT)) == ["-lamp_failure"]
    assert rig.detectors.healthy("lamp_failure") is True


def test_lamp_failure_near_misses() -> None:
    rig = Rig("SL-07")
    check_near_miss(rig, near=lit(power_w=4.0), seconds=600, code="lamp_failure")  # 10% of expected: lit (low)
    rig = Rig("SL-07")
    check_near_miss(rig, near=lit(dim_pct=50, power_w=20.0), seconds=600)  # dimmed to 50%: 20 W expected
    # a 50 s dark spell that relights (a driver's thermal cut-out) is not a failure
    for _ in range(2):
        rig.send("telemetry", lit(power_w=0.3), after=10)
        rig.send("telemetry", lit(power_w=0.3), after=30)
        rig.send("telemetry", LIT, after=30)
        rig.repeat("telemetry", LIT, 900)
    assert codes(rig.signals) == []


def test_lamp_failure_waits_for_the_warm_up_after_the_relay_closes() -> None:
    rig = Rig("SL-07")
    rig.send("telemetry", lit(relay=False, power_w=0.3, dim_pct=0))
    assert codes(rig.send("telemetry", lit(power_w=0.3), after=5)) == []  # switched on, dark
    assert codes(rig.send("telemetry", lit(power_w=0.3), after=30)) == []
    assert codes(rig.send("telemetry", lit(power_w=0.3), after=20)) == []  # 50 s: still warming up
    assert codes(rig.send("telemetry", lit(power_w=0.3), after=30)) == []  # warm: the first dark sample that counts
    assert codes(rig.send("telemetry", lit(power_w=0.3), after=30)) == ["+lamp_failure"]


def test_no_lamp_rule_reads_a_light_without_supply() -> None:
    rig = Rig("SL-07")
    rig.send("telemetry", LIT)
    assert rig.detectors.supply_lost() is False
    dead = {"relay": True, "power_w": 0.0, "voltage_v": 1.0, "leakage_ma": 0.0}
    assert codes(rig.repeat("telemetry", dead, 3600)) == []
    assert rig.detectors.supply_lost() is True
    assert rig.detectors.healthy("lamp_failure") is True  # the last sample that could tell
    rig.send("telemetry", LIT)
    assert rig.detectors.supply_lost() is False


def test_leakage_rises_from_p2_to_p0_and_clears_once() -> None:
    rig = Rig("SL-07")
    fired = rig.repeat("telemetry", lit(leakage_ma=12), 330)
    assert [(s.code, s.severity.value) for s in fired] == [("leakage", "P2")]
    assert codes(rig.send("telemetry", lit(leakage_ma=31))) == []  # one sample at 30 mA is not enough
    rose = rig.send("telemetry", lit(leakage_ma=32))
    assert [(s.code, s.active, s.severity.value) for s in rose] == [("leakage", True, "P0")]
    assert "32 mA" in rose[0].detail and "30 mA" in rose[0].detail
    assert codes(rig.repeat("telemetry", lit(leakage_ma=33), 300)) == []
    assert codes(rig.repeat("telemetry", lit(leakage_ma=15), 300)) == []  # falling never lowers nor clears
    assert codes(rig.repeat("telemetry", lit(leakage_ma=1), 300)) == []  # 300 s hold-off: first sample at 0 s
    cleared = rig.send("telemetry", lit(leakage_ma=1))
    assert [(s.code, s.active, s.severity.value) for s in cleared] == [("leakage", False, "P0")]


def test_leakage_at_30_ma_is_p0_at_once_after_two_samples() -> None:
    rig = Rig("SL-07")
    assert codes(rig.send("telemetry", lit(leakage_ma=35))) == []
    fired = rig.send("telemetry", lit(leakage_ma=36))
    assert [(s.code, s.severity.value) for s in fired] == [("leakage", "P0")]


def test_cycling_fires_on_the_fourth_transition_within_15_minutes() -> None:
    rig = Rig("SL-07")
    rig.send("telemetry", LIT)
    for power in (0.3, 40.0, 0.3):  # three transitions: not yet
        assert codes(rig.send("telemetry", lit(power_w=power), after=60)) == []
    assert rig.detectors.healthy("cycling") is False
    fired = rig.send("telemetry", LIT, after=60)
    assert codes(fired) == ["+cycling"] and fired[0].severity.value == "P2"
    assert codes(rig.repeat("telemetry", LIT, 600)) == []  # the transitions age out of the window ...
    assert codes(rig.repeat("telemetry", LIT, 600)) == ["-cycling"]  # ... then the 120 s hold-off
    assert rig.detectors.healthy("cycling") is True


def test_three_transitions_or_relay_switching_are_not_cycling() -> None:
    rig = Rig("SL-07")
    rig.send("telemetry", LIT)
    for power in (0.3, 40.0, 0.3, 40.0):  # spread over 16 minutes
        rig.send("telemetry", lit(power_w=power), after=320)
    for relay in (False, True, False, True, False, True):  # the controller switching is not the lamp
        rig.send("telemetry", lit(relay=relay, power_w=40.0 if relay else 0.3), after=30)
    assert codes(rig.signals) == []


def test_day_burning_after_15_minutes_lit_by_day() -> None:
    on, off = lit(dim_pct=50, power_w=20.0), {"relay": False, "power_w": 0.3, "voltage_v": 229.0}
    check_timed(Rig("SL-07", start=DAY), code="day_burning", good=off, bad=on, hold=900, clear=120)
    check_near_miss(Rig("SL-07", start=DAY), near=lit(power_w=4.0), seconds=3600, code="day_burning")  # 10%: not lit
    check_near_miss(Rig("SL-07", start=NIGHT), near=LIT, seconds=3600)  # lit at night: the schedule says on


def test_day_burning_waits_30_minutes_after_sunrise() -> None:
    sunrise = datetime(2026, 11, 26, 22, 34, tzinfo=UTC)  # ~06:34 in Fujian on the 27th
    rig = Rig("SL-07", start=sunrise)
    assert codes(rig.repeat("telemetry", lit(dim_pct=50, power_w=20.0), 25 * 60)) == []  # 30 + 15 min needed
    assert codes(rig.repeat("telemetry", lit(dim_pct=50, power_w=20.0), 25 * 60)) == ["+day_burning"]


def test_no_day_burning_while_a_staff_command_switched_it_on() -> None:
    rig = Rig("SL-07", start=DAY)
    rig.send("cmd", {"id": "c-1", "action": "set_light", "params": {"relay": True, "dim_pct": 100}})
    assert codes(rig.repeat("telemetry", LIT, 3600)) == []
    rig.send("cmd", {"id": "c-2", "action": "set_light", "params": {"relay": False}})
    assert codes(rig.repeat("telemetry", LIT, 930)) == ["+day_burning"]


def test_ticks_complete_a_duration_without_a_new_sample_but_never_on_a_stale_one() -> None:
    rig = Rig("SL-07")
    rig.repeat("telemetry", lit(voltage_v=240.0), 300)  # 10 samples: 270 s held
    assert codes(rig.tick(20)) == []
    assert codes(rig.tick(30)) == ["+supply_voltage_high"]  # 320 s held, last sample 50 s old
    stale = Rig("SL-07")
    stale.repeat("telemetry", lit(voltage_v=240.0), 300)
    assert codes(stale.tick(100)) == []  # the last sample is over 3 intervals old: the device may be offline


def test_thresholds_are_configurable() -> None:
    rig = Rig("SL-07", thresholds=Thresholds(leakage_p2_ma=5, leakage_p2_hold_s=60))
    assert codes(rig.repeat("telemetry", lit(leakage_ma=6), 90)) == ["+leakage"]


def test_energy_anomaly_against_the_lights_own_14_night_baseline() -> None:
    rig = Rig("SL-07", start=datetime(2026, 11, 1, 4, 0, tzinfo=UTC))
    energy = 100.0

    def night(watts: float, *, skip_minutes: int = 0) -> list[str]:
        """One day and night at `every` 5 min: lit at `watts` during the night, standby by day."""
        nonlocal energy
        out: list[str] = []
        for _ in range(24 * 12):
            rig.now += timedelta(minutes=5)
            from linli.astro import lights_scheduled_on

            on = lights_scheduled_on(rig.site, rig.now)
            energy += (watts if on else 0.3) * 5 / 60 / 1000
            if skip_minutes and on:
                skip_minutes -= 5
                continue
            body = {"relay": on, "power_w": watts if on else 0.3, "voltage_v": 229.0, "energy_kwh": round(energy, 4)}
            out += codes(rig.detectors.observe(rig.message("telemetry", body), rig.now))
        return out

    for index in range(14):
        assert night(40.0 + 0.2 * (index % 3)) == []
    assert rig.detectors.healthy("energy_anomaly") is None  # no night judged yet
    assert night(40.0) == []
    assert rig.detectors.healthy("energy_anomaly") is True
    assert night(44.0) == []  # +10% at the 2% MAD floor: z = 3.4
    assert night(45.7) == ["+energy_anomaly"]  # +14% (still within lamp_power tolerance): z = 4.8
    assert rig.detectors.healthy("energy_anomaly") is False
    assert night(40.0, skip_minutes=120) == []  # missing data: skipped, not judged
    assert rig.detectors.healthy("energy_anomaly") is False
    snapshot = rig.detectors.snapshot()
    restarted = Rig("SL-07", start=rig.now)
    restarted.detectors.restore(snapshot)
    rig.detectors = restarted.detectors  # the baseline survives the restart
    assert night(40.1) == ["-energy_anomaly"]
