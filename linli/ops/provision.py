"""Broker accounts: Mosquitto's password file and ACL from the site files (`linli provision`).

Accounts (usernames contain no ``:`` and no spaces; a device username always contains a ``.``,
a platform username never does, so the two cannot collide):

- a device with its own uplink: ``{site}.{device_id}``, e.g. ``wanmei.SL-07``;
- a concentrator: ``{site}.concentrator.{concentrator_id}``, e.g. ``wanmei.concentrator.CON-1``;
- a device behind a concentrator (its ``concentrator`` field is set) has no account of its own:
  it has no uplink, its concentrator publishes for it; a retired device has none either;
- the platform: ``linli-gateway``, ``linli-api``, ``linli-watchdog`` and, for demos only,
  ``linli-sim`` (the simulator publishes for *every* device of the sites: never give it out in
  production; it is left out when ``LINLI_ENV=production`` unless ``--sim`` is given).

What each account may do (Mosquitto ACL, no ``pattern`` lines; see :func:`acl_for`):

- a device: write ``estate/v1/{site}/{kind}/{id}/`` + ``status`` (its last will too),
  ``telemetry``, ``event``, ``cmd/ack``; read ``estate/v1/{site}/{kind}/{id}/cmd``;
- a concentrator: write its own ``status`` and ``event`` under
  ``estate/v1/{site}/concentrator/{id}/``, and for each child the child's four device channels;
  read each child's ``cmd``;
- ``linli-gateway``: read ``estate/v1/{site}/#``, write ``estate/v1/{site}/+/+/cmd`` (each site)
  and ``linli/#``;
- ``linli-api``: write ``estate/v1/{site}/+/+/cmd`` (each site), read ``linli/#``;
- ``linli-watchdog``: read ``linli/#`` and ``$SYS/#``;
- ``linli-sim``: write the four device channels of every device, read every ``cmd`` (each site).

Device secrets are random, shown once (a table on stdout) and never stored: the database keeps
only Mosquitto's ``$7$`` hash (PBKDF2-SHA512, 101 iterations, 12-byte salt, as ``mosquitto_passwd``
of Mosquitto 2.0 writes it) in ``device_credentials``. A revoked credential stays there with
``active`` false and ``revoked_at`` set, for history; its ``username`` becomes
``revoked:{row id}:{username}`` because the column is unique and the device's next credential
reuses the username. Revocation is sticky: a plain ``linli provision`` does not issue a new secret
to a device whose credential was revoked; ``--rotate SITE/DEVICE`` does.

Files in the output directory (default ``{LINLI_DATA_DIR}/broker``):

- ``passwd``: every active account of the loaded sites plus the platform accounts, for
  Mosquitto's ``password_file``;
- ``acl``: for ``acl_file``;
- ``platform-accounts.env`` (mode 0600, unless ``--platform-password-file`` names one):
  ``LINLI_GATEWAY_MQTT_PASSWORD=...`` and so on, one variable per platform account, kept across
  runs. Give each service its account as ``LINLI_MQTT_USERNAME`` / ``LINLI_MQTT_PASSWORD``.

A new ``passwd``/``acl`` gets mode 0640; a rewrite keeps the mode and owner of the file it
replaces (so a one-time ``chgrp mosquitto passwd acl`` sticks). Mosquitto needs, besides
``password_file`` and ``acl_file``, ``allow_anonymous false``; it reads both files at start and on
SIGHUP only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import secrets
import signal
import stat
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from linli.site import Site
from linli.storage.models import DeviceCredential

HASH_ITERATIONS = 101  # what mosquitto_passwd 2.0 uses
SALT_BYTES = 12
USERNAME_MAX = 80  # device_credentials.username

CONCENTRATOR = "concentrator"
DEVICE_CHANNELS = ("status", "telemetry", "event", "cmd/ack")  # a device writes these, reads cmd
CONCENTRATOR_CHANNELS = ("status", "event")

GATEWAY, API, WATCHDOG, SIM = "linli-gateway", "linli-api", "linli-watchdog", "linli-sim"
PLATFORM_USERNAMES = (GATEWAY, API, WATCHDOG, SIM)

PASSWD, ACL, PLATFORM_ENV = "passwd", "acl", "platform-accounts.env"

_TYPEABLE_CHARS = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o, 1/l: installers type these in
_HEADER = "# Written by `linli provision` from the site files and the database: do not edit, rerun it.\n"


class ProvisionError(Exception):
    """Bad input (unknown site or device, unusable directory, ...): one line for the operator."""


# --- hashes ------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def mosquitto_hash(password: str, *, salt: bytes | None = None) -> str:
    """The password-file hash Mosquitto 2.0 writes: ``$7$101$<b64 salt>$<b64 PBKDF2-SHA512>``.

    A passwd line is ``username:`` followed by this.
    """
    if salt is None:
        salt = os.urandom(SALT_BYTES)
    derived = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, HASH_ITERATIONS)
    return f"$7${HASH_ITERATIONS}${_b64(salt)}${_b64(derived)}"


def mosquitto_verify(password: str, hashed: str) -> bool:
    """Whether `password` matches a Mosquitto hash (``$7$`` PBKDF2-SHA512, or ``$6$`` salted SHA512)."""
    parts = hashed.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            iterations, salt, expected = int(parts[2]), base64.b64decode(parts[3]), base64.b64decode(parts[4])
            derived = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
        elif len(parts) == 4 and parts[1] == "6":
            salt, expected = base64.b64decode(parts[2]), base64.b64decode(parts[3])
            derived = hashlib.sha512(password.encode("utf-8") + salt).digest()
        else:
            return False
    except ValueError:  # bad base64 or iteration count
        return False
    return hmac.compare_digest(derived, expected)


def new_secret() -> str:
    """A device secret an installer can type: 6 groups of 4 from 32 unambiguous characters (120 bits)."""
    chars = "".join(secrets.choice(_TYPEABLE_CHARS) for _ in range(24))
    return "-".join(chars[i : i + 4] for i in range(0, 24, 4))


# --- accounts ----------------------------------------------------------------------------------


def device_username(site: str, device_id: str, kind: str) -> str:
    if kind == CONCENTRATOR:
        return f"{site}.{CONCENTRATOR}.{device_id}"
    return f"{site}.{device_id}"


@dataclass(frozen=True, slots=True)
class Account:
    """A broker account for a device or concentrator of a site."""

    site: str
    device_id: str
    kind: str  # streetlight | elevator | charger | concentrator
    children: tuple[tuple[str, str], ...] = ()  # a concentrator's: (kind, device id)

    @property
    def username(self) -> str:
        return device_username(self.site, self.device_id, self.kind)

    @property
    def label(self) -> str:
        if self.kind == CONCENTRATOR:
            return f"{self.site}/{CONCENTRATOR}/{self.device_id}"
        return f"{self.site}/{self.device_id}"


@dataclass(frozen=True, slots=True)
class PlatformAccount:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    """A newly issued credential: the only time its password exists outside the device."""

    site: str
    device_id: str
    kind: str
    username: str
    password: str


def broker_accounts(sites: Iterable[Site]) -> list[Account]:
    """Every device and concentrator account of the sites, in site-file order, devices first.

    Devices behind a concentrator and retired devices have no account.
    """
    accounts: list[Account] = []
    for site in sites:
        in_service = list(site.devices.values())
        accounts.extend(Account(site.id, d.id, d.kind) for d in in_service if d.concentrator is None)
        for conc in site.spec.concentrators:
            children = tuple((d.kind, d.id) for d in in_service if d.concentrator == conc.id)
            accounts.append(Account(site.id, conc.id, CONCENTRATOR, children))
    return accounts


def _platform_rules(username: str, site_ids: Sequence[str]) -> list[tuple[str, str]]:
    if username == GATEWAY:
        return ([("read", f"estate/v1/{s}/#") for s in site_ids]
                + [("write", f"estate/v1/{s}/+/+/cmd") for s in site_ids] + [("write", "linli/#")])
    if username == API:
        return [("write", f"estate/v1/{s}/+/+/cmd") for s in site_ids] + [("read", "linli/#")]
    if username == WATCHDOG:
        return [("read", "linli/#"), ("read", "$SYS/#")]
    if username == SIM:
        return [(access, f"estate/v1/{s}/+/+/{channel}")
                for s in site_ids
                for access, channel in [*(("write", c) for c in DEVICE_CHANNELS), ("read", "cmd")]]
    raise ValueError(f"unknown platform account {username!r} (known: {', '.join(PLATFORM_USERNAMES)})")


def _device_rules(site: str, kind: str, device_id: str) -> list[tuple[str, str]]:
    prefix = f"estate/v1/{site}/{kind}/{device_id}"
    return [("write", f"{prefix}/{c}") for c in DEVICE_CHANNELS] + [("read", f"{prefix}/cmd")]


def account_rules(account: Account) -> list[tuple[str, str]]:
    """(access, topic) pairs of one device or concentrator account."""
    if account.kind != CONCENTRATOR:
        return _device_rules(account.site, account.kind, account.device_id)
    prefix = f"estate/v1/{account.site}/{CONCENTRATOR}/{account.device_id}"
    rules = [("write", f"{prefix}/{c}") for c in CONCENTRATOR_CHANNELS]
    for kind, child in account.children:
        rules.extend(_device_rules(account.site, kind, child))
    return rules


def _block(username: str, rules: Sequence[tuple[str, str]], comment: str) -> str:
    lines = [f"# {comment}", f"user {username}", *(f"topic {access} {topic}" for access, topic in rules)]
    return "\n".join(lines) + "\n"


def acl_for(sites: Iterable[Site], platform_accounts: Iterable[str | PlatformAccount] = PLATFORM_USERNAMES) -> str:
    """Mosquitto's ACL file: the platform accounts given (names or :class:`PlatformAccount`),
    then every device and concentrator account of the sites. Anything not granted is refused."""
    sites = list(sites)
    site_ids = [s.id for s in sites]
    blocks = [_HEADER + "# Anonymous clients are refused (allow_anonymous false); unlisted topics are denied.\n"]
    for entry in platform_accounts:
        username = entry.username if isinstance(entry, PlatformAccount) else entry
        what = "platform account, for demos only: publishes for every device" if username == SIM else "platform account"
        blocks.append(_block(username, _platform_rules(username, site_ids), what))
    for account in broker_accounts(sites):
        if account.kind == CONCENTRATOR:
            children = ", ".join(child for _, child in account.children) or "no children"
            comment = f"concentrator {account.label}, publishes for: {children}"
        else:
            comment = f"{account.kind} {account.label}"
        blocks.append(_block(account.username, account_rules(account), comment))
    return "\n".join(blocks)


# --- credentials in the database ---------------------------------------------------------------


def _rows(session: Session, site_ids: Iterable[str] | None = None) -> list[DeviceCredential]:
    query = select(DeviceCredential).order_by(DeviceCredential.id)
    if site_ids is not None:
        query = query.where(DeviceCredential.site.in_(list(site_ids)))
    return list(session.scalars(query))


def _is_concentrator(kind: str) -> bool:
    return kind == CONCENTRATOR


def _issue(session: Session, account: Account, now: datetime, note: str) -> IssuedSecret:
    password = new_secret()
    session.add(DeviceCredential(
        site=account.site, device_id=account.device_id, kind=account.kind, username=account.username,
        password_hash=mosquitto_hash(password), active=True, created_at=now, revoked_at=None, note=note,
    ))
    return IssuedSecret(account.site, account.device_id, account.kind, account.username, password)


def issue_credentials(session: Session, sites: Iterable[Site], now: datetime, *,
                      reissue_revoked: bool = False) -> list[IssuedSecret]:
    """A new secret for every account of the sites that has no active credential (see
    :func:`broker_accounts`). An account whose credential was revoked gets none unless
    `reissue_revoked`. Idempotent: a second call issues nothing."""
    sites = list(sites)
    rows = _rows(session, [s.id for s in sites])
    active = {row.username for row in rows if row.active}
    revoked = {(row.site, row.device_id, _is_concentrator(row.kind)) for row in rows if not row.active}
    issued = []
    for account in broker_accounts(sites):
        if account.username in active:
            continue
        if not reissue_revoked and (account.site, account.device_id, _is_concentrator(account.kind)) in revoked:
            continue
        issued.append(_issue(session, account, now, "issued by linli provision"))
    session.flush()
    return issued


def revoked_accounts(session: Session, sites: Iterable[Site]) -> list[Account]:
    """Accounts of the sites with no active credential because theirs was revoked."""
    sites = list(sites)
    rows = _rows(session, [s.id for s in sites])
    active = {row.username for row in rows if row.active}
    revoked = {(row.site, row.device_id, _is_concentrator(row.kind)) for row in rows if not row.active}
    return [a for a in broker_accounts(sites)
            if a.username not in active and (a.site, a.device_id, _is_concentrator(a.kind)) in revoked]


def stray_credentials(session: Session, sites: Iterable[Site]) -> list[DeviceCredential]:
    """Active credentials of no account of the sites (device removed, retired, now behind a
    concentrator, or of a site not loaded): they are left out of the password file."""
    expected = {a.username for a in broker_accounts(sites)}
    return [row for row in _rows(session) if row.active and row.username not in expected]


def revoke(session: Session, site: str, device_id: str, now: datetime, *, kind: str | None = None) -> bool:
    """Revoke the active credential of a device (or, with ``kind="concentrator"``, a concentrator);
    False when it has none. The row stays, inactive, with ``revoked_at``. Without `kind`, an id that
    is both a device and a concentrator of the site raises :class:`ProvisionError`."""
    rows = [row for row in session.scalars(select(DeviceCredential).where(
        DeviceCredential.site == site, DeviceCredential.device_id == device_id, DeviceCredential.active.is_(True),
    ))]
    if kind is not None:
        rows = [row for row in rows if _is_concentrator(row.kind) == _is_concentrator(kind)]
    elif len({_is_concentrator(row.kind) for row in rows}) > 1:
        raise ProvisionError(f"{site}/{device_id} is both a device and a concentrator: "
                             f"name the concentrator {site}/{CONCENTRATOR}/{device_id}")
    for row in rows:
        stamp = now.astimezone(UTC).isoformat(timespec="seconds")
        row.note = f"{row.note + '; ' if row.note else ''}revoked {stamp}; username was {row.username}"
        row.username = f"revoked:{row.id}:{row.username}"[:USERNAME_MAX]  # frees the unique username
        row.active = False
        row.revoked_at = now
    session.flush()
    return bool(rows)


def rotate(session: Session, sites: Iterable[Site], site: str, device_id: str, now: datetime, *,
           kind: str | None = None) -> IssuedSecret:
    """Revoke the device's credential (if any) and issue a new one."""
    account = find_account(sites, site, device_id, kind=kind)
    revoke(session, site, device_id, now, kind=account.kind)
    issued = _issue(session, account, now, "issued by linli provision --rotate")
    session.flush()
    return issued


def find_account(sites: Iterable[Site], site_id: str, device_id: str, *, kind: str | None = None) -> Account:
    """The account of a device or concentrator, or :class:`ProvisionError` saying why there is none."""
    by_id = {s.id: s for s in sites}
    site = by_id.get(site_id)
    if site is None:
        raise ProvisionError(f"unknown site {site_id!r} (known: {', '.join(sorted(by_id)) or 'none'})")
    matches = [a for a in broker_accounts([site]) if a.device_id == device_id
               and (kind is None or _is_concentrator(a.kind) == _is_concentrator(kind))]
    if len(matches) > 1:
        raise ProvisionError(f"{site_id}/{device_id} is both a device and a concentrator: "
                             f"name the concentrator {site_id}/{CONCENTRATOR}/{device_id}")
    if matches:
        return matches[0]
    device = site.devices.get(device_id) if kind != CONCENTRATOR else None
    if device is not None and device.concentrator is not None:
        raise ProvisionError(f"{site_id}/{device_id} is behind concentrator {device.concentrator} and has no "
                             f"account of its own (its concentrator's is {site_id}/{CONCENTRATOR}/{device.concentrator})")
    if kind != CONCENTRATOR and any(d.id == device_id for d in site.spec.devices):
        raise ProvisionError(f"{site_id}/{device_id} is retired and has no account")
    what = CONCENTRATOR if kind == CONCENTRATOR else "device"
    raise ProvisionError(f"unknown {what} {device_id!r} in site {site_id!r}")


# --- the files ---------------------------------------------------------------------------------


def read_passwd(path: Path) -> dict[str, str]:
    """username -> hash of a Mosquitto password file; empty when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    entries = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            username, hashed = line.split(":", 1)
            entries[username] = hashed.strip()
    return entries


def passwd_for(session: Session, sites: Iterable[Site], platform: Sequence[PlatformAccount],
               existing: Mapping[str, str] | None = None) -> str:
    """The password file: the platform accounts, then every active account of the sites.

    A platform account keeps its hash from `existing` while that still matches its password,
    so that rewriting the file with the same passwords changes nothing."""
    existing = existing or {}
    lines = [_HEADER.rstrip("\n")]
    for account in platform:
        hashed = existing.get(account.username)
        if hashed is None or not mosquitto_verify(account.password, hashed):
            hashed = mosquitto_hash(account.password)
        lines.append(f"{account.username}:{hashed}")
    sites = list(sites)
    active = {row.username: row.password_hash for row in _rows(session, [s.id for s in sites]) if row.active}
    lines.extend(f"{a.username}:{active[a.username]}" for a in broker_accounts(sites) if a.username in active)
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str, mode: int, *, keep_mode: bool = True) -> bool:
    """Replace `path` with `text` at once (the broker never reads half a file); False when unchanged."""
    owner: tuple[int, int] | None = None
    try:
        current = path.stat()
    except FileNotFoundError:
        pass
    else:
        if path.read_text(encoding="utf-8", errors="replace") == text and (keep_mode or stat.S_IMODE(current.st_mode) == mode):
            return False
        owner = (current.st_uid, current.st_gid)
        if keep_mode:
            mode = stat.S_IMODE(current.st_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        if owner is not None:
            with suppress(OSError):  # only root may give a file away; the mode still holds
                os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return True


def write_broker_files(session: Session, sites: Iterable[Site], out_dir: Path,
                       platform: Sequence[PlatformAccount]) -> None:
    """Write ``passwd`` and ``acl`` into `out_dir` (which must exist)."""
    sites = list(sites)
    out_dir = Path(out_dir)
    passwd = passwd_for(session, sites, platform, read_passwd(out_dir / PASSWD))
    _write_atomic(out_dir / PASSWD, passwd, 0o640)
    _write_atomic(out_dir / ACL, acl_for(sites, platform), 0o640)


# --- platform passwords ------------------------------------------------------------------------


def platform_variable(username: str) -> str:
    """``linli-gateway`` -> ``LINLI_GATEWAY_MQTT_PASSWORD``."""
    return username.upper().replace("-", "_") + "_MQTT_PASSWORD"


def read_env_file(path: Path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    values = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip().removeprefix("export ").strip()] = value
    return values


def _env_text(values: Mapping[str, str]) -> str:
    lines = [
        "# Broker accounts of the Linli platform, written by `linli provision`. Secret: keep it mode 0600.",
        "# Each service connects as LINLI_MQTT_USERNAME=<account> with LINLI_MQTT_PASSWORD=<its password>:",
        *(f"#   {u}: {platform_variable(u)}" for u in PLATFORM_USERNAMES),
        "# linli-sim may publish for every device: for demos only, never in production.",
        *(f"{key}={value}" for key, value in values.items()),
    ]
    return "\n".join(lines) + "\n"


def platform_accounts(usernames: Sequence[str], *, password_file: Path | None, out_dir: Path) -> list[PlatformAccount]:
    """The platform's accounts with their passwords: from `password_file` when given (it must
    have each), else from ``{out_dir}/platform-accounts.env``, generating those it lacks."""
    if password_file is not None:
        try:
            values = read_env_file(password_file)
        except (OSError, UnicodeDecodeError) as exc:
            raise ProvisionError(f"cannot read the platform password file {password_file}: {exc}") from exc
        missing = [platform_variable(u) for u in usernames if not values.get(platform_variable(u))]
        if missing:
            raise ProvisionError(f"{password_file} has no {', '.join(missing)}")
        return [PlatformAccount(u, values[platform_variable(u)]) for u in usernames]
    path = out_dir / PLATFORM_ENV
    try:
        values = read_env_file(path) if path.exists() else {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ProvisionError(f"cannot read {path}: {exc}") from exc
    for username in usernames:
        if not values.get(platform_variable(username)):
            values[platform_variable(username)] = secrets.token_urlsafe(24)
    _write_atomic(path, _env_text(values), 0o600, keep_mode=False)
    return [PlatformAccount(u, values[platform_variable(u)]) for u in usernames]


# --- the command -------------------------------------------------------------------------------


def _target(text: str) -> tuple[str, str, str | None]:
    """``SITE/DEVICE`` or ``SITE/concentrator/ID`` -> (site, id, kind or None)."""
    parts = text.strip().split("/")
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1], None
    if len(parts) == 3 and parts[1] == CONCENTRATOR and parts[0] and parts[2]:
        return parts[0], parts[2], CONCENTRATOR
    raise ProvisionError(f"{text!r}: expected SITE/DEVICE or SITE/concentrator/ID, e.g. wanmei/SL-07")


def _reload_target(args: argparse.Namespace) -> int | None:
    """The broker's pid to send SIGHUP to, checked before anything is changed."""
    if args.reload_pidfile is not None:
        try:
            text = Path(args.reload_pidfile).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ProvisionError(f"cannot read the pid file {args.reload_pidfile}: {exc}") from exc
        if not text.isdigit():
            raise ProvisionError(f"{args.reload_pidfile} holds no process id: {text[:40]!r}")
        pid = int(text)
    elif args.reload_pid is not None:
        pid = args.reload_pid
    else:
        return None
    if pid <= 1:
        raise ProvisionError(f"{pid} is not a broker's process id")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise ProvisionError(f"no process {pid} to reload") from None
    except PermissionError:
        raise ProvisionError(f"not allowed to signal process {pid}") from None
    return pid


def _out_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ProvisionError(f"--out {path}: not a directory") from None
    except OSError as exc:
        raise ProvisionError(f"--out {path}: cannot create it: {exc.strerror or exc}") from None
    if not path.is_dir():
        raise ProvisionError(f"--out {path}: not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ProvisionError(f"--out {path}: not writable")
    return path


def _print_secrets(issued: Sequence[IssuedSecret]) -> None:
    header = ("SITE", "DEVICE", "KIND", "USERNAME", "PASSWORD")
    rows = [header, *((s.site, s.device_id, s.kind, s.username, s.password) for s in issued)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, metavar="DIR", help="where to write passwd, acl and "
                        "platform-accounts.env (default: $LINLI_DATA_DIR/broker)")
    parser.add_argument("--platform-password-file", type=Path, metavar="FILE",
                        help="read the platform accounts' passwords from this env file (LINLI_GATEWAY_MQTT_PASSWORD=..., "
                             "...) instead of keeping them in DIR/platform-accounts.env")
    parser.add_argument("--sim", action=argparse.BooleanOptionalAction, default=None,
                        help="include the simulator's account linli-sim, which may publish for every device "
                             "(default: yes, except with LINLI_ENV=production)")
    reload = parser.add_mutually_exclusive_group()
    reload.add_argument("--reload-pid", type=int, metavar="PID", help="send Mosquitto (this process) SIGHUP afterwards")
    reload.add_argument("--reload-pidfile", type=Path, metavar="FILE", help="send SIGHUP to the process in this pid file")


def _parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    provision = argparse.ArgumentParser(
        prog="linli provision",
        description="Issue a broker account to every device and concentrator of the sites (LINLI_SITES) that has "
                    "none, print the new secrets once, and write Mosquitto's password file and ACL. "
                    "`linli provision revoke SITE/DEVICE` revokes a device's credential.",
        epilog="Devices are SITE/DEVICE (e.g. wanmei/SL-07), concentrators SITE/concentrator/ID. Mosquitto "
               "reads the files at start and on SIGHUP. Database and sites: LINLI_DATABASE_URL, LINLI_SITES, "
               "LINLI_DATA_DIR.",
    )
    _common_options(provision)
    provision.add_argument("--rotate", action="append", default=[], metavar="SITE/DEVICE",
                           help="issue a new secret to this device, revoking its current one (repeatable; "
                                "also re-enables a revoked device)")
    revoke_parser = argparse.ArgumentParser(
        prog="linli provision revoke",
        description="Revoke a device's (or concentrator's) broker credential, kept in the database for history, "
                    "and rewrite the password file and ACL. Mosquitto refuses it once reloaded (SIGHUP).",
    )
    revoke_parser.add_argument("target", metavar="SITE/DEVICE")
    _common_options(revoke_parser)
    return provision, revoke_parser


def _one_line(exc: ValidationError) -> str:
    """A settings error on one line, naming the variable."""
    parts = []
    for error in exc.errors(include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        name = "_".join(str(p) for p in error["loc"]).upper()
        parts.append(f"LINLI_{name}: {message}" if name else message)
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """`linli provision [options]` and `linli provision revoke SITE/DEVICE [options]`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    provision_parser, revoke_parser = _parsers()
    revoking = argv[:1] == ["revoke"]
    try:
        args = revoke_parser.parse_args(argv[1:]) if revoking else provision_parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return _run(args, revoking=revoking)
    except ProvisionError as exc:
        print(f"linli provision: {exc}", file=sys.stderr)
        return 2
    except (SQLAlchemyError, OSError) as exc:  # the database or the disk, not the operator's input
        first_line = (str(exc).strip().splitlines() or [""])[0]
        print(f"linli provision: {type(exc).__name__}: {first_line}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, *, revoking: bool) -> int:
    from linli.settings import Settings
    from linli.site import SiteConfigError, SiteRegistry
    from linli.storage import Database, migrate

    try:
        settings = Settings()
    except ValidationError as exc:
        raise ProvisionError(f"bad configuration: {_one_line(exc)}") from None
    try:
        sites = list(SiteRegistry.load(settings.site_files))
    except SiteConfigError as exc:
        raise ProvisionError(str(exc)) from None
    out_dir = _out_dir(args.out if args.out is not None else settings.data_dir / "broker")
    reload_pid = _reload_target(args)
    targets = [_target(t) for t in ([args.target] if revoking else args.rotate)]
    if not revoking:  # revoking also works for a device that left the site files
        for site_id, device_id, kind in targets:
            find_account(sites, site_id, device_id, kind=kind)
    with_sim = args.sim if args.sim is not None else settings.env != "production"
    usernames = [u for u in PLATFORM_USERNAMES if with_sim or u != SIM]
    platform = platform_accounts(usernames, password_file=args.platform_password_file, out_dir=out_dir)

    migrate(settings.db_url)
    database = Database(settings.db_url)
    now = datetime.now(UTC)
    issued: list[IssuedSecret] = []
    try:
        with database.session() as session:
            if revoking:
                site_id, device_id, kind = targets[0]
                revoked = revoke(session, site_id, device_id, now, kind=kind)
                why_not = "" if revoked else _nothing_to_revoke(session, sites, site_id, device_id, kind)
            else:
                issued = [rotate(session, sites, s, d, now, kind=k) for s, d, k in targets]
                issued += issue_credentials(session, sites, now)
            passive = [] if revoking else revoked_accounts(session, sites)
            strays = stray_credentials(session, sites)
            write_broker_files(session, sites, out_dir, platform)
            active_count = sum(1 for line in (out_dir / PASSWD).read_text().splitlines() if line and line[0] != "#")
    finally:
        database.close()

    # Only now, with the hashes committed, do the secrets exist for the installer.
    if revoking:
        label = f"{site_id}/{CONCENTRATOR + '/' if kind else ''}{device_id}"
        print(f"revoked {label}" if revoked else f"{label} has no active credential ({why_not}): nothing to revoke")
    elif issued:
        print(f"{len(issued)} new credential(s). Shown this once only: give each to its installer now.")
        _print_secrets(issued)
    else:
        print("no new credentials: every device and concentrator already has one")
    for account in passive:
        print(f"note: {account.label} stays revoked; `linli provision --rotate {account.label}` issues it a new secret",
              file=sys.stderr)
    for row in strays:
        label = f"{row.site}/{CONCENTRATOR + '/' if row.kind == CONCENTRATOR else ''}{row.device_id}"
        print(f"warning: {label} has an active credential but no account in the loaded site files: left out of "
              f"the password file (`linli provision revoke {label}` revokes it)", file=sys.stderr)
    print(f"wrote {out_dir / PASSWD} ({active_count} accounts) and {out_dir / ACL}"
          + ("" if args.platform_password_file else f"; platform passwords in {out_dir / PLATFORM_ENV}"))
    if reload_pid is None:
        print("Mosquitto reads these files only at start and on SIGHUP: reload it now (kill -HUP <pid>, "
              "docker compose kill -s HUP <service>, or rerun with --reload-pid/--reload-pidfile)")
        return 0
    try:
        os.kill(reload_pid, signal.SIGHUP)
    except OSError as exc:
        print(f"linli provision: could not send SIGHUP to {reload_pid}: {exc}; reload Mosquitto by hand", file=sys.stderr)
        return 1
    print(f"sent SIGHUP to Mosquitto (pid {reload_pid}): it reloads the password file and ACL")
    return 0


def _nothing_to_revoke(session: Session, sites: Sequence[Site], site_id: str, device_id: str, kind: str | None) -> str:
    """Why nothing was revoked; an unknown site or device is a :class:`ProvisionError`."""
    rows = _rows(session, [site_id])
    known_sites = {s.id for s in sites}
    if site_id not in known_sites and not rows:
        raise ProvisionError(f"unknown site {site_id!r} (known: {', '.join(sorted(known_sites)) or 'none'})")
    if any(r.device_id == device_id and (kind is None or _is_concentrator(r.kind) == _is_concentrator(kind)) for r in rows):
        return "revoked before"
    if site_id in known_sites:
        find_account(sites, site_id, device_id, kind=kind)  # raises for an unknown device
        return "never issued one"
    raise ProvisionError(f"unknown device {device_id!r} in site {site_id!r}")
