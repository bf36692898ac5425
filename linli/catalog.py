"""Fault catalog v1 (``fault-catalog.md``): codes, severities, default teams and service levels.

The codes are stable identifiers used in tickets, the API and notifications.
Sites override teams and service levels in their site file; this module holds the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum


class Severity(StrEnum):
    P0 = "P0"  # danger to people
    P1 = "P1"  # service down for many
    P2 = "P2"  # a device is down
    P3 = "P3"  # degraded, plan it

    @property
    def rank(self) -> int:
        """0 is the most urgent; lets callers compare severities."""
        return int(self.value[1])


class Team(StrEnum):
    PROPERTY = "property"
    GRID = "grid"
    ELEVATOR_CONTRACTOR = "elevator_contractor"
    CHARGER_OPERATOR = "charger_operator"


TEAM_NAMES: dict[str, tuple[str, str]] = {
    Team.PROPERTY: ("物业工程部", "Property crew"),
    Team.GRID: ("社区网格中心", "Community grid centre"),
    Team.ELEVATOR_CONTRACTOR: ("电梯维保单位", "Elevator maintenance contractor"),
    Team.CHARGER_OPERATOR: ("充电桩运营商", "Charging-pile operator"),
}


@dataclass(frozen=True, slots=True)
class ServiceLevel:
    ack: timedelta
    start: timedelta | None  # on site; only P0/P1 have one
    resolve: timedelta


# The 24-hour response promise to residents is the ceiling for acknowledgement at every severity.
DEFAULT_SERVICE_LEVELS: dict[Severity, ServiceLevel] = {
    Severity.P0: ServiceLevel(timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=24)),
    Severity.P1: ServiceLevel(timedelta(hours=1), timedelta(hours=4), timedelta(hours=24)),
    Severity.P2: ServiceLevel(timedelta(hours=24), None, timedelta(hours=72)),
    Severity.P3: ServiceLevel(timedelta(hours=24), None, timedelta(days=7)),
}


@dataclass(frozen=True, slots=True)
class FaultSpec:
    code: str
    kinds: tuple[str, ...]  # device kinds it applies to ("streetlight", ...); parents use the child kind
    severity: Severity
    teams: tuple[Team, ...]  # lead team first
    zh: str
    en: str


_P, _G, _E, _C = Team.PROPERTY, Team.GRID, Team.ELEVATOR_CONTRACTOR, Team.CHARGER_OPERATOR
_SL, _EL, _CP = ("streetlight",), ("elevator",), ("charger",)
_ANY = ("streetlight", "elevator", "charger")

FAULTS: dict[str, FaultSpec] = {
    spec.code: spec
    for spec in (
        # streetlights
        FaultSpec("lamp_failure", _SL, Severity.P2, (_P,), "灯具不亮", "Lamp failure"),
        FaultSpec("lamp_power_high", _SL, Severity.P3, (_P,), "功率偏高", "Lamp power high"),
        FaultSpec("lamp_power_low", _SL, Severity.P3, (_P,), "功率偏低", "Lamp power low"),
        FaultSpec("day_burning", _SL, Severity.P3, (_P,), "白天亮灯", "Day burning"),
        FaultSpec("cycling", _SL, Severity.P2, (_P,), "灯具闪烁", "Cycling"),
        FaultSpec("supply_voltage_high", _SL, Severity.P2, (_P,), "供电电压偏高", "Supply voltage high"),
        FaultSpec("supply_voltage_low", _SL, Severity.P2, (_P,), "供电电压偏低", "Supply voltage low"),
        FaultSpec("power_factor_low", _SL, Severity.P3, (_P,), "功率因数低", "Low power factor"),
        FaultSpec("leakage", _SL, Severity.P2, (_P, _G), "漏电", "Leakage current"),
        FaultSpec("circuit_outage", _SL, Severity.P1, (_P, _G), "回路停电", "Circuit outage"),
        FaultSpec("concentrator_offline", _SL, Severity.P1, (_P,), "集中器离线", "Concentrator offline"),
        FaultSpec("end_of_life", _SL, Severity.P3, (_P,), "灯具寿命到期", "Lamp end of life"),
        FaultSpec("energy_anomaly", _SL, Severity.P3, (_P,), "能耗异常", "Energy anomaly"),
        # elevators
        FaultSpec("trapped", _EL, Severity.P0, (_E, _P), "电梯困人", "Passenger trapped"),
        FaultSpec("stopped_outside_zone", _EL, Severity.P1, (_E,), "非平层停梯", "Stopped outside door zone"),
        FaultSpec("door_open_moving", _EL, Severity.P0, (_E,), "开门走车", "Moving with door open"),
        FaultSpec("overspeed", _EL, Severity.P0, (_E,), "超速", "Overspeed"),
        FaultSpec("overtravel", _EL, Severity.P0, (_E,), "冲顶/蹲底", "Overtravel"),
        FaultSpec("safety_circuit_open", _EL, Severity.P1, (_E,), "安全回路断开", "Safety circuit open"),
        FaultSpec("door_fault", _EL, Severity.P2, (_E,), "门系统故障", "Door fault"),
        FaultSpec("power_loss", _EL, Severity.P1, (_P,), "电梯停电", "Power loss"),
        FaultSpec("building_power_loss", _EL, Severity.P1, (_P, _E), "楼栋停电", "Building power loss"),
        FaultSpec("out_of_service", _EL, Severity.P2, (_E,), "电梯停用", "Out of service"),
        # chargers
        FaultSpec("ground_failure", _CP, Severity.P0, (_C, _P), "接地故障", "Ground failure"),
        FaultSpec("power_switch_failure", _CP, Severity.P0, (_C, _P), "接触器粘连", "Power switch failure"),
        FaultSpec("high_temperature", _CP, Severity.P1, (_C,), "温度过高", "High temperature"),
        FaultSpec("over_current", _CP, Severity.P2, (_C,), "过流", "Over current"),
        FaultSpec("over_voltage", _CP, Severity.P2, (_C,), "过压", "Over voltage"),
        FaultSpec("under_voltage", _CP, Severity.P2, (_C,), "欠压", "Under voltage"),
        FaultSpec("faulted", _CP, Severity.P1, (_C,), "充电桩故障", "Faulted"),
        FaultSpec("charging_no_current", _CP, Severity.P2, (_C,), "充电无电流", "Charging without current"),
        FaultSpec("stuck_session", _CP, Severity.P3, (_P,), "充电会话卡住", "Stuck session"),
        FaultSpec("meter_failure", _CP, Severity.P3, (_C,), "电表故障", "Meter failure"),
        FaultSpec("reader_failure", _CP, Severity.P3, (_C,), "读卡器故障", "Reader failure"),
        FaultSpec("ev_comm_errors", _CP, Severity.P3, (_C,), "车桩通信反复出错", "Repeated EV communication errors"),
        # every kind
        FaultSpec("offline", _ANY, Severity.P2, (_P,), "设备离线", "Device offline"),
        FaultSpec("intermittent", _ANY, Severity.P2, (_P,), "间歇性故障", "Intermittent fault"),
    )
}

# The lead team of `offline` depends on who maintains the kind.
OFFLINE_TEAMS: dict[str, tuple[Team, ...]] = {
    "streetlight": (_P,),
    "elevator": (_E,),
    "charger": (_C,),
}

# Offline severity by kind; a streetlight's is P3 by day and P2 at night.
OFFLINE_SEVERITY: dict[str, Severity] = {
    "streetlight": Severity.P3,
    "elevator": Severity.P2,
    "charger": Severity.P2,
}
