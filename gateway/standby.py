"""MQTT sessions per site, taken over with the site's lease (see docs/scaling.md, "Standby").

The gateway's own connection (`ControlLink`, client id LINLI_MQTT_CLIENT_ID) publishes heartbeats
and ticket events and follows the simulator's clock; it subscribes to no site. Each site whose
lease the gateway holds gets its own persistent session (`SiteLink`, client id
``{prefix}-{site}``): a standby that takes the lease over connects with that same client id and
inherits the session, so the QoS 1 messages the broker queued while nobody held the site, and
those the dead holder had received but not acknowledged, reach it. (A shared subscription would
not: Mosquitto 2.0 keeps dealing messages round-robin to a group member whose session is offline.)
"""

from __future__ import annotations

import itertools
import logging
import queue
from collections.abc import Callable, Iterable
from typing import Any

from gateway.broker import BrokerLink, Inbound, LinkChange

log = logging.getLogger("linli.gateway.standby")
_SESSIONS = itertools.count(1)


def site_of(topic: str) -> str | None:
    """`estate/v1/{site}/...` -> site."""
    parts = topic.split("/", 3)
    return parts[2] if len(parts) > 3 and parts[0] == "estate" else None


class _Forward(queue.Queue[Any]):
    """An inbox that passes on to the gateway's inbox only what `keep` accepts."""

    def __init__(self, target: queue.Queue[Any], keep: Callable[[Any], bool]) -> None:
        super().__init__()
        self._target, self._keep = target, keep

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if self._keep(item):
            self._target.put(item, block, timeout)


def _is_link_change(item: object) -> bool:
    return isinstance(item, LinkChange)


class ControlLink(BrokerLink):
    """The gateway's own connection: no site topics, and the link state the engine's silence timers
    follow. Site messages that reach it anyway (the session of an older version, subscribed to
    them) are dropped unacknowledged: only a site's own session acknowledges its messages."""

    def __init__(self, *, client_id: str, inbox: queue.Queue[Any], **kwargs: Any) -> None:
        super().__init__(client_id=client_id, site_ids=(), inbox=_Forward(inbox, _is_link_change), **kwargs)
        if not self._topics:  # paho refuses to subscribe to nothing: a topic of our own, never published on
            self._topics = [(f"linli/v1/gateway/{client_id}/control", 0)]


class SiteLink(BrokerLink):
    """The persistent session of one site: its messages go to the gateway's inbox, its link changes
    do not (the control link speaks for the connection to the broker)."""

    def __init__(self, *, inbox: queue.Queue[Any], **kwargs: Any) -> None:
        super().__init__(inbox=_Forward(inbox, lambda item: not _is_link_change(item)), **kwargs)
        # Numbered apart from every other session's connections: an ack never reaches another session.
        self._link = next(_SESSIONS) * 1_000_000


class SiteLinks:
    """The site sessions of the sites this gateway holds; `make(site)` builds one (not connected)."""

    def __init__(self, make: Callable[[str], SiteLink]) -> None:
        self._make = make
        self.links: dict[str, SiteLink] = {}

    def open(self, site: str) -> None:
        """Connect `site`'s session (raises OSError when the broker is unreachable)."""
        if site in self.links:
            return
        link = self._make(site)
        link.start()
        self.links[site] = link

    def close(self, site: str) -> None:
        """Disconnect without acknowledging anything more: what is unacknowledged stays in the
        session for the next holder."""
        link = self.links.pop(site, None)
        if link is not None:
            link.stop()

    def close_all(self) -> None:
        for site in list(self.links):
            self.close(site)

    def ack(self, items: Iterable[Inbound]) -> int:
        """Acknowledge each QoS 1 message on the session it came from."""
        by_site: dict[str, list[Inbound]] = {}
        for item in items:
            site = site_of(item.topic)
            if site is not None:
                by_site.setdefault(site, []).append(item)
        done = 0
        for site, mine in by_site.items():
            link = self.links.get(site)
            if link is not None:
                done += link.ack(mine)
        return done
