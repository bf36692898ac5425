"""A scenario run writes its ground truth: one line per injected fault (a circuit outage once, not per light)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml

from firmware_sim.cli import main
from linli.contract import topic_for
from linli.site import builtin_site_path, load_site


def private_site(tmp_path: Path) -> Path:
    """The Wanmei layout under a site id no other test subscribes to (the broker is shared)."""
    document = yaml.safe_load(builtin_site_path().read_text(encoding="utf-8"))
    document["site"]["id"] = f"truth-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def clear_retained(mosquitto: Any, site_file: Path) -> None:
    site = load_site(site_file)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"cleaner-{uuid.uuid4().hex[:6]}")
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    for device in site.devices.values():
        client.publish(topic_for(site.id, device.kind, device.id, "status"), b"", qos=1, retain=True).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def test_storm_scenario_at_full_speed_writes_one_truth_line_per_fault(mosquitto: Any, tmp_path: Path) -> None:
    truth = tmp_path / "storm.jsonl"
    site_file = private_site(tmp_path)
    try:
        code = main(["--broker", mosquitto.url, "--site", str(site_file), "--scenario", "storm", "--speed", "max",
                     "--sim-duration", "1800", "--truth", str(truth), "--seed", "3", "-q"])
    finally:
        clear_retained(mosquitto, site_file)
    assert code == 0
    lines = [json.loads(line) for line in truth.read_text(encoding="utf-8").splitlines()]
    assert lines[0]["type"] == "run" and lines[0]["scenario"] == "storm" and lines[-1]["type"] == "end"
    injected = [(x["target"]["type"], x["target"]["id"], x["fault"]) for x in lines if x["type"] == "injected"]
    assert sorted(injected) == sorted([
        ("device", "SL-38", "leakage"), ("circuit", "C3", "circuit_outage"),
        ("building", "B3", "building_power_loss"), ("device", "EL-3A", "trapped"),
    ])
    by_seq = {x["seq"]: x for x in lines if x["type"] == "injected"}
    cleared = [by_seq[x["ref"]]["fault"] for x in lines if x["type"] == "cleared"]
    assert sorted(cleared) == ["building_power_loss", "circuit_outage", "trapped"]  # leakage outlasts the run
    outage = next(x for x in by_seq.values() if x["fault"] == "circuit_outage")
    assert len(outage["devices"]) == 9 and outage["subject"] == {"type": "circuit", "id": "C3"}


def test_unknown_scenario_is_a_one_line_error(capsys: Any) -> None:
    assert main(["--scenario", "hurricane", "--speed", "max"]) == 2
    err = capsys.readouterr().err
    assert "hurricane" in err and "Traceback" not in err
