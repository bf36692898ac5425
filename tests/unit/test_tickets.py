"""Tickets: the state machine over appended events, and the engine's decisions made durable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from linli.catalog import Severity
from linli.engine import FaultCleared, FaultRaised
from linli.site import SiteRegistry, builtin_site_path
from linli.storage import Database, TicketRow, migrate
from linli.storage.tickets import StaleTicket, TicketService, append_event, view_of
from linli.tickets import EventType, Subject, TicketEvent, TicketStatus, TransitionError, apply, fold

T0 = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)
SITES = SiteRegistry.load([builtin_site_path()])


def opened(at: datetime = T0, teams: tuple[str, ...] = ("elevator_contractor", "property")) -> TicketEvent:
    return TicketEvent(EventType.OPENED, at, "system", "stuck between floors", {
        "site": "wanmei", "subject_type": "device", "subject_id": "EL-1A", "fault": "trapped", "severity": "P0",
        "teams": list(teams), "device_ids": ["EL-1A"], "ack_due_at": (at + timedelta(minutes=5)).isoformat(),
        "start_due_at": (at + timedelta(minutes=30)).isoformat(), "resolve_due_at": (at + timedelta(hours=24)).isoformat(),
    })


def ev(kind: EventType, minutes: float, actor: str = "wang", **data: object) -> TicketEvent:
    return TicketEvent(kind, T0 + timedelta(minutes=minutes), actor, None, data)


def held(minutes: float, reason: str) -> TicketEvent:
    return TicketEvent(EventType.HELD, T0 + timedelta(minutes=minutes), "wang", reason)  # a hold needs its reason


def test_each_team_acknowledges_for_itself_and_the_lead_team_moves_the_status() -> None:
    view = apply(None, opened())
    view = apply(view, ev(EventType.ACKNOWLEDGED, 1, "li", team="property"))
    assert view.status is TicketStatus.OPEN and "property" in view.acks and view.acknowledged_at is None
    view = apply(view, ev(EventType.ACKNOWLEDGED, 2, "zhang", team="elevator_contractor"))
    assert view.status is TicketStatus.ACKNOWLEDGED and view.acknowledged_by == "zhang"
    with pytest.raises(TransitionError, match="already acknowledged"):
        apply(view, ev(EventType.ACKNOWLEDGED, 3, team="property"))
    with pytest.raises(TransitionError, match="not one of this ticket's teams"):
        apply(view, ev(EventType.ACKNOWLEDGED, 3, team="charger_operator"))


def test_the_whole_life_of_a_ticket_and_the_hold_pausing_the_fix_clock() -> None:
    history = [
        opened(), ev(EventType.ACKNOWLEDGED, 1, team="elevator_contractor"), ev(EventType.STARTED, 10),
        held(20, "waiting for a spare part"), ev(EventType.RESUMED, 80), ev(EventType.RESOLVED, 90),
        ev(EventType.VERIFIED, 200, "system"), ev(EventType.CLOSED, 200, "system"),
    ]
    view = fold(history)
    assert view.status is TicketStatus.CLOSED and view.assignee == "wang"
    assert view.resolve_due_at == T0 + timedelta(hours=24, minutes=60)  # an hour on hold moved the deadline
    assert view.closed_at == T0 + timedelta(minutes=200)


@pytest.mark.parametrize(("steps", "bad"), [
    ([], EventType.RESOLVED),  # cannot resolve what nobody acknowledged or started
    ([], EventType.RESUMED),
    ([EventType.STARTED], EventType.VERIFIED),
    ([EventType.STARTED, EventType.RESOLVED], EventType.HELD),
])
def test_transitions_outside_the_state_machine_are_refused(steps: list[EventType], bad: EventType) -> None:
    view = apply(None, opened())
    for step in steps:
        view = apply(view, ev(step, 1))
    with pytest.raises(TransitionError):
        apply(view, ev(bad, 2))


def test_cancel_ends_any_open_state_and_severity_only_rises() -> None:
    view = apply(None, opened())
    with pytest.raises(TransitionError, match="only rise"):
        apply(view, ev(EventType.SEVERITY_RAISED, 1, severity="P2", ack_due_at=T0.isoformat(),
                       start_due_at=None, resolve_due_at=T0.isoformat()))
    cancelled = apply(view, ev(EventType.CANCELLED, 2, "manager"))
    assert cancelled.status is TicketStatus.CANCELLED and not cancelled.is_active
    with pytest.raises(TransitionError):
        apply(cancelled, ev(EventType.CANCELLED, 3))


@pytest.fixture
def database(tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'linli.db'}"
    migrate(url)
    return Database(url)


def raised(at: datetime, severity: Severity = Severity.P2, fault: str = "lamp_failure") -> FaultRaised:
    return FaultRaised("wanmei", Subject("device", "SL-07"), fault, severity, "streetlight", ("SL-07",), at, "dark")


def test_one_active_ticket_per_subject_and_fault(database: Database) -> None:
    service = TicketService(SITES)
    with database.session() as session:
        first = service.apply(session, [raised(T0)])
        again = service.apply(session, [raised(T0 + timedelta(minutes=1)), raised(T0 + timedelta(minutes=2))])
        other = service.apply(session, [raised(T0, fault="offline")])
    assert [c.event for c in first] == [EventType.OPENED] and again == [] and len(other) == 1
    with database.session() as session:
        rows = session.scalars(select(TicketRow).order_by(TicketRow.id)).all()
        assert [(r.fault, r.status, r.teams) for r in rows] == [
            ("lamp_failure", "open", ["property"]), ("offline", "open", ["property"])]
        assert rows[0].resolve_due_at == T0 + timedelta(hours=72)
        assert rows[0].title == f"{SITES['wanmei'].devices['SL-07'].name} · 灯具不亮"  # named for people, in Chinese


def test_severity_rise_recomputes_deadlines_and_cleared_signal_is_recorded(database: Database) -> None:
    service = TicketService(SITES)
    with database.session() as session:
        service.apply(session, [raised(T0)])
        changes = service.apply(session, [raised(T0 + timedelta(minutes=5), Severity.P0)])
        assert [c.event for c in changes] == [EventType.SEVERITY_RAISED]
        service.apply(session, [FaultCleared("wanmei", Subject("device", "SL-07"), "lamp_failure", T0 + timedelta(hours=1))])
    with database.session() as session:
        row = session.scalars(select(TicketRow)).one()
        assert row.severity == "P0" and row.ack_due_at == T0 + timedelta(minutes=5)
        assert row.signal_cleared_at == T0 + timedelta(hours=1) and row.status == "open"
        assert [e.type for e in row.events] == ["opened", "severity_raised", "signal_cleared"]
        assert view_of(row).severity is Severity.P0  # the projection is the fold of the events


def test_recurrence_within_72_hours_reopens_the_same_ticket(database: Database) -> None:
    service = TicketService(SITES)
    with database.session() as session:
        service.apply(session, [raised(T0)])
        row = session.scalars(select(TicketRow)).one()
        for step in (EventType.STARTED, EventType.RESOLVED, EventType.VERIFIED, EventType.CLOSED):
            append_event(session, row, ev(step, 30))
        changes = service.apply(session, [raised(T0 + timedelta(hours=48))])
        assert [c.event for c in changes] == [EventType.REOPENED]
        row = session.scalars(select(TicketRow)).one()
        assert (row.status, row.reopen_count, row.active) == ("open", 1, True)


def test_versioned_writes_refuse_a_stale_update(database: Database) -> None:
    with database.session() as session:
        row = append_event(session, None, opened())
        version = row.version
        append_event(session, row, ev(EventType.COMMENTED, 1), expected_version=version)
        with pytest.raises(StaleTicket):
            append_event(session, row, ev(EventType.COMMENTED, 2), expected_version=version)
