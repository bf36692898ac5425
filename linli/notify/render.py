"""The text of a notification, pure: a ticket, what happened to it, and the site that names things.

Chinese first; English when the channel says ``lang: en``. Every message carries the device (or
the circuit, cabinet or building the ticket is about), where it is, the fault, the severity, the
deadlines still ahead, the ticket's status and a link to the ticket.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from linli.catalog import FAULTS, TEAM_NAMES, Severity
from linli.tickets import TicketStatus, TicketView

if TYPE_CHECKING:
    from linli.site import Site

SEVERITY_WORDS: dict[Severity, tuple[str, str]] = {
    Severity.P0: ("危及人身安全", "danger to people"),
    Severity.P1: ("多人服务中断", "service down for many"),
    Severity.P2: ("设备故障", "a device is down"),
    Severity.P3: ("性能下降，计划处理", "degraded, plan it"),
}

STATUS_WORDS: dict[TicketStatus, tuple[str, str]] = {
    TicketStatus.OPEN: ("待签收", "open"),
    TicketStatus.ACKNOWLEDGED: ("已签收", "acknowledged"),
    TicketStatus.IN_PROGRESS: ("处理中", "in progress"),
    TicketStatus.ON_HOLD: ("挂起", "on hold"),
    TicketStatus.RESOLVED: ("已办结，待核查", "resolved, awaiting verification"),
    TicketStatus.VERIFIED: ("已核查", "verified"),
    TicketStatus.CLOSED: ("已销号", "closed"),
    TicketStatus.CANCELLED: ("已撤销", "cancelled"),
}

NOTICE_WORDS: dict[str, tuple[str, str]] = {
    "opened": ("新工单", "New ticket"),
    "acknowledged": ("已签收", "Acknowledged"),
    "started": ("已到场处理", "Work started"),
    "held": ("挂起", "On hold"),
    "resumed": ("恢复处理", "Resumed"),
    "resolved": ("已办结", "Resolved"),
    "verified": ("已核查", "Verified"),
    "closed": ("已销号", "Closed"),
    "cancelled": ("已撤销", "Cancelled"),
    "reopened": ("工单重开", "Reopened"),
    "severity_raised": ("等级提升", "Severity raised"),
    "signal_cleared": ("信号已消失", "Signal cleared"),
    "signal_returned": ("信号再现", "Signal returned"),
    "assigned": ("已指派", "Assigned"),
    "commented": ("新备注", "Comment"),
    "escalated": ("超时升级", "Escalated"),
    "overdue": ("已超时", "Overdue"),
    "reminder": ("催办", "Reminder"),
}

_LABELS: dict[str, tuple[str, str]] = {
    "ticket": ("工单", "Ticket"),
    "device": ("设备", "Device"),
    "subject": ("对象", "Subject"),
    "place": ("位置", "Place"),
    "fault": ("故障", "Fault"),
    "severity": ("等级", "Severity"),
    "status": ("状态", "Status"),
    "ack_due_at": ("签收时限", "Acknowledge by"),
    "start_due_at": ("到场时限", "On site by"),
    "resolve_due_at": ("修复时限", "Fixed by"),
    "resolved_at": ("办结时间", "Resolved at"),
    "closed_at": ("销号时间", "Closed at"),
    "teams": ("责任单位", "Teams"),
    "note": ("说明", "Note"),
    "link": ("查看工单", "Open the ticket"),
    "overdue": ("已超时", "overdue"),
    "brand": ("邻里", "Linli"),
    "please_ack": ("请于{at}前签收", "acknowledge by {at}"),
}
_SEP = ("：", ": ")
_DOT = (" · ", " · ")


@dataclass(frozen=True, slots=True)
class Message:
    """One notification's text in every shape the channels need."""

    title: str
    lines: tuple[str, ...]  # "label：value" lines, in order
    link: str
    link_label: str
    short: str  # one line for SMS
    lang: str = "zh"

    @property
    def text(self) -> str:
        return "\n".join((self.title, *self.lines, f"{self.link_label}{_SEP[self.lang == 'en']}{self.link}"))

    @property
    def markdown(self) -> str:
        # Blank lines between lines: DingTalk's markdown joins single newlines; WeCom shows both alike.
        body = "\n\n".join(f"> {line}" for line in self.lines)
        return f"### {self.title}\n\n{body}\n\n[{self.link_label}]({self.link})"


def ticket_link(base_url: str, ticket_id: int) -> str:
    return f"{base_url.rstrip('/')}/tickets/{ticket_id}"


def _name(item: object, en: bool) -> str:
    name = str(getattr(item, "name", "") or getattr(item, "id", ""))
    return str(getattr(item, "name_en", None) or name) if en else name


def subject_name(site: Site, view: TicketView, en: bool = False) -> str:
    """What the ticket is about, by its name at the site (the id when the site no longer has it)."""
    kind, ident = view.subject.type, view.subject.id
    spec = site.spec
    found: object | None = None
    if kind == "device":
        found = site.devices.get(ident) or site.retired.get(ident)
    elif kind == "circuit":
        found = site.circuits.get(ident)
    elif kind == "cabinet":
        found = next((c for c in spec.cabinets if c.id == ident), None)
    elif kind == "building":
        found = site.buildings.get(ident)
    elif kind == "concentrator":
        found = next((c for c in spec.concentrators if c.id == ident), None)
    return f"{_name(found, en)} ({ident})" if found is not None else ident


def place_name(site: Site, view: TicketView, en: bool = False) -> str:
    """Where it is: compound and building for lifts, cabinet and circuit for lights, compound for piles."""
    kind, ident = view.subject.type, view.subject.id
    parts: list[str] = []
    cabinets = {c.id: c for c in site.spec.cabinets}
    circuit_id: str | None = None
    building_id: str | None = None
    compound_id: str | None = None
    if kind == "device":
        device = site.devices.get(ident) or site.retired.get(ident)
        if device is not None:
            circuit_id, building_id, compound_id = device.circuit, device.building, device.compound
    elif kind == "circuit":
        circuit_id = ident
    elif kind == "cabinet":
        if ident in cabinets:
            parts.append(_name(cabinets[ident], en))
    elif kind == "building":
        building_id = ident
    elif kind == "concentrator":
        conc = next((c for c in site.spec.concentrators if c.id == ident), None)
        if conc is not None and conc.cabinet in cabinets:
            parts.append(_name(cabinets[conc.cabinet], en))
    if building_id is not None and building_id in site.buildings:
        building = site.buildings[building_id]
        compound_id = compound_id or building.compound
    if compound_id is not None and compound_id in site.compounds:
        parts.append(_name(site.compounds[compound_id], en))
    if building_id is not None and building_id in site.buildings:
        parts.append(_name(site.buildings[building_id], en))
    if circuit_id is not None and circuit_id in site.circuits:
        cabinet_id = site.cabinet_of_circuit.get(circuit_id)
        if cabinet_id in cabinets:
            parts.append(_name(cabinets[cabinet_id], en))
        parts.append(_name(site.circuits[circuit_id], en))
    return _DOT[en].join([_name(site.spec.site, en), *parts])


def _team_name(site: Site, team: str, en: bool) -> str:
    config = next((c for t, c in site.spec.teams.items() if t.value == team), None)
    if config is not None:
        return (config.name_en or config.name) if en else config.name
    default = TEAM_NAMES.get(team)
    return default[en] if default else team


def render(
    view: TicketView,
    notice: str,
    *,
    ticket_id: int,
    site: Site,
    base_url: str,
    lang: str = "zh",
    note: str | None = None,
    now: datetime | None = None,
) -> Message:
    """The message telling people that `notice` happened to ticket `ticket_id` (now as in `view`)."""
    en = lang == "en"
    zone = ZoneInfo(site.spec.site.timezone)

    def label(key: str) -> str:
        return _LABELS[key][en]

    def when(moment: datetime) -> str:
        text = moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        if now is not None and moment <= now and view.is_active:
            text += f"（{label('overdue')}）" if not en else f" ({label('overdue')})"
        return text

    sep = _SEP[en]
    spec = FAULTS.get(view.fault)
    fault = (spec.en if en else spec.zh) if spec else view.fault
    notice_word = NOTICE_WORDS.get(notice, (notice, notice))[en]
    subject = subject_name(site, view, en)
    place = place_name(site, view, en)
    severity = f"{view.severity.value} {SEVERITY_WORDS[view.severity][en]}"
    status = STATUS_WORDS[view.status][en]
    link = ticket_link(base_url, ticket_id)
    what = view.title or f"{subject} · {fault}"
    title = f"【{view.severity.value} {notice_word}】{what}" if not en else f"[{view.severity.value} {notice_word}] {what}"

    lines = [
        f"{label('ticket')}{sep}#{ticket_id} {notice_word}",
        f"{label('device' if view.subject.type == 'device' else 'subject')}{sep}{subject}",
        f"{label('place')}{sep}{place}",
        f"{label('fault')}{sep}{fault} ({view.fault})",
        f"{label('severity')}{sep}{severity}",
        f"{label('status')}{sep}{status}",
    ]
    deadlines: list[tuple[str, datetime | None]] = []
    if view.status is TicketStatus.OPEN:
        deadlines = [("ack_due_at", view.ack_due_at), ("start_due_at", view.start_due_at),
                     ("resolve_due_at", view.resolve_due_at)]
    elif view.status is TicketStatus.ACKNOWLEDGED:
        deadlines = [("start_due_at", view.start_due_at), ("resolve_due_at", view.resolve_due_at)]
    elif view.status in (TicketStatus.IN_PROGRESS, TicketStatus.ON_HOLD):
        deadlines = [("resolve_due_at", view.resolve_due_at)]
    else:
        deadlines = [("resolved_at", view.resolved_at), ("closed_at", view.closed_at)]
    lines.extend(f"{label(key)}{sep}{when(moment)}" for key, moment in deadlines if moment is not None)
    teams = "、".join(_team_name(site, t, en) for t in view.teams) if not en else ", ".join(
        _team_name(site, t, en) for t in view.teams)
    lines.append(f"{label('teams')}{sep}{teams}")
    if note:
        lines.append(f"{label('note')}{sep}{note.strip()[:300]}")

    short = _short(view, notice_word, fault, f"{subject}（{place}）" if not en else f"{subject} ({place})",
                   link=link, ticket_id=ticket_id, en=en, zone=zone)
    return Message(title=title, lines=tuple(lines), link=link, link_label=label("link"), short=short,
                   lang="en" if en else "zh")


def _short(view: TicketView, notice_word: str, fault: str, where: str, *, link: str, ticket_id: int,
           en: bool, zone: ZoneInfo) -> str:
    """One SMS line: what, where, by when, and the link (:func:`shorten` keeps the link when cutting)."""
    ack = view.ack_due_at.astimezone(zone).strftime("%H:%M")
    if en:
        ask = f", {_LABELS['please_ack'][1].format(at=ack)}" if view.status is TicketStatus.OPEN else ""
        return f"[Linli] {view.severity.value} {notice_word}: {fault}, {where}{ask}. #{ticket_id} {link}"
    ask = f"，{_LABELS['please_ack'][0].format(at=ack)}" if view.status is TicketStatus.OPEN else ""
    return f"【邻里】{view.severity.value} {notice_word}：{fault}，{where}{ask}。工单#{ticket_id} {link}"


def shorten(text: str, link: str, max_chars: int) -> str:
    """`text` within `max_chars`, keeping the link at its end."""
    if len(text) <= max_chars:
        return text
    head = text[: max(0, max_chars - len(link) - 2)].rstrip()
    return f"{head}… {link}"[: max_chars] if len(link) < max_chars else link[:max_chars]
