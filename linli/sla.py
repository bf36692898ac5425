"""Service levels in motion: who is on duty, which deadlines are missed, what escalation is due.

Pure code over a ticket's fold and history (``linli.tickets``) and its site's on-call config
(``linli.oncall``). Every escalation is recorded on the ticket as an ``escalated`` event, and
:func:`due_escalations` reads the recorded ones back from the view, so asking twice at the same
moment gives nothing new: the caller (``linli.storage.escalation``) may run as often as it likes.

The rules (``docs/sla.md``):

- Each of a ticket's teams is escalated on its own chain. A team's missed deadline is the first of
  its work not done: acknowledge (``ack``); then, for the lead team only, be on site (``start``, P0
  and P1) and fix (``resolve``). A lead team that started counts as having acknowledged.
- Level n of a chain is due ``after`` its delay past the missed deadline; levels are recorded in
  order, none skipped. Until the team acts, its current level is reminded every ``remind_every``.
- The 24 h floor: nobody waits more than 24 h from dispatch (opening or reopening) for an
  acknowledgement without level 1 being escalated, whatever the severity or the chain's delays.
- ``on_hold`` pauses the fix clock: no fix escalation or reminder while on hold, and the deadline
  moves by the time held (``linli.tickets``).
- A severity rise recomputes the deadlines (from the opening); a deadline that the rise puts in the
  past starts its chain at the rise, so level 1 goes out at once and later levels keep their delays.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from linli.catalog import Team
from linli.oncall import LEAD, MANAGER, ON_DUTY, EscalationConfig, EscalationLevel, Person
from linli.site import Site, TeamConfig
from linli.tickets import REMINDER, EventType, TicketEvent, TicketStatus, TicketView

ACK_FLOOR = timedelta(hours=24)
SYSTEM = "system"

# The states in which a ticket can still be late: resolved and later have nobody left to chase.
ESCALATING = frozenset({TicketStatus.OPEN, TicketStatus.ACKNOWLEDGED, TicketStatus.IN_PROGRESS, TicketStatus.ON_HOLD})
STARTED = frozenset({TicketStatus.IN_PROGRESS, TicketStatus.ON_HOLD})

MISSED = {"ack": "missed_ack", "start": "missed_start", "resolve": "missed_fix"}
REASON_TEXT: dict[str, tuple[str, str]] = {
    "missed_ack": ("超时未签收", "Not acknowledged in time"),
    "missed_start": ("超时未到场", "Nobody on site in time"),
    "missed_fix": ("超时未修复", "Not fixed in time"),
    REMINDER: ("催办提醒", "Reminder"),
}

# Level 1 the person on duty, 2 the team lead, 3 the community manager and the grid centre.
DEFAULT_ESCALATION = EscalationConfig(
    remind_every="15m",
    levels=[
        EscalationLevel(after="0m", notify=[ON_DUTY]),
        EscalationLevel(after="15m", notify=[LEAD]),
        EscalationLevel(after="30m", notify=[MANAGER, f"{ON_DUTY}:grid"]),
    ],
)


# --- who --------------------------------------------------------------------------------------


def team_config(site: Site, team: str) -> TeamConfig | None:
    try:
        return site.spec.teams.get(Team(team))
    except ValueError:
        return None


def person(site: Site, person_id: str | None) -> Person | None:
    if person_id is None:
        return None
    return next((p for p in site.spec.people if p.id == person_id), None)


def on_duty(site: Site, team: str, now: datetime) -> tuple[Person, ...]:
    """Who answers for `team` at `now`: everyone whose shift covers the moment in the site's time
    zone, in roster order; the team lead when no shift does; nobody when the team has neither."""
    config = team_config(site, team)
    if config is None:
        return ()
    local = now.astimezone(ZoneInfo(site.spec.site.timezone))
    weekday, minute = local.weekday(), local.hour * 60 + local.minute
    ids = [shift.person for shift in config.roster if shift.covers(weekday, minute)]
    if not ids and config.lead:
        ids = [config.lead]
    return _people(site, ids)


def chain(site: Site, team: str) -> EscalationConfig:
    """The team's escalation chain as configured, or the default one."""
    config = team_config(site, team)
    return config.escalation if config and config.escalation else DEFAULT_ESCALATION


def people_of(site: Site, team: str, notify: Iterable[str], now: datetime) -> tuple[Person, ...]:
    """The people a level's `notify` entries name at `now`; roles nobody fills are left out."""
    ids: list[str] = []
    for entry in notify:
        role, _, other = entry.partition(":")
        if role == ON_DUTY:
            ids.extend(p.id for p in on_duty(site, other or team, now))
        elif role == LEAD:
            config = team_config(site, other or team)
            ids.extend([config.lead] if config and config.lead else [])
        elif role == MANAGER and not other:
            ids.extend([site.spec.site.manager] if site.spec.site.manager else [])
        else:
            ids.append(entry)
    return _people(site, ids)


def _people(site: Site, ids: Iterable[str]) -> tuple[Person, ...]:
    index = {p.id: p for p in site.spec.people}
    seen: dict[str, Person] = {}
    for pid in ids:
        if pid in index and pid not in seen:
            seen[pid] = index[pid]
    return tuple(seen.values())


# --- when -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Overdue:
    """One team's missed deadline: the first piece of its work not done in time."""

    team: str
    deadline: str  # ack | start | resolve
    due_at: datetime  # the ticket's deadline (for ack, never later than dispatch + 24 h)
    chain_from: datetime  # level delays count from here: the deadline, or the rise that put it in the past


@dataclass(frozen=True, slots=True)
class Escalation:
    """An escalation (or reminder) due now, not yet recorded on the ticket."""

    team: str
    deadline: str  # ack | start | resolve
    level: int  # 1 = the chain's first level
    reason: str  # missed_ack | missed_start | missed_fix | reminder
    people: tuple[Person, ...]  # with their contacts, as resolved at the moment asked
    due_at: datetime  # when it fell due (it is recorded when the service next runs)

    def event(self, now: datetime) -> TicketEvent:
        """The ``escalated`` event that records it."""
        zh, en = REASON_TEXT[self.reason]
        note = f"{zh}：第{self.level}级 / {en}: level {self.level}"
        data = {
            "team": self.team, "deadline": self.deadline, "level": self.level, "reason": self.reason,
            "people": [p.id for p in self.people], "due_at": self.due_at.isoformat(),
        }
        return TicketEvent(EventType.ESCALATED, now, SYSTEM, note, data)


def dispatched_at(view: TicketView, history: Sequence[TicketEvent]) -> datetime:
    """When the ticket was last sent to its teams: opened, or reopened since."""
    times = [e.at for e in history if e.type in (EventType.OPENED, EventType.REOPENED)]
    return times[-1] if times else view.opened_at


def _deadlines_set_at(view: TicketView, history: Sequence[TicketEvent]) -> datetime:
    types = (EventType.OPENED, EventType.REOPENED, EventType.SEVERITY_RAISED)
    times = [e.at for e in history if e.type in types]
    return times[-1] if times else view.opened_at


def _pending(view: TicketView, history: Sequence[TicketEvent]) -> list[Overdue]:
    """Each team's current deadline, missed or not (empty once the ticket is resolved or ended)."""
    if view.status not in ESCALATING or not view.teams:
        return []
    lead, started = view.teams[0], view.status in STARTED
    ack_due = min(view.ack_due_at, dispatched_at(view, history) + ACK_FLOOR)
    set_at = _deadlines_set_at(view, history)
    out: list[Overdue] = []
    for team in view.teams:
        if team not in view.acks and not (team == lead and started):
            out.append(Overdue(team, "ack", ack_due, max(ack_due, set_at)))
        elif team != lead:
            continue
        elif view.start_due_at is not None and not started:
            out.append(Overdue(team, "start", view.start_due_at, max(view.start_due_at, set_at)))
        elif view.status is not TicketStatus.ON_HOLD:  # on hold, the fix clock stands still
            out.append(Overdue(team, "resolve", view.resolve_due_at, max(view.resolve_due_at, set_at)))
    return out


def overdue(view: TicketView, history: Sequence[TicketEvent], now: datetime) -> list[Overdue]:
    """The deadlines missed at `now`, one per team at most."""
    return [o for o in _pending(view, history) if o.due_at <= now]


def due_escalations(view: TicketView, history: Sequence[TicketEvent], site: Site, now: datetime) -> list[Escalation]:
    """What to escalate now and has not been recorded yet: per team, every level that fell due
    since its last recorded one, in order, or else a reminder at its current level."""
    out: list[Escalation] = []
    floor = dispatched_at(view, history) + ACK_FLOOR
    for missed in overdue(view, history, now):
        config = chain(site, missed.team)
        mark = view.escalations.get((missed.deadline, missed.team))
        current = mark.level if mark else 0
        due = [missed.chain_from + level.delay for level in config.levels]
        if missed.deadline == "ack":
            due[0] = min(due[0], floor)  # the 24 h promise, whatever the chain's first delay
        fresh = [n for n in range(current, len(due)) if due[n] <= now]
        for n in fresh:
            people = people_of(site, missed.team, config.levels[n].notify, now)
            out.append(Escalation(missed.team, missed.deadline, n + 1, MISSED[missed.deadline], people, due[n]))
        if fresh or mark is None or config.reminder is None:
            continue
        next_reminder = mark.at + config.reminder
        if next_reminder <= now:
            level = config.levels[min(current, len(config.levels)) - 1]  # the chain may have shrunk since
            people = people_of(site, missed.team, level.notify, now)
            out.append(Escalation(missed.team, missed.deadline, current, REMINDER, people, next_reminder))
    return out

