"""Detector thresholds: the fault catalog's defaults, overridable per site and device kind.

A site file's ``detection`` section (``docs/site-file.md``) overrides any of these per kind::

    detection:
      streetlight: {leakage_p2_ma: 8, supply_voltage_hold_s: 600}
      elevator: {trapped_hold_s: 20}

Durations are in seconds, percentages in percent. This module imports nothing of the site model,
so ``linli.site`` can validate its ``detection`` section against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Thresholds(BaseModel):
    """Every detector's rule parameters; the defaults are the fault catalog's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- every kind: hysteresis and flapping
    clear_after_s: float = Field(120, ge=0, description="a fault must stay clear this long before it counts as cleared")
    event_clear_after_s: float = Field(
        1800, ge=0, description="hold-off of faults seen in single moments (overspeed, overtravel, door_open_moving, "
                                "device events): one fault per episode, not one per trip",
    )
    flap_cycles: int = Field(3, ge=2, description="fire/clear cycles of one code within flap_window_s: intermittent")
    flap_window_s: float = Field(3600, gt=0)
    flap_calm_s: float = Field(3600, ge=0, description="intermittent clears after this long without its code firing")
    offline_if_never_heard: bool = Field(
        True, description="false while a site is being installed: a device in the site file that has never sent a "
                          "message raises no offline (nor, with it, a circuit or building outage) until its first one",
    )

    # -- streetlight
    supply_present_v: float = Field(50, ge=0, description="a light has supply while voltage_v >= this")
    lamp_warm_up_s: float = Field(60, ge=0, description="after the relay closes, before a dark lamp counts")
    lamp_dark_pct: float = Field(10, gt=0, le=100, description="dark: power_w under this % of expected power")
    lamp_failure_samples: int = Field(2, ge=1)
    lamp_failure_dark_s: float = Field(
        60, ge=0, description="and dark this long (a driver that relights by itself within a minute is cycling)"
    )
    lamp_clear_samples: int = Field(2, ge=1, description="lit samples in a row that clear lamp_failure")
    lamp_power_tolerance_pct: float = Field(15, gt=0, description="power off expected by more than this % of rated")
    lamp_power_hold_s: float = Field(600, ge=0)
    day_burning_pct: float = Field(10, gt=0, description="lit by day: power_w above this % of rated")
    day_burning_after_sunrise_min: float = Field(30, ge=0, description="daylight starts this long after sunrise + offset")
    day_burning_hold_s: float = Field(900, ge=0)
    cycling_transitions: int = Field(4, ge=2, description="dark/lit changes with the relay closed within the window")
    cycling_window_s: float = Field(900, gt=0)
    supply_voltage_high_v: float = Field(235, gt=0)
    supply_voltage_low_v: float = Field(198, gt=0)
    supply_voltage_hold_s: float = Field(300, ge=0)
    power_factor_min: float = Field(0.8, gt=0, le=1)
    power_factor_full_dim_pct: float = Field(95, gt=0, le=100, description="full power: dim_pct at least this")
    power_factor_hold_s: float = Field(1800, ge=0)
    leakage_p2_ma: float = Field(10, gt=0)
    leakage_p2_hold_s: float = Field(300, ge=0)
    leakage_p0_ma: float = Field(30, gt=0)
    leakage_p0_samples: int = Field(2, ge=1)
    leakage_clear_after_s: float = Field(300, ge=0, description="under leakage_p2_ma this long: cleared")
    end_of_life_pct: float = Field(100, gt=0, description="burn_hours at this % of the device's rated_life_h")
    energy_baseline_nights: int = Field(14, ge=3, description="nights in a light's own baseline")
    energy_min_nights: int = Field(14, ge=3, description="baseline nights needed before a night is judged")
    energy_z: float = Field(4, gt=0, description="robust z (median / 1.4826 MAD) above which a night is anomalous")
    energy_mad_floor_pct: float = Field(2, ge=0, description="MAD floor, % of the median")
    energy_min_coverage_pct: float = Field(90, gt=0, le=100, description="samples must span this % of the night")
    energy_max_gap_s: float = Field(600, gt=0, description="a longer gap between samples: missing data, night skipped")

    # -- elevator
    trapped_hold_s: float = Field(30, ge=0)
    trapped_alarm_hold_s: float = Field(10, ge=0)
    stopped_outside_zone_hold_s: float = Field(10, ge=0)
    overspeed_pct: float = Field(115, gt=100, description="speed_mps above this % of the rated speed")
    door_open_hold_s: float = Field(120, ge=0, description="door not closed this long, car stopped, normal mode")
    door_reopenings: int = Field(3, ge=2)
    door_reopen_window_s: float = Field(60, gt=0)
    out_of_service_hold_s: float = Field(300, ge=0)

    # -- charger
    high_temperature_c: float = Field(75, gt=0)
    episodes: int = Field(2, ge=1, description="over_current/over_voltage/under_voltage episodes within the window")
    episode_window_s: float = Field(3600, gt=0)
    faulted_hold_s: float = Field(60, ge=0)
    no_current_a: float = Field(0.5, gt=0)
    no_current_hold_s: float = Field(300, ge=0)
    stuck_session_hold_s: float = Field(1800, ge=0)
    ev_comm_sessions: int = Field(3, ge=1)
    ev_comm_window_s: float = Field(86400, gt=0)


COMMON = ("clear_after_s", "event_clear_after_s", "flap_cycles", "flap_window_s", "flap_calm_s",
          "offline_if_never_heard")


def _names(prefix_from: str, prefix_to: str) -> tuple[str, ...]:
    names = list(Thresholds.model_fields)
    return tuple(names[names.index(prefix_from): names.index(prefix_to) + 1])


# The names a site may set per kind (the common ones for every kind).
KIND_NAMES: dict[str, frozenset[str]] = {
    "streetlight": frozenset(COMMON + _names("supply_present_v", "energy_max_gap_s")),
    "elevator": frozenset(COMMON + _names("trapped_hold_s", "out_of_service_hold_s")),
    "charger": frozenset(COMMON + _names("high_temperature_c", "ev_comm_window_s")),
}

DEFAULTS = Thresholds()


def thresholds_for(kind: str, overrides: Mapping[str, Any] | None = None) -> Thresholds:
    """The thresholds of one device kind: the defaults with `overrides` applied (already checked).

    Shared, not copied: every device of a site's kind gets the same (frozen) instance."""
    if not overrides:
        return DEFAULTS
    try:  # the value's type is part of the key: 1 == True == 1.0, but they need not validate alike
        key = tuple(sorted((name, type(value), value) for name, value in overrides.items()))
        hash(key)
    except TypeError:  # an unhashable value: it fails validation below, as it always did
        return Thresholds.model_validate(DEFAULTS.model_dump() | dict(overrides))
    return _with_overrides(key)


@lru_cache(maxsize=256)
def _with_overrides(overrides: tuple[tuple[str, type, Any], ...]) -> Thresholds:
    return Thresholds.model_validate(DEFAULTS.model_dump() | {name: value for name, _, value in overrides})


def override_problems(kind: str, overrides: Mapping[str, Any], where: str) -> list[tuple[str, str]]:
    """(location, problem) for every bad override of one kind; empty when all are usable."""
    problems: list[tuple[str, str]] = []
    known = KIND_NAMES[kind]
    for name in overrides:
        if name not in known:
            listed = ", ".join(sorted(known))
            problems.append((f"{where}.{name}", f"unknown {kind} threshold {name!r} (known: {listed})"))
    if problems:
        return problems
    try:
        thresholds_for(kind, overrides)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            name = ".".join(str(p) for p in error["loc"])
            problems.append((f"{where}.{name}", str(error["msg"])))
    return problems
