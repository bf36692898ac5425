"""Provisioning without a broker: Mosquitto's hash format (checked against the real
mosquitto_passwd), the ACL text, credentials in the database, and the `linli provision` command."""

from __future__ import annotations

import base64
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from linli.ops import provision
from linli.ops.provision import (
    IssuedSecret,
    PlatformAccount,
    ProvisionError,
    acl_for,
    broker_accounts,
    issue_credentials,
    main,
    mosquitto_hash,
    mosquitto_verify,
    read_passwd,
    revoke,
    rotate,
    write_broker_files,
)
from linli.site import Site, load_site
from linli.storage import Database, DeviceCredential, migrate

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
HASH_7 = re.compile(r"^\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$")

SITE_YAML = """\
site:
  id: {site}
  name: Test estate
  coordinates: {{latitude: 26.1, longitude: 119.3}}
compounds:
  - {{id: c1, name: Compound 1}}
buildings:
  - {{id: B1, compound: c1, name: Building 1, lowest_floor: -1, highest_floor: 18, rated_speed_mps: 1.75}}
cabinets:
  - id: CAB-1
    name: Cabinet 1
    circuits:
      - {{id: C1, name: Circuit 1, switched: true}}
concentrators:
  - {{id: CON-1, name: Concentrator 1, cabinet: CAB-1}}
teams:
  property: {{name: Property}}
devices:
  - {{id: SL-01, kind: streetlight, name: Light 1, circuit: C1, rated_power_w: 60}}
  - {{id: SL-02, kind: streetlight, name: Light 2, circuit: C1, rated_power_w: 60}}
  - {{id: EL-1, kind: elevator, name: Elevator 1, building: B1}}
  - {{id: SL-10, kind: streetlight, name: Light 10, circuit: C1, rated_power_w: 60, concentrator: CON-1}}
  - {{id: SL-11, kind: streetlight, name: Light 11, circuit: C1, rated_power_w: 60, concentrator: CON-1}}
{extra}"""


def write_site(tmp_path: Path, site: str = "estate", extra: str = "") -> Path:
    path = tmp_path / f"{site}.yaml"
    path.write_text(SITE_YAML.format(site=site, extra=extra), encoding="utf-8")
    return path


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return load_site(write_site(tmp_path))


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'linli.db'}"
    migrate(url)
    db = Database(url)
    yield db
    db.close()


PLATFORM = [PlatformAccount("linli-gateway", "gw-pass"), PlatformAccount("linli-api", "api-pass")]


# --- hashes ------------------------------------------------------------------------------------


def mosquitto_passwd_line(tmp_path: Path, username: str, password: str) -> str:
    if not Path(MOSQUITTO_PASSWD).exists():
        pytest.fail("mosquitto_passwd not found: `apt-get install mosquitto`", pytrace=False)
    path = tmp_path / "reference.passwd"
    subprocess.run([MOSQUITTO_PASSWD, "-c", "-b", str(path), username, password], check=True, capture_output=True)
    return path.read_text().strip()


@pytest.mark.parametrize("password", ["secret", "k3xm-9pqa-7tre-44nb-hwq2-zz8c", "pässwörd with spaces:and:colons"])
def test_hash_is_what_mosquitto_passwd_writes(tmp_path: Path, password: str) -> None:
    username, hashed = mosquitto_passwd_line(tmp_path, "alice", password).split(":", 1)
    assert username == "alice"
    assert HASH_7.match(hashed), hashed
    assert mosquitto_verify(password, hashed)
    assert not mosquitto_verify(password + "x", hashed)
    salt = base64.b64decode(hashed.split("$")[3])
    assert mosquitto_hash(password, salt=salt) == hashed  # byte for byte, given mosquitto_passwd's salt


def test_hash_format_and_fresh_salts() -> None:
    first, second = mosquitto_hash("secret"), mosquitto_hash("secret")
    assert HASH_7.match(first) and HASH_7.match(second)
    assert first != second  # a new 12-byte salt each time
    assert mosquitto_verify("secret", first) and mosquitto_verify("secret", second)
    assert not mosquitto_verify("secret", "$7$101$not base64!$xx")
    assert not mosquitto_verify("secret", "plain")


def test_new_secrets_are_typeable_and_distinct() -> None:
    made = {provision.new_secret() for _ in range(200)}
    assert len(made) == 200
    assert all(re.fullmatch(r"([a-km-np-z2-9]{4}-){5}[a-km-np-z2-9]{4}", s) for s in made)


# --- accounts and ACL --------------------------------------------------------------------------


def test_accounts_children_of_a_concentrator_have_none_of_their_own(site: Site) -> None:
    assert [(a.username, a.kind) for a in broker_accounts([site])] == [
        ("estate.SL-01", "streetlight"),
        ("estate.SL-02", "streetlight"),
        ("estate.EL-1", "elevator"),
        ("estate.concentrator.CON-1", "concentrator"),
    ]


def acl_blocks(text: str) -> dict[str, list[str]]:
    blocks: dict[str, list[str]] = {}
    user = None
    for line in text.splitlines():
        if line.startswith("user "):
            user = line.removeprefix("user ")
            assert user not in blocks, f"{user} twice"
            blocks[user] = []
        elif line.startswith("topic "):
            assert user is not None, "a topic line before any user line would apply to anonymous clients"
            blocks[user].append(line)
    return blocks


def test_acl_of_a_concentrator_with_children(site: Site) -> None:
    text = acl_for([site], PLATFORM)
    assert (
        "# concentrator estate/concentrator/CON-1, publishes for: SL-10, SL-11\n"
        "user estate.concentrator.CON-1\n"
        "topic write estate/v1/estate/concentrator/CON-1/status\n"
        "topic write estate/v1/estate/concentrator/CON-1/event\n"
        "topic write estate/v1/estate/streetlight/SL-10/status\n"
        "topic write estate/v1/estate/streetlight/SL-10/telemetry\n"
        "topic write estate/v1/estate/streetlight/SL-10/event\n"
        "topic write estate/v1/estate/streetlight/SL-10/cmd/ack\n"
        "topic read estate/v1/estate/streetlight/SL-10/cmd\n"
        "topic write estate/v1/estate/streetlight/SL-11/status\n"
        "topic write estate/v1/estate/streetlight/SL-11/telemetry\n"
        "topic write estate/v1/estate/streetlight/SL-11/event\n"
        "topic write estate/v1/estate/streetlight/SL-11/cmd/ack\n"
        "topic read estate/v1/estate/streetlight/SL-11/cmd\n"
    ) in text
    blocks = acl_blocks(text)
    assert set(blocks) == {"linli-gateway", "linli-api", "estate.SL-01", "estate.SL-02", "estate.EL-1",
                           "estate.concentrator.CON-1"}
    assert blocks["estate.EL-1"] == [
        "topic write estate/v1/estate/elevator/EL-1/status",
        "topic write estate/v1/estate/elevator/EL-1/telemetry",
        "topic write estate/v1/estate/elevator/EL-1/event",
        "topic write estate/v1/estate/elevator/EL-1/cmd/ack",
        "topic read estate/v1/estate/elevator/EL-1/cmd",
    ]
    assert "pattern" not in text and "readwrite" not in text
    assert not any("#" in line or "+" in line for user, lines in blocks.items() if "." in user for line in lines)


def test_acl_of_the_platform_accounts(tmp_path: Path) -> None:
    sites = [load_site(write_site(tmp_path, "north")), load_site(write_site(tmp_path, "south"))]
    blocks = acl_blocks(acl_for(sites))  # default: all four platform accounts
    assert blocks["linli-gateway"] == [
        "topic read estate/v1/north/#", "topic read estate/v1/south/#",
        "topic write estate/v1/north/+/+/cmd", "topic write estate/v1/south/+/+/cmd",
        "topic write linli/#",
    ]
    assert blocks["linli-api"] == ["topic write estate/v1/north/+/+/cmd", "topic write estate/v1/south/+/+/cmd",
                                   "topic read linli/#"]
    assert blocks["linli-watchdog"] == ["topic read linli/#", "topic read $SYS/#"]
    assert "topic write estate/v1/south/+/+/telemetry" in blocks["linli-sim"]
    assert "topic read estate/v1/north/+/+/cmd" in blocks["linli-sim"]
    assert not any(line.endswith("/cmd") and "write" in line for line in blocks["linli-sim"])
    assert "north.SL-01" in blocks and "south.SL-01" in blocks  # same device id, two sites, two accounts
    with pytest.raises(ValueError, match="unknown platform account"):
        acl_for(sites, ["linli-root"])


# --- credentials in the database ---------------------------------------------------------------


def test_issue_is_idempotent_and_files_are_stable(site: Site, database: Database, tmp_path: Path) -> None:
    out = tmp_path / "broker"
    out.mkdir()
    with database.session() as session:
        issued = issue_credentials(session, [site], NOW)
        assert [s.username for s in issued] == [a.username for a in broker_accounts([site])]
        assert len({s.password for s in issued}) == len(issued)
        write_broker_files(session, [site], out, PLATFORM)
    passwd, acl = (out / "passwd").read_bytes(), (out / "acl").read_bytes()
    with database.session() as session:
        assert issue_credentials(session, [site], NOW + timedelta(days=1)) == []
        write_broker_files(session, [site], out, PLATFORM)
        rows = list(session.scalars(select(DeviceCredential)))
    assert (out / "passwd").read_bytes() == passwd and (out / "acl").read_bytes() == acl
    assert stat.S_IMODE((out / "passwd").stat().st_mode) == 0o640
    assert len(rows) == 4 and all(r.active and r.created_at == NOW for r in rows)
    entries = read_passwd(out / "passwd")
    assert list(entries) == ["linli-gateway", "linli-api", *(s.username for s in issued)]
    for secret in issued:
        assert mosquitto_verify(secret.password, entries[secret.username])
        assert secret.password not in passwd.decode()
    assert mosquitto_verify("gw-pass", entries["linli-gateway"])
    # a new platform password changes that line only
    with database.session() as session:
        write_broker_files(session, [site], out, [PlatformAccount("linli-gateway", "new"), PLATFORM[1]])
    changed = read_passwd(out / "passwd")
    assert mosquitto_verify("new", changed["linli-gateway"])
    del changed["linli-gateway"], entries["linli-gateway"]
    assert changed == entries


def test_revoke_keeps_history_and_is_sticky_until_rotated(site: Site, database: Database, tmp_path: Path) -> None:
    out = tmp_path / "broker"
    out.mkdir()
    with database.session() as session:
        first = {s.username: s for s in issue_credentials(session, [site], NOW)}
        assert revoke(session, "estate", "SL-01", NOW + timedelta(hours=1)) is True
        assert revoke(session, "estate", "SL-01", NOW + timedelta(hours=2)) is False  # nothing active left
        assert revoke(session, "estate", "NOPE", NOW) is False
        assert issue_credentials(session, [site], NOW) == []  # a revoked device gets no new secret by itself
        write_broker_files(session, [site], out, PLATFORM)
        assert [a.label for a in provision.revoked_accounts(session, [site])] == ["estate/SL-01"]
    assert "estate.SL-01" not in read_passwd(out / "passwd")
    with database.session() as session:
        old = session.scalars(select(DeviceCredential).where(DeviceCredential.device_id == "SL-01")).one()
        assert not old.active and old.revoked_at == NOW + timedelta(hours=1)
        assert old.username == f"revoked:{old.id}:estate.SL-01"
        assert "username was estate.SL-01" in (old.note or "")
        renewed = rotate(session, [site], "estate", "SL-01", NOW + timedelta(days=1))
        assert renewed.username == "estate.SL-01" and renewed.password != first["estate.SL-01"].password
        again = rotate(session, [site], "estate", "CON-1", NOW + timedelta(days=1))
        write_broker_files(session, [site], out, PLATFORM)
        rows = session.scalars(select(DeviceCredential).order_by(DeviceCredential.id)).all()
    entries = read_passwd(out / "passwd")
    assert mosquitto_verify(renewed.password, entries["estate.SL-01"])
    assert mosquitto_verify(again.password, entries["estate.concentrator.CON-1"])
    assert not mosquitto_verify(first["estate.concentrator.CON-1"].password, entries["estate.concentrator.CON-1"])
    assert [(r.device_id, r.active) for r in rows if r.device_id in ("SL-01", "CON-1")] == [
        ("SL-01", False), ("CON-1", False), ("SL-01", True), ("CON-1", True)]


def test_rotate_refuses_what_has_no_account(site: Site, database: Database) -> None:
    with database.session() as session:
        with pytest.raises(ProvisionError, match="behind concentrator CON-1"):
            rotate(session, [site], "estate", "SL-10", NOW)
        with pytest.raises(ProvisionError, match="unknown device 'SL-99' in site 'estate'"):
            rotate(session, [site], "estate", "SL-99", NOW)
        with pytest.raises(ProvisionError, match="unknown site 'elsewhere'"):
            rotate(session, [site], "elsewhere", "SL-01", NOW)


def test_an_id_both_device_and_concentrator(tmp_path: Path, database: Database) -> None:
    twin = load_site(write_site(tmp_path, extra="  - {id: CON-1, kind: charger, name: Pile, rated_power_kw: 7}\n"))
    assert {a.username for a in broker_accounts([twin])} >= {"estate.CON-1", "estate.concentrator.CON-1"}
    with database.session() as session:
        issue_credentials(session, [twin], NOW)
        with pytest.raises(ProvisionError, match="both a device and a concentrator"):
            revoke(session, "estate", "CON-1", NOW)
        assert revoke(session, "estate", "CON-1", NOW, kind="concentrator")
        assert [a.username for a in provision.revoked_accounts(session, [twin])] == ["estate.concentrator.CON-1"]


# --- the command -------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """LINLI_* for the command: the test site, SQLite and the data dir in tmp_path."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in list(os.environ):
        if name.startswith("LINLI_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LINLI_SITES", str(write_site(tmp_path)))
    monkeypatch.setenv("LINLI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LINLI_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    return tmp_path / "data" / "broker"


def secrets_table(stdout: str) -> dict[str, str]:
    """username -> password from the printed table."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["SITE", "DEVICE"])
    return {line.split()[3]: line.split()[4] for line in lines[start + 1:] if len(line.split()) == 5}


def test_command_prints_secrets_once_and_rewrites_the_same_files(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    table = secrets_table(out)
    assert set(table) == {"estate.SL-01", "estate.SL-02", "estate.EL-1", "estate.concentrator.CON-1"}
    assert "SIGHUP" in out
    files = {name: (env / name).read_bytes() for name in ("passwd", "acl", "platform-accounts.env")}
    assert stat.S_IMODE((env / "platform-accounts.env").stat().st_mode) == 0o600
    platform = provision.read_env_file(env / "platform-accounts.env")
    assert set(platform) == {"LINLI_GATEWAY_MQTT_PASSWORD", "LINLI_API_MQTT_PASSWORD", "LINLI_WATCHDOG_MQTT_PASSWORD",
                             "LINLI_SIM_MQTT_PASSWORD"}
    entries = read_passwd(env / "passwd")
    assert all(mosquitto_verify(pw, entries[user]) for user, pw in table.items())
    assert mosquitto_verify(platform["LINLI_SIM_MQTT_PASSWORD"], entries["linli-sim"])

    assert main([]) == 0
    again = capsys.readouterr().out
    assert "no new credentials" in again and not any(pw in again for pw in table.values())
    assert {name: (env / name).read_bytes() for name in files} == files


def test_command_rotate_and_revoke(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    first = secrets_table(capsys.readouterr().out)
    assert main(["--rotate", "estate/SL-02", "--rotate", "estate/concentrator/CON-1"]) == 0
    rotated = secrets_table(capsys.readouterr().out)
    assert set(rotated) == {"estate.SL-02", "estate.concentrator.CON-1"}
    entries = read_passwd(env / "passwd")
    assert mosquitto_verify(rotated["estate.SL-02"], entries["estate.SL-02"])
    assert not mosquitto_verify(first["estate.SL-02"], entries["estate.SL-02"])

    assert main(["revoke", "estate/SL-01"]) == 0
    captured = capsys.readouterr()
    assert "revoked estate/SL-01" in captured.out and "SIGHUP" in captured.out
    assert "estate.SL-01" not in read_passwd(env / "passwd")
    assert main(["revoke", "estate/SL-01"]) == 0
    assert "revoked before" in capsys.readouterr().out
    assert main([]) == 0  # stays revoked, and says so
    captured = capsys.readouterr()
    assert "no new credentials" in captured.out and "--rotate estate/SL-01" in captured.err
    assert main(["--rotate", "estate/SL-01"]) == 0
    assert "estate.SL-01" in secrets_table(capsys.readouterr().out)


@pytest.mark.parametrize(("argv", "message"), [
    (["revoke", "estate/SL-99"], "unknown device 'SL-99' in site 'estate'"),
    (["revoke", "nowhere/SL-01"], "unknown site 'nowhere' (known: estate)"),
    (["--rotate", "estate/SL-99"], "unknown device 'SL-99' in site 'estate'"),
    (["--rotate", "nowhere/SL-01"], "unknown site 'nowhere'"),
    (["--rotate", "estate/SL-10"], "behind concentrator CON-1"),
    (["revoke", "SL-01"], "expected SITE/DEVICE"),
    (["--reload-pidfile", "/nonexistent/mosquitto.pid"], "cannot read the pid file"),
    (["--platform-password-file", "PLATFORM"], "has no LINLI_API_MQTT_PASSWORD, LINLI_WATCHDOG_MQTT_PASSWORD"),
])
def test_command_bad_input(env: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    Path("PLATFORM").write_text("LINLI_GATEWAY_MQTT_PASSWORD=x\n")
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("linli provision: ") and message in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert captured.out == ""
    assert not (env / "passwd").exists()


def test_command_bad_out_dir(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("")
    assert main(["--out", str(tmp_path / "a-file")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "a-file" / "sub")]) == 2
    assert "cannot create it" in capsys.readouterr().err


def test_command_platform_password_file_and_production(env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LINLI_ENV", "production")
    monkeypatch.setenv("LINLI_SECRET_KEY", "s" * 40)
    given = tmp_path / "platform.env"
    given.write_text("# ours\nLINLI_GATEWAY_MQTT_PASSWORD=gw\nexport LINLI_API_MQTT_PASSWORD='api'\n"
                     "LINLI_WATCHDOG_MQTT_PASSWORD=\"wd\"\n")
    assert main(["--platform-password-file", str(given)]) == 0
    capsys.readouterr()
    entries = read_passwd(env / "passwd")
    assert "linli-sim" not in entries and "user linli-sim" not in (env / "acl").read_text()  # no simulator in production
    assert mosquitto_verify("gw", entries["linli-gateway"]) and mosquitto_verify("api", entries["linli-api"])
    assert mosquitto_verify("wd", entries["linli-watchdog"])
    assert not (env / "platform-accounts.env").exists()
    assert main(["--platform-password-file", str(given), "--sim"]) == 2  # asked for, but no password for it
    assert "LINLI_SIM_MQTT_PASSWORD" in capsys.readouterr().err


def test_command_sends_sighup(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # SIGHUP at its default (ends the process) even when this test runs under nohup, which ignores it
    # for every child (and a shell cannot reset a signal ignored on entry)
    sleeper = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                "signal.signal(signal.SIGHUP, signal.SIG_DFL); print('ready', flush=True); "
                                "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert sleeper.stdout is not None and sleeper.stdout.readline() == "ready\n"
    try:
        pidfile = tmp_path / "broker.pid"
        pidfile.write_text(f"{sleeper.pid}\n")
        assert main(["--reload-pidfile", str(pidfile)]) == 0
        assert sleeper.wait(timeout=10) == -1  # SIGHUP ends `sleep`
        assert f"sent SIGHUP to Mosquitto (pid {sleeper.pid})" in capsys.readouterr().out
    finally:
        sleeper.kill()
        sleeper.wait()
    assert main(["--reload-pid", str(sleeper.pid)]) == 2  # gone now
    assert f"no process {sleeper.pid}" in capsys.readouterr().err


def test_issued_secret_fields() -> None:
    secret = IssuedSecret("estate", "SL-01", "streetlight", "estate.SL-01", "pw")
    assert secret.username == provision.device_username("estate", "SL-01", "streetlight")
    assert provision.device_username("estate", "CON-1", "concentrator") == "estate.concentrator.CON-1"
