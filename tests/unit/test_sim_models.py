"""The simulator's pure layer: device models and fault injection, with explicit datetimes only."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from firmware_sim.faults import Fault, FaultSchedule, Injection, InjectionError, parse_injection, resolve
from firmware_sim.models import (
    AnyModel,
    ChargerModel,
    ElevatorModel,
    Sky,
    StreetlightModel,
    build_models,
)
from linli.clock import to_ms
from linli.contract import (
    TELEMETRY_MODELS,
    Channel,
    ChargerTelemetry,
    ElevatorTelemetry,
    Message,
    Status,
    StreetlightTelemetry,
    Telemetry,
    parse,
    topic_for,
)
from linli.site import Site, builtin_site_path, load_site

SITE = load_site(builtin_site_path())
TZ = ZoneInfo(SITE.spec.site.timezone)
NOON = datetime(2026, 11, 26, 12, 0, tzinfo=TZ)  # local noon; sunset ~17:10, sunrise ~06:30


def local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=TZ)


def parse_as_gateway(site: Site, model: AnyModel, channel: Channel, body: Telemetry | Status, now: datetime) -> Message:
    result = parse(
        topic_for(site.id, model.kind, model.device_id, channel),
        body.to_json(),
        received_ms=to_ms(now),
        device_kind=lambda s, d: site.devices[d].kind if s == site.id and d in site.devices else None,
        known_site=lambda s: s == site.id,
    )
    assert isinstance(result, Message), f"{model.device_id}: {result}"
    return result


def lights(models: Mapping[str, AnyModel]) -> list[StreetlightModel]:
    return [m for m in models.values() if isinstance(m, StreetlightModel)]


def test_the_site_has_73_devices_of_three_kinds() -> None:
    models = build_models(SITE, start=NOON)
    assert len(models) == 73
    assert {type(m) for m in models.values()} == {StreetlightModel, ElevatorModel, ChargerModel}


def test_every_message_over_a_day_and_a_night_parses_as_the_gateway_would() -> None:
    models = build_models(SITE, start=NOON, seed=3)
    for model in models.values():
        status = model.status(NOON, model.device.interval_s)
        assert parse_as_gateway(SITE, model, Channel.STATUS, status, NOON).body == status
    moment = NOON
    end = NOON + timedelta(hours=24)
    while moment <= end:
        for model in models.values():
            for telemetry in model.messages(moment):
                message = parse_as_gateway(SITE, model, Channel.TELEMETRY, telemetry, moment)
                assert isinstance(message.body, TELEMETRY_MODELS[model.kind])
                assert message.body.ts == to_ms(moment)
                assert message.device_stamped
        moment += timedelta(minutes=7)


def test_lights_are_on_in_the_evening_and_after_midnight_and_off_at_noon() -> None:
    models = build_models(SITE, start=NOON, seed=1)
    for light in lights(models):
        day = light.telemetry(local(26, 12))
        assert day.relay is False
        assert day.power_w < 1.0
        assert day.lux is not None and day.lux > 400
        evening = light.telemetry(local(26, 21))
        assert evening.relay is True
        assert evening.dim_pct == 100
        assert evening.power_w == pytest.approx(light.rated_w, rel=0.05)
        assert evening.lux is not None and evening.lux < 10
        late = light.telemetry(local(27, 2))  # the after-midnight part of the same night, dimmed
        assert late.relay is True
        assert late.dim_pct == 50
        assert late.power_w == pytest.approx(light.rated_w / 2, rel=0.05)
        morning = light.telemetry(local(27, 12))
        assert morning.relay is False


def test_light_readings_are_plausible_and_counters_accumulate() -> None:
    light = lights(build_models(SITE, start=NOON, seed=2))[0]
    first = light.telemetry(local(26, 12))
    samples = [light.telemetry(local(26, 12) + timedelta(minutes=10 * i)) for i in range(1, 6 * 24 + 1)]
    last = samples[-1]
    assert first.switch_count is not None and last.switch_count == first.switch_count + 1  # one evening switch-on
    assert first.energy_kwh is not None and last.energy_kwh is not None
    night_kwh = last.energy_kwh - first.energy_kwh
    assert 0.2 * light.rated_w * 13 / 1000 < night_kwh < light.rated_w * 14 / 1000
    assert first.burn_hours is not None and last.burn_hours is not None
    assert 10 < last.burn_hours - first.burn_hours < 15
    for sample in samples:
        assert 186 <= sample.voltage_v <= 234  # 217-233 V, or a brief sag
        assert sample.leakage_ma is not None and 0.05 <= sample.leakage_ma <= 1.1
        if sample.relay:
            assert sample.pf is not None and (0.92 <= sample.pf <= 1.0 if sample.dim_pct == 100 else 0.85 <= sample.pf < 0.95)
            assert sample.current_a == pytest.approx(sample.power_w / (sample.voltage_v * sample.pf), abs=0.002)
        else:
            assert sample.power_w == pytest.approx(0.3, abs=0.06)


def test_a_lamp_failure_keeps_the_relay_closed_and_the_supply_present_but_draws_no_power() -> None:
    light = build_models(SITE, start=local(26, 20), device_ids=["SL-07"])["SL-07"]
    assert isinstance(light, StreetlightModel)
    healthy = light.telemetry(local(26, 20))
    assert healthy.power_w > 0.9 * light.rated_w
    light.set_fault(Fault.LAMP_FAILURE, True, local(26, 20, 1))
    for minute in range(2, 8):
        now = local(26, 20, minute)
        sample = light.telemetry(now)
        assert sample.relay is True
        assert sample.voltage_v >= 50
        assert sample.power_w < 0.1 * light.expected_power_w(now)
        assert sample.current_a is not None and sample.current_a < 0.01
    light.set_fault(Fault.LAMP_FAILURE, False, local(26, 20, 10))
    assert light.telemetry(local(26, 20, 11)).power_w > 0.9 * light.rated_w


def test_a_scheduled_lamp_failure_starts_and_ends_on_time() -> None:
    light = build_models(SITE, start=local(26, 19), device_ids=["SL-12"])["SL-12"]
    assert isinstance(light, StreetlightModel)
    injection = Injection("SL-12", Fault.LAMP_FAILURE, at=local(26, 21), duration=timedelta(minutes=30))
    schedule = FaultSchedule([injection])
    powers: dict[datetime, float] = {}
    moment = local(26, 20)
    while moment <= local(26, 22):
        for transition in schedule.due(moment):
            light.set_fault(transition.injection.fault, transition.starting, transition.at)
        powers[moment] = light.telemetry(moment).power_w
        moment += timedelta(minutes=5)
    assert len(schedule) == 0
    failed = [t for t, p in powers.items() if p < 1.0]
    assert failed == [local(26, 21, m) for m in range(0, 30, 5)]


def test_seq_goes_up_by_one_per_message_and_restarts_after_a_reboot() -> None:
    models = build_models(SITE, start=NOON)
    for model in models.values():
        seqs = [t.seq for i in range(5) for t in model.messages(NOON + timedelta(seconds=30 * i))]
        assert seqs == list(range(len(seqs)))
        boot = model.boot
        model.reboot()
        assert model.boot == boot + 1
        assert model.telemetry(NOON + timedelta(minutes=5)).seq == 0


def run_for(models: Mapping[str, AnyModel], hours: float, step_s: float = 60) -> list[bytes]:
    out: list[bytes] = []
    for i in range(int(hours * 3600 / step_s)):
        for model in models.values():
            out.extend(t.to_json() for t in model.messages(NOON + timedelta(seconds=step_s * i)))
    return out


def test_the_same_seed_reproduces_a_run_and_another_seed_does_not() -> None:
    some = ["SL-01", "SL-20", "EL-1A", "EL-6A", "CP-01", "CP-17"]
    first = run_for(build_models(SITE, start=NOON, seed=7, device_ids=some), hours=8)
    again = run_for(build_models(SITE, start=NOON, seed=7, device_ids=some), hours=8)
    other = run_for(build_models(SITE, start=NOON, seed=8, device_ids=some), hours=8)
    assert first == again
    assert first != other
    assert sum(a != b for a, b in zip(first, other, strict=False)) > len(first) // 2


def test_elevators_stay_within_their_landings_and_move_safely() -> None:
    models = build_models(SITE, start=local(26, 6), seed=5)
    for model in models.values():
        if not isinstance(model, ElevatorModel):
            continue
        building = SITE.buildings[model.device.building or ""]
        floors, moves = set(), 0
        previous_trips = None
        for i in range(24 * 360):  # every 10 s for a day
            sample = model.telemetry(local(26, 6) + timedelta(seconds=10 * i))
            assert isinstance(sample, ElevatorTelemetry)
            assert building.lowest_floor <= sample.floor <= building.highest_floor
            assert sample.floor != 0  # -1 is the car park, 1 the ground floor
            assert sample.speed_mps is not None and sample.speed_mps <= building.rated_speed_mps * 1.05
            if sample.moving:
                moves += 1
                assert sample.door == "closed"
                assert sample.direction in ("up", "down")
            else:
                assert sample.door_zone is True
                assert sample.direction == "none"
                assert sample.speed_mps == 0
            assert (sample.mode, sample.mains, sample.safety_circuit) == ("normal", True, True)
            assert sample.trips is not None and (previous_trips is None or sample.trips >= previous_trips)
            previous_trips = sample.trips
            floors.add(sample.floor)
        assert moves > 50, model.device_id
        assert len(floors) > 5, model.device_id


def test_chargers_run_sessions_and_their_meters_never_go_back() -> None:
    models = build_models(SITE, start=NOON, seed=11)
    statuses: set[str] = set()
    for model in models.values():
        if not isinstance(model, ChargerModel):
            continue
        last = 0.0
        for i in range(48 * 60):  # every 30 s for a day
            sample = model.telemetry(NOON + timedelta(seconds=30 * i))
            assert isinstance(sample, ChargerTelemetry)
            assert sample.energy_kwh is not None and sample.energy_kwh >= last
            last = sample.energy_kwh
            statuses.add(sample.status)
            # noise: a car's EV handshake error while Preparing, at most once a day per pile
            assert sample.error_code == "NoError" or (sample.status, sample.error_code) == ("Preparing", "EVCommunicationError")
            assert sample.temp_c is not None and 20 <= sample.temp_c <= 49
            if sample.status == "Charging":  # tapering near full, never below a quarter of the car's power
                assert sample.power_kw is not None and 0.17 * model.rated_kw <= sample.power_kw <= model.rated_kw * 1.01
                assert sample.current_a is not None and sample.current_a > 0.5
                assert sample.voltage_v is not None
                assert sample.current_a == pytest.approx(sample.power_kw * 1000 / sample.voltage_v, rel=0.01)
                if not model.dc:
                    assert 220 <= sample.voltage_v <= 236
            else:
                assert sample.power_kw == 0
            if sample.status in ("Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing"):
                assert sample.session_id is not None
                assert re.fullmatch(rf"S-\d{{8}}-{model.device_id}-\d{{4}}", sample.session_id)
            else:
                assert sample.session_id is None
    assert {"Available", "Preparing", "Charging", "Finishing"} <= statuses


def test_the_sky_follows_the_seasons_and_the_site_offsets() -> None:
    sky = Sky(26.1, 119.3, "Asia/Shanghai")
    assert sky.lights_on(datetime(2026, 6, 21, 18, 40, tzinfo=TZ)) is False  # a June evening is still light
    assert sky.lights_on(datetime(2026, 12, 21, 18, 0, tzinfo=TZ)) is True
    late = Sky(26.1, 119.3, "Asia/Shanghai", on_offset_min=60)
    assert late.lights_on(local(26, 17, 30)) is False and sky.lights_on(local(26, 17, 30)) is True
    polar = Sky(78.2, 15.6, "Arctic/Longyearbyen")  # polar night and midnight sun: no sunrise at all
    assert polar.lights_on(datetime(2026, 12, 21, 12, 0, tzinfo=ZoneInfo("Arctic/Longyearbyen"))) is True
    assert polar.lights_on(datetime(2026, 6, 21, 0, 0, tzinfo=ZoneInfo("Arctic/Longyearbyen"))) is False


def test_status_is_a_birth_message_with_boot_and_interval() -> None:
    model = build_models(SITE, start=NOON, boot=17, device_ids=["CP-17"])["CP-17"]
    status = model.status(NOON, 30)
    assert (status.online, status.boot, status.interval_s, status.model) == (True, 17, 30, "DC60-OCPP16")
    assert model.status(NOON, online=False).to_json().startswith(b'{"online":false')


# ---------------------------------------------------------------- injections


def test_injection_grammar() -> None:
    start = local(26, 20)
    assert parse_injection("lamp_failure:SL-07", start=start) == Injection("SL-07", Fault.LAMP_FAILURE, start)
    offline = parse_injection("offline:SL-12@+60s/10m", start=start)
    assert offline == Injection("SL-12", Fault.OFFLINE, start + timedelta(seconds=60), timedelta(minutes=10))
    hard = parse_injection("offline_hard:wanmei:EL-2A@90/2h", start=start)
    assert (hard.hard, hard.site, hard.at, hard.duration) == (True, "wanmei", start + timedelta(seconds=90), timedelta(hours=2))
    assert hard.active_at(start + timedelta(hours=1)) and not hard.active_at(start + timedelta(hours=3))


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("lamp_failure", "expected FAULT:"),
        ("melt:SL-07", "unknown fault 'melt'"),
        ("offline:SL-07@+soon", "not a duration"),
        ("offline:SL-07/0s", "positive"),
        ("offline:SL 07", "expected FAULT:"),
    ],
)
def test_bad_injections_are_refused_with_a_reason(spec: str, problem: str) -> None:
    with pytest.raises(InjectionError, match=problem):
        parse_injection(spec, start=NOON)


def test_injections_must_target_a_suitable_simulated_device() -> None:
    assert resolve(parse_injection("lamp_failure:SL-07", start=NOON), [SITE]) == (SITE, SITE.devices["SL-07"])
    with pytest.raises(InjectionError, match="no device 'SL-99'"):
        resolve(parse_injection("lamp_failure:SL-99", start=NOON), [SITE])
    with pytest.raises(InjectionError, match="EL-1A is an elevator"):
        resolve(parse_injection("lamp_failure:EL-1A", start=NOON), [SITE])
    with pytest.raises(InjectionError, match="not simulated"):
        resolve(parse_injection("offline:SL-07", start=NOON), [SITE], simulated=[("wanmei", "SL-01")])
    with pytest.raises(InjectionError, match="site 'other'"):
        resolve(parse_injection("offline:other:SL-07", start=NOON), [SITE])


def test_the_schedule_hands_out_starts_and_ends_in_time_order() -> None:
    a = Injection("SL-01", Fault.OFFLINE, local(26, 20), timedelta(minutes=10))
    b = Injection("SL-02", Fault.LAMP_FAILURE, local(26, 20, 5))
    schedule = FaultSchedule([b, a])
    assert schedule.next_at() == local(26, 20)
    assert schedule.due(local(26, 19)) == []
    out = schedule.due(local(26, 21))
    assert [(t.injection.device_id, t.starting, t.at) for t in out] == [
        ("SL-01", True, local(26, 20)), ("SL-02", True, local(26, 20, 5)), ("SL-01", False, local(26, 20, 10)),
    ]
    assert schedule.next_at() is None


def test_only_streetlights_can_show_a_lamp_failure() -> None:
    model = build_models(SITE, start=NOON, device_ids=["EL-1A"])["EL-1A"]
    with pytest.raises(ValueError, match="cannot show lamp_failure"):
        model.set_fault(Fault.LAMP_FAILURE, True, NOON)


def test_streetlight_payloads_fit_the_contract_models() -> None:
    light = build_models(SITE, start=local(26, 21), device_ids=["SL-01"])["SL-01"]
    sample = light.telemetry(local(26, 21))
    assert isinstance(sample, StreetlightTelemetry)
    assert sample.extras() == {}  # no field outside the contract


# ---------------------------------------------------------------- physics (issue 4)


def test_switched_circuit_lights_are_unpowered_by_day_and_always_powered_ones_stand_by() -> None:
    models = build_models(SITE, start=NOON, seed=9)
    for light in lights(models):
        switched = SITE.circuits[light.circuit].switched
        assert light.powered(local(26, 12)) is not switched
        if not switched:
            sample = light.telemetry(local(26, 12, 30))
            assert (sample.relay, sample.dim_pct) == (False, 0)
            assert 0.2 <= sample.power_w <= 0.4 and 198 <= sample.voltage_v <= 235
        assert light.powered(local(26, 21)) is True
        assert light.powered(local(27, 12)) is not switched


def test_counters_only_go_up_over_two_days() -> None:
    models = build_models(SITE, start=NOON, seed=10, device_ids=["SL-01", "SL-15", "SL-40"])
    for light in lights(models):
        last = (light.energy_kwh, light.burn_hours, light.switch_count)
        for i in range(1, 2 * 24 * 6):
            light.advance(NOON + timedelta(minutes=10 * i))
            now = (light.energy_kwh, light.burn_hours, light.switch_count)
            assert all(b >= a for a, b in zip(last, now, strict=True))
            last = now
        assert light.switch_count == int(light.switch_count)


def test_a_light_ramps_up_softly_after_switch_on_and_dims_at_23() -> None:
    sky = Sky.for_site(SITE)
    sunset = sky.sun_times(local(26, 12).date())[1]  # type: ignore[index]
    light = build_models(SITE, start=local(26, 16), device_ids=["SL-01"])["SL-01"]
    assert isinstance(light, StreetlightModel)
    light.start_delay_s = 0.5
    on = light.telemetry(sunset + timedelta(seconds=2))
    assert on.relay is True and 0 < on.power_w < 0.6 * light.rated_w  # still ramping
    assert light.telemetry(sunset + timedelta(seconds=30)).power_w == pytest.approx(light.rated_w, rel=0.02)
    assert light.telemetry(local(26, 22, 59)).dim_pct == 100
    assert light.telemetry(local(26, 23, 1)).dim_pct == 50


def test_the_dimming_profile_is_configurable() -> None:
    from datetime import time

    from firmware_sim.models import DimmingProfile

    profile = DimmingProfile(full_pct=90, night_from=time(1, 0), night_pct=30)
    assert profile.pct(local(26, 23)) == 90 and profile.pct(local(27, 0, 59)) == 90 and profile.pct(local(27, 2)) == 30
    light = StreetlightModel(SITE, SITE.devices["SL-02"], start=local(26, 21), dimming=profile)
    assert light.telemetry(local(26, 21)).dim_pct == 90


def test_charger_statuses_change_only_along_ocpp_edges_and_sessions_are_unique() -> None:
    from firmware_sim.models import OCPP_EDGES

    models = build_models(SITE, start=NOON, seed=12)
    sessions: set[str] = set()
    for model in models.values():
        if not isinstance(model, ChargerModel):
            continue
        seen: set[str] = set()
        for i in range(24 * 120):  # every 30 s for a day
            for sample in model.messages(NOON + timedelta(seconds=30 * i)):
                if sample.session_id:
                    seen.add(sample.session_id)
        edges = {(a, b) for _, _, a, b in model.status_log}
        assert edges <= OCPP_EDGES, edges - OCPP_EDGES
        assert ("Available", "Preparing") in edges and ("Preparing", "Charging") in edges
        assert not seen & sessions
        sessions |= seen
    assert len(sessions) > 30


def test_elevators_are_busier_at_rush_hour() -> None:
    model = build_models(SITE, start=local(26, 3), seed=13, device_ids=["EL-3A"])["EL-3A"]
    assert isinstance(model, ElevatorModel)
    model.advance(local(26, 7))
    at_seven = model.trips
    model.advance(local(26, 9))
    rush = model.trips - at_seven
    model.advance(local(26, 13))
    midday = (model.trips - at_seven - rush) / 2
    assert rush > 1.5 * midday


def test_every_model_has_the_runtime_hooks() -> None:
    for model in build_models(SITE, start=NOON).values():
        assert model.events(NOON) == []
        assert isinstance(model.powered(NOON), bool)
