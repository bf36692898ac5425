"""The watchdog's decisions with a moved clock: one alert per fault, reminders, one recovery;
heartbeat freshness by arrival; receivers' message formats and bounded retries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from linli.ops.watchdog import (
    Alert,
    AlertSender,
    BrokerAddress,
    Channel,
    CheckResult,
    WatchdogState,
    alert_text,
    heartbeat_result,
    redact_url,
)

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def silent(seconds: int = 60) -> CheckResult:
    return CheckResult("heartbeat:linli-gateway", "网关 linli-gateway", "gateway linli-gateway", ok=False,
                       problem_zh=f"{seconds} 秒无心跳", problem_en=f"silent for {seconds} s")


BEATING = CheckResult("heartbeat:linli-gateway", "网关 linli-gateway", "gateway linli-gateway", ok=True)
BROKER_OK = CheckResult("broker", "MQTT 服务器", "MQTT broker", ok=True)


def test_bad_alerts_once_then_reminds_every_30_min_and_recovers_once() -> None:
    state = WatchdogState()
    assert state.evaluate([BEATING, BROKER_OK], T0) == []  # all well from the start: nothing to say

    down = state.evaluate([silent(), BROKER_OK], T0 + MIN)
    assert [(a.key, a.kind) for a in down] == [("heartbeat:linli-gateway", "down")]
    assert down[0].text == "【邻里告警】网关 linli-gateway 60 秒无心跳 / Linli alert: gateway linli-gateway silent for 60 s"

    for minutes in range(2, 31, 1):  # still bad every round: no storm
        assert state.evaluate([silent(minutes * 60), BROKER_OK], T0 + minutes * MIN) == []
    reminder = state.evaluate([silent(), BROKER_OK], T0 + 31 * MIN)
    assert [a.kind for a in reminder] == ["reminder"]
    assert reminder[0].text.startswith("【邻里告警】仍未恢复（已 30 分钟）：网关 linli-gateway")
    assert "still down after 30 min" in reminder[0].text
    assert state.evaluate([silent()], T0 + 45 * MIN) == []
    assert [a.kind for a in state.evaluate([silent()], T0 + 61 * MIN)] == ["reminder"]
    assert state.bad() == ["heartbeat:linli-gateway"]

    back = state.evaluate([BEATING, BROKER_OK], T0 + 70 * MIN)
    assert [(a.key, a.kind) for a in back] == [("heartbeat:linli-gateway", "recovered")]
    assert back[0].text == ("【邻里恢复】网关 linli-gateway 已恢复（中断 69 分钟） / "
                            "Linli recovered: gateway linli-gateway is back (down for 69 min)")
    assert state.evaluate([BEATING], T0 + 71 * MIN) == []
    assert state.bad() == []

    again = state.evaluate([silent()], T0 + 80 * MIN)  # a new outage is news again
    assert [a.kind for a in again] == ["down"]


def test_unknown_results_change_nothing_and_checks_are_independent() -> None:
    state = WatchdogState()
    unknown = CheckResult("heartbeat:linli-gateway", "网关", "gateway", ok=None)
    broker_down = CheckResult("broker", "MQTT 服务器", "MQTT broker", ok=False, problem_zh="无法连接", problem_en="down")
    alerts = state.evaluate([broker_down, unknown], T0)
    assert [a.key for a in alerts] == ["broker"]  # the heartbeat is not judged while the broker is down
    assert state.evaluate([broker_down, unknown], T0 + MIN) == []
    assert [(a.key, a.kind) for a in state.evaluate([silent(), BROKER_OK], T0 + 2 * MIN)] == [
        ("heartbeat:linli-gateway", "down"), ("broker", "recovered")]

    state = WatchdogState()
    state.evaluate([silent()], T0)
    assert state.evaluate([unknown], T0 + 40 * MIN) == []  # unknown is not a recovery, nor a reminder
    assert [a.kind for a in state.evaluate([BEATING], T0 + 41 * MIN)] == ["recovered"]


def test_confirm_waits_for_consecutive_bad_rounds_and_a_blip_is_silent() -> None:
    state = WatchdogState(confirm=2, label="湾美社区")
    assert state.evaluate([silent()], T0) == []
    assert state.evaluate([BEATING], T0 + MIN) == []  # one bad round then good: no alert, no recovery
    assert state.evaluate([silent()], T0 + 2 * MIN) == []
    alerts = state.evaluate([silent()], T0 + 3 * MIN)
    assert [a.kind for a in alerts] == ["down"]
    assert alerts[0].text.startswith("【邻里告警】湾美社区：网关") and "Linli alert (湾美社区): gateway" in alerts[0].text
    recovered = state.evaluate([BEATING], T0 + 4 * MIN)
    assert "中断 2 分钟" in recovered[0].text  # down since the first bad round of the run
    with pytest.raises(ValueError, match="confirm"):
        WatchdogState(confirm=0)


def test_heartbeat_freshness_is_by_arrival_and_counts_from_when_the_watchdog_listens() -> None:
    def beat(last_arrival: datetime | None, listening_since: datetime | None) -> CheckResult:
        return heartbeat_result("gw", now=T0, max_silence=timedelta(seconds=60), last_arrival=last_arrival,
                                listening_since=listening_since)

    assert beat(None, None).ok is None
    assert beat(None, T0 - timedelta(seconds=59)).ok is True
    never = beat(None, T0 - timedelta(seconds=61))
    assert never.ok is False and "从未收到" in never.problem_zh
    assert beat(T0 - timedelta(seconds=60), T0 - timedelta(hours=1)).ok is True
    old = beat(T0 - timedelta(seconds=75), T0 - timedelta(hours=1))
    assert (old.ok, old.problem_zh, old.problem_en) == (False, "75 秒无心跳", "silent for 75 s")
    # re-subscribed 30 s ago after a broker outage: the gateway gets the same grace to reconnect
    assert beat(T0 - timedelta(minutes=10), T0 - timedelta(seconds=30)).ok is True


def alert() -> Alert:
    result = silent()
    return Alert(result.key, "down", T0, alert_text("down", result), result)


def test_receivers_get_their_own_formats() -> None:
    wecom = Channel("wecom", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SECRET")
    assert wecom.body(alert()) == {"msgtype": "text", "text": {"content": alert().text}}
    assert "SECRET" not in str(wecom)
    body = Channel("webhook", "https://example.org/hook").body(alert())
    assert body["check"] == "heartbeat:linli-gateway" and body["state"] == "down" and body["text"] == alert().text
    assert body["at"] == T0.isoformat()
    assert redact_url("https://user:pw@example.org/x?token=1") == "https://example.org/x?…"
    assert BrokerAddress.parse("mqtts://u:p@broker.lan") == BrokerAddress("broker.lan", 8883, True, "u", "p")
    with pytest.raises(ValueError, match="mqtt://"):
        BrokerAddress.parse("http://broker.lan")


def sender_with(responses: list[httpx.Response | Exception]) -> tuple[AlertSender, list[httpx.Request], list[float]]:
    seen: list[httpx.Request] = []
    slept: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = responses.pop(0) if responses else httpx.Response(200, json={"errcode": 0})
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = httpx.Client(transport=httpx.MockTransport(handle))
    return AlertSender([], http=client, attempts=3, backoff_s=1.0, sleep=slept.append), seen, slept


def test_sends_are_retried_with_backoff_a_bounded_number_of_times() -> None:
    wecom = Channel("wecom", "https://qyapi.example/send?key=k")
    sender, seen, slept = sender_with([httpx.ConnectError("refused"), httpx.Response(200, json={"errcode": 45009})])
    assert sender.deliver(alert(), wecom) is True  # third attempt: errcode 0
    assert len(seen) == 3 and slept == [1.0, 2.0]
    assert json.loads(seen[0].content)["msgtype"] == "text"

    sender, seen, slept = sender_with([httpx.Response(503)] * 5)
    assert sender.deliver(alert(), Channel("webhook", "https://hook.example/")) is False
    assert len(seen) == 3 and slept == [1.0, 2.0]  # bounded

    sender, seen, slept = sender_with([httpx.Response(404)])
    assert sender.deliver(alert(), Channel("webhook", "https://hook.example/")) is False
    assert len(seen) == 1 and slept == []  # a wrong URL does not get better by retrying
