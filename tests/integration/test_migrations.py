"""Schema migrations on SQLite and PostgreSQL: a database created by revision 0001, with data in
it, upgraded to the latest revision (and down and up again) keeps its data; the ORM models and
the migrations describe the same schema."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text

from linli.storage import (
    Base,
    Database,
    DeadLetter,
    DeviceCredential,
    DeviceLifecycleEvent,
    DeviceState,
    ResidentReport,
    TicketRow,
    User,
    migrate,
)
from linli.storage.db import downgrade, make_engine
from linli.storage.tickets import view_of
from linli.tickets import TicketStatus

OPENED = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TABLES_0001 = {"users", "tickets", "ticket_events", "dead_letters", "device_states"}
HEAD = "0008"  # the latest revision
TABLES_0002 = {"device_credentials", "device_lifecycle_events", "resident_reports"}
TABLES_0003 = {"device_engine_states"}
TABLES_0004: set[str] = {"site_leases"}  # site leases (standby gateways)
TABLES_0005 = {"notifications"}
TABLES_0006: set[str] = {"maintenance_windows"}  # fault engine: maintenance windows
TABLES_0007: set[str] = {"device_commands"}  # commands to devices and their outcomes
TABLES_0008: set[str] = {"published_monthly_reports"}  # monthly reports frozen when published
TABLES_LATER = TABLES_0002 | TABLES_0003 | TABLES_0004 | TABLES_0005 | TABLES_0006 | TABLES_0007 | TABLES_0008


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def revision(engine: Engine) -> str:
    with engine.connect() as connection:
        return str(connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


def seed_as_0001(engine: Engine) -> None:
    """Rows written with plain SQL, as the code of revision 0001 stored them."""
    sqlite = engine.dialect.name == "sqlite"

    def at(moment: datetime) -> Any:  # SQLite keeps naive UTC text; PostgreSQL timestamptz
        return moment.replace(tzinfo=None).isoformat(sep=" ") if sqlite else moment

    def js(name: str) -> str:  # a JSON column: text in SQLite, json in PostgreSQL
        return f":{name}" if sqlite else f"CAST(:{name} AS JSON)"

    due = {"ack": OPENED + timedelta(hours=24), "resolve": OPENED + timedelta(hours=72)}
    opened_data = (
        '{"site": "wanmei", "subject_type": "device", "subject_id": "SL-07", "fault": "lamp_failure", '
        '"severity": "P2", "teams": ["property"], "source": "detector", "device_ids": ["SL-07"], '
        f'"title": "中心广场7号灯 · 灯不亮", "ack_due_at": "{due["ack"].isoformat()}", "start_due_at": null, '
        f'"resolve_due_at": "{due["resolve"].isoformat()}"}}'
    )
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO users (id, username, password_hash, role, full_name, teams, sites, disabled, created_at) "
            f"VALUES (1, 'wang', 'argon2-hash', 'technician', '王师傅', {js('teams')}, {js('sites')}, :disabled, :at)"
        ), {"teams": '["property"]', "sites": '["wanmei"]', "disabled": False, "at": at(OPENED)})
        connection.execute(text(
            "INSERT INTO tickets (id, site, subject_type, subject_id, device_id, device_ids, fault, title, severity, "
            "teams, acks, assignee, status, active, source, opened_at, ack_due_at, start_due_at, resolve_due_at, "
            "acknowledged_at, acknowledged_by, resolved_at, closed_at, parent_id, signal_cleared_at, reopen_count, "
            "version, updated_at) VALUES (1, 'wanmei', 'device', 'SL-07', 'SL-07', "
            f"{js('device_ids')}, 'lamp_failure', '中心广场7号灯 · 灯不亮', 'P2', {js('teams')}, {js('acks')}, NULL, "
            "'acknowledged', :active, 'detector', :opened, :ack_due, NULL, :resolve_due, :acked, 'wang', NULL, NULL, "
            "NULL, NULL, 0, 2, :acked)"
        ), {"device_ids": '["SL-07"]', "teams": '["property"]',
            "acks": f'{{"property": {{"by": "wang", "at": "{(OPENED + timedelta(minutes=5)).isoformat()}"}}}}',
            "active": True, "opened": at(OPENED), "ack_due": at(due["ack"]), "resolve_due": at(due["resolve"]),
            "acked": at(OPENED + timedelta(minutes=5))})
        for event_id, kind, moment, actor, before, after, data in (
            (1, "opened", OPENED, "system", None, "open", opened_data),
            (2, "acknowledged", OPENED + timedelta(minutes=5), "wang", "open", "acknowledged", '{"team": "property"}'),
        ):
            connection.execute(text(
                "INSERT INTO ticket_events (id, ticket_id, type, at, actor, from_status, to_status, note, data) "
                f"VALUES (:id, 1, :type, :at, :actor, :before, :after, NULL, {js('data')})"
            ), {"id": event_id, "type": kind, "at": at(moment), "actor": actor, "before": before, "after": after,
                "data": data})
        connection.execute(text(
            "INSERT INTO dead_letters (id, received_at, reason, detail, topic, site, device_id, payload) "
            "VALUES (1, :at, 'not_json', 'payload is not JSON', 'estate/v1/wanmei/streetlight/SL-07/telemetry', "
            "'wanmei', 'SL-07', :payload)"
        ), {"at": at(OPENED), "payload": b"\x00\x01 not json"})
        connection.execute(text(
            "INSERT INTO device_states (site, device_id, kind, online, last_seen, status, last, last_seq, boot, "
            f"updated_at) VALUES ('wanmei', 'SL-07', 'streetlight', :online, :at, {js('status')}, {js('last')}, 41, 7, "
            ":at)"
        ), {"online": True, "at": at(OPENED), "status": '{"online": true}', "last": '{"power_w": 0.4, "relay": true}'})
        if not sqlite:  # explicit ids: move the sequences past them, as the ORM's inserts would have
            for table in ("users", "tickets", "ticket_events", "dead_letters"):
                connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 10)"))


def assert_0001_data_intact(database: Database) -> None:
    with database.session() as session:
        user = session.scalars(select(User).where(User.username == "wang")).one()
        assert (user.role, user.full_name, user.teams, user.sites, user.disabled) == (
            "technician", "王师傅", ["property"], ["wanmei"], False)
        assert user.created_at == OPENED
        ticket = session.get(TicketRow, 1)
        assert ticket is not None
        assert [e.type for e in ticket.events] == ["opened", "acknowledged"]
        view = view_of(ticket)  # the history still folds to the projection
        assert view.status is TicketStatus.ACKNOWLEDGED and ticket.status == "acknowledged"
        assert view.acknowledged_by == "wang" and view.device_ids == ("SL-07",)
        assert ticket.opened_at == OPENED and ticket.acks["property"]["by"] == "wang"
        letter = session.get(DeadLetter, 1)
        assert letter is not None and letter.payload == b"\x00\x01 not json" and letter.received_at == OPENED
        state = session.get(DeviceState, ("wanmei", "SL-07"))
        assert state is not None and state.last == {"power_w": 0.4, "relay": True} and state.last_seq == 41
        assert state.last_seen == OPENED


def use_0002_tables(database: Database, new_user: str) -> None:
    later = OPENED + timedelta(days=1)
    with database.session() as session:
        session.add(DeviceCredential(site="wanmei", device_id="SL-07", kind="streetlight", username="wanmei.SL-07",
                                     password_hash="$7$101$x$y", active=True, created_at=later))
        session.add(DeviceLifecycleEvent(site="wanmei", device_id="SL-07", type="lamp_replaced", at=later, actor="wang",
                                         note=None, data={"burn_hours_offset": 51000}))
        session.add(ResidentReport(id="r-abc", site="wanmei", device_id="SL-07", category="streetlight",
                                   description="灯不亮", contact=None, location={}, photos=[], ticket_id=1,
                                   created_at=later))
    with database.session() as session:
        credential = session.scalars(select(DeviceCredential)).one()
        assert credential.username == "wanmei.SL-07" and credential.created_at == later
        event = session.scalars(select(DeviceLifecycleEvent)).one()
        assert event.data == {"burn_hours_offset": 51000}
        report = session.get(ResidentReport, "r-abc")
        assert report is not None and report.ticket_id == 1 and report.source == "resident"
        # New rows in the old tables get ids past the ones revision 0001 held.
        session.add(User(username=new_user, password_hash="h", role="viewer", full_name=None, teams=[], sites=[],
                         disabled=False, created_at=later))
        session.flush()
        assert session.scalars(select(User.id).where(User.username == new_user)).one() > 1


def test_a_database_of_revision_0001_with_data_upgrades_to_the_latest(database_url: str, engine: Engine) -> None:
    migrate(database_url, "0001")
    assert revision(engine) == "0001" and tables(engine) == TABLES_0001
    seed_as_0001(engine)

    migrate(database_url)
    assert revision(engine) == HEAD and tables(engine) == TABLES_0001 | TABLES_LATER
    database = Database(database_url)
    try:
        assert_0001_data_intact(database)
        use_0002_tables(database, "li")

        database.engine.dispose()  # no pooled connection while the schema changes
        downgrade(database_url, "0001")
        assert revision(engine) == "0001" and tables(engine) == TABLES_0001
        assert_0001_data_intact(database)

        migrate(database_url)
        assert revision(engine) == HEAD and tables(engine) == TABLES_0001 | TABLES_LATER
        assert_0001_data_intact(database)
        with database.session() as session:
            assert session.scalars(select(DeviceCredential)).all() == []  # what the downgrade dropped stays gone
        use_0002_tables(database, "zhao")
    finally:
        database.close()


def test_the_models_and_the_migrations_agree(database_url: str, engine: Engine) -> None:
    migrate(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": False})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
