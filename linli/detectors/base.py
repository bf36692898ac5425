"""What every device's detectors share: signals, hold timers, hysteresis, flapping, snapshots.

A detector works in three steps per message: it updates its timers and counters from the sample
(``_sample``), then ``_evaluate`` says, per fault, whether the condition holds now (``cond``:
True / False / None for "no evidence") and whether it has held long enough to fire (``ready``).
:meth:`DetectorBase._step` turns that into transitions with hysteresis: a fault fires once when
ready, and clears once its condition has stayed false for its hold-off (and enough samples).
``tick`` re-evaluates with the latest sample at a later time, so a duration completes without a
new sample, but only while that sample is fresh (3 telemetry intervals: after that the device is
offline, the engine's business, and silence never fires or clears anything).

Flapping: when one code clears for the ``flap_cycles``-th time within ``flap_window_s``, the device
gets one ``intermittent`` signal, and further raises of that code are not signalled until it has
been calm for ``flap_calm_s`` (then ``intermittent`` clears). P0 faults are never suppressed.
"""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from linli.catalog import FAULTS, Severity
from linli.contract import Channel, Command, Event, Message, Status
from linli.detectors.thresholds import Thresholds
from linli.site import Device, Site

SNAPSHOT_VERSION = 1
STALE_INTERVALS = 3


@dataclass(frozen=True, slots=True)
class Signal:
    """A fault firing (``active``) or clearing on one device; a severity rise is another active signal."""

    code: str
    active: bool
    severity: Severity
    at: datetime
    detail: str


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _dt(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) else None


def dump_times(times: deque[datetime] | list[datetime]) -> list[str]:
    return [t.isoformat() for t in times]


def load_times(items: Any) -> deque[datetime]:
    return deque(datetime.fromisoformat(t) for t in (items or []) if isinstance(t, str))


@dataclass(slots=True)
class Timer:
    """Since when a condition has held without a break, and in how many samples."""

    since: datetime | None = None
    samples: int = 0

    def feed(self, cond: bool | None, at: datetime) -> None:
        if cond:
            if self.since is None:
                self.since = at
            self.samples += 1
        else:
            self.since, self.samples = None, 0

    def held(self, at: datetime) -> float:
        """Seconds the condition has held at `at` (0 when it does not hold)."""
        return (at - self.since).total_seconds() if self.since is not None else 0.0

    def dump(self) -> dict[str, Any]:
        return {"since": _iso(self.since), "samples": self.samples}

    @classmethod
    def load(cls, data: Any) -> Timer:
        data = data if isinstance(data, dict) else {}
        return cls(_dt(data.get("since")), int(data.get("samples", 0)))


@dataclass(slots=True)
class Hold:
    """One fault's state (per connector for chargers): active, its severity, and its calm run."""

    active: bool = False
    severity: Severity | None = None
    calm_since: datetime | None = None
    calm_samples: int = 0

    def dump(self) -> dict[str, Any]:
        return {"active": self.active, "severity": self.severity.value if self.severity else None,
                "calm_since": _iso(self.calm_since), "calm_samples": self.calm_samples}

    @classmethod
    def load(cls, data: Any) -> Hold:
        data = data if isinstance(data, dict) else {}
        severity = data.get("severity")
        return cls(bool(data.get("active")), Severity(severity) if severity in Severity.__members__ else None,
                   _dt(data.get("calm_since")), int(data.get("calm_samples", 0)))


@lru_cache(maxsize=4096)
def _key_parts(key: str) -> tuple[str, str]:
    """(key, code) of a fault key ``code`` or ``code#connector``: one string object each, shared by
    every device that stores them (a charger's ``_healthy`` holds one per code and connector)."""
    return sys.intern(key), sys.intern(key.split("#", 1)[0])


def _more_urgent(a: Severity, b: Severity | None) -> bool:
    return b is None or a.rank < b.rank


class DetectorBase:
    """One device's detectors; subclasses implement ``_sample``, ``_evaluate`` and their extra state.

    Memory: one of these lives per device (100,000 of them in a large gateway), so the class and its
    subclasses use ``__slots__``; a timer or hold exists only while its condition runs or its fault is
    active (an idle one is the same as none: ``_feed`` drops it, ``_step`` drops a cleared hold);
    the flapping bookkeeping is None until a fault first fires.
    """

    __slots__ = ("_clears", "_emitted", "_flapping", "_healthy", "_intermittent", "_suppressed", "device", "holds",
                 "interval_s", "last_sample_at", "site", "th", "timers")
    kind = ""
    OWNED: tuple[str, ...] = ()  # catalog codes this kind's detectors produce (besides intermittent)

    def __init__(self, site: Site, device: Device, thresholds: Thresholds) -> None:
        self.site = site
        self.device = device
        self.th = thresholds
        self.interval_s = float(device.interval_s)
        self.last_sample_at: datetime | None = None
        self.timers: dict[str, Timer] = {}  # only the running ones
        self.holds: dict[str, Hold] = {}  # only the active ones
        self._healthy: dict[str, bool] = {}
        self._emitted: dict[str, Severity] | None = None  # codes signalled active (fault level)
        self._suppressed: set[str] | None = None  # codes active but not signalled (flapping)
        self._clears: dict[str, list[datetime]] | None = None  # signalled clears per code, within the flap window
        self._flapping: dict[str, datetime] | None = None  # code -> its last activity while intermittent
        self._intermittent = False

    # ------------------------------------------------------------ the interface

    def observe(self, message: Message, at: datetime) -> list[Signal]:
        body = message.body
        out: list[Signal] = []
        if message.channel is Channel.STATUS:
            if isinstance(body, Status) and body.interval_s:
                self.interval_s = float(body.interval_s)
            return out
        if message.channel is Channel.CMD:
            if isinstance(body, Command):
                self._command(body, at)
            return out
        if message.channel is Channel.EVENT:
            if isinstance(body, Event):
                self._event(body, at, out)
                self._calm_intermittent(at, out)
            return out
        if message.channel is not Channel.TELEMETRY:
            return out
        if self.last_sample_at is not None and at < self.last_sample_at:
            return out  # older than what we already judged (a late duplicate): it cannot rewind timers
        self._sample(body, at)
        self.last_sample_at = at
        self._evaluate(at, True, out)
        self._calm_intermittent(at, out)
        return out

    def tick(self, now: datetime) -> list[Signal]:
        out: list[Signal] = []
        if self.fresh(now):
            assert self.last_sample_at is not None
            self._evaluate(max(now, self.last_sample_at), False, out)
        self._timed(now, out)
        self._calm_intermittent(now, out)
        return out

    def healthy(self, code: str) -> bool | None:
        return self._healthy.get(code)

    def supply_lost(self) -> bool:
        return False

    def fresh(self, now: datetime) -> bool:
        return self.last_sample_at is not None and (now - self.last_sample_at).total_seconds() <= (
            STALE_INTERVALS * self.interval_s
        )

    # ------------------------------------------------------------ for subclasses

    def _sample(self, body: Any, at: datetime) -> None:
        """Update timers and counters from one telemetry body."""

    def _evaluate(self, at: datetime, is_sample: bool, out: list[Signal]) -> None:
        """Step every fault at `at` from the current state."""

    def _event(self, event: Event, at: datetime, out: list[Signal]) -> None:
        """A device-reported event: a code of this kind fires at once."""
        if event.code in self.OWNED:
            self._force(event.code, at, out, f"设备上报事件 {event.code}（device event）")

    def _command(self, command: Command, at: datetime) -> None:
        """A platform command to the device (staff switching a light, a schedule change)."""

    def _timed(self, now: datetime, out: list[Signal]) -> None:
        """Timers that do not need a fresh sample (a nightly evaluation)."""

    def _extra_dump(self) -> dict[str, Any]:
        return {}

    def _extra_load(self, data: dict[str, Any]) -> None:
        """Take back what `_extra_dump` wrote."""

    def _feed(self, name: str, cond: bool | None, at: datetime) -> None:
        """Timer `name` counts while `cond` holds; a break resets it (an idle timer is not kept)."""
        if cond:
            found = self.timers.get(name)
            if found is None:
                found = self.timers[name] = Timer()
            found.feed(True, at)
        else:
            self.timers.pop(name, None)

    def _held(self, name: str, at: datetime) -> float:
        """Seconds timer `name`'s condition has held at `at` (0 when it does not hold)."""
        found = self.timers.get(name)
        return found.held(at) if found is not None else 0.0

    def _count(self, name: str) -> int:
        """Samples in timer `name`'s current run (0 when its condition does not hold)."""
        found = self.timers.get(name)
        return found.samples if found is not None else 0

    def _step(
        self, key: str, cond: bool | None, ready: bool, at: datetime, out: list[Signal], *, is_sample: bool,
        detail: str = "", severity: Severity | None = None, clear_s: float | None = None, clear_samples: int = 1,
    ) -> None:
        """One fault (key ``code`` or ``code#connector``) at `at`: fire when ready, clear after its hold-off."""
        key, code = _key_parts(key)
        severity = severity or FAULTS[code].severity
        clear_s = self.th.clear_after_s if clear_s is None else clear_s
        state = self.holds.get(key)  # None: inactive with no calm run, the state of most faults
        if is_sample and cond is not None:
            self._healthy[code] = not cond if "#" not in key else self._connectors_healthy(code, key, not cond)
        if cond:
            if state is None:
                if not ready:
                    return
                state = self.holds[key] = Hold()
            state.calm_since, state.calm_samples = None, 0
            if ready and not state.active:
                state.active, state.severity = True, severity
                self._raise(code, severity, at, detail, out)
            elif ready and state.active and _more_urgent(severity, state.severity):
                state.severity = severity
                self._raise(code, severity, at, detail, out)
            return
        if state is None:
            return
        if cond is None:
            state.calm_since, state.calm_samples = None, 0
            return
        if not state.active:
            return
        if state.calm_since is None:
            state.calm_since = at
        if is_sample:
            state.calm_samples += 1
        if (at - state.calm_since).total_seconds() >= clear_s and state.calm_samples >= clear_samples:
            del self.holds[key]  # cleared: back to the idle state, which is kept as no hold at all
            self._clear(code, at, detail, out)

    def _force(self, key: str, at: datetime, out: list[Signal], detail: str, severity: Severity | None = None) -> None:
        """A fault the device itself reported: it fires at once (and its calm run starts again)."""
        self._step(key, True, True, at, out, is_sample=False, detail=detail, severity=severity)

    def _connectors_healthy(self, code: str, key: str, this: bool) -> bool:
        """A charger is healthy w.r.t. a code when none of its connectors shows it."""
        self._healthy[key] = this
        return all(v for k, v in self._healthy.items() if k.startswith(code + "#"))

    # ------------------------------------------------------------ fault-level transitions

    def _raise(self, code: str, severity: Severity, at: datetime, detail: str, out: list[Signal]) -> None:
        before = self._emitted.get(code) if self._emitted is not None else None
        if before is not None and not _more_urgent(severity, before):
            return  # another connector already holds it at this severity or higher
        if self._flapping is not None and code in self._flapping and severity is not Severity.P0 and before is None:
            self._flapping[code] = at
            if self._suppressed is None:
                self._suppressed = set()
            self._suppressed.add(code)
            return
        if self._emitted is None:
            self._emitted = {}
        self._emitted[code] = severity
        if self._suppressed is not None:
            self._suppressed.discard(code)
        out.append(Signal(code, True, severity, at, detail))

    def _clear(self, code: str, at: datetime, detail: str, out: list[Signal]) -> None:
        if any(h.active for k, h in self.holds.items() if k.split("#", 1)[0] == code):
            return  # another connector still shows it
        if self._suppressed is not None and code in self._suppressed:
            self._suppressed.discard(code)
            assert self._flapping is not None  # a code is suppressed only while flapping
            self._flapping[code] = at
            return
        severity = self._emitted.pop(code, None) if self._emitted is not None else None
        if severity is None:
            return
        if not self._emitted:
            self._emitted = None
        name = FAULTS[code].zh
        out.append(Signal(code, False, severity, at, f"{name}已恢复（cleared）"))
        if severity is Severity.P0 or FAULTS[code].severity is Severity.P0:
            return
        window = timedelta(seconds=self.th.flap_window_s)
        if self._clears is None:
            self._clears = {}
        clears = self._clears.setdefault(code, [])  # a few entries at most (flap_cycles): a list, not a deque
        clears.append(at)
        while clears and at - clears[0] > window:
            del clears[0]
        if len(clears) >= self.th.flap_cycles:
            clears.clear()
            if self._flapping is None:
                self._flapping = {}
            self._flapping[code] = at
            if not self._intermittent:
                self._intermittent = True
                minutes = self.th.flap_window_s / 60
                out.append(Signal(
                    "intermittent", True, FAULTS["intermittent"].severity, at,
                    f"间歇性故障：{name} {minutes:.0f} 分钟内反复 {self.th.flap_cycles} 次"
                    f"（{code} fired and cleared {self.th.flap_cycles} times within {minutes:.0f} min）",
                ))

    def _calm_intermittent(self, now: datetime, out: list[Signal]) -> None:
        if not self._intermittent:
            return
        calm = timedelta(seconds=self.th.flap_calm_s)
        suppressed, emitted = self._suppressed or (), self._emitted or {}
        for code, last in (self._flapping or {}).items():
            if code in suppressed or code in emitted or now - last < calm:
                return
        self._intermittent = False
        self._flapping = None
        out.append(Signal("intermittent", False, FAULTS["intermittent"].severity, now,
                          "间歇性故障已平稳（calm for a while）"))

    # ------------------------------------------------------------ snapshot

    def snapshot(self) -> dict[str, Any]:
        return {
            "v": SNAPSHOT_VERSION,
            "kind": self.kind,
            "interval_s": self.interval_s,
            "last_sample_at": _iso(self.last_sample_at),
            "timers": {k: t.dump() for k, t in self.timers.items() if t.since is not None or t.samples},
            "holds": {k: h.dump() for k, h in self.holds.items() if h.active or h.calm_since is not None},
            "healthy": dict(self._healthy),
            "emitted": {k: v.value for k, v in (self._emitted or {}).items()},
            "suppressed": sorted(self._suppressed or ()),
            "clears": {k: dump_times(v) for k, v in (self._clears or {}).items() if v},
            "flapping": {k: v.isoformat() for k, v in (self._flapping or {}).items()},
            "intermittent": self._intermittent,
            "extra": self._extra_dump(),
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Resume from :meth:`snapshot`; a snapshot of another version or kind is ignored (fresh start)."""
        if not isinstance(data, dict) or data.get("v") != SNAPSHOT_VERSION or data.get("kind") != self.kind:
            return
        self.interval_s = float(data.get("interval_s") or self.interval_s)
        self.last_sample_at = _dt(data.get("last_sample_at"))
        # only running timers and active holds are kept (an idle one is the same as none)
        timers = {k: Timer.load(v) for k, v in (data.get("timers") or {}).items()}
        self.timers = {k: timer for k, timer in timers.items() if timer.since is not None or timer.samples}
        holds = {k: Hold.load(v) for k, v in (data.get("holds") or {}).items()}
        self.holds = {k: hold for k, hold in holds.items() if hold.active}
        self._healthy = {k: bool(v) for k, v in (data.get("healthy") or {}).items()}
        # an empty container is kept as None, as in a device that never had a fault
        self._emitted = {k: Severity(v) for k, v in (data.get("emitted") or {}).items()
                         if v in Severity.__members__} or None
        self._suppressed = set(data.get("suppressed") or []) or None
        self._clears = {k: list(load_times(v)) for k, v in (data.get("clears") or {}).items()} or None
        self._flapping = {k: t for k, v in (data.get("flapping") or {}).items() if (t := _dt(v)) is not None} or None
        self._intermittent = bool(data.get("intermittent"))
        self._extra_load(data.get("extra") or {})


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)
