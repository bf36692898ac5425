"""Live updates over Server-Sent Events: the signed-in stream and the public one (``docs/live-updates.md``).

The browser's EventSource cannot set headers, so the signed-in stream also takes the token as
``?token=``. A stream ends when the client goes, when the token expires (the client signs in again),
when it falls too far behind, or when the server stops; EventSource reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import jwt
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.deps import DatabaseDep, SettingsDep, SitesDep, visible_site_ids
from api.live import Audience, LiveHub, Stream
from api.security import InvalidToken, username_from_token
from api.ticket_actions import team_scoped
from linli.storage import User
from linli.storage.users import get_user

router = APIRouter(tags=["live"])

RETRY_MS = 5000  # how long EventSource waits before it reconnects
BATCH = 100  # frames written at once when several are waiting
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering (nginx)
_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "an endless `text/event-stream`", "content": {"text/event-stream": {}}},
}


class EventStreamResponse(StreamingResponse):
    """A stream that stops as soon as the client disconnects, whatever ASGI version the server
    speaks (Starlette stops listening for the disconnect from ASGI 2.4 on and would then notice it
    only at the next write)."""

    media_type = "text/event-stream"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def stream() -> None:
                with contextlib.suppress(OSError):  # the client went while we wrote
                    await self.stream_response(send)
                group.cancel_scope.cancel()

            group.start_soon(stream)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()


@dataclass(frozen=True, slots=True)
class Viewer:
    user: User  # read in a session closed since (its attributes stay loaded)
    expires_at: float  # wall-clock time the token expires: the stream ends then


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def stream_viewer(
    request: Request, db: DatabaseDep, settings: SettingsDep,
    token: Annotated[str | None, Query(description="the access token, for EventSource (it cannot send headers)",
                                       max_length=4096)] = None,
) -> Viewer:
    """The account of a Bearer header or of ``?token=`` (the header wins)."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        token = credentials.strip()
    if not token:
        raise _unauthorized("sign in: send the access token as a Bearer header or as ?token=")
    try:
        username = username_from_token(token, settings)
        expires_at = float(jwt.decode(token, options={"verify_signature": False})["exp"])  # checked just above
    except InvalidToken as exc:
        raise _unauthorized(str(exc)) from exc
    with db.session() as session:  # a short session: the stream itself holds none
        user = get_user(session, username)
        if user is None or user.disabled:
            raise _unauthorized("the account of this token no longer exists or is disabled")
        return Viewer(user=user, expires_at=expires_at)


ViewerDep = Annotated[Viewer, Depends(stream_viewer)]


def _hub(request: Request) -> LiveHub:
    hub: LiveHub = request.app.state.live
    return hub


async def _frames(hub: LiveHub, stream: Stream, *, ends_at: float | None = None) -> AsyncIterator[str]:
    """The stream's text: a first comment at once, then events as they come, keep-alives between."""
    try:
        yield f"retry: {RETRY_MS}\n: connected\n\n"
        while True:
            timeout = hub.keepalive_s
            if ends_at is not None:
                left = ends_at - time.time()
                if left <= 0:
                    return  # the token expired: the client signs in again
                timeout = min(timeout, left)
            try:
                text = await asyncio.wait_for(stream.queue.get(), timeout)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            texts: list[str] = []
            while text is not None:
                texts.append(text)
                if len(texts) >= BATCH or stream.queue.empty():
                    break
                text = stream.queue.get_nowait()
            if texts:
                yield "".join(texts)
            if text is None:  # ended: too far behind, or the server stops
                return
    finally:
        hub.close(stream)


@router.get("/events", response_class=EventStreamResponse, responses={
    **_STREAM_DOC, 401: {"description": "no token, or a bad or expired one"}})
async def private_events(request: Request, viewer: ViewerDep, sites: SitesDep) -> EventStreamResponse:
    """Server-Sent Events of your sites: `ticket` (new and changed tickets; a technician: their teams'
    only), `device` (online, health and key readings) and `command` (a command sent to a device, then
    acked, failed or expired). Formats: `docs/live-updates.md`."""
    user = viewer.user
    teams = frozenset(user.teams or ()) if team_scoped(user) else None
    hub = _hub(request)
    stream = hub.open(Audience(sites=frozenset(visible_site_ids(user, sites)), teams=teams))
    return EventStreamResponse(_frames(hub, stream, ends_at=viewer.expires_at), headers=STREAM_HEADERS)


@router.get("/public/events", response_class=EventStreamResponse, responses={
    **_STREAM_DOC, 404: {"description": "no such site"}})
async def public_events(
    request: Request, sites: SitesDep, site: Annotated[str, Query(description="site id, e.g. wanmei", max_length=64)],
) -> EventStreamResponse:
    """Server-Sent Events of the public view of a site: each device's state in residents' words
    (`device`) and repairs (`ticket`: status only). Never names, notes, contacts or acknowledgements."""
    if sites.get(site) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"site {site!r} not found")
    hub = _hub(request)
    stream = hub.open(Audience(sites=frozenset({site}), public=True))
    return EventStreamResponse(_frames(hub, stream), headers=STREAM_HEADERS)
