"""The ingest rules without a broker: seq gaps, out-of-order, replays, throttling, store refusals,
the bounded buffer and the engine's state across a restart."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.broker import Inbound
from gateway.buffer import DiskBuffer, PointSink
from gateway.pipeline import Pipeline
from linli.clock import to_ms
from linli.contract import Message, parse
from linli.engine import Engine
from linli.site import SiteRegistry, builtin_site_path
from linli.storage import Database, DeadLetter, DeviceEngineState, DeviceState, migrate
from linli.tsdb import Point, StoreRejected, StoreUnavailable

NOW = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)
SITES = SiteRegistry.load([builtin_site_path()])
LIGHT = "estate/v1/wanmei/streetlight/SL-07/telemetry"


class FakeStore:
    url_redacted = "fake://"

    def __init__(self) -> None:
        self.points: list[Point] = []
        self.down = False

    def write(self, points: Sequence[Point]) -> None:
        if self.down:
            raise StoreUnavailable("down")
        if any(p.fields.get("power_w") == 12345.0 for p in points):
            raise StoreRejected("HTTP 400: field type conflict")
        self.points.extend(points)

    def query(self, **_: object) -> list[object]:
        return []

    def ping(self) -> bool:
        return not self.down

    def close(self) -> None:
        pass


@pytest.fixture
def database(tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'linli.db'}"
    migrate(url)
    return Database(url)


def light(seq: int, *, at: datetime = NOW, ts: datetime | None = None, power: float = 40.0, qos: int = 1) -> Inbound:
    body = {"seq": seq, "relay": True, "power_w": power, "voltage_v": 229.0, "ts": to_ms(ts or at)}
    return Inbound(LIGHT, json.dumps(body).encode(), qos, False, to_ms(at))


def test_gaps_out_of_order_duplicates_and_replays_are_counted(database: Database) -> None:
    engine = Engine(SITES, NOW)
    pipeline = Pipeline(sites=SITES, engine=engine, database=database, store=FakeStore())
    pipeline.process([light(s) for s in (1, 2, 5, 3, 3, 6)], NOW)
    assert (engine.seq_gaps, engine.out_of_order, pipeline.counters.duplicates) == (1, 1, 1)  # 4 is missing
    pipeline.process([light(7, ts=NOW - timedelta(hours=2))], NOW)
    assert pipeline.counters.replayed == 1 and pipeline.counters.processed == 6


def test_a_device_over_20_per_second_is_throttled_but_qos1_and_replays_are_never_dropped(database: Database) -> None:
    store = FakeStore()
    pipeline = Pipeline(sites=SITES, engine=Engine(SITES, NOW), database=database, store=store)
    pipeline.process([light(s, qos=0) for s in range(50)], NOW)  # one second, QoS 0
    assert pipeline.counters.throttled == 27  # 20 live, then 1 in 10 of the 30 excess kept
    assert pipeline.throttled_devices(to_ms(NOW)) == 1
    pipeline.process([light(s, qos=1) for s in range(50, 100)], NOW)
    old = NOW - timedelta(hours=1)
    pipeline.process([light(s, qos=0, ts=old + timedelta(seconds=s)) for s in range(100, 150)], NOW)
    assert pipeline.counters.throttled == 27 and len(store.points) == 23 + 50 + 50
    assert pipeline._engine.seq_gaps == 0  # a sampled-away seq is not a lost one


def test_a_point_the_store_refuses_is_dead_lettered_and_the_rest_written(database: Database) -> None:
    store = FakeStore()
    pipeline = Pipeline(sites=SITES, engine=Engine(SITES, NOW), database=database, store=store)
    pipeline.process([light(1), light(2, power=12345.0), light(3)], NOW)
    assert [p.fields["seq"] for p in store.points] == [1.0, 3.0]
    with database.session() as session:
        letters = session.scalars(select(DeadLetter)).all()
    assert [(d.reason, d.device_id) for d in letters] == [("store_rejected", "SL-07")]
    assert pipeline.counters.dead_letters == {"store_rejected": 1}


def test_the_buffer_drops_the_oldest_telemetry_first_and_keeps_events(tmp_path: Path) -> None:
    buffer = DiskBuffer(tmp_path / "buffer.db", max_bytes=20_000)
    event = Point("event", {"site": "wanmei", "device": "EL-1A", "kind": "elevator"}, {"code": "door_forced"}, 1)
    for n in range(2000):
        buffer.append([Point("streetlight", {"site": "wanmei", "device": "SL-01"}, {"seq": float(n)}, n)])
        if n % 100 == 0:
            buffer.append([event])
    assert buffer.bytes <= buffer.max_bytes and buffer.dropped > 0
    chunks = []
    while (chunk := buffer.oldest()) is not None:
        chunks.append(chunk.points)
        buffer.remove(chunk.id)
    flat = [p for points in chunks for p in points]
    assert sum(p.measurement == "event" for p in flat) == 20
    seqs = [int(p.fields["seq"]) for p in flat if p.measurement == "streetlight"]
    assert seqs == list(range(2000 - len(seqs), 2000)) and len(seqs) + buffer.dropped == 2000
    reopened = DiskBuffer(tmp_path / "buffer.db", max_bytes=20_000)
    assert len(reopened) == 0 and reopened.bytes == 0


def test_points_buffered_while_the_store_is_down_are_flushed_in_order(tmp_path: Path) -> None:
    store = FakeStore()
    sink = PointSink(store, DiskBuffer(tmp_path / "b.db", 10_000_000))
    store.down = True
    for n in range(5):
        sink.write([Point("streetlight", {"site": "s", "device": "d"}, {"seq": float(n)}, n)])
    assert sink.stats.buffered == 5 and store.points == []
    store.down = False
    sink.start()
    try:
        sink.write([Point("streetlight", {"site": "s", "device": "d"}, {"seq": 5.0}, 5)])  # queues behind
        for _ in range(100):
            if sink.drained():
                break
            time.sleep(0.05)
    finally:
        sink.stop()
    assert [p.fields["seq"] for p in store.points] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_engine_state_survives_a_restart(database: Database) -> None:
    engine = Engine(SITES, NOW)
    pipeline = Pipeline(sites=SITES, engine=engine, database=database, store=FakeStore())
    pipeline.process([light(1), light(2, power=0.0, at=NOW + timedelta(seconds=30)),
                      light(3, power=0.0, at=NOW + timedelta(seconds=100))], NOW + timedelta(seconds=100))
    live = engine.live("wanmei", "SL-07")
    assert live is not None and live.active == {"lamp_failure"}
    with database.session() as session:
        row = session.get(DeviceState, ("wanmei", "SL-07"))
        snapshot = session.get(DeviceEngineState, ("wanmei", "SL-07"))
        assert row is not None and snapshot is not None
        again = Engine(SITES, NOW + timedelta(minutes=5))
        restored = again.live("wanmei", "SL-07")
        assert restored is not None
        restored.restore(online=row.online, last_seen=row.last_seen, status=row.status, last=row.last,
                         last_seq=row.last_seq, boot=row.boot, snapshot=snapshot.state)
    assert restored.active == {"lamp_failure"} and restored.seqs == live.seqs
    assert restored.detectors is not None and live.detectors is not None
    assert restored.detectors.snapshot() == live.detectors.snapshot()
    assert again.is_duplicate(pipeline_message(3)) and not again.is_duplicate(pipeline_message(4))
    assert again.observe(pipeline_message(4, power=0.0), NOW + timedelta(minutes=5)) == []  # no second raise


def _kind(site: str, device_id: str) -> str | None:
    device = SITES.device(site, device_id)
    return device.kind if device else None


def pipeline_message(seq: int, power: float = 40.0) -> Message:
    item = light(seq, power=power)
    message = parse(item.topic, item.payload, received_ms=item.received_ms, device_kind=_kind,
                    known_site=SITES.__contains__)
    assert isinstance(message, Message)
    return message
