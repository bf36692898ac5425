"""The FastAPI application: lifespan (sites, schema, database, store, first admin), routers, pages."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import openapi_doc
from api.live import LiveHub, now_text, system_clock
from api.routes import auth, devices, health, operator, public, tickets
from api.routes import commands as command_routes
from api.routes import events as event_routes
from api.routes import maintenance as maintenance_routes
from api.routes import photos as photo_routes
from api.routes import reports as report_routes
from api.routes import sites as site_routes
from api.routes import teams as team_routes
from api.routes import uploads as upload_routes
from api.routes import users as user_routes
from linli import __version__
from linli.clock import Clock
from linli.settings import Settings
from linli.site import SiteRegistry
from linli.site_source import SiteSource
from linli.storage import Database, migrate
from linli.storage.users import any_user_exists, create_user
from linli.tsdb import StoreError, TimeSeriesStore, open_store

log = logging.getLogger(__name__)

DASHBOARDS_DIR = Path(__file__).resolve().parents[1] / "dashboards"
# The built-in pages: URL path -> folder under dashboards/ holding its index.html.
PAGES = {"/": "resident", "/crew": "crew", "/tech": "tech", "/manager": "manager"}
# Folders served under /static/{name}: the pages' own files, shared code and vendored libraries.
STATIC_DIRS = ("resident", "crew", "tech", "manager", "common", "vendor")
API_PREFIX = "/api/v1"
# The pages load nothing from elsewhere and runs no inline code.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
DB_ATTEMPTS = 5
DB_RETRY_DELAY_S = 2.0


def _migrate_with_retries(url: str) -> None:
    """Start-up waits for the database a little (it may be starting beside us), then gives up."""
    for attempt in range(1, DB_ATTEMPTS + 1):
        try:
            migrate(url)
            return
        except OperationalError as exc:
            if attempt == DB_ATTEMPTS:
                raise
            log.warning("database not ready (attempt %d of %d): %s", attempt, DB_ATTEMPTS, exc.orig)
            time.sleep(DB_RETRY_DELAY_S)


def _open_store(url: str) -> TimeSeriesStore | None:
    """The store, or None when it cannot be opened now (health says so; telemetry answers 503).

    A malformed URL (ValueError) is a configuration error and stops start-up.
    """
    try:
        return open_store(url)
    except StoreError as exc:
        log.error("time-series store unavailable at start-up: %s", exc)
        return None


def _bootstrap_admin(db: Database, settings: Settings, sites: SiteRegistry, clock: Clock) -> None:
    if not settings.admin_password:
        return
    try:
        with db.session() as session:
            if any_user_exists(session):
                return
            create_user(session, "admin", settings.admin_password, "admin", sites=sites.ids(), now=clock.now())
        log.info("created user 'admin' (every site)")
    except IntegrityError:
        log.info("user 'admin' was created by another API process")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    source = SiteSource(settings.site_files)  # requests poll it (api.deps.get_sites): edits apply without a restart
    sites = source.current
    _migrate_with_retries(settings.db_url)
    db = Database(settings.db_url)
    store = _open_store(settings.timeseries_url)
    try:
        _bootstrap_admin(db, settings, sites, app.state.clock)
        app.state.site_source, app.state.db, app.state.store = source, db, store
        # live updates (SSE): the gateway's events from MQTT, fanned out to the streams
        app.state.live = live = LiveHub(settings=settings, db=db, sites=lambda: source.current, clock=app.state.clock)
        live.start()
        log.info("serving sites %s; database %s; time-series store %s",
                 ", ".join(sites.ids()), db.engine.url.render_as_string(hide_password=True),
                 store.url_redacted if store else "unavailable")
        yield
    finally:
        if getattr(app.state, "live", None) is not None:
            app.state.live.stop()
        if store is not None:
            store.close()
        db.close()


class ResponseHeaders:
    """Adds to every HTTP response `X-Content-Type-Options: nosniff`, `Referrer-Policy`, and
    `X-Linli-Now`: the API's clock (the simulator's in a demo) with milliseconds, so pages count
    deadlines down from the system's now, not the browser's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-content-type-options", b"nosniff"),
                           (b"referrer-policy", b"no-referrer")]
                clock = getattr(scope["app"].state, "clock", None) if "app" in scope else None
                if clock is not None:
                    headers.append((b"x-linli-now", now_text(clock).encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestDeadline:
    """Answers 503 to a request the app has not begun to answer within `timeout_s`.

    libpq has no read deadline: on a PostgreSQL that hangs (frozen, or a network that drops packets
    without a reset) a query waits for ever, and so would the client. The worker thread stays stuck
    until the database answers (its late response is dropped); the client gets a sentence now.
    Streams (`text/event-stream`, `/events`) and multipart uploads (a phone on a slow network) are
    not timed."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._exempt(scope):
            await self.app(scope, receive, send)
            return
        started = asyncio.Event()
        timed_out = False

        async def guarded_send(message: Message) -> None:
            if timed_out:
                return  # the client already has its 503
            if message["type"] == "http.response.start":
                started.set()
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        answering = asyncio.ensure_future(started.wait())
        try:
            done, _ = await asyncio.wait({task, answering}, timeout=self.timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            answering.cancel()
        if done:
            await task  # answering (or done): let it finish, however long the body takes
            return
        timed_out = True
        task.add_done_callback(_log_late)
        log.error("%s %s not answered within %.0f s: 503", scope.get("method"), scope.get("path"), self.timeout_s)
        body = json.dumps({"detail": f"the server did not answer within {self.timeout_s:.0f} s "
                                     "(its database may be unavailable); try again later"}).encode()
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"retry-after", b"30"),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _exempt(scope: Scope) -> bool:
        path = str(scope.get("path", ""))
        if path.endswith("/events"):
            return True
        headers = dict(scope.get("headers") or [])
        content_type: bytes = headers.get(b"content-type", b"")
        return content_type.startswith(b"multipart/")


def _log_late(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("a request answered after its deadline failed: %s", task.exception())


def _validation_message(errors: list[Any]) -> str:
    parts = []
    for error in errors[:5]:
        loc = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{loc}: {error.get('msg', 'invalid')}" if loc else str(error.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """`detail` is one readable sentence, as every error of the contract; `errors` keeps the details."""
    errors = list(exc.errors()) if isinstance(exc, RequestValidationError) else []
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": _validation_message(errors), "errors": jsonable_encoder(errors)},
    )


async def _on_database_down(_request: Request, exc: Exception) -> JSONResponse:
    log.error("database error: %s", exc)
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": "the database is not answering; try again later"},
    )


async def _on_data_error(_request: Request, exc: Exception) -> JSONResponse:
    # The last line of defence: routes validate what they pass on, but a value the database
    # cannot take (a NUL character in PostgreSQL text, say) is the client's input, not a crash.
    log.warning("database refused a value: %s", exc)
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": "a value in the request cannot be stored or compared (e.g. a NUL character)"},
    )


async def _on_number_overflow(_request: Request, exc: Exception) -> JSONResponse:
    # An id or offset past the database's 64-bit integers (SQLite's driver raises OverflowError): the
    # client's input, found by the OpenAPI fuzzer; it names nothing that can exist.
    log.warning("a number out of range reached the database: %s", exc)
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": "a number in the request is out of range (ids and offsets are below 2^63)"},
    )


def _page(index: Path) -> Callable[[], FileResponse]:
    def page() -> FileResponse:
        return FileResponse(
            index,
            media_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
        )

    return page


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """The API for `settings` (default: from the environment). Sites, database and store open in
    the lifespan, so use ``TestClient(app)`` as a context manager."""
    app = FastAPI(
        title="Linli (邻里) API",
        version=__version__,
        description="Community facility monitoring: streetlights, elevators and EV chargers, and the repair "
        "tickets their faults become. Contract: `api-contract.md`.",
        lifespan=lifespan,
    )
    app.state.settings = settings or Settings()
    app.state.clock = clock or system_clock()
    app.add_middleware(RequestDeadline, timeout_s=app.state.settings.request_timeout_s)
    app.add_middleware(ResponseHeaders)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(OperationalError, _on_database_down)
    app.add_exception_handler(DataError, _on_data_error)
    app.add_exception_handler(OverflowError, _on_number_overflow)

    app.include_router(health.router)
    v1 = APIRouter(prefix=API_PREFIX)
    for module in (auth, devices, tickets, public, operator):
        v1.include_router(module.router)
    v1.include_router(maintenance_routes.router)
    for workflow in (user_routes, team_routes, command_routes):  # accounts, teams on duty, device commands
        v1.include_router(workflow.router)
    v1.include_router(report_routes.router)  # the monthly report for the three-party meeting
    v1.include_router(upload_routes.router)  # residents' reports and their photos, for staff
    v1.include_router(photo_routes.router)  # staff's repair photos: upload, then attach at resolve
    v1.include_router(event_routes.router)  # live updates over Server-Sent Events
    v1.include_router(site_routes.router)  # the site plan the crew dashboard draws
    app.include_router(v1)

    for path, folder in PAGES.items():
        if (DASHBOARDS_DIR / folder / "index.html").is_file():
            app.add_api_route(path, _page(DASHBOARDS_DIR / folder / "index.html"), include_in_schema=False)
    for folder in STATIC_DIRS:
        if (DASHBOARDS_DIR / folder).is_dir():
            app.mount(f"/static/{folder}", StaticFiles(directory=DASHBOARDS_DIR / folder), name=folder)
    openapi_doc.install(app)  # every operation's 400/401 and error bodies in /openapi.json
    return app
