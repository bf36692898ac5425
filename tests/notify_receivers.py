"""Local stand-ins for the notification receivers: real HTTP (and SMTP) servers on free ports.

They answer like the real ones (the request and answer formats in linli.notify.channels'
docstring): WeCom, DingTalk and Feishu robots check their key or token, DingTalk and Feishu check
their signature (a wrong secret gets their real error answer), the robots enforce their rate
limits on the test's clock (the 21st message of a minute gets the real rate-limit code with HTTP
200; DingTalk then refuses for 10 minutes), and any of them can be told to fail the next N requests
with HTTP 200 + an error code, or with a 500. They record every request and the messages accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from linli.clock import Clock

Kind = Literal["wecom", "dingtalk", "feishu", "sms", "webhook"]

DINGTALK_SIGN_ERROR = {"errcode": 310000, "errmsg": "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}
DINGTALK_TIMESTAMP_ERROR = {"errcode": 310000, "errmsg": "invalid timestamp, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}
DINGTALK_TOO_FAST = {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
DINGTALK_NO_TOKEN = {"errcode": 300001, "errmsg": "token is not exist"}
WECOM_BAD_KEY = {"errcode": 93000, "errmsg": "invalid webhook url, hint: [local receiver]"}
WECOM_TOO_FAST = {"errcode": 45009, "errmsg": "api freq out of limit, hint: [local receiver]"}
WECOM_BAD_TYPE = {"errcode": 40008, "errmsg": "invalid message type, hint: [local receiver]"}
FEISHU_SIGN_ERROR = {"code": 19021, "data": {}, "msg": "sign match fail or timestamp is not within one hour from current time"}
FEISHU_TOO_FAST = {"code": 9499, "data": {}, "msg": "too many request"}
FEISHU_OK = {"code": 0, "data": {}, "msg": "success"}
OK = {"errcode": 0, "errmsg": "ok"}


@dataclass(frozen=True)
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: datetime

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class _Failure:
    remaining: int
    status: int
    answer: dict[str, Any]


@dataclass
class Receiver:
    """One receiver; `url` is what a channel's config points at (key or token included)."""

    kind: Kind
    clock: Clock
    secret: str | None = None
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    limit: int = 20  # messages per `window`
    window: timedelta = timedelta(minutes=1)
    penalty: timedelta = timedelta(0)  # refused this long once the limit is hit (DingTalk: 10 min)
    per_second: int | None = None  # Feishu: 5 a second
    requests: list[Received] = field(default_factory=list)
    accepted: list[Received] = field(default_factory=list)
    _sent_at: deque[datetime] = field(default_factory=deque)
    _blocked_until: datetime | None = None
    _failures: list[_Failure] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- control --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        base = f"http://127.0.0.1:{self.port}"
        return {
            "wecom": f"{base}/cgi-bin/webhook/send?key={self.token}",
            "dingtalk": f"{base}/robot/send?access_token={self.token}",
            "feishu": f"{base}/open-apis/bot/v2/hook/{self.token}",
            "sms": f"{base}/sms/send",
            "webhook": f"{base}/hooks/linli",
        }[self.kind]

    def fail_next(self, count: int, *, status: int = 200, code: int = 500001, message: str = "system busy") -> None:
        """The next `count` requests get HTTP `status`; with 200, the kind's error answer with `code`."""
        if self.kind == "feishu":
            answer: dict[str, Any] = {"code": code, "data": {}, "msg": message}
        elif self.kind == "sms":
            answer = {"code": "ERROR", "message": message}
        else:
            answer = {"errcode": code, "errmsg": message}
        if status != 200:
            answer = {"error": message}
        with self._lock:
            self._failures.append(_Failure(count, status, answer))

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._serve()

            def do_PUT(self) -> None:
                self._serve()

            def do_GET(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urllib.parse.urlsplit(self.path)
                request = Received(parts.path, dict(urllib.parse.parse_qsl(parts.query)),
                                   {k.lower(): v for k, v in self.headers.items()}, body, receiver.clock.now())
                status, answer = receiver.answer(request)
                data = json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True, name=f"receiver-{self.kind}").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- behaviour ------------------------------------------------------------------------------

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(request)
            refused = self._identity(request)
            if refused is not None:  # robots answer 200 with their code; plain HTTP receivers say 401
                return (401 if self.kind in ("sms", "webhook") else 200), refused
            for failure in self._failures:
                if failure.remaining > 0:
                    failure.remaining -= 1
                    return failure.status, failure.answer
            limited = self._rate_limit(request.at)
            if limited is not None:
                return 200, limited
            problem = self._content(request)
            if problem is not None:
                return problem
            self._sent_at.append(request.at)
            self.accepted.append(request)
            return 200, FEISHU_OK if self.kind == "feishu" else (
                {"code": "OK", "id": secrets.token_hex(4)} if self.kind == "sms" else
                {"ok": True} if self.kind == "webhook" else OK)

    def _identity(self, request: Received) -> dict[str, Any] | None:
        """The key, token and signature checks, answered as the real receiver answers them."""
        if self.kind == "wecom" and request.query.get("key") != self.token:
            return WECOM_BAD_KEY
        if self.kind == "dingtalk":
            if request.query.get("access_token") != self.token:
                return DINGTALK_NO_TOKEN
            if self.secret is not None:
                stamp, sign = request.query.get("timestamp", ""), request.query.get("sign", "")
                if not stamp.isdigit() or abs(int(stamp) / 1000 - time.time()) > 3600:
                    return DINGTALK_TIMESTAMP_ERROR
                mac = hmac.new(self.secret.encode(), f"{stamp}\n{self.secret}".encode(), hashlib.sha256)
                if not hmac.compare_digest(sign, base64.b64encode(mac.digest()).decode()):
                    return DINGTALK_SIGN_ERROR
        if self.kind == "feishu":
            if not request.path.endswith("/" + self.token):
                return {"code": 19001, "data": {}, "msg": "param invalid: incoming webhook access token invalid"}
            if self.secret is not None:
                body = request.json or {}
                stamp, sign = str(body.get("timestamp", "")), str(body.get("sign", ""))
                if not stamp.isdigit() or abs(int(stamp) - time.time()) > 3600:
                    return FEISHU_SIGN_ERROR
                mac = hmac.new(f"{stamp}\n{self.secret}".encode(), b"", hashlib.sha256)
                if not hmac.compare_digest(sign, base64.b64encode(mac.digest()).decode()):
                    return FEISHU_SIGN_ERROR
        if self.kind == "webhook" and self.secret is not None:
            stamp = request.headers.get("x-linli-timestamp", "")
            mac = hmac.new(self.secret.encode(), f"{stamp}.".encode() + request.body, hashlib.sha256)
            if not hmac.compare_digest(request.headers.get("x-linli-signature", ""), "sha256=" + mac.hexdigest()):
                return {"error": "bad signature"}
        if self.kind == "sms" and self.secret is not None and request.headers.get("authorization") != f"Bearer {self.secret}":
            return {"code": "AUTH", "message": "bad api key"}
        return None

    def _rate_limit(self, at: datetime) -> dict[str, Any] | None:
        if self.kind not in ("wecom", "dingtalk", "feishu"):
            return None
        too_fast = {"wecom": WECOM_TOO_FAST, "dingtalk": DINGTALK_TOO_FAST, "feishu": FEISHU_TOO_FAST}[self.kind]
        if self._blocked_until is not None and at < self._blocked_until:
            return too_fast
        while self._sent_at and self._sent_at[0] <= at - self.window:
            self._sent_at.popleft()
        in_second = sum(1 for t in self._sent_at if t > at - timedelta(seconds=1))
        if len(self._sent_at) >= self.limit or (self.per_second is not None and in_second >= self.per_second):
            if self.penalty:
                self._blocked_until = at + self.penalty
            return too_fast
        return None

    def _content(self, request: Received) -> tuple[int, dict[str, Any]] | None:
        body = request.json
        if self.kind == "wecom":
            kind = body.get("msgtype")
            if kind not in ("text", "markdown") or not body.get(kind, {}).get("content"):
                return 200, WECOM_BAD_TYPE
        if self.kind == "dingtalk" and body.get("msgtype") not in ("text", "markdown"):
            return 200, {"errcode": 40035, "errmsg": "缺少参数 msgtype"}
        if self.kind == "feishu" and body.get("msg_type") not in ("text", "post", "interactive"):
            return 200, {"code": 19002, "data": {}, "msg": "params error, msg_type need"}
        if self.kind == "webhook" and self.secret is not None and not request.headers.get("x-linli-signature"):
            return 401, {"error": "unsigned"}
        return None

    # --- reading --------------------------------------------------------------------------------

    def texts(self) -> list[str]:
        """The message text of every accepted request (markdown or plain), for assertions."""
        out: list[str] = []
        for request in self.accepted:
            body = request.json
            out.append(json.dumps(body, ensure_ascii=False))
        return out


@contextmanager
def receiver(kind: Kind, clock: Clock, **options: Any) -> Iterator[Receiver]:
    """A started receiver, stopped after. DingTalk gets its 10-minute penalty, Feishu its limits."""
    if kind == "dingtalk":
        options.setdefault("penalty", timedelta(minutes=10))
    if kind == "feishu":
        options.setdefault("limit", 100)
        options.setdefault("per_second", 5)
    server = Receiver(kind, clock, **options).start()
    try:
        yield server
    finally:
        server.stop()


# --- SMTP -------------------------------------------------------------------------------------------


@dataclass
class MailRecord:
    sender: str
    recipients: list[str]
    data: bytes


class _Recorder:
    def __init__(self) -> None:
        self.messages: list[MailRecord] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(MailRecord(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


class SmtpReceiver:
    """aiosmtpd on a free port; with `password`, AUTH LOGIN/PLAIN is required (no TLS, tests only)."""

    def __init__(self, username: str | None = None, password: str | None = None) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.recorder = _Recorder()
        kwargs: dict[str, Any] = {}
        if password is not None:
            def check(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
                ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == username \
                    and auth_data.password.decode() == password
                return AuthResult(success=ok, handled=False)
            kwargs = {"authenticator": check, "auth_require_tls": False, "auth_required": True}
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port, **kwargs)

    @property
    def messages(self) -> list[MailRecord]:
        return self.recorder.messages

    def start(self) -> SmtpReceiver:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

