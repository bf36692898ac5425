"""Operator routes (admin, manager): what the gateway refused and why."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select
from sqlalchemy.sql.elements import ColumnElement

from api.deps import ManagerOrAdmin, SessionDep, SitesDep, visible_site_ids
from api.routes.devices import site_or_404
from api.schemas import NO_NUL, DeadLetterPublic, DeadLettersPublic
from linli.storage.models import DeadLetter

router = APIRouter(tags=["operator"])

EXCERPT_CHARS = 512


def payload_excerpt(payload: bytes | None) -> str:
    """The start of a payload as text: undecodable bytes become U+FFFD, at most 512 characters."""
    return bytes(payload or b"")[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")[:EXCERPT_CHARS]


@router.get("/dead-letters", response_model=DeadLettersPublic, responses={
    403: {"description": "this needs the role admin or manager"}, 404: {"description": "no such site among yours (`site`)"},
})
def list_dead_letters(
    *,
    session: SessionDep,
    user: ManagerOrAdmin,
    sites: SitesDep,
    reason: Annotated[
        str | None, Query(max_length=32, pattern=NO_NUL, description="only this reason, e.g. not_json, schema, unknown_device")
    ] = None,
    site: Annotated[str | None, Query(description="only this site")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> DeadLettersPublic:
    """Rejected messages, newest first. A manager sees their sites' only; an admin also sees the
    messages that named no site this server knows. `counts` ignores the reason filter."""
    visible = visible_site_ids(user, sites)
    scope: list[ColumnElement[bool]]
    if site is not None:
        scope = [DeadLetter.site == site_or_404(sites, visible, site).id]
    elif user.role == "admin":
        scope = []
    else:
        scope = [DeadLetter.site.in_(visible)]
    counts = {
        str(name): int(n)
        for name, n in session.execute(
            select(DeadLetter.reason, func.count()).where(*scope).group_by(DeadLetter.reason).order_by(DeadLetter.reason)
        ).all()
    }
    conditions = [*scope, DeadLetter.reason == reason] if reason is not None else scope
    total = session.scalar(select(func.count()).select_from(DeadLetter).where(*conditions)) or 0
    rows = session.scalars(
        select(DeadLetter).where(*conditions).order_by(DeadLetter.received_at.desc(), DeadLetter.id.desc())
        .limit(limit).offset(offset)
    ).all()
    items = [
        DeadLetterPublic(
            id=row.id, received_at=row.received_at, reason=row.reason, detail=row.detail, topic=row.topic,
            site=row.site, device_id=row.device_id, payload_excerpt=payload_excerpt(row.payload),
        )
        for row in rows
    ]
    return DeadLettersPublic(items=items, total=total, counts=counts)
