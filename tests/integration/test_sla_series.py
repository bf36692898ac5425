"""`GET /api/v1/reports/sla`: SLA figures per day or week, on SQLite and PostgreSQL.

Tickets are opened and worked through the API while the test moves the API's clock, so every
figure below is worked out by hand from known timings. The same counting as the monthly report:
over a whole month, the series' totals are the monthly report's figures.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from unit.test_monthly_report import FIXTURES

from integration.test_api import NOW, Api
from integration.test_monthly_report_api import expected, seeded  # noqa: F401 - fixtures

SLA = "/api/v1/reports/sla"
MONTHLY = "/api/v1/reports/monthly"
LOCAL = ZoneInfo("Asia/Shanghai")


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=LOCAL)


class Desk:
    """A manager working tickets through the API at moments the test chooses."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.headers = api.user("li", "manager")

    def at(self, when: str) -> None:
        self.api.clock.set(local(when))

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.api.client.post(f"/api/v1/tickets{path}", json=body, headers=self.headers)
        assert response.status_code in (200, 201), response.text
        answer: dict[str, Any] = response.json()
        return answer

    def open(self, when: str, place: str, severity: str, teams: list[str]) -> int:
        self.at(when)
        return int(self.post("", {"site": "wanmei", "place": place, "title": f"{place} 报修", "severity": severity,
                                  "teams": teams})["id"])

    def ack(self, when: str, ticket: int, team: str | None = None) -> None:
        self.at(when)
        self.post(f"/{ticket}/ack", {"team": team} if team else None)

    def do(self, when: str, ticket: int, action: str, body: dict[str, Any] | None = None) -> None:
        self.at(when)
        self.post(f"/{ticket}/{action}", body)


@pytest.fixture
def worked(api: Api) -> Desk:
    """Five tickets over three weeks (Mon 9 Nov to Sun 29 Nov 2026, Asia/Shanghai); the clock ends at NOW
    (Thu 26 Nov, 20:00 local). P1: acknowledge in 1 h, fix in 24 h; P2: 24 h and 72 h (the site file)."""
    desk = Desk(api)
    a = desk.open("2026-11-10T10:00", "一期1号楼", "P1", ["property"])
    desk.ack("2026-11-10T10:30", a)  # on time, 30 min
    desk.do("2026-11-10T11:00", a, "start")
    desk.do("2026-11-10T15:00", a, "resolve", {"note": "换灯"})  # on time, 300 min

    b = desk.open("2026-11-11T10:00", "一期2号楼", "P1", ["property"])
    desk.ack("2026-11-11T13:00", b)  # late since 11:00 (week 1), 180 min
    desk.do("2026-11-11T14:00", b, "start")
    desk.do("2026-11-12T16:00", b, "resolve", {"note": "换线"})  # late since the 12th 10:00 (week 1), 1800 min

    c = desk.open("2026-11-15T20:00", "中心广场", "P2", ["property", "grid"])
    desk.ack("2026-11-16T08:00", c)  # property: on time (week 2), 720 min
    desk.ack("2026-11-16T22:00", c, "grid")  # grid: late since the 16th 20:00 (week 2), 1560 min
    desk.do("2026-11-17T09:00", c, "start")
    desk.do("2026-11-17T10:00", c, "hold", {"reason": "等配件"})  # 48 h on hold: the fix clock stops
    desk.do("2026-11-19T10:00", c, "resume")
    desk.do("2026-11-19T12:00", c, "resolve", {"note": "修好"})  # due the 20th 20:00: on time, 88 h - 48 h = 2400 min

    e = desk.open("2026-11-23T09:00", "二期道路", "P1", ["property"])
    desk.ack("2026-11-23T09:10", e)  # on time, 10 min; never fixed: late since the 24th 09:00 (week 3)

    desk.open("2026-11-26T19:00", "三期车棚", "P2", ["property"])  # not acknowledged, not yet due
    api.clock.set(NOW)
    return desk


def series(api: Api, headers: dict[str, str], **params: Any) -> Any:
    return api.client.get(SLA, params={"site": "wanmei", **params}, headers=headers)


def figures(part: dict[str, Any]) -> tuple[Any, ...]:
    """opened; acknowledgements counted, on time, %, median minutes; the same for fixes."""
    ack, fix = part["ack"], part["fix"]
    return (part["opened"], ack["counted"], ack["on_time"], ack["within_sla_pct"], ack["median_minutes"],
            fix["counted"], fix["on_time"], fix["within_sla_pct"], fix["median_minutes"])


def test_weekly_figures_from_known_timings(api: Api, worked: Desk) -> None:
    response = series(api, worked.headers, **{"from": "2026-11-10", "to": "2026-11-26"}, bucket="week")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["bucket"], body["from"], body["to"]) == ("week", "2026-11-09", "2026-11-29")  # whole weeks
    assert body["as_of"] == "2026-11-26T20:00:00+08:00"
    weeks = body["buckets"]
    assert [w["start"] for w in weeks] == [
        "2026-11-09T00:00:00+08:00", "2026-11-16T00:00:00+08:00", "2026-11-23T00:00:00+08:00"]
    assert [w["complete"] for w in weeks] == [True, True, False]
    assert figures(weeks[0]) == (3, 2, 1, 50.0, 105.0, 2, 1, 50.0, 1050.0)
    assert figures(weeks[1]) == (0, 2, 1, 50.0, 1140.0, 1, 1, 100.0, 2400.0)
    assert figures(weeks[2]) == (2, 1, 1, 100.0, 10.0, 1, 0, 0.0, None)  # the unacknowledged P2 is not late yet
    assert figures(body["total"]) == (5, 5, 3, 60.0, 180.0, 4, 2, 50.0, 1800.0)
    assert body["total"]["ack"]["mean_minutes"] == 500.0  # (30 + 180 + 720 + 1560 + 10) / 5

    # by severity: the P2 ticket is week 1's third opening; its acknowledgements fall in week 2
    assert figures(weeks[0]["by_severity"]["P1"]) == (2, 2, 1, 50.0, 105.0, 2, 1, 50.0, 1050.0)
    assert figures(weeks[0]["by_severity"]["P2"]) == (1, 0, 0, None, None, 0, 0, None, None)
    assert figures(weeks[1]["by_severity"]["P2"]) == figures(weeks[1])
    assert weeks[2]["by_severity"]["P0"]["opened"] == 0
    # by team: each team answers for its own acknowledgement; the fix is the lead team's
    assert set(body["teams"]) == {"property", "grid"}
    assert body["teams"]["property"]["name_zh"] == "物业工程部"
    grid = weeks[1]["by_team"]["grid"]
    assert figures(grid) == (0, 1, 0, 0.0, 1560.0, 0, 0, None, None)
    assert figures(weeks[1]["by_team"]["property"]) == (0, 1, 1, 100.0, 720.0, 1, 1, 100.0, 2400.0)
    assert weeks[0]["by_team"]["grid"]["opened"] == 1


def test_daily_buckets_and_an_earlier_cut_off(api: Api, worked: Desk) -> None:
    days = series(api, worked.headers, **{"from": "2026-11-10", "to": "2026-11-12"}, bucket="day").json()["buckets"]
    assert [d["start"][:10] for d in days] == ["2026-11-10", "2026-11-11", "2026-11-12"]
    assert [figures(d)[:3] for d in days] == [(1, 1, 1), (1, 1, 0), (0, 0, 0)]
    assert [(d["fix"]["counted"], d["fix"]["on_time"]) for d in days] == [(1, 1), (0, 0), (1, 0)]

    # As of Wed 11 Nov 12:00: B's deadline to acknowledge has passed, its fix is not due yet, C not opened.
    early = series(api, worked.headers, **{"from": "2026-11-09", "to": "2026-11-15"},
                   as_of="2026-11-11T12:00:00+08:00").json()
    assert early["as_of"] == "2026-11-11T12:00:00+08:00"
    assert early["buckets"][0]["complete"] is False
    assert figures(early["buckets"][0]) == (2, 2, 1, 50.0, 30.0, 1, 1, 100.0, 300.0)
    # a cut-off after now is now: nothing is counted before it happens
    later = series(api, worked.headers, **{"from": "2026-11-09"}, as_of="2027-01-01T00:00:00+08:00").json()
    assert later["as_of"] == "2026-11-26T20:00:00+08:00"
    assert figures(later["total"]) == (5, 5, 3, 60.0, 180.0, 4, 2, 50.0, 1800.0)


def test_a_new_ticket_shows_in_this_week_at_once(api: Api, worked: Desk) -> None:
    before = series(api, worked.headers).json()
    assert before["to"] == "2026-11-29" and len(before["buckets"]) == 12  # default: the last 12 weeks
    assert before["buckets"][-1]["opened"] == 2
    api.clock.set(NOW + timedelta(minutes=5))
    worked.open("2026-11-26T20:05", "二期2号楼", "P0", ["property"])
    api.clock.set(NOW + timedelta(minutes=6))
    after = series(api, worked.headers).json()["buckets"][-1]
    assert (after["opened"], after["by_severity"]["P0"]["opened"]) == (3, 1)


def test_over_a_month_the_totals_are_the_monthly_reports(api: Api, seeded: dict[int, int],  # noqa: F811
                                                         expected: dict[str, Any]) -> None:  # noqa: F811
    """The hand-worked month of tests/fixtures/monthly, cut into days, adds up to its report."""
    assert (FIXTURES / "expected.yaml").is_file()
    daily = series(api, api.admin, **{"from": "2026-03-01", "to": "2026-03-31"}, bucket="day").json()
    assert len(daily["buckets"]) == 31
    month = api.client.get(MONTHLY, params={"site": "wanmei", "month": "2026-03"}, headers=api.admin).json()["figures"]
    for kind in ("ack", "fix"):
        assert daily["total"][kind] == month[kind] == expected["figures"][kind], kind
        assert sum(d[kind]["counted"] for d in daily["buckets"]) == month[kind]["counted"]
        assert sum(d[kind]["on_time"] for d in daily["buckets"]) == month[kind]["on_time"]
        for severity, group in month["by_severity"].items():
            assert daily["total"]["by_severity"][severity][kind] == group[kind], (kind, severity)
        for team, group in month["by_team"].items():
            assert daily["total"]["by_team"][team][kind] == group[kind], (kind, team)
    assert sum(d["opened"] for d in daily["buckets"]) == month["opened"]


def test_who_may_ask_and_bad_ranges(api: Api, worked: Desk) -> None:
    assert series(api, api.admin).status_code == 200
    for role in ("grid_officer", "technician", "viewer"):
        assert series(api, api.user(f"u-{role}", role, teams=("grid",) if role == "grid_officer" else ())).status_code == 403
    assert series(api, api.user("chen", "manager", sites=("site-b",))).status_code == 404
    assert series(api, api.admin, site="nowhere").status_code == 404
    assert api.client.get(SLA, params={"site": "wanmei"}).status_code == 401
    reversed_range = series(api, api.admin, **{"from": "2026-11-20", "to": "2026-11-01"})
    assert reversed_range.status_code == 400 and "after" in reversed_range.json()["detail"]
    too_long = series(api, api.admin, **{"from": "2025-01-01", "to": "2026-11-26"}, bucket="day")
    assert too_long.status_code == 400 and "at most 366" in too_long.json()["detail"]
    naive = series(api, api.admin, as_of="2026-11-20T10:00:00")
    assert naive.status_code == 400 and "offset" in naive.json()["detail"]
    assert series(api, api.admin, **{"to": "1999-12-31"}).status_code == 400
    assert series(api, api.admin, as_of="0001-01-01T00:00:00+14:00").status_code == 400
    assert series(api, api.admin, bucket="month").status_code == 422
    assert series(api, api.admin, **{"from": "2026-13-01"}).status_code == 422
