"""Accounts (admin only): list, create, update, disable. Roles and scopes as in ``docs/permissions.md``.

A change applies at the next request of the account: its token names the user, and every request
reads the role, teams, sites and `disabled` afresh.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.deps import ClockDep, SessionDep, SitesDep, require_roles
from api.schemas_workflow import AccountCreateRequest, AccountPublic, AccountsPublic, AccountUpdateRequest, Role
from linli.catalog import Team
from linli.site import SiteRegistry
from linli.storage.models import User
from linli.storage.users import create_user, get_user, hash_password

router = APIRouter(prefix="/users", tags=["accounts"], responses={403: {"description": "this needs the role admin"}})
AdminUser = Annotated[User, Depends(require_roles("admin"))]
TEAM_ROLES = ("technician", "grid_officer")


def account_public(user: User) -> AccountPublic:
    return AccountPublic(
        username=user.username, role=user.role, full_name=user.full_name, teams=list(user.teams or ()),
        sites=list(user.sites or ()), disabled=user.disabled, created_at=user.created_at,
    )


def checked_scope(sites: SiteRegistry, role: str, teams: list[str], site_ids: list[str]) -> tuple[list[str], list[str]]:
    """(teams, sites) valid for `role`, or 422: sites must exist, non-admins need one; only technicians and
    grid officers have teams, a technician at least one, a grid officer always `grid`."""
    unknown = [s for s in site_ids if s not in sites]
    if unknown:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"unknown site(s): {', '.join(unknown)} (known: {', '.join(sites.ids())})")
    if role != "admin" and not site_ids:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"a {role} needs at least one site")
    teams = list(dict.fromkeys(teams))
    if role not in TEAM_ROLES and teams:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"a {role} belongs to no team")
    if role == "technician" and not teams:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "a technician needs at least one team")
    if role == "grid_officer" and Team.GRID.value not in teams:
        teams.append(Team.GRID.value)
    return teams, list(dict.fromkeys(site_ids))


def user_or_404(session: Session, username: str) -> User:
    user = get_user(session, username)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"user {username!r} not found")
    return user


def _other_active_admins(session: Session, username: str) -> int:
    return session.scalar(select(func.count()).select_from(User).where(
        User.role == "admin", User.disabled.is_(False), User.username != username)) or 0


@router.get("", response_model=AccountsPublic)
def list_users(
    *,
    session: SessionDep,
    admin: AdminUser,
    role: Role | None = None,
    team: Team | None = None,
    site: Annotated[str | None, Query(max_length=32, description="accounts scoped to this site")] = None,
    disabled: Annotated[bool | None, Query(description="true: disabled accounts only; false: active only")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AccountsPublic:
    """Accounts by username. No password hash ever leaves the server."""
    query = select(User).order_by(User.username)
    if role is not None:
        query = query.where(User.role == role)
    if disabled is not None:
        query = query.where(User.disabled.is_(disabled))
    users = list(session.scalars(query))
    # teams and sites are short JSON lists: filtered here, the same on SQLite and PostgreSQL
    if team is not None:
        users = [u for u in users if team.value in (u.teams or ())]
    if site is not None:
        users = [u for u in users if site in (u.sites or ())]
    return AccountsPublic(items=[account_public(u) for u in users[offset : offset + limit]], total=len(users))


@router.post("", response_model=AccountPublic, status_code=status.HTTP_201_CREATED,
             responses={409: {"description": "the username is taken"}, 422: {"description": "bad role, team or site"}})
def create_account(body: AccountCreateRequest, *, session: SessionDep, admin: AdminUser, sites: SitesDep,
                   clock: ClockDep) -> AccountPublic:
    """A new account, scoped to sites (and teams for technicians and grid officers)."""
    teams, site_ids = checked_scope(sites, body.role, [t.value for t in body.teams], body.sites)
    if get_user(session, body.username) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"user {body.username!r} exists already")
    user = create_user(session, body.username, body.password, body.role, teams=teams, sites=site_ids,
                       full_name=body.full_name, now=clock.now())
    session.commit()
    return account_public(user)


@router.get("/{username}", response_model=AccountPublic, responses={404: {"description": "no such user"}})
def get_account(username: str, *, session: SessionDep, admin: AdminUser) -> AccountPublic:
    """One account: role, teams, sites, whether it is disabled."""
    return account_public(user_or_404(session, username))


@router.patch("/{username}", response_model=AccountPublic,
              responses={404: {"description": "no such user"}, 409: {"description": "it would leave no active admin"},
                         422: {"description": "bad role, team or site"}})
def update_account(username: str, body: AccountUpdateRequest, *, session: SessionDep, admin: AdminUser,
                   sites: SitesDep) -> AccountPublic:
    """Change role, teams, sites, name, password or `disabled`; only the fields given change."""
    user = user_or_404(session, username)
    role = body.role or user.role
    teams = [t.value for t in body.teams] if body.teams is not None else list(user.teams or ())
    if body.role is not None and body.role not in TEAM_ROLES and body.teams is None:
        teams = []  # a role without teams drops the old ones
    site_ids = body.sites if body.sites is not None else list(user.sites or ())
    teams, site_ids = checked_scope(sites, role, teams, site_ids)
    disabled = user.disabled if body.disabled is None else body.disabled
    if user.role == "admin" and (role != "admin" or disabled) and _other_active_admins(session, user.username) == 0:
        raise HTTPException(status.HTTP_409_CONFLICT, "this is the last active admin: make another admin first")
    user.role, user.teams, user.sites, user.disabled = role, teams, site_ids, disabled
    if "full_name" in body.model_fields_set:
        user.full_name = body.full_name
    if body.password is not None:
        user.password_hash = hash_password(body.password)
    session.commit()
    return account_public(user)


@router.post("/{username}/disable", response_model=AccountPublic,
             responses={404: {"description": "no such user"}, 409: {"description": "the last active admin"}})
def disable_account(username: str, *, session: SessionDep, admin: AdminUser) -> AccountPublic:
    """The account can no longer sign in, and its tokens stop working at once. Nothing is deleted: its
    name stays in ticket histories."""
    user = user_or_404(session, username)
    if user.role == "admin" and not user.disabled and _other_active_admins(session, user.username) == 0:
        raise HTTPException(status.HTTP_409_CONFLICT, "this is the last active admin: make another admin first")
    user.disabled = True
    session.commit()
    return account_public(user)

