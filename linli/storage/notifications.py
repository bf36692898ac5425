"""The notification outbox: one row per ticket notice, channel and recipient, sent by the dispatcher.

Rows are written in the same transaction as the ticket change they announce (nothing is lost if
the process stops before sending) and sent later by ``linli.notify.dispatcher``; each row keeps
its attempts, the next attempt's time and the last error, so a retry survives a restart.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from linli.storage.models import Base


class NotificationStatus(StrEnum):
    PENDING = "pending"  # waiting for its first or next attempt
    SENT = "sent"
    FAILED = "failed"  # given up: a permanent error or the last allowed attempt


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    site: Mapped[str] = mapped_column(String(32))
    team: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(32))  # the channel's name within the team
    channel_type: Mapped[str] = mapped_column(String(16))  # wecom | dingtalk | feishu | sms | webhook | email
    recipient: Mapped[str] = mapped_column(String(255))  # a phone, an address, or "" for a group robot
    notice: Mapped[str] = mapped_column(String(32))  # opened | escalated | resolved ...
    # Unique per ticket, notice occurrence, channel and recipient: enqueueing the same notice twice adds nothing.
    key: Mapped[str] = mapped_column(String(255), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)  # plain text
    markdown: Mapped[str] = mapped_column(Text)
    short: Mapped[str] = mapped_column(Text)  # for SMS
    link: Mapped[str] = mapped_column(String(500))
    lang: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)  # secrets redacted
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]

    __table_args__ = (Index("ix_notifications_due", "status", "next_attempt_at"),)
