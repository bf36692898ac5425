"""What the engine decides; the ticket service makes them durable and the gateway acts on them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from linli.catalog import Severity
from linli.tickets import Subject


@dataclass(frozen=True, slots=True)
class FaultRaised:
    site: str
    subject: Subject
    fault: str
    severity: Severity
    kind: str  # the device kind the fault concerns (routing of `offline` depends on it)
    device_ids: tuple[str, ...]
    at: datetime
    detail: str
    # A correlated parent this fault happened under (a trapped passenger during the building's power
    # loss): the ticket is opened at once and linked to the parent's ticket.
    parent: tuple[Subject, str] | None = None


@dataclass(frozen=True, slots=True)
class FaultCleared:
    site: str
    subject: Subject
    fault: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ChildAttached:
    """A device's own ticket, opened before its parent fault was recognised, is attached to the parent."""

    site: str
    child: Subject
    child_fault: str
    parent: Subject
    parent_fault: str
    at: datetime


@dataclass(frozen=True, slots=True)
class MemberChanged:
    """A member of a correlated parent fault lost or got back supply (or went offline, came back).

    Recorded on the parent's ticket instead of a ticket of its own.
    """

    site: str
    parent: Subject
    parent_fault: str
    device_id: str
    fault: str  # the child's own fault: supply loss, power_loss, offline
    active: bool
    at: datetime
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SoakEnded:
    """The soak after a repair ended: verified by telemetry, the fault came back (reopen), or too
    few healthy samples to tell (silence never verifies: the soak starts again, noted on the ticket)."""

    site: str
    ticket_id: int
    outcome: str  # linli.engine.verification.SoakOutcome
    at: datetime
    detail: str


@dataclass(frozen=True, slots=True)
class DeviceCommand:
    """An automatic action: a command the gateway publishes to a device (and audits)."""

    site: str
    device_id: str
    action: str
    args: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


Decision = FaultRaised | FaultCleared | ChildAttached | MemberChanged | SoakEnded | DeviceCommand
