"""Request and response models of planned maintenance windows (``/api/v1/maintenance``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import NO_NUL

MaintenanceSubjectType = Literal["device", "circuit", "cabinet", "building"]


class MaintenanceSubject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: MaintenanceSubjectType = Field(description="a device, a lighting circuit, a distribution cabinet or a building")
    id: str = Field(min_length=1, max_length=32, pattern=NO_NUL, examples=["C1"])


class MaintenanceRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{
            "site": "wanmei", "subject": {"type": "circuit", "id": "C1"},
            "starts_at": "2026-11-27T01:00:00Z", "ends_at": "2026-11-27T05:00:00Z", "reason": "更换C1回路电缆",
        }]},
    )

    site: str = Field(min_length=1, max_length=32, pattern=NO_NUL)
    subject: MaintenanceSubject
    starts_at: datetime | None = Field(None, description="ISO 8601 with offset; default: now")
    ends_at: datetime = Field(description="ISO 8601 with offset; after starts_at, at most 31 days later")
    reason: str = Field("", max_length=500, pattern=NO_NUL, description="what the work is (shown to staff)")


class MaintenancePublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 4, "site": "wanmei", "subject": {"type": "circuit", "id": "C1"}, "starts_at": "2026-11-27T01:00:00Z",
        "ends_at": "2026-11-27T05:00:00Z", "reason": "更换C1回路电缆", "created_by": "wang",
        "created_at": "2026-11-26T12:00:00Z", "active": False,
    }]})

    id: int
    site: str
    subject: MaintenanceSubject
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime
    active: bool = Field(description="the window covers the server's now: its subject's faults open no tickets")


class MaintenancesPublic(BaseModel):
    items: list[MaintenancePublic]
    total: int
