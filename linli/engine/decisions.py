"""What the engine decides; the ticket service makes them durable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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


@dataclass(frozen=True, slots=True)
class FaultCleared:
    site: str
    subject: Subject
    fault: str
    at: datetime


Decision = FaultRaised | FaultCleared
