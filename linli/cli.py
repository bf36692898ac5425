"""The `linli` command. Each part runs on its own, configured by LINLI_* variables;
`linli demo` runs them all, embedded, on one machine with no server installed.

The subcommands import their package only when run, so this shared package stays free
of the others at import time.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


def _gateway(argv: Sequence[str]) -> int:
    from gateway.cli import main

    return main(list(argv))


def _api(argv: Sequence[str]) -> int:
    from api.server import main

    return main(list(argv))


def _sim(argv: Sequence[str]) -> int:
    from firmware_sim.cli import main

    return main(list(argv))


def _sim_check(argv: Sequence[str]) -> int:
    from firmware_sim.checker import main

    return main(list(argv))


def _demo(argv: Sequence[str]) -> int:
    from linli.demo import main

    return main(list(argv))


def _broker(argv: Sequence[str]) -> int:
    from linli.embedded_broker import main

    return main(list(argv))


def _check_sites(argv: Sequence[str]) -> int:
    from linli.site import SiteConfigError, SiteRegistry

    parser = argparse.ArgumentParser(prog="linli check-sites", description="Validate site files and summarise them.")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(list(argv))
    try:
        sites = SiteRegistry.load(args.files)
    except SiteConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    for site in sites:
        kinds = {k: sum(1 for d in site.devices.values() if d.kind == k) for k in ("streetlight", "elevator", "charger")}
        print(f"{site.source}: {site.id} ({site.name}): {kinds['streetlight']} streetlights, "
              f"{kinds['elevator']} elevators, {kinds['charger']} chargers, {len(site.circuits)} circuits")
    return 0


def _create_user(argv: Sequence[str]) -> int:
    from pydantic import ValidationError

    from linli.settings import Settings
    from linli.storage import Database, migrate
    from linli.storage.users import create_user

    parser = argparse.ArgumentParser(prog="linli create-user", description="Create an account (the first admin, say).")
    parser.add_argument("username")
    parser.add_argument("--role", default="admin", choices=["admin", "manager", "technician", "grid_officer", "viewer"])
    parser.add_argument("--password", required=True)
    parser.add_argument("--team", action="append", default=[])
    parser.add_argument("--site", action="append", default=[], help="a site the account may see (repeatable)")
    args = parser.parse_args(list(argv))
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"linli create-user: bad configuration: {exc}", file=sys.stderr)
        return 2
    migrate(settings.db_url)
    database = Database(settings.db_url)
    with database.session() as session:
        create_user(session, args.username, args.password, args.role, teams=args.team, sites=args.site)
    print(f"created {args.role} {args.username!r}")
    return 0


def _ops(module: str, function: str = "main") -> Callable[[Sequence[str]], int]:
    """A command implemented in linli.ops, imported only when it runs."""

    def run(argv: Sequence[str]) -> int:
        from importlib import import_module

        entry = getattr(import_module(f"linli.ops.{module}"), function)
        return int(entry(list(argv)))

    return run


COMMANDS = {
    "demo": (_demo, "run everything embedded on this machine (broker, gateway, API, simulator)"),
    "gateway": (_gateway, "run the gateway (MQTT in; time series, live state and tickets out)"),
    "api": (_api, "run the HTTP API and the built-in pages"),
    "sim": (_sim, "run the device simulator"),
    "sim-check": (_sim_check, "compare a simulator ground-truth file with the tickets the system opened"),
    "broker": (_broker, "run the embedded amqtt broker"),
    "check-sites": (_check_sites, "validate site files"),
    "create-user": (_create_user, "create an account"),
    "provision": (_ops("provision"), "issue broker accounts and write Mosquitto's password and ACL files"),
    "device": (_ops("lifecycle"), "commission, replace a controller or lamp, retire a device"),
    "backup": (_ops("backup", "backup_main"), "back up the database, site files, uploads and configuration"),
    "restore": (_ops("backup", "restore_main"), "restore a backup into a data directory"),
    "watchdog": (_ops("watchdog"), "watch gateway, broker, API and database from another machine"),
    "purge-personal-data": (_ops("retention"), "remove residents' contacts and photos past the retention period"),
}


LONG_RUNNING = frozenset({"demo", "gateway", "api", "sim", "broker", "watchdog"})


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: linli COMMAND [options]\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<12} {text}")
        print("\nEach command takes --help. Configuration: LINLI_* environment variables (see README).")
        return 0 if args else 2
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"linli: unknown command {args[0]!r}; try: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if args[0] in LONG_RUNNING:
        from linli.ops.malloc import limit_arenas

        limit_arenas()  # before any thread starts: resident memory stays flat (linli/ops/malloc.py)
    return command[0](args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
