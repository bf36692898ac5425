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

from linli.mqtt_tls import MqttTls
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
    # mqtts:// only (linli/mqtt_tls.py, docs/security.md): the broker's certificate is always verified
    mqtt_ca_file: Path | None = Field(None, description="mqtts://: CA to check the broker's certificate with (empty: system CAs)")
    mqtt_cert_file: Path | None = Field(None, description="mqtts://: this client's certificate, for a broker that requires one")
    mqtt_key_file: Path | None = Field(None, description="mqtts://: the private key of LINLI_MQTT_CERT_FILE")
    public_base_url: str = Field("http://127.0.0.1:8000", description="the address people open: links in notifications")
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    secret_key: str = Field(DEV_SECRET, description="signs access tokens")
    token_ttl_min: int = Field(480, gt=0, le=7 * 24 * 60)
    admin_password: str | None = Field(None, description="creates user 'admin' with it when no user exists")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    personal_data_days: int = Field(180, ge=1, le=3650, description="keep residents' contacts and photos this long after closing")
    # residents' and couriers' reports and their photos (docs/residents.md)
    upload_max_bytes: int = Field(10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024, description="largest photo file accepted")
    upload_max_pixels: int = Field(64_000_000, ge=10_000, le=200_000_000, description="largest photo, in pixels")
    upload_max_side: int = Field(4096, ge=256, le=16384, description="stored photos are scaled down to this longest side")
    upload_store: Literal["local", "s3"] = Field("local", description="local: <data_dir>/uploads; s3: an S3-compatible bucket")
    s3_endpoint_url: str = Field("", description="S3-compatible endpoint, e.g. http://127.0.0.1:9000 (empty: AWS)")
    s3_bucket: str = ""
    s3_prefix: str = Field("", description="key prefix inside the bucket")
    s3_region: str = "us-east-1"
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    report_limit_per_ip: int = Field(10, ge=1, description="public reports one client address may send per hour")
    report_limit_per_device: int = Field(30, ge=1, description="public reports on one device per hour, from everyone")
    # failed sign-ins (wrong password, unknown or implausible username) per hour, then 429 (docs/security.md)
    signin_failures_per_ip: int = Field(30, ge=1, description="failed sign-ins one client address may make per hour")
    signin_failures_per_account: int = Field(
        10, ge=1, description="failed sign-ins to one username from one client address per hour")
    request_timeout_s: float = Field(
        30.0, gt=0, le=600,
        description="an API request not answered within this gets 503 (a hung database must not hang the "
                    "clients); streams and photo uploads are exempt",
    )
    # live updates over Server-Sent Events (docs/live-updates.md)
    live_updates: bool = Field(True, description="the API subscribes to the gateway's events for /api/v1/events")
    live_keepalive_s: float = Field(15.0, gt=0, le=300, description="seconds between keep-alive comments on a stream")
    live_client_queue: int = Field(500, ge=10, le=100_000, description="events a stream may fall behind before it is dropped")
    live_ticket_poll_s: float = Field(2.0, gt=0, le=60, description="how often the API looks for ticket changes made elsewhere")

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"{value!r} is not an mqtt://host:port or mqtts://host:port URL")
        return value

    @model_validator(mode="after")
    def _mqtt_tls_files(self) -> Settings:
        files = {"LINLI_MQTT_CA_FILE": self.mqtt_ca_file, "LINLI_MQTT_CERT_FILE": self.mqtt_cert_file,
                 "LINLI_MQTT_KEY_FILE": self.mqtt_key_file}
        given = [name for name, path in files.items() if path is not None]
        if given and not self.mqtt_host_port[2]:
            raise ValueError(f"{', '.join(given)} need a TLS broker URL: LINLI_MQTT_URL=mqtts://host:port")
        if (self.mqtt_cert_file is None) != (self.mqtt_key_file is None):
            raise ValueError("LINLI_MQTT_CERT_FILE and LINLI_MQTT_KEY_FILE go together")
        for name, path in files.items():
            if path is not None and not path.is_file():
                raise ValueError(f"{name}={path}: no such file")
        return self

    @model_validator(mode="after")
    def _no_default_secrets(self) -> Settings:
        if self.env == "production" and (self.secret_key == DEV_SECRET or len(self.secret_key) < 32):
            raise ValueError("LINLI_SECRET_KEY must be set to a random value of 32+ characters in production")
        return self

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> Settings:
        if self.upload_store == "s3" and not self.s3_bucket:
            raise ValueError("LINLI_UPLOAD_STORE=s3 needs LINLI_S3_BUCKET")
        return self

    @property
    def uploads_dir(self) -> Path:
        """Where the local photo store keeps files (and `linli purge-personal-data` deletes them)."""
        return self.data_dir / "uploads"

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
    def mqtt_tls(self) -> MqttTls | None:
        """TLS for MQTT clients (``linli.mqtt_tls.apply_tls``), or None for a plain mqtt:// broker."""
        if not self.mqtt_host_port[2]:
            return None
        return MqttTls(*(str(p) if p is not None else None
                         for p in (self.mqtt_ca_file, self.mqtt_cert_file, self.mqtt_key_file)))

    @property
    def mqtt_host_port(self) -> tuple[str, int, bool]:
        parts = urlsplit(self.mqtt_url)
        tls = parts.scheme == "mqtts"
        return parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883), tls
