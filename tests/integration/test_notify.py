"""Notifications end to end on SQLite and PostgreSQL: outbox rows sent to local receivers that behave
like WeCom, DingTalk, Feishu, an SMS gateway, a webhook and an SMTP server; retries on a moved clock."""

from __future__ import annotations

import email
import email.policy
import logging
import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from linli.catalog import Severity
from linli.clock import ManualClock
from linli.notify.dispatcher import Dispatcher, Outcome
from linli.notify.outbox import notify
from linli.site import Site, SiteRegistry, builtin_site_path, parse_site
from linli.storage import Database, Notification, TicketEventRow, TicketRow, migrate
from linli.storage.tickets import append_event
from linli.tickets import EventType, TicketEvent, deadlines, serialise_deadlines
from tests.notify_receivers import Receiver, SmtpReceiver, receiver

START = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)  # 23:00 in Asia/Shanghai: SMS hours
BASE_URL = "https://linli.example.cn"
DING_SECRET = "SECdingtalk-signing-secret-0123456789abcdef"
FEISHU_SECRET = "feishu-signing-secret-9876543210"
SMS_KEY = "sms-api-key-5555aaaa"
HOOK_SECRET = "webhook-hmac-secret-7777"
MAIL_PASSWORD = "mail-password-4242"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    migrate(database_url)
    db = Database(database_url)
    yield db
    db.close()


def make_site(channels: dict[str, list[dict[str, Any]]]) -> Site:
    document = yaml.safe_load(builtin_site_path().read_text(encoding="utf-8"))
    for team, entries in channels.items():
        document["teams"][team]["channels"] = entries
    return parse_site(yaml.safe_dump(document, allow_unicode=True), Path("notify-test.yaml"))


def open_ticket(database: Database, site: Site, device_id: str, fault: str, severity: Severity, at: datetime) -> int:
    device = site.devices[device_id]
    data = {
        "site": site.id, "subject_type": "device", "subject_id": device_id, "fault": fault,
        "severity": severity.value, "teams": [t.value for t in site.teams_for(fault, device.kind)],
        "device_ids": [device_id], **serialise_deadlines(deadlines(at, site.service_level(severity, fault))),
    }
    with database.session() as session:
        row = append_event(session, None, TicketEvent(EventType.OPENED, at, "system", None, data))
        return row.id


def announce(database: Database, site: Site, ticket_id: int, notice: str, now: datetime, **kw: Any) -> int:
    with database.session() as session:
        row = session.get(TicketRow, ticket_id)
        assert row is not None
        return len(notify(session, site, row, notice, now, base_url=BASE_URL, **kw))


def dispatcher(database: Database, clock: ManualClock, site: Site, env: dict[str, str] | None = None) -> Dispatcher:
    return Dispatcher(
        database, clock, lambda: httpx.Client(timeout=httpx.Timeout(3.0)),
        lambda ch: smtplib.SMTP(ch.host, ch.port, timeout=5), sites=SiteRegistry([site]), environ=env or {},
    )


def notified(database: Database, ticket_id: int) -> list[dict[str, Any]]:
    with database.session() as session:
        rows = session.scalars(select(TicketEventRow).where(
            TicketEventRow.ticket_id == ticket_id, TicketEventRow.type == EventType.NOTIFIED.value,
        ).order_by(TicketEventRow.id)).all()
        return [dict(r.data) for r in rows]


def rows(database: Database) -> list[Notification]:
    with database.session() as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)).all())


def results(outcomes: list[Outcome]) -> list[str]:
    return [o.result for o in outcomes]


@pytest.fixture
def receivers(clock: ManualClock) -> Iterator[dict[str, Receiver]]:
    with receiver("wecom", clock) as wecom, receiver("dingtalk", clock, secret=DING_SECRET) as ding, \
            receiver("feishu", clock, secret=FEISHU_SECRET) as feishu, receiver("sms", clock, secret=SMS_KEY) as sms, \
            receiver("webhook", clock, secret=HOOK_SECRET) as hook:
        yield {"wecom": wecom, "dingtalk": ding, "feishu": feishu, "sms": sms, "webhook": hook}


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    server = SmtpReceiver("duty", MAIL_PASSWORD).start()
    yield server
    server.stop()


def every_channel(r: dict[str, Receiver], smtp: SmtpReceiver) -> tuple[Site, dict[str, str]]:
    """A site whose elevator contractor has one channel of each kind, secrets in the environment."""
    env = {"WECOM_URL": r["wecom"].url, "DING_URL": r["dingtalk"].url, "DING_SECRET": DING_SECRET,
           "FEISHU_URL": r["feishu"].url, "FEISHU_SECRET": FEISHU_SECRET, "SMS_KEY": SMS_KEY,
           "HOOK_SECRET": HOOK_SECRET, "MAIL_PASSWORD": MAIL_PASSWORD}
    site = make_site({"elevator_contractor": [
        {"type": "wecom", "name": "duty", "url": "${WECOM_URL}"},
        {"type": "dingtalk", "name": "ding", "url": "${DING_URL}", "secret": "${DING_SECRET}", "at_mobiles": ["13900001111"]},
        {"type": "feishu", "name": "lark", "url": "${FEISHU_URL}", "secret": "${FEISHU_SECRET}"},
        {"type": "sms", "name": "night", "url": r["sms"].url, "headers": {"Authorization": "Bearer ${SMS_KEY}"},
         "body": {"mobiles": "{phones}", "content": "{text}"}, "phones": ["13800001234", "13800005678"],
         "per_recipient": False, "success": {"field": "code", "equals": "OK"},
         "severities": ["P0"], "hours": "22:00-07:00"},
        {"type": "webhook", "name": "ops", "url": r["webhook"].url, "secret": "${HOOK_SECRET}"},
        {"type": "email", "name": "mail", "host": "127.0.0.1", "port": smtp.port, "starttls": False,
         "username": "duty", "password": "${MAIL_PASSWORD}", "sender": "linli@wanmei.example.cn",
         "to": ["duty@lift.example.cn", "boss@lift.example.cn"]},
    ]})
    return site, env


def test_every_channel_delivers_a_chinese_message_with_device_place_fault_severity_deadline_and_link(
    database: Database, clock: ManualClock, receivers: dict[str, Receiver], smtp: SmtpReceiver,
) -> None:
    site, env = every_channel(receivers, smtp)
    ticket = open_ticket(database, site, "EL-1A", "trapped", Severity.P0, clock.now())
    # the elevator contractor leads `trapped`; property is told too, but has no channel here
    assert announce(database, site, ticket, "opened", clock.now()) == 7  # 5 channels + 2 mail recipients
    assert announce(database, site, ticket, "opened", clock.now()) == 0  # the same notice is queued once

    outcomes = dispatcher(database, clock, site, env).run_due()
    assert results(outcomes) == ["sent"] * 7, [o.error for o in outcomes]

    link = f"{BASE_URL}/tickets/{ticket}"
    expected = ["湾美一期1号楼A梯", "湾美一期 · 1号楼", "电梯困人", "P0", "2026-11-26 23:05", link]
    for kind in ("wecom", "dingtalk", "feishu", "webhook"):
        (text,) = receivers[kind].texts()
        for part in expected:
            assert part in text, (kind, part, text)
    wecom = receivers["wecom"].accepted[0].json
    assert wecom["msgtype"] == "markdown" and wecom["markdown"]["content"].startswith("### 【P0 新工单】")
    ding = receivers["dingtalk"].accepted[0]
    assert ding.query["timestamp"] and ding.query["sign"] and "@13900001111" in ding.json["markdown"]["text"]
    feishu = receivers["feishu"].accepted[0].json
    assert feishu["msg_type"] == "post" and feishu["sign"] and "zh_cn" in feishu["content"]["post"]
    sms = receivers["sms"].accepted[0].json
    assert sms["mobiles"] == ["13800001234", "13800005678"]
    assert sms["content"].startswith("【邻里】P0 新工单：电梯困人，湾美一期1号楼A梯") and link in sms["content"]
    assert len(sms["content"]) <= 300
    hook = receivers["webhook"].accepted[0]
    assert hook.json["ticket_id"] == ticket and hook.headers["x-linli-signature"].startswith("sha256=")

    assert sorted(m.recipients[0] for m in smtp.messages) == ["boss@lift.example.cn", "duty@lift.example.cn"]
    mail = email.message_from_bytes(smtp.messages[0].data, policy=email.policy.default)
    body = mail.get_body(("plain",))
    assert body is not None
    assert str(mail["Subject"]).startswith("【P0 新工单】")
    for part in expected:
        assert part in body.get_content()

    events = notified(database, ticket)
    assert len(events) == 7 and {e["outcome"] for e in events} == {"sent"}
    assert {e["channel_type"] for e in events} == {"wecom", "dingtalk", "feishu", "sms", "webhook", "email"}
    assert any(e["recipient"] == "138****1234,138****5678" for e in events)  # phones masked in the history
    with database.session() as session:
        row = session.get(TicketRow, ticket)
        assert row is not None and row.version == 1  # notifications do not move the ticket's version
    assert all(r.status == "sent" and r.sent_at == START and r.attempts == 1 for r in rows(database))
    assert dispatcher(database, clock, site, env).run_due() == []  # nothing sent twice


def test_sms_only_for_p0_at_night(database: Database, clock: ManualClock, receivers: dict[str, Receiver],
                                  smtp: SmtpReceiver) -> None:
    site, _env = every_channel(receivers, smtp)
    p1 = open_ticket(database, site, "EL-1B", "safety_circuit_open", Severity.P1, clock.now())
    noon = START + timedelta(hours=13)  # 12:00 next day, local
    p0 = open_ticket(database, site, "EL-2A", "trapped", Severity.P0, noon)
    announce(database, site, p1, "opened", clock.now())
    announce(database, site, p0, "opened", noon)
    assert not [r for r in rows(database) if r.channel_type == "sms"]


def test_a_wrong_signing_secret_is_a_failure_with_the_receivers_error(
    database: Database, clock: ManualClock, receivers: dict[str, Receiver],
) -> None:
    site = make_site({"elevator_contractor": [
        {"type": "dingtalk", "name": "ding", "url": receivers["dingtalk"].url, "secret": "SECnot-the-right-one"},
        {"type": "feishu", "name": "lark", "url": receivers["feishu"].url, "secret": "not-the-right-one"},
    ]})
    ticket = open_ticket(database, site, "EL-1A", "trapped", Severity.P0, clock.now())
    announce(database, site, ticket, "opened", clock.now())
    outcomes = dispatcher(database, clock, site).run_due()
    assert results(outcomes) == ["failed", "failed"]  # retrying a wrong secret cannot help
    errors = {r.channel_type: r.last_error for r in rows(database)}
    assert errors["dingtalk"] == "HTTP 200 errcode 310000: sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"
    assert errors["feishu"] == ("HTTP 200 code 19021: sign match fail or timestamp is not within one hour "
                                "from current time")
    assert {e["outcome"] for e in notified(database, ticket)} == {"failed"}
    assert [e["error"] for e in notified(database, ticket)] == [errors["dingtalk"], errors["feishu"]]
    assert receivers["dingtalk"].accepted == [] and receivers["feishu"].accepted == []
    clock.advance(3600)
    assert dispatcher(database, clock, site).run_due() == []


@pytest.mark.parametrize(("kind", "failure"), [("wecom", {"code": 500001}), ("webhook", {"status": 500}),
                                               ("dingtalk", {"status": 500}), ("feishu", {"code": 500001})])
def test_errcode_answers_and_server_errors_are_retried_with_backoff_then_sent(
    database: Database, clock: ManualClock, receivers: dict[str, Receiver], kind: str, failure: dict[str, int],
) -> None:
    target = receivers[kind]
    entry: dict[str, Any] = {"type": kind, "name": "ch", "url": target.url}
    if target.secret is not None:
        entry["secret"] = target.secret
    site = make_site({"elevator_contractor": [entry]})
    ticket = open_ticket(database, site, "EL-1A", "trapped", Severity.P0, clock.now())
    announce(database, site, ticket, "opened", clock.now())
    target.fail_next(2, **failure)
    sender = dispatcher(database, clock, site)

    assert results(sender.run_due()) == ["retry"]
    clock.advance(4)
    assert sender.run_due() == []  # the first backoff is 5 s
    clock.advance(1)
    assert results(sender.run_due()) == ["retry"]
    clock.advance(29)
    assert sender.run_due() == []  # the second is 30 s
    clock.advance(1)
    assert results(sender.run_due()) == ["sent"]

    assert len(target.requests) == 3 and len(target.accepted) == 1
    events = notified(database, ticket)
    assert [(e["attempt"], e["outcome"]) for e in events] == [(1, "retry"), (2, "retry"), (3, "sent")]
    label = "code" if kind == "feishu" else "errcode"
    first_error = events[0]["error"]
    assert first_error == (f"HTTP 200 {label} 500001: system busy" if "code" in failure else
                           'HTTP 500: {"error": "system busy"}')
    assert events[0]["next_attempt_at"] == (START + timedelta(seconds=5)).isoformat()
    (row,) = rows(database)
    assert row.status == "sent" and row.attempts == 3 and row.last_error is None
    assert row.sent_at == START + timedelta(seconds=35)


def test_gives_up_after_the_last_attempt(database: Database, clock: ManualClock, receivers: dict[str, Receiver]) -> None:
    site = make_site({"elevator_contractor": [{"type": "wecom", "name": "ch", "url": receivers["wecom"].url}]})
    ticket = open_ticket(database, site, "EL-1A", "trapped", Severity.P0, clock.now())
    announce(database, site, ticket, "opened", clock.now())
    receivers["wecom"].fail_next(100, status=502)
    sender = dispatcher(database, clock, site)
    seen: list[str] = []
    for _ in range(10):
        seen += results(sender.run_due())
        clock.advance(600)
    assert seen == ["retry"] * 5 + ["failed"]  # max_attempts = 6
    assert rows(database)[0].status == "failed" and len(notified(database, ticket)) == 6


@pytest.mark.parametrize(("kind", "window"), [("wecom", 60), ("dingtalk", 600)])
def test_a_robots_rate_limit_is_waited_out(
    database: Database, clock: ManualClock, receivers: dict[str, Receiver], kind: str, window: int,
) -> None:
    target = receivers[kind]
    entry: dict[str, Any] = {"type": kind, "name": "ch", "url": target.url}
    if target.secret is not None:
        entry["secret"] = target.secret
    site = make_site({"property": [entry]})
    lights = [d for d in site.devices.values() if d.kind == "streetlight"][:25]
    tickets = [open_ticket(database, site, d.id, "lamp_failure", Severity.P2, clock.now()) for d in lights]
    for ticket in tickets:
        announce(database, site, ticket, "opened", clock.now())
    sender = dispatcher(database, clock, site)

    first = sender.run_due()
    assert results(first) == ["sent"] * 20 + ["retry"] + ["deferred"] * 4
    assert len(target.accepted) == 20 and len(target.requests) == 21  # the deferred ones were not even tried
    limited = first[20]
    assert limited.error is not None and ("45009" in limited.error if kind == "wecom" else "130101" in limited.error)
    assert {o.next_attempt_at for o in first[20:]} == {START + timedelta(seconds=window)}

    clock.advance(window - 1)
    assert sender.run_due() == []
    clock.advance(1)
    assert results(sender.run_due()) == ["sent"] * 5
    assert len(target.accepted) == 25
    assert all(r.status == "sent" for r in rows(database))
    events = notified(database, tickets[20])
    assert [(e["attempt"], e["outcome"], e.get("rate_limited")) for e in events] == [(1, "retry", True), (1, "sent", None)]


def test_smtp_refusing_the_password_is_a_failure(database: Database, clock: ManualClock, smtp: SmtpReceiver) -> None:
    site = make_site({"elevator_contractor": [
        {"type": "email", "name": "mail", "host": "127.0.0.1", "port": smtp.port, "starttls": False,
         "username": "duty", "password": "wrong-password", "sender": "linli@wanmei.example.cn", "to": ["a@b.cn"]},
    ]})
    ticket = open_ticket(database, site, "EL-1A", "trapped", Severity.P0, clock.now())
    announce(database, site, ticket, "opened", clock.now())
    (outcome,) = dispatcher(database, clock, site).run_due()
    assert outcome.result == "failed" and outcome.error is not None and "535" in outcome.error
    assert smtp.messages == []


def test_no_secret_reaches_the_logs_the_rows_or_the_ticket(
    database: Database, clock: ManualClock, receivers: dict[str, Receiver], smtp: SmtpReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    site, env = every_channel(receivers, smtp)
    env["MAIL_PASSWORD"] = "wrong-but-secret-password"  # refused: an error that could echo it
    for r in receivers.values():
        r.fail_next(1, status=500)
    receivers["wecom"].fail_next(1, code=93000, message=f"invalid webhook url {receivers['wecom'].url}")
    ticket = open_ticket(database, site, "EL-1A", "trapped", Severity.P0, clock.now())
    announce(database, site, ticket, "opened", clock.now())
    caplog.set_level(logging.DEBUG)
    sender = dispatcher(database, clock, site, env)
    sender.run_due()
    for _ in range(3):
        clock.advance(30)
        sender.run_due()
    # a channel pointed at nothing: the transport error names the address
    dead = make_site({"elevator_contractor": [{"type": "wecom", "name": "dead", "url": "${DEAD_URL}"}]})
    env["DEAD_URL"] = "http://127.0.0.1:9/cgi-bin/webhook/send?key=dead-key-0123456789"
    dead_ticket = open_ticket(database, dead, "EL-2A", "trapped", Severity.P0, clock.now())
    announce(database, dead, dead_ticket, "opened", clock.now())
    dead_outcomes = dispatcher(database, clock, dead, env).run_due()
    assert results(dead_outcomes) == ["retry"]

    recorded = " ".join(
        [caplog.text]
        + [str(r.last_error) for r in rows(database)]
        + [str(e) for t in (ticket, dead_ticket) for e in notified(database, t)]
    )
    assert "500" in recorded and "93000" in recorded  # the errors are there...
    for secret in [DING_SECRET, FEISHU_SECRET, SMS_KEY, HOOK_SECRET, MAIL_PASSWORD, "wrong-but-secret-password",
                   receivers["wecom"].token, receivers["dingtalk"].token, receivers["feishu"].token,
                   "dead-key-0123456789"]:
        assert secret not in recorded, secret  # ...their secrets are not


def test_a_missing_environment_variable_names_the_variable_and_fails(
    database: Database, clock: ManualClock,
) -> None:
    site = make_site({"elevator_contractor": [{"type": "wecom", "name": "duty", "url": "${NOT_SET_URL}"}]})
    ticket = open_ticket(database, site, "EL-1A", "trapped", Severity.P0, clock.now())
    announce(database, site, ticket, "opened", clock.now())
    (outcome,) = dispatcher(database, clock, site).run_due()
    assert outcome.result == "failed" and outcome.error == "environment variable NOT_SET_URL is not set"

