"""Per-device detectors of the fault catalog. Each is a small state machine over samples."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from linli.contract import StreetlightTelemetry

LAMP_WARM_UP = timedelta(seconds=60)
LAMP_DARK_RATIO = 0.10  # below 10% of expected power the lamp gives no light
LAMP_SAMPLES_TO_FIRE = 2
LAMP_SAMPLES_TO_CLEAR = 2  # hysteresis: two lit samples in a row clear it
SUPPLY_PRESENT_V = 50.0


@dataclass(slots=True)
class LampFailureDetector:
    """`lamp_failure`: relay closed, supply present, power under 10% of expected, 2 samples in a row,
    counted only once the lamp has had 60 s to warm up after its relay closed."""

    rated_power_w: float
    relay_closed_at: datetime | None = None
    seen_relay_open: bool = False
    dark_samples: int = 0
    lit_samples: int = 0
    active: bool = False

    def observe(self, sample: StreetlightTelemetry, at: datetime) -> bool | None:
        """True when the fault starts, False when it clears, None when nothing changes."""
        if not sample.relay:
            self.relay_closed_at = None
            self.seen_relay_open = True
            self.dark_samples = 0
            self.lit_samples = 0
            return None
        if self.relay_closed_at is None:
            # A light first seen with its relay already closed counts as warmed up.
            self.relay_closed_at = at if self.seen_relay_open else at - LAMP_WARM_UP
        if sample.voltage_v < SUPPLY_PRESENT_V:
            # No supply is another fault (circuit outage); it says nothing about the lamp.
            self.dark_samples = 0
            self.lit_samples = 0
            return None
        expected = self.rated_power_w * (sample.dim_pct if sample.dim_pct is not None else 100.0) / 100.0
        if expected <= 0:
            return None
        dark = sample.power_w < LAMP_DARK_RATIO * expected
        if dark:
            self.lit_samples = 0
            if at - self.relay_closed_at < LAMP_WARM_UP:
                return None
            self.dark_samples += 1
            if not self.active and self.dark_samples >= LAMP_SAMPLES_TO_FIRE:
                self.active = True
                return True
            return None
        self.dark_samples = 0
        self.lit_samples += 1
        if self.active and self.lit_samples >= LAMP_SAMPLES_TO_CLEAR:
            self.active = False
            return False
        return None
