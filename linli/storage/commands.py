"""Commands to devices and their outcomes: the audit trail of device contract `cmd` / `cmd/ack`.

A command is stored as `sent` when it is published (by the API for a person, by the gateway for an
automatic action). The gateway records the device's `cmd/ack` in the same transaction as the rest
of its batch (``record_ack``): `acked` (ok), `failed` (the device said no). A command that got no
answer before `expires_at` reads as `expired` (``status_at``); an answer arriving later is kept but
does not change that.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import Index, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from linli.storage.models import Base

SENT: Final = "sent"
ACKED: Final = "acked"
FAILED: Final = "failed"
EXPIRED: Final = "expired"
STATUSES: Final = (SENT, ACKED, FAILED, EXPIRED)
ERROR_CHARS = 500  # of a device's error text


class DeviceCommandRow(Base):
    __tablename__ = "device_commands"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the command id the device echoes
    site: Mapped[str] = mapped_column(String(32))
    device_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16))  # sent | acked | failed | expired (as stored)
    requested_by: Mapped[str] = mapped_column(String(64))  # a username, or "system" (automatic actions)
    reason: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_device_commands_device", "site", "device_id", "sent_at"),)


def status_at(row: DeviceCommandRow, now: datetime) -> str:
    """The command's status at `now`: a `sent` one past its expiry without an answer is `expired`."""
    if row.status == SENT and now >= row.expires_at:
        return EXPIRED
    return row.status


def record_sent(
    session: Session, *, command_id: str, site: str, device_id: str, kind: str, action: str,
    params: dict[str, Any], requested_by: str, sent_at: datetime, expires_at: datetime, reason: str | None = None,
    status: str = SENT, error: str | None = None,
) -> DeviceCommandRow:
    row = DeviceCommandRow(
        id=command_id, site=site, device_id=device_id, kind=kind, action=action, params=dict(params),
        status=status, requested_by=requested_by, reason=reason, sent_at=sent_at, expires_at=expires_at,
        answered_at=None, error=error,
    )
    session.add(row)
    session.flush()
    return row


def record_ack(
    session: Session, *, site: str, device_id: str, command_id: str, ok: bool, error: str | None, at: datetime
) -> DeviceCommandRow | None:
    """Record a device's answer. None when the id is not a command of that device (ignored: a device
    cannot answer for another's command), or when the command was answered already (a duplicate)."""
    row = session.get(DeviceCommandRow, command_id)
    if row is None or row.site != site or row.device_id != device_id or row.answered_at is not None:
        return None
    row.answered_at = at
    if row.status == SENT and at < row.expires_at:
        row.status = ACKED if ok else FAILED
        row.error = (error or "the device refused the command")[:ERROR_CHARS] if not ok else None
    else:
        row.status = EXPIRED  # it came too late: the device should have ignored the command
        row.error = f"answered after expiry ({'ok' if ok else 'refused'}){': ' + error if error else ''}"[:ERROR_CHARS]
    return row


def commands_of(session: Session, site: str, device_id: str, *, limit: int, offset: int) -> list[DeviceCommandRow]:
    return list(session.scalars(
        select(DeviceCommandRow).where(DeviceCommandRow.site == site, DeviceCommandRow.device_id == device_id)
        .order_by(DeviceCommandRow.sent_at.desc(), DeviceCommandRow.id).limit(limit).offset(offset)
    ))


__all__ = ["ACKED", "EXPIRED", "FAILED", "SENT", "STATUSES", "DeviceCommandRow", "commands_of", "record_ack",
           "record_sent", "status_at"]
