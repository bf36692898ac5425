"""Who answers for a team: people and their contacts, weekly on-call rosters, escalation chains.

The site-file shapes (``people:``, ``site.manager`` and ``teams.<team>.lead/roster/escalation``,
see ``docs/site-file.md``) and the parsing of roster days and hours. Deciding who is on duty at a
moment and what escalation is due is :mod:`linli.sla`.

This module imports nothing from ``linli.site`` at import time (``linli.site`` imports it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from itertools import pairwise
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PERSON_ID = r"^[A-Za-z0-9_.-]{1,32}$"
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60

# Words an escalation level may use instead of a person id. "on_duty:grid" and "lead:grid" name
# another team's; the bare words mean the escalated team's own.
ON_DUTY, LEAD, MANAGER = "on_duty", "lead", "manager"
ROLES: tuple[str, ...] = (ON_DUTY, LEAD, MANAGER)

_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def _duration(text: str) -> timedelta:
    from linli.site import parse_duration  # late: linli.site imports this module

    return parse_duration(text)


def parse_days(text: str) -> frozenset[int]:
    """'mon-fri', 'sat,sun', 'fri-mon' (wraps the week end), 'daily' → weekday numbers (Monday 0)."""
    words = str(text).strip().lower()
    if words in ("daily", "every day", "*"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in words.split(","):
        ends = [p.strip() for p in part.split("-")]
        if len(ends) > 2 or not all(e in WEEKDAYS for e in ends):
            raise ValueError(f"{text!r} is not a list of days such as 'mon-fri', 'sat,sun' or 'daily'")
        first, last = WEEKDAYS.index(ends[0]), WEEKDAYS.index(ends[-1])
        days.update((first + i) % 7 for i in range((last - first) % 7 + 1))
    return frozenset(days)


def parse_shift_hours(text: str) -> tuple[int, int]:
    """'08:00-18:00' → (start minute of the day, length in minutes).

    An end at or before the start crosses midnight ('20:00-08:00' is 12 h); equal ends are 24 h.
    """
    match = _HOURS.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not an hours range such as '08:00-18:00' or '20:00-08:00'")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
        raise ValueError(f"{text!r} is not an hours range such as '08:00-18:00' or '20:00-08:00'")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    return start, (end - start) % MINUTES_PER_DAY or MINUTES_PER_DAY


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Person(_Model):
    """Someone the platform may call: on a roster, a team lead, the community manager."""

    id: Annotated[str, Field(pattern=PERSON_ID)]
    name: str = Field(min_length=1)
    name_en: str | None = None
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9][0-9 -]{2,30}$")
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    wecom_userid: str | None = Field(default=None, min_length=1, max_length=64)

    @field_validator("phone", mode="before")
    @classmethod
    def _phone_text(cls, value: Any) -> Any:
        # An unquoted 13800000000 in YAML is a number.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("id")
    @classmethod
    def _not_a_role(cls, value: str) -> str:
        if value in ROLES:
            raise ValueError(f"{value!r} is reserved for escalation roles; choose another person id")
        return value


class Shift(_Model):
    """One line of a team's weekly roster, in the site's time zone. A shift crossing midnight
    belongs to the day it starts: ``days: fri, hours: 22:00-06:00`` ends on Saturday morning."""

    person: str
    days: str = "daily"
    hours: str = "00:00-24:00"

    @field_validator("days", "hours", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("write it as text, e.g. days: mon-fri, hours: 08:00-18:00")
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: str) -> str:
        parse_days(value)
        return value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        parse_shift_hours(value)
        return value

    def covers(self, weekday: int, minute: int) -> bool:
        """True when local `weekday` (Monday 0) at `minute` past local midnight falls in this shift."""
        days, (start, length) = parse_days(self.days), parse_shift_hours(self.hours)
        # a shift that started today, or one that started yesterday and crosses midnight
        return any(
            (weekday - back) % 7 in days and 0 <= minute + back * MINUTES_PER_DAY - start < length for back in (0, 1)
        )


class EscalationLevel(_Model):
    after: str = Field(default="0m", description="delay after the missed deadline")
    notify: list[str] = Field(
        min_length=1, description="person ids or roles: on_duty, lead, manager, on_duty:<team>, lead:<team>"
    )

    @field_validator("after")
    @classmethod
    def _after(cls, value: str) -> str:
        _duration(value)
        return value

    @property
    def delay(self) -> timedelta:
        return _duration(self.after)


class EscalationConfig(_Model):
    """A team's chain: level 1 first, each later level `after` the deadline; the current level is
    reminded every `remind_every` until the ticket is acted on (null: no reminders)."""

    remind_every: str | None = "15m"
    levels: list[EscalationLevel] = Field(min_length=1, max_length=9)

    @field_validator("remind_every")
    @classmethod
    def _remind(cls, value: str | None) -> str | None:
        if value is not None and _duration(value) <= timedelta(0):
            raise ValueError("remind_every must be longer than 0; write null for no reminders")
        return value

    @model_validator(mode="after")
    def _in_order(self) -> EscalationConfig:
        delays = [level.delay for level in self.levels]
        if any(later < earlier for earlier, later in pairwise(delays)):
            raise ValueError("levels must come in order: each level's 'after' at least the previous one's")
        return self

    @property
    def reminder(self) -> timedelta | None:
        return _duration(self.remind_every) if self.remind_every else None


class _TeamDuty(Protocol):
    @property
    def lead(self) -> str | None: ...
    @property
    def roster(self) -> list[Shift]: ...
    @property
    def escalation(self) -> EscalationConfig | None: ...


def reference_problems(
    people: Iterable[Person], manager: str | None, teams: Mapping[Any, _TeamDuty]
) -> list[tuple[str, str]]:
    """(location, problem) for every person or role the site file names that does not exist."""
    problems: list[tuple[str, str]] = []
    known: set[str] = set()
    for index, person in enumerate(people):
        if person.id in known:
            problems.append((f"people[{index}].id", f"duplicate id {person.id!r}"))
        known.add(person.id)

    def unknown(value: str) -> str:
        listed = ", ".join(sorted(known)[:12]) or "none defined under people"
        return f"unknown person {value!r} (known: {listed})"

    if manager is not None and manager not in known:
        problems.append(("site.manager", unknown(manager)))
    names = {str(getattr(key, "value", key)): config for key, config in teams.items()}
    for name, team in names.items():
        where = f"teams.{name}"
        if team.lead is not None and team.lead not in known:
            problems.append((f"{where}.lead", unknown(team.lead)))
        for index, shift in enumerate(team.roster):
            if shift.person not in known:
                problems.append((f"{where}.roster[{index}].person", unknown(shift.person)))
        if team.escalation is None:
            continue
        for li, level in enumerate(team.escalation.levels):
            for ni, entry in enumerate(level.notify):
                problem = _role_problem(entry, name, names, manager, known)
                if problem:
                    problems.append((f"{where}.escalation.levels[{li}].notify[{ni}]", problem))
    return problems


def _role_problem(
    entry: str, own: str, teams: Mapping[str, _TeamDuty], manager: str | None, known: set[str]
) -> str | None:
    role, _, other = entry.partition(":")
    if role == MANAGER and not other:
        return None if manager else "'manager' needs site.manager to name a person"
    if role in (ON_DUTY, LEAD):
        name = other or own
        team = teams.get(name)
        if team is None:
            return f"team {name!r} is not defined under teams"
        if role == LEAD and team.lead is None:
            return f"team {name!r} has no lead"
        if role == ON_DUTY and team.lead is None and not team.roster:
            return f"team {name!r} has neither a roster nor a lead"
        return None
    if other or entry not in known:
        listed = ", ".join(sorted(known)[:12]) or "none defined under people"
        return f"{entry!r} is neither a role (on_duty, lead, manager, on_duty:<team>, lead:<team>) nor a person (known: {listed})"
    return None
