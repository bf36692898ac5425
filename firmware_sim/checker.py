"""``linli sim-check``: compare a run's ground truth with the tickets the system opened.

:func:`check` is pure: ground-truth lines (``firmware_sim.truth``) and tickets as the API returns
them in, a :class:`Report` out. For every ticket an injection must open it finds the earliest
detection (the ticket opening, or a reopening, severity rise, re-attachment or returned signal in
its history) on the same site, with the expected code, about the expected subject or listing one
of the injection's devices, at or after the injection; on time when within the code's longest
acceptable delay (:data:`firmware_sim.truth.RULES` + slack), late after it, missed when there is
none. A device's ``offline``/``power_loss`` also counts as detected by a parent ticket
(``circuit_outage``, ``building_power_loss``, ``concentrator_offline``) that lists the device.

A ticket is explained when it was matched, when its code is tolerated by an injection on its
devices during that injection, or when it is attached (``parent_id``) to an explained ticket;
every other ticket of the run's sites opened during the run was raised wrongly.

:func:`main` is the command: exit 0 when nothing was missed or raised wrongly (``--strict``: and
nothing late), 1 otherwise, 2 for bad input with one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from firmware_sim.truth import (
    DEFAULT_INTERVAL_S,
    DEFAULT_SLACK_S,
    SEVERITIES,
    ExpectedTicket,
    TruthError,
)

PROG = "linli sim-check"
PAGE_SIZE = 500
# Children's faults a parent ticket covers, and the parent codes.
CHILD_CODES = frozenset({"offline", "power_loss"})
PARENT_CODES = frozenset({"circuit_outage", "building_power_loss", "concentrator_offline"})
# History entries that show a detection on an existing ticket.
DETECTION_EVENTS = ("reopened", "severity_raised", "attached", "signal_returned")


# ---------------------------------------------------------------- input


@dataclass(frozen=True, slots=True)
class Injected:
    seq: int
    line: int
    site: str
    target: tuple[str, str]  # (type, id)
    fault: str
    at: datetime
    until: datetime | None
    subject: tuple[str, str]
    devices: tuple[str, ...]
    expected: tuple[ExpectedTicket, ...]
    tolerated: tuple[str, ...] = ()
    interval_s: float | None = None
    note: str | None = None
    cleared_at: datetime | None = None

    @property
    def ends_at(self) -> datetime | None:
        if self.until is not None and self.cleared_at is not None:
            return min(self.until, self.cleared_at)
        return self.until or self.cleared_at

    @property
    def label(self) -> str:
        return f"{self.fault} {self.site}:{self.target[1]}"


@dataclass(frozen=True, slots=True)
class Truth:
    header: Mapping[str, Any]
    injections: tuple[Injected, ...]
    started_at: datetime | None
    ended_at: datetime | None


def _time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise TruthError(f"{what} must be an ISO 8601 time, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise TruthError(f"{what} is not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise TruthError(f"{what} has no UTC offset: {value!r}")
    return parsed


def _pair(value: Any, what: str) -> tuple[str, str]:
    if not isinstance(value, Mapping) or not isinstance(value.get("type"), str) or not isinstance(value.get("id"), str):
        raise TruthError(f"{what} must be {{\"type\": ..., \"id\": ...}}, got {value!r}")
    return (value["type"], value["id"])


def _str(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise TruthError(f"{key!r} must be a non-empty string, got {value!r}")
    return value


def _float(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise TruthError(f"{what} must be a positive number, got {value!r}")
    return float(value)


def parse_truth(lines: Iterable[str | Mapping[str, Any]]) -> Truth:
    """Ground-truth records (JSON text lines or parsed objects) -> :class:`Truth`.

    Raises :class:`TruthError` naming the line number of the first bad record.
    """
    header: Mapping[str, Any] = {}
    injected: dict[int, Injected] = {}
    cleared: list[tuple[int, Mapping[str, Any]]] = []
    ended_at: datetime | None = None
    number = 0
    for number, raw in enumerate(lines, start=1):
        try:
            if isinstance(raw, str):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise TruthError(f"not JSON ({exc.msg} at column {exc.colno})") from None
            else:
                record = raw
            if not isinstance(record, Mapping):
                raise TruthError("a record must be a JSON object")
            kind = record.get("type")
            if kind == "run":
                if header:
                    raise TruthError("a second 'run' header")
                header = dict(record)
                if record.get("started_at") is not None:
                    _time(record["started_at"], "started_at")
                _float(record.get("interval_s"), "interval_s")
            elif kind == "injected":
                item = _injected(record, number)
                if item.seq in injected:
                    raise TruthError(f"seq {item.seq} is used twice")
                injected[item.seq] = item
            elif kind == "cleared":
                _time(record.get("at"), "at")
                cleared.append((number, record))
            elif kind == "end":
                ended_at = _time(record.get("at"), "at")
            else:
                raise TruthError(f"unknown record type {kind!r} (run, injected, cleared, end)")
        except TruthError as exc:
            raise TruthError(f"line {number}: {exc}") from None
    for number, record in cleared:
        try:
            target = _pair(record.get("target"), "target")
            at = _time(record.get("at"), "at")
            ref = record.get("ref")
            if ref is None:  # pair with the earliest still-open injection of the same fault on the target
                candidates = [
                    i for i in injected.values()
                    if i.site == record.get("site") and i.target == target and i.fault == record.get("fault")
                    and i.cleared_at is None and i.at <= at
                ]
                if not candidates:
                    continue
                ref = min(candidates, key=lambda i: i.seq).seq
            if not isinstance(ref, int) or ref not in injected:
                raise TruthError(f"'ref' {ref!r} names no injection")
            item = injected[ref]
            injected[ref] = _replace_cleared(item, at)
        except TruthError as exc:
            raise TruthError(f"line {number}: {exc}") from None
    if number == 0:
        raise TruthError("the ground truth is empty")
    started = _time(header["started_at"], "started_at") if header.get("started_at") else None
    return Truth(header, tuple(sorted(injected.values(), key=lambda i: (i.at, i.seq))), started, ended_at)


def _replace_cleared(item: Injected, at: datetime) -> Injected:
    return replace(item, cleared_at=at)


def _injected(record: Mapping[str, Any], number: int) -> Injected:
    seq = record.get("seq", number)
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise TruthError(f"'seq' must be an integer, got {seq!r}")
    at = _time(record.get("at"), "at")
    until = _time(record["until"], "until") if record.get("until") is not None else None
    if until is not None and until <= at:
        raise TruthError("'until' must be after 'at'")
    target = _pair(record.get("target"), "target")
    subject = _pair(record.get("subject"), "subject") if record.get("subject") is not None else target
    devices = record.get("devices", [target[1]] if target[0] == "device" else [])
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise TruthError(f"'devices' must be a list of device ids, got {devices!r}")
    expected = record.get("expected")
    if not isinstance(expected, list):
        raise TruthError(f"'expected' must be a list (possibly empty), got {expected!r}")
    tolerated = record.get("tolerated") or []
    if not isinstance(tolerated, list) or not all(isinstance(c, str) for c in tolerated):
        raise TruthError(f"'tolerated' must be a list of codes, got {tolerated!r}")
    note = record.get("note")
    return Injected(
        seq=seq,
        line=number,
        site=_str(record, "site"),
        target=target,
        fault=_str(record, "fault"),
        at=at,
        until=until,
        subject=subject,
        devices=tuple(devices),
        expected=tuple(ExpectedTicket.parse(e) for e in expected),
        tolerated=tuple(tolerated),
        interval_s=_float(record.get("interval_s"), "interval_s"),
        note=note if isinstance(note, str) else None,
    )


@dataclass(frozen=True, slots=True)
class Detected:
    """One moment a ticket shows its fault: its opening or a later history entry."""

    at: datetime
    via: str
    severity: str | None  # the ticket's severity then (None: unknown)


@dataclass(frozen=True, slots=True)
class TicketRef:
    id: int
    site: str
    fault: str
    subject: tuple[str, str]
    devices: frozenset[str]
    severity: str
    source: str
    opened_at: datetime
    parent_id: int | None
    events: tuple[Detected, ...]

    def about(self, injection: Injected) -> bool:
        """Same site, and about the injection's subject or one of its devices."""
        return injection.site == self.site and (self.subject == injection.subject or bool(self.devices & set(injection.devices)))

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id, "site": self.site, "fault": self.fault, "severity": self.severity,
            "subject": {"type": self.subject[0], "id": self.subject[1]}, "device_ids": sorted(self.devices),
            "opened_at": self.opened_at.isoformat(), "source": self.source, "parent_id": self.parent_id,
        }


def parse_tickets(items: Iterable[Mapping[str, Any]]) -> list[TicketRef]:
    """Tickets as ``GET /api/v1/tickets`` returns them (``items``) -> :class:`TicketRef` s."""
    out: list[TicketRef] = []
    for index, item in enumerate(items):
        try:
            out.append(_ticket(item))
        except TruthError as exc:
            ident = item.get("id") if isinstance(item, Mapping) else None
            raise TruthError(f"ticket {ident if ident is not None else f'at index {index}'}: {exc}") from None
    return out


def _ticket(item: Mapping[str, Any]) -> TicketRef:
    if not isinstance(item, Mapping):
        raise TruthError("a ticket must be a JSON object")
    ident = item.get("id")
    if not isinstance(ident, int) or isinstance(ident, bool):
        raise TruthError(f"'id' must be an integer, got {ident!r}")
    device_id = item.get("device_id")
    subject = _pair(item["subject"], "subject") if item.get("subject") else ("device", str(device_id))
    device_ids = item.get("device_ids") or []
    if not isinstance(device_ids, list):
        raise TruthError("'device_ids' must be a list")
    devices = {str(d) for d in device_ids} | ({str(device_id)} if device_id else set())
    if subject[0] == "device":
        devices.add(subject[1])
    severity = item.get("severity")
    if severity not in SEVERITIES:
        raise TruthError(f"'severity' must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    opened_at = _time(item.get("opened_at"), "opened_at")
    parent = item.get("parent_id")
    if parent is not None and (not isinstance(parent, int) or isinstance(parent, bool)):
        raise TruthError(f"'parent_id' must be an integer or null, got {parent!r}")
    history = item.get("history") or []
    if not isinstance(history, list):
        raise TruthError("'history' must be a list")
    raises = [h for h in history if isinstance(h, Mapping) and h.get("type") == "severity_raised"]
    opened = next((h for h in history if isinstance(h, Mapping) and h.get("type") == "opened"), None)
    current: str | None = severity if not raises else None
    if opened is not None and opened.get("severity") in SEVERITIES:
        current = str(opened["severity"])
    events = [Detected(opened_at, "opened", current)]
    for entry in history:
        if not isinstance(entry, Mapping):
            raise TruthError("a history entry must be a JSON object")
        kind = entry.get("type")
        if kind not in DETECTION_EVENTS:
            continue
        at = _time(entry.get("at"), f"history {kind} 'at'")
        if kind == "severity_raised":
            current = str(entry["severity"]) if entry.get("severity") in SEVERITIES else None
        events.append(Detected(at, str(kind), current))
    return TicketRef(
        id=ident,
        site=_str(item, "site"),
        fault=_str(item, "fault"),
        subject=subject,
        devices=frozenset(devices),
        severity=str(severity),
        source=str(item.get("source") or "detector"),
        opened_at=opened_at,
        parent_id=parent,
        events=tuple(sorted(events, key=lambda e: e.at)),
    )


# ---------------------------------------------------------------- the report


@dataclass(frozen=True, slots=True)
class Detection:
    """An expected ticket found: how long after the injection, and whether in time."""

    seq: int
    fault: str  # as injected
    site: str
    target: str
    code: str
    severity: str | None  # the severity it had to reach
    ticket_id: int
    via: str  # opened | reopened | severity_raised | attached | signal_returned | parent
    injected_at: str
    detected_at: str
    delay_s: float
    max_delay_s: float
    late: bool


@dataclass(frozen=True, slots=True)
class Missing:
    """An expected ticket not found (``reason`` says why it is not counted as missed, if so)."""

    seq: int
    fault: str
    site: str
    target: str
    code: str
    severity: str | None
    injected_at: str
    max_delay_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class CodeStats:
    code: str
    expected: int
    on_time: int
    late: int
    missed: int
    p50_delay_s: float | None
    max_delay_s: float | None


@dataclass(slots=True)
class Report:
    run: dict[str, Any]
    injections: int
    slack_s: float
    detections: list[Detection] = field(default_factory=list)
    missed: list[Missing] = field(default_factory=list)
    unfinished: list[Missing] = field(default_factory=list)  # the run ended before the deadline
    not_expected: list[Missing] = field(default_factory=list)  # shorter than the rule's hold
    wrong: list[dict[str, Any]] = field(default_factory=list)  # tickets no injection explains
    explained_tickets: int = 0
    ignored_tickets: int = 0  # other sites, or nothing during the run
    per_code: list[CodeStats] = field(default_factory=list)

    @property
    def late(self) -> list[Detection]:
        return [d for d in self.detections if d.late]

    @property
    def ok(self) -> bool:
        """Nothing missed and nothing raised wrongly (late detections are reported, not failed)."""
        return not self.missed and not self.wrong

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items()}
        out["late"] = [asdict(d) for d in self.late]
        out["ok"] = self.ok
        return out


def _rank(severity: str) -> int:
    return int(severity[1])


def check(
    truth_lines: Iterable[str | Mapping[str, Any]] | Truth,
    tickets: Iterable[Mapping[str, Any]] | Sequence[TicketRef],
    *,
    interval_s: float | None = None,
    slack: float = DEFAULT_SLACK_S,
    site: str | None = None,
    early_s: float = 2.0,
) -> Report:
    """Compare the ground truth with the tickets; pure (no I/O, no clock).

    ``interval_s``: the telemetry period delays are computed with, when an injection does not
    say its own (default: the run header's, else 30 s). ``slack``: seconds added to every
    rule's delay. ``site``: only that site. ``early_s``: a ticket may show this long before the
    injection's recorded time (the clocks of simulator and gateway differ a little).
    """
    truth = truth_lines if isinstance(truth_lines, Truth) else parse_truth(truth_lines)
    given: list[Mapping[str, Any] | TicketRef] = list(tickets)
    all_tickets = [t for t in given if isinstance(t, TicketRef)]
    all_tickets += parse_tickets([t for t in given if not isinstance(t, TicketRef)])
    injections = [i for i in truth.injections if site is None or i.site == site]
    header_sites = truth.header.get("sites") or []
    sites = {site} if site is not None else set(header_sites) | {i.site for i in injections}
    early = timedelta(seconds=early_s)
    run_start = truth.started_at or min((i.at for i in injections), default=None)
    scoped: list[TicketRef] = []
    ignored = 0
    run_end = truth.ended_at  # the simulator's stop marks every device offline: what follows is not the run's
    for ticket in all_tickets:
        during = any((run_start is None or e.at >= run_start - early) and (run_end is None or e.at < run_end)
                     for e in ticket.events)
        if ticket.site in sites and during:
            scoped.append(ticket)
        else:
            ignored += 1
    default_interval = interval_s or _float(truth.header.get("interval_s"), "interval_s") or DEFAULT_INTERVAL_S
    report = Report(run=dict(truth.header), injections=len(injections), slack_s=slack, ignored_tickets=ignored)
    explained: set[int] = set()
    by_code: dict[str, list[tuple[str, float | None]]] = defaultdict(list)  # code -> (outcome, delay)

    for inj in injections:
        interval = inj.interval_s or default_interval
        for item in inj.expected:
            max_delay = item.max_delay_s(interval, slack)
            target = f"{inj.target[0]} {inj.target[1]}"
            ends = inj.ends_at
            needed = item.after_s + item.delay_rule.hold_s
            if ends is not None and (ends - inj.at).total_seconds() < needed:
                lasted = (ends - inj.at).total_seconds()
                why = f"lasted {lasted:g} s, shorter than the {needed:g} s the rule needs"
                report.not_expected.append(_missing(inj, item, max_delay, why))
                continue
            found = _earliest(inj, item, scoped, early, max_delay)
            if found is None:
                deadline = inj.at + timedelta(seconds=max_delay)
                if truth.ended_at is not None and truth.ended_at < deadline:
                    left = (truth.ended_at - inj.at).total_seconds()
                    report.unfinished.append(_missing(inj, item, max_delay, f"the run ended {left:g} s after the injection"))
                    by_code[item.code].append(("unfinished", None))
                else:
                    report.missed.append(_missing(inj, item, max_delay, "no matching ticket"))
                    by_code[item.code].append(("missed", None))
                continue
            ticket, event, via = found
            delay = (event.at - inj.at).total_seconds()
            late = delay > max_delay
            explained.add(ticket.id)
            report.detections.append(Detection(
                inj.seq, inj.fault, inj.site, target, item.code, item.severity, ticket.id, via, inj.at.isoformat(),
                event.at.isoformat(), round(delay, 1), round(max_delay, 1), late,
            ))
            by_code[item.code].append(("late" if late else "on_time", delay))

    # Tolerated codes on an injection's devices while it lasts (+ that code's delay).
    for inj in injections:
        interval = inj.interval_s or default_interval
        for ticket in scoped:
            if ticket.fault not in inj.tolerated or not ticket.about(inj):
                continue
            try:
                reach = ExpectedTicket(ticket.fault).max_delay_s(interval, slack)
            except TruthError:
                reach = slack
            ends = inj.ends_at
            last = None if ends is None else ends + timedelta(seconds=reach)
            if any(e.at >= inj.at - early and (last is None or e.at <= last) for e in ticket.events):
                explained.add(ticket.id)
    # Children attached to an explained parent are covered by it (transitively).
    by_id = {t.id: t for t in scoped}
    changed = True
    while changed:
        changed = False
        for ticket in scoped:
            if ticket.id not in explained and ticket.parent_id is not None and ticket.parent_id in explained:
                explained.add(ticket.id)
                changed = True
    report.explained_tickets = len(explained & set(by_id))
    report.wrong = [t.summary() for t in sorted(scoped, key=lambda t: (t.opened_at, t.id)) if t.id not in explained]
    for code in sorted(by_code):
        outcomes = by_code[code]
        delays = [d for o, d in outcomes if d is not None]
        report.per_code.append(CodeStats(
            code=code,
            expected=len(outcomes),
            on_time=sum(1 for o, _ in outcomes if o == "on_time"),
            late=sum(1 for o, _ in outcomes if o == "late"),
            missed=sum(1 for o, _ in outcomes if o == "missed"),
            p50_delay_s=round(statistics.median(delays), 1) if delays else None,
            max_delay_s=round(max(delays), 1) if delays else None,
        ))
    return report


def _missing(inj: Injected, item: ExpectedTicket, max_delay: float, reason: str) -> Missing:
    return Missing(inj.seq, inj.fault, inj.site, f"{inj.target[0]} {inj.target[1]}", item.code, item.severity,
                   inj.at.isoformat(), round(max_delay, 1), reason)


def _earliest(
    inj: Injected, item: ExpectedTicket, tickets: Sequence[TicketRef], early: timedelta, max_delay: float
) -> tuple[TicketRef, Detected, str] | None:
    """The earliest detection of ``item`` at or after the injection (late ones included)."""
    start = inj.at + timedelta(seconds=item.after_s) - early
    ends = inj.ends_at
    last = None if ends is None else ends + timedelta(seconds=max_delay)
    best: tuple[TicketRef, Detected, str] | None = None
    for ticket in tickets:
        if not ticket.about(inj):
            continue
        if ticket.fault == item.code:
            direct = True
        elif item.code in CHILD_CODES and ticket.fault in PARENT_CODES and ticket.devices & set(inj.devices):
            direct = False
        else:
            continue
        for event in ticket.events:
            if event.at < start or (last is not None and event.at > last):
                continue
            if direct and item.severity is not None and (event.severity is None or _rank(event.severity) > _rank(item.severity)):
                continue
            if best is None or event.at < best[1].at:
                best = (ticket, event, event.via if direct else "parent")
            break  # events are in time order: the first that fits is this ticket's earliest
    return best


# ---------------------------------------------------------------- printing


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 3600:
        return f"{value / 3600:.1f}h"
    if value >= 600:
        return f"{value / 60:.1f}m"
    return f"{value:.1f}s"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = ["  " + line.rstrip()]
    out += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return out


def _expected(code: str, severity: str | None) -> str:
    return f"{code} ({severity})" if severity else code


def render(report: Report) -> str:
    """The report as a readable text table."""
    run = report.run
    bits = [f"scenario {run['scenario']}" if run.get("scenario") else None,
            f"seed {run['seed']}" if run.get("seed") is not None else None,
            f"speed {run['speed']:g}" if isinstance(run.get("speed"), int | float) else None,
            f"sites {', '.join(run['sites'])}" if run.get("sites") else None]
    lines = [f"Ground truth: {report.injections} injections; {', '.join(b for b in bits if b) or 'no run header'}; "
             f"slack {report.slack_s:g} s"]
    on_time = [d for d in report.detections if not d.late]
    sections: list[tuple[str, list[str]]] = []
    if on_time:
        sections.append((f"DETECTED ({len(on_time)})", _table(
            ["#", "injected", "target", "expected", "ticket", "via", "delay", "max"],
            [[str(d.seq), d.fault, d.target, _expected(d.code, d.severity), f"#{d.ticket_id}", d.via,
              _seconds(d.delay_s), _seconds(d.max_delay_s)] for d in on_time])))
    if report.late:
        sections.append((f"LATE ({len(report.late)})", _table(
            ["#", "injected", "target", "expected", "ticket", "via", "delay", "max"],
            [[str(d.seq), d.fault, d.target, _expected(d.code, d.severity), f"#{d.ticket_id}", d.via,
              _seconds(d.delay_s), _seconds(d.max_delay_s)] for d in report.late])))
    if report.missed:
        sections.append((f"MISSED ({len(report.missed)})", _table(
            ["#", "injected", "target", "expected", "at", "max"],
            [[str(m.seq), m.fault, m.target, _expected(m.code, m.severity), m.injected_at, _seconds(m.max_delay_s)]
             for m in report.missed])))
    if report.wrong:
        sections.append((f"WRONGLY RAISED ({len(report.wrong)})", _table(
            ["ticket", "fault", "severity", "subject", "devices", "opened", "source"],
            [[f"#{t['id']}", t["fault"], t["severity"], f"{t['subject']['type']} {t['subject']['id']}",
              ",".join(t["device_ids"]) or "-", t["opened_at"], t["source"]] for t in report.wrong])))
    others = [*report.unfinished, *report.not_expected]
    if others:
        sections.append((f"NOT COUNTED ({len(others)})", _table(
            ["#", "injected", "target", "expected", "why"],
            [[str(m.seq), m.fault, m.target, _expected(m.code, m.severity), m.reason] for m in others])))
    if report.per_code:
        sections.append(("PER CODE", _table(
            ["code", "expected", "on time", "late", "missed", "p50", "max"],
            [[c.code, str(c.expected), str(c.on_time), str(c.late), str(c.missed), _seconds(c.p50_delay_s),
              _seconds(c.max_delay_s)] for c in report.per_code])))
    for title, body in sections:
        lines += ["", title, *body]
    verdict = "OK" if report.ok else "FAIL"
    lines += ["", f"{verdict}: {len(on_time)} on time, {len(report.late)} late, {len(report.missed)} missed, "
                  f"{len(report.wrong)} wrongly raised; {report.explained_tickets} tickets explained, "
                  f"{report.ignored_tickets} outside the run"]
    return "\n".join(lines)


# ---------------------------------------------------------------- fetching and the command


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{PROG}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _positive_seconds(text: str) -> float:
    from firmware_sim.faults import parse_delay

    try:
        seconds = parse_delay(text).total_seconds()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Compare a simulator run's ground truth (JSON Lines, `linli sim --truth`) with the tickets the "
        "system opened: what was missed, what was raised wrongly, and the detection delay of each fault. "
        "Exit 0 when nothing was missed or raised wrongly, 1 otherwise, 2 for bad input.",
    )
    parser.add_argument("truth", metavar="TRUTH.jsonl", help="the ground truth the simulator wrote")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--api", metavar="URL", help="the API to fetch tickets from, e.g. http://127.0.0.1:8000")
    source.add_argument("--tickets", metavar="FILE.json", help="tickets saved from the API (a list, or {\"items\": [...]})")
    parser.add_argument("--username", default=os.environ.get("LINLI_API_USERNAME"), help="API account ($LINLI_API_USERNAME)")
    parser.add_argument("--password", default=None, help="its password (default: $LINLI_API_PASSWORD)")
    parser.add_argument("--site", default=None, help="only this site")
    parser.add_argument("--interval", metavar="SECONDS", type=_positive_seconds, default=None,
                        help="telemetry period for the delay budgets (default: the run header's, else 30 s)")
    parser.add_argument("--slack", metavar="SECONDS", type=_positive_seconds, default=DEFAULT_SLACK_S,
                        help="added to every rule's longest delay (default %(default)g s)")
    parser.add_argument("--strict", action="store_true", help="late detections fail too")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def read_truth(path: Path) -> Truth:
    try:
        with path.open(encoding="utf-8") as handle:
            return parse_truth(list(handle))
    except OSError as exc:
        raise TruthError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TruthError(f"{path}: not UTF-8 text") from None
    except TruthError as exc:
        raise TruthError(f"{path}: {exc}") from None


def read_tickets(path: Path) -> list[TicketRef]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TruthError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TruthError(f"{path}: not JSON: {exc}") from None
    items = data.get("items") if isinstance(data, Mapping) else data
    if not isinstance(items, list):
        raise TruthError(f"{path}: expected a list of tickets or {{\"items\": [...]}}")
    try:
        return parse_tickets(items)
    except TruthError as exc:
        raise TruthError(f"{path}: {exc}") from None


def fetch_tickets(api: str, username: str, password: str, *, site: str | None = None, timeout: float = 30.0) -> list[TicketRef]:
    """Sign in and read every ticket, page by page (newest first; duplicates across pages dropped)."""
    import httpx

    base = api.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise TruthError(f"--api {api!r}: expected http://host:port or https://host:port")
    try:
        with httpx.Client(timeout=timeout) as client:
            response = client.post(f"{base}/api/v1/auth/token", data={"username": username, "password": password})
            if response.status_code != 200:
                raise TruthError(f"sign-in at {base} refused ({response.status_code}): {_detail(response)}")
            token = response.json().get("access_token")
            if not isinstance(token, str):
                raise TruthError(f"sign-in at {base}: no access_token in the answer")
            headers = {"Authorization": f"Bearer {token}"}
            seen: dict[int, Mapping[str, Any]] = {}
            offset = 0
            while True:
                params: dict[str, str | int] = {"limit": PAGE_SIZE, "offset": offset}
                if site is not None:
                    params["site"] = site
                page = client.get(f"{base}/api/v1/tickets", params=params, headers=headers)
                if page.status_code != 200:
                    raise TruthError(f"GET /api/v1/tickets failed ({page.status_code}): {_detail(page)}")
                body = page.json()
                items = body.get("items") if isinstance(body, Mapping) else None
                if not isinstance(items, list):
                    raise TruthError("GET /api/v1/tickets: no 'items' list in the answer")
                for item in items:
                    if isinstance(item, Mapping) and isinstance(item.get("id"), int):
                        seen.setdefault(item["id"], item)
                offset += len(items)
                total = body.get("total")
                if not items or (isinstance(total, int) and offset >= total):
                    break
    except TruthError:
        raise
    except httpx.HTTPError as exc:
        raise TruthError(f"cannot reach the API at {base}: {exc}") from None
    except ValueError as exc:  # JSON decoding
        raise TruthError(f"the API at {base} did not answer JSON: {exc}") from None
    return parse_tickets(seen.values())


def _detail(response: Any) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else response.reason_phrase or "error"


def _fail(message: str) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``linli sim-check``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    try:
        truth = read_truth(Path(args.truth))
        if args.tickets is not None:
            tickets = read_tickets(Path(args.tickets))
        else:
            password = args.password if args.password is not None else os.environ.get("LINLI_API_PASSWORD")
            if not args.username or password is None:
                return _fail("--api needs --username and --password (or $LINLI_API_USERNAME, $LINLI_API_PASSWORD)")
            tickets = fetch_tickets(args.api, args.username, password, site=args.site)
        report = check(truth, tickets, interval_s=args.interval, slack=args.slack, site=args.site)
    except TruthError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        print(render(report))
    failed = not report.ok or (args.strict and bool(report.late))
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
