"""Hostile files at every route that takes a photo, on SQLite and PostgreSQL (docs/security.md).

``test_uploads`` covers the residents' route against plain non-images, oversize, a pixel bomb, the
JPEG+ZIP / PNG+HTML / WebP+script polyglots and truncated files. This walks what it leaves out, on
each photo route there is (residents' reports, grid officers' hazards, staff's repair photos):
SVG with script, images with hostile dimensions in their headers, corrupt chunks, other image
formats, HTML hidden *inside* an image (a JPEG comment, a PNG text chunk), lying content types and
file names. A refused file answers a 4xx with a sentence saying why and leaves nothing on disk (the
whole data directory is compared, not only the uploads) and nothing in the database.
"""

from __future__ import annotations

import io
import struct
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin
from sqlalchemy import func, select

from integration.test_api import Api
from linli.storage import ResidentReport, TicketRow

SCRIPT = b"<script>alert('xss')</script>"
SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10" onload="alert(1)">'
       + SCRIPT + b"</svg>")
DATABASE_FILES = (".db", ".db-wal", ".db-shm", ".db-journal")


def image(fmt: str, size: tuple[int, int] = (32, 24), **options: Any) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (90, 140, 200)).save(out, fmt, **options)
    return out.getvalue()


def png_with_size(width: int, height: int) -> bytes:
    """A small PNG whose IHDR claims `width`×`height` (its CRC made right, so only the size is wrong)."""
    data = bytearray(image("PNG"))
    ihdr = bytearray(data[12:29])  # type + 13 bytes of IHDR data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def jpeg_with_size(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims `width`×`height`."""
    data = bytearray(image("JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_bad_crc() -> bytes:
    data = bytearray(image("PNG"))
    idat = data.index(b"IDAT")
    data[idat + 6] ^= 0xFF  # a byte of the compressed pixels: the chunk's CRC no longer matches
    return bytes(data)


# name -> (file bytes, the content type the client claims, the status it must get)
REFUSED: dict[str, tuple[bytes, str, int]] = {
    "SVG with script": (SVG, "image/svg+xml", 415),
    "SVG named as a JPEG": (SVG, "image/jpeg", 415),
    "JPEG magic then HTML": (b"\xff\xd8\xff\xe0" + b"<html>" + SCRIPT + b"</html>", "image/jpeg", 415),
    "PNG signature and header only": (image("PNG")[:33], "image/png", 415),
    "PNG with a corrupt chunk": (png_bad_crc(), "image/png", 415),
    "ZIP named as a PNG": (b"PK\x03\x04\x14\x00\x00\x00" + b"evil.html" + SCRIPT, "image/png", 415),
    "BMP": (image("BMP"), "image/bmp", 415),
    "TIFF": (image("TIFF"), "image/tiff", 415),
    "ICO": (image("ICO", (16, 16)), "image/x-icon", 415),
    "PNG claiming 100000×100000 pixels": (png_with_size(100_000, 100_000), "image/png", 413),
    "JPEG claiming 65000×65000 pixels": (jpeg_with_size(65_000, 65_000), "image/jpeg", 413),
    "JPEG with a PDF after it": (image("JPEG") + b"%PDF-1.4\n1 0 obj <</JS (app.alert(1))>>", "image/jpeg", 415),
}


@dataclass(frozen=True)
class Route:
    """One route that takes photos: how to send a file to it."""

    name: str
    send: Callable[[Api, tuple[str, bytes, str]], Any]


def _report(api: Api, photo: tuple[str, bytes, str]) -> Any:
    data = {"site": "wanmei", "device_id": "SL-07", "category": "light_out", "description": "灯不亮"}
    return api.client.post("/api/v1/public/reports", data=data, files=[("photos", photo)])


def _hazard(api: Api, photo: tuple[str, bytes, str]) -> Any:
    data = {"site": "wanmei", "description": "井盖松动", "x": "100", "y": "100"}
    return api.client.post("/api/v1/public/hazards", data=data, files=[("photos", photo)])


def _staff(api: Api, photo: tuple[str, bytes, str]) -> Any:
    ticket = api.ticket(f"place-{uuid.uuid4().hex[:8]}", "leakage", subject_type="place", device_ids=(),
                        teams=("property",))
    return api.client.post("/api/v1/uploads", data={"ticket_id": str(ticket)}, files=[("photo", photo)],
                           headers=api.admin)


def routes(api: Api) -> list[Route]:
    """Every photo route the app has (staff uploads are included once they exist)."""
    paths = api.client.get("/openapi.json").json()["paths"]
    found = [Route("reports", _report), Route("hazards", _hazard)]
    if "post" in paths.get("/api/v1/uploads", {}):
        found.append(Route("staff uploads", _staff))
    return found


def files_on_disk(api: Api) -> set[str]:
    """Every file under the data directory but the databases."""
    root = api.settings.data_dir
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.endswith(DATABASE_FILES)}


def stored(api: Api) -> list[Path]:
    root = api.settings.uploads_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def rows(api: Api, model: type[Any]) -> int:
    with api.db.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_hostile_files_are_refused_on_every_photo_route_and_leave_nothing(api: Api) -> None:
    # a refused photo still counts against the client's budget (it was decoded): lift it for the walk
    api.settings.report_limit_per_ip = api.settings.report_limit_per_device = 1000
    before_files = files_on_disk(api)
    wrong: list[str] = []
    for route in routes(api):
        for name, (content, ctype, want) in REFUSED.items():
            reports_before = rows(api, ResidentReport)
            answer = route.send(api, (f"{name}.jpg", content, ctype))
            detail = answer.json().get("detail") if "json" in answer.headers.get("content-type", "") else None
            if answer.status_code != want or not isinstance(detail, str) or not detail:
                wrong.append(f"{route.name}: {name}: {answer.status_code} {answer.text[:160]}")
            if rows(api, ResidentReport) != reports_before:
                wrong.append(f"{route.name}: {name}: a report was kept")
    assert wrong == [], "\n".join(wrong)
    assert files_on_disk(api) == before_files
    assert stored(api) == []
    assert rows(api, ResidentReport) == 0
    # the only tickets are the ones the staff route's calls were made on, none from a refused report
    assert rows(api, TicketRow) == (len(REFUSED) if any(r.name == "staff uploads" for r in routes(api)) else 0)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_html_hidden_inside_an_image_is_not_stored(api: Api, fmt: str) -> None:
    """A valid image carrying a script in its own metadata (a JPEG comment, a PNG text chunk) is taken:
    it *is* an image. Only the re-encoded pixels are kept, so the script is not."""
    if fmt == "JPEG":
        hostile = image("JPEG", comment=SCRIPT)
    else:
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", SCRIPT.decode())
        info.add_itxt("Description", "<img src=x onerror=alert(1)>")
        hostile = image("PNG", pnginfo=info)
    assert SCRIPT in hostile
    for route in routes(api):
        answer = route.send(api, (f"hostile.{fmt.lower()}", hostile, f"image/{fmt.lower()}"))
        assert answer.status_code == 201, (route.name, answer.text)
    kept = stored(api)
    assert len(kept) == len(routes(api))
    for path in kept:
        data = path.read_bytes()
        assert b"<script" not in data and b"onerror" not in data, path
        assert Image.open(io.BytesIO(data)).format == fmt


def test_a_lying_content_type_or_file_name_changes_nothing(api: Api) -> None:
    """The client's content type and file name are never used: a real photo claimed to be HTML is
    stored and served as the JPEG it is; a file name that climbs directories names no file."""
    photo = image("JPEG")
    created = _report(api, ("../../../../evil.html", photo, "text/html")).json()
    assert created["photos"] == 1
    view = api.client.get(f"/api/v1/public/reports/{created['id']}").json()
    served = api.client.get(view["photos"][0])
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/jpeg"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert Image.open(io.BytesIO(served.content)).format == "JPEG"
    names = [p.name for p in api.settings.data_dir.parent.rglob("*") if "evil" in p.name]
    assert names == []
    assert all(p.suffix == ".jpg" and "evil" not in str(p) for p in stored(api))


def test_form_tricks_are_refused_and_leave_nothing(api: Api) -> None:
    before_files = files_on_disk(api)
    photo = ("p.jpg", image("JPEG"), "image/jpeg")
    base = {"site": "wanmei", "category": "other", "description": "路面坑洼"}
    answers = {
        "a file under another field name": api.client.post(
            "/api/v1/public/reports", data=base, files=[("attachment", photo)]),
        "a text field of 9 KiB": api.client.post(
            "/api/v1/public/reports", data={**base, "description": "长" * 3000}, files=[("photos", photo)]),
        "too many fields": api.client.post(
            "/api/v1/public/reports", data={**base, **{f"f{n}": "x" for n in range(20)}}, files=[("photos", photo)]),
        "a form posted as text/plain": api.client.post(
            "/api/v1/public/reports", content=b"site=wanmei&description=x", headers={"Content-Type": "text/plain"}),
        "a form without its boundary": api.client.post(
            "/api/v1/public/reports", content=b"--x\r\n", headers={"Content-Type": "multipart/form-data"}),
    }
    wrong = [f"{name}: {a.status_code} {a.text[:120]}" for name, a in answers.items()
             if not 400 <= a.status_code < 500 or not a.json().get("detail")]
    assert wrong == [], "\n".join(wrong)
    assert files_on_disk(api) == before_files
    assert rows(api, ResidentReport) == 0 and rows(api, TicketRow) == 0
