"""Real servers for tests: Docker via testcontainers where a daemon answers, else native
processes from Debian packages, each on free ports with its own temp config/data/log files."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import pytest

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
LOCALHOST = "127.0.0.1"

MOSQUITTO_BIN = "/usr/sbin/mosquitto"
INFLUXD_BIN = "/usr/bin/influxd"
VICTORIA_BIN = "/usr/bin/victoria-metrics"

MOSQUITTO_IMAGE = "eclipse-mosquitto:2.0.20"
INFLUXDB1_IMAGE = "influxdb:1.8.10"
VICTORIA_IMAGE = "victoriametrics/victoria-metrics:v1.102.1"
POSTGRES_IMAGE = "postgres:16.4"


T = TypeVar("T")


class ServerStartError(RuntimeError):
    """A server did not come up; the message carries its log tail."""


def started(start: Callable[[], T]) -> T:
    """start(), or fail the test loudly (never skip) with the reason and how to install."""
    try:
        return start()
    except ServerStartError as exc:
        error = str(exc)
    pytest.fail(error, pytrace=False)  # outside `except`: no chained traceback


# --- small helpers -------------------------------------------------------------------------


def free_port() -> int:
    """A port free right now on 127.0.0.1 (the usual bind-to-0 race is accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        port: int = s.getsockname()[1]
        return port


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).is_success
    except httpx.HTTPError:
        return False


def mqtt_answers(host: str, port: int) -> bool:
    """A real MQTT 3.1.1 CONNECT/CONNACK: a docker port proxy accepts TCP before the broker does."""
    client_id = f"linli-probe-{uuid.uuid4().hex[:8]}".encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x3c"  # protocol, level 4, clean session, keepalive 60
    body = variable + len(client_id).to_bytes(2, "big") + client_id
    try:
        with socket.create_connection((host, port), timeout=1.0) as s:
            s.sendall(bytes([0x10, len(body)]) + body)
            connack = s.recv(4)
            s.sendall(b"\xe0\x00")  # DISCONNECT
    except OSError:
        return False
    return connack == b"\x20\x02\x00\x00"


def wait_until(ready: Callable[[], bool], *, what: str, timeout: float = START_TIMEOUT_S,
               alive: Callable[[], bool] = lambda: True) -> None:
    """Poll `ready` until true; raise at `timeout`, or at once when the process has died."""
    deadline = time.monotonic() + timeout
    while not ready():
        if not alive():
            raise ServerStartError(f"{what} exited before it was ready")
        if time.monotonic() > deadline:
            raise ServerStartError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(0.1)


@functools.cache
def docker_available() -> bool:
    """True when a Docker daemon answers (the docker client alone is not enough)."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no socket, no permission, daemon down: all mean "no docker"
        return False


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- backends: how a server process is run -------------------------------------------------


class Backend(Protocol):
    host: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...
    def alive(self) -> bool: ...
    def logs(self) -> str: ...


_LIVE_PROCESSES: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    # Backstop for a crashed session; normal teardown has stopped everything already.
    for proc in list(_LIVE_PROCESSES):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


class NativeProcess:
    """A server binary run directly; stdout+stderr appended to `log` (kept across restarts)."""

    host = LOCALHOST

    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv, self.log = argv, log
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            out.write(f"--- start: {' '.join(self.argv)}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # a ^C to pytest reaches teardown, not the server
            )
        _LIVE_PROCESSES.add(self._proc)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # a clean stop: mosquitto saves its persistence
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _LIVE_PROCESSES.discard(proc)

    close = stop

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def logs(self) -> str:
        return f"{self.log}:\n{tail(self.log)}"


class DockerProcess:
    """A testcontainers container; stop()/start() keep the container, so its data and its
    fixed host port binding survive a restart. close() removes it."""

    def __init__(self, container: Any) -> None:
        self._container = container
        self._created = False
        self.host = LOCALHOST

    def start(self) -> None:
        if self._created:
            self._container.get_wrapped_container().start()
        else:
            self._container.start()
            self._created = True
            host = self._container.get_container_host_ip()
            self.host = LOCALHOST if host == "localhost" else host

    def stop(self) -> None:
        if self._created:
            self._container.get_wrapped_container().stop(timeout=int(STOP_TIMEOUT_S))

    def close(self) -> None:
        if self._created:
            self._container.stop()
            self._created = False

    def alive(self) -> bool:
        if not self._created:
            return False
        wrapped = self._container.get_wrapped_container()
        wrapped.reload()
        return bool(wrapped.status in ("created", "running"))

    def logs(self) -> str:
        if not self._created:
            return "(container never created)"
        out, err = self._container.get_logs()
        text = (out + err).decode(errors="replace")
        return "container log:\n" + "\n".join(text.splitlines()[-60:])


# --- a server: a backend on a known port plus a readiness check ----------------------------


class Server:
    """A server on a fixed port that tests may stop and start again."""

    def __init__(self, name: str, port: int, backend: Backend,
                 ready: Callable[[str, int], bool]) -> None:
        self.name, self.port, self._backend, self._ready = name, port, backend, ready

    @property
    def host(self) -> str:
        return self._backend.host

    def start(self) -> None:
        try:
            self._backend.start()
            wait_until(lambda: self._ready(self.host, self.port), what=self.name,
                       alive=self._backend.alive)
        except Exception as exc:
            logs = self._backend.logs()
            self._backend.close()
            raise ServerStartError(f"{self.name} failed to start: {exc}\n{logs}") from exc

    def stop(self) -> None:
        self._backend.stop()
        wait_until(lambda: not port_answers(LOCALHOST, self.port, 0.2), timeout=STOP_TIMEOUT_S,
                   what=f"{self.name} to release port {self.port}")

    def close(self) -> None:
        self._backend.close()

    def logs(self) -> str:
        return self._backend.logs()


class MosquittoServer(Server):
    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


class InfluxDB1Server(Server):
    def store_url(self, db: str = "linli_test") -> str:
        return f"influxdb1://{self.host}:{self.port}/{db}"


class VictoriaMetricsServer(Server):
    @property
    def store_url(self) -> str:
        return f"victoriametrics://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"


# --- factories: docker first, native second, a loud failure last ---------------------------


def _docker_container(image: str, internal_port: int, host_port: int) -> Any:
    from testcontainers.core.container import DockerContainer

    return DockerContainer(image).with_bind_ports(internal_port, host_port)


def _start_first(name: str, attempts: list[tuple[str, Callable[[], Server]]],
                 install_hint: str) -> Server:
    errors = []
    for how, make in attempts:
        server = make()
        try:
            server.start()
            return server
        except ServerStartError as exc:
            errors.append(f"[{how}] {exc}")
    tried = "\n\n".join(errors) or "(no Docker daemon and no native binary)"
    raise ServerStartError(f"cannot start {name}. {install_hint}\n\n{tried}")


def _attempts(docker: Callable[[], Server] | None, native_bin: str,
              native: Callable[[], Server]) -> list[tuple[str, Callable[[], Server]]]:
    out: list[tuple[str, Callable[[], Server]]] = []
    if docker is not None and docker_available():
        out.append(("docker", docker))
    if shutil.which(native_bin):
        out.append(("native", native))
    return out


def mosquitto_conf(port: int, persistence_dir: str, *, stay_root: bool, bind: str = "") -> str:
    lines = [
        f"listener {port} {bind}".rstrip(),
        "allow_anonymous true",
        "persistence true",
        f"persistence_location {persistence_dir.rstrip('/')}/",
        "max_queued_messages 100000",
        "max_inflight_messages 1000",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
    ]
    if stay_root:
        lines.append("user root")  # else, run as root, it drops to user `mosquitto`: no tmp access
    return "\n".join(lines) + "\n"


def start_mosquitto(tmp: Path) -> MosquittoServer:
    port = free_port()

    def native() -> Server:
        data = tmp / "data"
        data.mkdir(parents=True, exist_ok=True)
        conf = tmp / "mosquitto.conf"
        conf.write_text(mosquitto_conf(port, str(data), stay_root=os.geteuid() == 0, bind=LOCALHOST))
        backend = NativeProcess([MOSQUITTO_BIN, "-c", str(conf)], tmp / "mosquitto.log")
        return MosquittoServer("mosquitto", port, backend, mqtt_answers)

    def docker() -> Server:
        container = _docker_container(MOSQUITTO_IMAGE, 1883, port).with_copy_into_container(
            mosquitto_conf(1883, "/mosquitto/data", stay_root=False).encode(), "/mosquitto/config/mosquitto.conf"
        )
        return MosquittoServer("mosquitto", port, DockerProcess(container), mqtt_answers)

    server = _start_first("mosquitto", _attempts(docker, MOSQUITTO_BIN, native),
                          "Install it: `apt-get install mosquitto`, or run a Docker daemon.")
    assert isinstance(server, MosquittoServer)
    return server


def influxdb1_conf(tmp: Path, http_port: int, rpc_port: int) -> str:
    return f"""\
reporting-disabled = true
bind-address = "{LOCALHOST}:{rpc_port}"

[meta]
  dir = "{tmp / 'meta'}"

[data]
  dir = "{tmp / 'data'}"
  wal-dir = "{tmp / 'wal'}"
  query-log-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[http]
  enabled = true
  bind-address = "{LOCALHOST}:{http_port}"
  log-enabled = false
"""


def start_influxdb1(tmp: Path) -> InfluxDB1Server:
    port = free_port()

    def ready(host: str, p: int) -> bool:
        return http_ok(f"http://{host}:{p}/ping")

    def native() -> Server:
        tmp.mkdir(parents=True, exist_ok=True)
        conf = tmp / "influxdb.conf"
        conf.write_text(influxdb1_conf(tmp, port, free_port()))
        backend = NativeProcess([INFLUXD_BIN, "run", "-config", str(conf)], tmp / "influxd.log")
        return InfluxDB1Server("influxd", port, backend, ready)

    def in_docker() -> Server:
        container = (
            _docker_container(INFLUXDB1_IMAGE, 8086, port)
            .with_env("INFLUXDB_REPORTING_DISABLED", "true")
            .with_env("INFLUXDB_DATA_QUERY_LOG_ENABLED", "false")
        )
        return InfluxDB1Server("influxd", port, DockerProcess(container), ready)

    server = _start_first("InfluxDB 1.x", _attempts(in_docker, INFLUXD_BIN, native),
                          "Install it: `apt-get install influxdb`, or run a Docker daemon.")
    assert isinstance(server, InfluxDB1Server)
    return server


def start_victoria_metrics(tmp: Path) -> VictoriaMetricsServer:
    port = free_port()

    def ready(host: str, p: int) -> bool:
        return http_ok(f"http://{host}:{p}/health")

    def native() -> Server:
        tmp.mkdir(parents=True, exist_ok=True)
        argv = [VICTORIA_BIN, f"-httpListenAddr={LOCALHOST}:{port}",
                f"-storageDataPath={tmp / 'data'}", "-loggerLevel=WARN"]
        backend = NativeProcess(argv, tmp / "victoria-metrics.log")
        return VictoriaMetricsServer("victoria-metrics", port, backend, ready)

    def docker() -> Server:
        container = _docker_container(VICTORIA_IMAGE, 8428, port).with_command(
            ["-storageDataPath=/storage", "-httpListenAddr=:8428", "-loggerLevel=WARN"]
        )
        return VictoriaMetricsServer("victoria-metrics", port, DockerProcess(container), ready)

    server = _start_first("VictoriaMetrics", _attempts(docker, VICTORIA_BIN, native),
                          "Install it: `apt-get install victoria-metrics`, or run a Docker daemon.")
    assert isinstance(server, VictoriaMetricsServer)
    return server


# --- PostgreSQL: a server to create throwaway databases in ---------------------------------


class PostgresServer:
    """A server URL (`postgresql+psycopg://user[:pw]@host:port/maintenance_db`) and,
    when we started it, the container to remove."""

    def __init__(self, url: str, container: Any = None) -> None:
        from sqlalchemy.engine import make_url

        self.url = make_url(url).set(drivername="postgresql+psycopg")
        self._container = container

    def connect(self) -> Any:
        import psycopg

        u = self.url
        return psycopg.connect(
            host=u.host or LOCALHOST, port=u.port or 5432, user=u.username, password=u.password,
            dbname=u.database or "postgres", autocommit=True, connect_timeout=5,
        )

    def database_url(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def create_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # PG 13+

    def close(self) -> None:
        if self._container is not None:
            self._container.stop()


def start_postgres() -> PostgresServer:
    """LINLI_TEST_PG_URL, else the local server on 5432, else a postgres container."""
    errors = []
    candidates = []
    if env_url := os.environ.get("LINLI_TEST_PG_URL"):
        candidates.append(("LINLI_TEST_PG_URL", env_url))
    elif port_answers(LOCALHOST, 5432):
        candidates.append(("local server", f"postgresql://postgres@{LOCALHOST}:5432/postgres"))
    for how, url in candidates:
        server = PostgresServer(url)
        try:
            server.connect().close()
            return server
        except Exception as exc:
            errors.append(f"[{how}] {server.url.render_as_string()}: {exc}")
    if docker_available():
        try:
            from testcontainers.community.postgres import PostgresContainer

            container = PostgresContainer(POSTGRES_IMAGE, username="postgres", password="postgres",
                                          dbname="postgres", driver="psycopg").start()
            return PostgresServer(container.get_connection_url(), container)
        except Exception as exc:
            errors.append(f"[docker {POSTGRES_IMAGE}] {exc}")
    raise ServerStartError(
        "no PostgreSQL server for tests. Set LINLI_TEST_PG_URL=postgresql://user:pw@host:port/db, "
        "or run one on 127.0.0.1:5432 (`apt-get install postgresql`, trust auth for postgres), "
        "or run a Docker daemon.\n" + ("\n".join(errors) or "(nothing answered)")
    )


# --- a private PostgreSQL that a test may stop and start ------------------------------------


POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"


class PrivatePostgres(PostgresServer):
    """A cluster of our own (initdb in a temp dir, a free port), never the machine's shared one:
    a test may `stop()` and `start()` it to play a database outage. As root, the server runs as
    the `postgres` user (PostgreSQL refuses to run as root) in a dir that user owns."""

    def __init__(self, bin_dir: Path, data: Path, port: int, run_as: str | None) -> None:
        super().__init__(f"postgresql://postgres@{LOCALHOST}:{port}/postgres")
        self.bin_dir, self.data, self.port, self._run_as = bin_dir, data, port, run_as
        self.log = data.parent / "postgres.log"

    def _run(self, tool: str, *args: str, timeout: float = START_TIMEOUT_S) -> None:
        argv = [str(self.bin_dir / tool), *args]
        if self._run_as:
            argv = ["runuser", "-u", self._run_as, "--", *argv]
        done = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            raise ServerStartError(f"{tool} failed ({done.returncode}): {done.stderr.decode(errors='replace')}\n"
                                   f"{tail(self.log)}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses={LOCALHOST} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "60", "start")
        wait_until(lambda: port_answers(LOCALHOST, self.port), what="private postgres")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=STOP_TIMEOUT_S + 30)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def close(self) -> None:
        if self.running():
            with contextlib.suppress(ServerStartError, subprocess.TimeoutExpired):
                self.stop()
        shutil.rmtree(self.data.parent, ignore_errors=True)

    def logs(self) -> str:
        return f"{self.log}:\n{tail(self.log)}"


def start_private_postgres() -> PrivatePostgres:
    """initdb + pg_ctl from /usr/lib/postgresql/*/bin on a free port, in a new temp dir."""
    import glob
    import pwd
    import tempfile

    found = sorted(glob.glob(POSTGRES_BIN_GLOB), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                   else 0)
    if not found or not (Path(found[-1]) / "initdb").exists():
        raise ServerStartError("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: `apt-get install postgresql`")
    bin_dir = Path(found[-1])
    run_as = None
    root = Path(tempfile.mkdtemp(prefix="linli-pg-"))  # under /tmp, not pytest's root-only tmp dirs
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        run_as = "postgres"
        try:
            user = pwd.getpwnam(run_as)
        except KeyError as exc:
            raise ServerStartError("running as root and no `postgres` user to run PostgreSQL as") from exc
        for path in (root, data):
            os.chown(path, user.pw_uid, user.pw_gid)
    server = PrivatePostgres(bin_dir, data, free_port(), run_as)
    try:
        server._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        server.start()
    except Exception:
        server.close()
        raise
    return server
