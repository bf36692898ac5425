"""Access tokens: JWT signed with HS256 and the settings' secret key, `sub` = the username.

Tokens live in wall-clock time, not in the injected domain clock: an accelerated demo clock
must not expire a login in seconds, and a test's frozen clock must not keep one alive forever.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from linli.settings import Settings

ALGORITHM = "HS256"


class InvalidToken(Exception):
    """A token that is malformed, wrongly signed or expired; the message says which."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int  # seconds


def create_access_token(username: str, settings: Settings, *, now: float | None = None) -> IssuedToken:
    issued = int(now if now is not None else time.time())
    ttl = settings.token_ttl_min * 60
    claims = {"sub": username, "iat": issued, "exp": issued + ttl}
    return IssuedToken(jwt.encode(claims, settings.secret_key, algorithm=ALGORITHM), ttl)


def username_from_token(token: str, settings: Settings) -> str:
    try:
        claims = jwt.decode(
            token, settings.secret_key, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("the access token has expired; sign in again") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken("the access token is not valid") from exc
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("the access token names no user")
    return subject
