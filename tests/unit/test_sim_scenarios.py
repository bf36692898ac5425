"""Scenarios: the built-in ones load, expand against the Wanmei site, and all-faults covers the catalog."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from firmware_sim.faults import Fault, Injection, InjectionError, expand, parse_injection
from firmware_sim.scenarios import ScenarioError, builtin_scenarios, load_scenario
from linli.catalog import FAULTS
from linli.site import builtin_site_path, load_site

SITE = load_site(builtin_site_path())
TZ = ZoneInfo("Asia/Shanghai")
NOON = datetime(2026, 11, 26, 12, 0, tzinfo=TZ)


def test_the_built_in_scenarios_load_and_expand_against_the_site() -> None:
    assert builtin_scenarios() == ["all-faults", "demo", "quiet", "storm"]
    for name in builtin_scenarios():
        scenario = load_scenario(name)
        assert scenario.name == name and scenario.description
        start = scenario.start_at(NOON)
        injections = scenario.injections(start, [SITE])
        assert all(start <= i.at and i.until is not None and i.until <= start + scenario.duration for i in injections)
        assert all(not i.is_group and i.device_id in SITE.devices for i in injections)
    assert load_scenario("quiet").injections(NOON, [SITE]) == []


def test_a_scenario_starts_at_its_local_time() -> None:
    demo = load_scenario("demo")
    start = demo.start_at(datetime(2026, 11, 26, 4, 0, tzinfo=UTC), "Asia/Shanghai")  # noon in Fujian
    assert start == datetime(2026, 11, 25, 19, 30, tzinfo=TZ)  # the latest evening, never a future one
    assert demo.start_at(datetime(2026, 11, 26, 12, 0, tzinfo=UTC), "Asia/Shanghai") == datetime(2026, 11, 26, 19, 30, tzinfo=TZ)
    first = min(demo.injections(start, [SITE]), key=lambda i: i.at)
    assert first.at - start < timedelta(minutes=1)
    assert {i.fault for i in demo.injections(start, [SITE]) if i.at - start <= timedelta(minutes=1)} == {
        Fault.LAMP_FAILURE, Fault.GROUND_FAILURE, Fault.DOOR_FAULT, Fault.OFFLINE,
    }


def test_all_faults_covers_every_catalog_code_without_overlap_per_device() -> None:
    scenario = load_scenario("all-faults")
    codes = {entry.fault.removesuffix("_hard") for entry in scenario.spec.injections}
    assert codes == set(FAULTS) - {"intermittent"}
    start = scenario.start_at(NOON)
    assert scenario.overlaps(start, [SITE]) == []
    injected = {i.fault.value for i in scenario.injections(start, [SITE])}
    assert injected == set(FAULTS) - {"intermittent", "concentrator_offline"}  # Wanmei has no concentrator


def test_storm_traps_a_passenger_during_its_building_power_loss() -> None:
    scenario = load_scenario("storm")
    injections = scenario.injections(scenario.start_at(NOON), [SITE])
    el3a = {i.fault for i in injections if i.device_id == "EL-3A"}
    assert el3a == {Fault.BUILDING_POWER_LOSS, Fault.TRAPPED}
    assert {i.device_id for i in injections if i.fault is Fault.CIRCUIT_OUTAGE} == {f"SL-{n}" for n in range(19, 28)}
    assert {i.group for i in injections if i.fault is Fault.CIRCUIT_OUTAGE} == {"circuit:C3"}


HEAD = "name: x\ndescription: d\nduration: 1h\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (HEAD + "injections: []\nextra: 1\n", "extra: Extra inputs are not permitted"),
        ("name: x\ndescription: d\nduration: soon\n", "duration: 'soon' is not a duration"),
        ("name: x\ndescription: d\nduration: 1h\nstart: '25:00'\n", "start: '25:00' is not a local time"),
        (HEAD + "injections: [{fault: melt, target: SL-01}]\n", "injections[0].fault: unknown fault 'melt'"),
        (HEAD + "injections: [{fault: leakage, target: 'a b'}]\n", "injections[0].target:"),
        (HEAD + "injections: [{fault: leakage, target: SL-01, at: soon}]\n", "injections[0].at:"),
        (HEAD + "injections: [{fault: leakage, target: SL-01, colour: red}]\n", "injections[0].colour"),
        ("- a list\n", "(document)"),
    ],
)
def test_bad_scenario_files_name_the_file_and_the_field(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(caught.value).startswith(str(path)) and problem in str(caught.value)


def test_unsuitable_targets_are_refused_unless_optional(tmp_path: Path) -> None:
    bad = write(tmp_path, HEAD + "injections:\n  - {fault: leakage, target: EL-1A, at: +1m}\n")
    with pytest.raises(ScenarioError, match=r"mine.yaml: injections\[0\]: .*leakage applies to a streetlight only"):
        load_scenario(bad).injections(NOON, [SITE])
    entry = "{fault: concentrator_offline, target: 'concentrator:CON-9', optional: true}"
    text = HEAD + f"injections:\n  - {entry}\n"
    assert load_scenario(write(tmp_path, text)).injections(NOON, [SITE]) == []
    with pytest.raises(ScenarioError, match=r"cannot read the scenario.*built-in scenarios: all-faults, demo"):
        load_scenario("no-such-scenario")


def test_an_injection_without_duration_lasts_until_the_scenario_ends(tmp_path: Path) -> None:
    text = "name: x\ndescription: d\nduration: 1h30m\ninjections:\n  - {fault: lamp_failure, target: SL-01, at: +30m}\n"
    path = write(tmp_path, text)
    (injection,) = load_scenario(path).injections(NOON, [SITE])
    assert injection == Injection("SL-01", Fault.LAMP_FAILURE, NOON + timedelta(minutes=30), timedelta(hours=1))


def test_the_command_line_grammar_takes_group_targets_and_keeps_the_old_forms() -> None:
    assert parse_injection("lamp_failure:SL-07", start=NOON) == Injection("SL-07", Fault.LAMP_FAILURE, NOON)
    site_form = parse_injection("offline_hard:wanmei:EL-2A@+2m/10m", start=NOON)
    assert (site_form.site, site_form.device_id, site_form.hard) == ("wanmei", "EL-2A", True)
    group = parse_injection("circuit_outage:circuit:C2@+1m/20m", start=NOON)
    assert group.is_group and group.group == "circuit:C2" and group.at == NOON + timedelta(minutes=1)
    assert [i.device_id for i in expand(group, [SITE])] == [f"SL-{n}" for n in range(10, 19)]
    with_site = parse_injection("building_power_loss:wanmei:building:B1", start=NOON)
    assert [i.device_id for i in expand(with_site, [SITE])] == ["EL-1A", "EL-1B"]
    voltage = parse_injection("supply_voltage_low:circuit:C4/10m", start=NOON)  # a device fault on a whole circuit
    assert len(expand(voltage, [SITE])) == 8
    with pytest.raises(InjectionError, match="circuit_outage needs a circuit:ID target"):
        parse_injection("circuit_outage:SL-01", start=NOON)
    with pytest.raises(InjectionError, match="no circuit 'C9'"):
        expand(parse_injection("leakage:circuit:C9", start=NOON), [SITE])
    with pytest.raises(InjectionError, match="expand it to its devices first"):
        from firmware_sim.faults import resolve

        resolve(group, [SITE])
