"""Limits on what one client may send: how often (a sliding-window rate limiter per client address,
on the app's injected clock) and how much (a request body cut off past a size).

Used by the public reports and hazards (``api.routes.public``), sign-in (``api.routes.auth``) and
staff's photo uploads (``api.routes.photos``).
"""

from __future__ import annotations

import ipaddress
import math
import threading
from collections import deque
from datetime import datetime, timedelta

from fastapi import HTTPException, Request, status
from starlette.types import Message

from linli.clock import Clock

LIMIT_WINDOW = timedelta(hours=1)
_FORGET_AFTER_KEYS = 10_000


class RateLimiter:
    """At most `limit` hits per key in a sliding window, on the injected clock.

    In-process: each API process counts its own clients (run one process behind the proxy, or
    divide the limits by the number of processes)."""

    def __init__(self, clock: Clock, window: timedelta = LIMIT_WINDOW) -> None:
        self._clock, self._window = clock, window
        self._hits: dict[tuple[str, ...], deque[datetime]] = {}
        self._lock = threading.Lock()

    def hit(self, key: tuple[str, ...], limit: int, *, count: bool = True) -> timedelta | None:
        """Count one hit (unless `count` is False: only look); None when allowed, else how long until
        the oldest hit leaves the window."""
        now = self._clock.now()
        with self._lock:
            if len(self._hits) > _FORGET_AFTER_KEYS:  # forget clients that went quiet
                self._hits = {k: q for k, q in self._hits.items() if q and q[-1] > now - self._window}
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self._window:
                hits.popleft()
            if len(hits) >= limit:
                return hits[0] + self._window - now
            if count:
                hits.append(now)
            return None

    def take_back(self, key: tuple[str, ...]) -> None:
        """Uncount the latest hit of `key`: a request counted up front that turned out not to count."""
        with self._lock:
            hits = self._hits.get(key)
            if hits:
                hits.pop()


_LIMITERS_LOCK = threading.Lock()


def get_limiter(request: Request, name: str) -> RateLimiter:
    """The app's limiter called `name` (one per kind of request: its keys are its own), made on first
    use on the app's clock."""
    state = request.app.state
    with _LIMITERS_LOCK:
        limiters: dict[str, RateLimiter] | None = getattr(state, "rate_limiters", None)
        if limiters is None:
            limiters = state.rate_limiters = {}
        limiter = limiters.get(name)
        if limiter is None:
            limiter = limiters[name] = RateLimiter(state.clock)
    return limiter


def client_key(request: Request) -> str:
    """The client's address (uvicorn takes it from X-Forwarded-For behind a trusted proxy); an IPv6
    client counts by its /64, which one household usually has whole."""
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def enforce(limiter: RateLimiter, key: tuple[str, ...], limit: int, refusal: str, *, count: bool = True) -> None:
    """Count a hit of `key` (unless `count` is False); over `limit`, 429 with `Retry-After` and
    "<refusal>; try again in N minutes"."""
    wait = limiter.hit(key, limit, count=count)
    if wait is not None:
        seconds = max(1, math.ceil(wait.total_seconds()))
        minutes = math.ceil(seconds / 60)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, f"{refusal}; try again in {minutes} minute{'' if minutes == 1 else 's'}",
            headers={"Retry-After": str(seconds)},
        )


# ---------------------------------------------------------------- request size


class BodyTooLarge(Exception):
    """Raised while a `body_limited` request's body is read, as soon as it passes its limit."""


def body_limited(request: Request, limit: int) -> Request:
    """`request` whose body may be at most `limit` bytes: 413 before reading when it says it is
    larger, and `BodyTooLarge` as soon as more arrives when it does not say (chunked)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"the request is larger than {limit // (1024 * 1024)} MiB")
    received = 0
    upstream = request.receive

    async def receive() -> Message:
        nonlocal received
        message = await upstream()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge
        return message

    return Request(request.scope, receive)
