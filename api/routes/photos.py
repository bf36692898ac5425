"""Staff's photos of a repair: taken on the phone before 办结, attached by id at resolve, shown with the
ticket to whoever may see it.

- `POST /api/v1/uploads` (multipart: `ticket_id` and one `photo`) checks the photo as residents'
  photos are checked (``linli.uploads.clean_photo``: decoded in full as JPEG/PNG/WebP within the size
  and pixel limits, nothing hidden after the image's end), stores only the re-encoded pixels under
  ``tickets/<ticket id>/<random>.<ext>`` and answers the photo's id. A refused photo leaves nothing
  behind. `POST /api/v1/tickets/{id}/resolve` then takes the ids in `photos`.
- `GET /api/v1/tickets/{id}/photos/{photo_id}` serves a photo once a resolve of that ticket names it,
  to a signed-in user who may see the ticket (404 for everyone else). The key is built from the
  ticket in the URL, so an id uploaded for one ticket and named in another's resolve shows nowhere.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from api.deps import CurrentUser, SessionDep, SettingsDep, VisibleSites
from api.limits import BodyTooLarge, body_limited  # the same request-size guard as residents' photos
from api.routes.tickets import ticket_or_404
from api.routes.uploads import PhotoStoreDep, photo_response
from api.ticket_actions import Forbidden, may_work_on
from linli.storage.models import TicketRow, User
from linli.tickets import EventType, TicketStatus
from linli.uploads import PhotoLimits, PhotoRefused, PhotoStore, clean_photo

router = APIRouter(tags=["tickets"])

PHOTO_ID = re.compile(r"^([0-9a-f]{32})-(jpg|png|webp)$")
FORM_OVERHEAD = 64 * 1024  # multipart boundaries, headers and the ticket id around the photo
# Photos can be added while the repair may still be reported (resolve is allowed from these).
OPEN_FOR_PHOTOS = frozenset({TicketStatus.OPEN, TicketStatus.ACKNOWLEDGED, TicketStatus.IN_PROGRESS,
                             TicketStatus.ON_HOLD})


class StaffPhotoPublic(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{
        "id": "3f9a1c0b8e7d6a5f4e3d2c1b0a998877-jpg", "ticket_id": 12, "content_type": "image/jpeg",
        "width": 1600, "height": 1200, "bytes": 214533,
    }]}}

    id: str = Field(description="give it in `photos` of `POST /api/v1/tickets/{ticket_id}/resolve`")
    ticket_id: int
    content_type: str
    width: int = Field(description="of the stored photo (scaled down to the configured longest side)")
    height: int
    bytes: int = Field(description="size of the stored, re-encoded photo")


def photo_key(ticket_id: int, photo_id: str) -> str | None:
    """The store key of a photo id of a ticket, or None when the id is not one of ours."""
    match = PHOTO_ID.match(photo_id)
    return f"tickets/{ticket_id}/{match.group(1)}.{match.group(2)}" if match else None


def photo_url(ticket_id: int, photo_id: str) -> str:
    return f"/api/v1/tickets/{ticket_id}/photos/{photo_id}"


def resolved_photos(row: TicketRow) -> set[str]:
    """Every photo id a resolve of the ticket named (a reopened ticket keeps its earlier ones)."""
    return {p for e in row.events if e.type == EventType.RESOLVED.value
            for p in (e.data or {}).get("photos", ()) if isinstance(p, str)}


async def _read_form(request: Request, max_photo: int) -> tuple[str, bytes]:
    """The `ticket_id` field and the `photo` file; 413 past the size limit, 415/422 for anything else."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "multipart/form-data":
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send multipart/form-data with `ticket_id` and `photo`")
    ticket_id, photo = "", b""
    try:
        limited = body_limited(request, max_photo + FORM_OVERHEAD)
        async with limited.form(max_files=1, max_fields=4, max_part_size=1024) as form:
            for name, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if name != "photo":
                        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"unexpected file {name!r}: use 'photo'")
                    photo = await value.read(max_photo + 1)
                elif name == "ticket_id":
                    ticket_id = value
                else:
                    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"unexpected field {name[:40]!r}")
    except BodyTooLarge as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "the request is too large") from exc
    if len(photo) > max_photo:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"a photo may be at most {max_photo // (1024 * 1024)} MiB")
    if not photo:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "no photo: send the image as the file field 'photo'")
    return ticket_id, photo


def _ticket_for_photos(session: Session, user: User, visible: list[str], raw_id: str) -> TicketRow:
    if not raw_id.isascii() or not raw_id.isdigit() or len(raw_id) > 18:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "ticket_id: a ticket's id (a whole number) is required")
    row = ticket_or_404(session, visible, int(raw_id), user)
    try:
        may_work_on(user, row)
    except Forbidden as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    if TicketStatus(row.status) not in OPEN_FOR_PHOTOS:
        raise HTTPException(status.HTTP_409_CONFLICT, f"ticket {row.id} is {row.status}: its repair can no longer be reported")
    return row


def _store(session: Session, store: PhotoStore, *, user: User, visible: list[str], raw_id: str, data: bytes,
           limits: PhotoLimits) -> StaffPhotoPublic:
    row = _ticket_for_photos(session, user, visible, raw_id)
    try:
        photo = clean_photo(data, limits)
    except PhotoRefused as exc:
        raise HTTPException(exc.status, f"photo refused: {exc}") from exc
    photo_id = f"{secrets.token_hex(16)}-{photo.extension}"
    key = photo_key(row.id, photo_id)
    assert key is not None
    try:
        store.put(key, photo.data, photo.content_type)
    except BaseException:
        with contextlib.suppress(Exception):  # a half-written object must not stay behind
            store.delete(key)
        raise
    return StaffPhotoPublic(id=photo_id, ticket_id=row.id, content_type=photo.content_type, width=photo.width,
                            height=photo.height, bytes=len(photo.data))


_FORM_DOC: dict[str, Any] = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object",
    "properties": {"ticket_id": {"type": "integer"}, "photo": {"type": "string", "format": "binary"}},
    "required": ["ticket_id", "photo"],
}}}}}


@router.post(
    "/uploads", status_code=status.HTTP_201_CREATED, response_model=StaffPhotoPublic, openapi_extra=_FORM_DOC,
    responses={
        403: {"description": "a viewer, or a ticket of none of your teams"},
        404: {"description": "no such ticket among your sites"},
        409: {"description": "the ticket is resolved or ended: no repair to report any more"},
        413: {"description": "a photo over the size limit, or too many pixels"},
        415: {"description": "not multipart, or a photo that is not a JPEG, PNG or WebP image (or hides another file)"},
        422: {"description": "no photo, no ticket id, or an unexpected field"},
    },
)
async def upload_photo(*, request: Request, session: SessionDep, user: CurrentUser, visible: VisibleSites,
                       settings: SettingsDep, store: PhotoStoreDep) -> StaffPhotoPublic:
    """A photo of a repair (one per request), for a ticket you may work on; give its `id` at resolve.

    It is checked and cleaned as residents' photos are: a JPEG, PNG or WebP decoded in full, at most
    the configured size and pixels, nothing after the image's end; only a fresh encoding of its pixels
    is kept (no EXIF, so no GPS position). A refused photo leaves nothing behind.
    """
    raw_id, data = await _read_form(request, settings.upload_max_bytes)
    return await run_in_threadpool(_store, session, store, user=user, visible=visible, raw_id=raw_id, data=data,
                                   limits=PhotoLimits.of(settings))


@router.get(
    "/tickets/{ticket_id}/photos/{photo_id}", response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}},
               403: {"description": "a ticket of none of your teams"},
               404: {"description": "no such ticket, or no resolve of it names this photo"}},
)
def ticket_photo(
    *, ticket_id: Annotated[int, Path(description="the ticket's id")],
    photo_id: Annotated[str, Path(max_length=64, description="as answered by `POST /api/v1/uploads`")],
    session: SessionDep, user: CurrentUser, visible: VisibleSites, store: PhotoStoreDep,
) -> Response:
    """A photo attached when the ticket was resolved (the history's `resolved` entries list them)."""
    row = ticket_or_404(session, visible, ticket_id, user)
    key = photo_key(row.id, photo_id)
    if key is None or photo_id not in resolved_photos(row):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such photo")
    return photo_response(store, key)
