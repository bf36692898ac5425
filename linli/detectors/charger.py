"""A charging pile's detectors (fault catalog, "Charger"), per connector, signalled per pile.

Each connector reports its own status; a fault fires for the pile when the first connector shows
it and clears when the last one has been clear for its hold-off. ``EVCommunicationError`` is the
car's problem: it opens nothing unless it recurs in ``ev_comm_sessions`` different sessions within
``ev_comm_window_s`` (a session is its ``session_id``, or a run of error samples without one).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from linli.contract import ChargerTelemetry, Event
from linli.detectors.base import DetectorBase, Signal, dump_times, load_times
from linli.detectors.samples import ConnectorSample
from linli.detectors.thresholds import Thresholds
from linli.site import Device, Site

# OCPP error codes with a rule of their own (not "faulted").
_AT_ONCE = {
    "GroundFailure": "ground_failure",
    "PowerSwitchFailure": "power_switch_failure",
    "PowerMeterFailure": "meter_failure",
    "ReaderFailure": "reader_failure",
}
_EPISODES = {"OverCurrentFailure": "over_current", "OverVoltage": "over_voltage", "UnderVoltage": "under_voltage"}
_OWN_RULE = frozenset(_AT_ONCE) | frozenset(_EPISODES) | {"HighTemperature", "EVCommunicationError"}
_CHINESE = {"ground_failure": "接地故障", "power_switch_failure": "接触器粘连", "meter_failure": "电表故障",
            "reader_failure": "读卡器故障"}


class ChargerDetectors(DetectorBase):
    __slots__ = ("anonymous_sessions", "episodes", "ev_errors", "last_connector", "samples")
    kind = "charger"
    OWNED = (
        "ground_failure", "power_switch_failure", "high_temperature", "over_current", "over_voltage", "under_voltage",
        "faulted", "charging_no_current", "stuck_session", "meter_failure", "reader_failure", "ev_comm_errors",
    )

    def __init__(self, site: Site, device: Device, thresholds: Thresholds) -> None:
        super().__init__(site, device, thresholds)
        self.samples: dict[int, ConnectorSample] = {}  # the latest per connector (tuples: kept per device)
        self.episodes: dict[str, list[datetime]] | None = None  # "code#connector" -> episode starts; None: none
        self.ev_errors: list[tuple[datetime, str]] | None = None  # (when, session) of EVCommunicationError; None: none
        self.anonymous_sessions = 0
        self.last_connector = 1

    def _event(self, event: Event, at: datetime, out: list[Signal]) -> None:
        if event.code not in self.OWNED:
            return
        connector = (event.detail or {}).get("connector_id")
        cid = connector if isinstance(connector, int) and not isinstance(connector, bool) else self.last_connector
        key = event.code if event.code == "ev_comm_errors" else f"{event.code}#{cid}"
        self._force(key, at, out, f"设备上报 {event.code}（device event）")

    def _sample(self, body: Any, at: datetime) -> None:
        if not isinstance(body, ChargerTelemetry):
            return
        body = ConnectorSample.of(body)
        cid = body.connector_id
        previous = self.samples.get(cid)
        self.samples[cid] = body
        self.last_connector = cid
        error = body.error_code
        if error in _EPISODES and (previous is None or previous.error_code != error):
            if self.episodes is None:
                self.episodes = {}
            self.episodes.setdefault(f"{_EPISODES[error]}#{cid}", []).append(at)
        if error == "EVCommunicationError":
            session = body.session_id
            if session is None:
                if previous is None or previous.error_code != error:
                    self.anonymous_sessions += 1
                session = f"#{cid}-{self.anonymous_sessions}"
            if self.ev_errors is None:
                self.ev_errors = []
            if not any(s == session for _, s in self.ev_errors):
                self.ev_errors.append((at, session))
        faulted = body.status == "Faulted" and error not in _OWN_RULE
        self._feed(f"faulted#{cid}", faulted, at)
        no_current = None if body.current_a is None else body.status == "Charging" and body.current_a < self.th.no_current_a
        self._feed(f"no_current#{cid}", no_current, at)
        self._feed(f"stuck#{cid}", body.status in ("Preparing", "Finishing"), at)

    def _evaluate(self, at: datetime, is_sample: bool, out: list[Signal]) -> None:
        th = self.th
        # On a sample only its connector moves; a tick looks at every connector's last sample.
        connectors = [self.last_connector] if is_sample else sorted(self.samples)
        for cid in connectors:
            body = self.samples.get(cid)
            if body is None:
                continue
            error = body.error_code
            where = f"枪 {cid}" if self.device.connectors > 1 else ""
            for code_text, code in _AT_ONCE.items():
                hit = error == code_text
                self._step(f"{code}#{cid}", hit, hit, at, out, is_sample=is_sample,
                           detail=f"{_CHINESE[code]}：{where}状态 {body.status}，错误码 {code_text}")
            temp = body.temp_c
            hot = error == "HighTemperature" or (temp is not None and temp > th.high_temperature_c)
            self._step(f"high_temperature#{cid}", hot, hot, at, out, is_sample=is_sample,
                       detail=f"温度过高：{where}{temp if temp is not None else '?'} °C（阈值 {th.high_temperature_c:g} °C），"
                              f"错误码 {error}")
            window = timedelta(seconds=th.episode_window_s)
            for code_text, code in _EPISODES.items():
                starts = (self.episodes.get(f"{code}#{cid}") if self.episodes is not None else None) or []
                while starts and at - starts[0] > window:
                    del starts[0]
                repeated = len(starts) >= th.episodes
                self._step(f"{code}#{cid}", repeated, repeated, at, out, is_sample=is_sample,
                           detail=f"{code_text}：{where}{th.episode_window_s / 60:.0f} 分钟内 {len(starts)} 次")
                if is_sample:
                    self._healthy[f"{code}#{cid}"] = error != code_text
                    self._healthy[code] = all(v for k, v in self._healthy.items() if k.startswith(code + "#"))
            faulted = body.status == "Faulted" and error not in _OWN_RULE
            self._step(f"faulted#{cid}", faulted, faulted and self._held(f"faulted#{cid}", at) >= th.faulted_hold_s,
                       at, out, is_sample=is_sample, detail=f"充电桩故障：{where}状态 Faulted，错误码 {error}")
            current = body.current_a
            no_current = None if current is None else body.status == "Charging" and current < th.no_current_a
            self._step(f"charging_no_current#{cid}", no_current,
                       bool(no_current) and self._held(f"no_current#{cid}", at) >= th.no_current_hold_s, at, out,
                       is_sample=is_sample,
                       detail=f"充电无电流：{where}充电中电流 {current or 0:.2f} A（阈值 {th.no_current_a:g} A）")
            stuck = body.status in ("Preparing", "Finishing")
            held = self._held(f"stuck#{cid}", at)
            # Every session passes through Preparing and Finishing for a minute or two: only the rule's
            # 30 minutes make it a fault, and unhealthy (else verification would call a repaired pile's
            # next car a relapse and reopen the ticket; seen in the soak).
            too_long = stuck and held >= th.stuck_session_hold_s
            self._step(f"stuck_session#{cid}", too_long, too_long, at, out,
                       is_sample=is_sample, detail=f"充电会话卡住：{where}{body.status} 已 {held / 60:.0f} 分钟")
        window = timedelta(seconds=th.ev_comm_window_s)
        errors = self.ev_errors
        if errors is not None:
            while errors and at - errors[0][0] > window:
                del errors[0]
            if not errors:
                self.ev_errors = None
        sessions = len(errors) if errors else 0
        recurring = sessions >= th.ev_comm_sessions
        self._step("ev_comm_errors", recurring, recurring, at, out, is_sample=is_sample,
                   detail=f"车桩通信反复出错：{th.ev_comm_window_s / 3600:.0f} 小时内 {sessions} 个会话出现 EVCommunicationError")
        if is_sample:
            self._healthy["ev_comm_errors"] = all(b.error_code != "EVCommunicationError" for b in self.samples.values())

    def _extra_dump(self) -> dict[str, Any]:
        return {
            "samples": {str(c): b.dump() for c, b in self.samples.items()},
            "episodes": {k: dump_times(v) for k, v in (self.episodes or {}).items() if v},
            "ev_errors": [[t.isoformat(), s] for t, s in self.ev_errors or ()],
            "anonymous_sessions": self.anonymous_sessions, "last_connector": self.last_connector,
        }

    def _extra_load(self, data: dict[str, Any]) -> None:
        self.samples = {int(c): ConnectorSample.of(ChargerTelemetry.model_validate(b, strict=False))
                        for c, b in (data.get("samples") or {}).items()}
        self.episodes = {k: list(load_times(v)) for k, v in (data.get("episodes") or {}).items()} or None
        self.ev_errors = [(datetime.fromisoformat(t), str(s)) for t, s in data.get("ev_errors") or []] or None
        self.anonymous_sessions = int(data.get("anonymous_sessions", 0))
        self.last_connector = int(data.get("last_connector", 1))
