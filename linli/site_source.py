"""The site files a running process serves, reloaded when they change on disk.

:class:`SiteSource` holds the current :class:`~linli.site.SiteRegistry`. ``poll()`` looks at the
files (size, modification time and inode first, then a content hash) and, when one changed,
loads them all again. A file that no longer validates is refused: the running registry stays,
and the outcome carries the error (logged once per distinct error), so an installer's bad edit
never takes a gateway or the API down. Fixing the file applies it at the next poll.

The set of site ids is fixed for the life of a process (the gateway subscribes per site and
accounts are granted per site): an edit that adds, removes or renames a site is refused with a
message saying a restart is needed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from linli.site import SiteConfigError, SiteRegistry

log = logging.getLogger("linli.sites")

POLL_EVERY_S = 2.0

# (inode, size, mtime in ns) of a file, or None when it cannot be read
_Stat = tuple[int, int, int] | None


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What one poll found: a new registry, or the error that kept the running one."""

    sites: SiteRegistry | None  # the registry now in use; None when the edit was refused
    error: str | None = None
    added: tuple[str, ...] = ()  # "site/device" ids that are new in service
    removed: tuple[str, ...] = ()  # ... no longer in service (deleted from the file or retired)
    changed: tuple[str, ...] = ()  # ... whose entry in the file changed

    @property
    def applied(self) -> bool:
        return self.sites is not None

    def summary(self) -> str:
        if self.error is not None:
            return f"site files not reloaded, the running ones stay: {self.error}"
        parts = [f"{label} {', '.join(ids)}" for label, ids in
                 (("added", self.added), ("removed", self.removed), ("changed", self.changed)) if ids]
        return "site files reloaded" + (f": {'; '.join(parts)}" if parts else " (no device changed)")


@dataclass(slots=True)
class _Seen:
    stats: list[_Stat]
    digest: str
    error: str | None = None
    logged: set[str] = field(default_factory=set)


class SiteSource:
    """The site files of one process and the registry loaded from them; thread-safe."""

    def __init__(
        self, paths: Iterable[str | Path], *, initial: SiteRegistry | None = None, min_interval_s: float = POLL_EVERY_S
    ) -> None:
        """Loads the files now (a bad file raises :class:`SiteConfigError`: start-up stops), unless
        `initial` is given, which is then taken as what the files hold."""
        self.paths: list[Path] = [Path(p) for p in paths]
        self.min_interval_s = min_interval_s
        self._lock = threading.Lock()
        stats = [_stat(p) for p in self.paths]
        digest = _digest(self.paths)
        self._current = initial if initial is not None else SiteRegistry.load(self.paths)
        self._seen = _Seen(stats, digest)
        self._polled_at = time.monotonic()

    @property
    def current(self) -> SiteRegistry:
        return self._current

    @property
    def last_error(self) -> str | None:
        """Why the files on disk are not the ones in use, or None when they are."""
        return self._seen.error

    def poll_if_due(self) -> ReloadOutcome | None:
        """:meth:`poll`, at most once per `min_interval_s` of wall time; None when not due or when
        another thread is polling right now."""
        if time.monotonic() - self._polled_at < self.min_interval_s:
            return None
        return self.poll(blocking=False)

    def poll(self, *, blocking: bool = True) -> ReloadOutcome | None:
        """Reload when a file changed: an outcome with the new registry or the error; None if nothing changed."""
        if not self._lock.acquire(blocking=blocking):
            return None
        try:
            self._polled_at = time.monotonic()
            stats = [_stat(p) for p in self.paths]
            if stats == self._seen.stats:
                return None
            digest = _digest(self.paths)
            self._seen.stats = stats
            if digest == self._seen.digest:
                return None  # touched, or rewritten with the same content
            self._seen.digest = digest
            return self._reload()
        finally:
            self._lock.release()

    def _reload(self) -> ReloadOutcome:
        try:
            new = SiteRegistry.load(self.paths)
            if new.ids() != self._current.ids():
                raise SiteConfigError(
                    f"the site files now define sites {', '.join(new.ids())} instead of {', '.join(self._current.ids())}: "
                    "adding, removing or renaming a site needs a restart"
                )
        except SiteConfigError as exc:
            error = str(exc)
            self._seen.error = error
            if error not in self._seen.logged:
                self._seen.logged.add(error)
                log.error("site files not reloaded, the running ones stay: %s", error)
            return ReloadOutcome(None, error)
        old, self._current = self._current, new
        self._seen.error = None
        self._seen.logged.clear()
        outcome = ReloadOutcome(new, None, *_differences(old, new))
        log.info("%s", outcome.summary())
        return outcome


def _stat(path: Path) -> _Stat:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _digest(paths: Sequence[Path]) -> str:
    hasher = hashlib.sha256()
    for path in paths:
        try:
            hasher.update(path.read_bytes())
        except OSError as exc:
            hasher.update(f"unreadable: {exc}".encode())
        hasher.update(b"\x00")
    return hasher.hexdigest()


def _differences(old: SiteRegistry, new: SiteRegistry) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    added: list[str] = []
    removed: list[str] = []
    changed: list[str] = []
    for site in new:
        before = old[site.id].devices
        for device_id, device in site.devices.items():
            if device_id not in before:
                added.append(f"{site.id}/{device_id}")
            elif before[device_id] != device:
                changed.append(f"{site.id}/{device_id}")
        removed.extend(f"{site.id}/{device_id}" for device_id in before if device_id not in site.devices)
    return tuple(added), tuple(removed), tuple(changed)
