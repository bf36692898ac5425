"""The monthly report against hand-worked figures (tests/fixtures/monthly), and its exports.

The fixture's histories cross the month's boundaries (in local time, not UTC), reopen, sit on
hold, are cancelled and have several teams; ``expected.yaml`` holds the figures worked out by hand.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from openpyxl import load_workbook

from linli.catalog import DEFAULT_SERVICE_LEVELS, FAULTS, TEAM_NAMES, Severity
from linli.reports.export import LABELS, safe_cell, to_csv, to_html, to_xlsx
from linli.reports.monthly import (
    Month,
    MonthError,
    ReportContext,
    ResidentReportEntry,
    TicketHistory,
    build_monthly_report,
)
from linli.tickets import EventType, TicketEvent, deadlines, serialise_deadlines

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "monthly"
CONTEXT = ReportContext(
    site="wanmei", site_name="湾美社区", timezone="Asia/Shanghai",
    team_names=dict(TEAM_NAMES), fault_names={code: (f.zh, f.en) for code, f in FAULTS.items()},
)
GENERATED = datetime(2026, 4, 2, 1, 0, tzinfo=UTC)


def load_histories(doc: Mapping[str, Any]) -> list[TicketHistory]:
    """The fixture's compact event lines as ticket events, with the catalog's default deadlines."""
    zone = ZoneInfo(doc["timezone"])
    out = []
    for spec in doc["tickets"]:
        subject_type, subject_id = spec["subject"].split()
        severity = Severity(spec["severity"])
        opened_at: datetime | None = None
        events = []
        for line in spec["events"]:
            day, clock, kind, *rest = line.split(" ", 3)
            at = datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=zone).astimezone(UTC)
            arg = rest[0] if rest else None
            type_ = EventType(kind)
            data: dict[str, Any] = {}
            note = None
            if type_ is EventType.OPENED:
                opened_at = at
                data = {
                    "site": "wanmei", "subject_type": subject_type, "subject_id": subject_id, "fault": spec["fault"],
                    "severity": severity.value, "teams": spec["teams"], "source": spec.get("source", "detector"),
                    "device_ids": [subject_id] if subject_type == "device" else [],
                    **serialise_deadlines(deadlines(at, DEFAULT_SERVICE_LEVELS[severity])),
                }
            elif type_ is EventType.REOPENED:
                data = serialise_deadlines(deadlines(at, DEFAULT_SERVICE_LEVELS[severity]))
            elif type_ is EventType.SEVERITY_RAISED:
                assert opened_at is not None and arg is not None
                severity = Severity(arg)
                data = {"severity": arg, **serialise_deadlines(deadlines(opened_at, DEFAULT_SERVICE_LEVELS[severity]))}
            elif type_ is EventType.ACKNOWLEDGED:
                data = {"team": arg}
            else:
                note = arg
            events.append(TicketEvent(type_, at, "system" if type_ is EventType.OPENED else "wang", note, data))
        out.append(TicketHistory(spec["id"], events))
    return out


def load_reports(doc: Mapping[str, Any]) -> list[ResidentReportEntry]:
    zone = ZoneInfo(doc["timezone"])
    return [
        ResidentReportEntry(datetime.fromisoformat(r["at"].replace(" ", "T")).replace(tzinfo=zone),
                            r["source"], r.get("ticket"))
        for r in doc["resident_reports"]
    ]


@pytest.fixture(scope="module")
def fixture_doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((FIXTURES / "tickets.yaml").read_text(encoding="utf-8"))
    return doc


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((FIXTURES / "expected.yaml").read_text(encoding="utf-8"))
    return doc


@pytest.fixture(scope="module")
def report(fixture_doc: dict[str, Any]) -> dict[str, Any]:
    return build_monthly_report(CONTEXT, Month.parse(str(fixture_doc["month"])), load_histories(fixture_doc),
                                load_reports(fixture_doc), generated_at=GENERATED)


def test_the_month_runs_from_local_midnight_to_local_midnight(expected: dict[str, Any]) -> None:
    start, end = Month.parse("2026-03").bounds("Asia/Shanghai")
    assert (start.isoformat(), end.isoformat()) == (expected["period"]["start"], expected["period"]["end"])
    assert start.astimezone(UTC) == datetime(2026, 2, 28, 16, 0, tzinfo=UTC)
    # a zone with summer time: March has 31 days less one hour in Berlin
    b_start, b_end = Month.parse("2026-03").bounds("Europe/Berlin")
    assert b_end.astimezone(UTC) - b_start.astimezone(UTC) == timedelta(days=31, hours=-1)
    assert str(Month.parse("2026-12").next()) == "2027-01"


@pytest.mark.parametrize("text", ["2026-3", "2026-13", "26-03", "2026/03", "", "2026-00", "abcd-ef", "1999-12"])
def test_a_bad_month_is_refused_with_a_clear_message(text: str) -> None:
    with pytest.raises(MonthError, match="month"):
        Month.parse(text)


def test_the_three_lists_hold_the_tickets_active_in_the_month(report: dict[str, Any], expected: dict[str, Any]) -> None:
    assert [p["ticket_id"] for p in report["problems"]] == expected["problems"]
    assert [r["ticket_id"] for r in report["rectifications"]] == expected["problems"]
    assert report["period"] == expected["period"]
    carried = {p["ticket_id"] for p in report["problems"] if p["carried_in"]}
    assert carried == {2, 16, 17}
    # one responsibility row per ticket and team
    assert len(report["responsibilities"]) == len(expected["problems"]) + 3


def test_the_counts_match_the_hand_worked_figures(report: dict[str, Any], expected: dict[str, Any]) -> None:
    got, want = report["figures"], expected["figures"]
    for key in ("opened", "carried_in", "closed", "cancelled", "open_at_end", "resolved", "reopened",
                "reopen_rate_pct", "repeat_faults", "resident_reports"):
        assert got[key] == want[key], key


@pytest.mark.parametrize("kind", ["ack", "fix"])
def test_sla_shares_and_times_match_the_hand_worked_figures(report: dict[str, Any], expected: dict[str, Any], kind: str) -> None:
    assert report["figures"][kind] == expected["figures"][kind]


def test_by_severity_and_by_team(report: dict[str, Any], expected: dict[str, Any]) -> None:
    for severity, want in expected["figures"]["by_severity"].items():
        got = report["figures"]["by_severity"][severity]
        assert {k: got[k] for k in ("opened", "closed", "cancelled", "open_at_end")} == {
            k: want[k] for k in ("opened", "closed", "cancelled", "open_at_end")}, severity
        assert [got["ack"]["on_time"], got["ack"]["counted"]] == want["ack"], severity
        assert [got["fix"]["on_time"], got["fix"]["counted"]] == want["fix"], severity
    teams = report["figures"]["by_team"]
    assert set(teams) == set(expected["figures"]["by_team"])
    for team, want in expected["figures"]["by_team"].items():
        got = teams[team]
        assert (got["opened"], got["closed"]) == (want["opened"], want["closed"]), team
        assert [got["ack"]["on_time"], got["ack"]["counted"]] == want["ack"], team
        assert [got["fix"]["on_time"], got["fix"]["counted"]] == want["fix"], team
        if "ack_mean" in want:
            assert (got["ack"]["mean_minutes"], got["ack"]["median_minutes"]) == (want["ack_mean"], want["ack_median"])
    assert teams["property"]["name_zh"] == "物业工程部"


def test_repeat_faults_rectifications_and_responsibilities(report: dict[str, Any], expected: dict[str, Any]) -> None:
    assert [[r["ticket_id"], r["kind"], r["previous_ticket_id"]] for r in report["repeat_faults"]] == expected["repeat_faults"]
    rect = {r["ticket_id"]: r for r in report["rectifications"]}
    for ticket, (outcome, fix, held, on_time) in expected["rectifications"].items():
        row = rect[ticket]
        got = [row["outcome"], row["fix_minutes"], row["held_minutes"], row["fix_on_time"]]
        assert got == [outcome, fix, held, on_time], ticket
    rows = {(r["ticket_id"], r["team"]): r for r in report["responsibilities"]}
    for ticket, team, role, on_time in expected["responsibilities"]:
        assert (rows[(ticket, team)]["role"], rows[(ticket, team)]["ack_on_time"]) == (role, on_time), (ticket, team)


def test_events_after_the_month_change_nothing(fixture_doc: dict[str, Any], report: dict[str, Any]) -> None:
    """A past month reads only the events before its end: April's acknowledgements and fixes are April's."""
    histories = load_histories(fixture_doc)
    late = datetime(2026, 4, 3, 12, 0, tzinfo=UTC)
    extended = [
        TicketHistory(h.id, [*h.events, TicketEvent(EventType.CANCELLED, late, "boss", "dup")])
        if h.id in (5, 18) else h
        for h in histories
    ]
    again = build_monthly_report(CONTEXT, Month.parse("2026-03"), extended, load_reports(fixture_doc),
                                 generated_at=GENERATED)
    assert again == report


def test_times_are_in_the_sites_zone(report: dict[str, Any]) -> None:
    first = {p["ticket_id"]: p for p in report["problems"]}[3]
    assert first["opened_at"] == "2026-03-01T00:30:00+08:00"
    assert first["fault_zh"] == "能耗异常"
    unknown = {p["ticket_id"]: p for p in report["problems"]}[13]
    assert (unknown["fault"], unknown["fault_zh"]) == ("safety_hazard", "safety_hazard")  # a report category


# --- exports ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["=1+1", "+1", "-2", "@SUM(A1)", "\tcmd", "\rcmd", "=HYPERLINK(\"http://x\")"])
def test_a_cell_that_could_be_a_formula_is_quoted(text: str) -> None:
    assert safe_cell(text) == "'" + text


def test_plain_cells_and_numbers_are_left_alone() -> None:
    assert safe_cell("中心广场7号灯") == "中心广场7号灯"
    assert safe_cell(-3.5) == -3.5
    assert safe_cell(None) == ""


def _hostile(report: dict[str, Any]) -> dict[str, Any]:
    """The report with a title and a team name an attacker could have typed."""
    problems = [dict(p) for p in report["problems"]]
    problems[0]["title"] = "=cmd|' /C calc'!A0"
    problems[1]["subject_id"] = "@SUM(1+1)*cmd|' /C calc'!A0"
    responsibilities = [dict(r) for r in report["responsibilities"]]
    responsibilities[0]["assignee"] = "+wang"
    responsibilities[1]["team_zh"] = "-1+2"
    return {**report, "problems": problems, "responsibilities": responsibilities}


def test_csv_escapes_formulas_and_holds_every_list(report: dict[str, Any]) -> None:
    text = to_csv(_hostile(report), "zh")
    rows = list(csv.reader(io.StringIO(text)))
    cells = [c for row in rows for c in row]
    assert "'=cmd|' /C calc'!A0" in cells and "'@SUM(1+1)*cmd|' /C calc'!A0" in cells
    assert "'+wang" in cells and "'-1+2" in cells
    assert not any(c[:1] in ("=", "+", "@", "\t", "\r") for c in cells)
    assert not any(c.startswith("-") and not _is_number(c) for c in cells)
    for title in (LABELS["zh"]["problems"], LABELS["zh"]["responsibilities"], LABELS["zh"]["rectifications"]):
        assert [title] in rows
    assert to_csv(report, "en").count("\n") == text.count("\n")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_xlsx_escapes_formulas_and_has_a_sheet_per_list(report: dict[str, Any]) -> None:
    book = load_workbook(io.BytesIO(to_xlsx(_hostile(report), "zh")))
    zh = LABELS["zh"]
    assert book.sheetnames == [zh["figures"], zh["problems"], zh["responsibilities"], zh["rectifications"]]
    values = [cell.value for sheet in book.worksheets for row in sheet.iter_rows() for cell in row]
    kinds = {cell.data_type for sheet in book.worksheets for row in sheet.iter_rows() for cell in row}
    assert "f" not in kinds  # not one formula
    assert "'=cmd|' /C calc'!A0" in values and "'+wang" in values
    problems = book[zh["problems"]]
    assert problems.max_row == len(report["problems"]) + 1
    english = load_workbook(io.BytesIO(to_xlsx(report, "en")))
    assert english.sheetnames[1] == LABELS["en"]["problems"]


def test_html_is_a_printable_page_in_chinese_or_english(report: dict[str, Any]) -> None:
    page = to_html(_hostile(report), "zh")
    assert page.startswith("<!DOCTYPE html>") and '<html lang="zh-CN">' in page
    for word in ("问题清单", "责任清单", "整改清单", "湾美社区", "2026-03", "77.8%"):
        assert word in page
    assert "@media print" in page
    assert "<script" not in page
    hostile = _hostile(report)
    hostile["site_name"] = "<script>alert(1)</script>"
    assert "<script>" not in to_html(hostile, "zh")
    english = to_html(report, "en")
    assert '<html lang="en">' in english and "Problems" in english and "问题清单" not in english


def test_a_running_month_misses_no_deadline_that_is_still_ahead() -> None:
    """The month's draft, made before a deadline falls due, counts that deadline as not yet met, not as
    missed; a later draft (past the deadline, still unacknowledged) counts it missed."""
    doc = {"timezone": "Asia/Shanghai", "tickets": [{
        "id": 1, "subject": "device SL-07", "fault": "lamp_failure", "severity": "P3", "teams": ["property"],
        "events": ["2026-03-20 19:30 opened"],
    }]}
    histories = load_histories(doc)
    opened = histories[0].events[0].at
    early = build_monthly_report(CONTEXT, Month.parse("2026-03"), histories, generated_at=opened + timedelta(hours=1))
    late = build_monthly_report(CONTEXT, Month.parse("2026-03"), histories, generated_at=opened + timedelta(days=3))
    assert [r["ack_on_time"] for r in early["responsibilities"]] == [None]
    assert [r["ack_on_time"] for r in late["responsibilities"]] == [False]
