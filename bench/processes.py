"""What the benchmarks share: the gateway's /metrics, waiting for a process to be ready, stopping
it, and a background fleet in a process of its own (no GIL shared with what is timed)."""

from __future__ import annotations

import multiprocessing
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


def metric(port: int, name: str) -> float:
    """The sum of a Prometheus metric's samples (all label sets), or -1 when /metrics does not answer."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return -1
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def wait_for(what: str, ready: Callable[[], object], timeout: float, proc: subprocess.Popen[bytes] | None = None,
             log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited; see {log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f} s; see {log}")
        time.sleep(0.2)


def stopper(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A function that stops `proc` (with `sig`, killed after 60 s)."""
    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    return stop


def start_fleet(target: Callable[..., None], *args: object) -> tuple[Any, Callable[[], None]]:
    """Runs `target(*args, stop, sent)` in a spawned process; returns (sent counter, stop function)."""
    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    sent = spawn.Value("q", 0)
    process = spawn.Process(target=target, args=(*args, stop, sent))
    process.start()

    def stop_fleet() -> None:
        stop.set()
        process.join(30)
    return sent, stop_fleet
