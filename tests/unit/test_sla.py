"""SLA and escalation: on-call rosters, missed deadlines per team, escalation levels and reminders,
the 24 h floor, holds and severity rises. Fixed datetimes stand in for the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from linli.site import Site, SiteConfigError, builtin_site_path, load_site, parse_site
from linli.sla import Escalation, due_escalations, on_duty, overdue
from linli.tickets import EventType, TicketEvent, TicketView, TransitionError, apply, fold

SHANGHAI = ZoneInfo("Asia/Shanghai")
# A Wednesday, 10:00 in Wanmei.
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI).astimezone(UTC)


def site_document(**teams: dict[str, Any]) -> dict[str, Any]:
    people = [
        {"id": "mgr", "name": "周主任", "phone": 13800000001, "email": "zhou@example.cn", "wecom_userid": "Zhou"},
        {"id": "day", "name": "李工", "phone": "13800000002"},
        {"id": "night", "name": "赵师傅", "wecom_userid": "Zhao"},
        {"id": "weekend", "name": "刘师傅"},
        {"id": "boss", "name": "王经理"},
        {"id": "lift", "name": "吴工"},
        {"id": "lift_boss", "name": "郑经理"},
        {"id": "grid_officer", "name": "黄网格员"},
    ]
    default_teams: dict[str, dict[str, Any]] = {
        "property": {
            "name": "物业工程部", "lead": "boss",
            "roster": [
                {"person": "day", "days": "mon-fri", "hours": "08:00-20:00"},
                {"person": "night", "days": "mon-thu", "hours": "20:00-08:00"},  # Friday night: nobody
                {"person": "weekend", "days": "sun", "hours": "22:00-06:00"},  # into Monday morning
            ],
            "escalation": {"remind_every": "5m", "levels": [
                {"after": "0m", "notify": ["on_duty"]},
                {"after": "15m", "notify": ["lead"]},
                {"after": "30m", "notify": ["manager", "on_duty:grid"]},
            ]},
        },
        "grid": {"name": "社区网格中心", "roster": [{"person": "grid_officer"}]},
        "elevator_contractor": {
            "name": "电梯维保单位", "lead": "lift_boss", "roster": [{"person": "lift", "days": "daily"}],
            "escalation": {"remind_every": None, "levels": [
                {"after": "0m", "notify": ["on_duty"]},
                {"after": "10m", "notify": ["lead", "lead:property"]},
            ]},
        },
        "charger_operator": {"name": "充电桩运营商"},
    }
    default_teams.update(teams)
    return {
        "site": {"id": "duty", "name": "值班苑", "coordinates": {"latitude": 26.1, "longitude": 119.3}, "manager": "mgr"},
        "compounds": [{"id": "main", "name": "值班苑"}],
        "buildings": [{"id": "B1", "compound": "main", "name": "1号楼", "lowest_floor": -1, "highest_floor": 18,
                       "rated_speed_mps": 1.75}],
        "cabinets": [{"id": "CAB-1", "name": "1号配电箱", "circuits": [{"id": "C1", "name": "道路", "switched": True}]}],
        "people": people,
        "teams": default_teams,
        "devices": [
            {"id": "SL-01", "kind": "streetlight", "name": "1号路灯", "circuit": "C1", "rated_power_w": 40},
            {"id": "EL-1A", "kind": "elevator", "name": "1号楼A梯", "building": "B1"},
        ],
    }


def make_site(document: dict[str, Any] | None = None) -> Site:
    return parse_site(yaml.safe_dump(document or site_document(), allow_unicode=True), Path("duty.yaml"))


SITE = make_site()


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """Wanmei wall-clock time in the week of 2026-11-23 (day 0 = Monday 23 November)."""
    return datetime(2026, 11, 23, hour, minute, tzinfo=SHANGHAI).astimezone(UTC) + timedelta(days=day)


def duty_ids(team: str, at: datetime, site: Site = SITE) -> list[str]:
    return [p.id for p in on_duty(site, team, at)]


# --- rosters ----------------------------------------------------------------------------------


def test_roster_follows_the_week_in_the_site_time_zone_across_midnight() -> None:
    assert duty_ids("property", local(2, 9)) == ["day"]  # Wednesday morning
    assert duty_ids("property", local(2, 19, 59)) == ["day"]
    assert duty_ids("property", local(2, 20)) == ["night"]  # the night shift starts at 20:00 local, 12:00 UTC
    assert duty_ids("property", local(3, 7, 59)) == ["night"]  # Thursday early: Wednesday's night shift
    assert duty_ids("property", local(5, 3)) == ["boss"]  # Saturday 03:00: Friday night has no shift
    assert duty_ids("property", local(4, 7)) == ["night"]  # Friday 07:00 is still Thursday's night


def test_a_sunday_night_shift_runs_into_monday_and_the_lead_covers_the_gaps() -> None:
    assert duty_ids("property", local(6, 23)) == ["weekend"]  # Sunday 23:00
    assert duty_ids("property", local(7, 5, 59)) == ["weekend"]  # Monday 05:59, the next week
    assert duty_ids("property", local(1, 5, 59)) == ["night"]  # Tuesday early: Monday's night shift
    assert duty_ids("property", local(7, 6)) == ["boss"]  # Monday 06:00 to 08:00: nobody's shift
    assert duty_ids("property", local(6, 12)) == ["boss"]  # Sunday noon
    assert duty_ids("grid", local(6, 12)) == ["grid_officer"]  # a shift with no days or hours is always on
    assert duty_ids("charger_operator", local(2, 12)) == []  # neither roster nor lead


# --- tickets ----------------------------------------------------------------------------------


def opened(
    at: datetime = T0, severity: str = "P0", teams: tuple[str, ...] = ("elevator_contractor", "property"),
    ack: timedelta = timedelta(minutes=5), start: timedelta | None = timedelta(minutes=30),
    resolve: timedelta = timedelta(hours=24),
) -> TicketEvent:
    return TicketEvent(EventType.OPENED, at, "system", "trapped", {
        "site": "duty", "subject_type": "device", "subject_id": "EL-1A", "fault": "trapped", "severity": severity,
        "teams": list(teams), "ack_due_at": (at + ack).isoformat(),
        "start_due_at": (at + start).isoformat() if start else None, "resolve_due_at": (at + resolve).isoformat(),
    })


class Ticket:
    """A ticket's history, with the escalation runner's loop: ask what is due, record it."""

    def __init__(self, first: TicketEvent, site: Site = SITE) -> None:
        self.history = [first]
        self.site = site
        self.t0 = first.at  # minutes below count from the opening

    @property
    def view(self) -> TicketView:
        return fold(self.history)

    def add(self, kind: EventType, minutes: float, actor: str = "wang", note: str | None = None, **data: Any) -> None:
        event = TicketEvent(kind, self.t0 + timedelta(minutes=minutes), actor, note, data)
        fold([*self.history, event])  # the state machine checks it first
        self.history.append(event)

    def due(self, minutes: float) -> list[Escalation]:
        return due_escalations(self.view, self.history, self.site, self.t0 + timedelta(minutes=minutes))

    def run(self, minutes: float) -> list[tuple[str, str, int, str]]:
        """Record what is due at T0 + `minutes`; (team, deadline, level, reason) of each."""
        now = self.t0 + timedelta(minutes=minutes)
        due = self.due(minutes)
        for escalation in due:
            self.add(EventType.ESCALATED, minutes, "system", None, **escalation.event(now).data)
        return [(e.team, e.deadline, e.level, e.reason) for e in due]


def test_p0_unacknowledged_escalates_at_its_deadline_then_up_the_chain_once_each() -> None:
    ticket = Ticket(opened(teams=("property",)))
    assert ticket.run(4.99) == []
    assert ticket.run(5) == [("property", "ack", 1, "missed_ack")]
    assert ticket.run(5) == []  # recorded: asking again at the same moment adds nothing
    assert ticket.run(9) == []
    assert ticket.run(10) == [("property", "ack", 1, "reminder")]  # every 5 minutes at the current level
    assert ticket.run(14.9) == []
    assert ticket.run(19.9) == [("property", "ack", 1, "reminder")]  # a late run catches up with one, not two
    assert ticket.run(20) == [("property", "ack", 2, "missed_ack")]  # 15 minutes after the deadline
    assert ticket.run(35) == [("property", "ack", 3, "missed_ack")]
    assert ticket.run(40) == [("property", "ack", 3, "reminder")]  # the top level keeps being reminded
    assert ticket.run(40) == []
    ticket.add(EventType.ACKNOWLEDGED, 41, team="property")
    # Acknowledged, but not on site within 30 minutes: that deadline's chain starts at level 1.
    assert ticket.run(41) == [("property", "start", 1, "missed_start")]
    ticket.add(EventType.STARTED, 42)
    assert ticket.run(400) == []  # the fix deadline is 24 h
    escalated = [(e.data["deadline"], e.data["level"]) for e in ticket.history if e.type is EventType.ESCALATED]
    assert escalated == [("ack", 1), ("ack", 1), ("ack", 1), ("ack", 2), ("ack", 3), ("ack", 3), ("start", 1)]


def test_who_is_told_and_how_to_reach_them() -> None:
    ticket = Ticket(opened(at=local(2, 21), teams=("property",)))  # Wednesday 21:00: the night shift
    level1, = ticket.due(5)
    assert [p.id for p in level1.people] == ["night"] and level1.people[0].wecom_userid == "Zhao"
    ticket.run(5)
    level2, level3 = ticket.due(35)
    assert [p.id for p in level2.people] == ["boss"]
    assert [p.id for p in level3.people] == ["mgr", "grid_officer"]
    manager = level3.people[0]
    assert (manager.phone, manager.email, manager.wecom_userid) == ("13800000001", "zhou@example.cn", "Zhou")
    event = level3.event(T0)
    assert event.data["people"] == ["mgr", "grid_officer"] and event.data["reason"] == "missed_ack"
    assert event.note is not None and event.note.startswith("超时未签收")


def test_each_team_is_escalated_on_its_own() -> None:
    ticket = Ticket(opened())  # elevator contractor leads, property second
    ticket.add(EventType.ACKNOWLEDGED, 2, "li", team="property")
    assert ticket.run(5) == [("elevator_contractor", "ack", 1, "missed_ack")]
    assert ticket.run(14) == []  # no reminders configured for the contractor
    ticket.add(EventType.ACKNOWLEDGED, 14, "wu", team="elevator_contractor")
    assert ticket.run(29) == []
    # On site is the lead team's deadline only; the contractor's chain starts again at level 1.
    assert ticket.run(30) == [("elevator_contractor", "start", 1, "missed_start")]
    assert ticket.run(45) == [("elevator_contractor", "start", 2, "missed_start")]


def test_the_second_team_is_chased_until_it_acknowledges_even_when_the_lead_is_at_work() -> None:
    ticket = Ticket(opened())
    ticket.add(EventType.STARTED, 3, "wu")  # the lead team on site counts as its acknowledgement
    assert ticket.run(5) == [("property", "ack", 1, "missed_ack")]
    assert [o.team for o in overdue(ticket.view, ticket.history, T0 + timedelta(minutes=5))] == ["property"]
    ticket.add(EventType.ACKNOWLEDGED, 6, "li", team="property")
    assert ticket.run(60) == []


def test_no_ticket_waits_more_than_24_hours_for_acknowledgement_whatever_the_chain() -> None:
    document = site_document(property={
        "name": "物业工程部", "lead": "boss",
        "escalation": {"remind_every": "1h", "levels": [{"after": "2h", "notify": ["lead"]},
                                                          {"after": "3h", "notify": ["manager"]}]},
    })
    site = make_site(document)
    p3 = opened(severity="P3", teams=("property",), ack=timedelta(hours=24), start=None, resolve=timedelta(days=7))
    ticket = Ticket(p3, site)
    assert ticket.run(24 * 60 - 1) == []
    assert ticket.run(24 * 60) == [("property", "ack", 1, "missed_ack")]  # not 2 h later
    assert ticket.run(26 * 60) == [("property", "ack", 1, "reminder")]  # hourly reminders
    assert ticket.run(26 * 60) == []
    assert ticket.run(27 * 60) == [("property", "ack", 2, "missed_ack")]  # 3 h after the deadline
    # A deadline written longer than 24 h (an old ticket, an imported one) is held to the floor too.
    long = Ticket(opened(severity="P3", teams=("property",), ack=timedelta(hours=48), start=None,
                         resolve=timedelta(days=7)))
    assert long.run(24 * 60) == [("property", "ack", 1, "missed_ack")]


def test_missed_fix_and_the_hold_that_pauses_it() -> None:
    ticket = Ticket(opened(teams=("property",)))
    ticket.add(EventType.ACKNOWLEDGED, 1, team="property")
    ticket.add(EventType.STARTED, 20)
    with pytest.raises(TransitionError, match="needs a reason"):
        ticket.add(EventType.HELD, 23 * 60)
    with pytest.raises(TransitionError, match="needs a reason"):
        ticket.add(EventType.HELD, 23 * 60, note="   ")
    ticket.add(EventType.HELD, 23 * 60, note="等待厂家配件 / waiting for a spare part")
    assert ticket.run(26 * 60) == []  # past the 24 h fix deadline, but on hold
    ticket.add(EventType.RESUMED, 27 * 60)  # four hours on hold: due at 28 h
    assert ticket.view.resolve_due_at == T0 + timedelta(hours=28)
    assert ticket.run(28 * 60 - 1) == []
    assert ticket.run(28 * 60) == [("property", "resolve", 1, "missed_fix")]
    ticket.add(EventType.RESOLVED, 28 * 60 + 5, note="换了接触器")
    assert ticket.run(40 * 60) == []


def test_a_severity_rise_re_times_escalation() -> None:
    ticket = Ticket(opened(severity="P2", teams=("property",), ack=timedelta(hours=24), start=None,
                           resolve=timedelta(hours=72)))
    assert ticket.run(60) == []
    # Leakage reached 30 mA: P0 deadlines, counted from the opening (linli.storage.tickets).
    ticket.add(EventType.SEVERITY_RAISED, 60, "system", severity="P0",
               ack_due_at=(T0 + timedelta(minutes=5)).isoformat(), start_due_at=(T0 + timedelta(minutes=30)).isoformat(),
               resolve_due_at=(T0 + timedelta(hours=24)).isoformat())
    first, = ticket.due(60)
    assert (first.level, first.due_at) == (1, T0 + timedelta(minutes=60))  # at once, not 55 minutes late
    ticket.run(60)
    assert ticket.run(74) == [("property", "ack", 1, "reminder")]  # reminders every 5m since 60 min
    assert ticket.run(75) == [("property", "ack", 2, "missed_ack")]  # the chain's delays run from the rise
    # A rise whose deadline is still ahead keeps it: P3 to P1 at 10 min, acknowledge by 1 h.
    other = Ticket(opened(severity="P3", teams=("property",), ack=timedelta(hours=24), start=None,
                          resolve=timedelta(days=7)))
    other.add(EventType.SEVERITY_RAISED, 10, "system", severity="P1", ack_due_at=(T0 + timedelta(hours=1)).isoformat(),
              start_due_at=(T0 + timedelta(hours=4)).isoformat(), resolve_due_at=(T0 + timedelta(hours=24)).isoformat())
    assert other.run(59) == []
    assert other.run(60) == [("property", "ack", 1, "missed_ack")]


def test_a_reopened_ticket_starts_its_chains_again_and_ended_tickets_are_left_alone() -> None:
    ticket = Ticket(opened(teams=("property",)))
    ticket.run(5)
    ticket.run(20)
    ticket.add(EventType.ACKNOWLEDGED, 21, team="property")
    ticket.add(EventType.RESOLVED, 25)
    ticket.add(EventType.REOPENED, 60, "system", ack_due_at=(T0 + timedelta(minutes=65)).isoformat(),
               start_due_at=None, resolve_due_at=(T0 + timedelta(hours=25)).isoformat())
    assert ticket.view.escalations == {}
    assert ticket.run(65) == [("property", "ack", 1, "missed_ack")]
    ticket.add(EventType.CANCELLED, 66, "manager", note="误报")
    assert ticket.run(500) == []


def test_the_state_machine_refuses_escalations_out_of_order() -> None:
    view = apply(None, opened(teams=("property",)))

    def escalated(level: int, reason: str = "missed_ack", team: str = "property") -> TicketEvent:
        return TicketEvent(EventType.ESCALATED, T0, "system", None,
                           {"team": team, "deadline": "ack", "level": level, "reason": reason})

    with pytest.raises(TransitionError, match="next is 1"):
        apply(view, escalated(2))
    with pytest.raises(TransitionError, match="reminder"):
        apply(view, escalated(1, "reminder"))
    with pytest.raises(TransitionError, match="not one of this ticket's teams"):
        apply(view, escalated(1, team="grid"))
    view = apply(view, escalated(1))
    with pytest.raises(TransitionError, match="next is 2"):
        apply(view, escalated(1))
    assert view.escalations[("ack", "property")].level == 1
    assert view.status.value == "open"  # an escalation changes no status


# --- the site file ----------------------------------------------------------------------------


def test_unknown_people_and_roles_are_reported_where_they_are(tmp_path: Path) -> None:
    document = site_document()
    document["site"]["manager"] = "nobody"
    teams = document["teams"]
    teams["property"]["lead"] = "ghost"
    teams["property"]["roster"][1]["person"] = "phantom"
    teams["property"]["escalation"]["levels"][2]["notify"] = ["manager", "on_duty:plumbers", "lead:charger_operator"]
    teams["elevator_contractor"]["escalation"]["levels"][1]["notify"] = ["someone"]
    with pytest.raises(SiteConfigError) as info:
        make_site(document)
    message = str(info.value)
    assert "duty.yaml: site.manager: unknown person 'nobody'" in message
    assert "duty.yaml: teams.property.lead: unknown person 'ghost'" in message
    assert "teams.property.roster[1].person: unknown person 'phantom'" in message
    assert "teams.property.escalation.levels[2].notify[1]: team 'plumbers' is not defined under teams" in message
    assert "teams.property.escalation.levels[2].notify[2]: team 'charger_operator' has no lead" in message
    assert "teams.elevator_contractor.escalation.levels[1].notify[0]: 'someone' is neither a role" in message


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("days", "mon-fry", "is not a list of days"),
    ("hours", "8-18", "is not an hours range"),
    ("hours", "08:00-24:30", "is not an hours range"),
    ("hours", 1080, "write it as text"),  # what YAML makes of an unquoted 18:00
])
def test_bad_roster_lines_are_refused(field: str, value: object, problem: str) -> None:
    document = site_document()
    document["teams"]["property"]["roster"][0][field] = value
    with pytest.raises(SiteConfigError, match=rf"teams\.property\.roster\[0\]\.{field}: .*{problem}"):
        make_site(document)


def test_escalation_levels_must_come_in_order_and_people_ids_are_unique() -> None:
    document = site_document()
    document["teams"]["property"]["escalation"]["levels"][1]["after"] = "1h"
    document["people"].append({"id": "day", "name": "又一个李工"})
    with pytest.raises(SiteConfigError) as info:
        make_site(document)
    assert "teams.property.escalation: levels must come in order" in str(info.value)
    document["teams"]["property"]["escalation"]["levels"][1]["after"] = "15m"
    with pytest.raises(SiteConfigError, match=r"people\[8\]\.id: duplicate id 'day'"):
        make_site(document)


def test_the_shipped_wanmei_site_has_someone_on_duty_for_every_team_at_any_hour() -> None:
    wanmei = load_site(builtin_site_path())
    for hour in range(0, 24 * 7, 1):
        moment = local(0, 0) + timedelta(hours=hour, minutes=30)
        for team in ("property", "grid", "elevator_contractor", "charger_operator"):
            assert on_duty(wanmei, team, moment), (team, moment)
