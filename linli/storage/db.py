"""Database connections and schema migration."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
PING_TIMEOUT_S = 3.0  # a database that has not answered `SELECT 1` by then is reported down


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while the gateway writes; busy_timeout makes writers queue, not fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # connect_timeout: health checks must answer "down", not hang, when the server is unreachable
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, connect_args={"connect_timeout": 5})


def alembic_config(url: str) -> Config:
    """The Alembic configuration of the schema at `url`."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Bring the schema at `url` up to `revision` with Alembic."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Take the schema at `url` down to `revision` (data of the tables dropped on the way is lost)."""
    from alembic import command

    command.downgrade(alembic_config(url), revision)


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._ping_lock = threading.Lock()
        self._ping_pending: Future[bool] | None = None

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session, session.begin():
            yield session

    def ping(self, timeout: float | None = PING_TIMEOUT_S) -> bool:
        """Does the database answer `SELECT 1` within `timeout` seconds (None: however long it takes)?

        A server that accepts nothing is refused at once (or after the connect timeout); a server
        that is frozen (stopped process, a partition that drops packets) would block a pooled
        connection's read for as long as TCP lets it, so the query runs in a thread of its own and
        the caller stops waiting after `timeout`. One ping at a time: callers meanwhile share it.
        """
        if timeout is None:
            return self._ping()
        with self._ping_lock:
            pending = self._ping_pending
            if pending is None or pending.done():
                pending = self._ping_pending = Future()
                threading.Thread(target=self._ping_into, args=(pending,), name="linli-db-ping", daemon=True).start()
        try:
            return pending.result(timeout)
        except FutureTimeout:
            return False

    def _ping_into(self, future: Future[bool]) -> None:
        try:
            answered = self._ping()
        except Exception:  # never leave the shared future unset: every later ping would wait on it
            answered = False
        future.set_result(answered)

    def _ping(self) -> bool:
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def close(self) -> None:
        self.engine.dispose()
