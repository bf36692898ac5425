"""The detectors against the simulator's own physics: each injected fault of the all-faults scenario
yields its code (and nothing else on that device), and healthy simulated devices yield nothing.

The simulator's models (``firmware_sim.models``) produce telemetry and events for an injected
physical cause; every payload goes through ``linli.contract.parse`` as the gateway would.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from firmware_sim.faults import Fault
from firmware_sim.models import AnyModel, Sky, build_models, model_for
from firmware_sim.scenarios import load_scenario
from linli.clock import from_ms, to_ms
from linli.contract import Channel, Event, Message, Telemetry, parse, topic_for
from linli.detectors import DeviceDetectors, Signal, detectors_for
from linli.site import Site, builtin_site_path, load_site

SITE = load_site(builtin_site_path())
TZ = ZoneInfo(SITE.spec.site.timezone)
EVENING = datetime(2026, 11, 26, 19, 30, tzinfo=TZ)  # the all-faults scenario's start
INTERVAL = 30.0
SCENARIO = load_scenario("all-faults")


def as_message(site: Site, model: AnyModel, channel: Channel, body: Telemetry | Event, now: datetime) -> Message:
    result = parse(topic_for(site.id, model.kind, model.device_id, channel), body.to_json(), received_ms=to_ms(now),
                   device_kind=lambda s, d: site.devices[d].kind if d in site.devices else None,
                   known_site=lambda s: s == site.id)
    assert isinstance(result, Message), result
    return result


def drive(model: AnyModel, detectors: DeviceDetectors, start: datetime, end: datetime,
          faults: Iterable[tuple[Fault, datetime, datetime]] = (), *, tick_s: float = 5.0) -> list[Signal]:
    """Run one device from `start` to `end`: telemetry every INTERVAL s, events as they happen, ticks every `tick_s`."""
    signals: list[Signal] = []
    pending = sorted([(at, True, f) for f, at, _ in faults] + [(until, False, f) for f, _, until in faults],
                     key=lambda item: item[0])
    now = start
    next_sample = start
    while now <= end:
        while pending and pending[0][0] <= now:
            _, active, fault = pending.pop(0)
            model.set_fault(fault, active, now)
        for event in model.events(now):
            signals += detectors.observe(as_message(SITE, model, Channel.EVENT, event, now), from_ms(event.ts or to_ms(now)))
        if now >= next_sample:
            next_sample = now + timedelta(seconds=INTERVAL)
            if model.powered(now):
                for body in model.messages(now):
                    signals += detectors.observe(as_message(SITE, model, Channel.TELEMETRY, body, now), now)
        signals += detectors.tick(now)
        now += timedelta(seconds=tick_s)
    return signals


def scenario_cases() -> list[tuple[str, str, datetime, datetime]]:
    """(fault, device, from, until) of every device injection of all-faults the detectors own."""
    theirs = {"offline", "circuit_outage", "concentrator_offline", "building_power_loss", "energy_anomaly"}
    return [(str(i.fault), i.device_id, i.at, i.until or i.at + SCENARIO.duration)
            for i in SCENARIO.injections(EVENING, [SITE]) if str(i.fault) not in theirs]


@pytest.mark.parametrize(("fault", "device_id", "at", "until"), scenario_cases(),
                         ids=[c[0] for c in scenario_cases()])
def test_each_injected_fault_yields_its_code_and_nothing_else(
    fault: str, device_id: str, at: datetime, until: datetime,
) -> None:
    device = SITE.devices[device_id]
    start = min(EVENING, at - timedelta(minutes=30))
    model = model_for(SITE, device, start=start, seed=7, sky=Sky.for_site(SITE))
    detectors = detectors_for(SITE, device, SITE.thresholds(device.kind))
    signals = drive(model, detectors, start, until + timedelta(minutes=10), [(Fault(fault), at, until)])
    raised = [s for s in signals if s.active]
    assert {s.code for s in signals} == {fault}, [(s.code, s.active, s.at) for s in signals]
    first = raised[0]
    assert first.at >= at
    assert first.severity.value == ("P2" if fault == "leakage" else first.severity.value)
    if fault == "leakage":
        assert [s.severity.value for s in raised] == ["P2", "P0"]
    else:
        assert len(raised) == 1, raised


def test_healthy_site_yields_nothing_over_a_night_and_a_day() -> None:
    start = datetime(2026, 11, 26, 12, 0, tzinfo=TZ)
    models = build_models(SITE, start=start, seed=11)
    end = start + timedelta(hours=24)
    for device_id, model in models.items():
        device = SITE.devices[device_id]
        detectors = detectors_for(SITE, device, SITE.thresholds(device.kind))
        signals = drive(model, detectors, start, end, tick_s=15.0)
        assert signals == [], (device_id, [(s.code, s.at, s.detail) for s in signals])
