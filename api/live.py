"""Live updates: the gateway's events from MQTT, fanned out to Server-Sent Events streams.

One paho client per API process subscribes to ``linli/v1/+/events``, where the gateway publishes its
ticket changes and device state changes (``gateway.pipeline``). A worker thread turns them into the
stream events of ``docs/live-updates.md``:

- device events: it keeps each device's online flag and key readings, the active tickets per device
  and the maintenance windows, so it says `health` (and the residents' word) as the REST routes do
  (``api.views``), and sends a device event when they change;
- ticket events: the `ticket_events` table is the feed (its ids only grow); the gateway's ticket
  messages wake the worker to read it at once, and it is read every few seconds anyway, so changes
  made by staff through any API process go out too, in order and once.
- command events: the recent rows of `device_commands` are compared with what was said, every few
  seconds and at once when a command is sent or its device reports (the gateway records the answers);
- with LINLI_FOLLOW_SIM_CLOCK (``linli demo``) the API runs on the simulator's clock, as the gateway:
  the hub follows ``linli/v1/clock`` for it (``system_clock``).

Every stream has a bounded asyncio queue; a stream that falls a full queue behind is ended (the
browser's EventSource reconnects and reloads), never waited for. JSON is built once per event, not
per stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from api.views import charger_state, devices_of, elevator_state, fault_name, health_of, history_entry, streetlight_state
from linli.clock import CLOCK_TOPIC, Clock, FollowedClock, SystemClock
from linli.engine.engine import MaintenanceWindow
from linli.mqtt_tls import apply_tls
from linli.settings import Settings
from linli.site import Device, Site, SiteRegistry
from linli.storage import Database
from linli.storage.commands import SENT, DeviceCommandRow, status_at
from linli.storage.maintenance import current_windows
from linli.storage.models import DeviceState, TicketEventRow, TicketRow
from linli.tickets import TicketStatus

# Tickets that residents and couriers filed: their progress is public (by ticket id only).
PUBLIC_SOURCES = frozenset({"resident", "grid_officer"})
log = logging.getLogger(__name__)

EVENTS_TOPIC = "linli/v1/+/events"
# The readings a private device event carries, per kind (the gateway sends these, see LIVE_FIELDS there).
KEY_READINGS: Mapping[str, tuple[str, ...]] = {
    "streetlight": ("relay", "power_w", "voltage_v"),
    "elevator": ("floor", "mode"),
    "charger": ("status",),
}
INBOX_MAX = 20_000  # MQTT messages waiting for the worker; beyond, new ones are dropped (and counted)
DRAIN_MAX = 1_000  # messages handled per worker pass
FEED_BATCH = 1_000  # ticket events read per query
GAP_WAIT_S = 30.0  # an id skipped in ticket_events is looked for this long (a transaction that commits late)
GAP_TRACK_MAX = 10_000  # a jump larger than this is not tracked id by id
WINDOWS_EVERY_S = 30.0  # maintenance windows are re-read (and health recomputed) this often
LOAD_RETRY_S = 5.0
# Commands (`command` events): those sent or answered this recently, and the unanswered ones until a
# minute past their expiry, are compared with what was said at every pass (device_commands is small).
COMMAND_LOOKBACK = timedelta(minutes=10)
COMMAND_EXPIRY_GRACE = timedelta(minutes=1)
COMMANDS_MAX = 5_000
_WAKE = ("", b"")  # an inbox item that only wakes the worker (a command was sent)


class _ClockChoice(BaseSettings):
    """LINLI_FOLLOW_SIM_CLOCK, as the gateway reads it (gateway.settings)."""

    model_config = SettingsConfigDict(env_prefix="LINLI_", env_file=".env", extra="ignore")
    follow_sim_clock: bool = False


def system_clock() -> Clock:
    """The API's clock when none is injected: the simulator's, announced on ``linli/v1/clock`` (the hub
    follows it), when LINLI_FOLLOW_SIM_CLOCK is on, as the gateway does (``linli demo``); else the
    system clock. Deadlines, command expiry and the time the pages count from are then the gateway's."""
    return FollowedClock() if _ClockChoice().follow_sim_clock else SystemClock()


def now_text(clock: Clock) -> str:
    """The clock's now as ISO 8601 with milliseconds and offset (`X-Linli-Now`, events' `now`)."""
    return clock.now().isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class Frame:
    """One event, encoded once: the SSE text and who may have it."""

    site: str
    public: bool
    teams: frozenset[str] | None  # a ticket's teams (a technician sees their teams' only); None: all
    text: str


@dataclass(frozen=True, slots=True)
class Audience:
    """Who a stream is for: the public view of one site, or an account's sites (and teams)."""

    sites: frozenset[str]
    public: bool = False
    teams: frozenset[str] | None = None  # a technician's teams; None: every ticket of the sites

    def wants(self, frame: Frame) -> bool:
        if frame.public != self.public or frame.site not in self.sites:
            return False
        return self.teams is None or frame.teams is None or bool(self.teams & frame.teams)


@dataclass(eq=False, slots=True)
class Stream:
    """One connected client: its audience and its queue of SSE texts (None: the stream ends)."""

    audience: Audience
    queue: asyncio.Queue[str | None]
    dropped: bool = False


def sse(event: str, data: Mapping[str, Any]) -> str:
    """An SSE frame: `json.dumps` writes no raw newline, so `data` is one line."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'), default=str)}\n\n"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def public_word(device: Device, state: DeviceState | None, statuses: list[TicketStatus]) -> str:
    """The residents' word for a device, as `/public/status` says it."""
    if device.kind == "streetlight":
        return streetlight_state(device, state, statuses)
    if device.kind == "elevator":
        return elevator_state(state, statuses)
    return charger_state(state, statuses)


@dataclass(slots=True)
class _Book:
    """What the worker knows to say a device's health: state, active tickets, windows (worker thread only)."""

    states: dict[tuple[str, str], DeviceState] = field(default_factory=dict)
    tickets: dict[tuple[str, str], dict[int, TicketStatus]] = field(default_factory=dict)
    windows: list[MaintenanceWindow] = field(default_factory=list)
    health: dict[tuple[str, str], str] = field(default_factory=dict)  # last said, per device
    words: dict[tuple[str, str], str] = field(default_factory=dict)  # last said to the public


class LiveHub:
    """The MQTT subscription, the worker that makes events, and the open streams of one API process."""

    def __init__(self, *, settings: Settings, db: Database, sites: Callable[[], SiteRegistry], clock: Clock) -> None:
        self._settings = settings
        self._db = db
        self._sites = sites
        self._clock = clock
        self.queue_size = settings.live_client_queue
        self.keepalive_s = settings.live_keepalive_s
        self._streams: set[Stream] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: queue.Queue[tuple[str, bytes] | None] = queue.Queue(INBOX_MAX)
        self._stopping = threading.Event()
        self._loaded = threading.Event()
        self._subscribed = threading.Event()
        self._worker: threading.Thread | None = None
        self._client: mqtt.Client | None = None
        self._book = _Book()
        self._watermark = 0  # the highest ticket_events id handled
        self._gaps: dict[int, float] = {}  # ids below the watermark not seen yet -> when first missed
        self._followed = clock if isinstance(clock, FollowedClock) else None  # fed from linli/v1/clock
        self._commands: dict[str, str] = {}  # recent commands -> the status last said (worker thread only)
        self._command_devices: set[tuple[str, str]] = set()  # devices with a command waiting for its answer
        self._commands_due = threading.Event()
        self.inbox_dropped = 0
        self.streams_dropped = 0

    # ------------------------------------------------------------ life

    def start(self) -> None:
        """In the running event loop (the app's lifespan): connect (retrying in the background) and work."""
        self._loop = asyncio.get_running_loop()
        if not self._settings.live_updates:
            return
        self._worker = threading.Thread(target=self._work, name="linli-api-live", daemon=True)
        self._worker.start()
        host, port, tls = self._settings.mqtt_host_port
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"linli-api-{uuid.uuid4().hex[:12]}",
                             clean_session=True)
        if self._settings.mqtt_username:
            client.username_pw_set(self._settings.mqtt_username, self._settings.mqtt_password)
        apply_tls(client, self._settings.mqtt_tls if tls else None)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 30)
        client.connect_async(host, port, keepalive=30)
        client.loop_start()  # retries the first connection too: an API without a broker still serves
        self._client = client

    def stop(self) -> None:
        """End every stream, disconnect, stop the worker."""
        for stream in list(self._streams):
            self._end(stream)
        self._stopping.set()
        if self._client is not None:
            self._client.disconnect()
            # paho's thread notices the stop within a second while it waits to reconnect to an absent
            # broker: it is a daemon, and nothing waits for it longer than a moment.
            stopper = threading.Thread(target=self._client.loop_stop, name="linli-api-live-stop", daemon=True)
            stopper.start()
            stopper.join(timeout=0.2)
        if self._worker is not None:
            with contextlib.suppress(queue.Full):
                self._inbox.put_nowait(None)
            self._worker.join(timeout=10)

    def ready(self) -> bool:
        """Subscribed to the broker and loaded the state to judge health from."""
        return self._loaded.is_set() and self._subscribed.is_set()

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    # ------------------------------------------------------------ streams (event loop)

    def open(self, audience: Audience) -> Stream:
        stream = Stream(audience, asyncio.Queue(self.queue_size))
        self._streams.add(stream)
        return stream

    def close(self, stream: Stream) -> None:
        self._streams.discard(stream)

    def _end(self, stream: Stream) -> None:
        """End a stream now: its backlog is dropped and its reader sees the end next."""
        self._streams.discard(stream)
        while not stream.queue.empty():
            stream.queue.get_nowait()
        stream.queue.put_nowait(None)

    def deliver(self, frames: Iterable[Frame]) -> None:
        """Hand frames to the streams that may have them; a stream whose queue is full is ended."""
        frames = list(frames)
        for stream in list(self._streams):
            for frame in frames:
                if not stream.audience.wants(frame):
                    continue
                try:
                    stream.queue.put_nowait(frame.text)
                except asyncio.QueueFull:
                    stream.dropped = True
                    self.streams_dropped += 1
                    log.warning("a live stream fell %d events behind: ended (the client reconnects)", self.queue_size)
                    self._end(stream)
                    break

    def _emit(self, frames: list[Frame]) -> None:
        """From the worker thread into the event loop."""
        loop = self._loop
        if not frames or loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the process is stopping
            loop.call_soon_threadsafe(self.deliver, frames)

    # ------------------------------------------------------------ MQTT (paho's thread)

    def _on_connect(self, client: Any, _userdata: object, _flags: Any, reason: Any, _properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("live updates: broker refused the connection: %s", reason)
            return
        topics = [(EVENTS_TOPIC, 0)] + ([(CLOCK_TOPIC, 1)] if self._followed is not None else [])
        client.subscribe(topics)

    def _on_subscribe(self, *_args: Any) -> None:
        self._subscribed.set()
        log.info("live updates: subscribed to %s", EVENTS_TOPIC)

    def _on_disconnect(self, *_args: Any) -> None:
        self._subscribed.clear()
        if not self._stopping.is_set():
            log.warning("live updates: lost the broker; reconnecting")

    def _on_message(self, _client: Any, _userdata: object, message: Any) -> None:
        if self._followed is not None and message.topic == CLOCK_TOPIC:
            try:
                self._followed.update(bytes(message.payload))
            except ValueError as exc:
                log.warning("live updates: ignored a clock announcement: %s", exc)
            return
        try:
            self._inbox.put_nowait((message.topic, bytes(message.payload)))
        except queue.Full:
            self.inbox_dropped += 1
            if self.inbox_dropped % 1000 == 1:
                log.warning("live updates: %d gateway events dropped, the worker is behind", self.inbox_dropped)

    # ------------------------------------------------------------ the worker thread

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                self._load()
                break
            except SQLAlchemyError as exc:
                log.warning("live updates: cannot load the live state yet: %s", str(exc).splitlines()[0][:200])
                self._stopping.wait(LOAD_RETRY_S)
        if self._stopping.is_set():
            return
        self._loaded.set()
        poll_s = self._settings.live_ticket_poll_s
        next_poll = time.monotonic() + poll_s
        next_windows = time.monotonic() + WINDOWS_EVERY_S
        next_commands = next_poll
        while not self._stopping.is_set():
            items: list[tuple[str, bytes]] = []
            try:
                item = self._inbox.get(timeout=max(0.0, min(next_poll, next_windows, next_commands) - time.monotonic()))
                while item is not None:
                    items.append(item)
                    if len(items) >= DRAIN_MAX:
                        break
                    item = self._inbox.get_nowait()
            except queue.Empty:
                pass
            if self._stopping.is_set():
                return
            try:
                frames, tickets_changed = self._handle(items)
                if tickets_changed or time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + poll_s
                    frames += self._read_ticket_feed()
                if time.monotonic() >= next_windows:
                    next_windows = time.monotonic() + WINDOWS_EVERY_S
                    frames += self._reread_windows()
                if self._commands_due.is_set() or time.monotonic() >= next_commands:
                    self._commands_due.clear()
                    next_commands = time.monotonic() + poll_s
                    frames += self._read_commands()
                self._emit(frames)
            except SQLAlchemyError as exc:  # the database is down: the streams wait, the feed catches up
                log.warning("live updates: database error: %s", str(exc).splitlines()[0][:200])
                self._stopping.wait(1.0)
            except Exception:  # never the end of live updates for one bad pass
                log.exception("live updates: a pass failed")

    def _load(self) -> None:
        """Device states, active tickets and windows of every site; the ticket feed starts from now."""
        sites = self._sites()
        book = _Book()
        now = self._clock.now()
        with self._db.session() as session:
            for row in session.scalars(select(DeviceState).where(DeviceState.site.in_(sites.ids()))):
                book.states[(row.site, row.device_id)] = DeviceState(
                    site=row.site, device_id=row.device_id, kind=row.kind, online=row.online, last=dict(row.last or {}))
            for ticket in session.scalars(select(TicketRow).where(TicketRow.active.is_(True))):
                for device_id in devices_of(ticket):
                    book.tickets.setdefault((ticket.site, device_id), {})[ticket.id] = TicketStatus(ticket.status)
            book.windows = [w for w in current_windows(session, sites.ids(), now) if w.starts <= now]
            self._watermark = session.scalar(select(func.max(TicketEventRow.id))) or 0
            self._commands = {row.id: status_at(row, now) for row in _recent_commands(session, now)}
        self._book = book
        for site in sites:
            for device in site.devices.values():
                self._judge(site, device, now)  # what is true now: later changes are measured from it

    def _handle(self, items: list[tuple[str, bytes]]) -> tuple[list[Frame], bool]:
        """The gateway's messages: device events become frames; ticket events wake the feed."""
        frames: list[Frame] = []
        tickets_changed = False
        sites = self._sites()
        for topic, payload in items:
            if not topic:  # _WAKE
                self._commands_due.set()
                continue
            parts = topic.split("/")
            site = sites.get(parts[2]) if len(parts) == 4 else None
            try:
                body = json.loads(payload)
            except ValueError:
                body = None
            if site is None or not isinstance(body, dict):
                log.debug("live updates: ignored %r", topic[:200])
                continue
            if body.get("type") == "ticket":
                tickets_changed = True
            elif body.get("type") == "device":
                frames += self._device_event(site, body)
        return frames, tickets_changed

    def _device_event(self, site: Site, body: dict[str, Any]) -> list[Frame]:
        device_id, online, last = body.get("device_id"), body.get("online"), body.get("last")
        device = site.devices.get(device_id) if isinstance(device_id, str) else None
        if device is None or device.kind != body.get("kind") or not (online is None or isinstance(online, bool)) \
                or not isinstance(last, dict):
            log.debug("live updates: a device event that does not fit: %r", str(body)[:200])
            return []
        key = (site.id, device.id)
        if key in self._command_devices:  # it reported: its answer to a command may be recorded with it
            self._commands_due.set()
        state = self._book.states.get(key)
        if state is None:
            state = self._book.states[key] = DeviceState(site=site.id, device_id=device.id, kind=device.kind, last={})
        fields = KEY_READINGS.get(device.kind, ())
        state.online = online
        state.last = {**(state.last or {}), **{k: v for k, v in last.items()
                                                 if k in fields and isinstance(v, str | int | float | bool)}}
        return self._judge(site, device, self._clock.now(), readings=True, at=_at(body.get("at")))

    def _judge(self, site: Site, device: Device, now: datetime, *, readings: bool = False,
               at: str | None = None) -> list[Frame]:
        """The device's health and public word; frames for what changed (and for new readings)."""
        book = self._book
        key = (site.id, device.id)
        state = book.states.get(key)
        statuses = list(book.tickets.get(key, {}).values())
        maintenance = any(w.covers(site, device, now) for w in book.windows)
        health = "maintenance" if maintenance else health_of(device, state, statuses)
        word = public_word(device, state, statuses)
        frames: list[Frame] = []
        when = at or now.isoformat()
        if readings or (key in book.health and book.health[key] != health):
            last = state.last if state is not None else {}
            frames.append(Frame(site.id, False, None, sse("device", {
                "site": site.id, "device_id": device.id, "kind": device.kind,
                "online": bool(state is not None and state.online), "health": health,
                "last": {k: last[k] for k in KEY_READINGS.get(device.kind, ()) if k in last}, "at": when,
            })))
        if key in book.words and book.words[key] != word:
            frames.append(Frame(site.id, True, None, sse("device", {
                "site": site.id, "device_id": device.id, "kind": device.kind, "state": word, "at": when,
            })))
        book.health[key], book.words[key] = health, word
        return frames

    def _read_ticket_feed(self) -> list[Frame]:
        """Ticket events after the watermark (and ids skipped earlier that may have committed since)."""
        frames: list[Frame] = []
        sites = self._sites()
        now = self._clock.now()
        while True:
            mono = time.monotonic()
            for missing, since in list(self._gaps.items()):
                if mono - since > GAP_WAIT_S:
                    del self._gaps[missing]  # a rolled-back insert: it never comes
            wanted = TicketEventRow.id > self._watermark
            if self._gaps:
                wanted = or_(wanted, TicketEventRow.id.in_(list(self._gaps)))
            with self._db.session() as session:
                rows = session.execute(
                    select(TicketEventRow, TicketRow).join(TicketRow, TicketEventRow.ticket_id == TicketRow.id)
                    .where(wanted).order_by(TicketEventRow.id).limit(FEED_BATCH)
                ).all()
            touched: dict[int, TicketRow] = {}
            for event, ticket in rows:
                if event.id in self._gaps:
                    del self._gaps[event.id]
                elif event.id > self._watermark:
                    if event.id - self._watermark - 1 <= GAP_TRACK_MAX:
                        for missing in range(self._watermark + 1, event.id):
                            self._gaps[missing] = mono
                    self._watermark = event.id
                site = sites.get(ticket.site)
                if site is None:
                    continue
                frames += self._ticket_frames(ticket, event)
                touched[ticket.id] = ticket
            for ticket in touched.values():
                site = sites.get(ticket.site)
                if site is not None:
                    frames += self._ticket_devices(site, ticket, now)
            if len(rows) < FEED_BATCH:
                return frames

    def _ticket_frames(self, ticket: TicketRow, event: TicketEventRow) -> list[Frame]:
        teams = list(ticket.teams or ())
        device_ids = devices_of(ticket)
        frames = [Frame(ticket.site, False, frozenset(teams), sse("ticket", {
            "id": ticket.id, "site": ticket.site, "event": event.type, "status": event.to_status,
            "severity": ticket.severity, "fault": ticket.fault, "device_ids": device_ids, "teams": teams,
            "ack_due_at": _iso(ticket.ack_due_at), "at": _iso(event.at),
            # what a page shows of the ticket now, so it need not fetch it again (the technician console)
            "version": ticket.version, "assignee": ticket.assignee, "acks": dict(ticket.acks or {}),
            "start_due_at": _iso(ticket.start_due_at), "resolve_due_at": _iso(ticket.resolve_due_at),
            "entry": history_entry(ticket.id, event).model_dump(mode="json", by_alias=True),
        }))]
        if device_ids and (event.from_status != event.to_status or event.from_status is None):
            # The public view lists repairs of devices, with their status only (no people, no notes).
            name = fault_name(ticket.fault)
            frames.append(Frame(ticket.site, True, None, sse("ticket", {
                "site": ticket.site, "id": ticket.id, "status": event.to_status,
                "fault_name": {"zh": name.zh, "en": name.en}, "device_ids": device_ids,
                "opened_at": _iso(ticket.opened_at), "at": _iso(event.at),
            })))
        elif ticket.source in PUBLIC_SOURCES and event.from_status != event.to_status:
            # A report about a place (a hazard, a lost key): its reporter follows its progress; the
            # frame says only which ticket moved to which status, nothing of what or where.
            frames.append(Frame(ticket.site, True, None, sse("ticket", {
                "site": ticket.site, "id": ticket.id, "status": event.to_status, "device_ids": [],
                "at": _iso(event.at),
            })))
        return frames

    def _ticket_devices(self, site: Site, ticket: TicketRow, now: datetime) -> list[Frame]:
        """The ticket as it is now, in the devices' active tickets; their health may change with it."""
        frames: list[Frame] = []
        for device_id in devices_of(ticket):
            device = site.devices.get(device_id)
            if device is None:
                continue
            mine = self._book.tickets.setdefault((site.id, device_id), {})
            if ticket.active:
                mine[ticket.id] = TicketStatus(ticket.status)
            else:
                mine.pop(ticket.id, None)
            frames += self._judge(site, device, now)
        return frames

    def note_command(self) -> None:
        """A command was sent (any thread): look at the commands at once, not at the next poll."""
        self._commands_due.set()
        with contextlib.suppress(queue.Full):
            self._inbox.put_nowait(_WAKE)

    def _read_commands(self) -> list[Frame]:
        """`command` events for the recent commands whose status is not the one last said (sent,
        then acked, failed or expired: by the clock, as `GET /commands/{id}` says it)."""
        now = self._clock.now()
        with self._db.session() as session:
            rows = _recent_commands(session, now)
        sites = self._sites()
        frames: list[Frame] = []
        said: dict[str, str] = {}
        waiting: set[tuple[str, str]] = set()
        for row in rows:
            status = said[row.id] = status_at(row, now)
            if status == SENT:
                waiting.add((row.site, row.device_id))
            if self._commands.get(row.id) != status and sites.get(row.site) is not None:
                frames.append(Frame(row.site, False, None, sse("command", command_event(row, status, now))))
        self._commands, self._command_devices = said, waiting
        return frames

    def _reread_windows(self) -> list[Frame]:
        """Maintenance windows as they are now; devices they start or stop covering change health."""
        sites = self._sites()
        now = self._clock.now()
        with self._db.session() as session:
            self._book.windows = [w for w in current_windows(session, sites.ids(), now) if w.starts <= now]
        frames: list[Frame] = []
        for site in sites:
            for device in site.devices.values():
                frames += self._judge(site, device, now)
        return frames


def _recent_commands(session: Any, now: datetime) -> list[DeviceCommandRow]:
    return list(session.scalars(select(DeviceCommandRow).where(or_(
        DeviceCommandRow.sent_at >= now - COMMAND_LOOKBACK,
        DeviceCommandRow.answered_at >= now - COMMAND_LOOKBACK,
        and_(DeviceCommandRow.status == SENT, DeviceCommandRow.answered_at.is_(None),
             DeviceCommandRow.expires_at > now - COMMAND_EXPIRY_GRACE),
    )).order_by(DeviceCommandRow.sent_at).limit(COMMANDS_MAX)))


def command_event(row: DeviceCommandRow, status: str, now: datetime) -> dict[str, Any]:
    """A `command` event: the command as `GET /commands/{id}` shows it, when its status changed
    (`at`), and the server's now."""
    at = row.answered_at if row.answered_at is not None and status != SENT else None
    if at is None:
        at = row.expires_at if status == "expired" else row.sent_at
    return {
        "id": row.id, "site": row.site, "device_id": row.device_id, "kind": row.kind, "action": row.action,
        "params": dict(row.params or {}), "status": status, "requested_by": row.requested_by,
        "reason": row.reason, "sent_at": _iso(row.sent_at), "expires_at": _iso(row.expires_at),
        "answered_at": _iso(row.answered_at), "error": row.error, "at": _iso(at), "now": _iso(now),
    }


def _at(value: Any) -> str | None:
    """The gateway's time of a change, when it is an ISO 8601 time with an offset."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.isoformat() if moment.tzinfo is not None else None
