"""Photos of residents' reports: what is refused, what is stored, who may see it (SQLite and PostgreSQL).

Every refused upload leaves nothing behind: no file under the uploads directory, no report, no ticket.
The S3 store is tested against moto's S3-compatible server on a local port (no MinIO server here).
"""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import ExifTags, Image
from sqlalchemy import func, select

from integration.test_api import Api
from linli.storage import ResidentReport, TicketRow
from linli.uploads import S3PhotoStore, clean_photo

REPORTS = "/api/v1/public/reports"
GPS = {
    ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (26.0, 5.0, 30.0),
    ExifTags.GPS.GPSLongitudeRef: "E", ExifTags.GPS.GPSLongitude: (119.0, 18.0, 12.0),
}


def photo(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), *, gps: bool = True, mode: str = "RGB") -> bytes:
    """A small image; with GPS, camera make and a 90° orientation in its EXIF unless told otherwise."""
    image = Image.new(mode, size, 128)
    out = io.BytesIO()
    extra: dict[str, Any] = {}
    if gps:
        exif = Image.Exif()
        exif[ExifTags.Base.Make] = "LinliPhone"
        exif[ExifTags.Base.Orientation] = 6  # rotated: the stored photo is turned upright instead
        exif[ExifTags.IFD.GPSInfo] = GPS
        extra["exif"] = exif
    image.save(out, fmt, **extra)
    return out.getvalue()


def send(api: Api, *files: tuple[str, bytes, str], **fields: str) -> Any:
    data = {"site": "wanmei", "device_id": "SL-07", "category": "light_out", "description": "灯不亮", **fields}
    return api.client.post(REPORTS, data=data, files=[("photos", f) for f in files])


def stored_files(api: Api) -> list[Path]:
    root = api.settings.data_dir / "uploads"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def nothing_stored(api: Api) -> None:
    assert stored_files(api) == []
    with api.db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ResidentReport)) == 0
        assert session.scalar(select(func.count()).select_from(TicketRow)) == 0


def test_a_photo_with_gps_metadata_is_stored_without_it_and_upright(api: Api) -> None:
    original = photo("JPEG")
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the test photo has GPS
    response = send(api, ("lamp.jpg", original, "image/jpeg"), ("lamp.png", photo("PNG"), "image/png"),
                    ("lamp.webp", photo("WEBP"), "image/webp"))
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["photos"] == 3

    files = stored_files(api)
    assert len(files) == 3
    assert all(f.parent.name == created["id"] and f.parent.parent.name == "reports" for f in files)
    for path in files:
        raw = path.read_bytes()
        assert b"LinliPhone" not in raw and b"GPS" not in raw
        with Image.open(path) as image:
            assert dict(image.getexif()) == {}
            assert image.size == (48, 64)  # the orientation was applied to the pixels
            assert "exif" not in image.info
        assert path.stat().st_mode & 0o077 == 0  # readable by the service only

    urls = api.client.get(f"{REPORTS}/{created['id']}").json()["photos"]
    assert len(urls) == 3
    served = api.client.get(urls[0])
    assert served.status_code == 200
    assert served.headers["content-type"] in ("image/jpeg", "image/png", "image/webp")
    assert served.headers["cache-control"] == "private, no-store"
    assert "sandbox" in served.headers["content-security-policy"]
    assert dict(Image.open(io.BytesIO(served.content)).getexif()) == {}


def test_a_file_that_is_not_an_image_is_refused_with_415_and_nothing_stored(api: Api) -> None:
    for name, content, ctype in (
        ("notes.jpg", b"just some text, named like a photo", "image/jpeg"),
        ("page.png", b"<html><script>alert(1)</script></html>", "image/png"),
        ("doc.pdf", b"%PDF-1.4\n1 0 obj\n", "application/pdf"),
        ("anim.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif"),
    ):
        response = send(api, (name, content, ctype))
        assert response.status_code == 415, (name, response.text)
        assert "JPEG, PNG or WebP" in response.json()["detail"]
    # a good photo with a bad one: the whole report is refused, the good one is not kept either
    mixed = send(api, ("ok.jpg", photo(), "image/jpeg"), ("bad.jpg", b"\xff\xd8\xff\xe0 broken", "image/jpeg"))
    assert mixed.status_code == 415
    nothing_stored(api)


def test_oversized_photos_and_requests_are_refused_with_413_and_nothing_stored(api: Api) -> None:
    limit = api.settings.upload_max_bytes
    assert limit == 10 * 1024 * 1024
    big = photo() + b"\x00" * (limit + 1 - len(photo()))  # zero padding: a valid JPEG, 1 byte too large
    response = send(api, ("big.jpg", big, "image/jpeg"))
    assert response.status_code == 413, response.text
    assert "10 MiB" in response.json()["detail"]

    declared = api.client.post(REPORTS, content=b"x", headers={
        "Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(4 * limit),
    })
    assert declared.status_code == 413  # refused on its Content-Length, before the body is read

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it arrives
        yield b'{"site": "wanmei", "category": "other", "description": "'
        for _ in range(64):
            yield b"a" * 1024
        yield b'"}'

    chunked = api.client.post(REPORTS, content=chunks(), headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413
    too_many = send(api, *[(f"{n}.jpg", photo(), "image/jpeg") for n in range(4)])
    assert too_many.status_code in (400, 413, 422)
    nothing_stored(api)


def test_decompression_bombs_are_refused_before_decoding_and_nothing_stored(api: Api) -> None:
    bomb = photo("PNG", (12_000, 12_000), gps=False, mode="L")  # 144 megapixels in a file of ~140 kB
    assert len(bomb) < 1024 * 1024
    response = send(api, ("bomb.png", bomb, "image/png"))
    assert response.status_code == 413, response.text
    assert "pixels" in response.json()["detail"]

    api.settings.upload_max_pixels = 1_000_000  # below Pillow's own limit: the site's limit holds too
    modest = photo("JPEG", (1200, 1000), gps=False)
    response = send(api, ("wide.jpg", modest, "image/jpeg"))
    assert response.status_code == 413
    assert "1200×1000" in response.json()["detail"]
    nothing_stored(api)


def test_polyglots_and_truncated_images_are_refused_and_nothing_stored(api: Api) -> None:
    jpeg, png, webp = photo(), photo("PNG"), photo("WEBP")
    zip_tail = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"payload.html" + b"<script>alert(1)</script>"
    for name, content in (
        ("zip.jpg", jpeg + zip_tail),  # JPEG + ZIP
        ("html.png", png + b"<html><script>alert(1)</script></html>"),  # PNG + HTML after IEND
        ("tail.webp", webp + b"#!/bin/sh\necho owned\n"),  # WebP + script after the RIFF chunk
        ("cut.jpg", jpeg[: len(jpeg) // 2]),
        ("cut.png", png[:-20]),
    ):
        response = send(api, (name, content, "image/jpeg"))
        assert response.status_code == 415, (name, response.text)
    nothing_stored(api)

    padded = send(api, ("padded.jpg", jpeg + b"\x00" * 64, "image/jpeg"))  # some cameras pad with zeros
    assert padded.status_code == 201


def test_photos_are_served_only_to_the_reporter_and_to_signed_in_users_of_the_site(api: Api) -> None:
    mine = send(api, ("lamp.jpg", photo(), "image/jpeg")).json()
    other = send(api, ("lamp.jpg", photo(), "image/jpeg"), device_id="SL-01").json()
    public_url = api.client.get(f"{REPORTS}/{mine['id']}").json()["photos"][0]
    name = public_url.rsplit("/", 1)[-1]
    staff_url = f"/api/v1/uploads/reports/{mine['id']}/{name}"

    assert api.client.get(public_url).status_code == 200
    assert api.client.get(f"{REPORTS}/{other['id']}/photos/{name}").status_code == 404  # not that report's photo
    assert api.client.get(f"{REPORTS}/{'A' * 24}/photos/{name}").status_code == 404
    assert api.client.get(f"{REPORTS}/{mine['id']}/photos/..%2F..%2Flinli.db").status_code == 404

    assert api.client.get(staff_url).status_code == 401
    crew = api.user("li", "technician", teams=("property",))
    assert api.client.get(staff_url, headers=api.user("wang", "grid_officer")).status_code == 200
    assert api.client.get(staff_url, headers=crew).status_code == 404  # a grid-centre ticket, not the crew's
    elsewhere = api.user("b-manager", "manager", sites=("site-b",))
    assert api.client.get(staff_url, headers=elsewhere).status_code == 404
    listed = api.client.get("/api/v1/resident-reports", headers=api.admin).json()["items"]
    assert staff_url in next(r["photos"] for r in listed if r["id"] == mine["id"])

    for path in stored_files(api):  # a photo whose file went (retention) says so
        path.unlink()
    assert api.client.get(public_url).status_code == 404


# ---------------------------------------------------------------- the S3 store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-compatible HTTP server on a local port, with a bucket `linli-photos`."""
    moto_server = pytest.importorskip("moto.server")
    import boto3

    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                     aws_secret_access_key="test").create_bucket(Bucket="linli-photos")
        yield endpoint
    finally:
        server.stop()


def test_the_s3_store_keeps_photos_in_a_bucket_behind_the_same_routes(api: Api, s3_endpoint: str) -> None:
    api.settings.upload_store = "s3"
    api.settings.s3_endpoint_url = s3_endpoint
    api.settings.s3_bucket = "linli-photos"
    api.settings.s3_prefix = "wanmei-test"
    api.settings.s3_access_key = "test"
    api.settings.s3_secret_key = "test"

    created = send(api, ("lamp.jpg", photo(), "image/jpeg"))
    assert created.status_code == 201, created.text
    assert stored_files(api) == []  # nothing on local disk
    url = api.client.get(f"{REPORTS}/{created.json()['id']}").json()["photos"][0]
    served = api.client.get(url)
    assert served.status_code == 200
    assert dict(Image.open(io.BytesIO(served.content)).getexif()) == {}

    store = api.client.app.state.photo_store  # type: ignore[attr-defined]
    assert isinstance(store, S3PhotoStore)
    key = f"reports/{created.json()['id']}/{url.rsplit('/', 1)[-1]}"
    listed = store.client.list_objects_v2(Bucket="linli-photos", Prefix="wanmei-test/")
    assert [o["Key"] for o in listed.get("Contents", [])] == [f"wanmei-test/{key}"]
    store.delete(key)
    assert store.get(key) is None
    assert api.client.get(url).status_code == 404

    refused = send(api, ("bad.jpg", photo() + b"PK\x03\x04zip", "image/jpeg"))
    assert refused.status_code == 415
    assert store.client.list_objects_v2(Bucket="linli-photos").get("KeyCount") == 0


def test_clean_photo_keeps_the_format_and_drops_every_metadata_field() -> None:
    for fmt, ctype in (("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")):
        cleaned = clean_photo(photo(fmt))
        assert cleaned.content_type == ctype
        with Image.open(io.BytesIO(cleaned.data)) as image:
            assert image.format == fmt
            assert dict(image.getexif()) == {}
            assert not {"exif", "xmp", "comment", "XML:com.adobe.xmp"} & set(image.info)
