"""Request and response models of the staff workflow: ticket actions, manual tickets, accounts,
teams on duty and commands to devices (``api-contract.md``; families as in ``api.schemas``)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.schemas import NO_NUL
from linli.catalog import Severity, Team
from linli.site import DEVICE_ID

Role = Literal["admin", "manager", "technician", "grid_officer", "viewer"]
USERNAME = r"^[A-Za-z0-9_.@-]{1,64}$"
UPLOAD_ID = r"^[A-Za-z0-9_-]{1,64}$"
PLACE = r"^[^\x00]{1,64}$"
MAX_PHOTOS = 6


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


VERSION_FIELD = Field(
    None, ge=1, description="the ticket version you saw (its `version`); 409 if the ticket has changed since",
    examples=[3],
)


# ---------------------------------------------------------------- ticket actions


class ActionRequest(_In):
    """start / resume: an optional note."""

    note: str | None = Field(None, max_length=2000, pattern=NO_NUL, examples=["到场处理 / on site"])
    version: int | None = VERSION_FIELD


class ReasonRequest(_In):
    """hold / cancel: a reason is required (it stops the fix clock, or ends the ticket)."""

    reason: str = Field(min_length=1, max_length=2000, pattern=NO_NUL, examples=["等待备件 / waiting for a spare part"])
    version: int | None = VERSION_FIELD


class ResolveRequest(_In):
    note: str = Field(min_length=1, max_length=4000, pattern=NO_NUL, description="what was done",
                      examples=["更换灯具驱动 / replaced the lamp driver"])
    photos: list[str] = Field(
        default_factory=list, max_length=MAX_PHOTOS,
        description="ids of photos uploaded beforehand (`POST /api/v1/uploads`)", examples=[["u_3f9a1c"]],
    )
    version: int | None = VERSION_FIELD

    @model_validator(mode="after")
    def _photo_ids(self) -> ResolveRequest:
        bad = [p for p in self.photos if not re.fullmatch(UPLOAD_ID, p)]
        if bad:
            raise ValueError(f"photo ids are 1-64 letters, digits, '_' or '-': {bad[0][:70]!r} is not")
        return self


class CommentRequest(_In):
    note: str = Field(min_length=1, max_length=4000, pattern=NO_NUL, examples=["已联系维保单位 / called the contractor"])
    version: int | None = VERSION_FIELD


class AssignRequest(_In):
    assignee: str | None = Field(
        pattern=USERNAME, description="the username of a technician or grid officer of one of the ticket's teams "
        "who sees its site; null to unassign (manager)", examples=["zhao"],
    )
    note: str | None = Field(None, max_length=2000, pattern=NO_NUL)
    version: int | None = VERSION_FIELD


class TicketCreateRequest(_In):
    """A ticket raised by staff: on a device or a place, for a catalog fault or a free title."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"site": "wanmei", "device_id": "SL-07", "fault": "lamp_failure", "description": "巡查发现不亮"},
        {"site": "wanmei", "place": "中心广场", "title": "井盖松动 / loose manhole cover", "severity": "P2",
         "teams": ["property"]},
    ]})

    site: str | None = Field(None, max_length=32, pattern=NO_NUL,
                             description="may be left out when the device id is unique among your sites, or you see one site")
    device_id: str | None = Field(None, pattern=DEVICE_ID, description="the device it concerns (or give `place`)")
    place: str | None = Field(None, pattern=PLACE, description="where, when it is not a device (a compound, a road, ...)")
    fault: str | None = Field(None, max_length=64, pattern=NO_NUL,
                              description="a fault catalog code; or leave it out and give `title`")
    title: str | None = Field(None, min_length=1, max_length=120, pattern=NO_NUL,
                              description="a short title; required without `fault`")
    severity: Severity | None = Field(None, description="default: the fault's catalog severity, else P2")
    teams: list[Team] | None = Field(None, min_length=1, max_length=4,
                                     description="lead team first; default: the site's routing of the fault, else property")
    description: str | None = Field(None, max_length=4000, pattern=NO_NUL, description="kept as the opening note")

    @model_validator(mode="after")
    def _subject_and_what(self) -> TicketCreateRequest:
        if (self.device_id is None) == (self.place is None):
            raise ValueError("give exactly one of device_id and place")
        if self.fault is None and self.title is None:
            raise ValueError("give a fault code or a title")
        return self


# ---------------------------------------------------------------- accounts


class AccountPublic(_Out):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "username": "zhao", "role": "technician", "full_name": "赵师傅", "teams": ["property"], "sites": ["wanmei"],
        "disabled": False, "created_at": "2026-11-26T12:00:00Z",
    }]})

    username: str
    role: Role
    full_name: str | None
    teams: list[str]
    sites: list[str] = Field(description="the sites the account is scoped to (an admin sees every site regardless)")
    disabled: bool
    created_at: datetime


class AccountsPublic(_Out):
    items: list[AccountPublic]
    total: int


class AccountCreateRequest(_In):
    username: str = Field(pattern=USERNAME, examples=["zhao"])
    password: str = Field(min_length=8, max_length=256, pattern=NO_NUL)
    role: Role
    full_name: str | None = Field(None, max_length=128, pattern=NO_NUL)
    teams: list[Team] = Field(default_factory=list, description="technicians: one or more; grid officers get `grid`")
    sites: list[str] = Field(default_factory=list, max_length=100, description="site ids; one or more except for an admin")


class AccountUpdateRequest(_In):
    """Only the fields given change."""

    password: str | None = Field(None, min_length=8, max_length=256, pattern=NO_NUL)
    role: Role | None = None
    full_name: str | None = Field(None, max_length=128, pattern=NO_NUL)
    teams: list[Team] | None = None
    sites: list[str] | None = Field(None, max_length=100)
    disabled: bool | None = None


# ---------------------------------------------------------------- teams


class OnDutyPerson(_Out):
    id: str
    name: str
    name_en: str | None
    phone: str | None = Field(description="null for viewers")


class TeamPublic(_Out):
    site: str
    team: str = Field(examples=["property"])
    name: str = Field(examples=["物业工程部"])
    name_en: str | None = Field(examples=["Property crew"])
    lead: str | None = Field(description="the team lead's person id in the site file")
    on_duty: list[OnDutyPerson] = Field(description="whose shift covers now (the lead when no shift does)")
    members: list[str] = Field(description="active accounts of the team that see the site (empty for viewers)")


class TeamsPublic(_Out):
    at: datetime
    items: list[TeamPublic]


# ---------------------------------------------------------------- commands


class CommandRequest(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"action": "set_light", "params": {"relay": True, "dim_pct": 70}, "reason": "夜间巡检试灯"},
        {"action": "set_available", "params": {"available": False}},
        {"action": "refresh"},
    ]})

    action: Literal["set_light", "set_schedule", "set_available", "refresh"] = Field(
        description="streetlight: set_light {relay, dim_pct}, set_schedule {on_offset_min, off_offset_min}; "
        "charger: set_available {available}; any kind: refresh. No command moves an elevator."
    )
    params: dict[str, Any] = Field(default_factory=dict)
    ttl_s: int = Field(300, ge=10, le=3600, description="seconds until the command expires")
    reason: str | None = Field(None, max_length=500, pattern=NO_NUL)


class CommandSent(_Out):
    id: str
    status: Literal["sent"] = "sent"


class CommandPublic(_Out):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "c_5b1e0c2a9f", "site": "wanmei", "device_id": "SL-07", "action": "set_light",
        "params": {"relay": True, "dim_pct": 70}, "status": "acked", "requested_by": "wang", "reason": "夜间巡检试灯",
        "sent_at": "2026-11-26T12:00:00Z", "expires_at": "2026-11-26T12:05:00Z",
        "answered_at": "2026-11-26T12:00:01Z", "error": None,
    }]})

    id: str
    site: str
    device_id: str
    action: str
    params: dict[str, Any]
    status: Literal["sent", "acked", "failed", "expired"] = Field(
        description="sent: published, no answer yet; acked: the device did it; failed: the device said no "
        "(see `error`), or it could not be published; expired: no answer before `expires_at`"
    )
    requested_by: str = Field(description="a username, or 'system' for an automatic action")
    reason: str | None
    sent_at: datetime
    expires_at: datetime
    answered_at: datetime | None
    error: str | None


class CommandsPublic(_Out):
    items: list[CommandPublic] = Field(description="newest first")
    total: int
