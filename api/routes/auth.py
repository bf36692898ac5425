"""Sign-in: `POST /api/v1/auth/token` (OAuth2 password form, failed attempts rate-limited) and `GET /api/v1/auth/me`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from api.deps import CurrentUser, SessionDep, SettingsDep, SitesDep, visible_site_ids
from api.limits import client_key, enforce, get_limiter
from api.schemas import TokenPublic, UserPublic
from api.security import create_access_token
from linli.storage.users import authenticate

router = APIRouter(prefix="/auth", tags=["auth"])

MAX_USERNAME = 64  # longer is no account's: a failure without a look at the database
SIGNIN_LIMITER = "signin"  # its own limiter: keys apart from the reports'


@router.post(
    "/token",
    response_model=TokenPublic,
    responses={
        401: {"description": "wrong username or password"},
        403: {"description": "account disabled"},
        429: {"description": "too many failed sign-ins from this address, or to this username from it, within the "
                             "hour: refused before the password is checked; see Retry-After"},
    },
)
def issue_token(
    request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep, settings: SettingsDep,
) -> TokenPublic:
    """Exchange a username and password for a bearer token.

    Failed sign-ins (wrong password, unknown or implausible username) are counted per client address
    and per address and username over a sliding hour: past `LINLI_SIGNIN_FAILURES_PER_IP` or
    `LINLI_SIGNIN_FAILURES_PER_ACCOUNT` the address (or that username from it) gets 429 with
    `Retry-After` before its password is checked, right or wrong. A successful sign-in never counts.
    """
    limiter = get_limiter(request, SIGNIN_LIMITER)
    address = client_key(request)
    limits: tuple[tuple[tuple[str, ...], int, str], ...] = (
        (("address", address), settings.signin_failures_per_ip, "too many failed sign-ins from this address"),
        (("account", address, form.username[:MAX_USERNAME]), settings.signin_failures_per_account,
         "too many failed sign-ins to this username from this address"),
    )
    # Each attempt is counted as a failure before its password is checked, so that guesses sent in
    # parallel cannot pass the limits, and taken back unless it turns out to be one.
    counted: list[tuple[str, ...]] = []
    failed = False
    try:
        for key, limit, refusal in limits:
            enforce(limiter, key, limit, refusal)
            counted.append(key)
        plausible = 0 < len(form.username) <= MAX_USERNAME and "\x00" not in form.username
        user = authenticate(session, form.username, form.password) if plausible else None
        failed = user is None
    finally:
        if not failed:
            for key in counted:
                limiter.take_back(key)
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "wrong username or password", headers={"WWW-Authenticate": "Bearer"}
        )
    if user.disabled:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this account is disabled")
    issued = create_access_token(user.username, settings)
    return TokenPublic(access_token=issued.token, expires_in=issued.expires_in)


@router.get("/me", response_model=UserPublic)
def me(user: CurrentUser, sites: SitesDep) -> UserPublic:
    """The signed-in account: its role, teams and the sites it sees."""
    return UserPublic(
        username=user.username,
        role=user.role,
        full_name=user.full_name,
        teams=list(user.teams or ()),
        sites=visible_site_ids(user, sites),
    )
