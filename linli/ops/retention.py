"""`linli purge-personal-data`: residents' contact details and photos are removed once they are
no longer needed.

A resident report's personal data (its ``contact`` and its photo files) is removed when

- its ticket was closed or cancelled more than the retention period ago (default 180 days,
  ``LINLI_PERSONAL_DATA_DAYS`` or ``--days``), or
- it never became a ticket and was made more than the retention period ago.

An open ticket's reports are kept whatever their age: the crew may still need to call back.
The report itself stays, with its category, description and site, for the monthly statistics;
``personal_data_removed_at`` records when the personal data went. Only files inside the uploads
directory are ever deleted: a stored path that leads elsewhere is refused, left alone and reported,
and that report is tried again on the next run. Running it twice changes nothing the second time.

Run it daily (cron or a systemd timer); the API and the gateway can keep running meanwhile.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from linli.storage.models import ResidentReport, TicketRow
from linli.tickets import ENDED

log = logging.getLogger("linli.retention")

DEFAULT_RETENTION = timedelta(days=180)


@dataclass
class PurgeResult:
    reports: list[str] = field(default_factory=list)  # ids of reports whose personal data was removed now
    files_deleted: int = 0
    files_missing: int = 0  # listed but already gone
    refused: list[str] = field(default_factory=list)  # stored paths outside the uploads dir: not touched


def resolve_upload(uploads_dir: Path, stored: str) -> Path | None:
    """The file a stored photo path names, if it lies inside `uploads_dir` (relative paths are
    relative to it); None for anything that escapes it, by `..`, an absolute path or a symlink."""
    if not stored or "\x00" in stored:
        return None
    root = uploads_dir.resolve()
    candidate = Path(stored)
    target = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if target == root or not target.is_relative_to(root):
        return None
    return target


def _remove_empty_parents(path: Path, root: Path) -> None:
    parent = path.parent
    while parent != root and parent.is_relative_to(root):
        try:
            parent.rmdir()  # only if empty
        except OSError:
            return
        parent = parent.parent


def due_reports(session: Session, cutoff: datetime) -> list[ResidentReport]:
    """Reports still holding personal data whose ticket ended, or which were made, before `cutoff`."""
    ended = [status.value for status in ENDED]
    return list(session.scalars(
        select(ResidentReport)
        .outerjoin(TicketRow, ResidentReport.ticket_id == TicketRow.id)
        .where(
            ResidentReport.personal_data_removed_at.is_(None),
            or_(
                and_(ResidentReport.ticket_id.is_not(None), TicketRow.status.in_(ended), TicketRow.closed_at < cutoff),
                and_(ResidentReport.ticket_id.is_(None), ResidentReport.created_at < cutoff),
            ),
        )
        .order_by(ResidentReport.created_at, ResidentReport.id)
    ))


def purge_personal_data(
    session: Session, uploads_dir: Path, now: datetime, retention: timedelta = DEFAULT_RETENTION
) -> PurgeResult:
    """Remove contacts and photos of the reports past `retention` (see the module's rules).

    Files are deleted first, then the rows are changed in `session`; the caller commits.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if retention < timedelta(0):
        raise ValueError("the retention period cannot be negative")
    due = due_reports(session, now - retention)
    result = PurgeResult()
    root = uploads_dir.resolve()
    for report in due:
        kept: list[str] = []
        for stored in report.photos or []:
            path = resolve_upload(root, stored)
            if path is None:
                log.error("report %s: photo path %r is outside %s; not deleted", report.id, stored, root)
                result.refused.append(stored)
                kept.append(stored)
                continue
            if path.is_file():
                path.unlink()
                result.files_deleted += 1
                _remove_empty_parents(path, root)
            elif path.exists():
                log.error("report %s: %s is not a file; not deleted", report.id, path)
                result.refused.append(stored)
                kept.append(stored)
            else:
                result.files_missing += 1
        report.contact = None
        report.photos = kept
        if not kept:  # removed for good; a refused path keeps the report due, and reported, until fixed
            report.personal_data_removed_at = now
            result.reports.append(report.id)
    session.flush()
    return result


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    from linli.settings import Settings
    from linli.storage import Database, migrate

    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"linli purge-personal-data: bad configuration: {exc}", file=sys.stderr)
        return 2
    default_days = int(getattr(settings, "personal_data_days", DEFAULT_RETENTION.days))
    parser = argparse.ArgumentParser(
        prog="linli purge-personal-data",
        description="Remove residents' contact details and photos from reports whose ticket was closed (or that "
                    "never became a ticket) more than --days ago. Reports stay, without personal data, for statistics.",
    )
    parser.add_argument("--days", type=int, default=default_days,
                        help=f"retention period in days (default: LINLI_PERSONAL_DATA_DAYS, now {default_days})")
    parser.add_argument("--dry-run", action="store_true", help="say what would be removed, change nothing")
    args = parser.parse_args(argv)
    if args.days < 1:
        print("linli purge-personal-data: --days must be at least 1", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    migrate(settings.db_url)
    database = Database(settings.db_url)
    uploads = Path(settings.data_dir) / "uploads"
    try:
        if args.dry_run:
            with database.sessions() as session:
                due = [r.id for r in due_reports(session, datetime.now(tz=UTC) - timedelta(days=args.days))]
            print(f"would remove the personal data of {len(due)} reports: {', '.join(due) or '-'}")
            return 0
        with database.session() as session:
            result = purge_personal_data(session, uploads, datetime.now(tz=UTC), timedelta(days=args.days))
    finally:
        database.close()
    print(f"removed the personal data of {len(result.reports)} reports ({result.files_deleted} photo files deleted, "
          f"{result.files_missing} already gone); retention {args.days} days")
    if result.refused:
        print(f"refused {len(result.refused)} photo paths outside {uploads.resolve()} (not deleted; those reports "
              f"stay due): {', '.join(result.refused[:10])}", file=sys.stderr)
        return 1
    return 0

