"""Sending one notification through one channel, and reading the receiver's answer.

Each ``send_*`` builds the request the receiver documents, sends it, and turns the answer into a
:class:`SendResult`: sent, or failed with the receiver's error and whether trying again can help.
The robots answer HTTP 200 even when they refuse a message; their ``errcode`` / ``code`` says so:

- WeCom (企业微信): ``{"errcode": 0, "errmsg": "ok"}``; 45009 is its rate limit (20 messages a minute).
- DingTalk (钉钉): ``{"errcode": 0, "errmsg": "ok"}``; 130101 "send too fast" (20 a minute, then 10
  minutes refused); 310000 a bad signature, timestamp, keyword or IP.
- Feishu (飞书): ``{"code": 0, "msg": "success"}``; 9499 / 11232 its rate limits (100 a minute, 5 a
  second); 19021 a signature or timestamp refused.

Errors carry no secret: every text is passed through the channel's :class:`~linli.notify.config.Redactor`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import smtplib
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import httpx

from linli.notify.config import (
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    Redactor,
    SmsChannel,
    WebhookChannel,
    WeComChannel,
    resolve,
)
from linli.notify.render import shorten

HTTP_TIMEOUT = httpx.Timeout(5.0, connect=3.0)
SMTP_TIMEOUT_S = 10.0

# How long a robot refuses messages once its limit is reached (their documented windows).
RATE_WINDOW: dict[str, timedelta] = {
    "wecom": timedelta(minutes=1),
    "dingtalk": timedelta(minutes=10),  # DingTalk: "more than 20 a minute: refused for 10 minutes"
    "feishu": timedelta(minutes=1),
    "sms": timedelta(minutes=1),
    "webhook": timedelta(minutes=1),
}
WECOM_RATE_LIMITED = frozenset({45009})
WECOM_PERMANENT = frozenset({93000})  # invalid webhook url (wrong or deleted key)
DINGTALK_RATE_LIMITED = frozenset({130101})
DINGTALK_PERMANENT = frozenset({310000})  # sign not match / invalid timestamp / keywords / ip
FEISHU_RATE_LIMITED = frozenset({9499, 11232})
FEISHU_PERMANENT = frozenset({19021})  # sign match fail or timestamp not within one hour

# Receivers' size limits, in bytes of UTF-8.
WECOM_MARKDOWN_MAX = 4096
WECOM_TEXT_MAX = 2048
ROBOT_BODY_MAX = 18_000


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one outbox row asks to send."""

    title: str
    text: str
    markdown: str
    short: str
    link: str
    lang: str
    recipient: str
    notice: str
    ticket_id: int
    site: str
    team: str


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    error: str | None = None  # the receiver's answer or the transport error, secrets redacted
    permanent: bool = False  # trying again cannot help (wrong secret, refused address)
    rate_limited: bool = False
    retry_after: timedelta | None = None
    transport: bool = False  # no answer at all (refused, timed out)

    @classmethod
    def sent(cls) -> SendResult:
        return cls(ok=True)


SmtpFactory = Callable[[EmailChannel], smtplib.SMTP]
Environ = Mapping[str, str] | None


def default_smtp_factory(channel: EmailChannel) -> smtplib.SMTP:
    if channel.ssl:
        return smtplib.SMTP_SSL(channel.host, channel.port, timeout=SMTP_TIMEOUT_S)
    return smtplib.SMTP(channel.host, channel.port, timeout=SMTP_TIMEOUT_S)


def redactor_for(channel: Any, environ: Environ = None) -> Redactor:
    """Hides the channel's secrets, and the key-like parts of its addresses, from any text."""
    secrets: list[str] = list(channel.secrets(environ))
    for value in list(secrets):
        parts = urllib.parse.urlsplit(value) if "://" in value else None
        if parts is None:
            continue
        secrets.extend(v for _, v in urllib.parse.parse_qsl(parts.query) if len(v) >= 8)
        tail = parts.path.rstrip("/").rsplit("/", 1)[-1]
        if len(tail) >= 16:  # Feishu's hook token is the last path segment
            secrets.append(tail)
    return Redactor(secrets)


# --- signatures -------------------------------------------------------------------------------


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk: base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}")); sent URL-encoded."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu: base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b"")), timestamp in seconds."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def webhook_signature(secret: str, timestamp_s: int, body: bytes) -> str:
    """Our generic webhook: "sha256=" + hex HMAC-SHA256(secret, f"{timestamp}." + body)."""
    mac = hmac.new(secret.encode(), f"{timestamp_s}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


# --- helpers ----------------------------------------------------------------------------------


def _cut_bytes(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "…"


def _post_json(http: httpx.Client, method: str, url: str, body: Any, *,
               headers: Mapping[str, str] | None = None) -> httpx.Response:
    content = json.dumps(body, ensure_ascii=False).encode()
    head = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
    return http.request(method, url, content=content, headers=head)


def _transport_error(exc: Exception, redact: Redactor) -> SendResult:
    return SendResult(ok=False, error=redact(f"{type(exc).__name__}: {exc}"), transport=True)


def _http_failure(kind: str, response: httpx.Response, redact: Redactor) -> SendResult | None:
    """The result of a non-2xx answer, or None for a 2xx one."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    text = redact(f"HTTP {status}: {response.text[:300]}")
    if status == 429:
        after = response.headers.get("Retry-After", "")
        window = timedelta(seconds=int(after)) if after.isdigit() else RATE_WINDOW[kind]
        return SendResult(ok=False, error=text, rate_limited=True, retry_after=window)
    if status >= 500 or status == 408:
        return SendResult(ok=False, error=text)
    return SendResult(ok=False, error=text, permanent=True)


def _robot_answer(kind: str, response: httpx.Response, redact: Redactor) -> SendResult:
    failure = _http_failure(kind, response, redact)
    if failure is not None:
        return failure
    try:
        answer = response.json()
    except ValueError:
        return SendResult(ok=False, error=redact(f"HTTP {response.status_code}, not JSON: {response.text[:200]}"))
    if not isinstance(answer, dict):
        return SendResult(ok=False, error=redact(f"unexpected answer: {response.text[:200]}"))
    if kind == "feishu":
        code = answer.get("code", answer.get("StatusCode"))
        message = answer.get("msg", answer.get("StatusMessage", ""))
        limited, permanent = FEISHU_RATE_LIMITED, FEISHU_PERMANENT
        label = "code"
    else:
        code, message = answer.get("errcode"), answer.get("errmsg", "")
        limited = WECOM_RATE_LIMITED if kind == "wecom" else DINGTALK_RATE_LIMITED
        permanent = WECOM_PERMANENT if kind == "wecom" else DINGTALK_PERMANENT
        label = "errcode"
    if code == 0:
        return SendResult.sent()
    error = redact(f"HTTP {response.status_code} {label} {code}: {message}")
    if code in limited:
        return SendResult(ok=False, error=error, rate_limited=True, retry_after=RATE_WINDOW[kind])
    return SendResult(ok=False, error=error, permanent=code in permanent)


def _post_robot(kind: str, http: httpx.Client, url: str, body: Any, redact: Redactor) -> SendResult:
    try:
        response = _post_json(http, "POST", url, body)
    except httpx.HTTPError as exc:
        return _transport_error(exc, redact)
    return _robot_answer(kind, response, redact)


# --- the channels -----------------------------------------------------------------------------


def send_wecom(channel: WeComChannel, delivery: Delivery, http: httpx.Client, environ: Environ = None) -> SendResult:
    redact = redactor_for(channel, environ)
    url = resolve(channel.url, environ)
    if channel.msgtype == "markdown":
        body: dict[str, Any] = {"msgtype": "markdown",
                                "markdown": {"content": _cut_bytes(delivery.markdown, WECOM_MARKDOWN_MAX)}}
    else:
        text: dict[str, Any] = {"content": _cut_bytes(delivery.text, WECOM_TEXT_MAX)}
        if channel.mention_mobiles:
            text["mentioned_mobile_list"] = list(channel.mention_mobiles)
        body = {"msgtype": "text", "text": text}
    return _post_robot("wecom", http, url, body, redact)


def send_dingtalk(channel: DingTalkChannel, delivery: Delivery, http: httpx.Client, now_ms: int,
                  environ: Environ = None) -> SendResult:
    redact = redactor_for(channel, environ)
    url = resolve(channel.url, environ)
    params: dict[str, str] = {}
    if channel.secret is not None:
        params = {"timestamp": str(now_ms), "sign": dingtalk_sign(resolve(channel.secret, environ), now_ms)}
    mentions = "".join(f" @{m}" for m in channel.at_mobiles)
    at = {"atMobiles": list(channel.at_mobiles), "isAtAll": False}
    if channel.msgtype == "markdown":
        # DingTalk only notifies an @mobile that also appears in the text.
        text = _cut_bytes(delivery.markdown + (f"\n\n{mentions.strip()}" if mentions else ""), ROBOT_BODY_MAX)
        body: dict[str, Any] = {"msgtype": "markdown", "markdown": {"title": delivery.title, "text": text}, "at": at}
    else:
        body = {"msgtype": "text", "text": {"content": _cut_bytes(delivery.text + mentions, ROBOT_BODY_MAX)}, "at": at}
    if params:  # appended, not passed as `params`: httpx would replace the access_token already in the URL
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params)
    return _post_robot("dingtalk", http, url, body, redact)


def send_feishu(channel: FeishuChannel, delivery: Delivery, http: httpx.Client, now_s: int,
                environ: Environ = None) -> SendResult:
    redact = redactor_for(channel, environ)
    url = resolve(channel.url, environ)
    body: dict[str, Any] = {}
    if channel.secret is not None:
        body = {"timestamp": str(now_s), "sign": feishu_sign(resolve(channel.secret, environ), now_s)}
    if channel.msgtype == "post":
        lines = delivery.text.split("\n")[1:-1]  # the title and the link line are shown apart
        content = [[{"tag": "text", "text": line}] for line in lines]
        content.append([{"tag": "a", "text": _link_label(delivery), "href": delivery.link}])
        locale = "en_us" if delivery.lang == "en" else "zh_cn"
        body |= {"msg_type": "post", "content": {"post": {locale: {"title": delivery.title, "content": content}}}}
    else:
        body |= {"msg_type": "text", "content": {"text": _cut_bytes(delivery.text, ROBOT_BODY_MAX)}}
    return _post_robot("feishu", http, url, body, redact)


def _link_label(delivery: Delivery) -> str:
    """The label of the text's last line ("查看工单：https://..."), for a rich-text link."""
    last = delivery.text.rsplit("\n", 1)[-1]
    return last.removesuffix(delivery.link).rstrip("：: ") or delivery.link


def fill_template(template: Any, values: Mapping[str, Any]) -> Any:
    """`template` with "{phone}", "{phones}" and "{text}" filled in; a string that is exactly
    "{phones}" becomes the list of numbers."""
    if isinstance(template, str):
        if template == "{phones}":
            return list(values["phones"])
        out = template
        for key in ("phone", "text"):
            out = out.replace("{" + key + "}", str(values[key]))
        return out.replace("{phones}", ",".join(values["phones"]))
    if isinstance(template, list):
        return [fill_template(item, values) for item in template]
    if isinstance(template, dict):
        return {key: fill_template(item, values) for key, item in template.items()}
    return template


def _dig(document: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(document, dict) or part not in document:
            return None
        document = document[part]
    return document


def send_sms(channel: SmsChannel, delivery: Delivery, http: httpx.Client, environ: Environ = None) -> SendResult:
    redact = redactor_for(channel, environ)
    url = resolve(channel.url, environ)
    phones = delivery.recipient.split(",")
    text = shorten(delivery.short, delivery.link, channel.max_chars)
    values = {"phone": phones[0], "phones": phones, "text": text}
    body = fill_template(channel.body, values)
    headers = {name: resolve(value, environ) for name, value in channel.headers.items()}
    try:
        if channel.method == "GET":
            params = {str(k): str(v) for k, v in body.items()} if isinstance(body, dict) else {}
            response = http.get(url, params=params, headers=headers)
        else:
            response = _post_json(http, channel.method, url, body, headers=headers)
    except httpx.HTTPError as exc:
        return _transport_error(exc, redact)
    failure = _http_failure("sms", response, redact)
    if failure is not None:
        return failure
    if channel.success is not None:
        try:
            answer = response.json()
        except ValueError:
            return SendResult(ok=False, error=redact(f"HTTP {response.status_code}, not JSON: {response.text[:200]}"))
        got = _dig(answer, channel.success.field)
        if got != channel.success.equals:
            return SendResult(ok=False, error=redact(
                f"HTTP {response.status_code} {channel.success.field}={got!r}: {response.text[:200]}"))
    return SendResult.sent()


def send_webhook(channel: WebhookChannel, delivery: Delivery, http: httpx.Client, now_s: int,
                 environ: Environ = None) -> SendResult:
    redact = redactor_for(channel, environ)
    url = resolve(channel.url, environ)
    document = {
        "type": "linli.notification", "notice": delivery.notice, "site": delivery.site, "team": delivery.team,
        "ticket_id": delivery.ticket_id, "title": delivery.title, "text": delivery.text,
        "markdown": delivery.markdown, "link": delivery.link, "lang": delivery.lang,
    }
    content = json.dumps(document, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json; charset=utf-8", "X-Linli-Timestamp": str(now_s)}
    if channel.secret is not None:
        headers["X-Linli-Signature"] = webhook_signature(resolve(channel.secret, environ), now_s, content)
    try:
        response = http.post(url, content=content, headers=headers)
    except httpx.HTTPError as exc:
        return _transport_error(exc, redact)
    return _http_failure("webhook", response, redact) or SendResult.sent()


def send_email(channel: EmailChannel, delivery: Delivery, smtp_factory: SmtpFactory, now: datetime,
               environ: Environ = None) -> SendResult:
    redact = redactor_for(channel, environ)
    message = EmailMessage()
    message["Subject"] = delivery.title
    message["From"] = channel.sender
    message["To"] = delivery.recipient
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=channel.sender.rsplit("@", 1)[-1])
    message.set_content(delivery.text)
    try:
        password = resolve(channel.password, environ) if channel.password is not None else None
        smtp = smtp_factory(channel)
        try:
            if channel.starttls and not channel.ssl:
                smtp.starttls()
            if channel.username is not None and password is not None:
                smtp.login(channel.username, password)
            smtp.send_message(message)
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
    except (smtplib.SMTPAuthenticationError, smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused,
            smtplib.SMTPNotSupportedError) as exc:
        return SendResult(ok=False, error=redact(f"{type(exc).__name__}: {exc}"), permanent=True)
    except smtplib.SMTPResponseException as exc:
        permanent = 500 <= exc.smtp_code < 600
        return SendResult(ok=False, error=redact(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"), permanent=permanent)
    except (smtplib.SMTPException, OSError) as exc:  # TimeoutError is an OSError
        return SendResult(ok=False, error=redact(f"{type(exc).__name__}: {exc}"), transport=True)
    return SendResult.sent()

