"""Which gateway serves each site: a lease row per site in the shared database (migration 0004).

A site is never split across gateways, so exactly one process may hold a site's lease at a time;
``gateway.lease`` takes and renews it with compare-and-set updates of this row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from linli.storage.models import Base


class SiteLease(Base):
    __tablename__ = "site_leases"

    site: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))  # the gateway's id; "" before anyone took it
    epoch: Mapped[int] = mapped_column(Integer)  # fencing counter: +1 at every acquisition
    expires_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
    acquired_at: Mapped[datetime]
