"""Correlation through the site's topology: one circuit outage, not twelve dark lights.

Pure code. A device's supply loss or silence ("child faults") waits a short grouping window
before it is dispatched on its own, so that a parent fault (a circuit or cabinet losing supply, a
building losing mains, a concentrator falling silent) is recognised first and its children are
attached to it instead of each getting a ticket. P0 faults never come here: they are never delayed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from linli.catalog import FAULTS
from linli.engine.decisions import ChildAttached, Decision, FaultCleared, FaultRaised, MemberChanged
from linli.site import Site
from linli.tickets import Subject

GROUP_WINDOW = timedelta(seconds=30)  # a new child fault waits this long for its parent
CORRELATE_WITHIN = timedelta(minutes=2)  # children that go down within this span belong together
MIN_CIRCUIT_LIGHTS = 3  # ≥ 3 lights, or half the lights (at least 2), of one circuit


@dataclass(slots=True)
class _Child:
    raised: FaultRaised  # what is dispatched if it turns out to be alone
    since: datetime
    dispatched: bool = False  # its own ticket exists
    parent: tuple[Subject, str] | None = None


@dataclass(slots=True)
class _Parent:
    fault: str
    members: set[str] = field(default_factory=set)


class Correlator:
    """Child faults of one site in, decisions out (held, dispatched alone, or attached to a parent)."""

    def __init__(self, site: Site, *, window: timedelta = GROUP_WINDOW, within: timedelta = CORRELATE_WITHIN) -> None:
        self._window, self._within = window, within
        self._down: dict[tuple[str, str], _Child] = {}  # (device, child fault) -> child
        self._parents: dict[Subject, _Parent] = {}
        self.use_site(site)

    def use_site(self, site: Site) -> None:
        self._site = site
        lights: dict[Subject, set[str]] = {}
        elevators: dict[Subject, set[str]] = {}
        children: dict[Subject, set[str]] = {}
        for device in site.devices.values():
            if device.kind == "streetlight" and device.circuit:
                lights.setdefault(Subject("circuit", device.circuit), set()).add(device.id)
                cabinet = site.cabinet_of_circuit[device.circuit]
                lights.setdefault(Subject("cabinet", cabinet), set()).add(device.id)
            if device.kind == "elevator" and device.building:
                elevators.setdefault(Subject("building", device.building), set()).add(device.id)
            if device.concentrator:
                children.setdefault(Subject("concentrator", device.concentrator), set()).add(device.id)
        self._groups = {**lights, **elevators, **children}
        self._circuits_of_cabinet = {
            Subject("cabinet", cab.id): [Subject("circuit", c.id) for c in cab.circuits] for cab in site.spec.cabinets
        }
        self._of_device: dict[str, list[Subject]] = {}
        for group, members in self._groups.items():
            for device_id in members:
                self._of_device.setdefault(device_id, []).append(group)

    # ------------------------------------------------------------ queries

    def parent_of(self, device_id: str) -> tuple[Subject, str] | None:
        """The active parent fault a device belongs to (the most specific), if any."""
        for group in self._of_device.get(device_id, ()):
            parent = self._parents.get(group)
            if parent is not None and group.type != "cabinet":
                return group, parent.fault
        for group in self._of_device.get(device_id, ()):
            parent = self._parents.get(group)
            if parent is not None:
                return group, parent.fault
        return None

    def pending(self) -> int:
        return sum(1 for child in self._down.values() if not child.dispatched and child.parent is None)

    # ------------------------------------------------------------ inputs

    def parent_raised(self, raised: FaultRaised) -> list[Decision]:
        """A parent fault detected directly (a concentrator's silence): its children attach to it."""
        decisions: list[Decision] = [raised]
        parent = self._parents[raised.subject] = _Parent(raised.fault, set(raised.device_ids))
        for (device_id, _fault), child in self._down.items():
            if device_id in self._groups.get(raised.subject, ()):
                decisions.extend(self._attach(child, raised.subject, parent, raised.at))
        return decisions

    def parent_cleared(self, subject: Subject, at: datetime) -> list[Decision]:
        parent = self._parents.pop(subject, None)
        return [FaultCleared(self._site.id, subject, parent.fault, at)] if parent else []

    def child_raised(self, raised: FaultRaised, child_fault: str) -> list[Decision]:
        """A device's supply loss (`child_fault` "supply_loss"), power loss or silence."""
        device_id = raised.subject.id
        key = (device_id, child_fault)
        if key in self._down:
            return []
        child = self._down[key] = _Child(raised, raised.at)
        found = self.parent_of(device_id)
        if found is not None:
            subject, _fault = found
            return self._attach(child, subject, self._parents[subject], raised.at)
        return self._evaluate(device_id, raised.at)

    def child_cleared(self, device_id: str, child_fault: str, own_fault: str, at: datetime) -> list[Decision]:
        child = self._down.pop((device_id, child_fault), None)
        if child is None:
            return []
        decisions: list[Decision] = []
        if child.parent is not None:
            subject, fault = child.parent
            decisions.append(MemberChanged(self._site.id, subject, fault, device_id, own_fault, False, at, "恢复"))
            decisions.extend(self._maybe_clear_parent(subject, at))
        if child.dispatched:
            decisions.append(FaultCleared(self._site.id, child.raised.subject, own_fault, at))
        return decisions

    def tick(self, now: datetime) -> list[Decision]:
        """Children whose grouping window ran out without a parent are dispatched on their own."""
        decisions: list[Decision] = []
        for child in self._down.values():
            if not child.dispatched and child.parent is None and now - child.since >= self._window:
                child.dispatched = True
                decisions.append(child.raised)
        return decisions

    # ------------------------------------------------------------ grouping

    def _evaluate(self, device_id: str, now: datetime) -> list[Decision]:
        decisions: list[Decision] = []
        for group in self._of_device.get(device_id, ()):
            if group in self._parents or group.type == "concentrator":
                continue  # a concentrator's fault is its own silence, not its children's
            down = self._down_in(group, now)
            if not self._qualifies(group, down, now):
                continue
            target = group
            if group.type == "circuit":  # the whole cabinet gone: one ticket for the cabinet instead
                cabinet = Subject("cabinet", self._site.cabinet_of_circuit[group.id])
                if self._qualifies(cabinet, self._down_in(cabinet, now), now):
                    if cabinet in self._parents:
                        continue
                    target, down = cabinet, self._down_in(cabinet, now)
            decisions.extend(self._raise_parent(target, down, now))
        return decisions

    def _down_in(self, group: Subject, now: datetime) -> set[str]:
        members = self._groups.get(group, set())
        return {
            device_id for (device_id, _fault), child in self._down.items()
            if device_id in members
            and (now - child.since <= self._within or (child.parent is not None and child.parent[0] == group))
        }

    def _qualifies(self, group: Subject, down: set[str], now: datetime) -> bool:
        members = self._groups.get(group, set())
        if group.type == "circuit":
            return len(down) >= MIN_CIRCUIT_LIGHTS or (len(down) >= 2 and 2 * len(down) >= len(members))
        if group.type == "cabinet":
            circuits = self._circuits_of_cabinet.get(group, [])
            return len(circuits) >= 2 and all(
                c in self._parents or self._qualifies(c, self._down_in(c, now), now) for c in circuits
            )
        if group.type == "building":
            return len(members) >= 2 and down == members
        return False

    def _raise_parent(self, group: Subject, down: set[str], now: datetime) -> list[Decision]:
        fault = "building_power_loss" if group.type == "building" else "circuit_outage"
        kind = "elevator" if group.type == "building" else "streetlight"
        members = sorted(down)
        what = {"circuit": "回路", "cabinet": "配电箱", "building": "楼栋"}[group.type]
        raised = FaultRaised(
            self._site.id, group, fault, FAULTS[fault].severity, kind,
            tuple(members), now,
            f"{what} {group.id}: {len(members)} 台设备同时失电或离线 ({', '.join(members)})",
        )
        decisions: list[Decision] = [raised]
        parent = self._parents[group] = _Parent(fault, set(members))
        # A circuit's own outage ticket, raised before the whole cabinet went, joins the cabinet's.
        if group.type == "cabinet":
            for circuit in self._circuits_of_cabinet.get(group, []):
                if circuit in self._parents:
                    self._parents.pop(circuit)
                    decisions.append(ChildAttached(self._site.id, circuit, "circuit_outage", group, fault, now))
        for (device_id, _f), child in self._down.items():
            if device_id in self._groups[group]:
                decisions.extend(self._attach(child, group, parent, now))
        return decisions

    def _attach(self, child: _Child, subject: Subject, parent: _Parent, at: datetime) -> list[Decision]:
        if child.parent is not None and child.parent[0] == subject:
            return []
        child.parent = (subject, parent.fault)
        device_id = child.raised.subject.id
        parent.members.add(device_id)
        decisions: list[Decision] = [MemberChanged(
            self._site.id, subject, parent.fault, device_id, child.raised.fault, True, at, child.raised.detail,
        )]
        if child.dispatched:
            decisions.append(ChildAttached(self._site.id, child.raised.subject, child.raised.fault, subject, parent.fault, at))
        return decisions

    def _maybe_clear_parent(self, subject: Subject, at: datetime) -> list[Decision]:
        """A correlated parent clears when none of its members is still down."""
        parent = self._parents.get(subject)
        if parent is None or subject.type == "concentrator":
            return []
        if any(child.parent is not None and child.parent[0] == subject for child in self._down.values()):
            return []
        return self.parent_cleared(subject, at)
