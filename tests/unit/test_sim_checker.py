"""The ground-truth checker against recorded traces (no servers), its command, and a fake API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from firmware_sim.checker import Report, check, main, parse_truth
from firmware_sim.truth import TruthError

TRACES = Path(__file__).parents[1] / "data" / "truth"


def run(name: str, **kwargs: Any) -> Report:
    truth = (TRACES / f"{name}.truth.jsonl").read_text(encoding="utf-8").splitlines()
    tickets = json.loads((TRACES / f"{name}.tickets.json").read_text(encoding="utf-8"))
    return check(truth, tickets, interval_s=None, slack=15.0, **kwargs)


def detected(report: Report) -> list[tuple[int, str, str | None, int, str, float, float, bool]]:
    return [(d.seq, d.code, d.severity, d.ticket_id, d.via, d.delay_s, d.max_delay_s, d.late) for d in report.detections]


def test_perfect_run() -> None:
    report = run("perfect")
    assert detected(report) == [
        (1, "lamp_failure", None, 101, "opened", 10.4, 85.0, False),
        (2, "offline", None, 102, "opened", 121.0, 150.0, False),
        (3, "ground_failure", "P0", 103, "opened", 4.8, 20.0, False),
        (4, "leakage", "P2", 104, "opened", 305.2, 320.0, False),
        (4, "leakage", "P0", 104, "severity_raised", 311.0, 325.0, False),
    ]
    assert report.missed == [] and report.wrong == [] and report.late == [] and report.ok
    assert report.explained_tickets == 4 and report.injections == 4
    assert [asdict(c) for c in report.per_code] == [
        {"code": "ground_failure", "expected": 1, "on_time": 1, "late": 0, "missed": 0, "p50_delay_s": 4.8, "max_delay_s": 4.8},
        {"code": "lamp_failure", "expected": 1, "on_time": 1, "late": 0, "missed": 0, "p50_delay_s": 10.4, "max_delay_s": 10.4},
        {"code": "leakage", "expected": 2, "on_time": 2, "late": 0, "missed": 0, "p50_delay_s": 308.1, "max_delay_s": 311.0},
        {"code": "offline", "expected": 1, "on_time": 1, "late": 0, "missed": 0, "p50_delay_s": 121.0, "max_delay_s": 121.0},
    ]


def test_a_missed_fault() -> None:
    report = run("missed")
    assert detected(report) == [(1, "lamp_failure", None, 201, "opened", 10.2, 85.0, False)]
    assert [(m.seq, m.fault, m.target, m.code, m.max_delay_s, m.reason) for m in report.missed] == [
        (2, "offline", "device CP-05", "offline", 150.0, "no matching ticket")
    ]
    assert report.wrong == [] and not report.ok


def test_wrongly_raised_tickets() -> None:
    report = run("wrong")
    assert detected(report) == [(1, "lamp_failure", None, 301, "opened", 10.2, 85.0, False)]
    # the trapped stop lasted 20 s: under the 30 s rule nothing may open, so its ticket is wrong too
    assert [(m.seq, m.code, m.reason) for m in report.not_expected] == [
        (2, "trapped", "lasted 20 s, shorter than the 30 s the rule needs")
    ]
    assert [(t["id"], t["fault"], t["subject"]) for t in report.wrong] == [
        (303, "trapped", {"type": "device", "id": "EL-2A"}),
        (302, "cycling", {"type": "device", "id": "SL-03"}),
    ]
    assert report.missed == [] and not report.ok


def test_a_late_detection() -> None:
    report = run("late")
    assert detected(report) == [(1, "lamp_failure", None, 401, "opened", 200.0, 85.0, True)]
    assert [d.ticket_id for d in report.late] == [401]
    assert report.ok  # late is reported, not failed (the command's --strict fails it)
    assert report.per_code[0].late == 1 and report.per_code[0].on_time == 0
    # a bigger slack makes it on time
    assert run_with_slack("late", 150).late == []


def run_with_slack(name: str, slack: float) -> Report:
    truth = (TRACES / f"{name}.truth.jsonl").read_text(encoding="utf-8").splitlines()
    tickets = json.loads((TRACES / f"{name}.tickets.json").read_text(encoding="utf-8"))
    return check(truth, tickets, interval_s=5, slack=slack)


def test_circuit_outage_with_children_attached() -> None:
    report = run("circuit_outage")
    assert detected(report) == [(1, "circuit_outage", None, 501, "opened", 31.0, 150.0, False)]
    # SL-12's offline ticket (opened before the parent) and SL-10/SL-11's are attached: covered by #501
    assert report.wrong == [] and report.explained_tickets == 4 and report.ok


def test_children_of_an_unexplained_parent_are_wrong_too() -> None:
    truth = (TRACES / "circuit_outage.truth.jsonl").read_text(encoding="utf-8").splitlines()[:1]  # header only
    tickets = json.loads((TRACES / "circuit_outage.tickets.json").read_text(encoding="utf-8"))
    report = check(truth, tickets, interval_s=5, slack=15)
    assert sorted(t["id"] for t in report.wrong) == [501, 502, 503, 504]


def test_trapped_during_building_power_loss() -> None:
    report = run("trapped_power_loss")
    assert detected(report) == [
        (1, "building_power_loss", None, 601, "opened", 21.0, 150.0, False),
        (2, "trapped", "P0", 602, "opened", 35.2, 50.0, False),  # its own P0 ticket, linked by parent_id
    ]
    assert report.wrong == [] and report.explained_tickets == 3 and report.ok


def test_trapped_folded_into_the_building_ticket_is_missed() -> None:
    tickets = [t for t in json.loads((TRACES / "trapped_power_loss.tickets.json").read_text(encoding="utf-8")) if t["id"] != 602]
    truth = (TRACES / "trapped_power_loss.truth.jsonl").read_text(encoding="utf-8").splitlines()
    report = check(truth, tickets, interval_s=None, slack=15)
    assert [(m.seq, m.code, m.severity) for m in report.missed] == [(2, "trapped", "P0")]


def test_a_p2_ticket_does_not_satisfy_a_p0_expectation() -> None:
    tickets = json.loads((TRACES / "perfect.tickets.json").read_text(encoding="utf-8"))
    for ticket in tickets:
        if ticket["id"] == 104:  # leakage never raised to P0
            ticket["history"] = ticket["history"][:1]
            ticket["severity"] = "P2"
    truth = (TRACES / "perfect.truth.jsonl").read_text(encoding="utf-8").splitlines()
    report = check(truth, tickets, interval_s=None, slack=15)
    assert [(m.seq, m.code, m.severity) for m in report.missed] == [(4, "leakage", "P0")]


def test_offline_covered_by_a_parent_listing_the_device() -> None:
    truth = [
        {"type": "run", "started_at": "2025-06-01T21:00:00+08:00", "sites": ["wanmei"], "interval_s": 5},
        {"type": "injected", "seq": 1, "site": "wanmei", "target": {"type": "device", "id": "SL-12"}, "fault": "offline_hard",
         "at": "2025-06-01T21:00:00+08:00", "expected": [{"code": "offline"}]},
    ]
    parent = {"id": 9, "site": "wanmei", "fault": "circuit_outage", "severity": "P1", "subject": {"type": "circuit", "id": "C2"},
              "device_ids": ["SL-10", "SL-12"], "opened_at": "2025-06-01T21:00:40+08:00", "parent_id": None, "history": []}
    report = check(truth, [parent], interval_s=None, slack=15)
    assert [(d.ticket_id, d.via, d.delay_s) for d in report.detections] == [(9, "parent", 40.0)]
    assert report.ok


def test_tickets_of_other_sites_or_before_the_run_are_ignored() -> None:
    truth = (TRACES / "late.truth.jsonl").read_text(encoding="utf-8").splitlines()
    tickets = json.loads((TRACES / "late.tickets.json").read_text(encoding="utf-8"))
    other = dict(tickets[0], id=900, site="elsewhere")
    old = dict(tickets[0], id=901, fault="cycling", opened_at="2025-05-01T00:00:00+08:00", history=[])
    report = check(truth, [*tickets, other, old], interval_s=None, slack=15)
    assert report.wrong == [] and report.ignored_tickets == 2


def test_a_ticket_reopened_during_the_run_counts_from_the_reopening() -> None:
    truth = (TRACES / "late.truth.jsonl").read_text(encoding="utf-8").splitlines()
    ticket = json.loads((TRACES / "late.tickets.json").read_text(encoding="utf-8"))[0]
    ticket["opened_at"] = "2025-05-30T21:00:00+08:00"
    ticket["history"] = [
        {"type": "opened", "at": "2025-05-30T21:00:00+08:00", "severity": "P2"},
        {"type": "reopened", "at": "2025-06-01T21:00:30+08:00"},
    ]
    report = check(truth, [ticket], interval_s=None, slack=15)
    assert [(d.via, d.delay_s, d.late) for d in report.detections] == [("reopened", 30.0, False)]


# ---------------------------------------------------------------- the command


@pytest.mark.parametrize(
    ("name", "code", "verdict"),
    [("perfect", 0, "OK:"), ("missed", 1, "FAIL:"), ("wrong", 1, "FAIL:"), ("late", 0, "OK:"),
     ("circuit_outage", 0, "OK:"), ("trapped_power_loss", 0, "OK:")],
)
def test_command_with_saved_tickets(name: str, code: int, verdict: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(TRACES / f"{name}.truth.jsonl"), "--tickets", str(TRACES / f"{name}.tickets.json")]
    assert main(argv) == code
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith(verdict)


def test_command_prints_sections(capsys: pytest.CaptureFixture[str]) -> None:
    main([str(TRACES / "wrong.truth.jsonl"), "--tickets", str(TRACES / "wrong.tickets.json")])
    out = capsys.readouterr().out
    assert "DETECTED (1)" in out and "WRONGLY RAISED (2)" in out and "#302    cycling" in out
    assert "NOT COUNTED (1)" in out and "PER CODE" in out


def test_strict_fails_late_and_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(TRACES / "late.truth.jsonl"), "--tickets", str(TRACES / "late.tickets.json")]
    assert main([*argv, "--strict"]) == 1
    capsys.readouterr()
    assert main([*argv, "--json", "--slack", "3m"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["late"] == [] and data["detections"][0]["max_delay_s"] == 60 + 2 * 5 + 180


class FakeApi(BaseHTTPRequestHandler):
    tickets: ClassVar[list[dict[str, Any]]] = []
    requests: ClassVar[list[str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        if self.path == "/api/v1/auth/token" and form.get("username") == ["admin"] and form.get("password") == ["s3cret"]:
            self._send(200, {"access_token": "tok", "token_type": "bearer"})
        else:
            self._send(401, {"detail": "wrong username or password"})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self.requests.append(self.path)
        if url.path != "/api/v1/tickets":
            self._send(404, {"detail": "not found"})
            return
        if self.headers.get("Authorization") != "Bearer tok":
            self._send(401, {"detail": "not signed in"})
            return
        query = parse_qs(url.query)
        limit, offset = int(query["limit"][0]), int(query["offset"][0])
        self._send(200, {"items": self.tickets[offset:offset + limit], "total": len(self.tickets)})


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr("firmware_sim.checker.PAGE_SIZE", 2)  # several pages from a few tickets
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_command_against_the_api(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    FakeApi.tickets = json.loads((TRACES / "circuit_outage.tickets.json").read_text(encoding="utf-8"))
    FakeApi.requests = []
    truth = str(TRACES / "circuit_outage.truth.jsonl")
    assert main([truth, "--api", api, "--username", "admin", "--password", "s3cret", "--site", "wanmei"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("OK: 1 on time")
    assert [r.split("?")[1] for r in FakeApi.requests] == [
        "limit=2&offset=0&site=wanmei", "limit=2&offset=2&site=wanmei",
    ]
    FakeApi.tickets = [t for t in FakeApi.tickets if t["id"] != 501]  # no parent: its children are unexplained
    assert main([truth, "--api", api + "/", "--username", "admin", "--password", "s3cret"]) == 1
    out = capsys.readouterr().out
    assert "MISSED (1)" in out and "WRONGLY RAISED (3)" in out


def test_command_api_errors(api: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    truth = str(TRACES / "perfect.truth.jsonl")
    assert main([truth, "--api", api, "--username", "admin", "--password", "nope"]) == 2
    err = capsys.readouterr().err
    assert err == "linli sim-check: error: sign-in at " + api + " refused (401): wrong username or password\n"
    monkeypatch.delenv("LINLI_API_USERNAME", raising=False)
    monkeypatch.delenv("LINLI_API_PASSWORD", raising=False)
    assert main([truth, "--api", api]) == 2
    assert "--api needs --username and --password" in capsys.readouterr().err
    monkeypatch.setenv("LINLI_API_PASSWORD", "s3cret")
    FakeApi.tickets = []
    assert main([truth, "--api", api, "--username", "admin"]) == 1  # nothing opened: all missed
    capsys.readouterr()


def test_command_unreachable_api(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [str(TRACES / "perfect.truth.jsonl"), "--api", f"http://127.0.0.1:{port}", "--username", "a", "--password", "b"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"linli sim-check: error: cannot reach the API at http://127.0.0.1:{port}") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("truth_text", "message"),
    [
        (None, "cannot read"),
        ('{"type": "run"}\n{"type": "injected", "seq": 1,\n', "truth.jsonl: line 2: not JSON"),
        ('{"type": "run"}\n\n{"type": "mystery"}\n', "line 3: unknown record type 'mystery'"),
        ('{"type": "injected", "site": "wanmei", "target": {"type": "device", "id": "SL-01"}, "fault": "x",'
         ' "at": "2025-06-01T21:00:00", "expected": []}\n', "line 1: at has no UTC offset"),
        ('{"type": "injected", "site": "wanmei", "target": {"type": "device", "id": "SL-01"}, "fault": "x",'
         ' "at": "2025-06-01T21:00:00Z", "expected": ["melting"]}\n', "line 1: expected ticket code 'melting'"),
        ('{"type": "cleared", "ref": 4, "site": "wanmei", "target": {"type": "device", "id": "SL-01"},'
         ' "fault": "x", "at": "2025-06-01T21:00:00Z"}\n', "line 1: 'ref' 4 names no injection"),
        ("", "the ground truth is empty"),
        ("[1, 2]\n", "line 1: a record must be a JSON object"),
    ],
)
def test_bad_truth_is_one_line_and_exit_2(
    tmp_path: Path, truth_text: str | None, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "truth.jsonl"
    if truth_text is not None:
        path.write_text(truth_text, encoding="utf-8")
    assert main([str(path), "--tickets", str(TRACES / "perfect.tickets.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("linli sim-check: error: ") and message in err and err.count("\n") == 1
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("tickets_text", "message"),
    [
        (None, "cannot read"),
        ("{not json", "not JSON"),
        ('{"total": 0}', 'expected a list of tickets or {"items": [...]}'),
        ('[{"id": 5, "site": "wanmei", "fault": "offline", "severity": "P9", "opened_at": "2025-06-01T21:00:00Z"}]',
         "ticket 5: 'severity' must be one of P0, P1, P2, P3"),
        ('{"items": [{"id": "x"}]}', "'id' must be an integer"),
    ],
)
def test_bad_tickets_are_one_line_and_exit_2(
    tmp_path: Path, tickets_text: str | None, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tickets.json"
    if tickets_text is not None:
        path.write_text(tickets_text, encoding="utf-8")
    assert main([str(TRACES / "perfect.truth.jsonl"), "--tickets", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("linli sim-check: error: ") and message in err and err.count("\n") == 1


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["t.jsonl", "--tickets", "a.json", "--slack", "soon"]) == 2
    err = capsys.readouterr().err
    assert all(line.startswith("linli sim-check: error: ") for line in err.splitlines())


def test_parse_truth_pairs_cleared_without_ref() -> None:
    truth = parse_truth([
        '{"type": "injected", "seq": 1, "site": "s", "target": {"type": "device", "id": "D"}, "fault": "offline",'
        ' "at": "2025-06-01T21:00:00Z", "expected": ["offline"]}',
        '{"type": "cleared", "site": "s", "target": {"type": "device", "id": "D"}, "fault": "offline",'
        ' "at": "2025-06-01T21:05:00Z"}',
    ])
    assert truth.injections[0].cleared_at is not None and truth.injections[0].ends_at == truth.injections[0].cleared_at
    with pytest.raises(TruthError, match="line 1"):
        parse_truth(['{"type": "injected"}'])
