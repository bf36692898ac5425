"""Device lifecycle: commission a device, replace its controller or its lamp, retire it.

``linli device COMMAND`` (see ``--help``), configured like every command by ``LINLI_SITES`` and
``LINLI_DATABASE_URL``. Each command records a lifecycle event (``device_lifecycle_events``), the
device's own history that ``linli device history`` prints; ticket history and time series stay
under the same device id throughout.

- ``commission`` adds the device to its site file and issues its broker account (the secret is
  printed once). ``retire`` marks it ``retired: true`` in the file (it stays there for its
  history: no detection, its messages are dead-lettered as retired) and revokes its account.
  The file is checked completely in memory first, then written atomically (a temporary file
  renamed over it, the previous version kept as ``FILE.bak``); running gateways and APIs apply
  it within seconds (``linli.site_source``). Comment lines at the top of the file are kept as its
  header; the rest is rewritten by PyYAML, so comments elsewhere are lost.
- ``replace-controller`` revokes the old broker account and issues a new one.
- ``replace-lamp --burn-hours-at-replacement N`` records N, the controller's burn-hour counter
  when the new lamp went in: from then on the lamp's age is ``burn_hours - N``
  (:func:`lamp_age_hours`) and its energy baseline starts again (:func:`energy_baseline_start`).
  An active ``end_of_life`` ticket of the light gets a comment recording the replacement; the
  crew resolves it as usual, and the ``end_of_life`` detector verifies it once the lamp's age is
  under its rated life.

Broker accounts come from ``linli.ops.provision``; after ``commission``, ``replace-controller``
or ``retire``, run ``linli provision`` to rewrite the broker's password and ACL files.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from linli.site import DEVICE_KINDS, Device, Site, SiteConfigError, build_site, load_site, parse_site

if TYPE_CHECKING:  # the storage layer is imported when a command runs: the pure functions need none of it
    from sqlalchemy.orm import Session

    from linli.storage import Database, DeviceLifecycleEvent

COMMISSIONED = "commissioned"
CONTROLLER_REPLACED = "controller_replaced"
LAMP_REPLACED = "lamp_replaced"
RETIRED = "retired"
EVENT_TYPES = (COMMISSIONED, CONTROLLER_REPLACED, LAMP_REPLACED, RETIRED)
BROKER_FILES = "the broker learns of account changes when its files are rewritten: run `linli provision --reload-pid PID`"


class LifecycleError(Exception):
    """A command that cannot be done as asked; the message is one line for the installer."""


# ---------------------------------------------------------------- pure: what detectors read


class LifecycleRecord(Protocol):
    """One lifecycle event as the pure functions read it (a ``DeviceLifecycleEvent`` row fits)."""

    @property
    def type(self) -> str: ...

    @property
    def at(self) -> datetime: ...

    @property
    def data(self) -> Mapping[str, Any]: ...


def _latest(events: Iterable[LifecycleRecord], types: Sequence[str]) -> LifecycleRecord | None:
    latest: LifecycleRecord | None = None
    for event in events:
        if event.type in types and (latest is None or event.at >= latest.at):
            latest = event
    return latest


def lamp_age_hours(events: Iterable[LifecycleRecord], reported_burn_hours: float) -> float:
    """The age of the lamp now in a light whose controller reports `reported_burn_hours`.

    The latest ``lamp_replaced`` event holds the counter at the replacement (``burn_hours_offset``);
    the lamp's age is the hours burnt since. A counter below that offset has restarted since
    (a new controller, say), so what it reports is the best measure there is.
    """
    replaced = _latest(events, (LAMP_REPLACED,))
    offset = float(replaced.data.get("burn_hours_offset", 0)) if replaced is not None else 0.0
    if reported_burn_hours < offset:
        return max(reported_burn_hours, 0.0)
    return reported_burn_hours - offset


def energy_baseline_start(events: Iterable[LifecycleRecord]) -> datetime | None:
    """From when a light's nights count towards its energy baseline: after its latest lamp or
    controller (the meter) replacement; None when neither was ever replaced."""
    replaced = _latest(events, (LAMP_REPLACED, CONTROLLER_REPLACED))
    return replaced.at if replaced is not None else None


# ---------------------------------------------------------------- the site file


@dataclass(frozen=True, slots=True)
class SiteDocument:
    """A site file as read for editing: its header comments and its YAML document."""

    path: Path
    header: str
    document: dict[str, Any]

    def render(self) -> str:
        return self.header + yaml.safe_dump(self.document, allow_unicode=True, sort_keys=False)

    def checked(self) -> Site:
        """The site the edited document describes, validated as the gateway will load it."""
        return parse_site(self.render(), self.path)


def site_file_of(paths: Iterable[Path], site_id: str) -> Path:
    """The file among `paths` that defines `site_id` (files that do not load are passed over)."""
    known: list[str] = []
    for path in paths:
        try:
            site = load_site(path)
        except SiteConfigError:
            continue
        if site.id == site_id:
            return path
        known.append(site.id)
    raise LifecycleError(f"no site {site_id!r} in the site files (LINLI_SITES); known: {', '.join(known) or 'none'}")


def read_document(path: Path) -> SiteDocument:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LifecycleError(f"{path}: cannot read the site file: {exc.strerror or exc}") from exc
    header = "".join(_leading_comments(text.splitlines(keepends=True)))
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LifecycleError(f"{path}: not valid YAML: {_one_line(str(exc))}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("devices"), list):
        raise LifecycleError(f"{path}: not a site file with a devices list")
    return SiteDocument(path, header, document)


def _leading_comments(lines: Iterable[str]) -> Iterable[str]:
    for line in lines:
        if not line.startswith("#"):
            return
        yield line


def write_atomically(path: Path, text: str) -> Path:
    """Replace `path` by `text` (temporary file, fsync, rename), keeping the old file as `path.bak`."""
    backup = path.with_name(path.name + ".bak")
    try:
        shutil.copy2(path, backup)
        _replace(path, text)
    except OSError as exc:
        raise LifecycleError(f"{path}: cannot write the site file: {exc.strerror or exc}") from exc
    return backup


def _replace(path: Path, text: str) -> None:
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _entry(document: SiteDocument, device_id: str) -> dict[str, Any]:
    for entry in document.document["devices"]:
        if isinstance(entry, dict) and entry.get("id") == device_id:
            return entry
    raise LifecycleError(f"no device {device_id!r} in {document.path}")


# ---------------------------------------------------------------- the operations


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command did, for the installer."""

    lines: tuple[str, ...]


def _record(session: Session, site: str, device_id: str, type_: str, *, now: datetime, actor: str,
            note: str | None, data: Mapping[str, Any] | None = None) -> None:
    from linli.storage.models import DeviceLifecycleEvent

    session.add(DeviceLifecycleEvent(
        site=site, device_id=device_id, type=type_, at=now, actor=actor[:64], note=note, data=dict(data or {}),
    ))


def _one_device(site: Site, device: Device) -> Site:
    """`site` with only `device` in it: provisioning then issues for exactly that device."""
    return build_site(site.spec.model_copy(update={"devices": [device], "concentrators": []}), site.source)


def _issue(session: Session, site: Site, device: Device, now: datetime, *, replacing: bool = False) -> list[str]:
    """Issue the device's broker account (revoking the old one when `replacing`); lines to print,
    with the secret, shown only this once."""
    from linli.ops.provision import ProvisionError, issue_credentials, revoke

    if device.concentrator is not None:
        return [f"broker account: none of its own (concentrator {device.concentrator} publishes for it)"]
    lines = []
    if replacing:
        revoked = revoke(session, site.id, device.id, now, kind=device.kind)
        lines.append("old broker account: revoked" if revoked else "old broker account: none was active")
    try:
        issued = issue_credentials(session, [_one_device(site, device)], now, reissue_revoked=True)
    except ProvisionError as exc:
        raise LifecycleError(str(exc)) from exc
    lines.extend(f"broker account: username {secret.username}  password {secret.password}  (shown only now)"
                 for secret in issued)
    return lines or ["broker account: it already has an active one"]


def _revoke(session: Session, site_id: str, device: Device, now: datetime) -> str:
    from linli.ops.provision import revoke

    if device.concentrator is not None:
        return f"broker account: none of its own (concentrator {device.concentrator} publishes for it)"
    return "broker account: revoked" if revoke(session, site_id, device.id, now, kind=device.kind) else \
        "broker account: none was active"


def _edit_site_file(
    database: Database, document: SiteDocument, in_transaction: Callable[[Session], list[str]],
) -> list[str]:
    """Run `in_transaction(session)`, write the edited file, commit; the file is put back if the commit fails."""
    written: Path | None = None
    try:
        with database.session() as session:
            lines = in_transaction(session)
            session.flush()
            written = write_atomically(document.path, document.render())
    except BaseException:
        if written is not None:
            _replace(document.path, written.read_text(encoding="utf-8"))
        raise
    return [*lines, f"wrote {document.path} (previous version: {written}); running gateways and APIs apply it within seconds"]


def commission(database: Database, path: Path, site_id: str, entry: dict[str, Any], *, actor: str, note: str | None,
               now: datetime) -> Outcome:
    document = read_document(path)
    device_id = str(entry["id"])
    existing = [e for e in document.document["devices"] if isinstance(e, dict) and e.get("id") == device_id]
    if existing:
        state = " (retired; a retired id stays taken for its history)" if existing[0].get("retired") else ""
        raise LifecycleError(f"device {device_id!r} is already in site {site_id!r}{state}")
    document.document["devices"].append(entry)
    site = _checked(document)
    device = site.devices[device_id]

    def record(session: Session) -> list[str]:
        _record(session, site_id, device_id, COMMISSIONED, now=now, actor=actor, note=note, data={"entry": entry})
        return [f"commissioned {site_id}/{device_id} ({device.kind}, {device.name})", *_issue(session, site, device, now),
                BROKER_FILES]

    return Outcome(tuple(_edit_site_file(database, document, record)))


def retire(database: Database, path: Path, site_id: str, device_id: str, *, actor: str, note: str | None,
           now: datetime) -> Outcome:
    document = read_document(path)
    entry = _entry(document, device_id)
    if entry.get("retired"):
        raise LifecycleError(f"device {device_id!r} of site {site_id!r} is already retired")
    entry["retired"] = True
    device = _checked(document).retired[device_id]

    def record(session: Session) -> list[str]:
        _record(session, site_id, device_id, RETIRED, now=now, actor=actor, note=note)
        lines = [f"retired {site_id}/{device_id}: kept in the site file for its history, no longer monitored",
                 _revoke(session, site_id, device, now), BROKER_FILES]
        active = _active_tickets(session, site_id, device_id)
        if active:
            lines.append(f"still active tickets of the device: {', '.join(f'#{t}' for t in active)} (cancel them if moot)")
        return lines

    return Outcome(tuple(_edit_site_file(database, document, record)))


def replace_controller(database: Database, site: Site, device_id: str, *, actor: str, note: str | None,
                       now: datetime) -> Outcome:
    device = _in_service(site, device_id)
    with database.session() as session:
        issued = _issue(session, site, device, now, replacing=True)
        _record(session, site.id, device_id, CONTROLLER_REPLACED, now=now, actor=actor, note=note)
    return Outcome((f"controller of {site.id}/{device_id} replaced; its tickets and time series carry on", *issued,
                    BROKER_FILES))


def replace_lamp(database: Database, site: Site, device_id: str, burn_hours: float, *, actor: str, note: str | None,
                 now: datetime) -> Outcome:
    from linli.storage.tickets import append_event, find_active
    from linli.tickets import EventType, Subject, TicketEvent

    device = _in_service(site, device_id)
    if device.kind != "streetlight":
        raise LifecycleError(f"{site.id}/{device_id} is {'an' if device.kind[0] in 'aeiou' else 'a'} {device.kind}, "
                             "not a streetlight: it has no lamp")
    if burn_hours < 0:
        raise LifecycleError("--burn-hours-at-replacement must be 0 or more")
    lines = [f"lamp of {site.id}/{device_id} replaced at {burn_hours:g} burn hours: its age counts from there"]
    with database.session() as session:
        _record(session, site.id, device_id, LAMP_REPLACED, now=now, actor=actor, note=note,
                data={"burn_hours_offset": burn_hours})
        ticket = find_active(session, site.id, Subject("device", device_id), "end_of_life")
        if ticket is not None:
            comment = (f"lamp replaced at {burn_hours:g} burn hours (linli device replace-lamp)"
                       + (f": {note}" if note else "") + "; resolve the ticket, the lamp's age now counts from there")
            append_event(session, ticket, TicketEvent(EventType.COMMENTED, now, actor[:64], comment,
                                                      {"lifecycle": LAMP_REPLACED, "burn_hours_offset": burn_hours}))
            lines.append(f"end_of_life ticket #{ticket.id}: replacement noted; resolve it as usual")
    return Outcome(tuple(lines))


def history(database: Database, site_id: str, device_id: str) -> list[DeviceLifecycleEvent]:
    from sqlalchemy import select

    from linli.storage.models import DeviceLifecycleEvent

    with database.session() as session:
        return list(session.scalars(
            select(DeviceLifecycleEvent)
            .where(DeviceLifecycleEvent.site == site_id, DeviceLifecycleEvent.device_id == device_id)
            .order_by(DeviceLifecycleEvent.at, DeviceLifecycleEvent.id)
        ))


def _checked(document: SiteDocument) -> Site:
    try:
        return document.checked()
    except SiteConfigError as exc:
        raise LifecycleError(f"the edit was not made: {_one_line(str(exc))}") from exc


def _in_service(site: Site, device_id: str) -> Device:
    if device_id in site.retired:
        raise LifecycleError(f"device {device_id!r} of site {site.id!r} is retired")
    device = site.devices.get(device_id)
    if device is None:
        raise LifecycleError(f"no device {device_id!r} in site {site.id!r}")
    return device


def _active_tickets(session: Session, site_id: str, device_id: str) -> list[int]:
    from sqlalchemy import select

    from linli.storage.models import TicketRow

    rows = session.scalars(select(TicketRow).where(TicketRow.site == site_id, TicketRow.active.is_(True)))
    return [row.id for row in rows if row.device_id == device_id or device_id in (row.device_ids or ())]


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


# ---------------------------------------------------------------- the command


def _site_device(value: str) -> tuple[str, str]:
    site, sep, device = value.partition("/")
    if not sep or not site or not device:
        raise argparse.ArgumentTypeError(f"{value!r} is not SITE/DEVICE, e.g. wanmei/SL-07")
    return site, device


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linli device", description="Commission, replace a controller or lamp, retire a device; show its history.",
        epilog="Site files from LINLI_SITES, the database from LINLI_DATABASE_URL. Errors exit with status 2.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--note", help="why, what was done (kept in the device's history)")
        sub.add_argument("--actor", default=_who(), help="who did it (default: the login name)")

    add = commands.add_parser("commission", help="add a device to its site file and issue its broker account")
    add.add_argument("site", metavar="SITE", help="site id, e.g. wanmei")
    add.add_argument("--id", required=True, dest="device_id", help="device id, as in its MQTT topics")
    add.add_argument("--kind", required=True, choices=DEVICE_KINDS)
    add.add_argument("--name", required=True, help="name shown in pages and tickets")
    add.add_argument("--name-en")
    add.add_argument("--circuit", help="streetlight: the circuit that feeds it")
    add.add_argument("--rated-power-w", type=float, help="streetlight: lamp rated power in W")
    add.add_argument("--rated-life-h", type=float, help="streetlight: rated lamp life in hours (default 50000)")
    add.add_argument("--building", help="elevator: its building")
    add.add_argument("--compound", help="charger: its compound")
    add.add_argument("--rated-power-kw", type=float, help="charger: rated power in kW")
    add.add_argument("--connectors", type=int, help="charger: number of connectors (default 1)")
    add.add_argument("--group", help="charger: a group label, e.g. DC")
    add.add_argument("--concentrator", help="the concentrator that relays it")
    add.add_argument("--interval-s", type=int, help="telemetry period in seconds (default 30)")
    add.add_argument("--x", type=float, help="position on the site plan")
    add.add_argument("--y", type=float, help="position on the site plan")
    common(add)

    controller = commands.add_parser("replace-controller", help="new controller: new broker account, old one revoked")
    controller.add_argument("device", metavar="SITE/DEVICE", type=_site_device)
    common(controller)

    lamp = commands.add_parser("replace-lamp", help="new lamp in a streetlight: its age counts from here")
    lamp.add_argument("device", metavar="SITE/DEVICE", type=_site_device)
    lamp.add_argument("--burn-hours-at-replacement", type=float, required=True, metavar="N",
                      help="the controller's burn_hours counter when the new lamp went in")
    common(lamp)

    gone = commands.add_parser("retire", help="take a device out of service (it stays in the file for its history)")
    gone.add_argument("device", metavar="SITE/DEVICE", type=_site_device)
    common(gone)

    past = commands.add_parser("history", help="print a device's lifecycle events")
    past.add_argument("device", metavar="SITE/DEVICE", type=_site_device)
    return parser


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "installer"


def _entry_from(args: argparse.Namespace) -> dict[str, Any]:
    if (args.x is None) != (args.y is None):
        raise LifecycleError("give both --x and --y, or neither")
    values: dict[str, Any] = {
        "id": args.device_id, "kind": args.kind, "name": args.name, "name_en": args.name_en,
        "circuit": args.circuit, "rated_power_w": args.rated_power_w, "rated_life_h": args.rated_life_h,
        "building": args.building, "compound": args.compound, "rated_power_kw": args.rated_power_kw,
        "connectors": args.connectors, "group": args.group, "concentrator": args.concentrator,
        "interval_s": args.interval_s,
        "position": {"x": _number(args.x), "y": _number(args.y)} if args.x is not None else None,
    }
    return {key: _number(value) for key, value in values.items() if value is not None}


def _number(value: Any) -> Any:
    """100.0 is written as 100, as a person writes it in the file."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _print_history(events: Sequence[DeviceLifecycleEvent], site_id: str, device_id: str) -> None:
    if not events:
        print(f"{site_id}/{device_id}: no lifecycle events")
        return
    for event in events:
        at = event.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        data = " ".join(f"{k}={v}" for k, v in (event.data or {}).items() if k != "entry")
        print("  ".join(part for part in (at, f"{event.type:<19}", f"by {event.actor}", event.note or "", data) if part))


def main(argv: list[str] | None = None) -> int:
    """`linli device COMMAND ...`; 0 when done, 2 on an error (one line on stderr)."""
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help, or a usage error argparse has printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return _run(args)
    except (LifecycleError, SiteConfigError) as exc:
        print(f"linli device {args.command}: {_one_line(str(exc))}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from linli.settings import Settings
    from linli.storage import Database, migrate

    try:
        settings = Settings()
    except ValidationError as exc:
        raise LifecycleError(f"bad configuration: {_one_line(str(exc))}") from exc
    now = datetime.now(UTC)
    try:
        migrate(settings.db_url)
        database = Database(settings.db_url)
    except SQLAlchemyError as exc:
        raise LifecycleError(f"the database at LINLI_DATABASE_URL does not answer: {_one_line(str(exc))}") from exc
    try:
        outcome = _dispatch(args, database, settings.site_files, now=now)
    except SQLAlchemyError as exc:
        raise LifecycleError(f"the database refused the change, nothing was done: {_one_line(str(exc))}") from exc
    finally:
        database.close()
    if outcome is not None:
        print("\n".join(outcome.lines))
    return 0


def _dispatch(args: argparse.Namespace, database: Database, files: list[Path], *, now: datetime) -> Outcome | None:
    site_id, device_id = (args.site, args.device_id) if args.command == "commission" else args.device
    if args.command == "history":
        _print_history(history(database, site_id, device_id), site_id, device_id)
        return None
    path = site_file_of(files, site_id)
    if args.command == "commission":
        return commission(database, path, site_id, _entry_from(args), actor=args.actor, note=args.note, now=now)
    if args.command == "retire":
        return retire(database, path, site_id, device_id, actor=args.actor, note=args.note, now=now)
    site = load_site(path)
    if args.command == "replace-controller":
        return replace_controller(database, site, device_id, actor=args.actor, note=args.note, now=now)
    return replace_lamp(database, site, device_id, args.burn_hours_at_replacement, actor=args.actor, note=args.note,
                        now=now)
