"""Health checks of the Linli containers, run by Docker (`healthcheck:` in docker-compose.yml).

    python /opt/linli/healthcheck.py api|gateway|sim|db

Exit 0 when healthy, 1 when not, with one line saying why (`docker inspect` shows it). The
container's own LINLI_* variables say where to look, as they do for the service itself.

- ``api``: ``GET /healthz`` answers 200 (the API serves and its database answers; a broker or
  time-series store that does not answer makes it ``degraded``, still 200).
- ``gateway``: the database answers, and this container holds an established TCP connection to
  the broker (the gateway's MQTT session; paho reconnects on its own, so a lost one shows here
  until it is back). The gateway has no health endpoint. Its retained heartbeat
  (``linli/v1/gateway/{client_id}/heartbeat``, every 10 s from its worker loop) would be the better
  signal, as it would also catch a worker that hangs while the connection stays up, but the
  gateway's broker account may only write under ``linli/``: reading it here would need that account
  to be granted read on its own heartbeat topic. The watchdog (another machine) reads it.
- ``sim``: an established connection to the broker.
- ``db``: the database answers.

Standard library only, apart from ``linli`` for the database check, so it starts fast.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

TCP_ESTABLISHED = "01"
PROC_NET = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
HTTP_TIMEOUT_S = 5.0


class Unhealthy(Exception):
    """Why the service is not healthy."""


def _proc_address(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """``0100007F:075B`` (/proc/net/tcp, host byte order per 32-bit word) -> (127.0.0.1, 1883)."""
    host_hex, port_hex = text.split(":")
    raw = bytes.fromhex(host_hex)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # each word is little-endian
    address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address, int(port_hex, 16)


def established_peers(tables: Iterable[Path] = PROC_NET) -> set[tuple[str, int]]:
    """(address, port) of the far end of every established TCP connection in this network namespace."""
    peers: set[tuple[str, int]] = set()
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == TCP_ESTABLISHED:
                address, port = _proc_address(fields[2])
                peers.add((str(address), port))
    return peers


def broker_address() -> tuple[str, int]:
    url = os.environ.get("LINLI_MQTT_URL", "mqtt://127.0.0.1:1883")
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise Unhealthy(f"LINLI_MQTT_URL {url!r} is not an mqtt:// or mqtts:// URL")
    return parts.hostname, parts.port or (8883 if parts.scheme == "mqtts" else 1883)


def check_broker_connection() -> str:
    host, port = broker_address()
    try:
        addresses = {str(ipaddress.ip_address(info[4][0].split("%")[0]))
                     for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except (OSError, ValueError) as exc:
        raise Unhealthy(f"cannot resolve the broker {host}: {exc}") from exc
    connected = {peer for peer in established_peers() if peer[1] == port and peer[0] in addresses}
    if not connected:
        raise Unhealthy(f"no established connection to the broker {host}:{port} ({', '.join(sorted(addresses))})")
    return f"connected to the broker {host}:{port}"


def check_database() -> str:
    from linli.settings import Settings
    from linli.storage import Database

    settings = Settings()
    database = Database(settings.db_url)
    try:
        if not database.ping():
            raise Unhealthy(f"the database does not answer ({database.engine.url.render_as_string(hide_password=True)})")
    finally:
        database.close()
    return "database answers"


def check_api() -> str:
    port = os.environ.get("LINLI_API_PORT", "8000")
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            body = response.read(500).decode("utf-8", "replace")
            return f"{url}: {response.status} {body}"
    except urllib.error.HTTPError as exc:
        raise Unhealthy(f"{url}: {exc.code} {exc.read(500).decode('utf-8', 'replace')}") from exc
    except (OSError, ValueError) as exc:
        raise Unhealthy(f"{url}: {exc}") from exc


CHECKS: dict[str, tuple[Callable[[], str], ...]] = {
    "api": (check_api,),
    "gateway": (check_database, check_broker_connection),
    "sim": (check_broker_connection,),
    "db": (check_database,),
}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in CHECKS:
        print(f"usage: healthcheck.py {'|'.join(CHECKS)}", file=sys.stderr)
        return 2
    said = []
    try:
        for check in CHECKS[argv[0]]:
            said.append(check())
    except Unhealthy as exc:
        print(f"unhealthy: {exc}")
        return 1
    except Exception as exc:  # a check that breaks is a failed check, with the reason shown
        print(f"unhealthy: {type(exc).__name__}: {exc}")
        return 1
    print("healthy: " + "; ".join(said))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
