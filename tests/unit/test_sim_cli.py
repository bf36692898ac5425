"""`linli sim` refuses bad input with one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from firmware_sim.cli import main


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--inject", "lamp_failure:SL-99"], "no device 'SL-99'"),
        (["--inject", "lamp_failure:EL-1A"], "EL-1A is an elevator"),
        (["--inject", "melt:SL-01"], "unknown fault 'melt'"),
        (["--inject", "offline:SL-01", "--device", "SL-02"], "not simulated"),
        (["--device", "XX-1"], "--device XX-1: no such device"),
        (["--broker", "http://127.0.0.1:1883"], "bad broker URL"),
        (["--broker", "mqtt://127.0.0.1:99999"], "bad broker URL"),
        (["--site", "/nonexistent/site.yaml"], "cannot read the site file"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_code_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--broker", f"mqtt://127.0.0.1:{closed_port()}", "-q", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("linli sim: error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_an_unreachable_broker_is_reported_not_retried_forever(capsys: pytest.CaptureFixture[str]) -> None:
    port = closed_port()
    assert main(["--broker", f"mqtt://127.0.0.1:{port}", "--device", "SL-01", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the MQTT broker at mqtt://127.0.0.1:{port}" in err
    assert err.count("\n") == 1


def test_usage_errors_and_help_return_their_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--interval", "0"]) == 2
    assert "not a positive duration" in capsys.readouterr().err
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "FAULT:[SITE:]TARGET[@+DELAY][/DURATION]" in out and "offline_hard" in out
    assert "--speed" in out and "--fleet" in out and "--clockless" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--speed", "0"], "expected a positive number or max"),
        (["--speed", "fast"], "expected a positive number or max"),
        (["--start", "2026-11-26T18:00"], "give a UTC offset"),
        (["--fleet", "2x3"], "expected SITESxCONCENTRATORSxLIGHTS"),
        (["--buffer", "-1"], "is negative"),
    ],
)
def test_bad_time_and_scale_options_are_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_credentials_file_that_is_not_the_provision_table_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "creds.txt"
    path.write_text("SITE DEVICE KIND USERNAME PASSWORD\nwanmei SL-01 streetlight\n")
    assert main(["--broker", f"mqtt://127.0.0.1:{closed_port()}", "-q", "--credentials", str(path)]) == 2
    err = capsys.readouterr().err
    assert "creds.txt:2: expected SITE DEVICE KIND USERNAME PASSWORD" in err and err.count("\n") == 1
