"""Ground truth: what a simulator run injected, when and where, as a JSON Lines file.

Every line is one JSON object with a ``type``:

``run`` (the first line)
    ``version``, ``seed``, ``sites``, ``scenario``, ``speed``, ``interval_s`` (the telemetry period
    forced on every device, or null), ``started_at`` (simulated clock), ``wall_started_at``.
``injected``
    ``seq`` (1, 2, ... in the file), ``site``, ``target`` ``{"type", "id"}`` (what was broken: a
    device, a circuit, a cabinet, a building or a concentrator), ``fault`` (the simulator's name
    for it), ``at`` / ``until`` (simulated clock; ``until`` null: until cleared or the run ends),
    ``subject`` ``{"type", "id"}`` (what the ticket must be about), ``devices`` (the devices
    affected), ``expected`` (the tickets it must open: ``{"code", "severity", "after_s",
    "within_s"}``, possibly none), ``tolerated`` (codes it may also open on those devices),
    ``interval_s`` (the target's telemetry period, if known), ``note``.
``cleared``
    ``ref`` (the ``seq`` of the injection it ends), ``site``, ``target``, ``fault``, ``at``.
``end`` (written by :meth:`GroundTruthWriter.close`)
    ``at``: when the run stopped.

What each injected fault must produce is :data:`EXPECTED`; how soon, :data:`RULES` (the fault
catalog's rule duration, samples, silence and grouping window) plus a slack given to the
checker (``firmware_sim.checker``). The writer fills ``expected``/``subject``/``devices`` from
:data:`EXPECTED` and, when given the :class:`~linli.site.Site`, from the site's layout
(:func:`expectation_for`); the runtime may pass them explicitly instead.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from linli.catalog import FAULTS

if TYPE_CHECKING:
    from firmware_sim.faults import Injection
    from linli.site import Site

TRUTH_VERSION = 1
SEVERITIES = ("P0", "P1", "P2", "P3")
SUBJECT_TYPES = ("device", "circuit", "cabinet", "building", "concentrator", "place")

# The catalog's correlation window ("within 2 min"), also the longest a supply-loss or offline
# child may wait for its parent before it is dispatched on its own.
GROUPING_WINDOW_S = 120.0
# The checker's default slack on top of every rule: MQTT, the gateway's tick, clock skew.
DEFAULT_SLACK_S = 15.0
DEFAULT_INTERVAL_S = 30.0
# A fault the simulator shows on an elevator's next run (door_open_moving, overspeed, overtravel) waits for the
# car to finish what it is doing: up to two runs of a tall building and their stops (~90 s).
NEXT_RUN_S = 90.0


class TruthError(ValueError):
    """A ground-truth record that cannot be written or read; the message says why in one line."""


# ---------------------------------------------------------------- detection delays per ticket code


@dataclass(frozen=True, slots=True)
class DelayRule:
    """How long a detector may take, per the fault catalog.

    ``hold_s`` is strict: a fault shorter than that must not open anything (hysteresis).
    ``extra_s`` is a worst case before the hold can begin (a lamp's warm-up, episode spacing).
    Samples and silence are counted in telemetry intervals; ``window_s`` is a correlation or
    grouping window. The longest acceptable delay is their sum plus the checker's slack.
    """

    hold_s: float = 0.0
    extra_s: float = 0.0
    samples: int = 1
    intervals: float = 0.0
    window_s: float = 0.0
    basis: str = ""  # the catalog rule, for people

    def max_delay_s(self, interval_s: float, slack_s: float) -> float:
        return self.extra_s + self.hold_s + (self.samples + self.intervals) * interval_s + self.window_s + slack_s


def _at_once(basis: str = "at once") -> DelayRule:
    return DelayRule(samples=1, basis=basis)


# Keyed by ticket code, or "code@P0" when a severity has its own rule (leakage reaching 30 mA).
RULES: dict[str, DelayRule] = {
    # streetlights
    "lamp_failure": DelayRule(extra_s=60, samples=2, basis="60 s warm-up after the relay closes, 2 dark samples"),
    "lamp_power_high": DelayRule(hold_s=600, basis="off by > 15% of rated for 10 min"),
    "lamp_power_low": DelayRule(hold_s=600, basis="off by > 15% of rated for 10 min"),
    # The condition is power_w > 10% of rated: it starts when the lamp has lit after its relay closed (the
    # catalog's 60 s warm-up at most, as for lamp_failure), not when the relay closes.
    "day_burning": DelayRule(hold_s=900, extra_s=60, basis="lit while the astronomical clock says off, 15 min "
                                                           "(from when the lamp has lit: <= 60 s warm-up)"),
    "cycling": DelayRule(hold_s=0, extra_s=900, basis=">= 4 dark/lit transitions within 15 min"),
    "supply_voltage_high": DelayRule(hold_s=300, basis="outside 198-235 V for 5 min"),
    "supply_voltage_low": DelayRule(hold_s=300, basis="outside 198-235 V for 5 min"),
    "power_factor_low": DelayRule(hold_s=1800, basis="pf < 0.8 at full power for 30 min"),
    "leakage": DelayRule(hold_s=300, basis=">= 10 mA for 5 min (P2)"),
    "leakage@P0": DelayRule(samples=2, basis=">= 30 mA in 2 samples in a row (P0)"),
    "circuit_outage": DelayRule(samples=0, intervals=3, window_s=GROUPING_WINDOW_S,
                                basis="lights lose supply or go silent (3 intervals) within 2 min"),
    "concentrator_offline": DelayRule(samples=0, intervals=3, basis="3 x its interval of silence"),
    "end_of_life": _at_once("burn_hours >= rated life"),
    "energy_anomaly": DelayRule(extra_s=86400, basis="a night's energy vs its 14-night baseline, after the night"),
    # elevators
    "trapped": DelayRule(hold_s=30, basis="stopped outside the door zone, doors closed, 30 s"),
    "trapped@alarm": DelayRule(hold_s=10, basis="alarm button held while stopped, 10 s"),
    "stopped_outside_zone": DelayRule(hold_s=10, basis="stopped outside the door zone, empty, 10 s"),
    # At once, but only seen while the car travels: the simulator's fault shows on the car's next run, which
    # starts once the car has finished its errand (up to two runs and their stops, NEXT_RUN_S), and overtravel
    # at the end of that run.
    "door_open_moving": DelayRule(extra_s=NEXT_RUN_S, basis="door open while moving, at once (seen on the next run)"),
    "overspeed": DelayRule(extra_s=NEXT_RUN_S, basis="speed > 115% of rated, at once (seen on the next run)"),
    "overtravel": DelayRule(extra_s=NEXT_RUN_S + 30, basis="floor outside the landings, at once (the end of the next run)"),
    "safety_circuit_open": _at_once(),
    "door_fault": DelayRule(hold_s=120, samples=2,
                            basis="door open > 120 s (or >= 3 re-openings in 60 s): seen open, then past 120 s"),
    "power_loss": DelayRule(samples=1, window_s=GROUPING_WINDOW_S, basis="mains false; grouping window"),
    "building_power_loss": DelayRule(samples=0, intervals=3, window_s=GROUPING_WINDOW_S,
                                     basis="a building's elevators lose mains or go silent within 2 min"),
    "out_of_service": DelayRule(hold_s=300, basis="out_of_service or inspection for 5 min"),
    # chargers
    "ground_failure": _at_once(),
    "power_switch_failure": _at_once(),
    "high_temperature": _at_once(),
    "over_current": DelayRule(extra_s=3600, basis="2 separate episodes within 1 h"),
    "over_voltage": DelayRule(extra_s=3600, basis="2 separate episodes within 1 h"),
    "under_voltage": DelayRule(extra_s=3600, basis="2 separate episodes within 1 h"),
    "faulted": DelayRule(hold_s=60, basis="status Faulted for 60 s"),
    "charging_no_current": DelayRule(hold_s=300, basis="Charging with < 0.5 A for 5 min"),
    "stuck_session": DelayRule(hold_s=1800, basis="Preparing or Finishing for 30 min"),
    "meter_failure": _at_once(),
    "reader_failure": _at_once(),
    "ev_comm_errors": DelayRule(extra_s=86400, basis="EVCommunicationError in 3 sessions within 24 h"),
    # every kind
    "offline": DelayRule(samples=0, intervals=3, window_s=GROUPING_WINDOW_S,
                         basis="3 x interval of silence (a last will: at once); grouping window"),
    # derived: a device that fires and clears again and again
    "intermittent": DelayRule(extra_s=3600, basis="repeated fire/clear of one fault (derived)"),
}


def rule_for(code: str, severity: str | None = None) -> DelayRule:
    """The delay rule of a ticket code (and severity, when it has its own); TruthError if unknown."""
    if severity is not None and f"{code}@{severity}" in RULES:
        return RULES[f"{code}@{severity}"]
    try:
        return RULES[code]
    except KeyError:
        raise TruthError(f"no detection rule for ticket code {code!r}") from None


# ---------------------------------------------------------------- what each injected fault must produce


_EXPECTED_TEXT = re.compile(r"^(?P<code>[a-z_]+)(?:@(?P<severity>P[0-3]))?(?:\+(?P<after>\d+(?:\.\d+)?))?$")


@dataclass(frozen=True, slots=True)
class ExpectedTicket:
    """One ticket an injection must open: its code, optionally the severity it must reach.

    ``after_s``: the fault's condition starts this long after the injection (a ramp reaching a
    threshold). ``within_s``: overrides the rule's longest acceptable delay (slack not included).
    ``rule``: a key of :data:`RULES` other than the code's own (``trapped@alarm``).
    """

    code: str
    severity: str | None = None
    after_s: float = 0.0
    within_s: float | None = None
    rule: str | None = None

    @classmethod
    def parse(cls, value: str | ExpectedTicket | Mapping[str, Any]) -> ExpectedTicket:
        """``"lamp_failure"``, ``"leakage@P0"``, ``"leakage@P0+300"`` (after 300 s), a mapping, or itself."""
        if isinstance(value, ExpectedTicket):
            item = value
        elif isinstance(value, str):
            match = _EXPECTED_TEXT.match(value.strip())
            if match is None:
                raise TruthError(f"bad expected ticket {value!r}: write CODE[@P0..P3][+SECONDS]")
            item = cls(match["code"], match["severity"], float(match["after"] or 0))
        elif isinstance(value, Mapping):
            try:
                within = value.get("within_s")
                item = cls(
                    str(value["code"]),
                    None if value.get("severity") is None else str(value["severity"]),
                    float(value.get("after_s") or 0),
                    None if within is None else float(within),
                    None if value.get("rule") is None else str(value["rule"]),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise TruthError(f"bad expected ticket {dict(value)!r}: {exc}") from None
        else:
            raise TruthError(f"bad expected ticket {value!r}")
        item.validate()
        return item

    def validate(self) -> None:
        base = self.code
        if base not in FAULTS:
            raise TruthError(f"expected ticket code {base!r} is not in the fault catalog")
        if self.severity is not None and self.severity not in SEVERITIES:
            raise TruthError(f"expected severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")
        if self.after_s < 0 or (self.within_s is not None and self.within_s < 0):
            raise TruthError(f"expected ticket {self.code}: after_s and within_s cannot be negative")
        if self.rule is not None and self.rule not in RULES:
            raise TruthError(f"expected ticket {self.code}: unknown rule {self.rule!r}")

    @property
    def delay_rule(self) -> DelayRule:
        return RULES[self.rule] if self.rule is not None else rule_for(self.code, self.severity)

    def max_delay_s(self, interval_s: float, slack_s: float) -> float:
        """The longest acceptable delay from the injection to the ticket, ``after_s`` included."""
        if self.within_s is not None:
            return self.after_s + self.within_s + slack_s
        return self.after_s + self.delay_rule.max_delay_s(interval_s, slack_s)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "severity": self.severity, "after_s": self.after_s, "within_s": self.within_s}
        if self.rule is not None:
            out["rule"] = self.rule
        return out

    def __str__(self) -> str:
        text = self.code + (f"@{self.severity}" if self.severity else "")
        return text + (f"+{self.after_s:g}s" if self.after_s else "")


@dataclass(frozen=True, slots=True)
class Expectation:
    """What an injected fault must open: ``tickets`` (codes, maybe none) about a ``subject`` type.

    ``target``: what the simulator breaks (a device kind, or ``circuit``/``cabinet``/``building``/
    ``concentrator``). ``tolerated``: codes it may open on its devices without being wrong (a
    flapping device's own fault before its ``intermittent`` ticket).
    """

    tickets: tuple[ExpectedTicket, ...]
    subject: str = "device"
    target: tuple[str, ...] = ("streetlight",)
    tolerated: tuple[str, ...] = ()
    note: str = ""

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.code for t in self.tickets))


def _x(*tickets: str, subject: str = "device", target: tuple[str, ...] = ("streetlight",),
       tolerated: tuple[str, ...] = (), note: str = "") -> Expectation:
    return Expectation(tuple(ExpectedTicket.parse(t) for t in tickets), subject, target, tolerated, note)


_SL, _EL, _CP = ("streetlight",), ("elevator",), ("charger",)
_ANY = ("streetlight", "elevator", "charger")

# Injected fault name (the simulator's) -> the tickets it must open. Every catalog code has an
# injection of the same name; a few more name the simulator's variants.
EXPECTED: dict[str, Expectation] = {
    # streetlights
    "lamp_failure": _x("lamp_failure"),
    "lamp_power_high": _x("lamp_power_high"),
    "lamp_power_low": _x("lamp_power_low"),
    "day_burning": _x("day_burning", note="only while the astronomical clock says off"),
    "cycling": _x("cycling"),
    "supply_voltage_high": _x("supply_voltage_high"),
    "supply_voltage_low": _x("supply_voltage_low"),
    "power_factor_low": _x("power_factor_low"),
    # The simulator's leakage rises ~2.5 mA/min: 10 mA after <= 4 min (+ the 5 min hold: P2), 30 mA after
    # <= 12 min (+ 2 samples: raised to P0). The ramp goes into within_s, the rules' samples and slack on top.
    "leakage": Expectation((ExpectedTicket("leakage", "P2", within_s=600), ExpectedTicket("leakage", "P0", within_s=780)),
                           note="rising ~2.5 mA/min: a P2 ticket, raised to P0 at 30 mA"),
    "leakage_rising": _x("leakage@P2", "leakage@P0+300",
                         note="P2 ticket, raised to P0 when it reaches 30 mA (assumed within 5 min)"),
    "leakage_severe": _x("leakage@P0", note=">= 30 mA at once: a P0 ticket"),
    "circuit_outage": _x("circuit_outage", subject="circuit", target=("circuit",),
                         note="one ticket for the circuit, its lights attached"),
    "cabinet_outage": _x("circuit_outage", subject="cabinet", target=("cabinet",),
                         note="every circuit of the cabinet: one ticket for the cabinet"),
    "concentrator_offline": _x("concentrator_offline", subject="concentrator", target=("concentrator",)),
    "end_of_life": _x("end_of_life"),
    "energy_anomaly": _x("energy_anomaly", note="needs 14 nights of baseline"),
    # elevators
    "trapped": _x("trapped@P0", target=_EL,
                  note="a P0 ticket of its own at once, even during a building power loss (linked by parent_id)"),
    "alarm_button": Expectation((ExpectedTicket("trapped", "P0", rule="trapped@alarm"),), target=_EL,
                                note="alarm held while stopped: trapped after 10 s"),
    "stopped_outside_zone": _x("stopped_outside_zone", target=_EL),
    "door_open_moving": _x("door_open_moving@P0", target=_EL),
    "overspeed": _x("overspeed@P0", target=_EL),
    "overtravel": _x("overtravel@P0", target=_EL),
    "safety_circuit_open": _x("safety_circuit_open", target=_EL),
    "door_fault": _x("door_fault", target=_EL),
    "power_loss": _x("power_loss", target=_EL),
    "building_power_loss": _x("building_power_loss", subject="building", target=("building",),
                              note="one ticket for the building, its elevators' power_loss/offline attached"),
    "out_of_service": _x("out_of_service", target=_EL),
    # chargers
    "ground_failure": _x("ground_failure@P0", target=_CP),
    "power_switch_failure": _x("power_switch_failure@P0", target=_CP),
    # The enclosure heats with a time constant of ~400 s: temp_c (and the OCPP HighTemperature code)
    # passes 75 °C within ~10 min of the fault; the detector fires when it does.
    "high_temperature": Expectation((ExpectedTicket("high_temperature", within_s=600),), target=_CP,
                                    note="the pile heats over minutes; detected as temp_c passes 75 °C"),
    "over_current": _x("over_current", target=_CP),
    "over_voltage": _x("over_voltage", target=_CP),
    "under_voltage": _x("under_voltage", target=_CP),
    "faulted": _x("faulted", target=_CP),
    "charging_no_current": _x("charging_no_current", target=_CP),
    "stuck_session": _x("stuck_session", target=_CP),
    "meter_failure": _x("meter_failure", target=_CP),
    "reader_failure": _x("reader_failure", target=_CP),
    "ev_comm_error": _x(target=_CP, note="the car's problem: one error opens nothing"),
    "ev_comm_errors": _x("ev_comm_errors", target=_CP, note="errors in 3 sessions within 24 h"),
    # every kind
    "offline": _x("offline", target=_ANY, note="none on a switched circuit during its scheduled off time"),
    "offline_hard": _x("offline", target=_ANY, note="last will; none on a switched circuit during its scheduled off time"),
    # derived
    "flapping": _x("intermittent", target=_ANY, tolerated=tuple(c for c in FAULTS if c != "intermittent"),
                   note="a device that fires and clears again and again: one intermittent ticket"),
}


def _check_tables() -> None:
    """Every catalog code has an injection that must open it, and a delay rule."""
    no_injection = set(FAULTS) - {t.code for e in EXPECTED.values() for t in e.tickets}
    no_rule = set(FAULTS) - set(RULES)
    if no_injection or no_rule:
        raise RuntimeError(f"truth tables incomplete: no injection {sorted(no_injection)}, no rule {sorted(no_rule)}")


_check_tables()


@dataclass(frozen=True, slots=True)
class Resolved:
    """An injection's expectation made concrete for one site: subject, devices and tickets."""

    subject: dict[str, str]
    devices: list[str]
    expected: list[ExpectedTicket]
    tolerated: list[str] = field(default_factory=list)
    note: str | None = None


def expectation_for(site: Site, target_type: str, target_id: str, fault: str, at: datetime) -> Resolved:
    """The subject, devices and tickets an injection on ``site`` must produce, from the site's layout.

    An offline light on a switched circuit during its scheduled off time opens nothing; a
    ``circuit_outage`` of every circuit of a cabinet is the cabinet's ticket.
    """
    from linli.astro import lights_scheduled_on

    expectation = _expectation(fault)
    devices: list[str]
    subject = {"type": target_type, "id": target_id}
    if target_type == "device":
        device = site.devices.get(target_id)
        if device is None:
            raise TruthError(f"{fault}: no device {target_id!r} in site {site.id!r}")
        devices = [device.id]
        if fault in ("offline", "offline_hard") and device.kind == "streetlight" and device.circuit:
            circuit = site.circuits.get(device.circuit)
            if circuit is not None and circuit.switched and not lights_scheduled_on(site, at):
                return Resolved(subject, devices, [], [], "switched circuit in its scheduled off time: nothing expected")
    else:
        devices = _devices_under(site, target_type, target_id)
        if target_type == "circuit" and expectation.subject == "circuit":
            cabinet = next((c for c in site.spec.cabinets if any(k.id == target_id for k in c.circuits)), None)
            if cabinet is not None and len(cabinet.circuits) == 1:  # all its circuits go: the cabinet's ticket
                subject = {"type": "cabinet", "id": cabinet.id}
    return Resolved(subject, devices, list(expectation.tickets), list(expectation.tolerated), expectation.note or None)


def _devices_under(site: Site, target_type: str, target_id: str) -> list[str]:
    devices = site.spec.devices
    if target_type == "circuit":
        return [d.id for d in devices if d.circuit == target_id and not d.retired]
    if target_type == "cabinet":
        cabinet = next((c for c in site.spec.cabinets if c.id == target_id), None)
        if cabinet is None:
            raise TruthError(f"no cabinet {target_id!r} in site {site.id!r}")
        circuits = {c.id for c in cabinet.circuits}
        return [d.id for d in devices if d.circuit in circuits and not d.retired]
    if target_type == "building":
        return [d.id for d in devices if d.building == target_id and not d.retired]
    if target_type == "concentrator":
        return [d.id for d in devices if d.concentrator == target_id and not d.retired]
    raise TruthError(f"unknown target type {target_type!r}")


def _expectation(fault: str) -> Expectation:
    try:
        return EXPECTED[fault]
    except KeyError:
        raise TruthError(f"no expectation for injected fault {fault!r}; pass expected=[codes] explicitly") from None


# ---------------------------------------------------------------- the writer


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        raise TruthError("ground-truth times must be timezone-aware")
    return value.isoformat()


def _subject(value: Mapping[str, str] | None, default_type: str, default_id: str) -> dict[str, str]:
    if value is None:
        return {"type": default_type, "id": default_id}
    try:
        subject = {"type": str(value["type"]), "id": str(value["id"])}
    except KeyError as exc:
        raise TruthError(f"a subject needs 'type' and 'id', missing {exc}") from None
    if subject["type"] not in SUBJECT_TYPES:
        raise TruthError(f"subject type {subject['type']!r} is not one of {', '.join(SUBJECT_TYPES)}")
    return subject


class GroundTruthWriter:
    """Append-only JSON Lines ground truth, one flushed line per record; thread-safe.

    ``GroundTruthWriter(path, seed=.., sites=[..], scenario=.., speed=.., started_at=..)`` writes
    the ``run`` header at once. Then :meth:`injected` / :meth:`cleared` per fault and
    :meth:`close` at the end (also a context manager). Pass ``site_objects`` to let it work out
    subjects and devices of injections from the site layout (:func:`expectation_for`).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        seed: int | None = None,
        sites: Sequence[str] = (),
        scenario: str | None = None,
        speed: float = 1.0,
        started_at: datetime | None = None,
        interval_s: float | None = None,
        site_objects: Iterable[Site] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seq = 0
        self._open: dict[tuple[str, str, str, str], list[int]] = {}
        self._sites = {s.id: s for s in site_objects}
        try:
            self._file: IO[str] | None = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise TruthError(f"cannot write the ground truth to {self.path}: {exc.strerror or exc}") from None
        now = datetime.now(UTC)
        header: dict[str, Any] = {
            "type": "run",
            "version": TRUTH_VERSION,
            "seed": seed,
            "sites": list(sites) or list(self._sites),
            "scenario": scenario,
            "speed": speed,
            "interval_s": interval_s,
            "started_at": _iso(started_at or now),
            "wall_started_at": now.isoformat(),
        }
        if extra:
            header.update({k: v for k, v in extra.items() if k not in header})
        self._write(header)

    # -------------------------------------------------------- the stable interface

    def injected(  # noqa: PLR0917 - the runtime's stable call, positional by design
        self,
        site: str,
        target_type: str,
        target_id: str,
        fault: str,
        at: datetime,
        until: datetime | None = None,
        expected: Sequence[str | ExpectedTicket | Mapping[str, Any]] | None = None,
        subject: Mapping[str, str] | None = None,
        devices: Sequence[str] | None = None,
        note: str | None = None,
        *,
        tolerated: Sequence[str] | None = None,
        interval_s: float | None = None,
    ) -> int:
        """Record that ``fault`` starts on ``target`` at ``at`` (simulated clock); returns its ``seq``.

        Leave ``expected``/``subject``/``devices`` out to take them from :data:`EXPECTED` (and the
        site's layout when the writer knows the site); ``expected=[]`` says nothing must open.
        """
        if target_type not in SUBJECT_TYPES:
            raise TruthError(f"target type {target_type!r} is not one of {', '.join(SUBJECT_TYPES)}")
        if until is not None and until <= at:
            raise TruthError(f"{fault}:{target_id}: until must be after at")
        site_object = self._sites.get(site)
        resolved: Resolved | None = None
        if site_object is not None and fault in EXPECTED:
            resolved = expectation_for(site_object, target_type, target_id, fault, at)
        if expected is None:
            items = resolved.expected if resolved is not None else list(_expectation(fault).tickets)
        else:
            items = [ExpectedTicket.parse(e) for e in expected]
        if subject is None and resolved is not None:
            subject = resolved.subject
        subject_value = _subject(subject, target_type, target_id)
        if devices is None:
            devices = resolved.devices if resolved is not None else ([target_id] if target_type == "device" else [])
        if tolerated is None and resolved is not None:
            tolerated = resolved.tolerated
        elif tolerated is None:
            tolerated = list(EXPECTED[fault].tolerated) if fault in EXPECTED else []
        if note is None and resolved is not None and resolved.note and not items:
            note = resolved.note
        with self._lock:
            self._seq += 1
            seq = self._seq
            self._open.setdefault((site, target_type, target_id, fault), []).append(seq)
            self._write_locked({
                "type": "injected",
                "seq": seq,
                "site": site,
                "target": {"type": target_type, "id": target_id},
                "fault": fault,
                "at": _iso(at),
                "until": None if until is None else _iso(until),
                "subject": subject_value,
                "devices": list(devices),
                "expected": [item.to_json() for item in items],
                "tolerated": list(tolerated),
                "interval_s": interval_s,
                "note": note,
            })
        return seq

    def cleared(self, site: str, target_type: str, target_id: str, fault: str, at: datetime) -> int | None:
        """Record that the fault ends at ``at``; returns the ``seq`` it ends (None: none was open)."""
        with self._lock:
            open_seqs = self._open.get((site, target_type, target_id, fault))
            ref = open_seqs.pop(0) if open_seqs else None
            self._write_locked({
                "type": "cleared",
                "ref": ref,
                "site": site,
                "target": {"type": target_type, "id": target_id},
                "fault": fault,
                "at": _iso(at),
            })
        return ref

    def close(self, at: datetime | None = None) -> None:
        """Write the ``end`` line and close the file; idempotent."""
        with self._lock:
            if self._file is None:
                return
            self._write_locked({"type": "end", "at": _iso(at or datetime.now(UTC))})
            self._file.close()
            self._file = None

    # -------------------------------------------------------- adapters for firmware_sim.faults.Injection

    def record_start(
        self,
        injection: Injection,
        at: datetime,
        sim_time: datetime | None = None,
        expected_codes: Sequence[str | ExpectedTicket] | None = None,
        subject: Mapping[str, str] | None = None,
        *,
        site: str | None = None,
    ) -> int:
        """An :class:`~firmware_sim.faults.Injection` (a device fault) starts; ``sim_time`` wins over ``at``."""
        when = sim_time or at
        until = None if injection.duration is None else when + injection.duration
        return self.injected(
            _site_of(injection, site), "device", injection.device_id, _fault_name(injection), when, until,
            expected=expected_codes, subject=subject,
        )

    def record_end(
        self, injection: Injection, at: datetime, sim_time: datetime | None = None, *, site: str | None = None
    ) -> int | None:
        """The injection ends; ``sim_time`` wins over ``at``."""
        return self.cleared(_site_of(injection, site), "device", injection.device_id, _fault_name(injection), sim_time or at)

    # -------------------------------------------------------- plumbing

    def __enter__(self) -> GroundTruthWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, record: Mapping[str, Any]) -> None:
        with self._lock:
            self._write_locked(record)

    def _write_locked(self, record: Mapping[str, Any]) -> None:
        if self._file is None:
            raise TruthError(f"the ground truth {self.path} is closed")
        self._file.write(json.dumps(record, ensure_ascii=False, separators=(", ", ": ")) + "\n")
        self._file.flush()


def _fault_name(injection: Injection) -> str:
    return "offline_hard" if injection.hard else str(injection.fault)


def _site_of(injection: Injection, site: str | None) -> str:
    value = site or injection.site
    if not value:
        raise TruthError(f"{injection.fault}:{injection.device_id}: which site? pass site=")
    return value
