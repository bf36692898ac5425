"""Response shapes of the reports routes (``docs/reports.md`` describes every figure)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class MonthlyReport(BaseModel):
    site: str
    site_name: str
    month: str = Field(description="YYYY-MM")
    timezone: str
    period: dict[str, str] = Field(description="start and end: local midnight of the 1st of the month and of the next")
    generated_at: str
    frozen: bool = Field(description="true: the published copy, which later ticket changes do not alter")
    published_at: str | None
    published_by: str | None
    figures: dict[str, Any] = Field(description="counts, SLA shares, times to acknowledge and fix, by severity and team")
    repeat_faults: list[dict[str, Any]]
    problems: list[dict[str, Any]] = Field(description="问题清单: every ticket active during the month")
    responsibilities: list[dict[str, Any]] = Field(description="责任清单: one row per ticket and team")
    rectifications: list[dict[str, Any]] = Field(description="整改清单: where each problem's repair stands")
