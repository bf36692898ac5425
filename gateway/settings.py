"""The gateway's own settings: the shared ones (``linli.settings``) plus buffer, metrics and log format."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from linli.settings import Settings


class GatewaySettings(Settings):
    buffer_max_mb: float = Field(512, gt=0, description="bound of the on-disk point buffer (LINLI_BUFFER_MAX_MB)")
    gateway_metrics_port: int = Field(9108, ge=0, le=65535, description="/metrics port; 0 disables it")
    gateway_metrics_host: str = Field("0.0.0.0", description="/metrics bind address")  # noqa: S104 - scraped from outside
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object per log line")
    follow_sim_clock: bool = Field(
        False, description="run on the simulator's clock announced on linli/v1/clock (accelerated demos and tests)"
    )
    gateway_lease_ttl_s: float = Field(
        15.0, ge=1, le=600, description="a site's lease expires this long after its holder's last renewal"
    )
    gateway_lease_renew_s: float = Field(5.0, gt=0, description="renew held leases, and try to take the others, this often")
    gateway_worker_stall_s: float = Field(
        120.0, gt=0, le=3600,
        description="held leases are renewed beside a long batch, but not once the worker has made no progress "
                    "for this long: a stuck gateway lets its sites go to a standby",
    )
    gateway_session_prefix: str = Field(
        "", description="MQTT sessions are '{prefix}-{site}', held by whichever gateway holds the site's lease; "
                        "give a gateway and its standby the same prefix; empty = LINLI_MQTT_CLIENT_ID",
    )

    @model_validator(mode="after")
    def _renew_within_ttl(self) -> GatewaySettings:
        if self.gateway_lease_renew_s * 2 > self.gateway_lease_ttl_s:
            raise ValueError("LINLI_GATEWAY_LEASE_RENEW_S must be at most half of LINLI_GATEWAY_LEASE_TTL_S")
        return self

    def site_session_id(self, site: str) -> str:
        """The MQTT client id of `site`'s persistent session (taken over with the lease)."""
        return f"{self.gateway_session_prefix or self.mqtt_client_id}-{site}"

    @classmethod
    def of(cls, settings: Settings) -> GatewaySettings:
        """`settings` as gateway settings; the gateway's own fields come from the environment."""
        if isinstance(settings, GatewaySettings):
            return settings
        return cls(_env_file=None, **settings.model_dump())
