"""Persistence of tickets, users, dead letters and live device state (SQLAlchemy 2).

SQLite by default, PostgreSQL by URL; the schema is owned by the Alembic migrations in
``linli/migrations``. Gateway and API share this package, never each other's code.
"""

from linli.storage.commands import DeviceCommandRow
from linli.storage.db import Database, migrate
from linli.storage.leases import SiteLease
from linli.storage.maintenance import MaintenanceWindowRow
from linli.storage.models import (
    Base,
    DeadLetter,
    DeviceCredential,
    DeviceEngineState,
    DeviceLifecycleEvent,
    DeviceState,
    ResidentReport,
    TicketEventRow,
    TicketRow,
    User,
)
from linli.storage.notifications import Notification, NotificationStatus
from linli.storage.published_reports import PublishedMonthlyReport

__all__ = [
    "Base", "Database", "DeadLetter", "DeviceCommandRow", "DeviceCredential", "DeviceEngineState",
    "DeviceLifecycleEvent", "DeviceState",
    "MaintenanceWindowRow", "Notification", "NotificationStatus", "PublishedMonthlyReport", "ResidentReport",
    "SiteLease", "TicketEventRow", "TicketRow", "User", "migrate",
]
