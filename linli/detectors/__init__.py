"""Device-level fault detectors of the fault catalog: pure, synchronous, time passed in.

One :class:`DeviceDetectors` per device (made by :func:`detectors_for`) turns that device's
messages into :class:`Signal` s: a catalog code firing (``active``) or clearing, once per
transition, with hysteresis, flapping folded into one ``intermittent``. Correlation (circuits,
buildings, concentrators), offline, tickets and verification are the engine's
(``linli.engine``); it asks :meth:`DeviceDetectors.supply_lost` to correlate and
:meth:`DeviceDetectors.healthy` to verify a repair. No I/O, no database, no wall clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from linli.contract import Message
from linli.detectors.base import Signal
from linli.detectors.charger import ChargerDetectors
from linli.detectors.elevator import ElevatorDetectors
from linli.detectors.streetlight import StreetlightDetectors
from linli.detectors.thresholds import KIND_NAMES, Thresholds, thresholds_for
from linli.site import Device, Site

__all__ = [
    "KIND_NAMES",
    "DeviceDetectors",
    "Signal",
    "Thresholds",
    "detectors_for",
    "owned_codes",
    "thresholds_for",
]


class DeviceDetectors(Protocol):
    def observe(self, message: Message, at: datetime) -> list[Signal]:
        """A telemetry, status, event or cmd message of this device; `at` is its sample time."""
        ...

    def tick(self, now: datetime) -> list[Signal]:
        """Durations that complete without a new sample (only while the latest sample is fresh)."""
        ...

    def healthy(self, code: str) -> bool | None:
        """The latest sample that could tell shows the device healthy w.r.t. `code` (None: no evidence yet)."""
        ...

    def supply_lost(self) -> bool:
        """Streetlight: voltage under the supply threshold now; elevator: mains false now."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state; :meth:`restore` resumes from it after a restart."""
        ...

    def restore(self, data: dict[str, Any]) -> None: ...


_CLASSES = {"streetlight": StreetlightDetectors, "elevator": ElevatorDetectors, "charger": ChargerDetectors}


def owned_codes(kind: str) -> tuple[str, ...]:
    """The catalog codes the detectors of a kind can signal (``intermittent`` included)."""
    return (*_CLASSES[kind].OWNED, "intermittent")


def detectors_for(site: Site, device: Device, thresholds: Thresholds) -> DeviceDetectors:
    """The detectors of one device of a site (use ``site.thresholds(device.kind)`` for its thresholds)."""
    return _CLASSES[device.kind](site, device, thresholds)
