"""The engine: live state of every device, its detectors, and the decisions they produce."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from linli.astro import is_night, scheduled_on_since
from linli.catalog import FAULTS, OFFLINE_SEVERITY, Severity
from linli.clock import from_ms
from linli.contract import Channel, ChargerTelemetry, ElevatorTelemetry, Message, Status
from linli.detectors import DeviceDetectors, Signal, detectors_for
from linli.engine.correlation import Correlator
from linli.engine.decisions import Decision, DeviceCommand, FaultCleared, FaultRaised, SoakEnded
from linli.engine.verification import Resolution, Soak, SoakOutcome, Verifier
from linli.site import Device, Site, SiteRegistry
from linli.tickets import Subject

OFFLINE_AFTER_INTERVALS = 3
SEQ_WINDOW = 256
_SEQ_MASK = (1 << SEQ_WINDOW) - 1
SNAPSHOT_VERSION = 2
# A switched circuit's contactor switches by its own timer or photocell, minutes apart from our astronomical
# clock: a light silent or gone within this long before the scheduled off time is expected, not offline.
SWITCH_GRACE = timedelta(minutes=10)
SUPPLY_LOSS = "supply_loss"  # a light's child fault: no supply (< 50 V) while its circuit should be powered
# Faults that make the platform take a charger out of use, and bring it back when the ticket is resolved.
UNSAFE_CHARGER_FAULTS = frozenset({"ground_failure", "power_switch_failure"})
# Tickets with no detector of their own (residents' report categories, staff tickets) are verified by
# the detectors that see what they describe, or by the kind's core faults.
PROXY_CODES: dict[str, tuple[str, ...]] = {
    "light_out": ("lamp_failure",), "light_flicker": ("cycling",), "light_on_by_day": ("day_burning",),
}
CORE_CODES: dict[str, tuple[str, ...]] = {
    "streetlight": ("lamp_failure", "cycling"),
    "elevator": ("trapped", "stopped_outside_zone", "safety_circuit_open", "door_fault", "out_of_service"),
    "charger": ("faulted", "ground_failure", "power_switch_failure"),
}
NO_CODES: frozenset[str] = frozenset()  # DeviceLive's active/silenced when empty, shared by every device


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


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """Planned work: the subject's faults open no tickets meanwhile; its state stays visible."""

    site: str
    subject: Subject  # a device, a circuit or a building
    starts: datetime
    ends: datetime
    reason: str = ""

    def covers(self, site: Site, device: Device, now: datetime) -> bool:
        if self.site != site.id or not self.starts <= now < self.ends:
            return False
        kind, ident = self.subject.type, self.subject.id
        if kind == "device":
            return device.id == ident
        if kind == "circuit":
            return device.circuit == ident
        if kind == "cabinet":
            return device.circuit is not None and site.cabinet_of_circuit.get(device.circuit) == ident
        if kind == "building":
            return device.building == ident
        return False


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
    supply_lost: bool = False
    dirty: bool = True
    detectors: DeviceDetectors | None = None
    seqs: SeqWindow = field(default_factory=SeqWindow)
    # Immutable, replaced on change (rare); empty, they are the one shared NO_CODES (an empty set
    # costs 216 bytes, twice per device).
    active: frozenset[str] = NO_CODES  # the detectors' faults holding now
    silenced: frozenset[str] = NO_CODES  # of those, raised during maintenance: no ticket yet
    schedule_sent: tuple[int, int] | None = None  # a streetlight: the (on, off) offsets last pushed to it

    def snapshot(self) -> dict[str, Any]:
        """What the columns of `device_states` do not hold, as JSON: restored by `restore` after a restart."""
        state: dict[str, Any] = {
            "v": SNAPSHOT_VERSION, "interval_s": self.interval_s, "offline_active": self.offline_active,
            "last_ts_ms": self.last_ts_ms, "supply_lost": self.supply_lost,
            "schedule_sent": list(self.schedule_sent) if self.schedule_sent else None,
            "active": sorted(self.active), "silenced": sorted(self.silenced),
            "seqs": {"top": self.seqs.top, "seen": format(self.seqs.seen, "x"), "gaps": self.seqs.gaps,
                     "out_of_order": self.seqs.out_of_order},
        }
        if self.detectors is not None:
            state["detectors"] = self.detectors.snapshot()
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
        self.supply_lost = bool(snapshot.get("supply_lost"))
        sent = snapshot.get("schedule_sent")  # a restart re-pushes nothing the light already has
        self.schedule_sent = (int(sent[0]), int(sent[1])) if isinstance(sent, list) and len(sent) == 2 else None
        self.active = frozenset(snapshot.get("active") or ()) or NO_CODES
        self.silenced = frozenset(snapshot.get("silenced") or ()) or NO_CODES
        self.last_ts_ms = snapshot.get("last_ts_ms")
        seqs = snapshot.get("seqs") or {}
        self.seqs = SeqWindow(int(seqs.get("top", -1)), int(seqs.get("seen", "0"), 16), int(seqs.get("gaps", 0)),
                              int(seqs.get("out_of_order", 0)))
        detectors = snapshot.get("detectors")
        if self.detectors is not None and isinstance(detectors, dict):
            self.detectors.restore(detectors)


@dataclass(slots=True)
class _ConcentratorLive:
    site: str
    concentrator_id: str
    interval_s: int
    watched_since: datetime
    last_seen: datetime | None = None
    offline_active: bool = False


class Engine:
    """Pure and synchronous: feed it validated messages and the time; it returns decisions.

    Device detectors (``linli.detectors``) say what each device's own samples show; the engine adds
    silence (offline), correlation through the site's topology, maintenance windows, the soak that
    verifies a repair, and the automatic actions some faults call for.
    """

    def __init__(self, sites: SiteRegistry, now: datetime) -> None:
        self._sites = sites
        self._live: dict[tuple[str, str], DeviceLive] = {}
        self._concentrators: dict[tuple[str, str], _ConcentratorLive] = {}
        # Silence counts only while the gateway is connected to the broker.
        self._connected_since: datetime | None = now
        self.seq_gaps = 0  # seqs lost, summed over devices since start (provisional: out-of-order ones give back)
        self.out_of_order = 0
        self._correlators: dict[str, Correlator] = {}
        self._maintenance: list[MaintenanceWindow] = []
        self._verifier = Verifier()
        self._schedules_due = True  # sites served anew or reloaded: their lights may need the schedule
        self._build(sites, now, keep={})

    def _build(self, sites: SiteRegistry, now: datetime, keep: dict[tuple[str, str], DeviceLive]) -> None:
        self._schedules_due = True
        # (site, kind) whose never-heard devices are not yet offline (`offline_if_never_heard: false`)
        self._installing = {(site.id, kind) for site in sites for kind in ("streetlight", "elevator", "charger")
                            if not site.thresholds(kind).offline_if_never_heard}
        for site in sites:
            for device in site.devices.values():
                key = (site.id, device.id)
                self._live[key] = keep.get(key) or _new_live(site, device, now)
            for conc in site.spec.concentrators:
                ckey = (site.id, conc.id)
                self._concentrators[ckey] = self._concentrators.get(ckey) or _ConcentratorLive(
                    site.id, conc.id, conc.interval_s, now)
            if site.id in self._correlators:
                self._correlators[site.id].use_site(site)
            else:
                self._correlators[site.id] = Correlator(site)

    # ------------------------------------------------------------ queries

    def live(self, site: str, device_id: str) -> DeviceLive | None:
        return self._live.get((site, device_id))

    def devices(self) -> Iterable[DeviceLive]:
        return self._live.values()

    def soaks(self) -> list[Soak]:
        return self._verifier.soaks()

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
        for conc in self._concentrators.values():
            conc.watched_since = now
            if conc.last_seen is not None and conc.last_seen > now:
                conc.last_seen = now

    def reload_sites(self, sites: SiteRegistry, now: datetime) -> None:
        """Serve edited site files without a restart.

        A device new in service gets live state (its silence counts from `now`); a device removed
        or retired loses it; a device still there keeps its live and detector state, with a
        changed interval (unless its own status reported one) and rated figures applied. A device
        whose kind changed starts afresh.
        """
        keep: dict[tuple[str, str], DeviceLive] = {}
        for site in sites:
            old_site = self._sites.get(site.id)
            for device in site.devices.values():
                key = (site.id, device.id)
                live = self._live.get(key)
                before = old_site.devices.get(device.id) if old_site else None
                if live is None or before is None or before.kind != device.kind:
                    continue
                if "interval_s" not in live.status:
                    live.interval_s = device.interval_s
                if before != device and live.detectors is not None:
                    saved = live.detectors.snapshot()
                    live.detectors = detectors_for(site, device, site.thresholds(device.kind))
                    live.detectors.restore(saved)
                keep[key] = live
        self._sites = sites
        self._live = {}
        self._concentrators = {k: v for k, v in self._concentrators.items() if k[0] in sites}
        self._correlators = {k: v for k, v in self._correlators.items() if k in sites}
        self._build(sites, now, keep)

    def set_maintenance(self, windows: Sequence[MaintenanceWindow], now: datetime) -> list[Decision]:
        """The planned maintenance windows now known; faults silenced by a window that ended are raised."""
        self._maintenance = list(windows)
        return self._release_silenced(now)

    def sync_resolutions(self, resolutions: Sequence[Resolution], now: datetime) -> list[Decision]:
        """The tickets now resolved (from the ticket store): each gets a soak; new charger safety
        tickets put their pile back in service."""
        before = self._verifier.watching()
        self._verifier.sync({s.id: s for s in self._sites}, list(resolutions), now)
        decisions: list[Decision] = []
        for r in resolutions:
            if r.ticket_id not in before and r.fault in UNSAFE_CHARGER_FAULTS and r.subject.type == "device":
                decisions.append(DeviceCommand(r.site, r.subject.id, "set_available", {"available": True},
                                               f"ticket {r.ticket_id} resolved: back in service"))
        return decisions

    def observe(self, message: Message, now: datetime) -> list[Decision]:
        if message.kind == "concentrator":
            return self._observe_concentrator(message, now)
        live = self._live.get((message.site, message.device_id))
        if live is None:  # devices not in the site file: nothing to detect
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
        elif message.channel is Channel.CMD_ACK:
            return decisions  # the platform's own command traffic says nothing about health
        if message.channel is not Channel.CMD:
            decisions.extend(self._heard(site, device, live, now))
            if message.seq is not None:
                self._count_seq(live, message.seq)
                live.last_seq = message.seq
        if message.channel is Channel.TELEMETRY:
            live.last = body.model_dump(exclude_none=True, exclude={"ts", "seq"}) | body.extras()
            live.last_ts_ms = message.ts_ms
        if live.detectors is None:
            return decisions
        sample_at = from_ms(message.ts_ms)
        signals = live.detectors.observe(message, sample_at)
        decisions.extend(self._supply(site, device, live, now))
        decisions.extend(self._signals(site, device, live, signals, now))
        if message.channel is Channel.TELEMETRY:
            decisions.extend(self._soak_sample(site, live, message, sample_at))
        return decisions

    def heard(self, site_id: str, device_id: str, now: datetime) -> list[Decision]:
        """The device spoke though its message was refused (a `ts` too far ahead: its clock jumped):
        it is alive, so its silence timer restarts and an `offline` it had clears; nothing else."""
        live = self._live.get((site_id, device_id))
        if live is None:
            return []
        live.dirty = True
        site = self._sites[site_id]
        return self._heard(site, site.devices[device_id], live, now)

    def _heard(self, site: Site, device: Device, live: DeviceLive, now: datetime) -> list[Decision]:
        live.online = True
        live.last_seen = now
        if not live.offline_active:
            return []
        live.offline_active = False
        return self._correlators[site.id].child_cleared(device.id, "offline", "offline", now)

    def tick(self, now: datetime) -> list[Decision]:
        """Timers: silence (offline), detector durations, grouping windows, soaks, maintenance ends."""
        decisions: list[Decision] = []
        for live in self._live.values():
            if live.detectors is not None:
                site = self._sites[live.site]
                signals = live.detectors.tick(now)
                if signals:
                    live.dirty = True
                    decisions.extend(self._signals(site, site.devices[live.device_id], live, signals, now))
        if self._connected_since is not None:
            decisions.extend(self._silences(now))
        for correlator in self._correlators.values():
            decisions.extend(correlator.tick(now))
        site_of = {s.id: s for s in self._sites}
        for soak, outcome in self._verifier.tick(site_of, now):
            decisions.append(_soak_ended(soak, outcome, now))
        decisions.extend(self._release_silenced(now))
        return decisions

    # ------------------------------------------------------------ helpers

    def _silences(self, now: datetime) -> list[Decision]:
        assert self._connected_since is not None
        decisions: list[Decision] = []
        for live in self._live.values():
            if live.offline_active:
                continue
            site = self._sites[live.site]
            device = site.devices[live.device_id]
            if live.last_seen is None and live.online is None and (live.site, live.kind) in self._installing:
                continue  # a site being installed: a device is not in service until its first message
            anchor = max(live.last_seen or live.watched_since, self._connected_since)
            if device.kind == "streetlight" and device.circuit and site.circuits[device.circuit].switched:
                on_since = scheduled_on_since(site, now)
                if on_since is None or scheduled_on_since(site, now + SWITCH_GRACE) is None:
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
        for conc in self._concentrators.values():
            if conc.offline_active:
                continue
            anchor = max(conc.last_seen or conc.watched_since, self._connected_since)
            silence = now - anchor
            if silence >= timedelta(seconds=OFFLINE_AFTER_INTERVALS * conc.interval_s):
                decisions.extend(self._concentrator_down(conc, now, f"no message for {int(silence.total_seconds())} s"))
        return decisions

    def _observe_concentrator(self, message: Message, now: datetime) -> list[Decision]:
        conc = self._concentrators.get((message.site, message.device_id))
        if conc is None or message.channel in (Channel.CMD, Channel.CMD_ACK):
            return []
        body = message.body
        if isinstance(body, Status) and body.interval_s:
            conc.interval_s = body.interval_s
        if isinstance(body, Status) and not body.online:
            return self._concentrator_down(conc, now, "last will: the concentrator went away")
        conc.last_seen = now
        if conc.offline_active:
            conc.offline_active = False
            return self._correlators[conc.site].parent_cleared(Subject("concentrator", conc.concentrator_id), now)
        return []

    def _concentrator_down(self, conc: _ConcentratorLive, now: datetime, why: str) -> list[Decision]:
        if conc.offline_active:
            return []
        conc.offline_active = True
        site = self._sites[conc.site]
        children = tuple(sorted(d.id for d in site.devices.values() if d.concentrator == conc.concentrator_id))
        raised = FaultRaised(site.id, Subject("concentrator", conc.concentrator_id), "concentrator_offline",
                             FAULTS["concentrator_offline"].severity, "streetlight", children, now, why)
        return self._correlators[site.id].parent_raised(raised)

    def _supply(self, site: Site, device: Device, live: DeviceLive, now: datetime) -> list[Decision]:
        """A light's supply lost or back: a child fault the correlator groups by circuit and cabinet."""
        assert live.detectors is not None
        if device.kind != "streetlight":
            return []
        lost = live.detectors.supply_lost()
        if lost == live.supply_lost:
            return []
        live.supply_lost = lost
        correlator = self._correlators[site.id]
        if not lost:
            return correlator.child_cleared(device.id, SUPPLY_LOSS, "supply_voltage_low", now)
        if self._silenced(site, device, now):
            return []
        raised = FaultRaised(site.id, Subject("device", device.id), "supply_voltage_low", FAULTS["supply_voltage_low"].severity,
                             device.kind, (device.id,), now, "无供电：电压低于 50 V")
        return correlator.child_raised(raised, SUPPLY_LOSS)

    def _signals(self, site: Site, device: Device, live: DeviceLive, signals: list[Signal], now: datetime) -> list[Decision]:
        decisions: list[Decision] = []
        correlator = self._correlators[site.id]
        for signal in signals:
            subject = Subject("device", device.id)
            if not signal.active:
                live.active = live.active - {signal.code} or NO_CODES
                if signal.code in live.silenced:
                    live.silenced = live.silenced - {signal.code} or NO_CODES
                    continue
                if signal.code == "power_loss":
                    decisions.extend(correlator.child_cleared(device.id, "power_loss", "power_loss", now))
                else:
                    decisions.append(FaultCleared(site.id, subject, signal.code, now))
                continue
            live.active |= {signal.code}
            raised = FaultRaised(site.id, subject, signal.code, signal.severity, device.kind, (device.id,), now,
                                 signal.detail, parent=correlator.parent_of(device.id))
            if signal.severity is not Severity.P0 and self._silenced(site, device, now):
                live.silenced |= {signal.code}  # P0 is never silenced, not even by planned work
                continue
            if signal.code in UNSAFE_CHARGER_FAULTS:
                decisions.append(DeviceCommand(site.id, device.id, "set_available", {"available": False},
                                               f"{signal.code}: taken out of use for safety"))
            if signal.code == "power_loss" and signal.severity is not Severity.P0:
                decisions.extend(correlator.child_raised(raised, "power_loss"))
            else:
                decisions.append(raised)  # P0 is never delayed, grouped or suppressed
        return decisions

    def schedule_pushes(self) -> list[Decision]:
        """`set_schedule` to every streetlight that has not had its site's current schedule: when
        the gateway starts serving a site (start, lease taken over, light added) and when an edited site
        file changes `lighting_schedule`. Controllers keep the offsets and switch on their own."""
        if not self._schedules_due:
            return []
        self._schedules_due = False
        decisions: list[Decision] = []
        for live in self._live.values():
            if live.kind != "streetlight":
                continue
            schedule = self._sites[live.site].spec.site.lighting_schedule
            offsets = (schedule.on_offset_min, schedule.off_offset_min)
            if live.schedule_sent == offsets:
                continue
            live.schedule_sent = offsets
            live.dirty = True  # saved with its state: a restart does not push it again
            decisions.append(DeviceCommand(live.site, live.device_id, "set_schedule",
                                           {"on_offset_min": offsets[0], "off_offset_min": offsets[1]},
                                           "照明时间表（日落/日出偏移）下发"))
        return decisions

    def _silenced(self, site: Site, device: Device, now: datetime) -> bool:
        return any(w.covers(site, device, now) for w in self._maintenance)

    def _release_silenced(self, now: datetime) -> list[Decision]:
        """Faults that held through a maintenance window that is now over open their tickets."""
        decisions: list[Decision] = []
        for live in self._live.values():
            if not live.silenced:
                continue
            site = self._sites[live.site]
            device = site.devices[live.device_id]
            if self._silenced(site, device, now):
                continue
            for code in sorted(live.silenced):
                decisions.append(FaultRaised(site.id, Subject("device", device.id), code, FAULTS[code].severity,
                                             device.kind, (device.id,), now, "故障在计划维护结束后仍存在"))
            live.silenced = NO_CODES
            live.dirty = True
        return decisions

    def _soak_sample(self, site: Site, live: DeviceLive, message: Message, at: datetime) -> list[Decision]:
        if not self._verifier.watching() or live.detectors is None:
            return []
        detectors = live.detectors
        body = message.body
        health: dict[str, bool | None] = {}
        for soak in self._verifier.soaks():
            fault = soak.resolution.fault
            if fault in health:
                continue
            if fault == "offline":
                health[fault] = True  # a sample arrived
            elif fault in ("circuit_outage", "concentrator_offline", "building_power_loss"):
                health[fault] = not detectors.supply_lost()
            elif fault == "intermittent":
                health[fault] = not live.active
            elif fault not in FAULTS:  # a resident's report or a staff ticket: no detector of its own
                health[fault] = _proxy_health(detectors, PROXY_CODES.get(fault) or CORE_CODES.get(live.kind, ()))
            else:
                health[fault] = detectors.healthy(fault)
        trips = body.trips if isinstance(body, ElevatorTelemetry) else None
        session = body.session_id if isinstance(body, ChargerTelemetry) else None
        ended = self._verifier.sample(site.id, live.device_id, at, live.interval_s, health, trips=trips, session=session)
        return [_soak_ended(soak, outcome, at) for soak, outcome in ended]

    def _expected_silent(self, site: Site, device: Device, now: datetime) -> bool:
        if device.kind != "streetlight" or not device.circuit or not site.circuits[device.circuit].switched:
            return False
        # The cabinet's contactor keeps its own time: a light that goes away shortly before the scheduled
        # off time has been switched off, not lost.
        return scheduled_on_since(site, now) is None or scheduled_on_since(site, now + SWITCH_GRACE) is None

    def _raise_offline(self, site: Site, device: Device, live: DeviceLive, now: datetime, why: str) -> list[Decision]:
        if live.offline_active:
            return []
        live.offline_active = True
        if self._silenced(site, device, now):
            return []
        severity = OFFLINE_SEVERITY[device.kind]
        if device.kind == "streetlight" and is_night(site, now):
            severity = Severity.P2
        raised = FaultRaised(site.id, Subject("device", device.id), "offline", severity, device.kind, (device.id,), now, why)
        return self._correlators[site.id].child_raised(raised, "offline")


def _proxy_health(detectors: DeviceDetectors, codes: Iterable[str]) -> bool | None:
    """Unhealthy if any of `codes` says so, healthy if any says so and none objects, else no evidence."""
    verdicts = [detectors.healthy(code) for code in codes]
    if any(v is False for v in verdicts):
        return False
    return True if any(v is True for v in verdicts) else None


def _soak_ended(soak: Soak, outcome: SoakOutcome, at: datetime) -> SoakEnded:
    r = soak.resolution
    coverage = soak.coverage(at)
    detail = {
        SoakOutcome.VERIFIED: f"运行验证通过：健康数据覆盖 {coverage:.0%}",
        SoakOutcome.RELAPSED: "运行验证期间故障复现",
        SoakOutcome.INCONCLUSIVE: f"运行验证数据不足（覆盖 {coverage:.0%}，需 90%）：继续观察",
    }[outcome]
    return SoakEnded(r.site, r.ticket_id, outcome.value, at, detail)


def _new_live(site: Site, device: Device, now: datetime) -> DeviceLive:
    live = DeviceLive(site.id, device.id, device.kind, device.interval_s, watched_since=now)
    live.detectors = detectors_for(site, device, site.thresholds(device.kind))
    return live
