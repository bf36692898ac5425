"""Escalation against the real ticket store (SQLite and PostgreSQL): a P0 nobody acknowledges is
escalated up each team's chain of the shipped Wanmei site as the clock moves, once per level, and
the escalation stops when the teams act."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from linli.catalog import Severity
from linli.clock import ManualClock
from linli.engine import FaultRaised
from linli.site import SiteRegistry, builtin_site_path
from linli.storage import Database, TicketRow, migrate
from linli.storage.escalation import EscalationRecorded, EscalationService
from linli.storage.tickets import TicketService, append_event
from linli.tickets import EventType, Subject, TicketEvent

SITES = SiteRegistry.load([builtin_site_path()])
# Thursday 20:00 in Wanmei: the night shifts are on (sun_gong for the lifts, zhao_sf for the property crew).
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def open_trapped(database: Database) -> int:
    trapped = FaultRaised("wanmei", Subject("device", "EL-1A"), "trapped", Severity.P0, "elevator", ("EL-1A",), T0,
                          "car stopped between floors, occupied")
    with database.session() as session:
        change, = TicketService(SITES).apply(session, [trapped])
    return change.ticket_id


def act(database: Database, ticket_id: int, event: TicketEvent) -> None:
    with database.session() as session:
        append_event(session, session.get(TicketRow, ticket_id), event)


def summary(items: list[EscalationRecorded], minute: int) -> list[tuple[int, str, int, str, list[str]]]:
    return [(minute, e.team, e.level, e.reason, [p.id for p in e.people]) for e in items]


def test_an_unacknowledged_p0_is_escalated_at_the_right_moments_once_each(database_url: str) -> None:
    migrate(database_url)
    database = Database(database_url)
    clock = ManualClock(T0)
    service = EscalationService(SITES)
    ticket_id = open_trapped(database)
    seen: list[tuple[int, str, int, str, list[str]]] = []
    try:
        for minute in range(0, 121):
            clock.set(T0 + timedelta(minutes=minute))
            for _ in range(2):  # a second run at the same moment (a restart, another timer) adds nothing
                with database.session() as session:
                    seen += summary(service.run(session, clock.now()), minute)
            if minute == 22:
                act(database, ticket_id, TicketEvent(EventType.ACKNOWLEDGED, clock.now(), "wang", None,
                                                     {"team": "property"}))
            if minute == 26:
                act(database, ticket_id, TicketEvent(EventType.ACKNOWLEDGED, clock.now(), "sun", None,
                                                     {"team": "elevator_contractor"}))
            if minute == 29:
                act(database, ticket_id, TicketEvent(EventType.STARTED, clock.now(), "sun"))
        ec, prop = "elevator_contractor", "property"
        assert seen == [
            (5, ec, 1, "missed_ack", ["sun_gong"]),  # the night technician, at the 5-minute deadline
            (5, prop, 1, "missed_ack", ["zhao_sf"]),  # the property crew on its own chain
            (10, ec, 1, "reminder", ["sun_gong"]),  # the contractor's chain reminds every 5 minutes
            (15, ec, 2, "missed_ack", ["zheng_jl", "wang_jl"]),  # its lead and the property lead
            (20, ec, 2, "reminder", ["zheng_jl", "wang_jl"]),
            (20, prop, 2, "missed_ack", ["wang_jl"]),  # 15 minutes after the deadline, on the crew's chain
            (25, ec, 3, "missed_ack", ["zhou_zr", "lin_zz"]),  # the manager and the grid centre (its head at night)
        ]  # property acknowledged at 22, the contractor at 26 and was on site at 29: nothing after
        with database.session() as session:
            row = session.get(TicketRow, ticket_id)
            assert row is not None
            escalated = [e for e in row.events if e.type == "escalated"]
            assert [(e.data["team"], e.data["level"], e.data["reason"]) for e in escalated] == [
                (ec, 1, "missed_ack"), (prop, 1, "missed_ack"), (ec, 1, "reminder"), (ec, 2, "missed_ack"),
                (ec, 2, "reminder"), (prop, 2, "missed_ack"), (ec, 3, "missed_ack"),
            ]
            assert escalated[0].at == T0 + timedelta(minutes=5) and escalated[0].actor == "system"
            assert escalated[0].from_status == escalated[0].to_status == "open"
            assert escalated[0].data["people"] == ["sun_gong"] and escalated[0].note.startswith("超时未签收")
            assert row.status == "in_progress" and row.version == len(row.events)
    finally:
        database.close()


def test_what_the_service_returns_is_enough_to_notify(database_url: str) -> None:
    migrate(database_url)
    database = Database(database_url)
    try:
        ticket_id = open_trapped(database)
        with database.session() as session:
            items = EscalationService(SITES).run(session, T0 + timedelta(minutes=25))
        # A run that was down for 25 minutes records every level that fell due, in order.
        assert [(e.team, e.level) for e in items] == [
            ("elevator_contractor", 1), ("elevator_contractor", 2), ("elevator_contractor", 3),
            ("property", 1), ("property", 2)]
        top = items[2]
        assert (top.ticket_id, top.site, top.fault, top.severity, top.deadline) == (
            ticket_id, "wanmei", "trapped", Severity.P0, "ack")
        assert top.title is not None and "电梯困人" in top.title
        assert top.due_at == T0 + timedelta(minutes=25) and top.at == T0 + timedelta(minutes=25)
        manager = top.people[0]
        assert (manager.name, manager.phone, manager.wecom_userid) == ("周主任", "13800000001", "ZhouZhuRen")
        with database.session() as session:
            ids = [e.id for e in session.scalars(select(TicketRow)).one().events if e.type == "escalated"]
        assert [e.event_id for e in items] == ids  # one stored event per item: the notifier's idempotency key
    finally:
        database.close()


def test_the_24_hour_floor_reaches_a_ticket_written_with_a_longer_deadline(database_url: str) -> None:
    migrate(database_url)
    database = Database(database_url)
    try:
        opened = TicketEvent(EventType.OPENED, T0, "grid_officer", "路面积水", {
            "site": "wanmei", "subject_type": "place", "subject_id": "phase1", "fault": "report", "severity": "P3",
            "teams": ["grid"], "source": "grid_officer", "ack_due_at": (T0 + timedelta(hours=48)).isoformat(),
            "start_due_at": None, "resolve_due_at": (T0 + timedelta(days=7)).isoformat(),
        })
        with database.session() as session:
            append_event(session, None, opened)
        service = EscalationService(SITES)
        with database.session() as session:
            assert service.run(session, T0 + timedelta(hours=23, minutes=59)) == []
        with database.session() as session:
            items = service.run(session, T0 + timedelta(hours=24))
        assert [(e.team, e.level, e.reason) for e in items] == [("grid", 1, "missed_ack")]
    finally:
        database.close()


def test_an_acknowledgement_committed_while_the_service_runs_wins(database_url: str) -> None:
    migrate(database_url)
    database = Database(database_url)
    ticket_id = open_trapped(database)
    now = T0 + timedelta(minutes=6)

    class Interrupted(EscalationService):
        """Reads the overdue tickets, then lets a technician acknowledge before it writes."""

        def candidates(self, session: Session, now: datetime) -> list[TicketRow]:
            rows = super().candidates(session, now)
            act(database, ticket_id, TicketEvent(EventType.ACKNOWLEDGED, now, "sun", None, {"team": "elevator_contractor"}))
            return rows

    try:
        with database.session() as session:
            assert Interrupted(SITES).run(session, now) == []  # computed without the ack: not recorded
        with database.session() as session:
            # The next run sees the acknowledgement: only the property crew is still late.
            assert [(e.team, e.level) for e in EscalationService(SITES).run(session, now)] == [("property", 1)]
    finally:
        database.close()
