"""Correlation through the Wanmei site's topology (pure: fault decisions in, decisions out)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from linli.catalog import Severity
from linli.engine.correlation import GROUP_WINDOW, Correlator
from linli.engine.decisions import ChildAttached, Decision, FaultCleared, FaultRaised, MemberChanged
from linli.site import Site, SiteFile, build_site, builtin_site_path, load_site
from linli.tickets import Subject

T0 = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # 21:00 in Fujian


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(builtin_site_path())


def lights(site: Site, circuit: str) -> list[str]:
    return sorted(d.id for d in site.devices.values() if d.circuit == circuit)


def elevators(site: Site, building: str) -> list[str]:
    return sorted(d.id for d in site.devices.values() if d.kind == "elevator" and d.building == building)


def loss(site: Site, device_id: str, at: datetime, fault: str = "supply_voltage_low") -> FaultRaised:
    kind = site.devices[device_id].kind
    return FaultRaised(site.id, Subject("device", device_id), fault, Severity.P2, kind, (device_id,), at, "no supply")


def raised(decisions: list[Decision]) -> list[FaultRaised]:
    return [d for d in decisions if isinstance(d, FaultRaised)]


def test_eight_lights_of_a_circuit_staggered_over_90_s_make_one_circuit_outage(site: Site) -> None:
    correlator = Correlator(site)
    out: list[Decision] = []
    c5 = lights(site, "C5")
    assert len(c5) == 8
    for i, device_id in enumerate(c5):
        at = T0 + timedelta(seconds=i * 90 / 7)
        out += correlator.child_raised(loss(site, device_id, at), "supply_loss")
        out += correlator.tick(at)
    out += correlator.tick(T0 + timedelta(minutes=10))
    parents = raised(out)
    assert [(p.subject, p.fault, p.severity) for p in parents] == [(Subject("circuit", "C5"), "circuit_outage", Severity.P1)]
    members = set(parents[0].device_ids) | {m.device_id for m in out if isinstance(m, MemberChanged) and m.active}
    assert members == set(c5)
    assert not any(isinstance(d, ChildAttached) for d in out)  # no light got a ticket of its own first


def test_a_lone_light_losing_supply_is_dispatched_after_the_grouping_window(site: Site) -> None:
    correlator = Correlator(site)
    device_id = lights(site, "C1")[0]
    assert correlator.child_raised(loss(site, device_id, T0), "supply_loss") == []
    assert correlator.tick(T0 + GROUP_WINDOW - timedelta(seconds=1)) == []
    out = correlator.tick(T0 + GROUP_WINDOW)
    assert [(d.subject.id, d.fault) for d in raised(out)] == [(device_id, "supply_voltage_low")]
    cleared = correlator.child_cleared(device_id, "supply_loss", "supply_voltage_low", T0 + timedelta(minutes=5))
    assert cleared == [FaultCleared(site.id, Subject("device", device_id), "supply_voltage_low", T0 + timedelta(minutes=5))]


def test_a_blip_shorter_than_the_window_opens_nothing(site: Site) -> None:
    correlator = Correlator(site)
    device_id = lights(site, "C1")[0]
    correlator.child_raised(loss(site, device_id, T0), "supply_loss")
    assert correlator.child_cleared(device_id, "supply_loss", "supply_voltage_low", T0 + timedelta(seconds=10)) == []
    assert correlator.tick(T0 + timedelta(minutes=5)) == []


def test_children_dispatched_before_the_parent_are_attached_to_it(site: Site) -> None:
    correlator = Correlator(site)
    first, second, third = lights(site, "C1")[:3]
    correlator.child_raised(loss(site, first, T0), "offline")
    correlator.child_raised(loss(site, second, T0 + timedelta(seconds=5)), "offline")
    out = correlator.tick(T0 + GROUP_WINDOW + timedelta(seconds=5))  # both went out alone (2 of 9 is not enough)
    assert {d.subject.id for d in raised(out)} == {first, second}
    out = correlator.child_raised(loss(site, third, T0 + timedelta(seconds=60)), "offline")
    assert [p.subject for p in raised(out)] == [Subject("circuit", "C1")]
    attached = {d.child.id for d in out if isinstance(d, ChildAttached)}
    assert attached == {first, second}


def test_the_parent_clears_when_its_last_member_is_back(site: Site) -> None:
    correlator = Correlator(site)
    c5 = lights(site, "C5")[:3]
    for device_id in c5:
        correlator.child_raised(loss(site, device_id, T0), "supply_loss")
    assert correlator.parent_of(c5[0]) == (Subject("circuit", "C5"), "circuit_outage")
    later = T0 + timedelta(minutes=20)
    out: list[Decision] = []
    for device_id in c5:
        out += correlator.child_cleared(device_id, "supply_loss", "supply_voltage_low", later)
    assert out[-1] == FaultCleared(site.id, Subject("circuit", "C5"), "circuit_outage", later)
    assert sum(isinstance(d, FaultCleared) for d in out) == 1  # the lights had no tickets of their own
    assert correlator.parent_of(c5[0]) is None


def test_a_whole_cabinet_going_dark_is_one_cabinet_ticket(site: Site) -> None:
    correlator = Correlator(site)
    out: list[Decision] = []
    for device_id in lights(site, "C1") + lights(site, "C2"):  # CAB-1 feeds C1 and C2
        out += correlator.child_raised(loss(site, device_id, T0), "supply_loss")
    parents = raised(out)
    # C1 qualifies first and gets its ticket; once C2 goes too the cabinet's ticket takes both.
    assert parents[-1].subject == Subject("cabinet", "CAB-1")
    assert ChildAttached(site.id, Subject("circuit", "C1"), "circuit_outage", Subject("cabinet", "CAB-1"),
                         "circuit_outage", T0) in out


def test_a_building_losing_mains_on_all_its_elevators_is_one_building_ticket(site: Site) -> None:
    correlator = Correlator(site)
    b5 = elevators(site, "B5")
    assert len(b5) == 2
    out = correlator.child_raised(loss(site, b5[0], T0, "power_loss"), "power_loss")
    assert out == []
    out = correlator.child_raised(loss(site, b5[1], T0 + timedelta(seconds=20)), "power_loss")
    assert [(p.subject, p.fault) for p in raised(out)] == [(Subject("building", "B5"), "building_power_loss")]
    assert correlator.tick(T0 + timedelta(minutes=5)) == []


def test_one_elevator_of_a_building_losing_mains_is_its_own_power_loss(site: Site) -> None:
    correlator = Correlator(site)
    one = elevators(site, "B3")[1]
    correlator.child_raised(loss(site, one, T0, "power_loss"), "power_loss")
    out = correlator.tick(T0 + GROUP_WINDOW)
    assert [(d.subject.id, d.fault) for d in raised(out)] == [(one, "power_loss")]


def with_concentrator(site: Site, circuit: str) -> Site:
    """Wanmei with a concentrator CON-1 reaching the lights of `circuit` (as some county sites have)."""
    data = site.spec.model_dump(mode="json")
    data["concentrators"] = [{"id": "CON-1", "name": "1号集中器", "cabinet": "CAB-1"}]
    for device in data["devices"]:
        if device.get("circuit") == circuit:
            device["concentrator"] = "CON-1"
    return build_site(SiteFile.model_validate(data))


def test_a_concentrator_parent_takes_its_childrens_silence(site: Site) -> None:
    site = with_concentrator(site, "C1")
    children = lights(site, "C1")
    conc = "CON-1"
    correlator = Correlator(site)
    parent = FaultRaised(site.id, Subject("concentrator", conc), "concentrator_offline", Severity.P1, "streetlight",
                         tuple(children), T0, "silent")
    assert correlator.parent_raised(parent) == [parent]
    out = correlator.child_raised(loss(site, children[0], T0 + timedelta(seconds=90), "offline"), "offline")
    assert [type(d) for d in out] == [MemberChanged]
    assert correlator.tick(T0 + timedelta(minutes=10)) == []  # never dispatched on its own
