"""Device contract v1: every bad message becomes a rejection with its reason; good ones keep unknowns unknown."""

from __future__ import annotations

import json

import pytest

from linli.contract import (
    MAX_PAYLOAD_BYTES,
    Channel,
    ChargerTelemetry,
    ElevatorTelemetry,
    Message,
    Rejection,
    RejectReason,
    StreetlightTelemetry,
    parse,
    topic_for,
)

NOW = 1_795_680_000_000
KINDS = {("wanmei", "SL-07"): "streetlight", ("wanmei", "EL-2B"): "elevator", ("wanmei", "CP-03"): "charger",
         ("site-b", "SL-07"): "streetlight"}


def run(topic: str, payload: bytes | dict[str, object]) -> Message | Rejection:
    raw = json.dumps(payload).encode() if isinstance(payload, dict) else payload
    return parse(topic, raw, received_ms=NOW, device_kind=lambda s, d: KINDS.get((s, d)),
                 known_site=lambda s: s in {"wanmei", "site-b"})


LIGHT = "estate/v1/wanmei/streetlight/SL-07/telemetry"
GOOD_LIGHT = {"ts": NOW, "seq": 812, "relay": True, "dim_pct": 100, "power_w": 58.9, "voltage_v": 229.4,
              "current_a": 0.27, "pf": 0.95, "energy_kwh": 1234.56, "leakage_ma": 0.4, "lux": 2.1,
              "driver_temp_c": 41.5, "burn_hours": 10234, "switch_count": 3120}


def test_the_contracts_own_examples_parse() -> None:
    light = run(LIGHT, GOOD_LIGHT)
    assert isinstance(light, Message) and isinstance(light.body, StreetlightTelemetry)
    assert light.body.power_w == 58.9 and light.seq == 812 and light.ts_ms == NOW
    lift = run("estate/v1/wanmei/elevator/EL-2B/telemetry", {
        "ts": NOW, "seq": 77, "floor": 5, "moving": False, "direction": "none", "speed_mps": 0.0, "door": "closed",
        "door_zone": True, "occupied": False, "mode": "normal", "mains": True, "safety_circuit": True,
        "alarm": False, "trips": 40211})
    assert isinstance(lift, Message) and isinstance(lift.body, ElevatorTelemetry) and lift.body.floor == 5
    pile = run("estate/v1/wanmei/charger/CP-03/telemetry", {
        "ts": NOW, "seq": 5, "status": "Charging", "error_code": "NoError", "power_kw": 6.8, "voltage_v": 228.0,
        "current_a": 29.8, "energy_kwh": 8812.3, "temp_c": 38.0, "session_id": "S-20261126-0042"})
    assert isinstance(pile, Message) and isinstance(pile.body, ChargerTelemetry) and pile.body.connector_id == 1
    ack = run("estate/v1/wanmei/streetlight/SL-07/cmd/ack", {"id": "6f1c", "ts": NOW, "ok": True, "error": None})
    assert isinstance(ack, Message) and ack.channel is Channel.CMD_ACK


def test_absent_optional_fields_stay_unknown_and_ts_defaults_to_arrival() -> None:
    message = run(LIGHT, {"relay": True, "power_w": 0, "voltage_v": 230})
    assert isinstance(message, Message)
    body = message.body
    assert isinstance(body, StreetlightTelemetry)
    assert body.leakage_ma is None and body.pf is None and body.dim_pct is None
    assert message.ts_ms == NOW and not message.device_stamped and message.seq is None


def test_numeric_and_boolean_extras_are_kept_others_ignored() -> None:
    message = run(LIGHT, {**GOOD_LIGHT, "humidity_pct": 71, "tilt_alarm": False, "note": "hello", "nested": {"a": 1}})
    assert isinstance(message, Message)
    assert message.body.extras() == {"humidity_pct": 71, "tilt_alarm": False}


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    ("estate/v2/wanmei/streetlight/SL-07/telemetry", GOOD_LIGHT, RejectReason.TOPIC),
    ("estate/v1/wanmei/streetlight/SL-07/debug", GOOD_LIGHT, RejectReason.TOPIC),
    ("estate/v1/Wanmei/streetlight/SL-07/telemetry", GOOD_LIGHT, RejectReason.TOPIC),
    ("estate/v1/wanmei/lamp/SL-07/telemetry", GOOD_LIGHT, RejectReason.TOPIC),
    ("estate/v1/nowhere/streetlight/SL-07/telemetry", GOOD_LIGHT, RejectReason.UNKNOWN_SITE),
    ("estate/v1/wanmei/streetlight/SL-99/telemetry", GOOD_LIGHT, RejectReason.UNKNOWN_DEVICE),
    ("estate/v1/wanmei/elevator/SL-07/telemetry", GOOD_LIGHT, RejectReason.KIND_MISMATCH),
    (LIGHT, b"\xff\xfe", RejectReason.NOT_UTF8),
    (LIGHT, b"relay=1", RejectReason.NOT_JSON),
    (LIGHT, b"[1, 2]", RejectReason.NOT_OBJECT),
    (LIGHT, b'{"relay": true, "power_w": NaN, "voltage_v": 230}', RejectReason.SCHEMA),
    (LIGHT, {"relay": "true", "power_w": 1, "voltage_v": 230}, RejectReason.SCHEMA),
    (LIGHT, {"relay": 1, "power_w": 1, "voltage_v": 230}, RejectReason.SCHEMA),
    (LIGHT, {"relay": True, "voltage_v": 230}, RejectReason.SCHEMA),
    (LIGHT, {"relay": True, "power_w": -1, "voltage_v": 230}, RejectReason.SCHEMA),
    (LIGHT, {**GOOD_LIGHT, "seq": -1}, RejectReason.SCHEMA),
    (LIGHT, {**GOOD_LIGHT, "seq": 1.5}, RejectReason.SCHEMA),
    (LIGHT, {**GOOD_LIGHT, "ts": NOW + 301_000}, RejectReason.FUTURE_TS),
    ("estate/v1/wanmei/elevator/EL-2B/telemetry", {"floor": 3, "moving": False, "door": "ajar", "door_zone": True,
                                                   "mode": "normal"}, RejectReason.SCHEMA),
    ("estate/v1/wanmei/charger/CP-03/telemetry", {"status": "Charging", "error_code": "Oops"}, RejectReason.SCHEMA),
    ("estate/v1/wanmei/charger/CP-03/telemetry", {"status": "Charging", "error_code": "NoError", "connector_id": 0},
     RejectReason.SCHEMA),
    ("estate/v1/wanmei/streetlight/SL-07/status", {"online": "yes"}, RejectReason.SCHEMA),
    ("estate/v1/wanmei/streetlight/SL-07/status", {"online": True, "interval_s": 0}, RejectReason.SCHEMA),
])
def test_bad_input_is_rejected_with_its_reason(topic: str, payload: bytes | dict[str, object], reason: RejectReason) -> None:
    result = run(topic, payload)
    assert isinstance(result, Rejection), result
    assert result.reason is reason, result.detail
    assert result.detail


def test_oversized_payload_is_rejected_before_parsing_and_excerpt_is_bounded() -> None:
    big = json.dumps({**GOOD_LIGHT, "pad": "x" * MAX_PAYLOAD_BYTES}).encode()
    result = run(LIGHT, big)
    assert isinstance(result, Rejection) and result.reason is RejectReason.TOO_LARGE
    assert len(result.payload) <= 2048


def test_exactly_16_kib_is_accepted() -> None:
    base = json.dumps({**GOOD_LIGHT, "pad": ""}).encode()
    payload = json.dumps({**GOOD_LIGHT, "pad": "x" * (MAX_PAYLOAD_BYTES - len(base))}).encode()
    assert len(payload) == MAX_PAYLOAD_BYTES
    assert isinstance(run(LIGHT, payload), Message)


def test_old_ts_from_a_replayed_buffer_is_accepted() -> None:
    message = run(LIGHT, {**GOOD_LIGHT, "ts": NOW - 3 * 86_400_000})
    assert isinstance(message, Message) and message.ts_ms == NOW - 3 * 86_400_000


def test_same_device_id_in_two_sites_is_told_apart() -> None:
    a = run(LIGHT, GOOD_LIGHT)
    b = run("estate/v1/site-b/streetlight/SL-07/telemetry", GOOD_LIGHT)
    assert isinstance(a, Message) and isinstance(b, Message)
    assert (a.site, b.site) == ("wanmei", "site-b")


def test_simulator_side_serialisation_round_trips() -> None:
    body = StreetlightTelemetry(relay=True, power_w=40.0, voltage_v=229.0, seq=3, ts=NOW)
    assert b"leakage_ma" not in body.to_json()  # absent stays absent on the wire
    parsed = run(topic_for("wanmei", "streetlight", "SL-07", Channel.TELEMETRY), body.to_json())
    assert isinstance(parsed, Message) and parsed.body == body
