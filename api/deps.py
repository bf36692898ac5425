"""FastAPI dependencies as named `Annotated` aliases: the session, the signed-in user, the sites.

Everything here reads what the lifespan put on ``app.state`` (see ``api.app``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from api.security import InvalidToken, username_from_token
from linli.clock import Clock
from linli.settings import Settings
from linli.site import SiteRegistry
from linli.site_source import SiteSource
from linli.storage import Database, User
from linli.storage.users import get_user
from linli.tsdb import TimeSeriesStore

TOKEN_URL = "/api/v1/auth/token"  # noqa: S105 - a URL, not a password
oauth2_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_URL)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


def get_sites(request: Request) -> SiteRegistry:
    """The sites as the files say now: edited files are picked up at most every 2 s (an invalid
    edit is refused and logged by the source; the running sites stay)."""
    source: SiteSource = request.app.state.site_source
    source.poll_if_due()
    return source.current


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_store(request: Request) -> TimeSeriesStore | None:
    store: TimeSeriesStore | None = request.app.state.store
    return store


def get_session(db: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    """One session per request; routes that write commit explicitly, everything else rolls back."""
    with db.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
ClockDep = Annotated[Clock, Depends(get_clock)]
SitesDep = Annotated[SiteRegistry, Depends(get_sites)]
DatabaseDep = Annotated[Database, Depends(get_database)]
StoreDep = Annotated[TimeSeriesStore | None, Depends(get_store)]
SessionDep = Annotated[Session, Depends(get_session)]
TokenDep = Annotated[str, Depends(oauth2_scheme)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def get_current_user(session: SessionDep, token: TokenDep, settings: SettingsDep) -> User:
    try:
        username = username_from_token(token, settings)
    except InvalidToken as exc:
        raise _unauthorized(str(exc)) from exc
    user = get_user(session, username)
    if user is None or user.disabled:
        raise _unauthorized("the account of this token no longer exists or is disabled")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def visible_site_ids(user: User, sites: SiteRegistry) -> list[str]:
    """The sites an account may see, in the registry's order; an admin sees every site."""
    if user.role == "admin":
        return sites.ids()
    allowed = set(user.sites or ())
    return [site_id for site_id in sites.ids() if site_id in allowed]


def get_visible_sites(user: CurrentUser, sites: SitesDep) -> list[str]:
    return visible_site_ids(user, sites)


VisibleSites = Annotated[list[str], Depends(get_visible_sites)]


def require_roles(*roles: str) -> Callable[[User], User]:
    """A dependency that lets only the given roles through (403 for the others)."""

    def check(user: CurrentUser) -> User:
        if user.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the role {' or '.join(roles)}")
        return user

    return check


ManagerOrAdmin = Annotated[User, Depends(require_roles("admin", "manager"))]
