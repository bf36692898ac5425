"""Site leases: which gateway process serves a site, taken over by a standby when the holder dies.

A site is never split across gateways (correlation needs all of its devices in one engine), so a
gateway serves a site only while it holds the site's lease: a row of ``site_leases`` in the shared
database. Every change is a compare-and-set ``UPDATE … WHERE`` whose row count says who won, so
two gateways can never both hold a site. ``epoch`` grows at every acquisition: a holder that was
paused past its expiry finds its epoch gone and knows at once that it lost the site (fencing).

Time comes from the injected clock (a wall clock in production: leases compare the clocks of
different hosts, which must agree to well under the TTL). This module does no MQTT and keeps no
thread: the gateway's worker calls :meth:`SiteLeases.step` every few seconds (it takes and lets
go of sites), and the gateway's lease keeper thread calls :meth:`SiteLeases.renew_held` between
those steps, so one long batch does not cost a site its lease (see ``Gateway._keep_leases``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from linli.clock import Clock
from linli.storage import Database, SiteLease

log = logging.getLogger("linli.gateway.lease")

_NOBODY = ""  # holder of a lease row nobody has taken yet


@dataclass(frozen=True, slots=True)
class Lease:
    site: str
    holder: str
    epoch: int
    expires_at: datetime  # as this holder last renewed it: past it, someone else may hold the site

    def valid_at(self, now: datetime) -> bool:
        return now < self.expires_at


class LeaseStore:
    """Acquire, renew and release site leases in the database for one holder."""

    def __init__(self, database: Database, holder: str, ttl: timedelta) -> None:
        if not holder:
            raise ValueError("a lease holder needs a non-empty id")
        if ttl <= timedelta(0):
            raise ValueError("a lease TTL must be positive")
        self._db, self.holder, self.ttl = database, holder, ttl

    def acquire(self, site: str, now: datetime) -> Lease | None:
        """Take `site` if its lease is free or expired (or already ours from a previous run of this
        holder id): a new epoch. None when another holder's lease is still running."""
        table = cast(Table, SiteLease.__table__)
        with self._db.session() as session:
            insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            # The row exists from then on, expired: the compare-and-set below decides who takes it.
            session.execute(insert(table).values(
                site=site, holder=_NOBODY, epoch=0, expires_at=now, renewed_at=now, acquired_at=now,
            ).on_conflict_do_nothing(index_elements=["site"]))
            taken = session.execute(
                update(table)
                .where(and_(table.c.site == site, or_(table.c.expires_at <= now, table.c.holder == self.holder)))
                .values(holder=self.holder, epoch=table.c.epoch + 1, expires_at=now + self.ttl, renewed_at=now,
                        acquired_at=now)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                return None
            epoch = session.execute(select(table.c.epoch).where(table.c.site == site)).scalar_one()
        return Lease(site, self.holder, int(epoch), now + self.ttl)

    def renew(self, lease: Lease, now: datetime) -> Lease | None:
        """Extend `lease`; None when it is lost: expired here (another may have taken it meanwhile,
        so we stop serving even if nobody did) or taken over (the epoch moved on)."""
        if not lease.valid_at(now):
            return None
        table = cast(Table, SiteLease.__table__)
        with self._db.session() as session:
            renewed = session.execute(
                update(table)
                .where(and_(table.c.site == lease.site, table.c.holder == self.holder, table.c.epoch == lease.epoch))
                .values(expires_at=now + self.ttl, renewed_at=now)
            )
            if renewed.rowcount != 1:  # type: ignore[attr-defined]
                return None
        return Lease(lease.site, lease.holder, lease.epoch, now + self.ttl)

    def release(self, lease: Lease, now: datetime) -> bool:
        """Give the site up at once (a clean stop), so a standby need not wait for the expiry."""
        table = cast(Table, SiteLease.__table__)
        with self._db.session() as session:
            released = session.execute(
                update(table)
                .where(and_(table.c.site == lease.site, table.c.holder == self.holder, table.c.epoch == lease.epoch))
                .values(expires_at=now)
            )
            return bool(released.rowcount == 1)  # type: ignore[attr-defined]

    def current(self, site: str) -> Lease | None:
        """The lease row of `site` as the database has it (whoever holds it)."""
        with self._db.session() as session:
            row = session.get(SiteLease, site)
            if row is None or row.holder == _NOBODY:
                return None
            return Lease(row.site, row.holder, row.epoch, row.expires_at)


@dataclass(frozen=True, slots=True)
class LeaseChange:
    gained: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.gained or self.lost)


class SiteLeases:
    """The leases one gateway wants (its configured sites) and those it holds.

    `step` renews what it holds and tries to take the rest; `holds` is the gateway's check before
    it processes or acknowledges a message of a site. A database error keeps a lease until its
    own expiry (a short outage costs nothing); past that the site counts as lost.
    """

    def __init__(self, store: LeaseStore, sites: Iterable[str], clock: Clock, *, renew_every_s: float) -> None:
        self.store, self.clock = store, clock
        self.wanted = list(sites)
        self.renew_every_s = renew_every_s
        self.held: dict[str, Lease] = {}
        self.errors = 0  # database errors met while renewing or acquiring
        self._last_step = -float("inf")
        self._last_renewal = -float("inf")
        self._lost_between_steps: list[str] = []  # found by renew_held, reported by the next step
        self._lock = threading.Lock()  # step and renew_held come from two threads; holds reads only

    def holds(self, site: str, now: datetime | None = None) -> bool:
        lease = self.held.get(site)
        return lease is not None and lease.valid_at(now or self.clock.now())

    def step(self, *, force: bool = False) -> LeaseChange:
        """Renew and acquire if due (every `renew_every_s` of wall time) or `force`d; a lease that
        expired locally is dropped at every call, due or not."""
        with self._lock:
            return self._step(force)

    def renew_held(self) -> None:
        """Renew the leases held, if due (every `renew_every_s`); takes nothing. A lease found lost
        is dropped at once and reported by the next `step`."""
        with self._lock:
            if time.monotonic() - max(self._last_step, self._last_renewal) < self.renew_every_s:
                return
            self._last_renewal = time.monotonic()
            self._lost_between_steps += self._renew(self.clock.now())

    def _step(self, force: bool) -> LeaseChange:
        now = self.clock.now()
        lost, self._lost_between_steps = self._lost_between_steps, []
        expired = [site for site, lease in self.held.items() if not lease.valid_at(now)]
        for site in expired:
            del self.held[site]
        lost += expired
        due = force or time.monotonic() - self._last_step >= self.renew_every_s
        gained: list[str] = []
        if due:
            self._last_step = time.monotonic()
            lost += self._renew(now)
            for site in self.wanted:
                if site in self.held or site in lost:
                    continue  # a site just lost is retried at the next step, after we have let it go
                try:
                    taken = self.store.acquire(site, now)
                except SQLAlchemyError as exc:
                    self._failed("acquiring", site, exc)
                    continue
                if taken is not None:
                    self.held[site] = taken
                    gained.append(site)
        for site in lost:
            log.warning("lost the lease of site %s: stopped serving it", site)
        for site in gained:
            log.info("took the lease of site %s (epoch %d)", site, self.held[site].epoch)
        return LeaseChange(tuple(gained), tuple(lost))

    def _renew(self, now: datetime) -> list[str]:
        """Renew every held lease; returns the sites found lost (dropped from `held`)."""
        lost: list[str] = []
        for site, lease in list(self.held.items()):
            try:
                renewed = self.store.renew(lease, now)
            except SQLAlchemyError as exc:
                self._failed("renewing", site, exc)
                continue  # kept until its expiry: the next step drops it if the outage lasts
            if renewed is None:
                del self.held[site]
                lost.append(site)
            else:
                self.held[site] = renewed
        return lost

    def release_all(self) -> None:
        with self._lock:
            now = self.clock.now()
            for site, lease in list(self.held.items()):
                try:
                    self.store.release(lease, now)
                except SQLAlchemyError as exc:
                    self._failed("releasing", site, exc)
            self.held.clear()

    def _failed(self, doing: str, site: str, exc: SQLAlchemyError) -> None:
        self.errors += 1
        log.warning("database error %s the lease of site %s: %s", doing, site, str(exc).splitlines()[0][:300])
