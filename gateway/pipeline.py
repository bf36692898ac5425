"""The ingest pipeline: a batch of raw messages in, state, time series, tickets and dead letters out."""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import JSON, Table, Text, bindparam
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from gateway.broker import Inbound
from gateway.buffer import PointSink, Rejected
from linli.clock import from_ms
from linli.commands import COMMAND_TTL, command_message
from linli.contract import Channel, CommandAck, Event, Message, Rejection, RejectReason, Status, parse
from linli.engine import Decision, DeviceLive, Engine
from linli.engine.decisions import DeviceCommand
from linli.site import SiteRegistry
from linli.storage import Database, DeadLetter, DeviceEngineState, DeviceState
from linli.storage.commands import record_ack, record_sent
from linli.storage.tickets import TicketChange, TicketService
from linli.tickets import EventType
from linli.tsdb import Point, TimeSeriesStore

log = logging.getLogger("linli.gateway.pipeline")
_JSON = json.JSONEncoder(separators=(",", ":"))

# Publishes an internal event (topic, payload); the runtime passes the broker link's publish.
Publish = Callable[[str, bytes], None]
_LOG_EVERY_S = 60
RATE_LIMIT_PER_S = 20  # live messages per device per second (device contract)
SAMPLE_EXCESS_EVERY = 10  # of a throttled device's excess QoS 0 telemetry, keep one in this many
STATE_SAVE_EVERY_S = 5.0  # under load, live state rows are saved at most this often (see _commit)
REPLAY_AFTER_MS = 60_000  # a device-stamped ts older than this on arrival: the device replays its buffer
STORE_REJECTED = "store_rejected"  # dead-letter reason of a point the time-series store refused
OWN_COMMANDS_KEPT = 100_000  # ids of our own commands remembered (a schedule push per light, then a few)
DEVICE_EVENT_EVERY_S = 5.0  # a device's readings go out on linli/v1/{site}/events at most this often
# What the API's live streams carry of a device, per kind: (state fields, sent at once when they change;
# reading fields, sent at most every DEVICE_EVENT_EVERY_S). Online/offline is always a state change.
LIVE_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "streetlight": (("relay",), ("power_w", "voltage_v")),
    "elevator": (("mode",), ("floor",)),
    "charger": (("status",), ()),
}


@dataclass(slots=True)
class Counters:
    received: int = 0
    processed: int = 0
    duplicates: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    replayed: int = 0  # messages with an old ts (a device replaying its offline buffer)
    throttled: int = 0  # QoS 0 telemetry dropped by sampling a device over the rate limit
    tickets_changed: int = 0
    tickets_opened: dict[str, int] = field(default_factory=dict)  # by fault code

    # kept for callers of the time before the sink: the sink's own stats are the truth
    points_written: int = 0
    points_failed: int = 0


@dataclass(slots=True)
class _Rate:
    second: int = -1
    count: int = 0
    flagged_until_s: int = -1  # the device counts as throttled until this second


class Pipeline:
    def __init__(
        self,
        *,
        sites: SiteRegistry,
        engine: Engine,
        database: Database,
        store: TimeSeriesStore | None = None,
        sink: PointSink | None = None,
        publish: Publish | None = None,
    ) -> None:
        if sink is None:
            if store is None:
                raise ValueError("a Pipeline needs a store or a sink")
            sink = PointSink(store)
        self._engine = engine
        self._db = database
        self.sink = sink
        self._publish = publish
        self.counters = Counters()
        self._last_logged: dict[tuple[str | None, str | None], datetime] = {}
        self._rates: dict[tuple[str, str], _Rate] = {}
        # Ids of the commands this gateway published: the site session hears them back (it reads
        # estate/v1/{site}/#, staff commands included), and they are nobody's news.
        self._own_commands: OrderedDict[str, None] = OrderedDict()
        self._tags: dict[tuple[str, str], dict[str, str]] = {}  # a telemetry point's tags, per device
        self._state_statements: tuple[Any, Any] | None = None
        self._states_saved_at = time.monotonic()
        # Device events for the API's live streams: per device (monotonic time sent, state, readings)
        # last published, and the devices whose changed readings wait for their next slot.
        self._announced: dict[tuple[str, str], tuple[float, tuple[Any, ...], tuple[Any, ...]]] = {}
        self._unannounced: dict[tuple[str, str], DeviceLive] = {}
        self.use_sites(sites)

    def use_sites(self, sites: SiteRegistry) -> None:
        """Validate and route by `sites` from the next batch on (a reload of the site files)."""
        self._sites = sites
        self._tickets = TicketService(sites)
        self._concentrators = {(s.id, c.id) for s in sites for c in s.spec.concentrators}
        self._tags = {}

    def _device_kind(self, site: str, device_id: str) -> str | None:
        device = self._sites.device(site, device_id)
        return device.kind if device else None

    def _concentrator(self, site: str, device_id: str) -> str | None:
        return "concentrator" if (site, device_id) in self._concentrators else None

    def process(self, batch: Sequence[Inbound], now: datetime, *, backlog: bool = False) -> list[TicketChange]:
        """Validate, update live state, detect, write time series, then commit tickets and state.

        `backlog`: more messages are waiting; live state rows may then be saved later (see `_commit`).
        """
        rejections: list[Rejection] = []
        decisions: list[Decision] = []
        points: list[Point] = []
        acks: list[Message] = []  # devices' answers to commands: recorded with the batch (the audit trail)
        for item in batch:
            self.counters.received += 1
            result = parse(
                item.topic, item.payload, received_ms=item.received_ms, device_kind=self._device_kind,
                known_site=self._sites.__contains__, concentrator_known=self._concentrator,
            )
            if isinstance(result, Rejection):
                rejections.append(self._explained(result))
                if result.reason is RejectReason.FUTURE_TS and result.site and result.device_id:
                    # A device whose clock jumped ahead still speaks: not silent, so never falsely offline.
                    decisions.extend(self._engine.heard(result.site, result.device_id, now))
                continue
            if result.channel in (Channel.TELEMETRY, Channel.EVENT) and self._engine.is_duplicate(result):
                self.counters.duplicates += 1
                continue
            if self._throttled(result, item.qos):
                self._engine.note_seq(result)
                self.counters.throttled += 1
                continue
            if result.channel is Channel.CMD_ACK:
                acks.append(result)
            decisions.extend(self._engine.observe(result, now))
            point = self._point(result) if result.channel is Channel.TELEMETRY else self._record_point(result)
            if point is not None:
                points.append(point)
            self.counters.processed += 1
        return self._commit(rejections, decisions, points, now, backlog=backlog, acks=acks)

    def _throttled(self, message: Message, qos: int) -> bool:
        """Rate limit: over 20 live messages/s flags the device; its excess QoS 0 telemetry is sampled down.

        QoS 1 is never dropped, and a replayed message (old ts) neither counts nor is dropped.
        """
        if message.device_stamped and message.ts_ms < message.received_ms - REPLAY_AFTER_MS:
            self.counters.replayed += 1
            return False
        key = (message.site, message.device_id)
        rate = self._rates.get(key)
        if rate is None:
            rate = self._rates[key] = _Rate()
        second = message.received_ms // 1000
        if second != rate.second:
            rate.second, rate.count = second, 0
        rate.count += 1
        excess = rate.count - RATE_LIMIT_PER_S
        if excess <= 0:
            return False
        if rate.flagged_until_s < second:
            log.warning("device %s/%s sends over %d messages/s: throttled", *key, RATE_LIMIT_PER_S)
        rate.flagged_until_s = second + 60
        if qos > 0 or message.channel is not Channel.TELEMETRY:
            return False
        return excess % SAMPLE_EXCESS_EVERY != 0

    def throttled_devices(self, now_ms: int) -> int:
        """Devices over the rate limit within the last minute."""
        second = now_ms // 1000
        return sum(1 for rate in self._rates.values() if rate.flagged_until_s >= second)

    def _explained(self, rejection: Rejection) -> Rejection:
        """A retired device is unknown to the contract; say that it is retired, not unknown."""
        if rejection.reason is RejectReason.UNKNOWN_DEVICE and rejection.site and rejection.device_id:
            site = self._sites.get(rejection.site)
            if site is not None and rejection.device_id in site.retired:
                return replace(rejection, detail=f"device {rejection.device_id!r} of site {rejection.site!r} is retired")
        return rejection

    def tick(self, now: datetime, *, backlog: bool = False) -> list[TicketChange]:
        decisions = self._engine.tick(now)
        if self._unannounced and self._publish is not None:  # readings held back by the rate limit
            self._announce(list(self._unannounced.values()), now)
        if not decisions and ((backlog and not self._state_save_due()) or not any(
                live.dirty for live in self._engine.devices())):
            return []
        return self._commit([], decisions, [], now, backlog=backlog)

    def save_states(self, now: datetime) -> None:
        """Save the live state of every device changed since the last save (the gateway stopping)."""
        dirty = self._engine.take_dirty()
        if dirty:
            with self._db.session() as session:
                self._save_states(session, dirty, now)

    def _state_save_due(self) -> bool:
        return time.monotonic() - self._states_saved_at >= STATE_SAVE_EVERY_S

    def tick_with(self, decisions: Sequence[Decision], now: datetime) -> list[TicketChange]:
        """Commit decisions the engine made outside a batch (soaks started, maintenance ended)."""
        return self._commit([], list(decisions), [], now) if decisions else []

    def _commit(
        self, rejections: list[Rejection], decisions: list[Decision], points: list[Point], now: datetime,
        *, backlog: bool = False, acks: Sequence[Message] = (),
    ) -> list[TicketChange]:
        # Points first (store, else the on-disk buffer), then tickets and state: when the caller
        # acknowledges the batch to the broker afterwards, everything of it is durable.
        refused = self.sink.write(points) if points else []
        self.counters.points_written = self.sink.stats.written
        self.counters.points_failed = self.sink.stats.failed
        # Live state rows (device_states, device_engine_states) are the engine's restart cache, not the
        # record of a message (that is the point, stored above, and the tickets). With no backlog they
        # are saved with every batch. Under a backlog a device's row is rewritten at most once per
        # STATE_SAVE_EVERY_S instead of once per batch, except that a batch with decisions saves every
        # changed device with its tickets, in the same transaction. So a SIGKILL loses no acked message
        # and no ticket; it can lose up to STATE_SAVE_EVERY_S of live state changes that decided
        # nothing: after the restart, those devices' last values, seq window and detector counters are
        # that much older (the seqs of messages in between count as gaps; a detector counts again from
        # the next samples; an open ticket is not raised twice, the ticket service merges).
        save = not backlog or bool(decisions) or self._state_save_due()
        dirty = self._engine.take_dirty() if save else []
        if save:
            self._states_saved_at = time.monotonic()
        with self._db.session() as session:
            for rejection in rejections:
                self._dead_letter(session, rejection, now)
            self._dead_letter_points(session, refused, now)
            changes = self._tickets.apply(session, decisions)
            for ack in acks:
                self._record_ack(session, ack, now)
            if dirty:
                self._save_states(session, dirty, now)
        self.counters.tickets_changed += len(changes)
        for change in changes:
            if change.event is EventType.OPENED:
                self.counters.tickets_opened[change.fault] = self.counters.tickets_opened.get(change.fault, 0) + 1
        if self._publish is not None:
            for decision in decisions:
                if isinstance(decision, DeviceCommand):
                    self._send_command(decision, now)
            for change in changes:
                self._publish(f"linli/v1/{change.site}/events", json.dumps({
                    "type": "ticket", "ticket_id": change.ticket_id, "event": change.event.value,
                    "status": change.status.value, "at": now.isoformat(),
                }).encode())
            if dirty:
                self._announce(dirty, now)
        return changes

    def _announce(self, devices: Sequence[DeviceLive], now: datetime) -> None:
        """Device events (``docs/live-updates.md``) for the devices whose live state changed: online or a
        state field at once, other readings at most every DEVICE_EVENT_EVERY_S per device. An unchanged
        device costs a few dict reads and a tuple comparison; JSON is built only for what goes out."""
        assert self._publish is not None
        mono = time.monotonic()
        for live in devices:
            state_fields, reading_fields = LIVE_FIELDS.get(live.kind, ((), ()))
            last = live.last
            state = (live.online, *[last.get(name) for name in state_fields])
            readings = tuple(last.get(name) for name in reading_fields)
            key = (live.site, live.device_id)
            sent = self._announced.get(key)
            if sent is not None and sent[1] == state:
                if sent[2] == readings:
                    self._unannounced.pop(key, None)
                    continue
                if mono - sent[0] < DEVICE_EVENT_EVERY_S:
                    self._unannounced[key] = live
                    continue
            self._unannounced.pop(key, None)
            self._announced[key] = (mono, state, readings)
            values = {name: last[name] for name in (*state_fields, *reading_fields) if last.get(name) is not None}
            self._publish(f"linli/v1/{live.site}/events", _JSON.encode({
                "type": "device", "device_id": live.device_id, "kind": live.kind, "online": live.online,
                "last": values, "at": now.isoformat(),
            }).encode())

    def _record_ack(self, session: Any, message: Message, now: datetime) -> None:
        body = message.body
        if not isinstance(body, CommandAck):
            return
        if record_ack(session, site=message.site, device_id=message.device_id, command_id=body.id, ok=body.ok,
                      error=body.error, at=now) is None:
            log.info("cmd/ack from %s/%s for unknown or answered command %r", message.site, message.device_id, body.id[:64])

    def _send_command(self, command: DeviceCommand, now: datetime) -> None:
        """An automatic action (a charger taken out of use): published to the device, and logged."""
        assert self._publish is not None
        device = self._sites.device(command.site, command.device_id)
        if device is None:
            return
        topic, payload, command_id = command_message(command.site, device.kind, device.id, command.action,
                                                     command.args, now=now)
        log.info("command %s %s to %s/%s: %s", command_id, command.action, command.site, command.device_id,
                 command.reason)
        try:  # into the audit trail before it goes out, so the device's answer finds it
            with self._db.session() as session:
                record_sent(session, command_id=command_id, site=command.site, device_id=device.id, kind=device.kind,
                            action=command.action, params=dict(command.args), requested_by="system", sent_at=now,
                            expires_at=now + COMMAND_TTL, reason=command.reason)
        except SQLAlchemyError as exc:  # the action matters more than its record: send it anyway
            log.warning("command %s not recorded: %s", command_id, exc)
        self._own_commands[command_id] = None
        while len(self._own_commands) > OWN_COMMANDS_KEPT:
            self._own_commands.popitem(last=False)
        self._publish(topic, payload)

    def own_command(self, item: Inbound) -> bool:
        """A command this gateway published, heard back on its own subscription."""
        if not self._own_commands or not item.topic.endswith("/cmd"):
            return False
        try:
            command_id = json.loads(item.payload).get("id")
        except (ValueError, AttributeError):
            return False
        return isinstance(command_id, str) and command_id in self._own_commands

    def _dead_letter(self, session: Any, rejection: Rejection, now: datetime, *, reason: str | None = None) -> None:
        reason = reason or rejection.reason.value
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

    def dead_letter_points(self, refused: Rejected) -> None:
        """Dead-letter points the store refused while the flusher wrote them (the flusher's thread)."""
        with self._db.session() as session:
            self._dead_letter_points(session, refused, datetime.now(tz=UTC))

    def _dead_letter_points(self, session: Any, refused: Rejected, now: datetime) -> None:
        for point, why in refused:
            rejection = Rejection(
                RejectReason.SCHEMA, why, f"tsdb/{point.measurement}", point.ts_ms, point.tags.get("site"),
                point.tags.get("device"), json.dumps({"measurement": point.measurement, "tags": dict(point.tags),
                                                     "fields": dict(point.fields), "ts_ms": point.ts_ms}).encode(),
            )
            self._dead_letter(session, rejection, now, reason=STORE_REJECTED)

    def _save_states(self, session: Any, dirty: list[DeviceLive], now: datetime) -> None:
        states, engine_states = self._statements(session.get_bind().dialect.name)
        dumps = _JSON.encode  # the JSON columns get their text from here, not per value from SQLAlchemy
        rows = [{
            "site": live.site, "device_id": live.device_id, "kind": live.kind, "online": live.online,
            "last_seen": live.last_seen, "status": dumps(live.status), "last": dumps(live.last),
            "last_seq": live.last_seq, "boot": live.boot, "updated_at": now,
        } for live in dirty]
        session.execute(states, rows)
        engine_rows = [{"site": live.site, "device_id": live.device_id, "state": dumps(live.snapshot()),
                        "updated_at": now} for live in dirty]
        session.execute(engine_states, engine_rows)

    def _statements(self, dialect: str) -> tuple[Any, Any]:
        """The two upserts of `_save_states`, built once: Core tables and executemany (one compiled
        statement however many devices changed; a multi-VALUES insert was once the hottest spot).
        Their JSON columns take JSON text (a cast on PostgreSQL; SQLite stores JSON as text)."""
        if self._state_statements is None:
            insert = pg_insert if dialect == "postgresql" else sqlite_insert

            def json_text(name: str) -> Any:
                param = bindparam(name, type_=Text())
                return sql_cast(param, JSON) if dialect == "postgresql" else param

            table = cast(Table, DeviceState.__table__)
            columns = ("kind", "online", "last_seen", "last_seq", "boot", "updated_at")
            states = insert(table).values(
                site=bindparam("site"), device_id=bindparam("device_id"), status=json_text("status"),
                last=json_text("last"), **{c: bindparam(c, type_=table.c[c].type) for c in columns})
            states = states.on_conflict_do_update(
                index_elements=["site", "device_id"],
                set_={c: states.excluded[c] for c in (*columns, "status", "last")})
            engine_table = cast(Table, DeviceEngineState.__table__)
            engine_states = insert(engine_table).values(
                site=bindparam("site"), device_id=bindparam("device_id"), state=json_text("state"),
                updated_at=bindparam("updated_at", type_=engine_table.c.updated_at.type))
            engine_states = engine_states.on_conflict_do_update(
                index_elements=["site", "device_id"],
                set_={"state": engine_states.excluded.state, "updated_at": engine_states.excluded.updated_at})
            self._state_statements = (states, engine_states)
        return self._state_statements

    def _record_point(self, message: Message) -> Point | None:
        """Events and status changes as points too: what happened, kept even when the buffer is full."""
        body = message.body
        tags = {"site": message.site, "device": message.device_id, "kind": message.kind}
        fields: dict[str, float | bool | str] = {}
        if isinstance(body, Event):
            fields["code"] = body.code
            if body.detail:
                fields["detail"] = json.dumps(body.detail, ensure_ascii=False, sort_keys=True)[:4000]
            measurement = "event"
        elif isinstance(body, Status):
            fields["online"] = body.online
            for name in ("fw", "model"):
                value = getattr(body, name)
                if value:
                    fields[name] = value
            for name in ("interval_s", "boot"):
                value = getattr(body, name)
                if value is not None:
                    fields[name] = float(value)
            measurement = "status"
        else:
            return None
        if message.seq is not None:
            fields["seq"] = float(message.seq)
        return Point(measurement, tags, fields, message.ts_ms)

    def _point(self, message: Message) -> Point | None:
        if message.channel is not Channel.TELEMETRY:
            return None
        fields: dict[str, float | bool | str] = {}
        # seq is kept as a field: gaps in the stored sequence are how a lost QoS 1 message shows.
        # What model_dump(exclude_none=True) gives (the declared fields, all scalars in telemetry, then
        # the extra ones), read off the model without building the dump.
        body = message.body
        extra = body.__pydantic_extra__
        for values in (body.__dict__, extra) if extra else (body.__dict__,):
            for name, value in values.items():
                if value is None or name == "ts":
                    continue
                if type(value) is float or isinstance(value, bool | str):
                    fields[name] = value
                elif isinstance(value, int | float):
                    fields[name] = float(value)  # InfluxDB refuses a field whose type changes: numbers are floats
        if not fields:
            return None
        key = (message.site, message.device_id)
        tags = self._tags.get(key)
        if tags is None:
            site = self._sites[message.site]
            device = site.devices[message.device_id]
            tags = self._tags[key] = {"site": message.site, "device": message.device_id, **site.location_tags(device)}
        return Point(message.kind, tags, fields, message.ts_ms)
