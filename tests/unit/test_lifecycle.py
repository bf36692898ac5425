"""The pure parts of the device lifecycle: lamp age, energy baseline, site-file edits; and the
engine and site source that apply an edited file without a restart."""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from linli.clock import to_ms
from linli.contract import Message, parse
from linli.detectors.streetlight import StreetlightDetectors
from linli.engine import Engine, FaultRaised
from linli.engine.decisions import MemberChanged
from linli.ops.lifecycle import (
    CONTROLLER_REPLACED,
    LAMP_REPLACED,
    LifecycleError,
    SiteDocument,
    _checked,
    _entry_from,
    _parser,
    energy_baseline_start,
    lamp_age_hours,
    read_document,
    write_atomically,
)
from linli.site import SiteRegistry, builtin_site_path, load_site
from linli.site_source import SiteSource

T0 = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Event:
    type: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- lamp age and energy baseline


def test_a_lamp_never_replaced_is_as_old_as_the_counter() -> None:
    assert lamp_age_hours([], 51_234.5) == 51_234.5
    assert lamp_age_hours([Event("commissioned", T0), Event(CONTROLLER_REPLACED, T0)], 100) == 100


def test_the_age_counts_from_the_latest_lamp_replacement() -> None:
    events = [
        Event(LAMP_REPLACED, T0 + timedelta(days=900), {"burn_hours_offset": 51_000}),
        Event(LAMP_REPLACED, T0, {"burn_hours_offset": 20_000}),  # earlier, listed later
    ]
    assert lamp_age_hours(events, 51_010) == 10
    assert lamp_age_hours(events[1:], 51_010) == 31_010


def test_a_counter_that_restarted_after_the_replacement_is_taken_as_it_is() -> None:
    events = [Event(LAMP_REPLACED, T0, {"burn_hours_offset": 40_000})]
    assert lamp_age_hours(events, 120) == 120  # e.g. a new controller counting from 0


def test_the_energy_baseline_starts_again_after_a_lamp_or_controller_replacement() -> None:
    assert energy_baseline_start([]) is None
    assert energy_baseline_start([Event("commissioned", T0), Event("retired", T0)]) is None
    lamp, controller = T0 + timedelta(days=3), T0 + timedelta(days=10)
    events = [Event(CONTROLLER_REPLACED, controller), Event(LAMP_REPLACED, lamp, {"burn_hours_offset": 5})]
    assert energy_baseline_start(events) == controller
    assert energy_baseline_start(events[1:]) == lamp


# ---------------------------------------------------------------- editing a site file


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    path = tmp_path / "wanmei.yaml"
    path.write_text(builtin_site_path().read_text(encoding="utf-8"), encoding="utf-8")
    return path


def commission_args(*extra: str) -> Any:
    return _parser().parse_args(["commission", "wanmei", "--id", "SL-44", "--kind", "streetlight", "--name", "新44号灯",
                                 *extra])


def test_an_unedited_document_renders_back_to_the_same_file(site_file: Path) -> None:
    assert read_document(site_file).render() == site_file.read_text(encoding="utf-8")


def test_a_commission_entry_holds_what_was_given_as_a_person_writes_it() -> None:
    args = commission_args("--circuit", "C1", "--rated-power-w", "60", "--x", "100", "--y", "200.5")
    assert _entry_from(args) == {"id": "SL-44", "kind": "streetlight", "name": "新44号灯", "circuit": "C1",
                                 "rated_power_w": 60, "position": {"x": 100, "y": 200.5}}
    with pytest.raises(LifecycleError, match="both --x and --y"):
        _entry_from(commission_args("--x", "1"))


def test_an_invalid_edit_is_refused_in_memory_with_the_loaders_words(site_file: Path) -> None:
    document = read_document(site_file)
    document.document["devices"].append(_entry_from(commission_args("--circuit", "C9", "--rated-power-w", "60")))
    with pytest.raises(LifecycleError, match=r"devices\[73\]\.circuit: unknown circuit 'C9'") as caught:
        _checked(document)
    assert "\n" not in str(caught.value)
    document.document["devices"][-1] = _entry_from(commission_args("--circuit", "C1"))
    with pytest.raises(LifecycleError, match="a streetlight needs rated_power_w"):
        _checked(document)
    document.document["devices"][-1]["rated_power_w"] = 60
    assert _checked(document).devices["SL-44"].rated_power_w == 60


def test_a_site_file_is_replaced_at_once_keeping_a_backup_and_its_mode(site_file: Path) -> None:
    os.chmod(site_file, 0o640)
    before = site_file.read_text(encoding="utf-8")
    document = read_document(site_file)
    entry = next(e for e in document.document["devices"] if e["id"] == "SL-07")
    entry["retired"] = True
    backup = write_atomically(site_file, document.render())
    assert backup == site_file.with_name("wanmei.yaml.bak")
    assert backup.read_text(encoding="utf-8") == before
    assert stat.S_IMODE(site_file.stat().st_mode) == 0o640
    text = site_file.read_text(encoding="utf-8")
    assert text.startswith("# 湾美社区 (Wanmei community)")  # the header comments stay
    site = load_site(site_file)
    assert "SL-07" in site.retired and "SL-07" not in site.devices
    assert not [p for p in site_file.parent.iterdir() if p.suffix == ".tmp"]


def test_a_retired_device_stays_in_the_file_but_not_in_service(site_file: Path) -> None:
    document = read_document(site_file)
    next(e for e in document.document["devices"] if e["id"] == "SL-07")["retired"] = True
    site = SiteDocument(document.path, document.header, document.document).checked()
    assert set(site.retired) == {"SL-07"}
    assert "SL-07" not in site.devices and len(site.devices) == 72
    assert [d.id for d in site.spec.devices].count("SL-07") == 1


# ---------------------------------------------------------------- the engine after a reload


def edited(path: Path, change: Any) -> SiteRegistry:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(document)
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return SiteRegistry.load([path])


def telemetry(sites: SiteRegistry, device: str, at: datetime, seq: int, **body: Any) -> Message:
    message = parse(
        f"estate/v1/wanmei/streetlight/{device}/telemetry", json.dumps({"ts": to_ms(at), "seq": seq, **body}).encode(),
        received_ms=to_ms(at), device_kind=lambda s, d: k.kind if (k := sites.device(s, d)) else None,
        known_site=sites.__contains__,
    )
    assert isinstance(message, Message), message
    return message


def test_a_reload_adds_drops_and_updates_devices_and_keeps_the_rest(site_file: Path) -> None:
    sites = SiteRegistry.load([site_file])
    engine = Engine(sites, T0)
    engine.observe(telemetry(sites, "SL-07", T0, 1, relay=True, power_w=40, voltage_v=229), T0)
    engine.observe(telemetry(sites, "SL-07", T0, 2, relay=True, power_w=0, voltage_v=229), T0)
    sl07 = engine.live("wanmei", "SL-07")
    assert sl07 is not None and isinstance(sl07.detectors, StreetlightDetectors)
    pending = sl07.detectors.snapshot()["timers"]
    assert pending  # the dark sample started the lamp_failure timer

    def change(document: dict[str, Any]) -> None:
        devices = document["devices"]
        devices.append({"id": "SL-44", "kind": "streetlight", "name": "新44号灯", "circuit": "C1", "rated_power_w": 60})
        for entry in devices:
            if entry["id"] == "SL-07":
                entry["rated_power_w"] = 80
                entry["interval_s"] = 60
            if entry["id"] == "SL-08":
                entry["retired"] = True
        document["devices"] = [e for e in devices if e["id"] != "SL-09"]

    later = T0 + timedelta(hours=1)
    engine.reload_sites(edited(site_file, change), later)
    assert engine.live("wanmei", "SL-07") is sl07  # live and detector state kept
    assert isinstance(sl07.detectors, StreetlightDetectors)
    assert sl07.detectors.rated_w == 80 and sl07.detectors.snapshot()["timers"] == pending and sl07.interval_s == 60
    assert sl07.last["power_w"] == 0 and sl07.last_seq == 2
    assert engine.live("wanmei", "SL-08") is None and engine.live("wanmei", "SL-09") is None
    new = engine.live("wanmei", "SL-44")
    assert new is not None and isinstance(new.detectors, StreetlightDetectors)
    assert new.detectors.rated_w == 60 and new.online is None
    # The new light's silence counts from the reload, not from the gateway's start.
    def silent(at: datetime) -> set[str]:
        decisions = engine.tick(at)
        return {m for d in decisions if isinstance(d, FaultRaised) for m in d.device_ids} | {
            d.device_id for d in decisions if isinstance(d, MemberChanged)}

    assert "SL-44" not in silent(later + timedelta(seconds=89))
    assert "SL-44" in silent(later + timedelta(seconds=90)) | silent(later + timedelta(seconds=120))
    assert "SL-08" not in silent(later + timedelta(days=1))


def test_an_interval_the_device_reported_itself_outlives_a_reload(site_file: Path) -> None:
    sites = SiteRegistry.load([site_file])
    engine = Engine(sites, T0)
    status = parse("estate/v1/wanmei/streetlight/SL-07/status", b'{"online": true, "interval_s": 15}',
                   received_ms=to_ms(T0), device_kind=lambda s, d: "streetlight", known_site=lambda s: True)
    assert isinstance(status, Message)
    engine.observe(status, T0)

    def change(document: dict[str, Any]) -> None:
        next(e for e in document["devices"] if e["id"] == "SL-07")["interval_s"] = 120

    engine.reload_sites(edited(site_file, change), T0)
    live = engine.live("wanmei", "SL-07")
    assert live is not None and live.interval_s == 15


# ---------------------------------------------------------------- the site source


def test_the_source_reloads_on_change_refuses_a_bad_edit_once_and_applies_the_fix(
    site_file: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    source = SiteSource([site_file], min_interval_s=0)
    running = source.current
    assert source.poll() is None
    os.utime(site_file)  # touched, same content: nothing to do
    assert source.poll() is None and source.current is running

    good = site_file.read_text(encoding="utf-8")
    site_file.write_text(good.replace("circuit: C1\n", "circuit: C9\n", 1), encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="linli.sites"):
        refused = source.poll()
        assert refused is not None and not refused.applied and refused.error is not None
        assert "unknown circuit 'C9'" in refused.error
        assert source.current is running and source.last_error == refused.error
        site_file.write_text(site_file.read_text(encoding="utf-8") + "\n", encoding="utf-8")  # same error again
        again = source.poll()
        assert again is not None and again.error == refused.error
    assert sum("unknown circuit 'C9'" in r.getMessage() for r in caplog.records) == 1  # logged once

    document = yaml.safe_load(good)
    document["devices"].append({"id": "SL-44", "kind": "streetlight", "name": "新44号灯", "circuit": "C1",
                                "rated_power_w": 60})
    site_file.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    fixed = source.poll()
    assert fixed is not None and fixed.applied and fixed.added == ("wanmei/SL-44",)
    assert source.current is fixed.sites and source.last_error is None
    assert "SL-44" in source.current["wanmei"].devices


def test_the_source_refuses_a_change_of_the_set_of_sites(site_file: Path) -> None:
    source = SiteSource([site_file], min_interval_s=0)
    site_file.write_text(site_file.read_text(encoding="utf-8").replace("id: wanmei", "id: other", 1), encoding="utf-8")
    outcome = source.poll()
    assert outcome is not None and outcome.error is not None and "needs a restart" in outcome.error
    assert source.current.ids() == ["wanmei"]


def test_polling_is_rate_limited(site_file: Path) -> None:
    source = SiteSource([site_file], min_interval_s=3600)
    site_file.write_text(site_file.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    assert source.poll_if_due() is None  # not due: the change waits
    source.min_interval_s = 0
    outcome = source.poll_if_due()
    assert outcome is not None and outcome.applied and outcome.added == outcome.removed == outcome.changed == ()
