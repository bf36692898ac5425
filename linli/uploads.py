"""Photos from residents and mobile grid officers: checked, cleaned, stored.

A photo is accepted only when Pillow decodes it completely as JPEG, PNG or WebP, it is no
larger than the configured bytes and pixels, and nothing follows the image's own end (a file
that is an image *and* a ZIP, HTML or script is refused). What is stored is a fresh encoding of
the decoded pixels: no EXIF (so no GPS position, no camera serial), no comments, no text chunks,
no trailing bytes; the EXIF orientation is applied to the pixels first so the photo stays upright.

Stores keep the cleaned bytes under keys like ``reports/<report id>/<random>.jpg``: the local
store in ``<data_dir>/uploads`` (the directory ``linli purge-personal-data`` cleans), the S3 store
in a bucket of any S3-compatible server. Nothing here knows HTTP: callers map
:class:`PhotoRefused` to a status with its ``status`` attribute.
"""

from __future__ import annotations

import io
import os
import secrets
import struct
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from PIL import Image, ImageOps, UnidentifiedImageError

from linli.ops.retention import resolve_upload

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from linli.settings import Settings

FORMATS = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png"), "WEBP": ("image/webp", "webp")}
CONTENT_TYPES = {ext: ctype for ctype, ext in FORMATS.values()}
JPEG_QUALITY = 85
WEBP_QUALITY = 85


class PhotoRefused(Exception):
    """A photo that is not accepted; ``status`` is the HTTP status that says why."""

    status = 422


class NotAnImage(PhotoRefused):
    status = 415


class PhotoTooLarge(PhotoRefused):
    status = 413


@dataclass(frozen=True, slots=True)
class PhotoLimits:
    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 64_000_000
    max_side: int = 4096

    @classmethod
    def of(cls, settings: Settings) -> PhotoLimits:
        return cls(settings.upload_max_bytes, settings.upload_max_pixels, settings.upload_max_side)


@dataclass(frozen=True, slots=True)
class CleanPhoto:
    data: bytes
    content_type: str
    extension: str
    width: int
    height: int


# ---------------------------------------------------------------- where an image file ends


def _png_end(data: bytes) -> int:
    pos = 8
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        pos += 12 + length
        if kind == b"IEND":
            return pos
    raise NotAnImage("the PNG file has no end (IEND)")


def _webp_end(data: bytes) -> int:
    size = int.from_bytes(data[4:8], "little")
    return 8 + size + (size & 1)


# Phones append a second picture (MPF: depth maps, MPO) or a video (motion photos) after the first
# image and say so in its metadata. Such a declared trailer is dropped by the re-encoding; any
# other trailing data is a file hidden behind the image and refused.
DECLARED_TRAILERS = (b"MotionPhoto", b"MicroVideo")


def _jpeg_end(data: bytes) -> tuple[int, bool]:
    """The offset after the EOI marker that ends the image, walking segments and scans, and whether
    its metadata declares data after it."""
    pos, n, declared = 2, len(data), False
    while pos < n:
        if data[pos] != 0xFF:
            raise NotAnImage("the JPEG file is corrupt (a segment does not start with a marker)")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI
            return pos, declared
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length
            continue
        if pos + 2 > n:
            break
        length = int.from_bytes(data[pos:pos + 2], "big")
        segment = data[pos + 2:pos + length]
        if (marker == 0xE2 and segment.startswith(b"MPF\x00")) or (
            marker == 0xE1 and segment.startswith(b"http://ns.adobe.com/xap/") and any(t in segment for t in DECLARED_TRAILERS)
        ):
            declared = True
        pos += length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next real marker
            while pos + 1 < n:
                if data[pos] == 0xFF and data[pos + 1] != 0x00 and not 0xD0 <= data[pos + 1] <= 0xD7:
                    break
                pos += 1
    raise NotAnImage("the JPEG file has no end (EOI)")


def _image_end(fmt: str, data: bytes) -> tuple[int, bool]:
    if fmt == "PNG":
        return _png_end(data), False
    if fmt == "WEBP":
        return _webp_end(data), False
    return _jpeg_end(data)


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


# ---------------------------------------------------------------- checking and cleaning


def clean_photo(data: bytes, limits: PhotoLimits = PhotoLimits()) -> CleanPhoto:
    """The photo re-encoded without metadata, or :class:`PhotoRefused` saying why not."""
    if len(data) > limits.max_bytes:
        raise PhotoTooLarge(f"a photo may be at most {limits.max_bytes // (1024 * 1024)} MiB")
    fmt = _sniff(data)
    if fmt is None:
        raise NotAnImage("not a JPEG, PNG or WebP image")
    end, declared = _image_end(fmt, data)
    if data[end:].strip(b"\x00") and not declared:  # some cameras pad with zeros; anything else is a second file
        raise NotAnImage(f"{len(data) - end} bytes follow the end of the {fmt} image: refused as a polyglot file")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=[fmt]) as image:
                width, height = image.size
                if width * height > limits.max_pixels:
                    raise PhotoTooLarge(
                        f"the photo is {width}×{height} pixels; at most {limits.max_pixels // 1_000_000} megapixels"
                    )
                image.load()  # decodes every pixel: a truncated or corrupt file fails here
                upright = ImageOps.exif_transpose(image)  # a copy, its orientation applied
                # Only what the encoders need goes on: no exif, xmp, comments or text chunks.
                upright.info = {k: v for k, v in upright.info.items() if k in ("icc_profile", "transparency")}
        except PhotoRefused:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PhotoTooLarge(f"the photo decodes to too many pixels: {exc}") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error, EOFError) as exc:
            raise NotAnImage(f"the {fmt} image cannot be decoded: {exc}") from exc
    return _encode(upright, fmt, limits)


def _encode(image: Image.Image, fmt: str, limits: PhotoLimits) -> CleanPhoto:
    if max(image.size) > limits.max_side:
        image = image.copy()
        image.thumbnail((limits.max_side, limits.max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    icc = image.info.get("icc_profile")  # colours, not personal data: kept so the photo looks the same
    extra = {"icc_profile": icc} if isinstance(icc, bytes) else {}
    if fmt == "JPEG":
        pixels = image if image.mode in ("RGB", "L") else image.convert("RGB")
        pixels.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True, **extra)
    elif fmt == "PNG":
        if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
            image = image.convert("RGBA")
        transparency = image.info.get("transparency")
        keep = {"transparency": transparency} if transparency is not None else {}
        image.save(out, "PNG", optimize=True, **keep, **extra)
    else:
        pixels = image if image.mode in ("RGB", "RGBA") else image.convert("RGBA")
        pixels.save(out, "WEBP", quality=WEBP_QUALITY, **extra)
    content_type, extension = FORMATS[fmt]
    return CleanPhoto(out.getvalue(), content_type, extension, image.size[0], image.size[1])


def new_key(folder: str, photo: CleanPhoto) -> str:
    """A fresh, unguessable key for `photo` under `folder` (e.g. ``reports/<report id>``)."""
    return f"{folder}/{secrets.token_hex(16)}.{photo.extension}"


def content_type_of(key: str) -> str:
    return CONTENT_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream")


# ---------------------------------------------------------------- stores


class PhotoStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes | None:
        """The stored bytes, or None when there is no such photo."""

    def delete(self, key: str) -> None: ...


def _check_key(key: str) -> None:
    parts = key.split("/")
    if not key or "\x00" in key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{key!r} is not a photo key")


class LocalPhotoStore:
    """Files under `root` (``<data_dir>/uploads``), written atomically, readable by the owner only."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        _check_key(key)
        path = resolve_upload(self.root, key)
        if path is None:
            raise ValueError(f"{key!r} leads outside {self.root}")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes | None:
        try:
            path = self._path(key)
        except ValueError:
            return None
        return path.read_bytes() if path.is_file() else None

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        parent = path.parent
        root = self.root.resolve()
        while parent != root and parent.is_relative_to(root):
            try:
                parent.rmdir()  # only when empty
            except OSError:
                break
            parent = parent.parent


class S3PhotoStore:
    """Objects in a bucket of an S3-compatible server (AWS, MinIO, Ceph...), by boto3."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = "") -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")

    @classmethod
    def from_settings(cls, settings: Settings) -> S3PhotoStore:
        import boto3  # only a deployment that stores photos in S3 needs it
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url or None,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key,
            aws_secret_access_key=settings.s3_secret_key,
            config=Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 3}),
        )
        return cls(client, settings.s3_bucket, settings.s3_prefix)

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        except ValueError:
            return None
        return answer["Body"].read()

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


def open_photo_store(settings: Settings) -> PhotoStore:
    if settings.upload_store == "s3":
        return S3PhotoStore.from_settings(settings)
    return LocalPhotoStore(settings.uploads_dir)
