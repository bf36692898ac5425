"""One settings object per process, from LINLI_* environment variables (and a .env file).

Every variable is documented in the README's configuration table. A typo'd value stops
start-up with a message naming the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from linli.site import builtin_site_path

DEV_SECRET = "linli-development-secret-change-me"  # noqa: S105 - refused in production


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LINLI_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = Field("development", description="production refuses default secrets")
    data_dir: Path = Field(Path("linli-data"), description="where SQLite files, uploads and the buffer live")
    sites: str = Field("", description="comma-separated site files; empty = the built-in Wanmei site")
    database_url: str = Field("", description="SQLAlchemy URL; empty = SQLite in the data dir")
    tsdb_url: str = Field("", description="time-series store URL; empty = SQLite in the data dir")
    mqtt_url: str = Field("mqtt://127.0.0.1:1883", description="broker, mqtt:// or mqtts://")
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_client_id: str = Field("linli-gateway", description="the gateway's persistent-session client id")
    public_base_url: str = Field("http://127.0.0.1:8000", description="the address people open: links in notifications")
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    secret_key: str = Field(DEV_SECRET, description="signs access tokens")
    token_ttl_min: int = Field(480, gt=0, le=7 * 24 * 60)
    admin_password: str | None = Field(None, description="creates user 'admin' with it when no user exists")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    personal_data_days: int = Field(180, ge=1, le=3650, description="keep residents' contacts and photos this long after closing")

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"{value!r} is not an mqtt://host:port or mqtts://host:port URL")
        return value

    @model_validator(mode="after")
    def _no_default_secrets(self) -> Settings:
        if self.env == "production" and (self.secret_key == DEV_SECRET or len(self.secret_key) < 32):
            raise ValueError("LINLI_SECRET_KEY must be set to a random value of 32+ characters in production")
        return self

    @property
    def site_files(self) -> list[Path]:
        files = [Path(p.strip()) for p in self.sites.split(",") if p.strip()]
        return files or [builtin_site_path()]

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'linli.db').resolve()}"

    @property
    def timeseries_url(self) -> str:
        return self.tsdb_url or f"sqlite:///{(self.data_dir / 'timeseries.db').resolve()}"

    @property
    def mqtt_host_port(self) -> tuple[str, int, bool]:
        parts = urlsplit(self.mqtt_url)
        tls = parts.scheme == "mqtts"
        return parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883), tls
