"""ORM tables. A ticket row is the projection of its events (see ``linli.tickets``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Boolean, DateTime, Dialect, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every database: SQLite keeps no offset, so store UTC and restore it."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[str]: JSON, datetime: UTCDateTime}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))  # admin | manager | technician | grid_officer | viewer
    full_name: Mapped[str | None] = mapped_column(String(128))
    teams: Mapped[list[str]] = mapped_column(default=list)
    sites: Mapped[list[str]] = mapped_column(default=list)  # the sites this account may see
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class TicketRow(Base):
    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(String(32))
    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str | None] = mapped_column(String(32))
    device_ids: Mapped[list[str]] = mapped_column(default=list)
    fault: Mapped[str] = mapped_column(String(64))
    title: Mapped[str | None] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(2))
    teams: Mapped[list[str]] = mapped_column(default=list)
    acks: Mapped[dict[str, Any]] = mapped_column(default=dict)
    assignee: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    # True while the ticket is the one open ticket of its subject and fault (a partial unique index keeps it so)
    active: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime]
    ack_due_at: Mapped[datetime]
    start_due_at: Mapped[datetime | None]
    resolve_due_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    signal_cleared_at: Mapped[datetime | None]
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)  # bumped on every event: optimistic concurrency
    updated_at: Mapped[datetime]

    events: Mapped[list[TicketEventRow]] = relationship(
        back_populates="ticket", order_by="TicketEventRow.id", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index(
            "uq_tickets_one_active",
            "site", "subject_type", "subject_id", "fault",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
        Index("ix_tickets_site_status", "site", "status"),
        Index("ix_tickets_device", "site", "device_id"),
    )


class TicketEventRow(Base):
    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    ticket: Mapped[TicketRow] = relationship(back_populates="events")


class DeadLetter(Base):
    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(index=True)
    reason: Mapped[str] = mapped_column(String(32), index=True)
    detail: Mapped[str] = mapped_column(Text)
    topic: Mapped[str] = mapped_column(Text)
    site: Mapped[str | None] = mapped_column(String(32))
    device_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class DeviceState(Base):
    """The live state of one device, written by the gateway as it changes, read by the API."""

    __tablename__ = "device_states"

    site: Mapped[str] = mapped_column(String(32), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    online: Mapped[bool | None] = mapped_column(Boolean)  # None: never heard of since the gateway started
    last_seen: Mapped[datetime | None]
    status: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the last retained status body
    last: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the latest telemetry values
    last_seq: Mapped[int | None] = mapped_column(Integer)
    boot: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime]


class DeviceEngineState(Base):
    """The engine's detector state of one device (seq window, lamp counters, open offline fault), written
    with its `device_states` row; a restarted gateway resumes from it."""

    __tablename__ = "device_engine_states"

    site: Mapped[str] = mapped_column(String(32), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime]


class DeviceCredential(Base):
    """A broker account issued to a device or concentrator. Only the Mosquitto hash is kept."""

    __tablename__ = "device_credentials"

    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(String(32))
    device_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))  # streetlight | elevator | charger | concentrator
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))  # Mosquitto's $7$ PBKDF2-SHA512 format
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    note: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_device_credentials_device", "site", "device_id"),)


class DeviceLifecycleEvent(Base):
    """Commissioned, controller replaced, lamp replaced, retired: a device's own history."""

    __tablename__ = "device_lifecycle_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(String(32))
    device_id: Mapped[str] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (Index("ix_device_lifecycle_device", "site", "device_id", "at"),)


class ResidentReport(Base):
    """A resident's or courier's report. Contact and photos are personal data with a retention period."""

    __tablename__ = "resident_reports"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # unguessable (secrets.token_urlsafe)
    site: Mapped[str] = mapped_column(String(32))
    device_id: Mapped[str | None] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text)
    contact: Mapped[str | None] = mapped_column(String(128))
    location: Mapped[dict[str, Any]] = mapped_column(default=dict)
    photos: Mapped[list[str]] = mapped_column(default=list)  # paths under the uploads dir
    source: Mapped[str] = mapped_column(String(16), default="resident")  # resident | grid_officer
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    created_at: Mapped[datetime]
    personal_data_removed_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_resident_reports_ticket", "ticket_id"),)
