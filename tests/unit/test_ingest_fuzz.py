"""Arbitrary bytes on arbitrary topics: the ingest path never raises; every message is processed or dead-lettered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from gateway.broker import Inbound
from gateway.pipeline import Pipeline
from linli.clock import to_ms
from linli.engine import Engine
from linli.site import SiteRegistry, builtin_site_path
from linli.storage import Database, DeadLetter, migrate
from linli.tsdb import open_store

NOW = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)
SITES = SiteRegistry.load([builtin_site_path()])


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    folder = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{folder / 'linli.db'}"
    migrate(url)
    store = open_store(f"sqlite:///{Path(folder) / 'ts.db'}")
    yield Pipeline(sites=SITES, engine=Engine(SITES, NOW), database=Database(url), store=store)
    store.close()


topics = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda site, kind, device, channel: f"estate/v1/{site}/{kind}/{device}/{channel}",
        st.sampled_from(["wanmei", "nowhere", "WANMEI", ""]),
        st.sampled_from(["streetlight", "elevator", "charger", "concentrator", "lamp"]),
        st.sampled_from(["SL-07", "EL-1A", "CP-01", "SL-99", "x" * 40]),
        st.sampled_from(["status", "telemetry", "event", "cmd", "cmd/ack", "other"]),
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
near_valid = st.fixed_dictionaries(
    {"relay": st.booleans(), "power_w": st.floats(allow_nan=False), "voltage_v": st.floats(allow_nan=False)},
    optional={"seq": st.integers(), "ts": st.integers(), "dim_pct": json_values, "floor": json_values,
              "status": st.text(max_size=12), "online": json_values},
).map(lambda d: json.dumps(d).encode())
payloads = st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()), near_valid)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(st.tuples(topics, payloads), min_size=1, max_size=8))
def test_no_input_escapes_the_pipeline(pipeline: Pipeline, batch: list[tuple[str, bytes]]) -> None:
    before = (pipeline.counters.received, pipeline.counters.processed, pipeline.counters.duplicates,
              sum(pipeline.counters.dead_letters.values()))
    with pipeline._db.session() as session:
        stored_before = session.scalar(select(func.count()).select_from(DeadLetter))
    pipeline.process([Inbound(t, p, 1, False, to_ms(NOW)) for t, p in batch], NOW)
    received = pipeline.counters.received - before[0]
    handled = pipeline.counters.processed - before[1] + pipeline.counters.duplicates - before[2]
    rejected = sum(pipeline.counters.dead_letters.values()) - before[3]
    assert received == len(batch)
    assert handled + rejected == len(batch)  # nothing vanishes
    with pipeline._db.session() as session:
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == stored_before + rejected
