"""Site leases on a real SQLite file, time moved by a ManualClock: one holder at a time, expiry,
renewal, fencing of a holder that was paused past its expiry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.lease import LeaseStore, SiteLeases
from linli.clock import ManualClock
from linli.storage import Database, migrate

START = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)
TTL = timedelta(seconds=15)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'linli.db'}"
    migrate(url)
    db = Database(url)
    yield db
    db.close()


def test_a_free_site_is_taken_and_a_held_one_is_refused_to_another_holder(database: Database) -> None:
    a, b = LeaseStore(database, "gw-a", TTL), LeaseStore(database, "gw-b", TTL)
    lease = a.acquire("wanmei", START)
    assert lease is not None and (lease.holder, lease.epoch, lease.expires_at) == ("gw-a", 1, START + TTL)
    assert b.acquire("wanmei", START + timedelta(seconds=14.9)) is None
    current = b.current("wanmei")
    assert current is not None and (current.holder, current.epoch) == ("gw-a", 1)
    assert b.acquire("site-b", START) is not None  # leases are per site


def test_a_lease_not_renewed_expires_and_the_standby_takes_it_with_a_new_epoch(database: Database) -> None:
    a, b = LeaseStore(database, "gw-a", TTL), LeaseStore(database, "gw-b", TTL)
    held = a.acquire("wanmei", START)
    assert held is not None
    assert b.acquire("wanmei", START + TTL - timedelta(milliseconds=1)) is None
    taken = b.acquire("wanmei", START + TTL)
    assert taken is not None and (taken.holder, taken.epoch) == ("gw-b", 2)
    assert a.acquire("wanmei", START + TTL + timedelta(seconds=1)) is None


def test_renewal_keeps_the_site_past_the_first_expiry(database: Database) -> None:
    a, b = LeaseStore(database, "gw-a", TTL), LeaseStore(database, "gw-b", TTL)
    lease = a.acquire("wanmei", START)
    assert lease is not None
    for second in range(5, 60, 5):
        renewed = a.renew(lease, START + timedelta(seconds=second))
        assert renewed is not None and renewed.epoch == 1
        lease = renewed
        assert b.acquire("wanmei", START + timedelta(seconds=second)) is None
    assert lease.expires_at == START + timedelta(seconds=55) + TTL


def test_a_holder_paused_past_its_expiry_is_fenced_out_even_if_its_clock_says_otherwise(database: Database) -> None:
    a, b = LeaseStore(database, "gw-a", TTL), LeaseStore(database, "gw-b", TTL)
    old = a.acquire("wanmei", START)
    assert old is not None
    new = b.acquire("wanmei", START + timedelta(seconds=20))  # a was paused; b took over
    assert new is not None and new.epoch == 2
    # a wakes: its lease has expired by its own clock, and renewing is refused...
    assert a.renew(old, START + timedelta(seconds=21)) is None
    # ...and even with a clock that lags (its lease looks valid), the epoch has moved on.
    assert a.renew(old, START + timedelta(seconds=10)) is None
    assert a.release(old, START + timedelta(seconds=21)) is False  # nor can it free b's lease
    current = b.current("wanmei")
    assert current is not None and (current.holder, current.epoch) == ("gw-b", 2)
    assert b.renew(new, START + timedelta(seconds=25)) is not None


def test_a_released_lease_is_taken_at_once_and_a_restarted_holder_takes_its_own_back(database: Database) -> None:
    a, b = LeaseStore(database, "gw-a", TTL), LeaseStore(database, "gw-b", TTL)
    lease = a.acquire("wanmei", START)
    assert lease is not None and a.release(lease, START + timedelta(seconds=1))
    taken = b.acquire("wanmei", START + timedelta(seconds=1))
    assert taken is not None and taken.epoch == 2
    # gw-b restarted (same id, new process): it takes its own running lease back, under a new epoch,
    # so the previous process of gw-b, if it were still alive, is fenced out.
    again = LeaseStore(database, "gw-b", TTL).acquire("wanmei", START + timedelta(seconds=2))
    assert again is not None and again.epoch == 3
    assert b.renew(taken, START + timedelta(seconds=3)) is None


def test_site_leases_renew_take_over_and_drop_what_expired_locally(database: Database) -> None:
    clock = ManualClock(START)
    active = SiteLeases(LeaseStore(database, "gw-a", TTL), ["wanmei", "site-b"], clock, renew_every_s=0)
    standby = SiteLeases(LeaseStore(database, "gw-b", TTL), ["wanmei", "site-b"], clock, renew_every_s=0)
    assert active.step().gained == ("wanmei", "site-b")
    assert not standby.step() and standby.held == {}
    clock.advance(10)
    assert not active.step()  # renewed
    clock.advance(10)
    assert not standby.step()  # the renewal holds it past the first 15 s
    assert active.holds("wanmei") and not standby.holds("wanmei")
    clock.advance(16)  # the active stopped renewing (killed, paused)
    assert standby.step().gained == ("wanmei", "site-b")
    assert active.step().lost == ("wanmei", "site-b")  # the paused one wakes: expired here, gone
    assert active.held == {} and not active.holds("wanmei")
    clock.advance(5)
    assert not active.step()  # and it cannot take them back while the standby renews
    assert set(standby.held) == {"wanmei", "site-b"} and standby.holds("wanmei")


def test_of_several_holders_asking_for_an_expired_site_only_one_wins(database: Database) -> None:
    stores = [LeaseStore(database, f"gw-{n}", TTL) for n in range(4)]
    for round_ in range(5):
        now = START + round_ * (TTL + timedelta(seconds=1))  # every round, the previous lease has expired
        winners = [lease for store in stores if (lease := store.acquire("wanmei", now)) is not None]
        assert len(winners) == 1 and winners[0].epoch == round_ + 1


def test_renewals_between_steps_keep_the_site_and_a_lease_found_lost_is_reported_by_the_next_step(
    database: Database,
) -> None:
    clock = ManualClock(START)
    active = SiteLeases(LeaseStore(database, "gw-a", TTL), ["wanmei"], clock, renew_every_s=0)
    standby = SiteLeases(LeaseStore(database, "gw-b", TTL), ["wanmei"], clock, renew_every_s=0)
    assert active.step().gained == ("wanmei",)
    for _ in range(4):  # the worker is busy with one long batch: only the keeper renews
        clock.advance(10)
        active.renew_held()
        assert not standby.step() and active.holds("wanmei")
    # Paused past its expiry (the keeper too), it is taken over; the keeper's renewal finds that out
    clock.advance(16)
    assert standby.step().gained == ("wanmei",)
    active.renew_held()
    assert active.held == {} and not active.holds("wanmei")
    change = active.step()
    assert change.lost == ("wanmei",) and not change.gained  # said once, by the worker's step
    assert not active.step().lost


def test_renewals_between_steps_come_no_more_often_than_asked(database: Database) -> None:
    clock = ManualClock(START)
    leases = SiteLeases(LeaseStore(database, "gw-a", TTL), ["wanmei"], clock, renew_every_s=3600)
    leases.step(force=True)
    first = leases.held["wanmei"].expires_at
    clock.advance(5)
    leases.renew_held()  # the step just renewed: not due
    assert leases.held["wanmei"].expires_at == first
