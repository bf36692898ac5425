"""The gateway process: broker link, worker thread, stores and clock wired together."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from gateway.broker import Inbound, LinkChange
from gateway.buffer import DiskBuffer, PointSink
from gateway.lease import LeaseStore, SiteLeases
from gateway.metrics import MetricsServer
from gateway.pipeline import Pipeline
from gateway.settings import GatewaySettings
from gateway.standby import ControlLink, SiteLink, SiteLinks, site_of
from gateway.upkeep import Upkeep
from linli.clock import CLOCK_REACHED_TOPIC, Clock, FollowedClock, SystemClock, to_ms
from linli.engine import Engine
from linli.settings import Settings
from linli.site import SiteRegistry
from linli.site_source import SiteSource
from linli.storage import Database, DeviceEngineState, DeviceState, migrate
from linli.tsdb import TimeSeriesStore, open_store

log = logging.getLogger("linli.gateway")

_BATCH_MAX = 1000
_TICK_EVERY_WALL_S = 0.5
_BUSY_BATCH = 100  # a batch this large means messages arrive faster than batches are committed
_UPKEEP_EVERY_WALL_S = 2.0  # resolved tickets, maintenance windows, escalations


class Gateway:
    def __init__(
        self,
        settings: Settings,
        *,
        sites: SiteRegistry | None = None,
        clock: Clock | None = None,
        store: TimeSeriesStore | None = None,
        lease_clock: Clock | None = None,
    ) -> None:
        self.settings = options = GatewaySettings.of(settings)
        # The site files are polled by the worker (about every 2 s) and applied without a restart.
        if sites is None:
            self.site_source = SiteSource(settings.site_files)
        else:
            self.site_source = SiteSource([s.source for s in sites if s.source is not None], initial=sites)
        self.sites = self.site_source.current
        # Accelerated demos and tests: the simulator announces its clock on linli/v1/clock and we run on it.
        self.followed_clock = FollowedClock() if clock is None and options.follow_sim_clock else None
        self.clock = clock or self.followed_clock or SystemClock()
        migrate(settings.db_url)
        self.database = Database(settings.db_url)
        self.store = store or open_store(settings.timeseries_url)
        # Leases first: the engine and pipeline hold only the sites this gateway serves (a standby's: none
        # yet). Lease time is wall time (`lease_clock`), never a simulator's clock.
        self.leases = SiteLeases(
            LeaseStore(self.database, settings.mqtt_client_id, timedelta(seconds=options.gateway_lease_ttl_s)),
            self.sites.ids(), lease_clock or SystemClock(), renew_every_s=options.gateway_lease_renew_s)
        self.leases.step(force=True)
        self.engine = Engine(self.held_sites(), self.clock.now())
        self.restored = self._restore_states(self.leases.held)
        # A batch whose database commit failed: kept unacknowledged and retried with backoff.
        self.db_errors = 0
        self._pending: list[Inbound] = []
        self._db_retry_at = 0.0
        self._db_backoff_s = 0.0
        self._engine_stale = False  # the engine ran ahead of a failed commit: restore it from the database
        self.buffer = DiskBuffer(options.data_dir / "buffer" / f"{_safe(options.mqtt_client_id)}.db",
                                 int(options.buffer_max_mb * 1024 * 1024))
        self.sink = PointSink(self.store, self.buffer, on_rejected=lambda refused: self.pipeline.dead_letter_points(refused))
        self._inbox: queue.Queue[Inbound | LinkChange] = queue.Queue()
        host, port, _tls = settings.mqtt_host_port
        tls = settings.mqtt_tls  # mqtts://: CA, client certificate and key from the settings
        self.link = ControlLink(
            host=host, port=port, client_id=settings.mqtt_client_id, inbox=self._inbox,
            clock=self.clock, username=settings.mqtt_username, password=settings.mqtt_password, tls=tls,
            clock_sink=self._follow_control_clock if self.followed_clock is not None else None,
        )
        # Site messages come on one persistent session per held site, taken over with its lease.
        self.site_links = SiteLinks(lambda site: SiteLink(
            host=host, port=port, client_id=options.site_session_id(site), site_ids=[site], inbox=self._inbox,
            clock=self.clock, username=settings.mqtt_username, password=settings.mqtt_password, tls=tls,
            clock_sink=self._follow_clock if self.followed_clock is not None else None,
        ))
        self.pipeline = Pipeline(
            sites=self.held_sites(), engine=self.engine, database=self.database, sink=self.sink,
            # Commands to devices go QoS 1 (device contract); the platform's ticket events QoS 0.
            publish=lambda topic, payload: self.link.publish(topic, payload, qos=1 if topic.endswith("/cmd") else 0),
        )
        self.upkeep = Upkeep(database=self.database, engine=self.engine, sites=self.held_sites(), clock=self.clock,
                             base_url=settings.public_base_url)
        self.connected = False
        self.last_tick_at: datetime | None = None  # clock time of the last timer pass (tests wait on it)
        self._reached_reported: datetime | None = None  # a driven simulator's time we last said we handled
        self._reached_reported_wall = 0.0
        self._stopping = threading.Event()
        self._sender = threading.Thread(target=self.upkeep.dispatch_until, args=(self._stopping,),
                                        name="linli-gateway-notifier", daemon=True)
        self._worker = threading.Thread(target=self._work, name="linli-gateway-worker", daemon=True)
        self._lease_keeper = threading.Thread(target=self._keep_leases, name="linli-gateway-leases", daemon=True)
        self._worker_beat = time.monotonic()  # when the worker last began a cycle (the lease keeper reads it)
        self._progress = threading.Condition()
        self.messages_done = 0  # messages fully handled and committed (tests and health wait on it)
        self.messages_acked = 0
        self.metrics = MetricsServer(self, options.gateway_metrics_host, options.gateway_metrics_port) \
            if options.gateway_metrics_port else None

    def held_sites(self) -> SiteRegistry:
        """The configured sites whose lease this gateway holds: those it serves."""
        return SiteRegistry([site for site in self.sites if site.id in self.leases.held])

    def _restore_states(self, site_ids: Iterable[str]) -> int:
        """Live and detector state as the last run left it: no ticket reopened, no pending fault forgotten."""
        restored = 0
        sites = list(site_ids)
        with self.database.session() as session:
            snapshots = {(r.site, r.device_id): r.state for r in session.scalars(
                select(DeviceEngineState).where(DeviceEngineState.site.in_(sites)))}
            for row in session.scalars(select(DeviceState).where(DeviceState.site.in_(sites))):
                live = self.engine.live(row.site, row.device_id)
                if live is None or live.kind != row.kind:
                    continue
                live.restore(online=row.online, last_seen=row.last_seen, status=row.status or {}, last=row.last or {},
                             last_seq=row.last_seq, boot=row.boot, snapshot=snapshots.get((row.site, row.device_id)))
                restored += 1
        if restored:
            log.info("restored the live state of %d devices", restored)
        return restored

    def queue_depth(self) -> int:
        return self._inbox.qsize()

    def throttled_devices(self) -> int:
        return self.pipeline.throttled_devices(to_ms(self.clock.now()))

    def device_count(self) -> int:
        return sum(1 for _ in self.engine.devices())

    def start(self, *, connect_timeout_s: float = 30.0) -> None:
        """Connect to the broker, retrying for a bounded time, then start processing."""
        if self.metrics is not None:
            self.metrics.start()
        self.sink.start()
        deadline = time.monotonic() + connect_timeout_s
        while True:
            try:
                self.link.start()
                break
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise ConnectionError(f"cannot reach the MQTT broker at {self.settings.mqtt_url}: {exc}") from exc
                log.warning("broker not reachable yet (%s); retrying", exc)
                time.sleep(1.0)
        self._open_sites(list(self.leases.held))
        self._worker_beat = time.monotonic()
        self._worker.start()
        self._lease_keeper.start()
        self._sender.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._worker.is_alive():  # the last batch is committed and acknowledged before we disconnect
            self._worker.join(timeout=10)
        self.upkeep.wake()
        if self._sender.is_alive():
            self._sender.join(timeout=10)
        if self._lease_keeper.is_alive():
            self._lease_keeper.join(timeout=10)
        if not self._worker.is_alive():
            try:  # live state the last batches left unsaved under a backlog
                self.pipeline.save_states(self.clock.now())
            except Exception:
                log.exception("saving the live state on the way out failed")
        self.site_links.close_all()
        self.leases.release_all()  # a standby takes over at once, not after the TTL
        self.link.stop()
        self.sink.stop()
        if self.metrics is not None:
            self.metrics.stop()
        self.buffer.close()
        self.store.close()
        self.database.close()

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until `predicate()` holds after a processing cycle, or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        with self._progress:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(remaining)
        return True

    HEARTBEAT_EVERY_WALL_S = 10.0  # the watchdog (linli.ops.watchdog) alerts after --max-silence, 60 s by default

    def _heartbeat(self) -> None:
        """Retained QoS 1 on linli/v1/gateway/{client_id}/heartbeat: the watchdog's sign of life."""
        import json

        from linli.ops.watchdog import HEARTBEAT_TOPIC

        try:
            body = {"ts": self.clock.now().isoformat(), "sites": self.sites.ids(), "messages_done": self.messages_done,
                    "connected": self.connected, "db_ok": self.database.ping()}
            topic = HEARTBEAT_TOPIC.format(gateway_id=self.settings.mqtt_client_id)
            self.link.publish(topic, json.dumps(body).encode(), qos=1, retain=True)
        except Exception as exc:  # a missed beat is the watchdog's news, never the worker's end
            log.warning("publishing the heartbeat failed: %s", exc)

    def _keep_leases(self) -> None:
        """Renew the held leases between the worker's own steps, so that one long cycle (a backlog
        after an outage, a big site's timer pass on a loaded machine) does not cost the sites their
        leases, which would stop and restart serving them. Only while the worker makes progress: a
        worker stuck for `gateway_worker_stall_s` lets its leases lapse, and a standby takes over."""
        stall_s = self.settings.gateway_worker_stall_s
        said = False
        while not self._stopping.wait(self.leases.renew_every_s / 2):
            stuck_s = time.monotonic() - self._worker_beat
            if stuck_s > stall_s:
                if not said:
                    log.error("the worker has made no progress for %.0f s: no longer renewing the leases of %s",
                              stuck_s, ", ".join(sorted(self.leases.held)) or "no site")
                said = True
                continue
            said = False
            try:
                self.leases.renew_held()
            except Exception:  # the worker's own step renews too; this thread must not die
                log.exception("renewing the leases failed")

    def _work(self) -> None:
        last_tick = last_upkeep = tick_took = 0.0
        last_beat = 0.0
        while not self._stopping.is_set():
            self._worker_beat = time.monotonic()
            self._serve_leases()
            if self.connected and time.monotonic() - last_beat >= self.HEARTBEAT_EVERY_WALL_S:
                last_beat = time.monotonic()
                self._heartbeat()
            batch: list[Inbound] = []
            try:
                item = self._inbox.get(timeout=0.1)
                while True:
                    if isinstance(item, LinkChange):
                        self._link_changed(item)
                    elif isinstance(item, list):  # the broker link hands messages up in chunks
                        batch.extend(item)
                    else:
                        batch.append(item)
                    if len(batch) >= _BATCH_MAX:
                        break
                    item = self._inbox.get_nowait()
            except queue.Empty:
                pass
            try:
                self._reload_sites()
            except Exception:  # a reload that fails keeps the running sites
                log.exception("applying edited site files failed")
            # Only sites whose lease we hold; a batch kept from a failed commit goes first.
            batch, self._pending = self._served(self._pending + batch), []
            own = [item for item in batch if self.pipeline.own_command(item)]
            if own:  # our own commands heard back: acknowledged, not processed, not counted
                batch = [item for item in batch if not self.pipeline.own_command(item)]
                self.site_links.ack(own)
            if time.monotonic() < self._db_retry_at:
                self._pending = batch  # the database is down: wait, acknowledging nothing
                self._stopping.wait(0.1)
                continue
            driven, now = self._driven_clock(), self.clock.now()
            try:
                if self._engine_stale:
                    self._resync_from_database()
                now = self.clock.now()
                changes = []
                # Under load (a full-ish batch, or more waiting) live state rows are saved every
                # STATE_SAVE_EVERY_S, not with every batch (the argument: Pipeline._commit).
                # While the database is failing, every batch writes its state: none is acknowledged
                # until a commit succeeds again (the lazy save would ack batches it never stored).
                busy = (len(batch) >= _BUSY_BATCH or not self._inbox.empty()) and self._db_backoff_s == 0.0
                if batch:
                    changes += self.pipeline.process(batch, now, backlog=busy)
                # The timers' pass costs per device served: it runs at most every ten times its own
                # duration, so it never takes more than a tenth of the worker (0.5 s with few devices).
                # On a driven simulator's clock, at every step instead: the simulator waits for us.
                if (driven and now != self.last_tick_at) or \
                        time.monotonic() - last_tick >= max(_TICK_EVERY_WALL_S, 10 * tick_took):
                    last_tick = time.monotonic()
                    changes += self.pipeline.tick(now, backlog=busy)
                    tick_took = time.monotonic() - last_tick
                    if time.monotonic() - last_upkeep >= _UPKEEP_EVERY_WALL_S:
                        last_upkeep = time.monotonic()
                        changes += self.pipeline.tick_with(self.upkeep.run(now, clock_known=self._clock_known()), now)
                        self.upkeep.escalate(now)
                    self.last_tick_at = now
                self.upkeep.announce(changes, now)
            except Exception as exc:  # the gateway never stops because of one batch
                if _database_outage(exc):
                    self._database_failed(exc, batch)
                    continue
                log.exception("processing a batch of %d messages failed", len(batch))
            self._db_backoff_s = 0.0
            # Acknowledged only now that the batch is stored (store or on-disk buffer) and committed:
            # a crash before this line gets the batch redelivered by the broker.
            acked = self.site_links.ack(self._served(batch))
            with self._progress:
                self.messages_acked += acked
                self.messages_done += len(batch)
                self._progress.notify_all()
            if driven and self._inbox.empty():  # all received so far is handled, up to `now`
                self._report_reached(now)

    def _reload_sites(self) -> None:
        outcome = self.site_source.poll_if_due()
        if outcome is None or outcome.sites is None:
            return  # unchanged, or refused (the source logged why; `site_source.last_error` says it)
        self.sites = outcome.sites
        held = self.held_sites()
        self.engine.reload_sites(held, self.clock.now())
        self.pipeline.use_sites(held)
        self.upkeep.use_sites(held)

    # ------------------------------------------------------------ leases and database outages

    def _open_sites(self, sites: Iterable[str]) -> None:
        for site in sites:
            try:
                self.site_links.open(site)
            except OSError as exc:  # give the lease back: another gateway, or we at a later step, takes it
                log.error("cannot open the MQTT session of site %s: %s", site, exc)
                lease = self.leases.held.pop(site, None)
                if lease is not None:
                    self.leases.store.release(lease, self.leases.clock.now())

    def _serve_leases(self) -> None:
        """Renew leases, take over expired ones; serve exactly the sites held."""
        change = self.leases.step()
        if not change:
            return
        for site in change.lost:  # unacknowledged messages stay in the session for the next holder
            self.site_links.close(site)
        held = self.held_sites()
        self.engine.reload_sites(held, self.clock.now())
        self.pipeline.use_sites(held)
        self.upkeep.use_sites(held)
        if change.gained:
            try:  # the state the previous holder committed, as after a restart
                self._restore_states(change.gained)
            except Exception as exc:
                if not _database_outage(exc):
                    raise
                self._engine_stale = True
            self._open_sites(change.gained)

    def _served(self, batch: list[Inbound]) -> list[Inbound]:
        """The messages of sites we hold; the others are dropped unacknowledged (the broker keeps them
        for whoever holds the site now)."""
        if not batch:
            return batch
        now = self.leases.clock.now()
        return [item for item in batch if (site := site_of(item.topic)) is None or self.leases.holds(site, now)]

    def _database_failed(self, exc: Exception, batch: list[Inbound]) -> None:
        """A commit failed: nothing of the batch is acknowledged; it is kept and retried with backoff."""
        self.db_errors += 1
        self._engine_stale = True
        self._pending = batch
        self._db_backoff_s = min(max(self._db_backoff_s * 2, 0.5), 10.0)
        self._db_retry_at = time.monotonic() + self._db_backoff_s
        log.error("database unavailable (%s): %d messages kept unacknowledged, retrying in %.1f s",
                  str(exc).splitlines()[0][:300], len(batch), self._db_backoff_s)
        with self._progress:  # those waiting on progress see the failure too
            self._progress.notify_all()

    def _resync_from_database(self) -> None:
        """Back to the live and detector state last committed, as after a restart: the retried batch is
        then observed once."""
        held, now = self.held_sites(), self.clock.now()
        self.engine.reload_sites(SiteRegistry([]), now)
        self.engine.reload_sites(held, now)
        self._restore_states(held.ids())
        self._engine_stale = False
        log.info("database back: live state restored from it; the kept messages are processed again")

    def _follow_control_clock(self, payload: bytes) -> None:
        """The clock as the control link hears it: only while no site session is open. A site session hears
        it too, in order with the site's messages (a simulator announces a step once the broker has its
        devices' messages); the control link's copy may arrive first, and a step ahead of messages still on
        their way makes their devices look silent."""
        if not self.site_links.links:
            self._follow_clock(payload)

    def _follow_clock(self, payload: bytes) -> None:
        """Network thread: a new announcement of the simulator's clock (a jump, or a driven tick)."""
        assert self.followed_clock is not None
        before = self.followed_clock.announcement
        self.followed_clock.update(payload)
        after = self.followed_clock.announcement
        jumped = before is None or after is None or (before.start_wall_ms, before.start_sim_ms, before.speed) != (
            after.start_wall_ms, after.start_sim_ms, after.speed)
        if jumped:
            self._inbox.put(LinkChange(True, "clock"))  # the worker resets silence timers on the new clock
        elif after is not None and after.speed is None:
            self._inbox.put(LinkChange(True, "clock-step"))  # a driven step: wake the worker to run the timers

    def _clock_known(self) -> bool:
        """False while following a simulator's clock that has not been announced yet."""
        return self.followed_clock is None or self.followed_clock.announcement is not None

    def _driven_clock(self) -> bool:
        """Following a simulator that drives its clock (`--speed max`)."""
        announcement = self.followed_clock.announcement if self.followed_clock is not None else None
        return announcement is not None and announcement.speed is None

    def _report_reached(self, now: datetime) -> None:
        """Tell a driven simulator (`linli sim --wait-for`) we have handled what we received up to `now`."""
        if now == self._reached_reported and time.monotonic() - self._reached_reported_wall < 1.0:
            return
        self._reached_reported, self._reached_reported_wall = now, time.monotonic()
        topic = CLOCK_REACHED_TOPIC.format(follower=self.settings.mqtt_client_id)
        self.link.publish(topic, b'{"sim_ms":%d}' % to_ms(now), qos=0)

    def _link_changed(self, change: LinkChange) -> None:
        if change.reason == "clock":
            self.engine.clock_changed(self.clock.now())
            return
        if change.reason == "clock-step":
            return
        self.connected = change.connected
        self.engine.broker_connection(change.connected, self.clock.now())


def _database_outage(exc: BaseException) -> bool:
    """The database cannot be reached (retry), as opposed to a batch it refuses (do not)."""
    return isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "gateway"
