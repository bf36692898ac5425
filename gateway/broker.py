"""The gateway's link to the MQTT broker: paho-mqtt 2 behind one small interface.

Nothing outside this module imports paho. The network thread only puts what it receives
on a queue; the pipeline does the work.
"""

from __future__ import annotations

import logging
import queue
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from linli.clock import CLOCK_TOPIC, Clock, to_ms

log = logging.getLogger("linli.gateway.broker")


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_ms: int
    mid: int = 0  # the broker's packet id (QoS 1): acknowledged once the message is durably recorded
    link: int = 0  # which connection it came on: an ack never crosses a reconnect


@dataclass(frozen=True, slots=True)
class LinkChange:
    connected: bool
    reason: str


class BrokerLink:
    """A persistent QoS 1 session subscribed to the contract topics of the sites it serves."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        site_ids: Iterable[str],
        inbox: queue.Queue[Inbound | LinkChange],
        clock: Clock,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        clock_sink: Callable[[bytes], None] | None = None,
    ) -> None:
        self._host, self._port = host, port
        self._clock_sink = clock_sink
        self._inbox = inbox
        self._clock = clock
        self._topics = [(f"estate/v1/{site}/#", 1) for site in site_ids]
        if clock_sink is not None:
            self._topics.append((CLOCK_TOPIC, 1))
        # clean_session=False: the broker keeps our subscriptions and queues QoS 1 while we are away.
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, protocol=mqtt.MQTTv311
        )
        if username:
            self._client.username_pw_set(username, password)
        if tls:
            self._client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        self._client.max_queued_messages_set(0)
        # A QoS 1 message is acknowledged by `ack` after its batch is stored, not on receipt:
        # a gateway that dies holding it gets it again from the broker.
        self._client.manual_ack_set(True)
        self._link = 0
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    def start(self) -> None:
        """Connect (raises OSError when the broker is unreachable) and run the network thread."""
        self._client.connect(self._host, self._port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def ack(self, items: Iterable[Inbound]) -> int:
        """PUBACK the QoS 1 messages of `items` (in the order received); those of an older connection
        are left to the broker, which sends them again. Returns how many were acknowledged."""
        done = 0
        for item in items:
            if item.qos > 0 and item.link == self._link:
                self._client.ack(item.mid, item.qos)
                done += 1
        return done

    def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=qos, retain=retain)

    # paho callbacks: network thread, so enqueue only and never block.
    def _on_connect(
        self, client: mqtt.Client, _userdata: object, _flags: mqtt.ConnectFlags, reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        self._link += 1
        client.subscribe(self._topics)
        self._inbox.put(LinkChange(True, str(reason)))
        log.info("connected to %s:%s, subscribed to %s", self._host, self._port, [t for t, _ in self._topics])

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: object, _flags: mqtt.DisconnectFlags, reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._inbox.put(LinkChange(False, str(reason)))
        log.warning("disconnected from the broker: %s", reason)

    def _on_message(self, client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        if self._clock_sink is not None and message.topic == CLOCK_TOPIC:
            try:
                self._clock_sink(bytes(message.payload))
            except ValueError as exc:  # a bad announcement keeps the clock as it was
                log.warning("ignored a clock announcement: %s", exc)
            if message.qos > 0:
                client.ack(message.mid, message.qos)
            return
        try:
            topic = message.topic
        except UnicodeDecodeError:  # brokers should refuse these, but a bad topic must not kill the thread
            topic = bytes(message._topic).decode("utf-8", "replace")
        self._inbox.put(Inbound(topic, bytes(message.payload), message.qos, message.retain, to_ms(self._clock.now()),
                                message.mid, self._link))
