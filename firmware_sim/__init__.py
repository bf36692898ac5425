"""The device simulator: streetlights, elevators and chargers speaking device contract v1 over MQTT.

Layers: ``models`` (pure device physics, seeded), ``faults`` (pure fault injection schedule),
``runtime`` (one MQTT connection per device, one scheduler thread), ``cli`` (``linli sim``).
"""

from firmware_sim.faults import Fault, FaultSchedule, Injection, InjectionError, Transition, parse_injection
from firmware_sim.models import AnyModel, ChargerModel, DeviceModel, ElevatorModel, Sky, StreetlightModel, build_models, model_for
from firmware_sim.runtime import BrokerConfig, SimStats, Simulator, SimulatorError

__all__ = [
    "AnyModel",
    "BrokerConfig",
    "ChargerModel",
    "DeviceModel",
    "ElevatorModel",
    "Fault",
    "FaultSchedule",
    "Injection",
    "InjectionError",
    "SimStats",
    "Simulator",
    "SimulatorError",
    "Sky",
    "StreetlightModel",
    "Transition",
    "build_models",
    "model_for",
    "parse_injection",
]
