"""Sending the outbox: what is due goes out, failures come back later, every attempt is on the ticket.

``Dispatcher.run_due(now)`` takes the pending rows whose time has come, claims each one (so two
dispatchers never send the same row), sends it through its channel and records the outcome on the
row and, as a ``notified`` event, on the ticket. A failure is tried again after 5 s, 30 s, 2 min,
then every 10 min, up to ``max_attempts``; an error that cannot get better (a wrong signing secret,
an address the receiver refuses) fails at once. A robot's rate limit (WeCom 45009, DingTalk 130101,
Feishu 9499/11232, HTTP 429) is waited out: the row and the channel's other due rows wait for the
limit's window, and a rate-limited attempt never uses up the row's attempts.

The clock is injected: tests move a ManualClock and call ``run_due``; nothing here sleeps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import httpx
from sqlalchemy import select, update

from linli.clock import Clock, SystemClock
from linli.notify.channels import (
    HTTP_TIMEOUT,
    Delivery,
    SendResult,
    SmtpFactory,
    default_smtp_factory,
    redactor_for,
    send_dingtalk,
    send_email,
    send_feishu,
    send_sms,
    send_webhook,
    send_wecom,
)
from linli.notify.config import (
    ChannelConfig,
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    MissingSecret,
    Redactor,
    SmsChannel,
    WebhookChannel,
    WeComChannel,
)
from linli.site import SiteRegistry
from linli.storage.db import Database
from linli.storage.models import TicketEventRow, TicketRow
from linli.storage.notifications import Notification, NotificationStatus
from linli.tickets import EventType

log = logging.getLogger("linli.notify")

BACKOFF: tuple[timedelta, ...] = (
    timedelta(seconds=5), timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10),
)
MAX_ATTEMPTS = 6
CLAIM_FOR = timedelta(minutes=2)  # a claimed row is not due again meanwhile, even if this process dies
BATCH = 200
SYSTEM = "system"

Result = Literal["sent", "retry", "failed", "deferred"]


class _RedactingFilter(logging.Filter):
    """httpx logs every request's URL at INFO, and a robot's URL carries its key: hide the keys we know."""

    def __init__(self) -> None:
        super().__init__()
        self.redact = Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_HTTP_LOG_FILTER = _RedactingFilter()
for _name in ("httpx",):  # httpcore logs hosts and ports only
    logging.getLogger(_name).addFilter(_HTTP_LOG_FILTER)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    backoff: tuple[timedelta, ...] = BACKOFF
    max_attempts: int = MAX_ATTEMPTS

    def delay(self, attempt: int) -> timedelta:
        """The wait after failed attempt number `attempt` (1-based); the last step repeats."""
        return self.backoff[min(attempt, len(self.backoff)) - 1]


@dataclass(frozen=True, slots=True)
class Outcome:
    notification_id: int
    ticket_id: int
    channel: str  # "site/team/name"
    channel_type: str
    recipient: str
    notice: str
    result: Result
    attempt: int
    error: str | None = None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Due:
    id: int
    ticket_id: int
    site: str
    team: str
    channel: str
    channel_type: str
    recipient: str
    notice: str
    attempts: int
    next_attempt_at: datetime
    delivery: Delivery

    @property
    def channel_path(self) -> str:
        return f"{self.site}/{self.team}/{self.channel}"


def mask_recipient(recipient: str) -> str:
    """A phone as 138****5678, an address as z***@example.cn: enough to tell them apart in a history."""
    if not recipient:
        return ""
    parts = []
    for item in recipient.split(","):
        if "@" in item:
            local, domain = item.split("@", 1)
            parts.append(f"{local[:1]}***@{domain}")
        elif len(item) >= 7:
            parts.append(f"{item[:3]}****{item[-4:]}")
        else:
            parts.append("***")
    return ",".join(parts)


class Dispatcher:
    """Sends the due rows of the outbox. One per process; safe to run beside another (rows are claimed)."""

    def __init__(
        self,
        database: Database,
        clock: Clock,
        http_client_factory: Callable[[], httpx.Client] | None = None,
        smtp_factory: SmtpFactory | None = None,
        *,
        sites: SiteRegistry | Callable[[], SiteRegistry],
        policy: RetryPolicy | None = None,
        signing_clock: Clock | None = None,
        environ: dict[str, str] | None = None,
        batch: int = BATCH,
    ) -> None:
        self._database = database
        self._clock = clock
        self._http_factory = http_client_factory or (lambda: httpx.Client(timeout=HTTP_TIMEOUT))
        self._smtp_factory = smtp_factory or default_smtp_factory
        self._sites = sites if callable(sites) else (lambda: sites)
        self.policy = policy or RetryPolicy()
        # Signatures carry the wall time the receivers check (within an hour), whatever clock schedules us.
        self._signing_clock = signing_clock or SystemClock()
        self._environ = environ
        self._batch = batch

    def run_due(self, now: datetime | None = None) -> list[Outcome]:
        """Send every row due at `now` (default: the clock's now); returns what happened to each."""
        now = now or self._clock.now()
        due = self._due(now)
        if not due:
            return []
        outcomes: list[Outcome] = []
        paused: dict[str, datetime] = {}  # channel path -> until when its other rows wait (rate limit, no answer)
        with self._http_factory() as http:
            for row in due:
                until = paused.get(row.channel_path)
                if until is not None:
                    outcomes.append(self._defer(row, until))
                    continue
                if not self._claim(row, now):
                    continue  # another dispatcher took it
                outcome, pause = self._attempt(row, http, now)
                outcomes.append(outcome)
                if pause and outcome.next_attempt_at is not None:
                    paused[row.channel_path] = outcome.next_attempt_at
        return outcomes

    # --- steps ---------------------------------------------------------------------------------

    def _due(self, now: datetime) -> list[_Due]:
        with self._database.session() as session:
            rows = session.scalars(
                select(Notification)
                .where(Notification.status == NotificationStatus.PENDING.value, Notification.next_attempt_at <= now)
                .order_by(Notification.next_attempt_at, Notification.id)
                .limit(self._batch)
            ).all()
            return [
                _Due(
                    id=r.id, ticket_id=r.ticket_id, site=r.site, team=r.team, channel=r.channel,
                    channel_type=r.channel_type, recipient=r.recipient, notice=r.notice, attempts=r.attempts,
                    next_attempt_at=r.next_attempt_at,
                    delivery=Delivery(
                        title=r.title, text=r.text, markdown=r.markdown, short=r.short, link=r.link, lang=r.lang,
                        recipient=r.recipient, notice=r.notice, ticket_id=r.ticket_id, site=r.site, team=r.team,
                    ),
                )
                for r in rows
            ]

    def _claim(self, row: _Due, now: datetime) -> bool:
        with self._database.session() as session:
            claimed = session.execute(
                update(Notification)
                .where(Notification.id == row.id, Notification.status == NotificationStatus.PENDING.value,
                       Notification.attempts == row.attempts, Notification.next_attempt_at == row.next_attempt_at)
                .values(next_attempt_at=now + CLAIM_FOR, updated_at=now)
            )
            return bool(getattr(claimed, "rowcount", 0) == 1)

    def _defer(self, row: _Due, until: datetime) -> Outcome:
        """Not tried now: its channel is rate limited or did not answer a moment ago."""
        with self._database.session() as session:
            session.execute(
                update(Notification)
                .where(Notification.id == row.id, Notification.status == NotificationStatus.PENDING.value)
                .values(next_attempt_at=max(until, row.next_attempt_at))
            )
        return Outcome(row.id, row.ticket_id, row.channel_path, row.channel_type, row.recipient, row.notice,
                       "deferred", row.attempts, None, until)

    def _channel(self, row: _Due) -> ChannelConfig | None:
        site = self._sites().get(row.site)
        if site is None:
            return None
        team = next((c for t, c in site.spec.teams.items() if t.value == row.team), None)
        if team is None:
            return None
        return next((c for c in team.channels if c.name == row.channel and c.type == row.channel_type), None)

    def _send(self, channel: ChannelConfig, row: _Due, http: httpx.Client, now: datetime) -> SendResult:
        signed_at = self._signing_clock.now()
        env = self._environ
        _HTTP_LOG_FILTER.redact.add(*redactor_for(channel, env).secrets)
        try:
            if isinstance(channel, WeComChannel):
                return send_wecom(channel, row.delivery, http, env)
            if isinstance(channel, DingTalkChannel):
                return send_dingtalk(channel, row.delivery, http, int(signed_at.timestamp() * 1000), env)
            if isinstance(channel, FeishuChannel):
                return send_feishu(channel, row.delivery, http, int(signed_at.timestamp()), env)
            if isinstance(channel, SmsChannel):
                return send_sms(channel, row.delivery, http, env)
            if isinstance(channel, WebhookChannel):
                return send_webhook(channel, row.delivery, http, int(signed_at.timestamp()), env)
            if isinstance(channel, EmailChannel):
                return send_email(channel, row.delivery, self._smtp_factory, now, env)
        except MissingSecret as exc:
            return SendResult(ok=False, error=str(exc), permanent=True)
        except Exception as exc:  # a bug or an odd answer must not stop the other rows
            redact = redactor_for(channel, env)
            log.exception("notification %d via %s: unexpected error", row.id, row.channel_path)
            return SendResult(ok=False, error=redact(f"{type(exc).__name__}: {exc}"))
        return SendResult(ok=False, error=f"unknown channel type {row.channel_type!r}", permanent=True)

    def _attempt(self, row: _Due, http: httpx.Client, now: datetime) -> tuple[Outcome, bool]:
        """Send one row and record it; the flag says the channel's other rows should wait too."""
        attempt = row.attempts + 1  # rate-limited tries are not counted (see _record)
        channel = self._channel(row)
        pause = False
        if channel is None or not channel.enabled:
            result = SendResult(ok=False, permanent=True,
                                error=f"channel {row.channel_path} ({row.channel_type}) is no longer configured")
        else:
            result = self._send(channel, row, http, now)
        next_at: datetime | None = None
        verdict: Result
        if result.ok:
            status, verdict = NotificationStatus.SENT, "sent"
        elif result.rate_limited:
            next_at = now + (result.retry_after or self.policy.delay(1))
            status, verdict = NotificationStatus.PENDING, "retry"
            pause = True
        elif result.permanent or attempt >= self.policy.max_attempts:
            status, verdict = NotificationStatus.FAILED, "failed"
        else:
            next_at = now + self.policy.delay(attempt)
            status, verdict = NotificationStatus.PENDING, "retry"
            pause = result.transport  # no answer: don't wait for a timeout once per row
        outcome = Outcome(row.id, row.ticket_id, row.channel_path, row.channel_type, row.recipient, row.notice,
                          verdict, attempt, result.error, next_at)
        self._record(row, outcome, status, result, now)
        if verdict == "sent":
            log.info("notification %d (%s, ticket %d) sent via %s", row.id, row.notice, row.ticket_id, row.channel_path)
        else:
            log.warning("notification %d (%s, ticket %d) via %s: %s, attempt %d: %s", row.id, row.notice,
                        row.ticket_id, row.channel_path, verdict, attempt, result.error)
        return outcome, pause

    def _record(self, row: _Due, outcome: Outcome, status: NotificationStatus, result: SendResult,
                now: datetime) -> None:
        with self._database.session() as session:
            values: dict[str, object] = {"status": status.value, "updated_at": now, "last_error": result.error}
            # A rate-limited attempt does not use up one of the row's attempts.
            values["attempts"] = Notification.attempts + (0 if result.rate_limited else 1)
            if outcome.next_attempt_at is not None:
                values["next_attempt_at"] = outcome.next_attempt_at
            if status is NotificationStatus.SENT:
                values["sent_at"] = now
                values["last_error"] = None
            session.execute(update(Notification).where(Notification.id == row.id).values(**values))
            ticket_status = session.scalar(select(TicketRow.status).where(TicketRow.id == row.ticket_id))
            if ticket_status is None:
                return
            data: dict[str, object] = {
                "notification_id": row.id, "notice": row.notice, "team": row.team, "channel": row.channel,
                "channel_type": row.channel_type, "recipient": mask_recipient(row.recipient),
                "attempt": outcome.attempt, "outcome": outcome.result,
            }
            if result.error is not None:
                data["error"] = result.error
            if result.rate_limited:
                data["rate_limited"] = True
            if outcome.next_attempt_at is not None:
                data["next_attempt_at"] = outcome.next_attempt_at.isoformat()
            # Appended beside the ticket's own events without bumping its version: a notification changes
            # nothing a person acts on, so it must not turn a technician's next action into a 409.
            session.add(TicketEventRow(
                ticket_id=row.ticket_id, type=EventType.NOTIFIED.value, at=now, actor=SYSTEM,
                note=f"{row.channel_type} {row.team}/{row.channel}: {outcome.result}", data=data,
                from_status=ticket_status, to_status=ticket_status,
            ))

    def pending(self) -> Sequence[Notification]:
        """The rows still to send (for health pages and tests)."""
        with self._database.session() as session:
            return session.scalars(
                select(Notification).where(Notification.status == NotificationStatus.PENDING.value)
                .order_by(Notification.next_attempt_at, Notification.id)
            ).all()
