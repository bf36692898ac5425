"""The site's astronomical clock: when its switched lighting circuits are powered."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from astral import LocationInfo
from astral.sun import sun

from linli.site import Site


@lru_cache(maxsize=4096)
def _sun_times(latitude: float, longitude: float, zone: str, day: date) -> tuple[datetime, datetime]:
    location = LocationInfo(latitude=latitude, longitude=longitude, timezone=zone)
    times = sun(location.observer, date=day, tzinfo=ZoneInfo(zone))
    return times["sunrise"], times["sunset"]


def sun_times(site: Site, day: date) -> tuple[datetime, datetime]:
    """(sunrise, sunset) on `day`, local calendar date of the site."""
    info = site.spec.site
    return _sun_times(info.coordinates.latitude, info.coordinates.longitude, info.timezone, day)


def lights_scheduled_on(site: Site, now: datetime) -> bool:
    """True from sunset + on_offset to the next sunrise + off_offset (local time)."""
    schedule = site.spec.site.lighting_schedule
    local = now.astimezone(ZoneInfo(site.spec.site.timezone))
    sunrise, sunset = sun_times(site, local.date())
    on_at = sunset + timedelta(minutes=schedule.on_offset_min)
    off_at = sunrise + timedelta(minutes=schedule.off_offset_min)
    return local >= on_at or local < off_at


def is_night(site: Site, now: datetime) -> bool:
    """Sun down (no offsets): when a dark streetlight matters most."""
    local = now.astimezone(ZoneInfo(site.spec.site.timezone))
    sunrise, sunset = sun_times(site, local.date())
    return local >= sunset or local < sunrise


def scheduled_on_since(site: Site, now: datetime) -> datetime | None:
    """When the current scheduled-on period began, or None while the schedule says off."""
    if not lights_scheduled_on(site, now):
        return None
    schedule = site.spec.site.lighting_schedule
    local = now.astimezone(ZoneInfo(site.spec.site.timezone))
    for day in (local.date(), local.date() - timedelta(days=1)):
        on_at = sun_times(site, day)[1] + timedelta(minutes=schedule.on_offset_min)
        if on_at <= local:
            return on_at
    return None  # pragma: no cover - an on period always began today or yesterday
