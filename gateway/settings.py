"""The gateway's own settings: the shared ones (``linli.settings``) plus buffer, metrics and log format."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from linli.settings import Settings


class GatewaySettings(Settings):
    buffer_max_mb: float = Field(512, gt=0, description="bound of the on-disk point buffer (LINLI_BUFFER_MAX_MB)")
    gateway_metrics_port: int = Field(9108, ge=0, le=65535, description="/metrics port; 0 disables it")
    gateway_metrics_host: str = Field("0.0.0.0", description="/metrics bind address")  # noqa: S104 - scraped from outside
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object per log line")
    follow_sim_clock: bool = Field(
        False, description="run on the simulator's clock announced on linli/v1/clock (accelerated demos and tests)"
    )

    @classmethod
    def of(cls, settings: Settings) -> GatewaySettings:
        """`settings` as gateway settings; the gateway's own fields come from the environment."""
        if isinstance(settings, GatewaySettings):
            return settings
        return cls(_env_file=None, **settings.model_dump())
