"""Sign-in: `POST /api/v1/auth/token` (OAuth2 password form) and `GET /api/v1/auth/me`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm

from api.deps import CurrentUser, SessionDep, SettingsDep, SitesDep, visible_site_ids
from api.schemas import TokenPublic, UserPublic
from api.security import create_access_token
from linli.storage.users import authenticate

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/token",
    response_model=TokenPublic,
    responses={401: {"description": "wrong username or password"}, 403: {"description": "account disabled"}},
)
def issue_token(form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep, settings: SettingsDep) -> TokenPublic:
    """Exchange a username and password for a bearer token."""
    plausible = 0 < len(form.username) <= 64 and "\x00" not in form.username
    user = authenticate(session, form.username, form.password) if plausible else None
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
