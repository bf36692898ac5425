"""Refuse to start the Linli stack with placeholder or unusable secrets.

The `preflight` service of docker-compose.yml runs this before anything else starts: PostgreSQL,
InfluxDB and Grafana take their passwords and tokens only on their very first start and keep them
in their volumes, so a placeholder from `.env.example` must be caught before they initialise.

    python /opt/linli/preflight.py        # reads the variables below from its environment

Exit 0 when every variable is usable, 2 with one line per problem otherwise.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

PLACEHOLDER = "change-me"

# variable -> shortest acceptable length
SECRETS: dict[str, int] = {
    "POSTGRES_PASSWORD": 16,
    "INFLUXDB_ADMIN_PASSWORD": 16,
    "INFLUXDB_TOKEN": 32,
    "GRAFANA_ADMIN_PASSWORD": 12,
    "LINLI_SECRET_KEY": 32,  # linli itself refuses shorter ones in production
    "LINLI_ADMIN_PASSWORD": 12,
    "LINLI_GATEWAY_MQTT_PASSWORD": 16,
    "LINLI_API_MQTT_PASSWORD": 16,
    "LINLI_WATCHDOG_MQTT_PASSWORD": 16,
    "LINLI_SIM_MQTT_PASSWORD": 16,
}

# Written into URLs by docker-compose.yml (LINLI_DATABASE_URL, LINLI_TSDB_URL) and, for the
# bucket, used as the InfluxQL database name (InfluxDB's virtual DBRP mapping splits a bucket name
# at "/"): only characters that need no escaping anywhere.
URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+")
IN_URLS = ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "INFLUXDB_ORG", "INFLUXDB_BUCKET", "INFLUXDB_TOKEN")

HINT = "generate one with `openssl rand -hex 32` (see docs/operations.md)"


def problems(env: Mapping[str, str]) -> list[str]:
    found = []
    for name in sorted({*SECRETS, *IN_URLS}):
        value = env.get(name, "")
        if not value:
            found.append(f"{name} is not set in .env")
            continue
        if PLACEHOLDER in value.lower():
            found.append(f"{name} still has the placeholder from .env.example: {HINT}")
            continue
        minimum = SECRETS.get(name, 1)
        if len(value) < minimum:
            found.append(f"{name} is {len(value)} characters long, it needs at least {minimum}: {HINT}")
        if name in IN_URLS and not URL_SAFE.fullmatch(value):
            found.append(f"{name} may contain only letters, digits and . _ ~ - (it goes into a URL): {HINT}")
    return found


def main() -> int:
    found = problems(os.environ)
    for problem in found:
        print(f"preflight: {problem}", file=sys.stderr)
    if found:
        print("preflight: fix .env, then run `docker compose up -d` again (the services that wait for it were not started)",
              file=sys.stderr)
        return 2
    print("preflight: .env is usable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
