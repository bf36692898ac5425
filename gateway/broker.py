"""The gateway's link to the MQTT broker: paho-mqtt 2 behind one small interface.

Nothing outside this module imports paho. paho runs in a child process of its own (this module run
as ``python -m gateway.broker``), so its network thread never competes with the pipeline for the
gateway's GIL: the child only reads the socket, hands the raw messages up
in chunks over a pipe, and sends the PUBACKs the gateway asks for once a batch is durable. The child
never acknowledges on its own: when the gateway dies (even by SIGKILL) the pipe closes, the child
exits at once, and the broker redelivers whatever was not acknowledged.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from linli.clock import CLOCK_TOPIC, Clock, to_ms
from linli.mqtt_tls import MqttTls, apply_tls

log = logging.getLogger("linli.gateway.broker")

_HEADER = struct.Struct("<I")
_CHUNK = 256  # messages per chunk handed up; a partial chunk goes up within _FLUSH_S
_FLUSH_S = 0.002
_PIPE_BYTES = 1 << 20  # room for a few thousand messages, so paho rarely waits for the gateway
_START_TIMEOUT_S = 40.0  # paho's own connect timeout is shorter; this only guards a hung child
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux), spelled out for Pythons that lack the name
_LINK_NUMBERS = itertools.count(1)


class Inbound(NamedTuple):
    """One raw message as received (a tuple: built tens of thousands of times a second)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_ms: int
    mid: int = 0  # the broker's packet id (QoS 1): acknowledged once the message is durably recorded
    link: int = 0  # which connection it came on: an ack never crosses a reconnect


@dataclass(frozen=True, slots=True)
class LinkChange:
    connected: bool
    reason: str


# ---------------------------------------------------------------- framing (both processes)


def _frame(obj: object) -> bytes:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Frames:
    """Frames out of a byte stream read in large pieces: one read() can carry many chunks."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buf = bytearray()

    def read(self) -> list[Any] | None:
        """Block for more bytes; the complete frames so far, or None at end of stream."""
        data = os.read(self._fd, _PIPE_BYTES)
        if not data:
            return None
        self._buf += data
        out: list[Any] = []
        start = 0
        while len(self._buf) - start >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buf, start)
            end = start + _HEADER.size + size
            if end > len(self._buf):
                break
            out.append(pickle.loads(self._buf[start + _HEADER.size:end]))  # noqa: S301 - our own child, our own pipe
            start = end
        del self._buf[:start]
        return out


def _grow_pipe(fd: int) -> None:
    # not Linux, or over /proc/sys/fs/pipe-max-size: the default size works, slower
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", _F_SETPIPE_SZ), _PIPE_BYTES)


# ---------------------------------------------------------------- the gateway's side


class BrokerLink:
    """A persistent QoS 1 session subscribed to the contract topics of the sites it serves, its paho
    client running in a receiving process of its own (see the module doc)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        site_ids: Iterable[str],
        inbox: queue.Queue[Any],
        clock: Clock,
        username: str | None = None,
        password: str | None = None,
        tls: bool | MqttTls | None = False,
        clock_sink: Callable[[bytes], None] | None = None,
    ) -> None:
        self._host, self._port = host, port
        self._clock_sink = clock_sink
        self._inbox = inbox
        self._clock = clock
        topics = [(f"estate/v1/{site}/#", 1) for site in site_ids]
        if clock_sink is not None:
            topics.append((CLOCK_TOPIC, 1))
        self._topics = topics  # a subclass may change them before start()
        self._config: dict[str, Any] = {
            "host": host, "port": port, "client_id": client_id, "username": username, "password": password,
            "tls": tls, "clock": clock_sink is not None,
        }
        # Connection numbers unique to this link: an ack never reaches a connection (of this link or
        # of another made for the same session) other than the one its message came on.
        self._link = next(_LINK_NUMBERS) * 1_000_000
        self._child: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self._stopping = False

    def start(self) -> None:
        """Connect (raises OSError when the broker is unreachable) and run the receiving process."""
        self._stopping = False
        child = subprocess.Popen(
            [sys.executable, "-m", "gateway.broker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
        )
        assert child.stdin is not None and child.stdout is not None
        _grow_pipe(child.stdin.fileno())
        _grow_pipe(child.stdout.fileno())
        self._child = child
        self._send(("config", {**self._config, "topics": self._topics, "first_link": self._link}))
        frames = _Frames(child.stdout.fileno())
        pending: list[Any] = []
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not pending:
            ready, _, _ = select.select([child.stdout], [], [], max(0.0, deadline - time.monotonic()))
            got = frames.read() if ready else None
            if got is None:
                self._reap()
                raise OSError(f"the MQTT receiving process did not start ({self._host}:{self._port})")
            pending = got
        first, rest = pending[0], pending[1:]
        if first[0] != "started":
            self._reap()
            raise OSError(first[1] if first[0] == "failed" else f"unexpected answer {first[0]!r}")
        self._reader = threading.Thread(target=self._read, args=(frames, rest), name="linli-gateway-mqtt-reader",
                                        daemon=True)
        self._reader.start()

    def stop(self) -> None:
        """Disconnect; what is not acknowledged stays in the session."""
        child = self._child
        if child is None:
            return
        self._stopping = True
        with contextlib.suppress(OSError):  # already gone
            self._send(("stop",))
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        self._reap()

    def _reap(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        if child.poll() is None:
            child.kill()
            child.wait(5)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()

    def _send(self, command: tuple[Any, ...]) -> None:
        child = self._child
        if child is None or child.stdin is None:
            raise OSError("the MQTT receiving process is not running")
        with self._send_lock:
            _write_all(child.stdin.fileno(), _frame(command))

    def ack(self, items: Iterable[Inbound]) -> int:
        """PUBACK the QoS 1 messages of `items` (in the order received); those of an older connection
        are left to the broker, which sends them again. Returns how many were acknowledged."""
        link = self._link
        mids = [(item.mid, item.qos) for item in items if item.qos > 0 and item.link == link]
        if mids:
            try:
                self._send(("ack", link, mids))
            except OSError as exc:  # the receiver is gone: the broker redelivers, nothing is lost
                log.warning("could not acknowledge %d messages: %s", len(mids), exc)
                return 0
        return len(mids)

    def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> None:
        try:
            self._send(("publish", topic, payload, qos, retain))
        except OSError as exc:
            log.warning("could not publish on %s: %s", topic, exc)

    # the receiving process's frames: the reader thread
    def _read(self, frames: _Frames, first: list[Any]) -> None:
        got: list[Any] | None = first
        while got is not None:
            for frame in got:
                self._handle(frame)
            try:
                got = frames.read()
            except OSError:
                got = None
        if not self._stopping:
            log.error("the MQTT receiving process of %s exited", self._config["client_id"])
            self._inbox.put(LinkChange(False, "receiving process exited"))

    def _handle(self, frame: tuple[Any, ...]) -> None:
        what = frame[0]
        if what == "msgs":  # a whole chunk goes on the inbox as one list
            _, link, raw = frame
            now_ms = to_ms(self._clock.now())
            self._inbox.put([Inbound(t, p, q, r, now_ms, mid, link) for t, p, q, r, mid in raw])
        elif what == "link":
            _, connected, reason, link = frame
            if connected:
                self._link = link
            self._inbox.put(LinkChange(connected, reason))
        elif what == "clock" and self._clock_sink is not None:
            try:
                self._clock_sink(frame[1])
            except ValueError as exc:  # a bad announcement keeps the clock as it was
                log.warning("ignored a clock announcement: %s", exc)
        elif what == "log":
            log.log(frame[1], "%s", frame[2])


# ---------------------------------------------------------------- the receiving process


class _Receiver:
    """The child: paho's network thread appends; chunks go up the pipe; acks and publishes come down."""

    def __init__(self, config: dict[str, Any], out_fd: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._out = out_fd
        self._send_lock = threading.Lock()
        self._pending: list[tuple[str, bytes, int, bool, int]] = []
        self._pending_lock = threading.Lock()
        self._host, self._port = config["host"], config["port"]
        self._topics = [tuple(t) for t in config["topics"]]
        self._clock = bool(config["clock"])
        self.link = int(config["first_link"])
        # clean_session=False: the broker keeps our subscriptions and queues QoS 1 while we are away.
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config["client_id"], clean_session=False,
                             protocol=mqtt.MQTTv311)
        if config["username"]:
            client.username_pw_set(config["username"], config["password"])
        apply_tls(client, config["tls"])  # mqtts://: the broker verified, with our certificate if given
        client.max_queued_messages_set(0)
        # A QoS 1 message is acknowledged when the gateway says its batch is stored, never on receipt.
        client.manual_ack_set(True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    def send(self, frame: tuple[Any, ...]) -> None:
        with self._send_lock:
            _write_all(self._out, _frame(frame))

    def log(self, level: int, text: str) -> None:
        self.send(("log", level, text))

    def flush(self) -> None:
        with self._pending_lock:
            chunk, self._pending = self._pending, []
            link = self.link
        if chunk:
            self.send(("msgs", link, chunk))

    # paho callbacks: its network thread
    def _on_connect(self, client: Any, _userdata: object, _flags: Any, reason: Any, _properties: Any) -> None:
        if reason.is_failure:
            self.log(logging.ERROR, f"broker refused the connection: {reason}")
            return
        self.flush()  # what came on the old connection goes up under the old number
        with self._pending_lock:
            self.link += 1
        client.subscribe(self._topics)
        self.send(("link", True, str(reason), self.link))
        self.log(logging.INFO, f"connected to {self._host}:{self._port}, subscribed to {[t for t, _ in self._topics]}")

    def _on_disconnect(self, _client: Any, _userdata: object, _flags: Any, reason: Any, _properties: Any) -> None:
        self.flush()
        self.send(("link", False, str(reason), self.link))
        self.log(logging.WARNING, f"disconnected from the broker: {reason}")

    def _on_message(self, client: Any, _userdata: object, message: Any) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # brokers should refuse these, but a bad topic must not kill the thread
            topic = bytes(message._topic).decode("utf-8", "replace")
        if self._clock and topic == CLOCK_TOPIC:
            self.flush()  # the messages that came before the clock's step go up before it, in order
            self.send(("clock", bytes(message.payload)))
            if message.qos > 0:
                client.ack(message.mid, message.qos)
            return
        with self._pending_lock:
            self._pending.append((topic, message.payload, message.qos, message.retain, message.mid))
            full = len(self._pending) >= _CHUNK
        if full:
            self.flush()

    def ack(self, link: int, mids: list[tuple[int, int]]) -> None:
        if link != self.link:
            return  # an older connection's messages: the broker sends them again on this one
        ack = self.client.ack
        for mid, qos in mids:
            ack(mid, qos)


def _receiver_main() -> int:
    """`python -m gateway.broker`: the receiving process. stdin: commands; stdout: frames."""
    in_fd, out_fd = sys.stdin.fileno(), sys.stdout.fileno()
    sys.stdout = sys.stderr  # nothing but frames on the pipe
    commands = _Frames(in_fd)
    got = commands.read()
    if not got or got[0][0] != "config":
        return 2
    config = got[0][1]
    receiver = _Receiver(config, out_fd)
    try:
        receiver.client.connect(config["host"], config["port"], keepalive=30)
    except Exception as exc:  # any failure to connect is the parent's OSError
        receiver.send(("failed", f"{type(exc).__name__}: {exc}"))
        return 1
    receiver.send(("started",))
    receiver.client.loop_start()
    try:
        return _serve(receiver, commands, in_fd)
    except OSError:  # the pipe broke: the gateway is gone; leave at once, acknowledging nothing more
        os._exit(0)


def _serve(receiver: _Receiver, commands: _Frames, in_fd: int) -> int:
    while True:
        ready, _, _ = select.select([in_fd], [], [], _FLUSH_S)
        receiver.flush()
        if not ready:
            continue
        got = commands.read()
        if got is None:  # the gateway is gone: leave at once, acknowledging nothing more
            os._exit(0)
        for command in got:
            what = command[0]
            if what == "ack":
                receiver.ack(command[1], command[2])
            elif what == "publish":
                _, topic, payload, qos, retain = command
                receiver.client.publish(topic, payload, qos=qos, retain=retain)
            elif what == "stop":
                receiver.client.disconnect()
                receiver.client.loop_stop()
                return 0


if __name__ == "__main__":
    raise SystemExit(_receiver_main())
