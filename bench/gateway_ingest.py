"""Gateway ingest throughput against its ceilings, and the memory of 100,000 devices' live state.

One command (starts its own Mosquitto and InfluxDB 1.x on free ports, stops them; ~3 minutes)::

    .venv/bin/python bench/gateway_ingest.py                    # 200,000 msgs, 10,000 devices
    .venv/bin/python bench/gateway_ingest.py --messages 50000 --devices 2000 --live-devices 20000

The same stream of contract telemetry (QoS 1, streetlights, distinct seq/ts) is queued in Mosquitto
for each consumer's persistent session (subscribed once with clean_session False, then offline),
published by 4 paho publishers; then each consumer drains its queue, one after the other:

1. ceiling: ``mosquitto_sub -c -i ID -q 1 -t 'estate/#' -C N`` (C);
2. a bare paho-mqtt loop that only counts (auto-ack);
3. the gateway end to end, as its own process (``python -m linli.cli gateway``): received, validated,
   state updated, detectors run, points written to a real InfluxDB 1.x, acknowledged after commit.
   Its CPU (one core = 100 %) and peak RSS are sampled with psutil, and the CPU of its receiving
   process (gateway/broker.py), of mosquitto and of influxd over the same drain.

Then an Engine over a synthetic 100,000-device site set, each device with one telemetry observed:
RSS growth (a pass without tracemalloc) and the traced Python heap (a second pass). ``--profile`` adds
a cProfile of the pipeline in-process.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import paho.mqtt.client as mqtt  # noqa: E402
import psutil  # noqa: E402
import servers  # noqa: E402  (tests/servers.py: how the test suite starts real servers)
import yaml  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from bench.processes import metric  # noqa: E402

SITE = "bench"


def site_file(folder: Path, site_id: str, devices: int) -> Path:
    document = yaml.safe_load((ROOT / "linli" / "sites" / "wanmei.yaml").read_text(encoding="utf-8"))
    document["site"]["id"] = site_id
    template = next(d for d in document["devices"] if d["id"] == "SL-01")
    document["devices"] = [
        {**template, "id": f"L{n:06d}", "name": f"L{n}", "interval_s": 3600} for n in range(devices)
    ]
    document.pop("concentrators", None)
    path = folder / f"{site_id}.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def stream(messages: int, devices: int, start_ms: int) -> list[tuple[str, bytes]]:
    out = []
    for n in range(messages):
        device, seq = n % devices, n // devices
        # a healthy 40 W light at night (the template SL-01's rating): no detector has anything to say
        body = {"ts": start_ms + seq * 1000 + device % 1000, "seq": seq, "relay": True, "dim_pct": 100,
                "power_w": 39.6, "voltage_v": 229.4, "current_a": 0.18, "pf": 0.95, "energy_kwh": 1234.56 + seq,
                "lux": 2.1, "driver_temp_c": 41.5}
        out.append((f"estate/v1/{SITE}/streetlight/L{device:06d}/telemetry", json.dumps(body).encode()))
    return out


def last_night_ms() -> int:
    """22:00 in the site's time zone (Asia/Shanghai, UTC+8) of the latest night at least an hour ago:
    the stream's lights are on, as they should be then."""
    now_ms = int(time.time() * 1000)
    day_ms, offset_ms = 86_400_000, 14 * 3_600_000  # 22:00 UTC+8 is 14:00 UTC
    start = (now_ms - 3_600_000 - offset_ms) // day_ms * day_ms + offset_ms
    return start


def subscribe_session(host: str, port: int, client_id: str) -> None:
    """Create the persistent session (QoS 1 subscription) the stream is queued for, then leave."""
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.on_subscribe = lambda *_: done.set()
    client.connect(host, port)
    client.loop_start()
    client.subscribe(f"estate/v1/{SITE}/#", qos=1)
    assert done.wait(10)
    client.disconnect()
    client.loop_stop()


def publish(host: str, port: int, payloads: list[tuple[str, bytes]], publishers: int = 4) -> float:
    def run(part: list[tuple[str, bytes]], index: int) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{index}")
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.connect(host, port)
        client.loop_start()
        info = None
        for topic, payload in part:
            info = client.publish(topic, payload, qos=1)
        if info is not None:
            info.wait_for_publish(300)
        client.disconnect()
        client.loop_stop()

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(payloads[i::publishers], i)) for i in range(publishers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(payloads) / (time.perf_counter() - started)


def drain_mosquitto_sub(host: str, port: int, client_id: str, n: int) -> float:
    started = time.perf_counter()
    subprocess.run(["mosquitto_sub", "-h", host, "-p", str(port), "-c", "-i", client_id, "-q", "1",
                    "-t", "estate/#", "-C", str(n)], check=True, stdout=subprocess.DEVNULL, timeout=600)
    return n / (time.perf_counter() - started)


def drain_paho(host: str, port: int, client_id: str, n: int) -> float:
    count = 0
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)

    def on_message(c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal count
        count += 1
        if count >= n:
            c.disconnect()

    client.on_message = on_message
    started = time.perf_counter()
    client.connect(host, port)
    client.loop_forever()
    return n / (time.perf_counter() - started)


def _cpu_s(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def drain_gateway(env: dict[str, str], port: int, n: int, log: Path, others: dict[str, int]) -> dict[str, float]:
    """`others`: name -> pid of servers whose CPU over the drain is reported too (mosquitto, influxd)."""
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "linli.cli", "gateway"], env=env, stdout=out, stderr=out)
    ps = psutil.Process(proc.pid)
    servers_ps = {name: psutil.Process(pid) for name, pid in others.items()}
    receivers: list[psutil.Process] = []  # the gateway's receiving processes (gateway/broker.py)
    extra0: dict[str, float] = {}
    peak_rss, cpu0 = 0, None
    started = time.perf_counter()
    progress, progress_at = -1.0, time.monotonic()
    try:
        while (acked := metric(port, "linli_gateway_messages_acked_total")) < n:
            if proc.poll() is not None:
                raise RuntimeError(f"the gateway exited; see {log}")
            if acked != progress:
                progress, progress_at = acked, time.monotonic()
            elif time.monotonic() - progress_at > 60:
                raise RuntimeError(f"the gateway acknowledged nothing for 60 s ({acked:.0f} of {n}); see {log}")
            if cpu0 is None and metric(port, "linli_gateway_broker_connected") == 1:
                cpu0, started = ps.cpu_times(), time.perf_counter()
                receivers = ps.children()
                extra0 = {name: _cpu_s(p) for name, p in servers_ps.items()}
                extra0["receiver"] = sum(_cpu_s(p) for p in receivers)
            peak_rss = max(peak_rss, ps.memory_info().rss)
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        cpu1 = ps.cpu_times()
        extra1 = {name: _cpu_s(p) for name, p in servers_ps.items()}
        extra1["receiver"] = sum(_cpu_s(p) for p in receivers)
        assert cpu0 is not None
        buffered = metric(port, "linli_gateway_points_buffered_total")
        written = metric(port, "linli_gateway_points_written_total")
    finally:
        proc.terminate()
        proc.wait(30)
    cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / elapsed
    return {"rate": n / elapsed, "cpu_pct": 100 * cpu, "peak_rss_mb": peak_rss / 2**20, "points_written": written,
            "points_buffered": buffered, "seconds": elapsed,
            **{f"cpu_pct_{name}": 100 * (extra1[name] - extra0.get(name, 0.0)) / elapsed for name in extra1}}


def live_state_memory(devices: int, folder: Path) -> dict[str, float]:
    from linli.clock import to_ms
    from linli.contract import Message, parse
    from linli.engine import Engine
    from linli.site import SiteRegistry

    per_site = 10_000
    files = [site_file(folder, f"mem-{i:02d}", min(per_site, devices - i * per_site))
             for i in range((devices + per_site - 1) // per_site)]
    registry = SiteRegistry.load(files)
    now = datetime.now(UTC)

    def fill() -> Engine:
        engine = Engine(registry, now)
        for site in registry:
            for device in site.devices.values():
                body = {"ts": to_ms(now), "seq": 1, "relay": True, "dim_pct": 100, "power_w": 58.9, "voltage_v": 229.4,
                        "current_a": 0.27, "pf": 0.95, "energy_kwh": 1234.56, "lux": 2.1, "driver_temp_c": 41.5}
                message = parse(f"estate/v1/{site.id}/streetlight/{device.id}/telemetry", json.dumps(body).encode(),
                                received_ms=to_ms(now), device_kind=lambda s, d: "streetlight", known_site=lambda s: True)
                assert isinstance(message, Message)
                engine.observe(message, now)
        return engine

    # Two passes: tracemalloc's own bookkeeping (~100 bytes per live allocation) would inflate the RSS
    # figure, so RSS is measured on a pass without it, the Python heap on a second pass.
    gc.collect()
    rss0 = psutil.Process().memory_info().rss
    engine = fill()
    gc.collect()
    rss1 = psutil.Process().memory_info().rss
    count = sum(1 for _ in engine.devices())
    del engine
    gc.collect()
    tracemalloc.start()
    engine = fill()
    current, peak = tracemalloc.get_traced_memory()  # while the engine is alive
    tracemalloc.stop()
    assert sum(1 for _ in engine.devices()) == count
    return {"devices": count, "tracemalloc_mb": current / 2**20, "tracemalloc_peak_mb": peak / 2**20,
            "rss_growth_mb": (rss1 - rss0) / 2**20}


def profile_pipeline(store_url: str, folder: Path, payloads: list[tuple[str, bytes]], sites: Path) -> str:
    from gateway.broker import Inbound
    from gateway.pipeline import Pipeline
    from linli.clock import to_ms
    from linli.engine import Engine
    from linli.site import SiteRegistry
    from linli.storage import Database, migrate
    from linli.tsdb import open_store

    url = f"sqlite:///{folder / 'profile.db'}"
    migrate(url)
    registry = SiteRegistry.load([sites])
    now = datetime.now(UTC)
    pipeline = Pipeline(sites=registry, engine=Engine(registry, now), database=Database(url), store=open_store(store_url))
    received = to_ms(now)
    items = [Inbound(t, p, 1, False, received) for t, p in payloads]
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for i in range(0, len(items), 1000):
        pipeline.process(items[i:i + 1000], now)
    profiler.disable()
    rate = len(items) / (time.perf_counter() - started)
    out = Path(folder / "profile.txt")
    with out.open("w") as f:
        stats = pstats.Stats(profiler, stream=f)
        stats.sort_stats("tottime").print_stats(25)
    return f"in-process pipeline (no MQTT), {rate:,.0f} msg/s under cProfile; top by own time:\n{out.read_text()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--live-devices", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"messages": args.messages, "devices": args.devices}
    with tempfile.TemporaryDirectory(prefix="linli-bench-") as tmp:
        folder = Path(tmp)
        port = servers.free_port()
        (folder / "mq").mkdir()
        conf = folder / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        f"max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 1000\n"
                        + ("user root\n" if os.geteuid() == 0 else ""))
        broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        influx = servers.start_influxdb1(folder / "influx")
        try:
            servers.wait_until(lambda: servers.mqtt_answers("127.0.0.1", port), what="mosquitto")
            sites = site_file(folder, SITE, args.devices)
            payloads = stream(args.messages, args.devices, last_night_ms())
            n = len(payloads)
            store_url = influx.store_url("bench")
            gw_port = servers.free_port()
            env = {**os.environ, "LINLI_DATA_DIR": str(folder / "gw"), "LINLI_MQTT_URL": f"mqtt://127.0.0.1:{port}",
                   "LINLI_TSDB_URL": store_url, "LINLI_SITES": str(sites), "LINLI_MQTT_CLIENT_ID": "bench-gw",
                   "LINLI_GATEWAY_METRICS_PORT": str(gw_port), "LINLI_GATEWAY_METRICS_HOST": "127.0.0.1",
                   "LINLI_DATABASE_URL": "", "LINLI_LOG_LEVEL": "WARNING"}
            # the gateway takes a site's messages on the session "{client id}-{site}" (gateway.standby)
            for name in ("bench-sub", "bench-paho", f"bench-gw-{SITE}"):
                subscribe_session("127.0.0.1", port, name)
            results["publish_rate"] = publish("127.0.0.1", port, payloads)
            results["mosquitto_sub"] = drain_mosquitto_sub("127.0.0.1", port, "bench-sub", n)
            results["paho_loop"] = drain_paho("127.0.0.1", port, "bench-paho", n)
            influxd = getattr(getattr(influx, "_backend", None), "_proc", None)  # a native influxd: its CPU too
            others = {"mosquitto": broker.pid, **({"influxd": influxd.pid} if influxd is not None else {})}
            results["gateway"] = drain_gateway(env, gw_port, n, folder / "gateway.log", others)
            if args.profile:
                results["profile"] = profile_pipeline(influx.store_url("profile"), folder, payloads[:50_000], sites)
        finally:
            influx.close()
            broker.terminate()
            broker.wait(10)
        results["live_state"] = live_state_memory(args.live_devices, folder)
    gw = results["gateway"]
    results["gateway_vs_ceiling"] = gw["rate"] / results["mosquitto_sub"]
    results["gateway_vs_paho"] = gw["rate"] / results["paho_loop"]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"stream: {n:,} QoS 1 messages from {args.devices:,} devices, published at {results['publish_rate']:,.0f} msg/s")
    print(f"{'consumer':<38}{'msg/s':>10}{'÷ ceiling':>11}{'÷ paho':>9}")
    print(f"{'mosquitto_sub -c -q 1 (C, ceiling)':<38}{results['mosquitto_sub']:>10,.0f}{1:>11.2f}"
          f"{results['mosquitto_sub'] / results['paho_loop']:>9.2f}")
    print(f"{'bare paho loop (count only)':<38}{results['paho_loop']:>10,.0f}"
          f"{results['paho_loop'] / results['mosquitto_sub']:>11.2f}{1:>9.2f}")
    print(f"{'gateway end to end (InfluxDB 1.x)':<38}{gw['rate']:>10,.0f}{results['gateway_vs_ceiling']:>11.2f}"
          f"{results['gateway_vs_paho']:>9.2f}")
    print(f"gateway: CPU {gw['cpu_pct']:.0f} % of a core, peak RSS {gw['peak_rss_mb']:.0f} MiB, "
          f"points written {gw['points_written']:,.0f}, buffered {gw['points_buffered']:,.0f}")
    print("CPU over the gateway's drain (% of one core; 2 cores = 200 %): " + ", ".join(
        f"{name.removeprefix('cpu_pct_')} {value:.0f} %" for name, value in gw.items() if name.startswith("cpu_pct_")))
    live = results["live_state"]
    print(f"live state of {live['devices']:,} devices: tracemalloc {live['tracemalloc_mb']:.0f} MiB "
          f"(peak {live['tracemalloc_peak_mb']:.0f}), RSS growth {live['rss_growth_mb']:.0f} MiB")
    if "profile" in results:
        print(results["profile"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
