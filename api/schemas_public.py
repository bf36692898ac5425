"""Bodies and answers of residents' reports and mobile grid officers' hazards (``docs/residents.md``).

Public answers carry no personal data: no contact, no staff names, no notes of the history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.schemas import NO_NUL, FaultName

Category = Literal[
    "light_out", "light_flicker", "light_on_by_day", "elevator_fault", "elevator_trapped", "charger_fault",
    "hazard", "other",
]


class ReportLocation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    x: float | None = Field(None, description="plan units from the left (0..the plan's width)")
    y: float | None = Field(None, description="plan units from the top (0..the plan's height)")
    text: str | None = Field(None, max_length=200, pattern=NO_NUL, description="where, in words: 3栋东侧楼梯口")

    @model_validator(mode="after")
    def _both_or_neither(self) -> ReportLocation:
        if (self.x is None) != (self.y is None):
            raise ValueError("give both x and y, or neither")
        return self

    def as_dict(self) -> dict[str, float | str]:
        return {k: v for k, v in (("x", self.x), ("y", self.y), ("text", self.text)) if v is not None}


class ReportRequest(BaseModel):
    """A resident's report (一键报修). As JSON, or as multipart form fields (``x``, ``y``, ``place`` for
    the location) with up to 3 files under ``photos``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "site": "wanmei", "device_id": "SL-07", "category": "light_out", "description": "广场7号灯晚上不亮",
        "contact": "13800000000",
    }]})

    site: str = Field(max_length=32, pattern=NO_NUL)
    device_id: str | None = Field(None, max_length=32, pattern=NO_NUL, description="the device, when it is about one")
    category: Category
    description: str = Field(min_length=1, max_length=2000, pattern=NO_NUL)
    contact: str | None = Field(
        None, max_length=128, pattern=NO_NUL,
        description="a phone number or name for a call-back: seen by staff only, removed after the retention period",
    )
    location: ReportLocation | None = None


class HazardRequest(BaseModel):
    """A mobile grid officer's (流动网格员: a courier or rider) safety hazard: where on the site plan, what."""

    model_config = ConfigDict(extra="forbid")

    site: str = Field(max_length=32, pattern=NO_NUL)
    description: str = Field(min_length=1, max_length=2000, pattern=NO_NUL)
    location: ReportLocation = Field(description="x and y on the site plan are required; text optional")
    contact: str | None = Field(None, max_length=128, pattern=NO_NUL)

    @model_validator(mode="after")
    def _on_the_plan(self) -> HazardRequest:
        if self.location.x is None:
            raise ValueError("a hazard needs its place on the site plan: location.x and location.y")
        return self


class ReportCreated(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "q2V8mXc0Rk4Yt9LwZp3a1g", "ticket_id": 12, "duplicate_of": 12, "photos": 1},
    ]})

    id: str = Field(description="the report's id, also its access token: keep it to follow the repair")
    ticket_id: int = Field(description="the ticket it opened or joined")
    duplicate_of: int | None = Field(description="the ticket that was already open for the device, when it joined one")
    photos: int = Field(description="photos stored")


class ProgressStep(BaseModel):
    status: str = Field(description="open | acknowledged | in_progress | on_hold | resolved | verified | closed | cancelled")
    at: datetime


class ReportTicket(BaseModel):
    id: int
    fault_name: FaultName
    status: str
    opened_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    device_ids: list[str]
    progress: list[ProgressStep] = Field(description="every change of status, oldest first: no people, no notes")


class ReportPublic(BaseModel):
    """What the reporter sees of their report: its ticket's progress, their own photos; never a contact."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "q2V8mXc0Rk4Yt9LwZp3a1g", "site": "wanmei", "source": "resident", "category": "light_out",
        "category_name": {"zh": "路灯不亮", "en": "Streetlight out"}, "description": "广场7号灯晚上不亮",
        "device_id": "SL-07", "created_at": "2026-11-26T11:30:00Z",
        "photos": ["/api/v1/public/reports/q2V8mXc0Rk4Yt9LwZp3a1g/photos/3f9a1c.jpg"],
        "ticket": {"id": 12, "fault_name": {"zh": "灯具不亮", "en": "Lamp failure"}, "status": "acknowledged",
                   "opened_at": "2026-11-26T11:00:00Z", "acknowledged_at": "2026-11-26T11:20:00Z", "resolved_at": None,
                   "closed_at": None, "device_ids": ["SL-07"],
                   "progress": [{"status": "open", "at": "2026-11-26T11:00:00Z"},
                                {"status": "acknowledged", "at": "2026-11-26T11:20:00Z"}]},
    }]})

    id: str
    site: str
    source: Literal["resident", "grid_officer"]
    category: str
    category_name: FaultName
    description: str
    device_id: str | None
    created_at: datetime
    photos: list[str] = Field(description="URLs of the report's photos (the report id gives access)")
    ticket: ReportTicket | None = Field(description="null once the report is no longer tied to a ticket")


class ReportStaff(BaseModel):
    """A report as staff see it: with the contact for a call-back (null once removed by retention)."""

    id: str
    site: str
    source: str
    category: str
    description: str
    device_id: str | None
    location: dict[str, float | str]
    contact: str | None
    ticket_id: int | None
    created_at: datetime
    photos: list[str] = Field(description="URLs for signed-in users")
    personal_data_removed_at: datetime | None


class ReportsStaff(BaseModel):
    items: list[ReportStaff]
    total: int
