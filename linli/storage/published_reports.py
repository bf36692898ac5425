"""Published monthly reports (migration 0009): the copy the three-party meeting saw, frozen."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from linli.storage.models import Base


class PublishedMonthlyReport(Base):
    """One site's month as published: later changes to its tickets show in the next month."""

    __tablename__ = "published_monthly_reports"

    site: Mapped[str] = mapped_column(String(32), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)  # YYYY-MM
    published_at: Mapped[datetime]
    published_by: Mapped[str] = mapped_column(String(64))
    body: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the report's JSON as published
