"""Residents' personal data is removed a retention period after their ticket closed (SQLite and PostgreSQL, moved `now`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from linli.catalog import FAULTS
from linli.ops.retention import main, purge_personal_data, resolve_upload
from linli.storage import Database, ResidentReport, TicketRow, migrate
from linli.storage.tickets import append_event
from linli.tickets import EventType, TicketEvent

NOW = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'linli.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    migrate(url)
    database = Database(url)
    yield database
    database.close()


@pytest.fixture
def uploads(tmp_path: Path) -> Path:
    path = tmp_path / "uploads"
    path.mkdir()
    return path


def ticket(session: Session, device: str, *, opened: datetime, closed: datetime | None = None,
           cancelled: bool = False) -> int:
    spec = FAULTS["lamp_failure"]
    data = {
        "site": "wanmei", "subject_type": "device", "subject_id": device, "fault": "lamp_failure",
        "severity": spec.severity.value, "teams": ["property"], "source": "resident", "device_ids": [device],
        "ack_due_at": (opened + DAY).isoformat(), "start_due_at": None, "resolve_due_at": (opened + 3 * DAY).isoformat(),
    }
    row = append_event(session, None, TicketEvent(EventType.OPENED, opened, "system", None, data))
    if cancelled and closed:
        append_event(session, row, TicketEvent(EventType.CANCELLED, closed, "admin", "duplicate"))
    elif closed:
        append_event(session, row, TicketEvent(EventType.ACKNOWLEDGED, opened + timedelta(hours=1), "li", None,
                                               {"team": "property"}))
        append_event(session, row, TicketEvent(EventType.RESOLVED, closed - timedelta(hours=2), "li", "new lamp"))
        append_event(session, row, TicketEvent(EventType.CLOSED, closed, "admin", None))
    return row.id


def report(session: Session, uploads: Path, report_id: str, *, ticket_id: int | None, created: datetime,
           photos: list[str] | None = None) -> list[Path]:
    """A report with a contact and photo files (written under uploads unless the path is absolute)."""
    names = photos if photos is not None else [f"reports/{report_id}/1.jpg", f"reports/{report_id}/2.jpg"]
    files = []
    for name in names:
        path = Path(name) if Path(name).is_absolute() else uploads / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\xff\xd8 photo of " + report_id.encode())
        files.append(path)
    session.add(ResidentReport(
        id=report_id, site="wanmei", device_id="SL-07", category="streetlight_out", description=f"灯不亮 {report_id}",
        contact="13800000000", location={"x": 1, "y": 2}, photos=names, source="resident", ticket_id=ticket_id,
        created_at=created, personal_data_removed_at=None,
    ))
    session.flush()
    return files


def get(db: Database, report_id: str) -> ResidentReport:
    with db.session() as session:
        found = session.get(ResidentReport, report_id)
        assert found is not None
        return found


def test_reports_of_tickets_closed_past_the_period_lose_contact_and_photos(db: Database, uploads: Path) -> None:
    with db.session() as session:
        old = ticket(session, "SL-01", opened=NOW - 200 * DAY, closed=NOW - 181 * DAY)
        recent = ticket(session, "SL-02", opened=NOW - 200 * DAY, closed=NOW - 179 * DAY)
        still_open = ticket(session, "SL-03", opened=NOW - 400 * DAY)
        cancelled = ticket(session, "SL-04", opened=NOW - 300 * DAY, closed=NOW - 200 * DAY, cancelled=True)
        old_files = report(session, uploads, "old", ticket_id=old, created=NOW - 200 * DAY)
        recent_files = report(session, uploads, "recent", ticket_id=recent, created=NOW - 200 * DAY)
        open_files = report(session, uploads, "open", ticket_id=still_open, created=NOW - 400 * DAY)
        cancelled_files = report(session, uploads, "cancelled", ticket_id=cancelled, created=NOW - 300 * DAY)
        orphan_files = report(session, uploads, "orphan", ticket_id=None, created=NOW - 181 * DAY)
        young_orphan = report(session, uploads, "young", ticket_id=None, created=NOW - 10 * DAY)

    with db.session() as session:
        result = purge_personal_data(session, uploads, NOW)
    assert sorted(result.reports) == ["cancelled", "old", "orphan"]
    assert (result.files_deleted, result.files_missing, result.refused) == (6, 0, [])

    for gone in ("old", "cancelled", "orphan"):
        row = get(db, gone)
        assert (row.contact, row.photos, row.personal_data_removed_at) == (None, [], NOW)
        # not personal: kept for the monthly statistics
        assert (row.category, row.description, row.site) == ("streetlight_out", f"灯不亮 {gone}", "wanmei")
    assert not any(p.exists() for p in old_files + cancelled_files + orphan_files)
    assert not (uploads / "reports" / "old").exists()  # the emptied folder went too
    assert uploads.is_dir()

    for kept, files in (("recent", recent_files), ("open", open_files), ("young", young_orphan)):
        row = get(db, kept)
        assert row.contact == "13800000000" and row.personal_data_removed_at is None and len(row.photos) == 2
        assert all(p.exists() for p in files)
    with db.session() as session:
        assert session.get(TicketRow, old) is not None  # tickets and their history are untouched

    # idempotent: a second run finds nothing; two days later the 179-day one is due
    with db.session() as session:
        again = purge_personal_data(session, uploads, NOW)
    assert again.reports == [] and again.files_deleted == 0
    assert get(db, "old").personal_data_removed_at == NOW
    with db.session() as session:
        later = purge_personal_data(session, uploads, NOW + 2 * DAY)
    assert later.reports == ["recent"] and not any(p.exists() for p in recent_files)


def test_a_configurable_period_and_a_reopened_ticket(db: Database, uploads: Path) -> None:
    with db.session() as session:
        closed = ticket(session, "SL-01", opened=NOW - 60 * DAY, closed=NOW - 31 * DAY)
        report(session, uploads, "a", ticket_id=closed, created=NOW - 60 * DAY)
    with db.session() as session:
        assert purge_personal_data(session, uploads, NOW).reports == []
    with db.session() as session:
        row = session.get(TicketRow, closed)
        assert row is not None
        append_event(session, row, TicketEvent(EventType.REOPENED, NOW - DAY, "system", "recurred", {
            "ack_due_at": NOW.isoformat(), "start_due_at": None, "resolve_due_at": (NOW + DAY).isoformat()}))
    with db.session() as session:  # open again: the crew may need to call the resident back
        assert purge_personal_data(session, uploads, NOW, timedelta(days=30)).reports == []


def test_paths_outside_the_uploads_dir_are_never_deleted(db: Database, uploads: Path, tmp_path: Path) -> None:
    outside = tmp_path / "etc" / "important.conf"
    escaping = "../etc/escaping.txt"
    linked = uploads / "reports" / "link.jpg"
    with db.session() as session:
        t = ticket(session, "SL-01", opened=NOW - 300 * DAY, closed=NOW - 200 * DAY)
        files = report(session, uploads, "bad", ticket_id=t, created=NOW - 300 * DAY,
                       photos=["reports/bad/ok.jpg", str(outside), escaping])
        linked.parent.mkdir(parents=True, exist_ok=True)
        target = tmp_path / "etc" / "linked-target"
        target.write_text("not a photo")
        os.symlink(target, linked)
        session.get(ResidentReport, "bad").photos = [*session.get(ResidentReport, "bad").photos, "reports/link.jpg"]  # type: ignore[union-attr]
        report(session, uploads, "missing", ticket_id=t, created=NOW - 300 * DAY, photos=[])
        session.get(ResidentReport, "missing").photos = ["reports/missing/gone.jpg"]  # type: ignore[union-attr]

    with db.session() as session:
        result = purge_personal_data(session, uploads, NOW)
    assert result.refused == [str(outside), escaping, "reports/link.jpg"]
    assert result.files_deleted == 1 and result.files_missing == 1
    assert not files[0].exists()
    assert outside.read_bytes().startswith(b"\xff\xd8") and (tmp_path / "etc" / "escaping.txt").exists()
    assert target.exists()
    bad = get(db, "bad")
    # the contact is gone; the refused paths stay listed and the report stays due until someone looks
    assert bad.contact is None and bad.personal_data_removed_at is None
    assert bad.photos == [str(outside), escaping, "reports/link.jpg"]
    assert result.reports == ["missing"]

    assert resolve_upload(uploads, "reports/x.jpg") == (uploads / "reports" / "x.jpg").resolve()
    assert resolve_upload(uploads, str(uploads / "a.jpg")) == (uploads / "a.jpg").resolve()
    for bad_path in ("", ".", "..", "/etc/passwd", "a/../../x", "x\x00.jpg"):
        assert resolve_upload(uploads, bad_path) is None


def test_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in list(os.environ):
        if name.startswith("LINLI_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LINLI_DATA_DIR", str(tmp_path / "data"))
    url = f"sqlite:///{(tmp_path / 'data' / 'linli.db').resolve()}"
    migrate(url)
    db = Database(url)
    uploads = tmp_path / "data" / "uploads"
    now = datetime.now(tz=UTC)
    try:
        with db.session() as session:
            t = ticket(session, "SL-01", opened=now - 100 * DAY, closed=now - 40 * DAY)
            files = report(session, uploads, "r", ticket_id=t, created=now - 100 * DAY)
    finally:
        db.close()
    assert main([]) == 0  # 180 days by default: kept
    assert "removed the personal data of 0 reports" in capsys.readouterr().out
    assert main(["--days", "30", "--dry-run"]) == 0
    assert "would remove the personal data of 1 reports: r" in capsys.readouterr().out
    assert all(p.exists() for p in files)
    assert main(["--days", "30"]) == 0
    assert "removed the personal data of 1 reports (2 photo files deleted" in capsys.readouterr().out
    assert not any(p.exists() for p in files)
    assert main(["--days", "0"]) == 2
