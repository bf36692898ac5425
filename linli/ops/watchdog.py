"""`linli watchdog`: from another machine, alert when the gateway, the broker, the API or the
database stops answering.

The gateway publishes a retained heartbeat every 10 s on ``linli/v1/gateway/{client_id}/heartbeat``
(``{"ts", "sites", "messages_done", "connected", "db_ok"}``). The watchdog checks, every interval:

- ``broker``: a fresh MQTT connection is accepted (CONNACK) within a few seconds;
- ``heartbeat:{id}``: a heartbeat *arrived* within ``--max-silence`` seconds (arrival at the watchdog,
  so the two machines' clocks need not agree; a retained heartbeat delivered on subscription is
  old news and does not count);
- ``gateway-db:{id}``: the gateway's latest heartbeat says its database answers;
- ``api``: ``GET /healthz`` answers; ``database``: it says the database answers (or, with
  ``--database-url``, a direct ``SELECT 1``).

Alerts go straight over HTTPS to the receivers (WeCom group robots, generic webhooks): they do not
depend on the broker, the gateway or the database they are about. One alert when a check goes bad,
a reminder every 30 min while it stays bad, one "recovered" when it comes back. Each send is
retried with backoff a bounded number of times; one that still fails is retried on the next rounds
for an hour.

The decisions are a pure state machine (:class:`WatchdogState`) driven by an injected clock; the I/O
around it is thin.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from linli.clock import Clock, SystemClock

log = logging.getLogger("linli.watchdog")

HEARTBEAT_TOPIC = "linli/v1/gateway/{gateway_id}/heartbeat"
DEFAULT_GATEWAY_ID = "linli-gateway"
DEFAULT_MAX_SILENCE_S = 60.0
DEFAULT_INTERVAL_S = 15.0
REMINDER_EVERY = timedelta(minutes=30)
PROBE_TIMEOUT_S = 5.0
HTTP_TIMEOUT_S = 5.0
SEND_ATTEMPTS = 3  # per alert and receiver, within one round
SEND_BACKOFF_S = 1.0  # 1 s, then 2 s between attempts
PENDING_MAX_AGE = timedelta(hours=1)  # an alert no receiver took is retried on later rounds this long

AlertKind = Literal["down", "reminder", "recovered"]


# --------------------------------------------------------------------------- the pure part


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's outcome. `ok` None: cannot be judged now (say, heartbeats while the broker is down)."""

    key: str  # "broker", "heartbeat:linli-gateway", "api", "database", ...
    subject_zh: str
    subject_en: str
    ok: bool | None
    problem_zh: str = ""
    problem_en: str = ""


@dataclass(frozen=True, slots=True)
class Alert:
    key: str
    kind: AlertKind
    at: datetime
    text: str  # Chinese first, then English
    result: CheckResult


def _duration(span: timedelta) -> tuple[str, str]:
    seconds = max(0, int(span.total_seconds()))
    if seconds < 120:
        return f"{seconds} 秒", f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} 分钟", f"{seconds // 60} min"
    hours = seconds / 3600
    return f"{hours:.1f} 小时", f"{hours:.1f} h"


def alert_text(kind: AlertKind, result: CheckResult, *, down_for: timedelta = timedelta(0), label: str = "") -> str:
    zh_label = f"{label}：" if label else ""
    en_label = f" ({label})" if label else ""
    zh_for, en_for = _duration(down_for)
    if kind == "down":
        return (f"【邻里告警】{zh_label}{result.subject_zh} {result.problem_zh} / "
                f"Linli alert{en_label}: {result.subject_en} {result.problem_en}")
    if kind == "reminder":
        return (f"【邻里告警】{zh_label}仍未恢复（已 {zh_for}）：{result.subject_zh} {result.problem_zh} / "
                f"Linli alert{en_label}: still down after {en_for}: {result.subject_en} {result.problem_en}")
    return (f"【邻里恢复】{zh_label}{result.subject_zh} 已恢复（中断 {zh_for}） / "
            f"Linli recovered{en_label}: {result.subject_en} is back (down for {en_for})")


@dataclass(slots=True)
class _Track:
    bad_rounds: int = 0
    bad_since: datetime | None = None
    alerted_at: datetime | None = None  # when the last down/reminder alert went out (None: not alerted)


class WatchdogState:
    """Turns check results into alerts: on state changes only, plus reminders while bad.

    A check must be bad `confirm` rounds in a row before it alerts (1: at once); a recovery is
    announced only for a check that was alerted.
    """

    def __init__(self, *, reminder_every: timedelta = REMINDER_EVERY, confirm: int = 1, label: str = "") -> None:
        if confirm < 1:
            raise ValueError("confirm must be at least 1")
        self.reminder_every, self.confirm, self.label = reminder_every, confirm, label
        self._tracks: dict[str, _Track] = {}

    def bad(self) -> list[str]:
        """The keys currently alerted as bad."""
        return [key for key, track in self._tracks.items() if track.alerted_at is not None]

    def evaluate(self, results: Iterable[CheckResult], now: datetime) -> list[Alert]:
        alerts: list[Alert] = []
        for result in results:
            if result.ok is None:
                continue  # no news: the state stays as it was
            track = self._tracks.setdefault(result.key, _Track())
            if result.ok:
                if track.alerted_at is not None and track.bad_since is not None:
                    text = alert_text("recovered", result, down_for=now - track.bad_since, label=self.label)
                    alerts.append(Alert(result.key, "recovered", now, text, result))
                self._tracks[result.key] = _Track()
                continue
            track.bad_rounds += 1
            if track.bad_since is None:
                track.bad_since = now
            if track.alerted_at is None:
                if track.bad_rounds >= self.confirm:
                    track.alerted_at = now
                    alerts.append(Alert(result.key, "down", now, alert_text("down", result, label=self.label), result))
            elif now - track.alerted_at >= self.reminder_every:
                track.alerted_at = now
                text = alert_text("reminder", result, down_for=now - track.bad_since, label=self.label)
                alerts.append(Alert(result.key, "reminder", now, text, result))
        return alerts


def heartbeat_result(
    gateway_id: str,
    *,
    now: datetime,
    max_silence: timedelta,
    last_arrival: datetime | None,
    listening_since: datetime | None,
) -> CheckResult:
    """Is the gateway's heartbeat fresh? Silence counts from the later of the last heartbeat's arrival
    and the moment the watchdog (re)subscribed: one cannot expect to hear while not listening."""
    subject = (f"网关 {gateway_id}", f"gateway {gateway_id}")
    if listening_since is None:
        return CheckResult(f"heartbeat:{gateway_id}", *subject, ok=None)  # not subscribed: the broker check speaks
    reference = max(last_arrival, listening_since) if last_arrival else listening_since
    silence = now - reference
    if silence <= max_silence:
        return CheckResult(f"heartbeat:{gateway_id}", *subject, ok=True)
    zh, en = _duration(silence)
    if last_arrival is None:
        return CheckResult(f"heartbeat:{gateway_id}", *subject, ok=False,
                           problem_zh=f"{zh}无心跳（看门狗启动后从未收到）",
                           problem_en=f"silent for {en} (no heartbeat since the watchdog started)")
    return CheckResult(f"heartbeat:{gateway_id}", *subject, ok=False, problem_zh=f"{zh}无心跳",
                       problem_en=f"silent for {en}")


# --------------------------------------------------------------------------- alert receivers


def redact_url(url: str) -> str:
    """A receiver URL fit for logs: no query (WeCom's key is there), no password."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "…" if parts.query else "", ""))


@dataclass(frozen=True, slots=True)
class Channel:
    kind: Literal["webhook", "wecom"]
    url: str

    def body(self, alert: Alert) -> dict[str, Any]:
        if self.kind == "wecom":  # WeCom group robot: https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...
            return {"msgtype": "text", "text": {"content": alert.text}}
        return {
            "source": "linli-watchdog", "host": socket.gethostname(), "check": alert.key, "state": alert.kind,
            "at": alert.at.isoformat(), "text": alert.text,
            "subject": {"zh": alert.result.subject_zh, "en": alert.result.subject_en},
            "problem": {"zh": alert.result.problem_zh, "en": alert.result.problem_en},
        }

    def __str__(self) -> str:
        return f"{self.kind} {redact_url(self.url)}"


class AlertSender:
    """POSTs alerts to the receivers, retrying each a bounded number of times with backoff."""

    def __init__(self, channels: Sequence[Channel], *, http: httpx.Client | None = None, attempts: int = SEND_ATTEMPTS,
                 backoff_s: float = SEND_BACKOFF_S, sleep: Callable[[float], None] = time.sleep) -> None:
        self.channels = list(channels)
        self._http = http or httpx.Client(timeout=HTTP_TIMEOUT_S)
        self.attempts, self.backoff_s, self._sleep = max(1, attempts), backoff_s, sleep

    def deliver(self, alert: Alert, channel: Channel) -> bool:
        """True once `channel` took the alert; False after the last attempt failed."""
        for attempt in range(1, self.attempts + 1):
            error = self._post(channel, alert)
            if error is None:
                return True
            permanent = error.startswith("HTTP 4") and not error.startswith("HTTP 429")
            log.warning("alert to %s failed (attempt %d of %d): %s", channel, attempt, self.attempts, error)
            if permanent or attempt == self.attempts:
                break
            self._sleep(self.backoff_s * 2 ** (attempt - 1))
        return False

    def _post(self, channel: Channel, alert: Alert) -> str | None:
        try:
            response = self._http.post(channel.url, json=channel.body(alert))
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if not response.is_success:
            return f"HTTP {response.status_code}"
        if channel.kind == "wecom":  # WeCom answers 200 with {"errcode": N} where N != 0 is a failure
            try:
                errcode = response.json().get("errcode", 0)
            except (ValueError, AttributeError):
                errcode = 0
            if errcode != 0:
                return f"WeCom errcode {errcode}: {response.text[:200]}"
        return None

    def close(self) -> None:
        self._http.close()


# --------------------------------------------------------------------------- checks (I/O)


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str, username: str | None = None, password: str | None = None) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"{url!r} is not an mqtt://host:port or mqtts://host:port URL")
        tls = parts.scheme == "mqtts"
        return cls(parts.hostname, parts.port or (8883 if tls else 1883), tls,
                   username or parts.username, password or parts.password)

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def _mqtt_client(address: BrokerAddress, client_id: str) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311)
    if address.username:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
    return client


def probe_broker(address: BrokerAddress, timeout_s: float = PROBE_TIMEOUT_S) -> CheckResult:
    """A new MQTT connection, accepted within `timeout_s`: the broker answers."""
    subject = (f"MQTT 服务器 {address}", f"MQTT broker {address}")
    client = _mqtt_client(address, f"linli-watchdog-probe-{secrets.token_hex(4)}")
    client.connect_timeout = timeout_s
    answer: list[Any] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: answer.append(reason)
    try:
        client.connect(address.host, address.port, keepalive=10)
        deadline = time.monotonic() + timeout_s
        while not answer and time.monotonic() < deadline:
            if client.loop(timeout=0.1) != 0:
                break
    except (OSError, ValueError) as exc:
        return CheckResult("broker", *subject, ok=False, problem_zh=f"无法连接（{exc}）",
                           problem_en=f"does not answer ({exc})")
    finally:
        with contextlib.suppress(Exception):  # closing a probe that may never have connected
            client.disconnect()
    if not answer:
        return CheckResult("broker", *subject, ok=False, problem_zh=f"{timeout_s:.0f} 秒内无应答",
                           problem_en=f"no answer within {timeout_s:.0f} s")
    if answer[0].is_failure:
        return CheckResult("broker", *subject, ok=False, problem_zh=f"拒绝连接（{answer[0]}）",
                           problem_en=f"refuses the connection ({answer[0]})")
    return CheckResult("broker", *subject, ok=True)


class HeartbeatListener:
    """Subscribed to the gateways' heartbeats; notes when each live one arrives (by `clock`)."""

    def __init__(self, address: BrokerAddress, gateway_ids: Sequence[str], clock: Clock) -> None:
        self.address, self.gateway_ids, self._clock = address, list(gateway_ids), clock
        self._lock = threading.Lock()
        self._arrivals: dict[str, datetime] = {}
        self._payloads: dict[str, dict[str, Any]] = {}
        self._listening_since: datetime | None = None
        self._topics = {HEARTBEAT_TOPIC.format(gateway_id=g): g for g in self.gateway_ids}
        self._client = _mqtt_client(address, f"linli-watchdog-{socket.gethostname()[:20]}-{secrets.token_hex(3)}")
        self._client.reconnect_delay_set(min_delay=1, max_delay=15)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def start(self) -> None:
        """Connect in the background (and keep reconnecting): a broker down at start is the broker check's news."""
        self._client.connect_async(self.address.host, self.address.port, keepalive=20)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def listening_since(self) -> datetime | None:
        with self._lock:
            return self._listening_since

    def last_arrival(self, gateway_id: str) -> datetime | None:
        with self._lock:
            return self._arrivals.get(gateway_id)

    def last_payload(self, gateway_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._payloads.get(gateway_id)

    def _on_connect(self, client: Any, _userdata: object, _flags: Any, reason: Any, _properties: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the watchdog's connection: %s", reason)
            return
        client.subscribe([(topic, 1) for topic in self._topics])

    def _on_subscribe(self, _client: Any, _userdata: object, _mid: int, _reasons: Any, _properties: Any) -> None:
        with self._lock:
            self._listening_since = self._clock.now()

    def _on_disconnect(self, _client: Any, _userdata: object, _flags: Any, reason: Any, _properties: Any) -> None:
        with self._lock:
            self._listening_since = None
        log.info("watchdog disconnected from the broker: %s", reason)

    def _on_message(self, _client: Any, _userdata: object, message: Any) -> None:
        gateway_id = self._topics.get(message.topic)
        if gateway_id is None:
            return
        try:
            payload = json.loads(message.payload)
        except ValueError:
            payload = None
        with self._lock:
            if isinstance(payload, dict):
                self._payloads[gateway_id] = payload
            if not message.retain:  # a retained one, delivered on subscribing, may be days old
                self._arrivals[gateway_id] = self._clock.now()


@dataclass
class WatchdogConfig:
    broker: BrokerAddress | None = None
    gateway_ids: list[str] = field(default_factory=list)
    api_url: str | None = None
    database_url: str | None = None
    max_silence: timedelta = timedelta(seconds=DEFAULT_MAX_SILENCE_S)


@dataclass(frozen=True, slots=True)
class Round:
    results: list[CheckResult]
    alerts: list[Alert]


class Watchdog:
    def __init__(self, config: WatchdogConfig, *, sender: AlertSender, clock: Clock | None = None,
                 state: WatchdogState | None = None, http: httpx.Client | None = None) -> None:
        self.config = config
        self.sender = sender
        self.clock = clock or SystemClock()
        self.state = state or WatchdogState()
        self._http = http or httpx.Client(timeout=HTTP_TIMEOUT_S)
        self.listener = (HeartbeatListener(config.broker, config.gateway_ids, self.clock)
                         if config.broker and config.gateway_ids else None)
        self._database: Any = None
        self._pending: list[tuple[Alert, Channel]] = []

    def start(self) -> None:
        if self.listener is not None:
            self.listener.start()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        if self._database is not None:
            self._database.close()
        self._http.close()
        self.sender.close()

    def wait_listening(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.listener is not None and self.listener.listening_since is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    # ---- the checks

    def check(self, now: datetime) -> list[CheckResult]:
        results: list[CheckResult] = []
        broker_ok: bool | None = None
        if self.config.broker is not None:
            broker = probe_broker(self.config.broker)
            broker_ok = broker.ok
            results.append(broker)
        if self.listener is not None:
            listening = self.listener.listening_since if broker_ok else None
            for gateway_id in self.config.gateway_ids:
                beat = heartbeat_result(gateway_id, now=now, max_silence=self.config.max_silence,
                                        last_arrival=self.listener.last_arrival(gateway_id), listening_since=listening)
                results.append(beat)
                results.append(self._gateway_database(gateway_id, fresh=beat.ok is True))
        api_database: CheckResult | None = None
        if self.config.api_url:
            api, api_database = self._api()
            results.append(api)
        if self.config.database_url:
            results.append(self._database_direct())
        elif api_database is not None:
            results.append(api_database)
        return results

    def _gateway_database(self, gateway_id: str, *, fresh: bool) -> CheckResult:
        subject = (f"网关 {gateway_id} 的数据库连接", f"the database connection of gateway {gateway_id}")
        payload = self.listener.last_payload(gateway_id) if self.listener else None
        if not fresh or payload is None or "db_ok" not in payload:
            return CheckResult(f"gateway-db:{gateway_id}", *subject, ok=None)
        if payload["db_ok"]:
            return CheckResult(f"gateway-db:{gateway_id}", *subject, ok=True)
        return CheckResult(f"gateway-db:{gateway_id}", *subject, ok=False, problem_zh="失败（网关心跳报告）",
                           problem_en="is failing (the gateway's heartbeat says so)")

    def _api(self) -> tuple[CheckResult, CheckResult | None]:
        assert self.config.api_url
        url = self.config.api_url.rstrip("/") + "/healthz"
        subject = (f"API {self.config.api_url}", f"API {self.config.api_url}")
        database = ("数据库", "database")
        try:
            response = self._http.get(url)
            body = response.json() if response.status_code in (200, 503) else None
        except (httpx.HTTPError, ValueError) as exc:
            problem = str(exc) or type(exc).__name__
            return CheckResult("api", *subject, ok=False, problem_zh=f"无响应（{problem}）",
                               problem_en=f"does not answer ({problem})"), None
        if not isinstance(body, dict):
            return CheckResult("api", *subject, ok=False, problem_zh=f"/healthz 返回 HTTP {response.status_code}",
                               problem_en=f"/healthz answers HTTP {response.status_code}"), None
        api = CheckResult("api", *subject, ok=True)
        if body.get("database") is True:
            return api, CheckResult("database", *database, ok=True)
        return api, CheckResult("database", *database, ok=False, problem_zh="无响应（API 报告）",
                                problem_en="does not answer (the API reports)")

    def _database_direct(self) -> CheckResult:
        from linli.storage import Database

        assert self.config.database_url
        subject = ("数据库", "database")
        if self._database is None:
            self._database = Database(self.config.database_url)
        if self._database.ping():
            return CheckResult("database", *subject, ok=True)
        return CheckResult("database", *subject, ok=False, problem_zh="无响应（直连检查）",
                           problem_en="does not answer (checked directly)")

    # ---- one round

    def run_once(self) -> Round:
        now = self.clock.now()
        results = self.check(now)
        alerts = self.state.evaluate(results, now)
        retry, self._pending = self._pending, []
        for alert, channel in retry:
            if now - alert.at <= PENDING_MAX_AGE and not self.sender.deliver(alert, channel):
                self._pending.append((alert, channel))
        for alert in alerts:
            log.warning("%s", alert.text)
            for channel in self.sender.channels:
                if not self.sender.deliver(alert, channel):
                    log.error("could not deliver the alert to %s; will retry on the next rounds", channel)
                    self._pending.append((alert, channel))
        return Round(results, alerts)


# --------------------------------------------------------------------------- the command


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linli watchdog",
        description="Watch the gateway (heartbeat), the MQTT broker, the API and the database from another machine, "
                    "and alert WeCom group robots / webhooks directly over HTTP when one stops answering.",
    )
    parser.add_argument("--mqtt-url", default=os.environ.get("LINLI_MQTT_URL"),
                        help="broker to probe and to hear heartbeats on, mqtt:// or mqtts:// (default: $LINLI_MQTT_URL)")
    parser.add_argument("--mqtt-username", default=os.environ.get("LINLI_WATCHDOG_MQTT_USERNAME"),
                        help="broker account (default: $LINLI_WATCHDOG_MQTT_USERNAME)")
    parser.add_argument("--mqtt-password", default=os.environ.get("LINLI_WATCHDOG_MQTT_PASSWORD"),
                        help="its password (better: $LINLI_WATCHDOG_MQTT_PASSWORD, not on the command line)")
    parser.add_argument("--gateway-id", action="append", default=[],
                        help=f"a gateway's LINLI_MQTT_CLIENT_ID to expect heartbeats from (repeatable; "
                             f"default {DEFAULT_GATEWAY_ID})")
    parser.add_argument("--max-silence", type=float, default=DEFAULT_MAX_SILENCE_S,
                        help="seconds without a heartbeat before alerting (default 60; the gateway beats every 10)")
    parser.add_argument("--api-url", default=None, help="the API's base URL, e.g. http://10.0.0.5:8000 (checks /healthz)")
    parser.add_argument("--database-url", default=None, help="check the database directly too (SQLAlchemy URL)")
    parser.add_argument("--alert-webhook", action="append", default=[],
                        help="POST alerts as JSON to this URL (repeatable; also $LINLI_WATCHDOG_WEBHOOKS, comma-separated)")
    parser.add_argument("--alert-wecom", action="append", default=[],
                        help="a WeCom group robot webhook URL (repeatable; also $LINLI_WATCHDOG_WECOM, comma-separated)")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S, help="seconds between rounds (default 15)")
    parser.add_argument("--reminder-min", type=float, default=REMINDER_EVERY.total_seconds() / 60,
                        help="remind every N minutes while a check stays bad (default 30)")
    parser.add_argument("--confirm", type=int, default=1, help="alert after N bad rounds in a row (default 1)")
    parser.add_argument("--label", default="", help="a name for this installation in the alerts, e.g. 湾美社区")
    parser.add_argument("--once", action="store_true",
                        help="one round (waiting up to --max-silence for heartbeats), then exit: 0 all well, 1 something "
                             "is down (alerts are sent for it)")
    parser.add_argument("--test-alert", action="store_true", help="send a test message to every receiver and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines carry the full URL: WeCom's key is in it
    channels = [Channel("webhook", u) for u in [*args.alert_webhook, *_env_list("LINLI_WATCHDOG_WEBHOOKS")]]
    channels += [Channel("wecom", u) for u in [*args.alert_wecom, *_env_list("LINLI_WATCHDOG_WECOM")]]
    try:
        broker = BrokerAddress.parse(args.mqtt_url, args.mqtt_username, args.mqtt_password) if args.mqtt_url else None
    except ValueError as exc:
        print(f"linli watchdog: {exc}", file=sys.stderr)
        return 2
    sender = AlertSender(channels)
    if args.test_alert:
        return _test_alert(sender, args.label)
    if broker is None and not args.api_url and not args.database_url:
        print("linli watchdog: nothing to watch: give --mqtt-url, --api-url and/or --database-url", file=sys.stderr)
        return 2
    if not channels and not args.once:
        print("linli watchdog: nowhere to alert: give --alert-wecom URL and/or --alert-webhook URL", file=sys.stderr)
        return 2
    if args.max_silence <= 0 or args.interval <= 0 or args.confirm < 1 or args.reminder_min <= 0:
        print("linli watchdog: --max-silence, --interval, --reminder-min and --confirm must be positive", file=sys.stderr)
        return 2
    config = WatchdogConfig(
        broker=broker, gateway_ids=(args.gateway_id or [DEFAULT_GATEWAY_ID]) if broker else [],
        api_url=args.api_url, database_url=args.database_url, max_silence=timedelta(seconds=args.max_silence),
    )
    state = WatchdogState(reminder_every=timedelta(minutes=args.reminder_min), confirm=args.confirm, label=args.label)
    watchdog = Watchdog(config, sender=sender, state=state)
    watching = [str(broker)] if broker else []
    watching += [f"gateway {g}" for g in config.gateway_ids]
    watching += [f"API {args.api_url}"] if args.api_url else []
    watching += ["database (direct)"] if args.database_url else []
    log.info("watching %s; alerting %s", ", ".join(watching), ", ".join(map(str, channels)) or "nobody (--once)")
    watchdog.start()
    try:
        if args.once:
            return _once(watchdog, args.max_silence)
        return _forever(watchdog, args.interval)
    finally:
        watchdog.close()


def _test_alert(sender: AlertSender, label: str) -> int:
    if not sender.channels:
        print("linli watchdog: give --alert-wecom URL and/or --alert-webhook URL to test", file=sys.stderr)
        return 2
    result = CheckResult("test", f"看门狗 {socket.gethostname()}", f"watchdog on {socket.gethostname()}", ok=False,
                         problem_zh="测试消息，无需处理", problem_en="test message, nothing to do")
    alert = Alert("test", "down", SystemClock().now(), alert_text("down", result, label=label), result)
    failed = [str(c) for c in sender.channels if not sender.deliver(alert, c)]
    sender.close()
    for channel in sender.channels:
        print(f"{channel}: {'FAILED' if str(channel) in failed else 'delivered'}")
    return 1 if failed else 0


def _once(watchdog: Watchdog, max_silence_s: float) -> int:
    if watchdog.listener is not None and watchdog.wait_listening(PROBE_TIMEOUT_S):
        deadline = time.monotonic() + max_silence_s + 1
        listener = watchdog.listener
        while time.monotonic() < deadline and any(listener.last_arrival(g) is None for g in listener.gateway_ids):
            time.sleep(0.2)
    outcome = watchdog.run_once()
    for result in outcome.results:
        status = "unknown" if result.ok is None else "ok" if result.ok else f"DOWN: {result.problem_en}"
        print(f"{result.key}: {status}")
    return 1 if any(r.ok is False for r in outcome.results) else 0


def _forever(watchdog: Watchdog, interval_s: float) -> int:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.is_set():
        started = time.monotonic()
        try:
            watchdog.run_once()
        except Exception:  # the watchdog must outlive any one bad round
            log.exception("a watchdog round failed")
        stop.wait(max(0.0, interval_s - (time.monotonic() - started)))
    log.info("watchdog stopped")
    return 0
