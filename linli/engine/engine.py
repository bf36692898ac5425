"""The engine: live state of every device, its detectors, and the decisions they produce."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from linli.astro import is_night, scheduled_on_since
from linli.catalog import OFFLINE_SEVERITY, Severity
from linli.contract import Channel, Message, Status, StreetlightTelemetry
from linli.engine.decisions import Decision, FaultCleared, FaultRaised
from linli.engine.detectors import LampFailureDetector
from linli.site import Device, Site, SiteRegistry
from linli.tickets import Subject

OFFLINE_AFTER_INTERVALS = 3
SEQ_WINDOW = 256
_SEQ_MASK = (1 << SEQ_WINDOW) - 1
SNAPSHOT_VERSION = 1


@dataclass(slots=True)
class SeqWindow:
    """The sequence numbers of one boot of a device: the highest seen and a bitmask of the 256 below it.

    Constant memory per device (a list of the last 256 seqs would cost kilobytes), and it tells a
    duplicate (seen), an out-of-order arrival (unseen, within the window: fills a gap) and a gap
    (seqs skipped when the counter jumps forward) apart.
    """

    top: int = -1  # the highest seq seen this boot; -1: none yet
    seen: int = 0  # bit i: seq top - i was seen
    gaps: int = 0  # seqs skipped and not (yet) arrived out of order, this boot
    out_of_order: int = 0

    def has(self, seq: int) -> bool:
        if self.top < 0 or seq > self.top:
            return False
        behind = self.top - seq
        return behind < SEQ_WINDOW and bool(self.seen >> behind & 1)

    def add(self, seq: int) -> tuple[int, bool]:
        """Record `seq`; return (seqs newly missing, arrived out of order)."""
        if self.top < 0 or seq > self.top:
            missing = seq - self.top - 1 if self.top >= 0 else 0
            self.seen = ((self.seen << (seq - self.top)) | 1) & _SEQ_MASK if self.top >= 0 else 1
            self.top = seq
            self.gaps += missing
            return missing, False
        behind = self.top - seq
        if behind >= SEQ_WINDOW:  # far behind the window: the device restarted without telling us
            self.top, self.seen = seq, 1
            return 0, False
        if self.seen >> behind & 1:
            return 0, False
        self.seen |= 1 << behind
        self.out_of_order += 1
        if self.gaps > 0:
            self.gaps -= 1
            return -1, True
        return 0, True


@dataclass(slots=True)
class DeviceLive:
    """What the gateway knows of one device right now."""

    site: str
    device_id: str
    kind: str
    interval_s: int
    watched_since: datetime  # since when silence counts: the start, or the reload that added the device
    online: bool | None = None  # None: not heard from since the gateway started
    last_seen: datetime | None = None  # gateway time of the last message
    status: dict[str, Any] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)  # latest telemetry values
    last_ts_ms: int | None = None
    last_seq: int | None = None
    boot: int | None = None
    offline_active: bool = False
    dirty: bool = True
    lamp: LampFailureDetector | None = None
    seqs: SeqWindow = field(default_factory=SeqWindow)

    def snapshot(self) -> dict[str, Any]:
        """What the columns of `device_states` do not hold, as JSON: restored by `restore` after a restart."""
        state: dict[str, Any] = {
            "v": SNAPSHOT_VERSION, "interval_s": self.interval_s, "offline_active": self.offline_active,
            "last_ts_ms": self.last_ts_ms,
            "seqs": {"top": self.seqs.top, "seen": format(self.seqs.seen, "x"), "gaps": self.seqs.gaps,
                     "out_of_order": self.seqs.out_of_order},
        }
        if self.lamp is not None:
            lamp = self.lamp
            state["lamp"] = {
                "relay_closed_at": lamp.relay_closed_at.isoformat() if lamp.relay_closed_at else None,
                "seen_relay_open": lamp.seen_relay_open, "dark_samples": lamp.dark_samples,
                "lit_samples": lamp.lit_samples, "active": lamp.active,
            }
        return state

    def restore(
        self, *, online: bool | None, last_seen: datetime | None, status: dict[str, Any], last: dict[str, Any],
        last_seq: int | None, boot: int | None, snapshot: dict[str, Any] | None,
    ) -> None:
        """Take back the state saved before a restart (a snapshot of another version is ignored)."""
        self.online, self.last_seen, self.status, self.last = online, last_seen, dict(status), dict(last)
        self.last_seq, self.boot = last_seq, boot
        self.dirty = False
        if not snapshot or snapshot.get("v") != SNAPSHOT_VERSION:
            return
        self.interval_s = int(snapshot.get("interval_s") or self.interval_s)
        self.offline_active = bool(snapshot.get("offline_active"))
        self.last_ts_ms = snapshot.get("last_ts_ms")
        seqs = snapshot.get("seqs") or {}
        self.seqs = SeqWindow(int(seqs.get("top", -1)), int(seqs.get("seen", "0"), 16), int(seqs.get("gaps", 0)),
                              int(seqs.get("out_of_order", 0)))
        lamp = snapshot.get("lamp")
        if self.lamp is not None and lamp:
            closed = lamp.get("relay_closed_at")
            self.lamp.relay_closed_at = datetime.fromisoformat(closed) if closed else None
            self.lamp.seen_relay_open = bool(lamp.get("seen_relay_open"))
            self.lamp.dark_samples = int(lamp.get("dark_samples", 0))
            self.lamp.lit_samples = int(lamp.get("lit_samples", 0))
            self.lamp.active = bool(lamp.get("active"))


class Engine:
    """Pure and synchronous: feed it validated messages and the time; it returns decisions."""

    def __init__(self, sites: SiteRegistry, now: datetime) -> None:
        self._sites = sites
        self._live: dict[tuple[str, str], DeviceLive] = {}
        # Silence counts only while the gateway is connected to the broker.
        self._connected_since: datetime | None = now
        self.seq_gaps = 0  # seqs lost, summed over devices since start (provisional: out-of-order ones give back)
        self.out_of_order = 0
        for site in sites:
            for device in site.devices.values():
                self._live[(site.id, device.id)] = _new_live(site, device, now)

    # ------------------------------------------------------------ queries

    def live(self, site: str, device_id: str) -> DeviceLive | None:
        return self._live.get((site, device_id))

    def devices(self) -> Iterable[DeviceLive]:
        return self._live.values()

    def take_dirty(self) -> list[DeviceLive]:
        """Devices whose live state changed since the last call (the gateway persists them)."""
        changed = [live for live in self._live.values() if live.dirty]
        for live in changed:
            live.dirty = False
        return changed

    def is_duplicate(self, message: Message) -> bool:
        """A QoS 1 redelivery: the same seq seen recently from the same boot of the device."""
        seq = message.seq
        live = self._live.get((message.site, message.device_id))
        if seq is None or live is None:
            return False
        return live.seqs.has(seq)

    def note_seq(self, message: Message) -> None:
        """Record a message's seq without observing it (a sample the gateway dropped on purpose)."""
        live = self._live.get((message.site, message.device_id))
        if live is not None and message.seq is not None:
            self._count_seq(live, message.seq)

    def _count_seq(self, live: DeviceLive, seq: int) -> None:
        missing, late = live.seqs.add(seq)
        self.seq_gaps += missing
        self.out_of_order += late

    # ------------------------------------------------------------ inputs

    def broker_connection(self, connected: bool, now: datetime) -> None:
        self._connected_since = now if connected else None

    def clock_changed(self, now: datetime) -> None:
        """The clock jumped (the gateway started following a simulator's clock): silence counts from now."""
        if self._connected_since is not None:
            self._connected_since = now
        for live in self._live.values():
            live.watched_since = now
            if live.last_seen is not None and live.last_seen > now:
                live.last_seen = now

    def reload_sites(self, sites: SiteRegistry, now: datetime) -> None:
        """Serve edited site files without a restart.

        A device new in service gets live state (its silence counts from `now`); a device removed
        or retired loses it; a device still there keeps its live and detector state, with a
        changed interval (unless its own status reported one) and rated power applied. A device
        whose kind changed starts afresh.
        """
        live_now: dict[tuple[str, str], DeviceLive] = {}
        for site in sites:
            old_site = self._sites.get(site.id)
            for device in site.devices.values():
                key = (site.id, device.id)
                live = self._live.get(key)
                before = old_site.devices.get(device.id) if old_site else None
                if live is None or before is None or before.kind != device.kind:
                    live_now[key] = _new_live(site, device, now)
                    continue
                if "interval_s" not in live.status:
                    live.interval_s = device.interval_s
                if live.lamp is not None and device.rated_power_w:
                    live.lamp.rated_power_w = device.rated_power_w
                live_now[key] = live
        self._sites = sites
        self._live = live_now

    def observe(self, message: Message, now: datetime) -> list[Decision]:
        live = self._live.get((message.site, message.device_id))
        if live is None:  # concentrators and devices not in the site file: nothing to detect yet
            return []
        site = self._sites[message.site]
        device = site.devices[message.device_id]
        body = message.body
        decisions: list[Decision] = []
        live.dirty = True
        if message.channel is Channel.STATUS:
            assert isinstance(body, Status)
            live.status = body.model_dump(exclude_none=True)
            if body.interval_s:
                live.interval_s = body.interval_s
            if body.boot is not None and body.boot != live.boot:
                live.seqs = SeqWindow()  # a reboot restarts seq at 0; gaps are counted per boot
                live.boot = body.boot
            if not body.online:
                live.online = False
                if not self._expected_silent(site, device, now):
                    decisions.extend(self._raise_offline(site, device, live, now, "last will: the device went away"))
                return decisions
        elif message.channel in (Channel.CMD, Channel.CMD_ACK):
            return decisions  # the platform's own command traffic says nothing about health
        live.online = True
        live.last_seen = now
        if live.offline_active:
            live.offline_active = False
            decisions.append(FaultCleared(site.id, Subject("device", device.id), "offline", now))
        if message.seq is not None:
            self._count_seq(live, message.seq)
            live.last_seq = message.seq
        if message.channel is Channel.TELEMETRY:
            live.last = body.model_dump(exclude_none=True, exclude={"ts", "seq"}) | body.extras()
            live.last_ts_ms = message.ts_ms
            if live.lamp is not None and isinstance(body, StreetlightTelemetry):
                sample_at = _at(message.ts_ms)
                change = live.lamp.observe(body, sample_at)
                if change is True:
                    expected = live.lamp.rated_power_w * (body.dim_pct if body.dim_pct is not None else 100) / 100
                    decisions.append(FaultRaised(
                        site.id, Subject("device", device.id), "lamp_failure", Severity.P2, device.kind, (device.id,),
                        now, f"relay closed, supply {body.voltage_v:.0f} V, power {body.power_w:.1f} W "
                             f"of {expected:.0f} W expected",
                    ))
                elif change is False:
                    decisions.append(FaultCleared(site.id, Subject("device", device.id), "lamp_failure", now))
        return decisions

    def tick(self, now: datetime) -> list[Decision]:
        """Timers: declare silent devices offline after 3 × their interval."""
        if self._connected_since is None:
            return []
        decisions: list[Decision] = []
        for live in self._live.values():
            if live.offline_active:
                continue
            site = self._sites[live.site]
            device = site.devices[live.device_id]
            anchor = max(live.last_seen or live.watched_since, self._connected_since)
            if device.kind == "streetlight" and device.circuit and site.circuits[device.circuit].switched:
                on_since = scheduled_on_since(site, now)
                if on_since is None:
                    continue  # a switched circuit's controllers are unpowered outside the schedule
                anchor = max(anchor, on_since)
            silence = now - anchor
            if silence >= timedelta(seconds=OFFLINE_AFTER_INTERVALS * live.interval_s):
                live.online = False
                live.dirty = True
                decisions.extend(self._raise_offline(
                    site, device, live, now, f"no message for {int(silence.total_seconds())} s "
                                             f"(interval {live.interval_s} s)",
                ))
        return decisions

    # ------------------------------------------------------------ helpers

    def _expected_silent(self, site: Site, device: Device, now: datetime) -> bool:
        if device.kind != "streetlight" or not device.circuit or not site.circuits[device.circuit].switched:
            return False
        return scheduled_on_since(site, now) is None

    def _raise_offline(self, site: Site, device: Device, live: DeviceLive, now: datetime, why: str) -> list[Decision]:
        if live.offline_active:
            return []
        live.offline_active = True
        severity = OFFLINE_SEVERITY[device.kind]
        if device.kind == "streetlight" and is_night(site, now):
            severity = Severity.P2
        return [FaultRaised(site.id, Subject("device", device.id), "offline", severity, device.kind, (device.id,), now, why)]


def _new_live(site: Site, device: Device, now: datetime) -> DeviceLive:
    live = DeviceLive(site.id, device.id, device.kind, device.interval_s, watched_since=now)
    if device.kind == "streetlight" and device.rated_power_w:
        live.lamp = LampFailureDetector(device.rated_power_w)
    return live


def _at(ts_ms: int) -> datetime:
    from linli.clock import from_ms

    return from_ms(ts_ms)
