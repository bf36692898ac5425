"""Scenarios: named, repeatable sets of fault injections over a stretch of simulated time.

A scenario is a YAML file (the built-in ones live in ``firmware_sim/scenarios/``)::

    name: demo                      # [a-z0-9-]
    description: An evening with a few faults.
    start: "19:30"                  # optional: the local time of day the simulated clock starts at
    duration: 15m                   # how long the scenario runs
    injections:
      - fault: lamp_failure         # a fault-catalog code, or offline_hard (firmware_sim.faults.INJECTABLE)
        target: SL-07               # a device id, circuit:ID, building:ID or concentrator:ID ([SITE:] first if needed)
        at: +20s                    # offset from the scenario's start (default +0s)
        duration: 10m               # optional: default until the scenario ends
        optional: false             # true: skipped when the site has no such target (a site without concentrators)

Files are validated with pydantic (``extra="forbid"``); :class:`ScenarioError` names the file and
the field. :meth:`Scenario.injections` turns a scenario into :class:`~firmware_sim.faults.Injection` s
for a start moment and a set of sites: group targets are EXPANDED to one injection per device
(each keeps ``Injection.group``, so the runtime and the ground truth can still treat the circuit,
building or concentrator as one fault).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from firmware_sim.faults import INJECTABLE, Injection, InjectionError, expand, make_injection, parse_delay, split_target
from linli.site import Site, format_loc

BUILTIN_DIR = Path(__file__).parent / "scenarios"

_OFFSET = re.compile(r"^\+?(?P<rest>.+)$")


class ScenarioError(ValueError):
    """A scenario that cannot be used; the message names the file and the field."""


_PART = re.compile(r"(\d+(?:\.\d+)?)(d|h|min|m|s)")
_UNITS = {"d": 86400, "h": 3600, "min": 60, "m": 60, "s": 1}


def _duration(text: str | int | float, *, allow_zero: bool = False) -> timedelta:
    """``90``, ``90s``, ``5m``, ``2h``, ``1d`` or compound ``1h30m``; a leading ``+`` is allowed."""
    raw = str(text).strip().lstrip("+").strip()
    if re.fullmatch(r"(?:\d+(?:\.\d+)?(?:d|h|min|m|s))+", raw):
        value = timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in _PART.findall(raw)))
    else:
        value = parse_delay(raw)
    if value < timedelta(0) or (value == timedelta(0) and not allow_zero):
        raise ValueError(f"{text!r} is not a positive duration")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InjectionSpec(_Model):
    fault: str
    target: str
    at: str | int | float = "+0s"
    duration: str | int | float | None = None
    optional: bool = False

    @field_validator("fault")
    @classmethod
    def _known_fault(cls, value: str) -> str:
        if value not in INJECTABLE:
            raise ValueError(f"unknown fault {value!r} (known: {', '.join(INJECTABLE)})")
        return value

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        split_target(value)
        return value

    @field_validator("at")
    @classmethod
    def _offset(cls, value: str | int | float) -> str | int | float:
        if isinstance(value, str) and not _OFFSET.match(value.strip()):
            raise ValueError(f"{value!r} is not an offset such as +5m")
        _duration(value, allow_zero=True)
        return value

    @field_validator("duration")
    @classmethod
    def _positive(cls, value: str | int | float | None) -> str | int | float | None:
        if value is not None:
            _duration(value)
        return value

    @property
    def offset(self) -> timedelta:
        return _duration(self.at, allow_zero=True)

    @property
    def length(self) -> timedelta | None:
        return None if self.duration is None else _duration(self.duration)


class ScenarioFile(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,40}$")]
    description: str = Field(min_length=1)
    start: str | None = None
    duration: str | int | float
    injections: list[InjectionSpec] = []

    @field_validator("start")
    @classmethod
    def _clock_time(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                time.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a local time such as '21:00'") from None
        return value

    @field_validator("duration")
    @classmethod
    def _positive(cls, value: str | int | float) -> str | int | float:
        _duration(value)
        return value


@dataclass(frozen=True, slots=True)
class Scenario:
    spec: ScenarioFile
    source: Path | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def description(self) -> str:
        return self.spec.description

    @property
    def duration(self) -> timedelta:
        return _duration(self.spec.duration)

    @property
    def start_time(self) -> time | None:
        """The local time of day the scenario starts at, if it says."""
        return None if self.spec.start is None else time.fromisoformat(self.spec.start)

    def start_at(self, now: datetime, timezone: str | None = None) -> datetime:
        """When to start the simulated clock: ``now`` itself, or the latest moment at or before ``now``
        that is the scenario's local start time (in ``timezone``, default ``now``'s zone). Never in the
        future: what the simulator sends must lie in the past of the API's and the store's clocks."""
        if self.start_time is None:
            return now
        from zoneinfo import ZoneInfo

        local = now.astimezone(ZoneInfo(timezone)) if timezone else now
        start = local.replace(hour=self.start_time.hour, minute=self.start_time.minute, second=0, microsecond=0)
        return start if start <= local else start - timedelta(days=1)

    def injections(
        self, start: datetime, sites: Sequence[Site], simulated: Sequence[tuple[str, str]] | None = None
    ) -> list[Injection]:
        """The scenario's injections from ``start``, group targets expanded to devices, in time order.

        An injection without a duration lasts until the scenario ends. :class:`ScenarioError` names
        the entry when a target is unknown or unsuitable (``optional`` entries are then skipped).
        """
        out: list[Injection] = []
        where = self.source or self.name
        for index, entry in enumerate(self.spec.injections):
            length = entry.length if entry.length is not None else max(self.duration - entry.offset, timedelta(seconds=1))
            try:
                injection = make_injection(entry.fault, entry.target, start + entry.offset, length)
                out.extend(expand(injection, sites, simulated))
            except InjectionError as exc:
                if entry.optional:
                    continue
                raise ScenarioError(f"{where}: injections[{index}]: {exc}") from None
        return sorted(out, key=lambda i: i.at)

    def overlaps(self, start: datetime, sites: Sequence[Site]) -> list[tuple[Injection, Injection]]:
        """Pairs of injections on the same device whose times overlap."""
        by_device: dict[tuple[str | None, str], list[Injection]] = defaultdict(list)
        for injection in self.injections(start, sites):
            by_device[(injection.site, injection.device_id)].append(injection)
        pairs: list[tuple[Injection, Injection]] = []
        for items in by_device.values():
            items.sort(key=lambda i: i.at)
            for index, a in enumerate(items):
                pairs.extend((a, b) for b in items[index + 1:] if a.until is None or b.at < a.until)
        return pairs


def builtin_scenarios() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def parse_scenario(text: str, source: Path | str) -> Scenario:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise ScenarioError(f"{source}: (document): a scenario is a YAML mapping with name, description, duration, injections")
    try:
        spec = ScenarioFile.model_validate(document)
    except ValidationError as exc:
        lines = [
            f"{source}: {format_loc(tuple(e['loc']))}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        ]
        raise ScenarioError("\n".join(lines)) from None
    return Scenario(spec, Path(source))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name (``quiet``, ``demo``, ``storm``, ``all-faults``) or a file by path."""
    text_name = str(name_or_path)
    builtin = BUILTIN_DIR / f"{text_name}.yaml"
    path = builtin if re.fullmatch(r"[a-z0-9-]+", text_name) and builtin.is_file() else Path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        known = ", ".join(builtin_scenarios())
        raise ScenarioError(f"{path}: cannot read the scenario ({exc.strerror or exc}); built-in scenarios: {known}") from None
    return parse_scenario(text, path)
