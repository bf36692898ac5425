"""Notification text and channel configuration: pure functions, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from linli.catalog import Severity
from linli.notify.channels import fill_template, redactor_for
from linli.notify.config import DingTalkChannel, MissingSecret, in_hours, resolve
from linli.notify.outbox import channels_for
from linli.notify.render import render, shorten
from linli.site import Site, SiteConfigError, builtin_site_path, parse_site
from linli.tickets import Subject, TicketStatus, TicketView

OPENED = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # 21:00 in Asia/Shanghai


def site_with(channels: dict[str, list[dict[str, Any]]]) -> Site:
    document = yaml.safe_load(builtin_site_path().read_text(encoding="utf-8"))
    for team, entries in channels.items():
        document["teams"][team]["channels"] = entries
    return parse_site(yaml.safe_dump(document, allow_unicode=True), Path("notify-test.yaml"))


@pytest.fixture(scope="module")
def site() -> Site:
    return site_with({})


def view(subject: Subject, fault: str, severity: Severity, *, status: TicketStatus = TicketStatus.OPEN,
         teams: tuple[str, ...] = ("elevator_contractor", "property"), title: str | None = None) -> TicketView:
    return TicketView(
        site="wanmei", subject=subject, fault=fault, severity=severity, teams=teams, source="detector", status=status,
        opened_at=OPENED, ack_due_at=OPENED + timedelta(minutes=5), start_due_at=OPENED + timedelta(minutes=30),
        resolve_due_at=OPENED + timedelta(hours=24), device_ids=(subject.id,), title=title,
        resolved_at=OPENED + timedelta(hours=2) if status is TicketStatus.RESOLVED else None,
    )


def test_a_new_elevator_ticket_in_chinese_names_device_place_fault_severity_deadlines_and_link(site: Site) -> None:
    message = render(view(Subject("device", "EL-1A"), "trapped", Severity.P0), "opened", ticket_id=42, site=site,
                     base_url="https://linli.example.cn/", now=OPENED)
    text = message.text
    assert message.title.startswith("【P0 新工单】")
    assert "湾美一期1号楼A梯 (EL-1A)" in text  # the device by its name
    assert "湾美社区 · 湾美一期 · 1号楼" in text  # site, compound, building
    assert "电梯困人 (trapped)" in text
    assert "P0 危及人身安全" in text
    assert "签收时限：2026-11-26 21:05" in text  # local time, not UTC
    assert "到场时限：2026-11-26 21:30" in text
    assert "修复时限：2026-11-27 21:00" in text
    assert "电梯维保单位、物业工程部" in text
    assert text.endswith("查看工单：https://linli.example.cn/tickets/42")
    assert "[查看工单](https://linli.example.cn/tickets/42)" in message.markdown
    assert "请于21:05前签收" in message.short and message.short.endswith("https://linli.example.cn/tickets/42")


def test_english_when_the_channel_asks_for_it(site: Site) -> None:
    message = render(view(Subject("device", "EL-1A"), "trapped", Severity.P0), "escalated", ticket_id=7, site=site,
                     base_url="http://x", lang="en", note="not acknowledged in 5 min")
    assert message.title.startswith("[P0 Escalated]")
    assert "Building 1 lift A (EL-1A)" in message.text
    assert "Passenger trapped" in message.text and "Acknowledge by: 2026-11-26 21:05" in message.text
    assert "Note: not acknowledged in 5 min" in message.text
    assert "Open the ticket: http://x/tickets/7" in message.text


def test_a_streetlight_is_placed_by_cabinet_and_circuit_and_a_circuit_ticket_by_its_name(site: Site) -> None:
    light = render(view(Subject("device", "SL-01"), "lamp_failure", Severity.P2, teams=("property",)), "opened",
                   ticket_id=1, site=site, base_url="http://x")
    circuit_id = site.devices["SL-01"].circuit
    assert circuit_id is not None
    circuit = site.circuits[circuit_id]
    cabinet = next(c for c in site.spec.cabinets if c.id == site.cabinet_of_circuit[circuit_id])
    assert f"{cabinet.name} · {circuit.name}" in light.text and "中心广场1号灯" in light.text
    outage = render(view(Subject("circuit", circuit_id), "circuit_outage", Severity.P1, teams=("property", "grid")),
                    "opened", ticket_id=2, site=site, base_url="http://x")
    assert f"对象：{circuit.name} ({circuit_id})" in outage.text and "回路停电" in outage.text


def test_overdue_deadlines_are_marked_and_a_resolved_ticket_shows_when_instead(site: Site) -> None:
    late = render(view(Subject("device", "EL-1A"), "trapped", Severity.P0), "escalated", ticket_id=3, site=site,
                  base_url="http://x", now=OPENED + timedelta(minutes=10))
    assert "签收时限：2026-11-26 21:05（已超时）" in late.text and "到场时限：2026-11-26 21:30\n" in late.text
    done = render(view(Subject("device", "EL-1A"), "trapped", Severity.P0, status=TicketStatus.RESOLVED), "resolved",
                  ticket_id=3, site=site, base_url="http://x")
    assert "办结时间：2026-11-26 23:00" in done.text and "签收时限" not in done.text
    assert "状态：已办结，待核查" in done.text


def test_a_short_message_keeps_its_link_when_cut() -> None:
    link = "https://linli.example.cn/tickets/12345"
    cut = shorten("很长的短信" * 40 + " " + link, link, 70)
    assert len(cut) <= 70 and cut.endswith(link)


def test_channels_are_parsed_by_type_and_bad_ones_are_refused_with_the_field() -> None:
    site = site_with({"property": [
        {"type": "wecom", "name": "duty", "url": "${WECOM_URL}"},
        {"type": "sms", "name": "night", "url": "http://sms", "phones": ["13800000000"], "severities": ["P0"],
         "hours": "22:00-07:00"},
    ]})
    channels = next(c for t, c in site.spec.teams.items() if t.value == "property").channels
    assert [c.type for c in channels] == ["wecom", "sms"]
    with pytest.raises(SiteConfigError, match=r"teams\.property\.channels\[0\]: .*pager"):
        site_with({"property": [{"type": "pager", "name": "x", "url": "http://x"}]})
    with pytest.raises(SiteConfigError, match="two channels are named 'duty'"):
        site_with({"property": [{"type": "wecom", "name": "duty", "url": "a"}, {"type": "wecom", "name": "duty", "url": "b"}]})
    with pytest.raises(SiteConfigError, match="hours range"):
        site_with({"property": [{"type": "wecom", "name": "duty", "url": "a", "hours": "late"}]})
    with pytest.raises(SiteConfigError, match="secret"):
        site_with({"property": [{"type": "wecom", "name": "duty", "url": "a", "secret": "x"}]})  # WeCom has none


def test_channels_for_applies_severity_notice_and_local_hour_filters() -> None:
    site = site_with({
        "property": [
            {"type": "wecom", "name": "duty", "url": "a"},
            {"type": "sms", "name": "night", "url": "http://sms", "phones": ["13800000000"], "severities": ["P0"],
             "hours": "22:00-07:00"},
            {"type": "email", "name": "closed", "host": "h", "sender": "a@b.cn", "to": ["c@d.cn"],
             "events": ["resolved", "closed"]},
            {"type": "wecom", "name": "off", "url": "a", "enabled": False},
        ],
        "grid": [{"type": "dingtalk", "name": "grid", "url": "a"}],
    })
    evening = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # 21:00 local
    night = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)  # 23:00 local

    def names(notice: str, severity: Severity, now: datetime, teams: tuple[str, ...] = ("property",)) -> list[str]:
        return [f"{r.team}/{r.channel.name}" for r in channels_for(site, teams, notice, severity, now)]

    assert names("opened", Severity.P0, evening) == ["property/duty"]
    assert names("opened", Severity.P0, night) == ["property/duty", "property/night"]
    assert names("opened", Severity.P1, night) == ["property/duty"]
    assert names("resolved", Severity.P2, evening) == ["property/duty", "property/closed"]
    assert names("opened", Severity.P2, evening, ("property", "grid", "property")) == ["property/duty", "grid/grid"]
    with pytest.raises(ValueError, match="not a notice"):
        channels_for(site, ["property"], "exploded", Severity.P0, evening)


def test_hours_wrap_midnight() -> None:
    assert in_hours(time(23, 0), "22:00-07:00") and in_hours(time(6, 59), "22:00-07:00")
    assert not in_hours(time(7, 0), "22:00-07:00") and not in_hours(time(12, 0), "22:00-07:00")
    assert in_hours(time(12, 0), "08:00-18:00") and not in_hours(time(18, 0), "08:00-18:00")
    assert in_hours(time(3, 0), "00:00-24:00")


def test_secrets_resolve_from_the_environment_and_are_redacted() -> None:
    env = {"DING_URL": "https://oapi.dingtalk.com/robot/send?access_token=abcdef0123456789", "DING_SECRET": "SECxyz123"}
    assert resolve("${DING_SECRET}", env) == "SECxyz123" and resolve("literal", env) == "literal"
    with pytest.raises(MissingSecret, match="NOPE") as info:
        resolve("${NOPE}", env)
    assert "SEC" not in str(info.value)
    channel = DingTalkChannel(type="dingtalk", name="d", url="${DING_URL}", secret="${DING_SECRET}")
    redact = redactor_for(channel, env)
    text = redact(f"failed at {env['DING_URL']}&sign=1 with SECxyz123; token abcdef0123456789")
    assert "abcdef0123456789" not in text and "SECxyz123" not in text and text.count("***") == 3


def test_sms_templates_fill_phone_phones_and_text() -> None:
    template = {"to": "{phones}", "first": "{phone}", "body": "告警：{text}", "all": "{phones}!", "n": 1}
    filled = fill_template(template, {"phone": "138", "phones": ["138", "139"], "text": "电梯困人"})
    assert filled == {"to": ["138", "139"], "first": "138", "body": "告警：电梯困人", "all": "138,139!", "n": 1}
