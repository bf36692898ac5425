"""`linli backup` and `linli restore`: one archive with everything needed to bring a site back.

An archive (``.tar.gz``, written 0600) holds:

- ``database/linli.sqlite3`` — a consistent copy of the SQLite database made with SQLite's online
  backup API, safe while the gateway and API write; or ``database/linli.pgdump`` — ``pg_dump
  --format=custom`` of the PostgreSQL database;
- ``timeseries/timeseries.sqlite3`` when the time-series store is SQLite (InfluxDB and
  VictoriaMetrics have their own backup tools, named in the manifest);
- ``sites/*.yaml`` — the site files; ``uploads/...`` — residents' and technicians' photos;
- ``config/settings.json`` — the effective LINLI_* settings with every secret replaced by ``***``;
- ``config/dotenv`` — the ``.env`` file of the working directory, verbatim, when there is one
  (it holds secrets; the manifest says so);
- ``manifest.json`` (the last member) — format version, time, database kind and Alembic revision,
  site ids, and every file with its size and SHA-256.

The archive always contains personal data (residents' contacts, photos, password hashes), so it
is created readable by its owner only and must be stored as carefully as the database itself.

`restore` refuses a non-empty data directory (unless ``--force``), verifies every checksum
before it writes anything in place, restores the files and the database, then runs the
migrations so that an older backup is brought up to this version's schema.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tarfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

FORMAT = "linli-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DB_SQLITE_MEMBER = "database/linli.sqlite3"
DB_PG_MEMBER = "database/linli.pgdump"
TS_SQLITE_MEMBER = "timeseries/timeseries.sqlite3"
SETTINGS_MEMBER = "config/settings.json"
DOTENV_MEMBER = "config/dotenv"
RESTORED_CONFIG_DIR = "restored-config"
REDACTED = "***"
# Settings fields and environment variable names whose values are never written to the archive
SECRET_FIELDS = frozenset({"secret_key", "admin_password", "mqtt_password"})
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY", "CREDENTIAL")
PG_TIMEOUT_S = 10
TSDB_TOOLS = {
    "influxdb2": "InfluxDB 2.x keeps its own data: back it up with `influx backup DIR` and restore with `influx restore DIR`",
    "influxdb1": "InfluxDB 1.x keeps its own data: back it up with `influxd backup -portable DIR` "
                 "and restore with `influxd restore -portable DIR`",
    "victoriametrics": "VictoriaMetrics keeps its own data: back it up with `vmbackup` (from a /snapshot/create "
                       "snapshot) and restore with `vmrestore`",
}
CHUNK = 1024 * 1024


class BackupError(Exception):
    """Something the person running backup or restore can act on; printed without a traceback."""


# --------------------------------------------------------------------------- small helpers


class Progress:
    """Progress lines on stderr, at most one every `every_s` seconds for repeated updates."""

    def __init__(self, prog: str, *, every_s: float = 2.0, stream: IO[str] | None = None) -> None:
        self.prog, self.every_s = prog, every_s
        self.stream = stream or sys.stderr
        self._last = 0.0

    def say(self, message: str) -> None:
        print(f"{self.prog}: {message}", file=self.stream, flush=True)
        self._last = time.monotonic()

    def tick(self, message: str) -> None:
        if time.monotonic() - self._last >= self.every_s:
            self.say(message)


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def redact_url(url: str) -> str:
    """`url` with the password (or an InfluxDB token in its place) replaced by ***."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{host}"))


def _secret_name(name: str) -> bool:
    upper = name.upper()
    return any(word in upper for word in SECRET_WORDS)


def redacted_config(settings: Any, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The effective settings and every other LINLI_* variable, with no secret in them."""
    values: dict[str, Any] = {}
    for name, value in settings.model_dump(mode="json").items():
        if name in SECRET_FIELDS or _secret_name(name):
            values[name] = REDACTED if value else None
        elif isinstance(value, str):
            values[name] = redact_url(value)
        else:
            values[name] = value
    env = os.environ if environ is None else environ
    extra = {}
    for name in sorted(env):
        if not name.startswith("LINLI_") or name[len("LINLI_"):].lower() in values:
            continue
        extra[name] = REDACTED if _secret_name(name) else redact_url(env[name])
    return {"settings": values, "other_environment": extra}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


class _HashingReader:
    """A file object that hashes what tarfile reads from it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        block = self.raw.read(size)
        self.digest.update(block)
        return block


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLAlchemy/Linli `sqlite://` URL; None for other URLs. Memory databases are refused."""
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError(f"{url}: an in-memory database cannot be backed up or restored")
    return Path(database)


def tsdb_sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///abs` or `sqlite://rel` time-series URL (linli.tsdb's rules)."""
    if not url.startswith("sqlite://"):
        return None
    path = url.removeprefix("sqlite://")
    return Path("/" + path.lstrip("/")) if path.startswith("/") else Path(path)


def libpq_target(url: str) -> tuple[str, dict[str, str]]:
    """A SQLAlchemy PostgreSQL URL as a libpq URL without the password, and the environment that
    carries the password (so it never appears on a command line)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise BackupError(f"not a database URL: {redact_url(url)}") from exc
    if not parsed.drivername.startswith("postgresql"):
        raise BackupError(f"not a PostgreSQL URL: {redact_url(url)}")
    env = {"PGCONNECT_TIMEOUT": str(PG_TIMEOUT_S)}
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    libpq = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return libpq, env


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"`{name}` is not on PATH; install the PostgreSQL client tools of your server's major version "
            "(Debian/Ubuntu: `apt-get install postgresql-client`)"
        )
    return found


def _run_pg_tool(argv: list[str], env_extra: dict[str, str], what: str) -> None:
    env = {**os.environ, **env_extra}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        hint = ""
        if "version mismatch" in detail:
            hint = " (install the client tools of the server's major version, e.g. postgresql-client-16)"
        raise BackupError(f"{what} failed{hint}:\n{detail}")


def _alembic_revision(url: str) -> str | None:
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from linli.storage.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def _sqlite_revision(path: Path) -> str | None:
    """The Alembic revision of a SQLite file, read without Linli's pragmas (they would switch it to WAL)."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return str(row[0]) if row else None
    except sqlite3.Error:
        return None
    finally:
        conn.close()


# --------------------------------------------------------------------------- backup


def sqlite_snapshot(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database in one file (rollback journal, not WAL).

    One backup step copies every page inside one read transaction: in WAL mode writers go on
    meanwhile, and the copy is the database as of the step's start.
    """
    if not source.is_file():
        raise BackupError(f"the database file {source} does not exist")
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
            check = dst.execute("PRAGMA quick_check").fetchone()
            if not check or check[0] != "ok":
                raise BackupError(f"the copy of {source} fails SQLite's integrity check: {check}")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy the SQLite database {source}: {exc}") from exc
    finally:
        src.close()


@dataclass
class _ArchiveWriter:
    tar: tarfile.TarFile
    progress: Progress
    files: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0

    def add_file(self, path: Path, name: str) -> None:
        with path.open("rb") as raw:
            size = os.fstat(raw.fileno()).st_size
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = size, 0o600, int(path.stat().st_mtime)
            reader = _HashingReader(raw)
            try:
                self.tar.addfile(info, reader)
            except OSError as exc:
                raise BackupError(f"{path} changed while it was being backed up ({exc}); run the backup again") from exc
        self.files.append({"path": name, "size": size, "sha256": reader.digest.hexdigest()})
        self.total += size

    def add_bytes(self, data: bytes, name: str) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
        self.tar.addfile(info, io.BytesIO(data))
        if name != MANIFEST:
            self.files.append({"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
            self.total += len(data)


def _site_members(site_files: list[Path]) -> list[tuple[Path, str, bool]]:
    from linli.site import BUILTIN_SITES_DIR

    taken: set[str] = set()
    out = []
    for path in site_files:
        name, n = path.name, 1
        while name in taken:
            n += 1
            name = f"{path.stem}-{n}{path.suffix}"
        taken.add(name)
        builtin = path.resolve().parent == BUILTIN_SITES_DIR.resolve()
        out.append((path, f"sites/{name}", builtin))
    return out


def create_backup(settings: Any, out: Path, *, env_file: Path | None, progress: Progress) -> dict[str, Any]:
    """Write the archive `out` (which must not exist) and return its manifest."""
    from linli.site import SiteConfigError, SiteRegistry

    out = out.resolve()
    if out.exists():
        raise BackupError(f"{out} already exists; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    data_dir = Path(settings.data_dir).resolve()
    db_url: str = settings.db_url
    ts_url: str = settings.timeseries_url
    site_files = [Path(p) for p in settings.site_files]
    for path in site_files:
        if not path.is_file():
            raise BackupError(f"the site file {path} does not exist (LINLI_SITES)")
    try:
        site_ids = SiteRegistry.load(site_files).ids()
    except SiteConfigError as exc:
        progress.say(f"warning: the site files do not load ({exc}); backing them up anyway")
        site_ids = []

    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created_at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "site_ids": site_ids,
        "personal_data": True,
        "contains_secrets": False,
    }
    from linli import __version__

    manifest["linli_version"] = __version__
    partial = out.with_name(f".{out.name}.{secrets.token_hex(4)}.partial")
    staging = Path(f"{partial}.d")
    staging.mkdir(mode=0o700)
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
            writer = _ArchiveWriter(tar, progress)
            # the database
            db_file = sqlite_path(db_url)
            if db_file is not None:
                size = db_file.stat().st_size if db_file.exists() else 0
                progress.say(f"copying the SQLite database {db_file} ({human(size)})")
                snapshot = staging / "linli.sqlite3"
                sqlite_snapshot(db_file, snapshot)
                revision = _sqlite_revision(snapshot)
                writer.add_file(snapshot, DB_SQLITE_MEMBER)
                manifest["database"] = {"kind": "sqlite", "file": DB_SQLITE_MEMBER, "alembic_revision": revision,
                                        "source": str(db_file)}
            else:
                pg_dump = _pg_tool("pg_dump")
                libpq, env = libpq_target(db_url)
                progress.say(f"dumping the PostgreSQL database {redact_url(db_url)} with pg_dump")
                dump = staging / "linli.pgdump"
                _run_pg_tool([pg_dump, "--format=custom", "--no-password", f"--file={dump}", f"--dbname={libpq}"],
                             env, "pg_dump")
                writer.add_file(dump, DB_PG_MEMBER)
                manifest["database"] = {"kind": "postgresql", "file": DB_PG_MEMBER,
                                        "alembic_revision": _alembic_revision(db_url), "source": redact_url(db_url)}
            progress.say(f"database done ({human(writer.total)})")
            # the time-series store
            ts_file = tsdb_sqlite_path(ts_url)
            if ts_file is not None and ts_file.is_file():
                progress.say(f"copying the SQLite time-series store {ts_file} ({human(ts_file.stat().st_size)})")
                snapshot = staging / "timeseries.sqlite3"
                sqlite_snapshot(ts_file, snapshot)
                writer.add_file(snapshot, TS_SQLITE_MEMBER)
                manifest["timeseries"] = {"kind": "sqlite", "file": TS_SQLITE_MEMBER, "included": True}
            elif ts_file is not None:
                manifest["timeseries"] = {"kind": "sqlite", "included": False, "note": f"{ts_file} does not exist yet"}
            else:
                scheme = ts_url.partition("://")[0].split("+")[0]
                note = TSDB_TOOLS.get(scheme, "this store keeps its own data; back it up with its own tools")
                manifest["timeseries"] = {"kind": scheme, "included": False, "url": redact_url(ts_url), "note": note}
                progress.say(f"note: the time-series store is not in this archive. {note}")
            # site files
            sites = []
            for path, name, builtin in _site_members(site_files):
                writer.add_file(path, name)
                sites.append({"file": name, "source": str(path.resolve()), "builtin": builtin})
            manifest["site_files"] = sites
            # uploads
            uploads = data_dir / "uploads"
            count = 0
            if uploads.is_dir():
                progress.say(f"adding uploads from {uploads}")
                for path in sorted(p for p in uploads.rglob("*") if p.is_file() and not p.is_symlink()):
                    writer.add_file(path, f"uploads/{path.relative_to(uploads).as_posix()}")
                    count += 1
                    progress.tick(f"  {count} upload files, {human(writer.total)} so far")
            manifest["uploads"] = {"files": count}
            # configuration
            config = redacted_config(settings)
            writer.add_bytes(json.dumps(config, ensure_ascii=False, indent=2).encode(), SETTINGS_MEMBER)
            if env_file is not None and env_file.is_file():
                writer.add_file(env_file, DOTENV_MEMBER)
                manifest["contains_secrets"] = True
                manifest["secrets_note"] = (f"{DOTENV_MEMBER} is {env_file.resolve()} verbatim and holds secrets: "
                                            "keep this archive as safe as the server itself")
                progress.say(f"included {env_file} (it holds secrets: keep the archive safe)")
            manifest["files"] = writer.files
            writer.add_bytes(json.dumps(manifest, ensure_ascii=False, indent=2).encode(), MANIFEST)
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _default_out(data_dir: Path) -> Path:
    return data_dir / "backups" / f"linli-{datetime.now().strftime('%Y%m%d-%H%M%S')}.tar.gz"  # local time: the installer reads it


def backup_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="linli backup",
        description="Back up the database, site files, uploads, the SQLite time-series store and the configuration "
                    "(LINLI_* variables, secrets redacted; plus ./.env verbatim) into one .tar.gz. "
                    "The archive holds personal data: it is written readable by its owner only.",
    )
    parser.add_argument("--out", type=Path, default=None,
                        help="archive to write (default: {data_dir}/backups/linli-YYYYmmdd-HHMMSS.tar.gz)")
    parser.add_argument("--env-file", type=Path, default=Path(".env"),
                        help="a .env file to include verbatim if it exists (default: ./.env)")
    parser.add_argument("--no-env-file", action="store_true", help="do not include any .env file (no secrets in the archive)")
    args = parser.parse_args(argv)
    progress = Progress("linli backup")
    try:
        settings = _settings()
        out = args.out or _default_out(Path(settings.data_dir).resolve())
        started = time.monotonic()
        manifest = create_backup(settings, out, env_file=None if args.no_env_file else args.env_file, progress=progress)
    except BackupError as exc:
        print(f"linli backup: error: {exc}", file=sys.stderr)
        return 2
    size = out.resolve().stat().st_size
    progress.say(f"wrote {out.resolve()} ({human(size)}, {len(manifest['files'])} files, "
                 f"{time.monotonic() - started:.1f} s)")
    print(out.resolve())
    return 0


def _settings() -> Any:
    from pydantic import ValidationError

    from linli.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        raise BackupError(f"bad configuration: {exc}") from exc


# --------------------------------------------------------------------------- restore


def _safe_member_name(name: str) -> bool:
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and "\\" not in name


@contextlib.contextmanager
def _open_archive(path: Path) -> Iterator[tarfile.TarFile]:
    if not path.is_file():
        raise BackupError(f"{path}: no such file")
    try:
        tar = tarfile.open(path, mode="r:gz")  # noqa: SIM115 - closed below, after the error mapping
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BackupError(f"{path} is not a Linli backup (not a readable .tar.gz: {exc})") from exc
    try:
        yield tar
    finally:
        tar.close()


def read_manifest(tar: tarfile.TarFile, archive: Path) -> dict[str, Any]:
    try:
        member = tar.getmember(MANIFEST)
        handle = tar.extractfile(member)
        if handle is None:
            raise KeyError(MANIFEST)
        manifest = json.loads(handle.read())
    except KeyError as exc:
        raise BackupError(f"{archive} is not a Linli backup: it has no {MANIFEST}") from exc
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BackupError(f"{archive} is damaged (truncated or corrupt): {exc}") from exc
    except ValueError as exc:
        raise BackupError(f"{archive}: {MANIFEST} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{archive} is not a Linli backup (its manifest has no format {FORMAT!r})")
    if manifest.get("version") != FORMAT_VERSION:
        raise BackupError(f"{archive} is a backup of format version {manifest.get('version')}; "
                          f"this Linli reads version {FORMAT_VERSION}")
    files = manifest.get("files")
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("sha256"), str) for f in files
    ):
        raise BackupError(f"{archive}: the manifest's file list is malformed")
    return manifest


def extract_verified(tar: tarfile.TarFile, manifest: dict[str, Any], staging: Path, archive: Path,
                     progress: Progress) -> None:
    """Every file of the manifest into `staging`, each checked against its SHA-256; nothing else."""
    expected = {f["path"]: f for f in manifest["files"]}
    for name in expected:
        if not _safe_member_name(name):
            raise BackupError(f"{archive}: the manifest names an unsafe path {name!r}")
    seen: set[str] = set()
    done = 0
    try:
        for member in tar:
            if member.name == MANIFEST:
                continue
            if member.name not in expected:
                raise BackupError(f"{archive}: {member.name!r} is in the archive but not in its manifest (tampered?)")
            if not member.isfile():
                raise BackupError(f"{archive}: {member.name!r} is not a regular file")
            if member.name in seen:
                raise BackupError(f"{archive}: {member.name!r} appears twice")
            source = tar.extractfile(member)
            if source is None:  # pragma: no cover - regular files always have data
                raise BackupError(f"{archive}: cannot read {member.name!r}")
            target = staging / member.name
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with target.open("wb") as out:
                while block := source.read(CHUNK):
                    digest.update(block)
                    out.write(block)
            if digest.hexdigest() != expected[member.name]["sha256"]:
                raise BackupError(f"{archive}: checksum mismatch for {member.name!r}: the archive was altered or "
                                  "damaged; nothing was restored")
            seen.add(member.name)
            done += member.size
            progress.tick(f"  verified {len(seen)} of {len(expected)} files ({human(done)})")
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise BackupError(f"{archive} is damaged (truncated or corrupt): {exc}; nothing was restored") from exc
    missing = sorted(set(expected) - seen)
    if missing:
        raise BackupError(f"{archive}: files listed in the manifest are missing: {', '.join(missing[:5])}")


def _pg_table_names(url: str) -> list[str]:
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from linli.storage.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return list(inspect(connection).get_table_names())
    except SQLAlchemyError as exc:
        raise BackupError(f"cannot connect to {redact_url(url)} (it must exist; create it with `createdb` first): "
                          f"{getattr(exc, 'orig', exc)}") from exc
    finally:
        engine.dispose()


def _move_into_place(source: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(source), str(target))


@dataclass
class RestoreResult:
    database_url: str
    site_files: list[Path]
    all_builtin_sites: bool
    tickets: int
    reports: int
    uploads: int
    timeseries: Path | None
    config_dir: Path | None
    revision_before: str | None
    notes: list[str]


def restore_backup(archive: Path, data_dir: Path, *, database_url: str | None, force: bool,
                   progress: Progress) -> RestoreResult:
    from sqlalchemy import func, select

    from linli.storage import Database, ResidentReport, TicketRow, migrate

    data_dir = data_dir.resolve()
    if data_dir.exists() and not data_dir.is_dir():
        raise BackupError(f"{data_dir} is not a directory")
    if data_dir.is_dir() and any(data_dir.iterdir()) and not force:
        raise BackupError(f"{data_dir} is not empty; restore into an empty directory, or pass --force to overwrite "
                          "its database, time-series file, site files and uploads")
    with _open_archive(archive) as tar:
        manifest = read_manifest(tar, archive)
        db = manifest.get("database") or {}
        kind = db.get("kind")
        notes: list[str] = []
        if kind == "sqlite":
            if database_url and sqlite_path(database_url) is None:
                raise BackupError("this backup holds a SQLite database; it restores into SQLite (leave out --database-url, "
                                  "or give a sqlite:/// URL). Moving to PostgreSQL is a migration, not a restore")
            target_url = database_url or f"sqlite:///{data_dir / 'linli.db'}"
            existing = sqlite_path(target_url)
            if existing is not None and existing.exists() and not force:
                raise BackupError(f"the database file {existing} already exists; pass --force to replace it")
        elif kind == "postgresql":
            if not database_url or not database_url.startswith("postgresql"):
                raise BackupError("this backup holds a PostgreSQL database: give --database-url "
                                  "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB of an existing database to restore into")
            pg_restore = _pg_tool("pg_restore")
            target_url = database_url
            tables = _pg_table_names(target_url)
            if tables and not force:
                raise BackupError(f"the database {redact_url(target_url)} is not empty ({len(tables)} tables, e.g. "
                                  f"{', '.join(sorted(tables)[:3])}); restore into a new empty database, or pass --force "
                                  "to replace its contents")
        else:
            raise BackupError(f"{archive}: unknown database kind {kind!r} in the manifest")

        progress.say(f"verifying and unpacking {archive} (made {manifest.get('created_at')} on {manifest.get('host')})")
        data_dir.mkdir(parents=True, exist_ok=True)
        staging = data_dir / f".restore-{secrets.token_hex(4)}"
        staging.mkdir(mode=0o700)
        try:
            extract_verified(tar, manifest, staging, archive, progress)
            progress.say(f"all {len(manifest['files'])} checksums match")
            # the database first: if it fails, no file has been put in place yet
            if kind == "sqlite":
                target_file = sqlite_path(target_url)
                assert target_file is not None
                for suffix in ("-wal", "-shm", "-journal"):  # a stale WAL beside a new file would corrupt it
                    Path(f"{target_file}{suffix}").unlink(missing_ok=True)
                _move_into_place(staging / DB_SQLITE_MEMBER, target_file)
            else:
                libpq, env = libpq_target(target_url)
                progress.say(f"restoring the PostgreSQL database into {redact_url(target_url)} with pg_restore")
                _run_pg_tool([pg_restore, "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
                              "--exit-on-error", "--no-password", f"--dbname={libpq}", str(staging / DB_PG_MEMBER)],
                             env, "pg_restore")
            timeseries = None
            if (staging / TS_SQLITE_MEMBER).is_file():
                timeseries = data_dir / "timeseries.db"
                for suffix in ("-wal", "-shm", "-journal"):
                    Path(f"{timeseries}{suffix}").unlink(missing_ok=True)
                _move_into_place(staging / TS_SQLITE_MEMBER, timeseries)
            elif note := (manifest.get("timeseries") or {}).get("note"):
                notes.append(f"time series not in this backup: {note}")
            uploads = sum(1 for name in (f["path"] for f in manifest["files"]) if name.startswith("uploads/"))
            if (staging / "uploads").is_dir() or force:
                if (staging / "uploads").is_dir():
                    _move_into_place(staging / "uploads", data_dir / "uploads")
                else:
                    shutil.rmtree(data_dir / "uploads", ignore_errors=True)
            site_files = []
            if (staging / "sites").is_dir():
                _move_into_place(staging / "sites", data_dir / "sites")
                site_files = [data_dir / s["file"] for s in manifest.get("site_files", [])]
            config_dir = None
            if (staging / "config").is_dir():
                config_dir = data_dir / RESTORED_CONFIG_DIR
                _move_into_place(staging / "config", config_dir)
                config_dir.chmod(0o700)
                for path in config_dir.iterdir():
                    path.chmod(0o600)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    progress.say("bringing the schema up to date (migrations)")
    revision_before = db.get("alembic_revision")
    try:
        migrate(target_url)
    except Exception as exc:
        raise BackupError(f"the restored database could not be migrated: {exc}") from exc
    database = Database(target_url)
    try:
        with database.session() as session:
            tickets = session.scalar(select(func.count()).select_from(TicketRow)) or 0
            reports = session.scalar(select(func.count()).select_from(ResidentReport)) or 0
    finally:
        database.close()
    return RestoreResult(
        database_url=target_url, site_files=site_files,
        all_builtin_sites=all(s.get("builtin") for s in manifest.get("site_files", [])),
        tickets=tickets, reports=reports, uploads=uploads, timeseries=timeseries, config_dir=config_dir,
        revision_before=revision_before, notes=notes,
    )


def restore_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="linli restore",
        description="Restore a `linli backup` archive into a data directory (and a PostgreSQL database, for a "
                    "PostgreSQL backup). Every checksum is verified before anything is written in place; the "
                    "schema is then migrated to this version.",
    )
    parser.add_argument("archive", type=Path, help="the .tar.gz written by `linli backup`")
    parser.add_argument("--data-dir", type=Path, required=True, help="the data directory to restore into (empty)")
    parser.add_argument("--database-url", default=None,
                        help="where the database goes: required for a PostgreSQL backup (an existing, empty database); "
                             "default for SQLite: {data-dir}/linli.db")
    parser.add_argument("--force", action="store_true",
                        help="overwrite a non-empty data directory / database (its database, sites and uploads are replaced)")
    args = parser.parse_args(argv)
    progress = Progress("linli restore")
    try:
        result = restore_backup(args.archive, args.data_dir, database_url=args.database_url, force=args.force,
                                progress=progress)
    except BackupError as exc:
        print(f"linli restore: error: {exc}", file=sys.stderr)
        return 2
    data_dir = args.data_dir.resolve()
    lines = [
        f"restored {result.tickets} tickets, {result.reports} resident reports, {result.uploads} upload files",
        "run Linli on it with:",
        f"  LINLI_DATA_DIR={data_dir}",
    ]
    if result.database_url != f"sqlite:///{data_dir / 'linli.db'}":
        lines.append(f"  LINLI_DATABASE_URL={redact_url(result.database_url)}")
    if result.site_files and not result.all_builtin_sites:
        lines.append(f"  LINLI_SITES={','.join(str(p) for p in result.site_files)}")
    if result.timeseries is not None:
        lines.append(f"  LINLI_TSDB_URL=  (empty: {result.timeseries})")
    if result.config_dir is not None:
        lines.append(f"the old configuration (secrets redacted) is in {result.config_dir / 'settings.json'}"
                     + (f"; its .env, with secrets, in {result.config_dir / 'dotenv'}"
                        if (result.config_dir / "dotenv").exists() else ""))
    lines.extend(result.notes)
    for line in lines:
        progress.say(line)
    return 0


main = backup_main
