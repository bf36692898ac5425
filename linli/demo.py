"""`linli demo`: the whole system on one machine, no server installed.

A Mosquitto binary when one is installed, otherwise the embedded amqtt broker; SQLite for
tickets and time series; the gateway, API and simulator as child processes of this one.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

DEFAULT_API_PORT = 8000
DEFAULT_MQTT_PORT = 1883
DEFAULT_METRICS_PORT = 9108


class DemoError(Exception):
    """Something the person running the demo can fix; printed without a traceback."""


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def choose_port(host: str, asked: int | None, default: int, option: str) -> tuple[int, str | None]:
    """The port to use and, when the usual one was taken, a note saying so."""
    if asked is not None:
        if not port_free(host, asked):
            raise DemoError(f"port {asked} on {host} is already in use; choose another with {option} PORT, "
                            f"or leave {option} out to take a free one")
        return asked, None
    if port_free(host, default):
        return default, None
    port = free_port(host)
    return port, f"port {default} is taken (another broker or server?), using {port} instead"


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(f"the broker exited with code {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise DemoError(f"nothing answered on {host}:{port} within {timeout:.0f} s")


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _secret(path: Path, size: int) -> str:
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    value = secrets.token_urlsafe(size)
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return value


def _mosquitto() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)


def start_broker(kind: str, host: str, port: int, data_dir: Path, logs: Path) -> tuple[Child, str]:
    binary = _mosquitto() if kind in ("auto", "mosquitto") else None
    if kind == "mosquitto" and binary is None:
        raise DemoError("--broker mosquitto asked for, but no mosquitto binary is installed")
    if binary:
        store = data_dir / "broker"
        store.mkdir(parents=True, exist_ok=True)
        conf = store / "mosquitto.conf"
        # Started as root, Mosquitto drops to its own user and could not write the data dir: keep the caller's.
        user = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(
            f"listener {port} {host}\nallow_anonymous true\npersistence true\npersistence_location {store}/\n"
            f"max_queued_messages 100000\nmax_inflight_messages 1000\nlog_dest stdout\n{user}",
            encoding="utf-8",
        )
        command, label = [binary, "-c", str(conf)], "mosquitto"
    else:
        command = [sys.executable, "-m", "linli.embedded_broker", "--host", host, "--port", str(port)]
        label = "amqtt (embedded)"
    log = logs / "broker.log"
    process = subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    wait_for_port(host, port, 20, process)
    return Child("broker", process, log), label


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="linli demo", description="Run all of Linli embedded on this machine.")
    parser.add_argument("--port", type=int, default=None, help=f"HTTP port (default {DEFAULT_API_PORT}, or a free one)")
    parser.add_argument("--mqtt-port", type=int, default=None, help=f"MQTT port (default {DEFAULT_MQTT_PORT}, or a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 to let phones on the LAN in)")
    parser.add_argument("--data-dir", type=Path, default=Path("linli-data"), help="SQLite files, logs and secrets")
    parser.add_argument("--site", action="append", default=[], help="a site file (repeatable; default: Wanmei)")
    parser.add_argument("--no-sim", action="store_true", help="no simulator: bring your own devices")
    parser.add_argument("--broker", choices=["auto", "mosquitto", "amqtt"], default="auto")
    parser.add_argument("--sim-interval", type=float, default=10.0, help="simulated devices' telemetry period, seconds")
    parser.add_argument("--scenario", default="demo", metavar="NAME|FILE",
                        help="simulator scenario (default demo: an evening with a few faults in its first minute; "
                             "'none' for healthy devices only)")
    parser.add_argument("--inject", action="append", default=[], metavar="SPEC",
                        help="a fault for the simulator, e.g. lamp_failure:SL-07 or offline_hard:EL-2A@+30s (repeatable)")
    args = parser.parse_args(argv)
    children: list[Child] = []
    # Stopped by Ctrl-C or SIGTERM at any moment, the children are stopped too (they run in sessions
    # of their own): also when started in the background, where SIGINT comes in ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return _run(args, children)
    except DemoError as exc:
        print(f"linli demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(children)


def _run(args: argparse.Namespace, children: list[Child]) -> int:
    data_dir: Path = args.data_dir.resolve()
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    api_port, api_note = choose_port(args.host, args.port, DEFAULT_API_PORT, "--port")
    mqtt_port, mqtt_note = choose_port("127.0.0.1", args.mqtt_port, DEFAULT_MQTT_PORT, "--mqtt-port")
    metrics_port, _ = choose_port("127.0.0.1", None, DEFAULT_METRICS_PORT, "")
    for note in (api_note, mqtt_note):
        if note:
            print(f"linli demo: {note}")
    sites = [str(Path(s).resolve()) for s in args.site]
    from linli.site import SiteConfigError, SiteRegistry, builtin_site_path

    try:
        SiteRegistry.load(sites or [builtin_site_path()])
    except SiteConfigError as exc:
        raise DemoError(str(exc)) from exc
    admin_password = _secret(data_dir / "admin-password", 9)
    env = {
        **os.environ,
        "LINLI_DATA_DIR": str(data_dir),
        "LINLI_SITES": ",".join(sites),
        "LINLI_MQTT_URL": f"mqtt://127.0.0.1:{mqtt_port}",
        "LINLI_API_HOST": args.host,
        "LINLI_API_PORT": str(api_port),
        "LINLI_SECRET_KEY": _secret(data_dir / "secret-key", 32),
        "LINLI_ADMIN_PASSWORD": admin_password,
        "LINLI_ENV": "development",
        "LINLI_GATEWAY_METRICS_PORT": str(metrics_port),
        "LINLI_GATEWAY_METRICS_HOST": "127.0.0.1",
        # The simulator's scenario runs on its own clock (an evening); the gateway follows it.
        "LINLI_FOLLOW_SIM_CLOCK": "true" if not args.no_sim and args.scenario != "none" else "false",
    }
    for key in ("LINLI_DATABASE_URL", "LINLI_TSDB_URL"):
        env.pop(key, None)  # the demo is SQLite only

    print("linli demo: starting the broker ...", flush=True)
    broker, broker_label = start_broker(args.broker, "127.0.0.1", mqtt_port, data_dir, logs)
    children.append(broker)

    def spawn(name: str, *extra: str) -> Child:
        log = logs / f"{name}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "linli.cli", name, *extra], env=env, stdout=log.open("ab"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        child = Child(name, process, log)
        children.append(child)
        return child

    print("linli demo: starting the gateway and the API ...", flush=True)
    spawn("gateway")
    api = spawn("api")
    local = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host  # noqa: S104 - the person chose it
    base = f"http://{local}:{api_port}"
    _wait_healthy(base, api, children)
    if not args.no_sim:
        print("linli demo: starting the simulator ...", flush=True)
        injections = [arg for spec in args.inject for arg in ("--inject", spec)]
        scenario = [] if args.scenario == "none" else ["--scenario", args.scenario, "--speed", "1"]
        spawn("sim", "--interval", str(args.sim_interval), *scenario, *injections)
    print(
        f"\nLinli 邻里 demo is running. Press Ctrl-C to stop.\n"
        f"  居民页面 Resident page  {base}/\n"
        f"  值班室 Crew dashboard   {base}/crew\n"
        f"  维修 Technician page    {base}/tech\n"
        f"  管理 Manager page       {base}/manager\n"
        f"  API docs               {base}/docs\n"
        f"  Health                 {base}/healthz\n"
        f"  MQTT broker            mqtt://127.0.0.1:{mqtt_port}  ({broker_label})\n"
        f"  Gateway metrics        http://127.0.0.1:{metrics_port}/metrics\n"
        f"  Admin login            admin / {admin_password}\n"
        f"  Data and logs          {data_dir}\n"
        + ("  Simulator              off (--no-sim): publish under estate/v1/{site}/...\n" if args.no_sim else ""),
        flush=True,
    )
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    while not stop["now"]:
        for child in children:
            if child.process.poll() is not None:
                raise DemoError(f"the {child.name} exited with code {child.process.returncode}; "
                                f"last lines of {child.log}:\n{child.tail()}")
        time.sleep(0.5)
    return 0


def _wait_healthy(base: str, api: Child, children: list[Child], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            if child.process.poll() is not None:
                raise DemoError(f"the {child.name} exited with code {child.process.returncode}; "
                                f"last lines of {child.log}:\n{child.tail()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise DemoError(f"the API did not answer on {base}/healthz within {timeout:.0f} s; see {api.log}")


def _stop(children: list[Child]) -> None:
    # Simulator first (its devices say goodbye), broker last.
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
            try:
                child.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.process.kill()
