# The Linli image: `linli gateway`, `linli api`, `linli sim` and the admin commands
# (provision, backup, restore, device, purge-personal-data), one image, chosen by the command.
# docker-compose.yml builds it as linli:local. Exact base tag: a rebuild gets the same Python.

FROM python:3.11.10-slim-bookworm AS build
# Optional package mirrors (docker-compose.yml passes them from .env; empty = the defaults),
# e.g. PYPI_MIRROR=https://mirrors.aliyun.com/pypi/simple/ where PyPI is slow.
ARG PYPI_MIRROR=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY linli ./linli
COPY gateway ./gateway
COPY api ./api
COPY firmware_sim ./firmware_sim
COPY dashboards ./dashboards
# The runtime dependencies only (no dev extras), into a venv the final stage copies whole.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install ${PYPI_MIRROR:+--index-url "$PYPI_MIRROR"} . \
    && /opt/venv/bin/linli --help >/dev/null

FROM python:3.11.10-slim-bookworm
# e.g. DEBIAN_MIRROR=https://mirrors.aliyun.com where deb.debian.org is slow
ARG DEBIAN_MIRROR=
# pg_dump/pg_restore for `linli backup`/`linli restore`: Debian 12's client is PostgreSQL 15,
# the major version of the postgres service (pg_dump refuses a newer server).
RUN if [ -n "$DEBIAN_MIRROR" ]; then \
        sed -i "s#http://deb.debian.org#${DEBIAN_MIRROR%/}#g" /etc/apt/sources.list.d/debian.sources; \
    fi \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client-15 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 linli \
    && useradd --system --uid 10001 --gid linli --home-dir /var/lib/linli --shell /usr/sbin/nologin linli \
    && install -d -o linli -g linli -m 0750 /var/lib/linli \
    && install -d -o linli -g linli -m 0755 /srv/linli
COPY --from=build /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py deploy/docker/preflight.py /opt/linli/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LINLI_DATA_DIR=/var/lib/linli
WORKDIR /srv/linli
USER linli
EXPOSE 8000
CMD ["linli", "--help"]
