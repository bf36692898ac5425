"""The ingest pipeline: a batch of raw messages in, state, time series, tickets and dead letters out."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gateway.broker import Inbound
from linli.clock import from_ms
from linli.contract import Channel, Message, Rejection, RejectReason, parse
from linli.engine import Decision, DeviceLive, Engine
from linli.site import SiteRegistry
from linli.storage import Database, DeadLetter, DeviceState
from linli.storage.tickets import TicketChange, TicketService
from linli.tsdb import Point, StoreError, TimeSeriesStore

log = logging.getLogger("linli.gateway.pipeline")

# Publishes an internal event (topic, payload); the runtime passes the broker link's publish.
Publish = Callable[[str, bytes], None]
_LOG_EVERY_S = 60


@dataclass(slots=True)
class Counters:
    received: int = 0
    processed: int = 0
    duplicates: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    points_written: int = 0
    points_failed: int = 0
    tickets_changed: int = 0


class Pipeline:
    def __init__(
        self,
        *,
        sites: SiteRegistry,
        engine: Engine,
        database: Database,
        store: TimeSeriesStore,
        publish: Publish | None = None,
    ) -> None:
        self._engine = engine
        self._db = database
        self._store = store
        self._publish = publish
        self.counters = Counters()
        self._last_logged: dict[tuple[str | None, str | None], datetime] = {}
        self.use_sites(sites)

    def use_sites(self, sites: SiteRegistry) -> None:
        """Validate and route by `sites` from the next batch on (a reload of the site files)."""
        self._sites = sites
        self._tickets = TicketService(sites)
        self._concentrators = {(s.id, c.id) for s in sites for c in s.spec.concentrators}

    def _device_kind(self, site: str, device_id: str) -> str | None:
        device = self._sites.device(site, device_id)
        return device.kind if device else None

    def _concentrator(self, site: str, device_id: str) -> str | None:
        return "concentrator" if (site, device_id) in self._concentrators else None

    def process(self, batch: Sequence[Inbound], now: datetime) -> list[TicketChange]:
        """Validate, update live state, detect, write time series, then commit tickets and state."""
        rejections: list[Rejection] = []
        decisions: list[Decision] = []
        points: list[Point] = []
        for item in batch:
            self.counters.received += 1
            result = parse(
                item.topic, item.payload, received_ms=item.received_ms, device_kind=self._device_kind,
                known_site=self._sites.__contains__, concentrator_known=self._concentrator,
            )
            if isinstance(result, Rejection):
                rejections.append(self._explained(result))
                continue
            if result.channel in (Channel.TELEMETRY, Channel.EVENT) and self._engine.is_duplicate(result):
                self.counters.duplicates += 1
                continue
            decisions.extend(self._engine.observe(result, now))
            point = self._point(result)
            if point is not None:
                points.append(point)
            self.counters.processed += 1
        return self._commit(rejections, decisions, points, now)

    def _explained(self, rejection: Rejection) -> Rejection:
        """A retired device is unknown to the contract; say that it is retired, not unknown."""
        if rejection.reason is RejectReason.UNKNOWN_DEVICE and rejection.site and rejection.device_id:
            site = self._sites.get(rejection.site)
            if site is not None and rejection.device_id in site.retired:
                return replace(rejection, detail=f"device {rejection.device_id!r} of site {rejection.site!r} is retired")
        return rejection

    def tick(self, now: datetime) -> list[TicketChange]:
        decisions = self._engine.tick(now)
        if not decisions and not any(live.dirty for live in self._engine.devices()):
            return []
        return self._commit([], decisions, [], now)

    def _commit(
        self, rejections: list[Rejection], decisions: list[Decision], points: list[Point], now: datetime
    ) -> list[TicketChange]:
        if points:
            try:
                self._store.write(points)
                self.counters.points_written += len(points)
            except StoreError as exc:
                # The on-disk buffer that keeps these comes with the gateway-at-scale work.
                self.counters.points_failed += len(points)
                log.error("time-series store refused %d points: %s", len(points), exc)
        dirty = self._engine.take_dirty()
        with self._db.session() as session:
            for rejection in rejections:
                self._dead_letter(session, rejection, now)
            changes = self._tickets.apply(session, decisions)
            if dirty:
                self._save_states(session, dirty, now)
        self.counters.tickets_changed += len(changes)
        if self._publish is not None:
            for change in changes:
                self._publish(f"linli/v1/{change.site}/events", json.dumps({
                    "type": "ticket", "ticket_id": change.ticket_id, "event": change.event.value,
                    "status": change.status.value, "at": now.isoformat(),
                }).encode())
        return changes

    def _dead_letter(self, session: Any, rejection: Rejection, now: datetime) -> None:
        reason = rejection.reason.value
        self.counters.dead_letters[reason] = self.counters.dead_letters.get(reason, 0) + 1
        session.add(DeadLetter(
            received_at=from_ms(rejection.received_ms), reason=reason, detail=rejection.detail[:2000],
            topic=rejection.topic[:1024], site=rejection.site, device_id=rejection.device_id, payload=rejection.payload,
        ))
        # Logged once per device per minute at most, so a broken device cannot flood the log.
        key = (rejection.site, rejection.device_id)
        last = self._last_logged.get(key)
        if last is None or (now - last).total_seconds() >= _LOG_EVERY_S:
            self._last_logged[key] = now
            log.warning("dead letter (%s) on %r: %s", reason, rejection.topic[:200], rejection.detail[:300])

    def _save_states(self, session: Any, dirty: list[DeviceLive], now: datetime) -> None:
        rows = [{
            "site": live.site, "device_id": live.device_id, "kind": live.kind, "online": live.online,
            "last_seen": live.last_seen, "status": live.status, "last": live.last, "last_seq": live.last_seq,
            "boot": live.boot, "updated_at": now,
        } for live in dirty]
        dialect = session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        statement = insert(DeviceState).values(rows)
        columns = ("kind", "online", "last_seen", "status", "last", "last_seq", "boot", "updated_at")
        update = {c: statement.excluded[c] for c in columns}
        session.execute(statement.on_conflict_do_update(index_elements=["site", "device_id"], set_=update))

    def _point(self, message: Message) -> Point | None:
        if message.channel is not Channel.TELEMETRY:
            return None
        site = self._sites[message.site]
        device = site.devices[message.device_id]
        fields: dict[str, float | bool | str] = {}
        for name, value in message.body.model_dump(exclude_none=True, exclude={"ts", "seq"}).items():
            if isinstance(value, bool | str):
                fields[name] = value
            elif isinstance(value, int | float):
                fields[name] = float(value)  # InfluxDB refuses a field whose type changes: numbers are floats
        for name, value in message.body.extras().items():
            fields.setdefault(name, value if isinstance(value, bool) else float(value))
        if not fields:
            return None
        tags = {"site": message.site, "device": message.device_id, **site.location_tags(device)}
        return Point(message.kind, tags, fields, message.ts_ms)
