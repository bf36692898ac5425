"""Markers, and real servers for the tests (how they are started: tests/servers.py).

A server that cannot be started fails the tests that need it, loudly, with how to install it:
tests never skip for a missing server.
"""

from __future__ import annotations

import secrets
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import servers  # tests/ is on sys.path: pytest inserts a rootdir conftest's folder

_TESTS = Path(__file__).parent
_DIR_MARKERS = {"integration": "real servers on free ports", "e2e": "the whole system, browser"}
# fixture name -> server, so a failing test's report can show the server's log
_SERVERS: dict[str, servers.Server] = {}

def pytest_configure(config: pytest.Config) -> None:
    for name, what in _DIR_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {what} (set for tests/{name}/)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            top = item.path.relative_to(_TESTS).parts[0]
        except ValueError:
            continue
        if top in _DIR_MARKERS:
            item.add_marker(getattr(pytest.mark, top))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for name in getattr(item, "fixturenames", ()):
            if name in _SERVERS:
                report.sections.append((f"{name} log", _SERVERS[name].logs()))
    return report


@contextmanager
def _serving(names: tuple[str, ...], server: servers.Server) -> Iterator[None]:
    for name in names:
        _SERVERS[name] = server
    try:
        yield
    finally:
        for name in names:
            _SERVERS.pop(name, None)
        server.close()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.MosquittoServer]:
    """`.host`, `.port`, `.url`; `.stop()` / `.start()` restart it on the same port with its
    persistence kept. A test that stops it must start it again (in a `finally`)."""
    server = servers.started(lambda: servers.start_mosquitto(tmp_path_factory.mktemp("mosquitto")))
    with _serving(("mosquitto",), server):
        yield server


@pytest.fixture(scope="session")
def influxdb1_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[servers.InfluxDB1Server]:
    server = servers.started(lambda: servers.start_influxdb1(tmp_path_factory.mktemp("influxdb1")))
    with _serving(("influxdb1_server", "influxdb1"), server):
        yield server


@pytest.fixture(scope="session")
def influxdb1(influxdb1_server: servers.InfluxDB1Server) -> str:
    """Store URL `influxdb1://127.0.0.1:PORT/linli_test` of a session-wide InfluxDB 1.x."""
    return influxdb1_server.store_url("linli_test")


@pytest.fixture(scope="session")
def victoria_metrics_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[servers.VictoriaMetricsServer]:
    server = servers.started(lambda: servers.start_victoria_metrics(tmp_path_factory.mktemp("victoria")))
    with _serving(("victoria_metrics_server", "victoria_metrics"), server):
        yield server


@pytest.fixture(scope="session")
def victoria_metrics(victoria_metrics_server: servers.VictoriaMetricsServer) -> str:
    """Store URL `victoriametrics://127.0.0.1:PORT` of a session-wide VictoriaMetrics."""
    return victoria_metrics_server.store_url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[servers.PostgresServer]:
    server = servers.started(servers.start_postgres)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def private_postgres() -> Iterator[servers.PrivatePostgres]:
    """A PostgreSQL cluster of this test's own on a free port, which the test may `stop()` and `start()`
    (never the shared server). `.database_url("postgres")` is its URL."""
    server = servers.started(servers.start_private_postgres)
    _SERVERS["private_postgres"] = server  # type: ignore[assignment]
    try:
        yield server
    finally:
        _SERVERS.pop("private_postgres", None)
        server.close()


@pytest.fixture
def postgres_url(postgres_server: servers.PostgresServer) -> Iterator[str]:
    """`postgresql+psycopg://...@host:port/linli_test_<random>`: a new database, dropped after."""
    name = f"linli_test_{secrets.token_hex(6)}"
    postgres_server.create_database(name)
    try:
        yield postgres_server.database_url(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test twice: on an SQLite file and on a fresh database of the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'linli.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
