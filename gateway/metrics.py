"""`/metrics` of the gateway in the Prometheus text format, on its own small HTTP server.

The pipeline, sink and engine keep plain counters; a collector reads them at scrape time, so the
hot path never touches the Prometheus client.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from gateway.runtime import Gateway

log = logging.getLogger("linli.gateway.metrics")


class GatewayCollector(Collector):
    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway

    def collect(self) -> Iterator[Metric]:
        gw = self._gw
        c = gw.pipeline.counters
        sink = gw.pipeline.sink
        labels = ["site_set"]
        sites = [",".join(gw.sites.ids())]

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(f"linli_gateway_{name}", doc, labels=labels)
            family.add_metric(sites, value)
            return family

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(f"linli_gateway_{name}", doc, labels=labels)
            family.add_metric(sites, value)
            return family

        yield counter("messages_received", "MQTT messages taken from the broker", c.received)
        yield counter("messages_processed", "Messages validated and observed by the engine", c.processed)
        yield counter("messages_acked", "QoS 1 messages acknowledged to the broker after commit", gw.messages_acked)
        yield counter("duplicates", "QoS 1 redeliveries dropped by seq", c.duplicates)
        yield counter("sequence_gaps", "Sequence numbers never received (lost messages), all devices", gw.engine.seq_gaps)
        yield counter("out_of_order", "Messages that arrived after a later seq", gw.engine.out_of_order)
        yield counter("replayed", "Messages with an old ts (a device replaying its buffer)", c.replayed)
        yield counter("throttled", "QoS 0 telemetry dropped by sampling a device over 20 msg/s", c.throttled)
        dead = CounterMetricFamily("linli_gateway_dead_letters", "Messages dead-lettered, by reason",
                                   labels=[*labels, "reason"])
        for reason, count in sorted(c.dead_letters.items()):
            dead.add_metric([*sites, reason], count)
        yield dead
        yield counter("points_written", "Points the time-series store accepted", sink.stats.written)
        yield counter("points_buffered", "Points that went to the on-disk buffer", sink.stats.buffered)
        yield counter("points_rejected", "Points the store refused as invalid (dead-lettered)", sink.stats.rejected)
        yield counter("points_failed", "Points lost: store down and no buffer", sink.stats.failed)
        buffer = sink.buffer
        yield counter("points_dropped", "Telemetry points dropped from the full buffer",
                      buffer.dropped if buffer else 0)
        yield gauge("buffer_points", "Points waiting in the on-disk buffer", len(buffer) if buffer else 0)
        yield gauge("buffer_bytes", "Bytes of points in the on-disk buffer", buffer.bytes if buffer else 0)
        yield gauge("buffer_max_bytes", "Bound of the on-disk buffer", buffer.max_bytes if buffer else 0)
        yield from sink.latency.collect()
        opened = CounterMetricFamily("linli_gateway_tickets_opened", "Tickets opened, by fault code",
                                     labels=[*labels, "code"])
        for code, count in sorted(c.tickets_opened.items()):
            opened.add_metric([*sites, code], count)
        yield opened
        yield counter("ticket_changes", "Ticket events appended by the gateway", c.tickets_changed)
        yield gauge("queue_depth", "Messages received and not yet processed", gw.queue_depth())
        yield gauge("devices_throttled", "Devices over the rate limit within the last minute", gw.throttled_devices())
        yield gauge("devices", "Devices with live state", gw.device_count())
        yield gauge("broker_connected", "1 while connected to the broker", 1 if gw.connected else 0)
        yield gauge("store_ok", "1 while the time-series store takes writes", 1 if sink.store_ok else 0)
        yield gauge("leases_held", "Sites whose lease this gateway holds (it serves exactly these)", len(gw.leases.held))
        yield counter("db_errors", "Database commits that failed (the batch kept unacknowledged and retried)",
                      gw.db_errors)


class MetricsServer:
    """The `/metrics` endpoint on `host:port` (any path answers with the metrics)."""

    def __init__(self, gateway: Gateway, host: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(GatewayCollector(gateway))
        self._host, self.port = host, port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            self._server, self._thread = start_http_server(self.port, self._host, self.registry)
        except OSError as exc:  # the gateway serves without metrics rather than not at all
            log.error("cannot serve /metrics on %s:%d: %s", self._host, self.port, exc)
            return
        self.port = self._server.server_port
        log.info("serving /metrics on %s:%d", self._host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
