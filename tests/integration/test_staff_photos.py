"""Technicians' repair photos (`POST /api/v1/uploads`, attached at resolve, served with the ticket), on
SQLite and PostgreSQL: checked and cleaned as residents' photos, refused with a 4xx that says why and
nothing left on disk, shown only to those who may see the ticket.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image

from integration.test_api import Api
from integration.test_uploads import photo

UPLOADS = "/api/v1/uploads"


def upload(api: Api, headers: dict[str, str], ticket_id: int | str, data: bytes, name: str = "fix.jpg",
           ctype: str = "image/jpeg", field: str = "photo") -> Any:
    return api.client.post(UPLOADS, headers=headers, data={"ticket_id": str(ticket_id)},
                           files=[(field, (name, data, ctype))])


def stored_files(api: Api) -> list[Path]:
    root = api.settings.data_dir / "uploads"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_a_technician_uploads_a_photo_resolves_with_it_and_the_ticket_shows_it(api: Api) -> None:
    tech = api.user("zhao", "technician", teams=("property",))
    ticket = api.ticket("SL-07", "lamp_failure")
    original = photo("JPEG")  # with GPS and a camera make in its EXIF
    answer = upload(api, tech, ticket, original)
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["ticket_id"] == ticket and created["content_type"] == "image/jpeg"
    assert (created["width"], created["height"]) == (48, 64)  # the EXIF orientation applied to the pixels

    files = stored_files(api)
    assert len(files) == 1 and files[0].parent.name == str(ticket) and files[0].parent.parent.name == "tickets"
    raw = files[0].read_bytes()
    assert b"LinliPhone" not in raw and b"GPS" not in raw and len(raw) == created["bytes"]
    assert files[0].stat().st_mode & 0o077 == 0

    url = f"/api/v1/tickets/{ticket}/photos/{created['id']}"
    assert api.client.get(url, headers=tech).status_code == 404  # not attached yet: nobody sees it

    api.client.post(f"/api/v1/tickets/{ticket}/start", headers=tech).raise_for_status()
    resolved = api.client.post(f"/api/v1/tickets/{ticket}/resolve", headers=tech,
                               json={"note": "更换灯具驱动", "photos": [created["id"]]})
    assert resolved.status_code == 200, resolved.text
    entry = resolved.json()["history"][-1]
    assert entry["type"] == "resolved" and entry["note"] == "更换灯具驱动" and entry["photos"] == [url]
    assert api.client.get(f"/api/v1/tickets/{ticket}", headers=tech).json()["history"][-1]["photos"] == [url]
    assert all(e["photos"] is None for e in resolved.json()["history"][:-1])

    served = api.client.get(url, headers=tech)
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert served.headers["cache-control"] == "private, no-store" and "sandbox" in served.headers["content-security-policy"]
    with Image.open(io.BytesIO(served.content)) as image:
        assert dict(image.getexif()) == {} and image.size == (48, 64)
        assert ExifTags.IFD.GPSInfo not in image.getexif()

    # a manager of the site sees it; a technician of another team, an account of another site do not
    assert api.client.get(url, headers=api.user("wang", "manager")).status_code == 200
    assert api.client.get(url, headers=api.user("lift", "technician", teams=("elevator_contractor",))).status_code == 403
    assert api.client.get(url, headers=api.user("far", "manager", sites=("site-b",))).status_code == 404
    assert api.client.get(url).status_code == 401


def test_a_photo_id_shows_only_with_the_ticket_it_was_uploaded_for(api: Api) -> None:
    tech = api.user("zhao", "technician", teams=("property",))
    first, second = api.ticket("SL-07", "lamp_failure"), api.ticket("SL-08", "lamp_failure")
    photo_id = upload(api, tech, first, photo("PNG")).json()["id"]
    api.client.post(f"/api/v1/tickets/{second}/start", headers=tech).raise_for_status()
    api.client.post(f"/api/v1/tickets/{second}/resolve", headers=tech,
                    json={"note": "done", "photos": [photo_id]}).raise_for_status()
    # named in the second ticket's resolve, but the file belongs to the first: not served under the second
    assert api.client.get(f"/api/v1/tickets/{second}/photos/{photo_id}", headers=tech).status_code == 404
    assert api.client.get(f"/api/v1/tickets/{first}/photos/{photo_id}", headers=tech).status_code == 404
    assert api.client.get(f"/api/v1/tickets/{second}/photos/..%2F..%2Fadmin-password", headers=tech).status_code == 404


def test_what_is_not_a_clean_image_is_refused_and_nothing_is_stored(api: Api) -> None:
    tech = api.user("zhao", "technician", teams=("property",))
    ticket = api.ticket("SL-07", "lamp_failure")
    for name, content, ctype in (
        ("notes.jpg", b"just some text, named like a photo", "image/jpeg"),
        ("page.png", b"<html><script>alert(1)</script></html>", "image/png"),
        ("broken.jpg", b"\xff\xd8\xff\xe0 broken", "image/jpeg"),
        ("polyglot.jpg", photo() + b"PK\x03\x04 a zip after the image", "image/jpeg"),
    ):
        answer = upload(api, tech, ticket, content, name, ctype)
        assert answer.status_code == 415, (name, answer.text)
        assert "photo refused" in answer.json()["detail"]
    limit = api.settings.upload_max_bytes
    big = photo() + b"\x00" * (limit + 1 - len(photo()))  # valid JPEG with zero padding, one byte too large
    too_big = upload(api, tech, ticket, big)
    assert too_big.status_code == 413 and "10 MiB" in too_big.json()["detail"]
    declared = api.client.post(UPLOADS, headers={**tech, "Content-Type": "multipart/form-data; boundary=x",
                                                 "Content-Length": str(3 * limit)}, content=b"x")
    assert declared.status_code == 413
    bomb = Image.new("1", (12_000, 6_000))  # 72 megapixels, a few KiB as PNG
    out = io.BytesIO()
    bomb.save(out, "PNG")
    assert upload(api, tech, ticket, out.getvalue(), "bomb.png", "image/png").status_code == 413

    assert api.client.post(UPLOADS, headers=tech, json={"ticket_id": ticket}).status_code == 415
    no_photo = api.client.post(UPLOADS, headers=tech, data={"ticket_id": str(ticket)}, files=[("x", ("", b"", "text/plain"))])
    assert no_photo.status_code == 422
    assert upload(api, tech, ticket, photo(), field="photos").status_code == 422
    for bad in ("", "abc", "-1", "1" * 30):
        answer = upload(api, tech, bad, photo())
        assert answer.status_code == 422 and "ticket_id" in answer.json()["detail"], bad
    assert stored_files(api) == []


def test_who_may_upload_for_which_ticket(api: Api) -> None:
    ticket = api.ticket("SL-07", "lamp_failure")
    assert upload(api, api.user("lift", "technician", teams=("elevator_contractor",)), ticket, photo()).status_code == 403
    assert upload(api, api.user("owner", "viewer"), ticket, photo()).status_code == 403
    assert upload(api, api.user("far", "manager", sites=("site-b",)), ticket, photo()).status_code == 404
    assert upload(api, api.user("zhao", "technician", teams=("property",)), 999_999, photo()).status_code == 404
    assert api.client.post(UPLOADS, data={"ticket_id": str(ticket)}, files=[("photo", ("a.jpg", photo(), "image/jpeg"))]
                           ).status_code == 401
    assert stored_files(api) == []
    tech = api.user("zhao2", "technician", teams=("property",))
    api.client.post(f"/api/v1/tickets/{ticket}/start", headers=tech).raise_for_status()
    api.client.post(f"/api/v1/tickets/{ticket}/resolve", headers=tech, json={"note": "done"}).raise_for_status()
    late = upload(api, tech, ticket, photo())
    assert late.status_code == 409 and "resolved" in late.json()["detail"]
    assert upload(api, api.user("wang", "manager"), api.ticket("SL-09", "lamp_failure"), photo()).status_code == 201
