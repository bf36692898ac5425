"""`linli backup` / `linli restore` on SQLite and PostgreSQL: a backup restored into an empty data
directory (and, for PostgreSQL, a second empty database) serves the same tickets with the same
history, with residents' photos byte-identical; a damaged or altered archive is refused."""

from __future__ import annotations

import io
import json
import os
import secrets
import sqlite3
import stat
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api import create_app
from linli.catalog import FAULTS
from linli.clock import ManualClock, to_ms
from linli.ops.backup import backup_main, restore_main
from linli.settings import Settings
from linli.storage import Database, DeadLetter, ResidentReport, TicketRow, migrate
from linli.storage.tickets import append_event
from linli.storage.users import create_user
from linli.tickets import EventType, TicketEvent
from linli.tsdb import Point, open_store

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ADMIN_PASSWORD = "admin-secret-for-backup-tests"
SECRET_KEY = "s" * 40
PHOTO = "reports/r1/1.jpg"


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def settings_for(data_dir: Path, database_url: str = "") -> Settings:
    return Settings(
        _env_file=None, env="development", data_dir=data_dir, database_url=database_url,
        mqtt_url=f"mqtt://127.0.0.1:{closed_port()}", secret_key=SECRET_KEY, admin_password=ADMIN_PASSWORD,
    )


def open_ticket(session: Any, subject_id: str, fault: str, at: datetime) -> TicketRow:
    spec = FAULTS[fault]
    data = {
        "site": "wanmei", "subject_type": "device", "subject_id": subject_id, "fault": fault,
        "severity": spec.severity.value, "teams": [t.value for t in spec.teams], "source": "detector",
        "device_ids": [subject_id], "title": f"{subject_id} · {spec.zh}",
        "ack_due_at": (at + timedelta(hours=1)).isoformat(), "start_due_at": None,
        "resolve_due_at": (at + timedelta(hours=24)).isoformat(),
    }
    return append_event(session, None, TicketEvent(EventType.OPENED, at, "system", "detected", data))


def seed(settings: Settings) -> bytes:
    """Two tickets with history, a user, a resident report with a photo; returns the photo's bytes."""
    migrate(settings.db_url)
    db = Database(settings.db_url)
    photo = b"\xff\xd8\xff\xe0" + secrets.token_bytes(50_000)
    path = settings.data_dir / "uploads" / PHOTO
    path.parent.mkdir(parents=True)
    path.write_bytes(photo)
    try:
        with db.session() as session:
            create_user(session, "admin", ADMIN_PASSWORD, "admin", sites=["wanmei"], now=NOW)
            first = open_ticket(session, "SL-07", "lamp_failure", NOW - timedelta(hours=3))
            append_event(session, first, TicketEvent(EventType.ACKNOWLEDGED, NOW - timedelta(hours=2), "li.wei",
                                                     "on my way", {"team": "property"}))
            second = open_ticket(session, "SL-08", "day_burning", NOW - timedelta(hours=1))
            append_event(session, second, TicketEvent(EventType.COMMENTED, NOW - timedelta(minutes=30), "admin", "noted"))
            session.add(ResidentReport(
                id="r1", site="wanmei", device_id="SL-07", category="streetlight_out", description="灯不亮",
                contact="13800000000", location={}, photos=[PHOTO], source="resident", ticket_id=first.id,
                created_at=NOW - timedelta(hours=3), personal_data_removed_at=None,
            ))
    finally:
        db.close()
    store = open_store(settings.timeseries_url)
    try:
        store.write([Point("streetlight", {"site": "wanmei", "device": "SL-07"}, {"power_w": 39.5}, to_ms(NOW))])
    finally:
        store.close()
    return photo


@dataclass
class Served:
    tickets: dict[str, Any]
    details: dict[int, dict[str, Any]]


def serve(settings: Settings) -> Served:
    """What the API says about the tickets of `settings`' database, after logging in as admin."""
    with TestClient(create_app(settings, clock=ManualClock(NOW))) as client:
        login = client.post("/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD})
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        listing = client.get("/api/v1/tickets", headers=headers)
        assert listing.status_code == 200, listing.text
        details = {}
        for item in listing.json()["items"]:
            detail = client.get(f"/api/v1/tickets/{item['id']}", headers=headers)
            assert detail.status_code == 200
            details[item["id"]] = detail.json()
    return Served(listing.json(), details)


@pytest.fixture(params=["sqlite", "postgresql"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def source_url(kind: str, request: pytest.FixtureRequest) -> str:
    return "" if kind == "sqlite" else str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def target_url(kind: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """For PostgreSQL a second, empty database on the same server; for SQLite the default file."""
    if kind == "sqlite":
        yield ""
        return
    server = request.getfixturevalue("postgres_server")
    name = f"linli_restore_{secrets.token_hex(6)}"
    server.create_database(name)
    try:
        yield server.database_url(name)
    finally:
        server.drop_database(name)


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a .env (as an installer would have) and no LINLI_* leaking in."""
    for name in list(os.environ):
        if name.startswith("LINLI_"):
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / ".env").write_text(f"LINLI_SECRET_KEY={SECRET_KEY}\nLINLI_ADMIN_PASSWORD={ADMIN_PASSWORD}\n")
    return work


def use(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    monkeypatch.setenv("LINLI_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LINLI_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LINLI_MQTT_URL", settings.mqtt_url)


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        out = {}
        for member in tar:
            handle = tar.extractfile(member)
            assert handle is not None
            out[member.name] = handle.read()
        return out


def test_a_backup_restored_into_an_empty_data_dir_serves_the_same_tickets(
    kind: str, source_url: str, target_url: str, environment: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    source = settings_for(tmp_path / "source", source_url)
    photo = seed(source)
    before = serve(source)
    assert before.tickets["total"] == 2
    assert [h["type"] for h in before.details[min(before.details)]["history"]] == ["opened", "acknowledged"]

    use(monkeypatch, source)
    archive = tmp_path / "out" / "site.tar.gz"
    assert backup_main(["--out", str(archive)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(archive)
    assert "linli backup:" in captured.err  # progress on stderr
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600

    content = members(archive)
    manifest = json.loads(content["manifest.json"])
    assert manifest["database"]["kind"] == kind
    assert manifest["database"]["alembic_revision"]
    assert manifest["site_ids"] == ["wanmei"]
    assert manifest["contains_secrets"] is True  # the .env came along
    assert content["config/dotenv"] == (environment / ".env").read_bytes()
    listed = {f["path"] for f in manifest["files"]}
    assert f"uploads/{PHOTO}" in listed and "sites/wanmei.yaml" in listed and "config/settings.json" in listed
    assert ("database/linli.sqlite3" if kind == "sqlite" else "database/linli.pgdump") in listed
    if kind == "sqlite":
        assert content["database/linli.sqlite3"][18:20] == b"\x01\x01"  # one self-contained file, not WAL
    assert "timeseries/timeseries.sqlite3" in listed
    config = content["config/settings.json"].decode()
    assert SECRET_KEY not in config and ADMIN_PASSWORD not in config
    assert json.loads(config)["settings"]["secret_key"] == "***"

    restored_dir = tmp_path / "restored"  # does not exist yet: restore creates it
    argv = [str(archive), "--data-dir", str(restored_dir)]
    if target_url:
        argv += ["--database-url", target_url]
    assert restore_main(argv) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "restored 2 tickets, 1 resident reports, 1 upload files" in err
    assert "Traceback" not in err

    restored = settings_for(restored_dir, target_url)
    after = serve(restored)
    assert after.tickets == before.tickets
    assert after.details == before.details
    assert (restored_dir / "uploads" / PHOTO).read_bytes() == photo
    db = Database(restored.db_url)
    try:
        with db.session() as session:
            report = session.get(ResidentReport, "r1")
            assert report is not None and report.photos == [PHOTO] and report.contact == "13800000000"
    finally:
        db.close()
    assert stat.S_IMODE((restored_dir / "restored-config" / "dotenv").stat().st_mode) == 0o600
    store = open_store(restored.timeseries_url)
    try:
        samples = store.query(site="wanmei", kind="streetlight", device_id="SL-07", field="power_w",
                              since=NOW - timedelta(minutes=1), until=NOW + timedelta(minutes=1))
        assert [(s.ts, s.value) for s in samples] == [(NOW, 39.5)]
    finally:
        store.close()


def test_backup_is_consistent_while_the_gateway_writes_and_an_old_schema_is_migrated_on_restore(
    environment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    source = settings_for(tmp_path / "source")
    migrate(source.db_url, "0001")  # a database from an older Linli
    use(monkeypatch, source)
    db = Database(source.db_url)
    stop = threading.Event()
    written = [0]

    def gateway_writes() -> None:
        while not stop.is_set():
            with db.session() as session:
                session.add(DeadLetter(received_at=NOW, reason="bad_json", detail="x", topic="t", site=None,
                                       device_id=None, payload=secrets.token_bytes(2000)))
            written[0] += 1

    writer = threading.Thread(target=gateway_writes)
    writer.start()
    try:
        while written[0] < 50:
            threading.Event().wait(0.01)
        archive = tmp_path / "live.tar.gz"
        assert backup_main(["--out", str(archive), "--no-env-file"]) == 0
    finally:
        stop.set()
        writer.join()
        db.close()
    manifest = json.loads(members(archive)["manifest.json"])
    assert manifest["database"]["alembic_revision"] == "0001"
    assert manifest["contains_secrets"] is False and "config/dotenv" not in {f["path"] for f in manifest["files"]}

    restored = tmp_path / "restored"
    assert restore_main([str(archive), "--data-dir", str(restored)]) == 0, capsys.readouterr().err
    with sqlite3.connect(restored / "linli.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (head_revision(),)
        copied = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    assert 50 <= copied <= written[0]
    restored_db = Database(settings_for(restored).db_url)
    try:
        with restored_db.session() as session:
            assert session.scalars(select(ResidentReport)).all() == []  # the 0002 table exists now
    finally:
        restored_db.close()


@pytest.fixture
def sqlite_backup(environment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  capsys: pytest.CaptureFixture[str]) -> Path:
    source = settings_for(tmp_path / "source")
    seed(source)
    use(monkeypatch, source)
    archive = tmp_path / "good.tar.gz"
    assert backup_main(["--out", str(archive), "--no-env-file"]) == 0
    capsys.readouterr()
    return archive


def rewrite(archive: Path, out: Path, change: dict[str, bytes]) -> None:
    """The same members in the same order, some with other bytes: what an attacker or a bad disk does."""
    with tarfile.open(archive, "r:gz") as tar, tarfile.open(out, "w:gz") as new:
        for member in tar:
            handle = tar.extractfile(member)
            assert handle is not None
            data = change.get(member.name, handle.read())
            member.size = len(data)
            new.addfile(member, io.BytesIO(data))


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert restore_main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("linli restore: ") and "error: " in err
    return err


def test_a_tampered_archive_is_refused_and_nothing_is_restored(
    sqlite_backup: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    tampered = tmp_path / "tampered.tar.gz"
    rewrite(sqlite_backup, tampered, {f"uploads/{PHOTO}": b"\xff\xd8 not the resident's photo"})
    target = tmp_path / "target"
    err = refused([str(tampered), "--data-dir", str(target)], capsys)
    assert "checksum mismatch" in err and PHOTO in err
    assert not (target / "linli.db").exists() and not (target / "uploads").exists()
    assert [p.name for p in target.iterdir()] == []  # the staging area is gone too

    extra = tmp_path / "extra.tar.gz"
    with tarfile.open(sqlite_backup, "r:gz") as tar, tarfile.open(extra, "w:gz") as new:
        info = tarfile.TarInfo("uploads/../../evil.sh")
        info.size = 3
        new.addfile(info, io.BytesIO(b"boo"))
        for member in tar:
            new.addfile(member, tar.extractfile(member))
    assert "not in its manifest" in refused([str(extra), "--data-dir", str(tmp_path / "t2")], capsys)
    assert not (tmp_path / "evil.sh").exists()


def test_damaged_archives_and_wrong_targets_are_clear_errors(
    sqlite_backup: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(sqlite_backup.read_bytes()[: sqlite_backup.stat().st_size // 2])
    assert "damaged" in refused([str(truncated), "--data-dir", str(tmp_path / "a")], capsys)

    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"this is not an archive")
    assert "not a Linli backup" in refused([str(garbage), "--data-dir", str(tmp_path / "b")], capsys)

    assert "no such file" in refused([str(tmp_path / "missing.tar.gz"), "--data-dir", str(tmp_path / "c")], capsys)

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "linli.db").write_bytes(b"someone's data")
    assert "not empty" in refused([str(sqlite_backup), "--data-dir", str(busy)], capsys)
    assert (busy / "linli.db").read_bytes() == b"someone's data"
    assert "restores into SQLite" in refused(
        [str(sqlite_backup), "--data-dir", str(tmp_path / "d"), "--database-url", "postgresql+psycopg://x@127.0.0.1/x"],
        capsys)

    # --force replaces what is there
    assert restore_main([str(sqlite_backup), "--data-dir", str(busy), "--force"]) == 0
    with sqlite3.connect(busy / "linli.db") as conn:
        assert conn.execute("SELECT count(*) FROM tickets").fetchone() == (2,)


def test_pg_backup_errors_name_the_fix(
    postgres_url: str, environment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = settings_for(tmp_path / "source", postgres_url)
    seed(source)
    use(monkeypatch, source)
    archive = tmp_path / "pg.tar.gz"
    assert backup_main(["--out", str(archive), "--no-env-file"]) == 0
    capsys.readouterr()
    assert "give --database-url" in refused([str(archive), "--data-dir", str(tmp_path / "a")], capsys)
    # the source database is not empty: refused without --force
    assert "is not empty" in refused([str(archive), "--data-dir", str(tmp_path / "b"), "--database-url", postgres_url],
                                     capsys)
    # --force replaces its contents (pg_restore --clean): a ticket made after the backup is gone
    db = Database(postgres_url)
    try:
        with db.session() as session:
            open_ticket(session, "SL-09", "lamp_failure", NOW)
    finally:
        db.close()
    assert restore_main([str(archive), "--data-dir", str(tmp_path / "b"), "--database-url", postgres_url, "--force"]) == 0
    assert "restored 2 tickets" in capsys.readouterr().err
    # no PostgreSQL client tools
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert backup_main(["--out", str(tmp_path / "x.tar.gz"), "--no-env-file"]) == 2
    err = capsys.readouterr().err
    assert "`pg_dump` is not on PATH" in err and "Traceback" not in err
    assert "`pg_restore` is not on PATH" in refused(
        [str(archive), "--data-dir", str(tmp_path / "c"), "--database-url", postgres_url], capsys)


def head_revision() -> str:
    """The newest migration: a restored old backup must be brought up to it."""
    from alembic.script import ScriptDirectory

    from linli.storage.db import alembic_config

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head
