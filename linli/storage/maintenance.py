"""Planned maintenance windows: staff silence a device, a circuit or a building while they work on it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from linli.engine.engine import MaintenanceWindow
from linli.storage.models import Base
from linli.tickets import Subject


class MaintenanceWindowRow(Base):
    __tablename__ = "maintenance_windows"
    __table_args__ = (Index("ix_maintenance_windows_site_ends", "site", "ends_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(32))
    subject_type: Mapped[str] = mapped_column(String(16))  # device | circuit | cabinet | building
    subject_id: Mapped[str] = mapped_column(String(32))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


def current_windows(session: Session, sites: list[str], now: datetime) -> list[MaintenanceWindow]:
    """Windows of `sites` that have not ended (the engine also needs those about to start)."""
    rows = session.scalars(select(MaintenanceWindowRow).where(
        MaintenanceWindowRow.site.in_(sites), MaintenanceWindowRow.ends_at > now))
    return [MaintenanceWindow(r.site, Subject(r.subject_type, r.subject_id), r.starts_at, r.ends_at, r.reason)
            for r in rows]
