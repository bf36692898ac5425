"""The site model: one community's places, devices, teams, routing and service levels.

A site is described by one YAML file (see ``sites/wanmei.yaml`` and ``docs/site-file.md``).
:func:`load_site` validates it completely before anything starts: a wrong file stops
start-up with :class:`SiteConfigError`, whose message names the file, the field and the problem.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from linli.catalog import DEFAULT_SERVICE_LEVELS, FAULTS, OFFLINE_TEAMS, ServiceLevel, Severity, Team
from linli.notify.config import ChannelList
from linli.oncall import EscalationConfig, Person, Shift, reference_problems

if TYPE_CHECKING:
    from linli.detectors.thresholds import Thresholds

SITE_ID = r"^[a-z0-9-]{1,32}$"
DEVICE_ID = r"^[A-Za-z0-9_-]{1,32}$"
PLACE_ID = r"^[A-Za-z0-9_-]{1,32}$"
DeviceKind = Literal["streetlight", "elevator", "charger"]
DEVICE_KINDS: tuple[str, ...] = ("streetlight", "elevator", "charger")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | int | float) -> timedelta:
    """'90s', '5m', '24h', '7d' (a bare number is seconds)."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return timedelta(seconds=float(text))
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration such as '90s', '5m', '24h' or '7d'")
    return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Position(_Model):
    """A point on the site plan, in plan units (the plan's width and height are in `plan`)."""

    x: float = Field(ge=0)
    y: float = Field(ge=0)


class Plan(_Model):
    width: float = Field(default=1000, gt=0)
    height: float = Field(default=700, gt=0)


class Area(_Model):
    x: float = Field(ge=0)
    y: float = Field(ge=0)
    w: float = Field(gt=0)
    h: float = Field(gt=0)


class Coordinates(_Model):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class LightingSchedule(_Model):
    """When switched circuits are powered: from sunset + on_offset to sunrise + off_offset."""

    on_offset_min: int = Field(default=0, ge=-180, le=180)
    off_offset_min: int = Field(default=0, ge=-180, le=180)


class Compound(_Model):
    id: Annotated[str, Field(pattern=PLACE_ID)]
    name: str = Field(min_length=1)
    name_en: str | None = None
    area: Area | None = None


class Building(_Model):
    id: Annotated[str, Field(pattern=PLACE_ID)]
    compound: str
    name: str = Field(min_length=1)
    name_en: str | None = None
    lowest_floor: int = Field(ge=-10, le=200)
    highest_floor: int = Field(ge=-10, le=200)
    rated_speed_mps: float = Field(gt=0, le=20)
    position: Position | None = None

    @model_validator(mode="after")
    def _landing_range(self) -> Building:
        if self.highest_floor <= self.lowest_floor:
            raise ValueError("highest_floor must be above lowest_floor")
        return self


class Circuit(_Model):
    id: Annotated[str, Field(pattern=PLACE_ID)]
    name: str = Field(min_length=1)
    name_en: str | None = None
    switched: bool = Field(description="True when the cabinet's contactor powers it only at night")


class Cabinet(_Model):
    id: Annotated[str, Field(pattern=PLACE_ID)]
    name: str = Field(min_length=1)
    name_en: str | None = None
    position: Position | None = None
    circuits: list[Circuit] = Field(min_length=1)


class Concentrator(_Model):
    id: Annotated[str, Field(pattern=DEVICE_ID)]
    name: str = Field(min_length=1)
    cabinet: str | None = None
    interval_s: int = Field(default=30, gt=0, le=86400)


class Device(_Model):
    id: Annotated[str, Field(pattern=DEVICE_ID)]
    kind: DeviceKind
    name: str = Field(min_length=1)
    name_en: str | None = None
    position: Position | None = None
    interval_s: int = Field(default=30, gt=0, le=86400, description="Telemetry period the device is expected to keep")
    concentrator: str | None = None
    # streetlight
    circuit: str | None = None
    rated_power_w: float | None = Field(default=None, gt=0)
    rated_life_h: float = Field(default=50_000, gt=0)
    # elevator
    building: str | None = None
    # charger
    compound: str | None = None
    rated_power_kw: float | None = Field(default=None, gt=0)
    connectors: int = Field(default=1, ge=1, le=8)
    group: str | None = None
    retired: bool = Field(
        default=False, description="Taken out of service: kept in the file for its history, no longer monitored"
    )

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Device:
        required = {
            "streetlight": ("circuit", "rated_power_w"),
            "elevator": ("building",),
            "charger": ("rated_power_kw",),
        }[self.kind]
        missing = [name for name in required if getattr(self, name) is None]
        if missing:
            raise ValueError(f"{_article(self.kind)} {self.kind} needs {', '.join(missing)}")
        foreign = {
            "streetlight": ("building", "rated_power_kw"),
            "elevator": ("circuit", "rated_power_w", "rated_power_kw"),
            "charger": ("circuit", "building", "rated_power_w"),
        }[self.kind]
        present = [name for name in foreign if getattr(self, name) is not None]
        if present:
            raise ValueError(f"{_article(self.kind)} {self.kind} has no {', '.join(present)}")
        return self


class TeamConfig(_Model):
    name: str = Field(min_length=1)
    name_en: str | None = None
    channels: ChannelList = Field(default_factory=list, description="where this team's notifications go (linli.notify)")
    lead: str | None = Field(default=None, description="person id: on duty when no shift covers the moment; escalation level 2")
    roster: list[Shift] = Field(default_factory=list, description="weekly on-call shifts (linli.oncall)")
    escalation: EscalationConfig | None = Field(default=None, description="levels after a missed deadline (linli.sla)")


class ServiceLevelConfig(_Model):
    ack: str | None = None
    start: str | None = None
    resolve: str | None = None

    @field_validator("ack", "start", "resolve")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class SiteInfo(_Model):
    id: Annotated[str, Field(pattern=SITE_ID)]
    name: str = Field(min_length=1)
    name_en: str | None = None
    timezone: str = "Asia/Shanghai"
    coordinates: Coordinates
    lighting_schedule: LightingSchedule = LightingSchedule()
    manager: str | None = Field(default=None, description="person id of the community manager (top of escalation)")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class SiteFile(_Model):
    """The document as written; :class:`Site` is the checked, indexed form the code uses."""

    site: SiteInfo
    plan: Plan = Plan()
    compounds: list[Compound] = []
    buildings: list[Building] = []
    cabinets: list[Cabinet] = []
    concentrators: list[Concentrator] = []
    teams: dict[Team, TeamConfig]
    routing: dict[str, list[Team]] = Field(default_factory=dict, description="fault code -> teams, lead first")
    sla: dict[Severity, ServiceLevelConfig] = Field(default_factory=dict)
    sla_by_fault: dict[str, ServiceLevelConfig] = Field(default_factory=dict)
    detection: dict[DeviceKind, dict[str, float]] = Field(
        default_factory=dict, description="detector thresholds per device kind (linli.detectors.thresholds)"
    )
    devices: list[Device] = Field(min_length=1)
    people: list[Person] = Field(default_factory=list, description="contacts for rosters and escalation (linli.oncall)")

    @model_validator(mode="after")
    def _detection_names(self) -> SiteFile:
        from linli.detectors.thresholds import override_problems  # linli.detectors imports this module

        problems = [p for kind, names in self.detection.items() for p in override_problems(kind, names, f"detection.{kind}")]
        if problems:
            raise ValueError("; ".join(f"{loc}: {msg}" for loc, msg in problems))
        return self

    @model_validator(mode="after")
    def _references(self) -> SiteFile:
        problems: list[tuple[str, str]] = []

        def unique(items: Iterable[Any], section: str) -> set[str]:
            seen: set[str] = set()
            for index, item in enumerate(items):
                if item.id in seen:
                    problems.append((f"{section}[{index}].id", f"duplicate id {item.id!r}"))
                seen.add(item.id)
            return seen

        compounds = unique(self.compounds, "compounds")
        buildings = unique(self.buildings, "buildings")
        cabinets = unique(self.cabinets, "cabinets")
        circuits = unique([c for cab in self.cabinets for c in cab.circuits], "circuits")
        concentrators = unique(self.concentrators, "concentrators")
        unique(self.devices, "devices")
        for index, building in enumerate(self.buildings):
            if building.compound not in compounds:
                problems.append((f"buildings[{index}].compound", _unknown("compound", building.compound, compounds)))
        for index, conc in enumerate(self.concentrators):
            if conc.cabinet is not None and conc.cabinet not in cabinets:
                problems.append((f"concentrators[{index}].cabinet", _unknown("cabinet", conc.cabinet, cabinets)))
        for index, device in enumerate(self.devices):
            where = f"devices[{index}]"
            if device.circuit is not None and device.circuit not in circuits:
                problems.append((f"{where}.circuit", _unknown("circuit", device.circuit, circuits)))
            if device.building is not None and device.building not in buildings:
                problems.append((f"{where}.building", _unknown("building", device.building, buildings)))
            if device.compound is not None and device.compound not in compounds:
                problems.append((f"{where}.compound", _unknown("compound", device.compound, compounds)))
            if device.concentrator is not None and device.concentrator not in concentrators:
                problems.append((f"{where}.concentrator", _unknown("concentrator", device.concentrator, concentrators)))
        for section, codes in (("routing", self.routing), ("sla_by_fault", self.sla_by_fault)):
            problems.extend((f"{section}.{code}", f"unknown fault code {code!r}") for code in codes if code not in FAULTS)
        for code, teams in self.routing.items():
            for team in teams:
                if team not in self.teams:
                    problems.append((f"routing.{code}", f"team {team.value!r} is not defined under teams"))
        problems.extend(reference_problems(self.people, self.site.manager, self.teams))
        if problems:
            # pydantic shows this message under the model's location; _format_errors splits it back.
            raise ValueError("; ".join(f"{loc}: {msg}" for loc, msg in problems))
        return self


def _unknown(what: str, value: str, known: set[str]) -> str:
    listed = ", ".join(sorted(known)[:12]) or "none defined"
    return f"unknown {what} {value!r} (known: {listed})"


class SiteConfigError(Exception):
    """A site file that cannot be used; the message names the file, the field and the problem."""


@dataclass(frozen=True, slots=True)
class Site:
    """A loaded site, indexed for the lookups the engine and API make on every message."""

    source: Path | None
    spec: SiteFile
    devices: Mapping[str, Device]  # the devices in service; the engine, gateway and API see only these
    circuits: Mapping[str, Circuit]
    cabinet_of_circuit: Mapping[str, str]
    buildings: Mapping[str, Building]
    compounds: Mapping[str, Compound]
    retired: Mapping[str, Device]  # kept in the file for their history; their messages are refused

    @property
    def id(self) -> str:
        return self.spec.site.id

    @property
    def name(self) -> str:
        return self.spec.site.name

    def teams_for(self, fault: str, kind: str | None = None) -> tuple[Team, ...]:
        if fault in self.spec.routing:
            return tuple(self.spec.routing[fault])
        if fault == "offline" and kind is not None:
            return OFFLINE_TEAMS[kind]
        return FAULTS[fault].teams

    def service_level(self, severity: Severity, fault: str | None = None) -> ServiceLevel:
        level = DEFAULT_SERVICE_LEVELS[severity]
        for override in (self.spec.sla.get(severity), self.spec.sla_by_fault.get(fault or "")):
            if override is None:
                continue
            level = ServiceLevel(
                ack=parse_duration(override.ack) if override.ack else level.ack,
                start=parse_duration(override.start) if override.start else level.start,
                resolve=parse_duration(override.resolve) if override.resolve else level.resolve,
            )
        # The community's promise: nobody waits more than 24 h for a response.
        if level.ack > timedelta(hours=24):
            level = ServiceLevel(timedelta(hours=24), level.start, level.resolve)
        return level

    def thresholds(self, kind: str) -> Thresholds:
        """The detector thresholds of a device kind: the catalog's defaults with the site's `detection` overrides."""
        from linli.detectors.thresholds import thresholds_for

        return thresholds_for(kind, self.spec.detection.get(kind))  # type: ignore[call-overload]

    def location_tags(self, device: Device) -> dict[str, str]:
        """Where a device is, as time-series tags and API location fields."""
        tags: dict[str, str] = {}
        if device.circuit:
            tags["circuit"] = device.circuit
            tags["cabinet"] = self.cabinet_of_circuit[device.circuit]
        if device.building:
            tags["building"] = device.building
            tags["compound"] = self.buildings[device.building].compound
        if device.compound:
            tags["compound"] = device.compound
        return tags


def build_site(spec: SiteFile, source: Path | None = None) -> Site:
    circuits = {c.id: c for cab in spec.cabinets for c in cab.circuits}
    return Site(
        source=source,
        spec=spec,
        devices={d.id: d for d in spec.devices if not d.retired},
        circuits=circuits,
        cabinet_of_circuit={c.id: cab.id for cab in spec.cabinets for c in cab.circuits},
        buildings={b.id: b for b in spec.buildings},
        compounds={c.id: c for c in spec.compounds},
        retired={d.id: d for d in spec.devices if d.retired},
    )



def format_loc(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as people read it: ``devices[3].circuit``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines: list[str] = []
    for error in exc.errors(include_url=False):
        loc = format_loc(tuple(error["loc"]))
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "value_error" and ": " in message and loc == "(document)":
            lines.extend(f"{path}: {part}" for part in message.split("; "))
        else:
            lines.append(f"{path}: {loc}: {message}")
    return "\n".join(lines)


def load_site(path: str | Path) -> Site:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SiteConfigError(f"{path}: cannot read the site file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise SiteConfigError(f"{path}: not UTF-8 text: {exc}") from exc
    return parse_site(text, path)


def parse_site(text: str, path: Path) -> Site:
    """A site from the text of a site file; `path` names it in error messages (and becomes its source)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SiteConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise SiteConfigError(f"{path}: (document): a site file is a YAML mapping with site, teams and devices")
    try:
        spec = SiteFile.model_validate(document)
    except ValidationError as exc:
        raise SiteConfigError(_format_errors(path, exc)) from exc
    return build_site(spec, path)


class SiteRegistry:
    """Every site one process serves; the same device id may exist in two sites."""

    def __init__(self, sites: Iterable[Site]) -> None:
        self._sites: dict[str, Site] = {}
        for site in sites:
            if site.id in self._sites:
                first = self._sites[site.id].source
                raise SiteConfigError(f"{site.source}: site.id: site {site.id!r} is already defined in {first}")
            self._sites[site.id] = site

    @classmethod
    def load(cls, paths: Iterable[str | Path]) -> SiteRegistry:
        files = [Path(p) for p in paths]
        if not files:
            raise SiteConfigError("no site files given (set LINLI_SITES)")
        return cls(load_site(p) for p in files)

    def __iter__(self) -> Iterator[Site]:
        return iter(self._sites.values())

    def __len__(self) -> int:
        return len(self._sites)

    def __contains__(self, site_id: object) -> bool:
        return site_id in self._sites

    def __getitem__(self, site_id: str) -> Site:
        return self._sites[site_id]

    def get(self, site_id: str) -> Site | None:
        return self._sites.get(site_id)

    def ids(self) -> list[str]:
        return list(self._sites)

    def device(self, site_id: str, device_id: str) -> Device | None:
        site = self._sites.get(site_id)
        return site.devices.get(device_id) if site else None


BUILTIN_SITES_DIR = Path(__file__).parent / "sites"


def builtin_site_path(name: str = "wanmei") -> Path:
    return BUILTIN_SITES_DIR / f"{name}.yaml"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
