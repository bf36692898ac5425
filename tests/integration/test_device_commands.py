"""`linli device ...` against SQLite and PostgreSQL: the site file, broker credentials, lifecycle
events and tickets, as an installer sees them (exit status, one-line errors)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from linli.catalog import FAULTS
from linli.ops.lifecycle import lamp_age_hours, main
from linli.site import builtin_site_path, load_site
from linli.storage import Database, DeviceCredential, DeviceLifecycleEvent, TicketRow, migrate
from linli.storage.tickets import append_event
from linli.tickets import EventType, TicketEvent

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    path = tmp_path / "sites" / "wanmei.yaml"
    path.parent.mkdir()
    path.write_text(builtin_site_path().read_text(encoding="utf-8"), encoding="utf-8")
    return path


@pytest.fixture
def db(database_url: str, site_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    monkeypatch.setenv("LINLI_SITES", str(site_file))
    monkeypatch.setenv("LINLI_DATABASE_URL", database_url)
    monkeypatch.setenv("LINLI_DATA_DIR", str(tmp_path / "data"))
    migrate(database_url)
    database = Database(database_url)
    yield database
    database.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def events(db: Database, device_id: str) -> list[DeviceLifecycleEvent]:
    with db.session() as session:
        return list(session.scalars(select(DeviceLifecycleEvent).where(DeviceLifecycleEvent.device_id == device_id)
                                    .order_by(DeviceLifecycleEvent.id)))


def credentials(db: Database, device_id: str) -> list[tuple[bool, str]]:
    with db.session() as session:
        rows = session.scalars(select(DeviceCredential).where(DeviceCredential.device_id == device_id)
                               .order_by(DeviceCredential.id))
        return [(row.active, row.password_hash) for row in rows]


COMMISSION = ("commission", "wanmei", "--id", "SL-44", "--kind", "streetlight", "--name", "新44号灯",
              "--circuit", "C1", "--rated-power-w", "60", "--x", "100", "--y", "200", "--actor", "wang")


def test_commission_writes_the_site_file_issues_a_credential_and_records_it(
    db: Database, site_file: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    before = site_file.read_text(encoding="utf-8")
    code, out, err = run(capsys, *COMMISSION, "--note", "new pole by the gate")
    assert code == 0, err
    assert "commissioned wanmei/SL-44" in out and "password " in out
    site = load_site(site_file)
    device = site.devices["SL-44"]
    assert (device.circuit, device.rated_power_w, device.position.x if device.position else None) == ("C1", 60, 100)
    text = site_file.read_text(encoding="utf-8")
    assert text.startswith(before.rstrip("\n"))  # appended at the end; the rest, header comments too, untouched
    assert site_file.with_name("wanmei.yaml.bak").read_text(encoding="utf-8") == before
    [event] = events(db, "SL-44")
    assert (event.site, event.type, event.actor, event.note) == ("wanmei", "commissioned", "wang", "new pole by the gate")
    assert [active for active, _ in credentials(db, "SL-44")] == [True]

    code, out, _ = run(capsys, "history", "wanmei/SL-44")
    assert code == 0 and "commissioned" in out and "by wang" in out and "new pole by the gate" in out


def test_an_invalid_or_duplicate_commission_changes_nothing(
    db: Database, site_file: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    before = site_file.read_text(encoding="utf-8")
    bad = [a if a != "C1" else "C9" for a in COMMISSION]
    code, out, err = run(capsys, *bad)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "unknown circuit 'C9'" in err
    code, _, err = run(capsys, "commission", "wanmei", "--id", "SL-07", "--kind", "streetlight", "--name", "x",
                       "--circuit", "C1", "--rated-power-w", "40")
    assert code == 2 and "already in site 'wanmei'" in err
    code, _, err = run(capsys, *[a if a != "wanmei" else "nowhere" for a in COMMISSION])
    assert code == 2 and "no site 'nowhere'" in err
    assert site_file.read_text(encoding="utf-8") == before
    assert not site_file.with_name("wanmei.yaml.bak").exists()
    assert events(db, "SL-44") == [] and credentials(db, "SL-44") == []
    assert run(capsys, "retire", "not-a-pair")[0] == 2


def test_replacing_the_controller_revokes_the_old_credential_and_issues_a_new_one(
    db: Database, site_file: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(capsys, *COMMISSION)[0] == 0
    file_before = site_file.read_text(encoding="utf-8")
    code, out, err = run(capsys, "replace-controller", "wanmei/SL-44", "--note", "water damage")
    assert code == 0, err
    assert "old broker account: revoked" in out and "password " in out
    rows = credentials(db, "SL-44")
    assert [active for active, _ in rows] == [False, True] and rows[0][1] != rows[1][1]
    assert [e.type for e in events(db, "SL-44")] == ["commissioned", "controller_replaced"]
    assert site_file.read_text(encoding="utf-8") == file_before  # same device id: history carries on


def test_replacing_a_lamp_records_its_offset_and_notes_it_on_the_end_of_life_ticket(
    db: Database, capsys: pytest.CaptureFixture[str],
) -> None:
    spec = FAULTS["end_of_life"]
    opened = {
        "site": "wanmei", "subject_type": "device", "subject_id": "SL-07", "fault": "end_of_life", "severity": "P3",
        "teams": [t.value for t in spec.teams], "device_ids": ["SL-07"], "title": "SL-07 · 灯具寿命到期",
        "ack_due_at": (NOW + timedelta(hours=24)).isoformat(), "start_due_at": None,
        "resolve_due_at": (NOW + timedelta(days=7)).isoformat(),
    }
    with db.session() as session:
        ticket_id = append_event(session, None, TicketEvent(EventType.OPENED, NOW, "system", "burn_hours 50012", opened)).id

    code, out, err = run(capsys, "replace-lamp", "wanmei/SL-07", "--burn-hours-at-replacement", "50012")
    assert code == 0, err
    assert f"end_of_life ticket #{ticket_id}" in out
    history = events(db, "SL-07")
    assert [(e.type, e.data) for e in history] == [("lamp_replaced", {"burn_hours_offset": 50012.0})]
    assert lamp_age_hours(history, 50_020) == 8
    with db.session() as session:
        ticket = session.get(TicketRow, ticket_id)
        assert ticket is not None and ticket.status == "open"
        last = ticket.events[-1]
        assert last.type == "commented" and "lamp replaced at 50012 burn hours" in (last.note or "")

    code, _, err = run(capsys, "replace-lamp", "wanmei/EL-1A", "--burn-hours-at-replacement", "1")
    assert code == 2 and "not a streetlight" in err
    code, _, err = run(capsys, "replace-lamp", "wanmei/SL-404", "--burn-hours-at-replacement", "1")
    assert code == 2 and "no device 'SL-404'" in err


def test_retiring_keeps_the_device_in_the_file_and_revokes_its_credential(
    db: Database, site_file: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(capsys, *COMMISSION)[0] == 0
    code, out, err = run(capsys, "retire", "wanmei/SL-44", "--note", "pole removed")
    assert code == 0, err
    assert "broker account: revoked" in out
    site = load_site(site_file)
    assert "SL-44" in site.retired and "SL-44" not in site.devices
    assert [active for active, _ in credentials(db, "SL-44")] == [False]
    assert [e.type for e in events(db, "SL-44")] == ["commissioned", "retired"]

    code, _, err = run(capsys, "retire", "wanmei/SL-44")
    assert code == 2 and "already retired" in err
    code, _, err = run(capsys, "replace-controller", "wanmei/SL-44")
    assert code == 2 and "is retired" in err
    code, _, err = run(capsys, *COMMISSION)
    assert code == 2 and "retired" in err
    code, out, _ = run(capsys, "history", "wanmei/SL-44")
    assert code == 0 and out.splitlines()[-1].split()[2] == "retired"


def test_history_of_a_device_without_events(db: Database, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "history", "wanmei/SL-07") == (0, "wanmei/SL-07: no lifecycle events\n", "")
