"""The gateway process: broker link, worker thread, stores and clock wired together."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select

from gateway.broker import BrokerLink, Inbound, LinkChange
from gateway.buffer import DiskBuffer, PointSink
from gateway.metrics import MetricsServer
from gateway.pipeline import Pipeline
from gateway.settings import GatewaySettings
from linli.clock import Clock, FollowedClock, SystemClock, to_ms
from linli.engine import Engine
from linli.settings import Settings
from linli.site import SiteRegistry
from linli.site_source import SiteSource
from linli.storage import Database, DeviceEngineState, DeviceState, migrate
from linli.tsdb import TimeSeriesStore, open_store

log = logging.getLogger("linli.gateway")

_BATCH_MAX = 1000
_TICK_EVERY_WALL_S = 0.5


class Gateway:
    def __init__(
        self,
        settings: Settings,
        *,
        sites: SiteRegistry | None = None,
        clock: Clock | None = None,
        store: TimeSeriesStore | None = None,
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
        self.engine = Engine(self.sites, self.clock.now())
        self.restored = self._restore_states()
        self.buffer = DiskBuffer(options.data_dir / "buffer" / f"{_safe(options.mqtt_client_id)}.db",
                                 int(options.buffer_max_mb * 1024 * 1024))
        self.sink = PointSink(self.store, self.buffer, on_rejected=lambda refused: self.pipeline.dead_letter_points(refused))
        self._inbox: queue.Queue[Inbound | LinkChange] = queue.Queue()
        host, port, tls = settings.mqtt_host_port
        self.link = BrokerLink(
            host=host, port=port, client_id=settings.mqtt_client_id, site_ids=self.sites.ids(), inbox=self._inbox,
            clock=self.clock, username=settings.mqtt_username, password=settings.mqtt_password, tls=tls,
            clock_sink=self._follow_clock if self.followed_clock is not None else None,
        )
        self.pipeline = Pipeline(
            sites=self.sites, engine=self.engine, database=self.database, sink=self.sink,
            publish=lambda topic, payload: self.link.publish(topic, payload),
        )
        self.connected = False
        self.last_tick_at: datetime | None = None  # clock time of the last timer pass (tests wait on it)
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._work, name="linli-gateway-worker", daemon=True)
        self._progress = threading.Condition()
        self.messages_done = 0  # messages fully handled and committed (tests and health wait on it)
        self.messages_acked = 0
        self.metrics = MetricsServer(self, options.gateway_metrics_host, options.gateway_metrics_port) \
            if options.gateway_metrics_port else None

    def _restore_states(self) -> int:
        """Live and detector state as the last run left it: no ticket reopened, no pending fault forgotten."""
        restored = 0
        sites = self.sites.ids()
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
        self._worker.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._worker.is_alive():  # the last batch is committed and acknowledged before we disconnect
            self._worker.join(timeout=10)
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

    def _work(self) -> None:
        last_tick = 0.0
        last_beat = 0.0
        while not self._stopping.is_set():
            if self.connected and time.monotonic() - last_beat >= self.HEARTBEAT_EVERY_WALL_S:
                last_beat = time.monotonic()
                self._heartbeat()
            batch: list[Inbound] = []
            try:
                item = self._inbox.get(timeout=0.1)
                while True:
                    if isinstance(item, LinkChange):
                        self._link_changed(item)
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
            try:
                now = self.clock.now()
                if batch:
                    self.pipeline.process(batch, now)
                if time.monotonic() - last_tick >= _TICK_EVERY_WALL_S:
                    last_tick = time.monotonic()
                    self.pipeline.tick(now)
                    self.last_tick_at = now
            except Exception:  # the gateway never stops because of one batch
                log.exception("processing a batch of %d messages failed", len(batch))
            # Acknowledged only now that the batch is stored (store or on-disk buffer) and committed:
            # a crash before this line gets the batch redelivered by the broker.
            acked = self.link.ack(batch)
            with self._progress:
                self.messages_acked += acked
                self.messages_done += len(batch)
                self._progress.notify_all()

    def _reload_sites(self) -> None:
        outcome = self.site_source.poll_if_due()
        if outcome is None or outcome.sites is None:
            return  # unchanged, or refused (the source logged why; `site_source.last_error` says it)
        self.engine.reload_sites(outcome.sites, self.clock.now())
        self.pipeline.use_sites(outcome.sites)
        self.sites = outcome.sites

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

    def _link_changed(self, change: LinkChange) -> None:
        if change.reason == "clock":
            self.engine.clock_changed(self.clock.now())
            return
        self.connected = change.connected
        self.engine.broker_connection(change.connected, self.clock.now())


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "gateway"
