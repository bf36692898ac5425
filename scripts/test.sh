#!/usr/bin/env bash
# The whole test suite: installs and starts what the tests need, then ruff, mypy and pytest.
#   ./scripts/test.sh               everything
#   ./scripts/test.sh -k lamp       extra arguments go to pytest
# Servers: Mosquitto, InfluxDB 1.x and VictoriaMetrics (and Chromium for the browser tests) come from Debian's packages when run as
# root (the tests start their own instances on free ports), or from testcontainers when a Docker
# engine answers. PostgreSQL: $LINLI_TEST_PG_URL, else the local server on 127.0.0.1:5432.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || need+=(mosquitto)
command -v mosquitto_sub >/dev/null || need+=(mosquitto-clients)
[ -x /usr/bin/influxd ] || need+=(influxdb)
[ -x /usr/bin/victoria-metrics ] || need+=(victoria-metrics)
# Browser tests: Debian's Chromium, driven by the pinned Playwright (no browser download), and
# CJK fonts so the Chinese pages render in screenshots.
[ -x /usr/bin/chromium ] || need+=(chromium)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || need+=(fonts-noto-cjk)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing ${need[*]} from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  elif docker info >/dev/null 2>&1; then
    echo "test: ${need[*]} not installed; the tests will use testcontainers"
  else
    echo "test: need ${need[*]}: run as root on Debian (apt-get) or with a Docker engine" >&2
    exit 1
  fi
fi

if [ -z "${LINLI_TEST_PG_URL:-}" ] && ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v pg_ctlcluster >/dev/null; then
    echo "test: starting the local PostgreSQL cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import linli, pytest, ruff, mypy" 2>/dev/null || [ pyproject.toml -nt .venv/.linli-dev-installed ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch .venv/.linli-dev-installed
fi

echo "test: ruff"
.venv/bin/ruff check .
echo "test: mypy"
.venv/bin/mypy
echo "test: pytest"
exec .venv/bin/python -m pytest "$@"
