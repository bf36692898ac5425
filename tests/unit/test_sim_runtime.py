"""The simulator runtime's pure parts: reconnection backoff, the offline buffer, the synthetic
county, the fleet light model, the clock announcement and the command fallback."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from firmware_sim.fleet import county, fleet_models, parse_fleet
from firmware_sim.runtime import Backoff, OfflineBuffer
from firmware_sim.simclock import ClockAnnouncement, FollowedClock
from linli.clock import to_ms

NIGHT = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # 21:00 in Fujian


def test_backoff_grows_exponentially_to_its_cap_with_jitter() -> None:
    backoff = Backoff(random.Random("a"), min_s=0.5, max_s=8.0, jitter=0.5)
    delays = [backoff.next_delay() for _ in range(8)]
    bases = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    for delay, base in zip(delays, bases, strict=True):
        assert base * 0.5 <= delay <= base
    assert len({round(d / b, 6) for d, b in zip(delays, bases, strict=True)}) > 1, "jitter varies"
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_two_devices_back_off_differently() -> None:
    a = Backoff(random.Random("seed/backoff/wanmei/SL-01"))
    b = Backoff(random.Random("seed/backoff/wanmei/SL-02"))
    assert [a.next_delay() for _ in range(5)] != [b.next_delay() for _ in range(5)]
    again = Backoff(random.Random("seed/backoff/wanmei/SL-01"))
    first = Backoff(random.Random("seed/backoff/wanmei/SL-01"))
    assert [again.next_delay() for _ in range(5)] == [first.next_delay() for _ in range(5)], "seeded: reproducible"


def test_backoff_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(random.Random(), min_s=2, max_s=1)
    with pytest.raises(ValueError):
        Backoff(random.Random(), jitter=1.0)


def test_the_offline_buffer_is_bounded_dropping_the_oldest_and_counting() -> None:
    buffer = OfflineBuffer(3)
    for seq in range(5):
        buffer.add("t", f'{{"seq":{seq}}}'.encode())
    assert len(buffer) == 3 and buffer.dropped == 2
    assert [payload for _, payload in buffer.take()] == [b'{"seq":2}', b'{"seq":3}', b'{"seq":4}']
    assert len(buffer) == 0
    nothing = OfflineBuffer(0)
    nothing.add("t", b"x")
    assert len(nothing) == 0 and nothing.dropped == 1


def test_parse_fleet() -> None:
    assert parse_fleet("20x10x500") == (20, 10, 500)
    for bad in ("20x10", "0x1x1", "axbxc", "1x1x10000"):
        with pytest.raises(ValueError):
            parse_fleet(bad)


def test_a_county_is_real_sites_deterministic_by_seed() -> None:
    sites = county(2, 3, 4, seed=9)
    assert [s.id for s in sites] == ["county-001", "county-002"]
    site = sites[0]
    assert len(site.devices) == 12 and [c.id for c in site.spec.concentrators] == ["CC-001", "CC-002", "CC-003"]
    light = site.devices["L002-0003"]
    assert light.kind == "streetlight" and light.concentrator == "CC-002" and light.circuit == "C002"
    again = county(2, 3, 4, seed=9)
    assert [d.rated_power_w for d in again[1].devices.values()] == [d.rated_power_w for d in sites[1].devices.values()]


def _fleet_payloads(seed: int) -> list[bytes]:
    from firmware_sim.models import Sky

    site = county(1, 1, 3, seed=seed)[0]
    make = fleet_models(seed)
    sky = Sky.for_site(site)
    models = [make(site, d, start=NIGHT, seed=seed, boot=1, sky=sky) for d in site.devices.values()]
    out: list[bytes] = []
    for step in range(1, 4):
        for model in models:
            out.extend(m.to_json() for m in model.messages(NIGHT + timedelta(seconds=30 * step)))
    return out


def test_fleet_lights_are_cheap_contract_telemetry_reproducible_by_seed() -> None:
    from linli.contract import StreetlightTelemetry

    payloads = _fleet_payloads(4)
    assert payloads == _fleet_payloads(4)
    body = StreetlightTelemetry.model_validate_json(payloads[0])
    assert body.relay is True and body.seq == 0 and body.ts == to_ms(NIGHT + timedelta(seconds=30))
    assert body.power_w > 10


def test_a_fleet_light_obeys_set_light_and_shows_a_circuit_outage_as_no_power() -> None:
    from firmware_sim.faults import Fault
    from firmware_sim.models import Sky
    from linli.contract import StreetlightTelemetry

    site = county(1, 1, 1)[0]
    device = next(iter(site.devices.values()))
    light = fleet_models()(site, device, start=NIGHT, seed=0, boot=1, sky=Sky.for_site(site))
    ok = light.command("set_light", {"relay": True, "dim_pct": 20}, NIGHT)  # type: ignore[attr-defined]
    assert ok == (True, None)
    body = StreetlightTelemetry.model_validate_json(light.messages(NIGHT)[0].to_json())
    assert body.dim_pct == 20 and body.power_w == pytest.approx((device.rated_power_w or 0) * 0.2, rel=0.05)
    assert light.command("set_light", {"relay": "on"}, NIGHT)[0] is False  # type: ignore[attr-defined]
    light.set_fault(Fault.CIRCUIT_OUTAGE, True, NIGHT)
    assert light.powered(NIGHT) is False  # type: ignore[attr-defined]


def test_a_followed_clock_runs_at_the_announced_speed() -> None:
    wall = [1_000_000.0]
    announcement = ClockAnnouncement(start_wall_ms=1_000_000, start_sim_ms=to_ms(NIGHT), speed=60.0)
    clock = FollowedClock(ClockAnnouncement.from_json(announcement.to_json()), wall_ms=lambda: wall[0])
    assert clock.now() == NIGHT
    wall[0] += 1000.0
    assert clock.now() == NIGHT + timedelta(minutes=1)
    clock.update(ClockAnnouncement(0, to_ms(NIGHT), None, to_ms(NIGHT) + 5000).to_json())
    assert clock.now() == NIGHT + timedelta(seconds=5), "a driven clock: the announced sim_ms"
    clock.update(b"")
    assert abs((clock.now() - datetime.now(tz=UTC)).total_seconds()) < 5, "no announcement: real time"
    for bad in (b"{}", b'{"start_wall_ms":1,"start_sim_ms":2,"speed":0}', b"nope"):
        with pytest.raises(ValueError):
            ClockAnnouncement.from_json(bad)


def test_switching_off_a_light_on_a_switched_circuit_keeps_its_controller_powered() -> None:
    """set_light holds the light's relay; the cabinet's contactor keeps its own timer, so the
    controller stays powered (and online) with its lamp off, and comes back on when commanded."""
    from firmware_sim.models import StreetlightModel, model_for
    from firmware_sim.runtime import _Dev, _fallback_command
    from linli.site import builtin_site_path, load_site

    site = load_site(builtin_site_path())
    device = next(d for d in site.devices.values() if d.kind == "streetlight" and site.circuits[d.circuit].switched)
    unit = _Dev(site, device, model_for(site, device, start=NIGHT, seed=1, boot=1))
    model = unit.model
    assert isinstance(model, StreetlightModel)
    later = NIGHT + timedelta(minutes=5)
    assert model.powered(later) and model.telemetry(later).relay is True
    assert _fallback_command(unit, "set_light", {"relay": False}, later) == (True, None)
    off = later + timedelta(minutes=5)
    assert model.powered(off), "the controller lost its own supply"
    assert model.telemetry(off).relay is False
    assert _fallback_command(unit, "set_light", {"relay": True}, off) == (True, None)
    assert model.telemetry(off + timedelta(minutes=5)).relay is True
