"""Teams of the caller's sites and who answers for each right now (``linli.sla.on_duty``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from api.deps import ClockDep, CurrentUser, SessionDep, SitesDep, VisibleSites
from api.routes.devices import site_or_404
from api.schemas_workflow import OnDutyPerson, TeamPublic, TeamsPublic
from linli.catalog import TEAM_NAMES, Team
from linli.sla import on_duty
from linli.storage.models import User

router = APIRouter(prefix="/teams", tags=["teams"])


@router.get("", response_model=TeamsPublic, responses={404: {"description": "no such site among yours (`site`)"}})
def list_teams(
    *,
    session: SessionDep,
    user: CurrentUser,
    sites: SitesDep,
    visible: VisibleSites,
    clock: ClockDep,
    site: Annotated[str | None, Query(description="only this site (default: every site you see)")] = None,
) -> TeamsPublic:
    """Every team a site file configures, with who is on duty now (the roster's shift in the site's time
    zone, else the team lead) and the active accounts of the team. Phone numbers and members are for
    staff: a viewer gets names only."""
    now = clock.now()
    site_ids = [site_or_404(sites, visible, site).id] if site is not None else visible
    staff = user.role != "viewer"
    accounts = list(session.scalars(select(User).where(User.disabled.is_(False)).order_by(User.username))) if staff else []
    items: list[TeamPublic] = []
    for site_id in site_ids:
        found = sites[site_id]
        for team, config in found.spec.teams.items():
            code = Team(team).value
            zh, en = TEAM_NAMES.get(code, (config.name, config.name_en))
            items.append(TeamPublic(
                site=site_id, team=code, name=config.name or zh, name_en=config.name_en or en, lead=config.lead,
                on_duty=[OnDutyPerson(id=p.id, name=p.name, name_en=p.name_en, phone=p.phone if staff else None)
                         for p in on_duty(found, code, now)],
                members=[a.username for a in accounts
                         if code in (a.teams or ()) and (a.role == "admin" or site_id in (a.sites or ()))],
            ))
    return TeamsPublic(at=now, items=items)
