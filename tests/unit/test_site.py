"""Site files: the shipped Wanmei site, precise errors for wrong files, several sites at once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from linli.catalog import Severity, Team
from linli.site import SiteConfigError, SiteRegistry, builtin_site_path, load_site, parse_duration


def wanmei_document() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(builtin_site_path().read_text(encoding="utf-8"))


def write(tmp_path: Path, document: object, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def test_wanmei_site_matches_the_community() -> None:
    site = load_site(builtin_site_path())
    kinds = [d.kind for d in site.devices.values()]
    assert (kinds.count("streetlight"), kinds.count("elevator"), kinds.count("charger")) == (43, 12, 18)
    assert len(site.circuits) == 5 and len(site.spec.cabinets) == 3 and len(site.compounds) == 4
    lights_per_circuit = {c: sum(1 for d in site.devices.values() if d.circuit == c) for c in site.circuits}
    assert sum(lights_per_circuit.values()) == 43 and min(lights_per_circuit.values()) >= 3
    per_compound: dict[str, int] = {}
    for device in site.devices.values():
        if device.kind == "elevator":
            compound = site.buildings[device.building or ""].compound
            per_compound[compound] = per_compound.get(compound, 0) + 1
    assert per_compound == {"phase1": 3, "phase2": 3, "phase3": 3, "phase4": 3}
    power = sorted(d.rated_power_kw for d in site.devices.values() if d.kind == "charger")
    assert power.count(7) == 16 and power.count(60) == 2
    assert set(site.spec.teams) == set(Team)
    assert all(d.position is not None for d in site.devices.values())


def test_routing_and_service_levels() -> None:
    site = load_site(builtin_site_path())
    assert site.teams_for("lamp_failure") == (Team.PROPERTY,)
    assert site.teams_for("trapped") == (Team.ELEVATOR_CONTRACTOR, Team.PROPERTY)
    assert site.teams_for("offline", "elevator") == (Team.ELEVATOR_CONTRACTOR,)
    assert site.service_level(Severity.P0).ack == timedelta(minutes=5)
    assert site.service_level(Severity.P2).resolve == timedelta(hours=72)


def test_overrides_and_the_24_hour_promise(tmp_path: Path) -> None:
    document = wanmei_document()
    document["sla"]["P3"] = {"ack": "48h", "resolve": "14d"}
    document["sla_by_fault"] = {"lamp_failure": {"resolve": "12h"}}
    document["routing"]["lamp_failure"] = ["grid", "property"]
    site = load_site(write(tmp_path, document))
    assert site.service_level(Severity.P3).ack == timedelta(hours=24)  # never more than 24 h to respond
    assert site.service_level(Severity.P3).resolve == timedelta(days=14)
    assert site.service_level(Severity.P2, "lamp_failure").resolve == timedelta(hours=12)
    assert site.teams_for("lamp_failure") == (Team.GRID, Team.PROPERTY)


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d["devices"][3].update(circuit="C9"), "devices[3].circuit: unknown circuit 'C9'"),
    (lambda d: d["devices"][0].update(kind="lamp"), "devices[0].kind"),
    (lambda d: d["devices"][0].pop("rated_power_w"), "devices[0]: a streetlight needs rated_power_w"),
    (lambda d: d["devices"][1].update(id="SL-01"), "devices[1].id: duplicate id 'SL-01'"),
    (lambda d: d["devices"][2].update(id="SL 03"), "devices[2].id"),
    (lambda d: d["buildings"][0].update(highest_floor=-5), "buildings[0]: highest_floor must be above lowest_floor"),
    (lambda d: d["buildings"][0].update(rated_speed_mps="fast"), "buildings[0].rated_speed_mps"),
    (lambda d: d["site"].update(timezone="Mars/Olympus"), "site.timezone: unknown time zone"),
    (lambda d: d["site"].update(id="Wanmei!"), "site.id"),
    (lambda d: d.update(colour="blue"), "colour: Extra inputs are not permitted"),
    (lambda d: d["routing"].update(lamp_failure=["plumbers"]), "routing.lamp_failure"),
    (lambda d: d["routing"].update(teleport=["property"]), "routing.teleport: unknown fault code"),
    (lambda d: d["sla"].update(P2={"ack": "soon"}), "sla.P2.ack"),
    (lambda d: d["devices"][50].update(circuit="C1"), "devices[50]: an elevator has no circuit"),
])
def test_a_wrong_file_names_the_file_the_field_and_the_problem(tmp_path: Path, mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    document = wanmei_document()
    mutate(document)
    path = write(tmp_path, document)
    with pytest.raises(SiteConfigError) as caught:
        load_site(path)
    message = str(caught.value)
    assert str(path) in message
    assert expected in message, message


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(SiteConfigError, match="cannot read"):
        load_site(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(SiteConfigError, match=r"list\.yaml: .*mapping"):
        load_site(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("site: [unclosed\n", encoding="utf-8")
    with pytest.raises(SiteConfigError, match=r"broken\.yaml: not valid YAML"):
        load_site(tmp_path / "broken.yaml")


def test_several_sites_share_device_ids_but_not_site_ids(tmp_path: Path) -> None:
    other = wanmei_document()
    other["site"]["id"] = "site-b"
    registry = SiteRegistry.load([builtin_site_path(), write(tmp_path, other, "b.yaml")])
    assert registry.ids() == ["wanmei", "site-b"]
    assert registry.device("wanmei", "SL-07") is not None and registry.device("site-b", "SL-07") is not None
    with pytest.raises(SiteConfigError, match="already defined"):
        SiteRegistry.load([builtin_site_path(), write(tmp_path, wanmei_document(), "dup.yaml")])


def test_durations() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("5m") == timedelta(minutes=5)
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration(30) == timedelta(seconds=30)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
