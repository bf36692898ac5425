"""The ground-truth writer: one flushed JSON line per record, thread-safe, expectations from the catalog."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from firmware_sim.faults import Fault, Injection
from firmware_sim.truth import (
    EXPECTED,
    RULES,
    ExpectedTicket,
    GroundTruthWriter,
    TruthError,
    expectation_for,
    rule_for,
)
from linli.catalog import FAULTS
from linli.site import builtin_site_path, load_site

NIGHT = datetime.fromisoformat("2025-06-01T21:00:00+08:00")
NOON = datetime.fromisoformat("2025-06-01T12:00:00+08:00")


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_header_injected_cleared_end(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    with GroundTruthWriter(path, seed=3, sites=["wanmei"], scenario="all-faults", speed=60, started_at=NIGHT) as writer:
        seq = writer.injected("wanmei", "device", "SL-07", "lamp_failure", NIGHT, until=NIGHT + timedelta(minutes=5))
        assert writer.cleared("wanmei", "device", "SL-07", "lamp_failure", NIGHT + timedelta(minutes=5)) == seq
        assert writer.cleared("wanmei", "device", "SL-07", "lamp_failure", NIGHT + timedelta(minutes=6)) is None
        writer.close(at=NIGHT + timedelta(minutes=10))
        writer.close()  # idempotent
    run, injected, cleared, stray, end = records(path)
    assert run["type"] == "run" and run["version"] == 1 and run["seed"] == 3 and run["sites"] == ["wanmei"]
    assert run["scenario"] == "all-faults" and run["speed"] == 60 and run["started_at"] == NIGHT.isoformat()
    assert injected == {
        "type": "injected", "seq": 1, "site": "wanmei", "target": {"type": "device", "id": "SL-07"},
        "fault": "lamp_failure", "at": "2025-06-01T21:00:00+08:00", "until": "2025-06-01T21:05:00+08:00",
        "subject": {"type": "device", "id": "SL-07"}, "devices": ["SL-07"],
        "expected": [{"code": "lamp_failure", "severity": None, "after_s": 0.0, "within_s": None}],
        "tolerated": [], "interval_s": None, "note": None,
    }
    assert cleared == {"type": "cleared", "ref": 1, "site": "wanmei", "target": {"type": "device", "id": "SL-07"},
                       "fault": "lamp_failure", "at": "2025-06-01T21:05:00+08:00"}
    assert stray["ref"] is None
    assert end == {"type": "end", "at": "2025-06-01T21:10:00+08:00"}
    with pytest.raises(TruthError, match="closed"):
        writer.injected("wanmei", "device", "SL-07", "lamp_failure", NIGHT)


def test_each_line_is_flushed_as_written(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    writer = GroundTruthWriter(path, started_at=NIGHT)
    writer.injected("wanmei", "device", "CP-03", "ground_failure", NIGHT)
    lines = records(path)  # read while the writer is still open
    assert [r["type"] for r in lines] == ["run", "injected"]
    assert lines[1]["expected"] == [{"code": "ground_failure", "severity": "P0", "after_s": 0.0, "within_s": None}]
    writer.close()


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    GroundTruthWriter(path, started_at=NIGHT).close(at=NIGHT)
    GroundTruthWriter(path, started_at=NIGHT).close(at=NIGHT)
    assert [r["type"] for r in records(path)] == ["run", "end", "run", "end"]


def test_thread_safe_whole_lines_and_unique_seqs(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    writer = GroundTruthWriter(path, started_at=NIGHT)

    def work(n: int) -> None:
        for i in range(50):
            at = NIGHT + timedelta(seconds=i)
            writer.injected("wanmei", "device", f"SL-{n:02d}", "lamp_failure", at, note="x" * 500)
            writer.cleared("wanmei", "device", f"SL-{n:02d}", "lamp_failure", at + timedelta(seconds=1))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close(at=NIGHT)
    lines = records(path)  # every line parses: no interleaving
    injected = [r for r in lines if r["type"] == "injected"]
    cleared = [r for r in lines if r["type"] == "cleared"]
    assert sorted(r["seq"] for r in injected) == list(range(1, 401))  # type: ignore[type-var]
    assert sorted(r["ref"] for r in cleared) == list(range(1, 401))  # type: ignore[type-var]


def test_explicit_expectation_wins_and_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    with GroundTruthWriter(path, started_at=NIGHT) as writer:
        writer.injected("wanmei", "device", "SL-21", "ramp", NIGHT, expected=["leakage@P2", "leakage@P0+420"],
                        subject={"type": "device", "id": "SL-21"}, devices=["SL-21"], note="custom ramp")
        writer.injected("wanmei", "device", "CP-01", "ev_comm_error", NIGHT)
        with pytest.raises(TruthError, match="no expectation for injected fault 'melt'"):
            writer.injected("wanmei", "device", "SL-01", "melt", NIGHT)
        with pytest.raises(TruthError, match="not in the fault catalog"):
            writer.injected("wanmei", "device", "SL-01", "melt", NIGHT, expected=["melting"])
        with pytest.raises(TruthError, match="timezone-aware"):
            writer.injected("wanmei", "device", "SL-01", "lamp_failure", datetime(2025, 6, 1, 21))
    ramp, nothing = records(path)[1:3]
    assert ramp["expected"] == [
        {"code": "leakage", "severity": "P2", "after_s": 0.0, "within_s": None},
        {"code": "leakage", "severity": "P0", "after_s": 420.0, "within_s": None},
    ]
    assert nothing["expected"] == []


def test_record_start_and_end_take_a_simulator_injection(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    injection = Injection("EL-2A", Fault.OFFLINE, NIGHT, timedelta(minutes=10), hard=True, site="wanmei")
    with GroundTruthWriter(path, started_at=NIGHT) as writer:
        writer.record_start(injection, at=NIGHT, sim_time=NIGHT + timedelta(seconds=1))
        writer.record_end(injection, at=NIGHT + timedelta(minutes=10))
    _, start, end = records(path)[:3]
    assert start["fault"] == "offline_hard" and start["at"] == "2025-06-01T21:00:01+08:00"
    assert start["until"] == "2025-06-01T21:10:01+08:00"
    assert start["expected"] == [{"code": "offline", "severity": None, "after_s": 0.0, "within_s": None}]
    assert end["ref"] == 1 and end["fault"] == "offline_hard"


def test_every_catalog_code_has_an_injection_and_a_rule() -> None:
    produced = {t.code for e in EXPECTED.values() for t in e.tickets}
    assert set(FAULTS) <= produced
    assert set(FAULTS) <= set(RULES)
    for expectation in EXPECTED.values():
        for item in expectation.tickets:
            assert item.code in FAULTS
            item.delay_rule.max_delay_s(5, 15)


@pytest.mark.parametrize(
    ("code", "severity", "seconds"),
    [
        ("lamp_failure", None, 60 + 2 * 5 + 15),
        ("offline", None, 3 * 5 + 120 + 15),
        ("trapped", "P0", 30 + 5 + 15),
        ("circuit_outage", None, 3 * 5 + 120 + 15),
        ("leakage", "P2", 300 + 5 + 15),
        ("leakage", "P0", 2 * 5 + 15),
        ("ground_failure", "P0", 5 + 15),
    ],
)
def test_max_delay_is_rule_plus_window_plus_slack(code: str, severity: str | None, seconds: float) -> None:
    assert rule_for(code, severity).max_delay_s(interval_s=5, slack_s=15) == seconds


def test_expected_ticket_text_forms() -> None:
    assert ExpectedTicket.parse("leakage@P0+300") == ExpectedTicket("leakage", "P0", 300.0)
    assert ExpectedTicket.parse({"code": "offline", "within_s": 60}) == ExpectedTicket("offline", within_s=60.0)
    assert ExpectedTicket("offline", within_s=60.0).max_delay_s(5, 15) == 75
    assert ExpectedTicket("leakage", "P0", 300.0).max_delay_s(5, 15) == 300 + 25
    for bad in ("leakage@P9", "Leakage", "leakage+x"):
        with pytest.raises(TruthError):
            ExpectedTicket.parse(bad)


def test_expectations_from_the_site_layout() -> None:
    site = load_site(builtin_site_path())
    # C2 is switched: by day its lights are unpowered and silent, an offline opens nothing
    day = expectation_for(site, "device", "SL-12", "offline_hard", NOON)
    assert day.expected == [] and "switched" in (day.note or "")
    night = expectation_for(site, "device", "SL-12", "offline_hard", NIGHT)
    assert [t.code for t in night.expected] == ["offline"]
    # C1 is not switched: offline by day is a fault
    assert [t.code for t in expectation_for(site, "device", "SL-01", "offline", NOON).expected] == ["offline"]
    c2 = expectation_for(site, "circuit", "C2", "circuit_outage", NIGHT)
    assert c2.subject == {"type": "circuit", "id": "C2"} and c2.devices == [f"SL-{n}" for n in range(10, 19)]
    # C5 is CAB-3's only circuit: all its circuits go, the ticket is the cabinet's
    c5 = expectation_for(site, "circuit", "C5", "circuit_outage", NIGHT)
    assert c5.subject == {"type": "cabinet", "id": "CAB-3"}
    cabinet = expectation_for(site, "cabinet", "CAB-2", "cabinet_outage", NIGHT)
    assert cabinet.subject == {"type": "cabinet", "id": "CAB-2"} and len(cabinet.devices) == 17
    building = expectation_for(site, "building", "B1", "building_power_loss", NIGHT)
    assert building.subject == {"type": "building", "id": "B1"} and building.devices == ["EL-1A", "EL-1B"]


def test_writer_with_site_objects_fills_subject_and_devices(tmp_path: Path) -> None:
    site = load_site(builtin_site_path())
    path = tmp_path / "truth.jsonl"
    with GroundTruthWriter(path, started_at=NOON, site_objects=[site]) as writer:
        writer.injected("wanmei", "circuit", "C5", "circuit_outage", NIGHT)
        writer.injected("wanmei", "device", "SL-12", "offline_hard", NOON)
    run, outage, offline = records(path)[:3]
    assert run["sites"] == ["wanmei"]
    assert outage["subject"] == {"type": "cabinet", "id": "CAB-3"} and len(outage["devices"]) == 8  # type: ignore[arg-type]
    assert offline["expected"] == [] and "switched" in str(offline["note"])


def test_unwritable_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TruthError, match="cannot write the ground truth"):
        GroundTruthWriter(tmp_path / "no" / "such" / "dir" / "truth.jsonl")
