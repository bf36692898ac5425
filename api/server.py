"""Run the API with uvicorn: ``python -m api.server [--host H] [--port P]``.

Configuration comes from LINLI_* variables (``linli.settings``). Problems a person can fix
(a bad setting, a broken site file, a port already taken) end with one clear line and exit 2.
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from collections.abc import Sequence

import uvicorn
from pydantic import ValidationError

from api.app import create_app
from linli.settings import Settings
from linli.site import SiteConfigError, SiteRegistry


def _fail(message: str) -> int:
    print(f"linli-api: {message}", file=sys.stderr)
    return 2


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; OSError when it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="linli-api", description="Serve the Linli HTTP API and the resident page.")
    parser.add_argument("--host", help="address to listen on (default: LINLI_API_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: LINLI_API_PORT, 8000)")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"LINLI_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        return _fail(f"configuration error: {problems}")
    host = args.host or settings.api_host
    port = args.port if args.port is not None else settings.api_port
    if not 0 < port < 65536:
        return _fail(f"port {port} is not between 1 and 65535")
    try:
        SiteRegistry.load(settings.site_files)  # fail before binding, with the file and field named
    except SiteConfigError as exc:
        return _fail(f"site configuration error: {exc}")
    try:
        sock = bind(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return _fail(f"port {port} on {host} is already in use; stop the other server or set LINLI_API_PORT")
        return _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    from linli.ops.memtrace import start_from_env

    start_from_env("api")
    app = create_app(settings)
    # Live-update streams never end by themselves: on SIGTERM they get 5 s, then the server stops anyway.
    config = uvicorn.Config(app, log_level=settings.log_level.lower(), proxy_headers=True, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
