"""Accounts: password hashing (Argon2 via pwdlib) and the few user queries the API makes.

An account has one role and is scoped to one or more sites; an ``admin`` sees every site.
Technicians and grid officers belong to teams; they acknowledge tickets for those teams.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

from pwdlib import PasswordHash
from sqlalchemy import select
from sqlalchemy.orm import Session

from linli.catalog import Team
from linli.storage.models import User

ROLES: Final = ("admin", "manager", "technician", "grid_officer", "viewer")

_hasher = PasswordHash.recommended()  # Argon2id with pwdlib's recommended parameters


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so a failed login takes as long either way."""
    return _hasher.hash("linli-dummy-password")


def hash_password(password: str) -> str:
    if not password:
        raise ValueError("a password cannot be empty")
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    """True when `password` matches `password_hash`; False for a wrong password or a malformed hash."""
    try:
        return _hasher.verify(password, password_hash)
    except Exception:  # pwdlib raises its own errors for hashes it cannot identify
        return False


def create_user(
    session: Session,
    username: str,
    password: str,
    role: str,
    *,
    teams: Iterable[str] = (),
    sites: Iterable[str] = (),
    full_name: str | None = None,
    now: datetime | None = None,
) -> User:
    """Add an account (flushed, not committed). A grid officer always belongs to the `grid` team."""
    username = username.strip()
    if not username or len(username) > 64:
        raise ValueError("a username is 1 to 64 characters")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (expected one of: {', '.join(ROLES)})")
    team_list = list(dict.fromkeys(teams))
    known_teams = {t.value for t in Team}
    unknown = [t for t in team_list if t not in known_teams]
    if unknown:
        raise ValueError(f"unknown team(s) {', '.join(unknown)} (expected: {', '.join(sorted(known_teams))})")
    if role == "grid_officer" and Team.GRID.value not in team_list:
        team_list.append(Team.GRID.value)
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role,
        full_name=full_name,
        teams=team_list,
        sites=list(dict.fromkeys(sites)),
        disabled=False,
        created_at=now or datetime.now(tz=UTC),
    )
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, username: str) -> User | None:
    return session.scalars(select(User).where(User.username == username)).first()


def any_user_exists(session: Session) -> bool:
    return session.scalars(select(User.id).limit(1)).first() is not None


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The user when the password is right (disabled or not: the caller decides), else None."""
    user = get_user(session, username)
    if user is None:
        verify_password(password, _dummy_hash())
        return None
    return user if verify_password(password, user.password_hash) else None
