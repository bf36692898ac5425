"""A rig for the detector tests: real contract JSON through ``linli.contract.parse``, a moved clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from linli.clock import to_ms
from linli.contract import Message, parse
from linli.detectors import DeviceDetectors, Signal, Thresholds, detectors_for
from linli.site import Site, builtin_site_path, load_site

SITE = load_site(builtin_site_path())
NIGHT = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # 21:00 in Fujian, lights on at full power
DAY = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)  # 12:00 in Fujian


class Rig:
    """One device's detectors; `send` advances the clock and feeds one message parsed as the gateway would."""

    def __init__(self, device_id: str, start: datetime = NIGHT, thresholds: Thresholds | None = None,
                 site: Site = SITE) -> None:
        self.site = site
        self.device = site.devices[device_id]
        self.now = start
        self.seq = 0
        self.detectors: DeviceDetectors = detectors_for(site, self.device, thresholds or site.thresholds(self.device.kind))
        self.signals: list[Signal] = []

    def message(self, channel: str, body: dict[str, Any]) -> Message:
        if channel in ("telemetry", "event"):
            body = {"ts": to_ms(self.now), "seq": self.seq, **body}
            self.seq += 1
        elif channel == "cmd":
            body = {"ts": to_ms(self.now), **body}
        result = parse(f"estate/v1/{self.site.id}/{self.device.kind}/{self.device.id}/{channel}",
                       json.dumps(body).encode(), received_ms=to_ms(self.now),
                       device_kind=lambda s, d: self.site.devices[d].kind if d in self.site.devices else None,
                       known_site=lambda s: s == self.site.id)
        assert isinstance(result, Message), result
        return result

    def send(self, channel: str, body: dict[str, Any], *, after: float = 30) -> list[Signal]:
        self.now += timedelta(seconds=after)
        message = self.message(channel, body)
        out = self.detectors.observe(message, self.now)
        self.signals += out
        return out

    def tick(self, after: float) -> list[Signal]:
        self.now += timedelta(seconds=after)
        out = self.detectors.tick(self.now)
        self.signals += out
        return out

    def repeat(self, channel: str, body: dict[str, Any], seconds: float, *, every: float = 30) -> list[Signal]:
        """Send the same body every `every` s for `seconds` (a tick between samples too)."""
        out: list[Signal] = []
        elapsed = 0.0
        while elapsed + every <= seconds + 1e-9:
            out += self.send(channel, body, after=every)
            elapsed += every
        return out


def codes(signals: list[Signal]) -> list[str]:
    return [f"{'+' if s.active else '-'}{s.code}" for s in signals]


def check_timed(
    rig: Rig, *, code: str, good: dict[str, Any], bad: dict[str, Any], hold: float, clear: float, every: float = 30,
    severity: str | None = None, unhealthy_before_firing: bool = True,
) -> None:
    """The catalog contract of one timed fault: nothing while shorter than its hold; fires once when it has held;
    never repeated while it holds; cleared once after its hold-off, not before; healthy() follows the samples."""
    from linli.catalog import FAULTS

    rig.repeat("telemetry", good, 60, every=every)
    assert rig.detectors.healthy(code) is True
    if hold > every:  # a spell shorter than the hold fires nothing
        assert codes(rig.repeat("telemetry", bad, hold - every, every=every)) == []
        assert rig.detectors.healthy(code) is (not unhealthy_before_firing)
        assert codes(rig.repeat("telemetry", good, 2 * every, every=every)) == []
    before = int(hold // every)
    assert codes(rig.repeat("telemetry", bad, before * every, every=every)) == []
    fired = rig.send("telemetry", bad, after=every)
    assert codes(fired) == [f"+{code}"], fired
    assert fired[0].severity.value == (severity or FAULTS[code].severity.value)
    assert fired[0].detail
    assert rig.detectors.healthy(code) is False
    assert codes(rig.repeat("telemetry", bad, 3 * every, every=every)) == []  # never repeated while it holds
    calm = int(clear // every)
    assert codes(rig.repeat("telemetry", good, calm * every, every=every)) == []
    cleared = rig.send("telemetry", good, after=every)
    assert codes(cleared) == [f"-{code}"], cleared
    assert rig.detectors.healthy(code) is True


def check_near_miss(rig: Rig, *, near: dict[str, Any], seconds: float, every: float = 30, code: str | None = None) -> None:
    """Just under the threshold, for long past the hold: nothing fires (or not `code`, when given)."""
    out = codes(rig.repeat("telemetry", near, seconds, every=every) + rig.tick(every))
    if code is None:
        assert out == []
    else:
        assert f"+{code}" not in out, out
