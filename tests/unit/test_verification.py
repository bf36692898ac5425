"""The soak that verifies a repair (pure): healthy telemetry through it, silence never verifies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from linli.astro import lights_scheduled_on
from linli.engine.verification import Resolution, SoakOutcome, Verifier, soak_window
from linli.site import Site, builtin_site_path, load_site
from linli.tickets import Subject

RESOLVED = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)  # 11:00 in Fujian: daytime


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(builtin_site_path())


def resolution(fault: str, device_id: str, kind: str, ticket_id: int = 1) -> Resolution:
    return Resolution(ticket_id, "wanmei", Subject("device", device_id), fault, kind, (device_id,), RESOLVED)


def test_a_streetlight_soaks_through_its_next_full_night(site: Site) -> None:
    starts, ends = soak_window(site, resolution("lamp_failure", "SL-02", "streetlight"), RESOLVED)
    assert ends is not None and starts > RESOLVED and ends - starts > timedelta(hours=10)
    assert lights_scheduled_on(site, starts + timedelta(minutes=1))
    assert not lights_scheduled_on(site, starts - timedelta(minutes=1))
    assert not lights_scheduled_on(site, ends + timedelta(minutes=1))
    day_start, day_end = soak_window(site, resolution("day_burning", "SL-01", "streetlight"), RESOLVED)
    assert day_end is not None and day_start >= RESOLVED and not lights_scheduled_on(site, day_start + timedelta(minutes=1))


def night_of_samples(verifier: Verifier, site: Site, healthy: bool | None, *, every_s: int = 60,
                     skip: tuple[float, float] | None = None) -> list[tuple[object, SoakOutcome]]:
    starts, ends = soak_window(site, resolution("lamp_failure", "SL-02", "streetlight"), RESOLVED)
    assert ends is not None
    ended = []
    at = starts
    while at <= ends:
        share = (at - starts) / (ends - starts)
        if skip is None or not skip[0] <= share < skip[1]:
            ended += verifier.sample("wanmei", "SL-02", at, 60, {"lamp_failure": healthy})
        at += timedelta(seconds=every_s)
    ended += verifier.tick({"wanmei": site}, ends + timedelta(seconds=1))
    return ended  # type: ignore[return-value]


def test_a_healthy_night_verifies(site: Site) -> None:
    verifier = Verifier()
    verifier.sync({"wanmei": site}, [resolution("lamp_failure", "SL-02", "streetlight")], RESOLVED)
    ended = night_of_samples(verifier, site, True)
    assert [outcome for _soak, outcome in ended] == [SoakOutcome.VERIFIED]
    assert verifier.watching() == set()


def test_silence_never_verifies_and_the_soak_starts_again(site: Site) -> None:
    verifier = Verifier()
    verifier.sync({"wanmei": site}, [resolution("lamp_failure", "SL-02", "streetlight")], RESOLVED)
    ended = night_of_samples(verifier, site, True, skip=(0.3, 0.45))  # 15% of the night without a sample
    assert [outcome for _soak, outcome in ended] == [SoakOutcome.INCONCLUSIVE]
    (again,) = verifier.soaks()
    assert again.attempt == 2 and again.starts > RESOLVED + timedelta(hours=20)


def test_samples_without_evidence_do_not_count_as_healthy(site: Site) -> None:
    verifier = Verifier()
    verifier.sync({"wanmei": site}, [resolution("lamp_failure", "SL-02", "streetlight")], RESOLVED)
    ended = night_of_samples(verifier, site, None)
    assert [outcome for _soak, outcome in ended] == [SoakOutcome.INCONCLUSIVE]


def test_the_fault_coming_back_during_the_soak_is_a_relapse(site: Site) -> None:
    verifier = Verifier()
    verifier.sync({"wanmei": site}, [resolution("lamp_failure", "SL-02", "streetlight")], RESOLVED)
    starts, _ends = soak_window(site, resolution("lamp_failure", "SL-02", "streetlight"), RESOLVED)
    assert verifier.sample("wanmei", "SL-02", starts + timedelta(minutes=5), 60, {"lamp_failure": True}) == []
    assert verifier.sample("wanmei", "SL-02", starts + timedelta(minutes=6), 60, {"lamp_failure": False}) == []
    ended = verifier.sample("wanmei", "SL-02", starts + timedelta(minutes=7), 60, {"lamp_failure": False})
    assert [outcome for _soak, outcome in ended] == [SoakOutcome.RELAPSED]


def test_an_elevator_verifies_after_20_trips(site: Site) -> None:
    verifier = Verifier()
    verifier.sync({"wanmei": site}, [resolution("door_fault", "EL-8A", "elevator")], RESOLVED)
    ended = []
    for i in range(40):
        at = RESOLVED + timedelta(seconds=10 * (i + 1))
        ended += verifier.sample("wanmei", "EL-8A", at, 10, {"door_fault": True}, trips=1000 + i)
        if ended:
            break
    assert [outcome for _soak, outcome in ended] == [SoakOutcome.VERIFIED]
    assert i == 20  # the first sample sets the counter's base; 20 trips later it is verified


def test_a_charger_verifies_after_two_sessions(site: Site) -> None:
    verifier = Verifier()
    verifier.sync({"wanmei": site}, [resolution("faulted", "CP-07", "charger")], RESOLVED)
    for i, session in enumerate(["S-1"] * 30 + ["S-2"] * 30):
        verifier.sample("wanmei", "CP-07", RESOLVED + timedelta(seconds=30 * (i + 1)), 30, {"faulted": True},
                        session=session)
    ended = verifier.tick({"wanmei": site}, RESOLVED + timedelta(minutes=31))
    assert [outcome for _soak, outcome in ended] == [SoakOutcome.VERIFIED]


def test_a_ticket_no_longer_resolved_is_forgotten(site: Site) -> None:
    verifier = Verifier()
    verifier.sync({"wanmei": site}, [resolution("lamp_failure", "SL-02", "streetlight")], RESOLVED)
    verifier.sync({"wanmei": site}, [], RESOLVED + timedelta(minutes=1))
    assert verifier.watching() == set()
