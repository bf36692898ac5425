"""The gateway's periodic work beside the message stream: people's actions, escalation, notifications.

Every few seconds (of wall time) the worker reads what the API and staff changed in the database
that the engine must know: the tickets now resolved (their soak starts: verification) and the
planned maintenance windows (they silence devices); it escalates the tickets whose deadlines
passed. New, reopened and escalated tickets are queued in the notification outbox, which a thread
of its own sends (HTTP to robots and SMS gateways must never hold up ingest).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from linli.clock import Clock
from linli.engine import Decision, Engine
from linli.engine.verification import Resolution
from linli.notify.dispatcher import Dispatcher
from linli.notify.outbox import notify
from linli.site import SiteRegistry
from linli.storage import Database, TicketRow
from linli.storage.escalation import EscalationService
from linli.storage.maintenance import current_windows
from linli.storage.tickets import TicketChange
from linli.tickets import EventType, Subject, TicketStatus

log = logging.getLogger("linli.gateway.upkeep")

# Ticket changes people are told about (the rest shows in the ticket's history).
ANNOUNCED = frozenset({EventType.OPENED, EventType.REOPENED, EventType.SEVERITY_RAISED, EventType.CLOSED})
DISPATCH_EVERY_S = 1.0


class Upkeep:
    def __init__(self, *, database: Database, engine: Engine, sites: SiteRegistry, clock: Clock, base_url: str) -> None:
        self._db = database
        self._engine = engine
        self._base_url = base_url
        self.escalation = EscalationService(sites)
        self.dispatcher = Dispatcher(database, clock, sites=lambda: self._sites)
        self._wake = threading.Event()
        self.use_sites(sites)

    def use_sites(self, sites: SiteRegistry) -> None:
        """Only the sites this gateway serves (a standby escalates and tells nobody)."""
        self._sites = sites
        self.escalation.use_sites(sites)

    def run(self, now: datetime, *, clock_known: bool = True) -> list[Decision]:
        """The engine's decisions on what people did: soaks of resolved tickets, maintenance windows;
        and the streetlight schedules the site files set (once the clock is known: a gateway that
        follows a simulator's clock waits for its first announcement, or the commands would carry
        the wall clock's time and stay pending for hours of simulated time)."""
        site_ids = self._sites.ids()
        with self._db.session() as session:
            rows = session.scalars(select(TicketRow).where(
                TicketRow.site.in_(site_ids), TicketRow.status == TicketStatus.RESOLVED.value))
            resolutions = [r for r in (self._resolution(row) for row in rows) if r is not None]
            windows = current_windows(session, site_ids, now)
        decisions = self._engine.sync_resolutions(resolutions, now)
        decisions += self._engine.set_maintenance(windows, now)
        if clock_known:
            decisions += self._engine.schedule_pushes()  # sites served anew, or a site file's schedule changed
        return decisions

    def escalate(self, now: datetime) -> int:
        """Record the escalations due now and queue their notifications; returns how many."""
        with self._db.session() as session:
            recorded = self.escalation.run(session, now)
        if not recorded:
            return 0
        with self._db.session() as session:
            for item in recorded:
                row = session.get(TicketRow, item.ticket_id)
                site = self._sites.get(item.site)
                if row is None or site is None:
                    continue
                names = "、".join(p.name for p in item.people) or "—"
                notify(session, site, row, "escalated", now, base_url=self._base_url, teams=[item.team],
                       note=f"{item.reason}（第 {item.level} 级）：{names}", occurrence=str(item.event_id))
        self._wake.set()
        return len(recorded)

    def announce(self, changes: Sequence[TicketChange], now: datetime) -> None:
        """Queue the notifications of new, reopened, worsened and closed tickets; the sender wakes at once."""
        wanted = [c for c in changes if c.event in ANNOUNCED]
        if not wanted:
            return
        with self._db.session() as session:
            for change in wanted:
                row = session.get(TicketRow, change.ticket_id)
                site = self._sites.get(change.site)
                if row is not None and site is not None:
                    notify(session, site, row, change.event, now, base_url=self._base_url)
        self._wake.set()

    def dispatch_until(self, stopping: threading.Event) -> None:
        """The sender thread: what is due in the outbox, then sleep until woken or a second passes."""
        database_down = False  # one line per outage, not a traceback a second
        while not stopping.is_set():
            try:
                self.dispatcher.run_due()
                if database_down:
                    log.warning("sending notifications again: the database answers")
                database_down = False
            except OperationalError as exc:
                if not database_down:
                    log.error("sending notifications paused: the database does not answer (%s)",
                              str(exc.orig or exc).strip().splitlines()[0])
                database_down = True
            except Exception:  # a broken receiver or database blip is retried; the thread lives on
                log.exception("sending notifications failed")
            self._wake.wait(DISPATCH_EVERY_S)
            self._wake.clear()

    def wake(self) -> None:
        self._wake.set()

    def _resolution(self, row: TicketRow) -> Resolution | None:
        site = self._sites.get(row.site)
        if site is None or row.resolved_at is None:
            return None
        device_ids = tuple(row.device_ids or ([row.device_id] if row.device_id else []))
        kinds = {site.devices[d].kind for d in device_ids if d in site.devices}
        kind = kinds.pop() if len(kinds) == 1 else "streetlight"
        return Resolution(row.id, row.site, Subject(row.subject_type, row.subject_id), row.fault, kind, device_ids,
                          row.resolved_at)
