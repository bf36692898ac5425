"""`GET /healthz`: can the API serve, and which of its dependencies answer."""

from __future__ import annotations

import socket

from fastapi import APIRouter, Response, status

from api.deps import DatabaseDep, SettingsDep, SitesDep, StoreDep
from api.schemas import HealthPublic

router = APIRouter(tags=["health"])

BROKER_TIMEOUT_S = 1.0


def broker_reachable(host: str, port: int, timeout: float = BROKER_TIMEOUT_S) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@router.get(
    "/healthz",
    response_model=HealthPublic,
    responses={503: {"model": HealthPublic, "description": "the database does not answer"}},
)
def healthz(response: Response, settings: SettingsDep, db: DatabaseDep, store: StoreDep, sites: SitesDep) -> HealthPublic:
    """200 while the database answers (`degraded` if the broker or the store does not), else 503."""
    database = db.ping()
    try:
        timeseries = store is not None and store.ping()
    except Exception:  # a backend's ping should not raise; if it does, the store is not healthy
        timeseries = False
    host, port, _tls = settings.mqtt_host_port
    broker = broker_reachable(host, port)
    if not database:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        overall = "unavailable"
    elif timeseries and broker:
        overall = "ok"
    else:
        overall = "degraded"
    return HealthPublic(status=overall, database=database, timeseries=timeseries, broker=broker, sites=sites.ids())
