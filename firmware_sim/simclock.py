"""One simulated clock for the whole system: what the simulator announces, and how to follow it.

An accelerated simulator (``linli sim --speed 60``, ``--start ...``, ``--speed max``) publishes its
clock, retained, on the platform topic :data:`CLOCK_TOPIC` (``linli/v1/clock``)::

    {"start_wall_ms": 1795680000123, "start_sim_ms": 1795687200000, "speed": 60}

meaning: at wall-clock time ``start_wall_ms`` (Unix ms) the simulated time was ``start_sim_ms``,
and it runs ``speed`` times faster than the wall clock. With ``--speed max`` the simulator drives
its clock itself as fast as publishing allows: ``speed`` is ``null`` and ``sim_ms`` carries the
simulated time, republished about every second. The simulator clears the retained message
(empty payload) when it stops.

A gateway (or a test, or a dashboard) follows it with :class:`FollowedClock`, which satisfies
``linli.clock.Clock`` and lives in ``linli.clock`` so the gateway can use it; ``fetch_clock(mqtt_url)``
reads the retained announcement once;
:meth:`FollowedClock.update` applies a later one (for ``--speed max``, subscribe to the topic and
feed every message to ``update``). The gateway follows it with ``LINLI_FOLLOW_SIM_CLOCK=true``.
"""

from __future__ import annotations

import secrets
import threading

from linli.clock import CLOCK_TOPIC, ClockAnnouncement, FollowedClock

__all__ = ["CLOCK_TOPIC", "ClockAnnouncement", "FollowedClock", "fetch_clock"]


def fetch_clock(
    mqtt_url: str, *, username: str | None = None, password: str | None = None, timeout: float = 5.0
) -> FollowedClock:
    """Read the retained announcement once (the system clock when there is none within ``timeout``)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from firmware_sim.runtime import BrokerConfig

    broker = BrokerConfig.from_url(mqtt_url, username, password)
    got = threading.Event()
    clock = FollowedClock()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.payload:
            clock.update(bytes(message.payload))
        got.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"linli-clock-{secrets.token_hex(4)}")
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    broker.secure(client)
    client.on_connect = lambda c, u, flags, rc, props: c.subscribe(CLOCK_TOPIC, qos=1)
    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        got.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return clock
