"""Where a team's notifications go: the channels a site file lists under ``teams.<team>.channels``.

Each channel is one entry of the :data:`ChannelConfig` union, told apart by ``type``. Secrets
(webhook addresses carry their key, signing secrets, passwords) may be written as ``${ENV_VAR}``:
they are resolved when a message is sent, so the site file can be shared without them, and they are
never logged or recorded (:func:`resolve`, :class:`Redactor`).

This module imports nothing from ``linli.site`` (which imports it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import time
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from linli.catalog import Severity

CHANNEL_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")

Lang = Literal["zh", "en"]
# What a notification is about; the ticket event types that reach people, plus escalations and reminders.
Notice = Literal[
    "opened", "acknowledged", "started", "held", "resumed", "resolved", "verified", "closed", "cancelled",
    "reopened", "severity_raised", "signal_cleared", "signal_returned", "assigned", "commented",
    "escalated", "overdue", "reminder",
]
NOTICES: tuple[str, ...] = Notice.__args__  # type: ignore[attr-defined]


class MissingSecret(Exception):
    """A ``${ENV_VAR}`` secret whose variable is not set; the message names the variable only."""


def resolve(value: str, environ: Mapping[str, str] | None = None) -> str:
    """`value` with every ``${NAME}`` replaced by that environment variable ("Bearer ${SMS_KEY}" works)."""
    env = os.environ if environ is None else environ

    def lookup(match: re.Match[str]) -> str:
        resolved = env.get(match[1])
        if not resolved:
            raise MissingSecret(f"environment variable {match[1]} is not set")
        return resolved

    return _ENV_REF.sub(lookup, value)


def referenced(value: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of the environment variables `value` refers to (for redaction)."""
    env = os.environ if environ is None else environ
    return [env[name] for name in _ENV_REF.findall(value) if env.get(name)]


class Redactor:
    """Replaces every secret it was given by ``***`` in a text bound for a log or the database."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        # Longest first, so a URL is hidden whole before a key inside it.
        self._secrets = sorted({s for s in secrets or [] if len(s) >= 4}, key=len, reverse=True)

    def add(self, *secrets: str | None) -> None:
        self._secrets = sorted({*self._secrets, *(s for s in secrets if s and len(s) >= 4)}, key=len, reverse=True)

    @property
    def secrets(self) -> list[str]:
        return list(self._secrets)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def parse_hours(text: str) -> tuple[time, time]:
    """'22:00-07:00' (local time; may wrap midnight) as (start, end)."""
    match = _HOURS.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an hours range such as '22:00-07:00'")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
        raise ValueError(f"{text!r} is not an hours range such as '22:00-07:00'")
    end = time(0, 0) if h2 == 24 else time(h2, m2)
    return time(h1, m1), end


def in_hours(moment: time, hours: str) -> bool:
    start, end = parse_hours(hours)
    if start == end:
        return True  # '00:00-24:00' and the like: all day
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end  # wraps midnight


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Field names whose values are secrets (never logged, redacted from recorded errors).
    secret_fields: ClassVar[tuple[str, ...]] = ("url",)

    name: Annotated[str, Field(pattern=CHANNEL_NAME, description="unique within the team; names the channel in records")]
    lang: Lang = Field("zh", description="message language: zh (default) or en")
    severities: list[Severity] | None = Field(None, description="only tickets of these severities; absent: all")
    events: list[Notice] | None = Field(None, description="only these notices (opened, escalated...); absent: all")
    hours: str | None = Field(None, description="only in these local hours, e.g. '22:00-07:00'; absent: always")
    enabled: bool = True

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is not None:
            parse_hours(value)
        return value

    def recipients(self) -> list[str]:
        """One outbox row per recipient; a group robot is one recipient ("")."""
        return [""]

    def secrets(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """The secret values of this channel (resolved, and each variable they use), for redaction."""
        out: list[str] = []
        for name in self.secret_fields:
            value = getattr(self, name, None)
            values = list(value.values()) if isinstance(value, dict) else [value]
            for item in values:
                if isinstance(item, str):
                    out.extend(referenced(item, environ))
                    try:
                        out.append(resolve(item, environ))
                    except MissingSecret:
                        continue
        return out


class WeComChannel(_Channel):
    """企业微信 group robot: POST {"msgtype": "markdown"|"text", ...} to its webhook address (key in the query)."""

    type: Literal["wecom"]
    url: str = Field(description="https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=... (or ${ENV_VAR})")
    msgtype: Literal["markdown", "text"] = "markdown"
    mention_mobiles: list[str] = Field(default_factory=list, description="text messages: @ these mobile numbers")


class DingTalkChannel(_Channel):
    """钉钉 robot: signed with timestamp + HMAC-SHA256 `sign` query parameters when `secret` is set."""

    type: Literal["dingtalk"]
    secret_fields: ClassVar[tuple[str, ...]] = ("url", "secret")
    url: str = Field(description="https://oapi.dingtalk.com/robot/send?access_token=... (or ${ENV_VAR})")
    secret: str | None = Field(None, description="the robot's signing secret (SEC...), or ${ENV_VAR}")
    msgtype: Literal["markdown", "text"] = "markdown"
    at_mobiles: list[str] = Field(default_factory=list)


class FeishuChannel(_Channel):
    """飞书 custom bot: timestamp + sign in the body when `secret` is set."""

    type: Literal["feishu"]
    secret_fields: ClassVar[tuple[str, ...]] = ("url", "secret")
    url: str = Field(description="https://open.feishu.cn/open-apis/bot/v2/hook/... (or ${ENV_VAR})")
    secret: str | None = Field(None, description="the bot's signing secret, or ${ENV_VAR}")
    msgtype: Literal["text", "post"] = "post"


class SmsSuccess(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(description="dotted path in the gateway's JSON answer, e.g. 'Code' or 'result.code'")
    equals: str | int | bool = Field(description="the value that means sent, e.g. 'OK' or 0")


class SmsChannel(_Channel):
    """An HTTP SMS gateway: `body` is a JSON template; "{phone}", "{phones}" and "{text}" are filled in."""

    type: Literal["sms"]
    secret_fields: ClassVar[tuple[str, ...]] = ("url", "headers")
    url: str
    method: Literal["POST", "PUT", "GET"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict, description="values may be ${ENV_VAR} (an API key)")
    body: Any = Field(default_factory=lambda: {"to": "{phone}", "text": "{text}"})
    phones: list[Annotated[str, Field(pattern=r"^\+?[0-9]{5,20}$")]] = Field(min_length=1)
    per_recipient: bool = Field(True, description="one request per phone; false: one request with {phones}")
    success: SmsSuccess | None = Field(None, description="absent: any 2xx answer means sent")
    max_chars: int = Field(300, ge=40, le=1000)

    def recipients(self) -> list[str]:
        return list(self.phones) if self.per_recipient else [",".join(self.phones)]


class WebhookChannel(_Channel):
    """Any HTTP endpoint: a JSON document per notification, optionally signed (X-Linli-Signature)."""

    type: Literal["webhook"]
    secret_fields: ClassVar[tuple[str, ...]] = ("url", "secret")
    url: str
    secret: str | None = Field(None, description="HMAC-SHA256 key for the X-Linli-Signature header, or ${ENV_VAR}")


class EmailChannel(_Channel):
    """E-mail over SMTP (STARTTLS by default, or implicit TLS with `ssl`)."""

    type: Literal["email"]
    secret_fields: ClassVar[tuple[str, ...]] = ("password",)
    host: str = Field(min_length=1)
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    password: str | None = Field(None, description="or ${ENV_VAR}")
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    to: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(min_length=1)

    def recipients(self) -> list[str]:
        return list(self.to)


ChannelConfig = Annotated[
    WeComChannel | DingTalkChannel | FeishuChannel | SmsChannel | WebhookChannel | EmailChannel,
    Field(discriminator="type"),
]


def _unique_names(channels: list[Any]) -> list[Any]:
    seen: set[str] = set()
    for channel in channels:
        if channel.name in seen:
            raise ValueError(f"two channels are named {channel.name!r}")
        seen.add(channel.name)
    return channels


ChannelList = Annotated[list[ChannelConfig], AfterValidator(_unique_names)]
