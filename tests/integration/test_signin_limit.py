"""Failed sign-ins are rate-limited (docs/security.md), on SQLite and PostgreSQL.

`POST /api/v1/auth/token` counts failures only (wrong password, unknown user, implausible username)
per client address and per address and username, over a sliding hour on the app's injected clock;
past either limit the address (or that username from it) gets 429 with `Retry-After` before its
password is checked. The app runs in-process (the `api` fixture of test_api.py); other addresses are
other `TestClient`s (`client=(host, port)`), the clock is moved, never slept on.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session

from api.routes import auth
from integration.test_api import ADMIN_PASSWORD, Api
from linli.storage import users
from linli.storage.models import User

TOKEN = "/api/v1/auth/token"
HOUR = 3600


def sign_in(client: TestClient, username: str, password: str, **kwargs: object) -> Response:
    return client.post(TOKEN, data={"username": username, "password": password}, **kwargs)  # type: ignore[arg-type]


def from_address(api: Api, host: str) -> TestClient:
    return TestClient(api.client.app, client=(host, 50000))


def test_failures_from_one_address_are_limited_then_lift_with_the_clock(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (api.settings.signin_failures_per_ip, api.settings.signin_failures_per_account) == (30, 10)  # the defaults
    documented = api.client.get("/openapi.json").json()["paths"][TOKEN]["post"]["responses"]
    assert "429" in documented

    # 30 failures of every kind (under 10 per username), each answered 401
    failures = [("admin", f"guess-{n}") for n in range(5)]
    failures += [(f"ghost-{n}", ADMIN_PASSWORD) for n in range(5)]
    failures += [(f"{n:02d}" + "x" * 70, "pw") for n in range(10)]  # too long: no account's
    failures += [(f"ad\x00min-{n}", ADMIN_PASSWORD) for n in range(5)]
    failures += [(f"{n:02d}" + "y" * 70, "pw") for n in range(10, 15)]
    assert len(failures) == 30
    for username, password in failures:
        answer = sign_in(api.client, username, password)
        assert answer.status_code == 401, (username[:12], answer.text)
        assert answer.json()["detail"] == "wrong username or password"

    # the 31st attempt: refused before its password is looked at, right or wrong
    checked: list[str] = []

    def authenticate(session: Session, username: str, password: str) -> User | None:
        checked.append(username)
        return users.authenticate(session, username, password)

    monkeypatch.setattr(auth, "authenticate", authenticate)
    refused = sign_in(api.client, "admin", ADMIN_PASSWORD)
    assert refused.status_code == 429, refused.text
    assert refused.headers["Retry-After"] == str(HOUR)  # every failure was at the same moment of the clock
    assert refused.json()["detail"] == "too many failed sign-ins from this address; try again in 60 minutes"
    assert sign_in(api.client, "ghost-new", "pw").status_code == 429
    # a header does not make another client (uvicorn trusts X-Forwarded-For from the local proxy only)
    assert sign_in(api.client, "admin", ADMIN_PASSWORD, headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 429
    assert checked == []  # no password of a refused attempt was checked

    # another address is not held back, neither for the right password nor for a wrong one
    other = from_address(api, "203.0.113.9")
    assert sign_in(other, "admin", ADMIN_PASSWORD).status_code == 200
    assert sign_in(other, "admin", "wrong").status_code == 401
    assert checked == ["admin", "admin"]
    # the sign-in limit is its own: the same address may still report a broken light
    report = api.client.post("/api/v1/public/reports", json={"site": "wanmei", "category": "other", "description": "x"})
    assert report.status_code == 201, report.text

    # the wait shrinks with the injected clock, and the limit lifts an hour after the failures
    api.clock.advance(HOUR - 60)
    still = sign_in(api.client, "admin", ADMIN_PASSWORD)
    assert still.status_code == 429
    assert still.headers["Retry-After"] == "60"
    assert still.json()["detail"] == "too many failed sign-ins from this address; try again in 1 minute"
    api.clock.advance(60)
    lifted = sign_in(api.client, "admin", ADMIN_PASSWORD)
    assert lifted.status_code == 200, lifted.text
    assert lifted.json()["access_token"]


def test_failures_on_one_username_are_limited_per_address(api: Api) -> None:
    api.user("zhao", "manager")
    for n in range(10):
        assert sign_in(api.client, "zhao", f"guess-{n}").status_code == 401
    refused = sign_in(api.client, "zhao", "zhao-password")
    assert refused.status_code == 429, refused.text
    assert refused.headers["Retry-After"] == str(HOUR)
    assert refused.json()["detail"] == "too many failed sign-ins to this username from this address; try again in 60 minutes"

    # the address itself is not over its limit: other usernames sign in, and fail, as before
    assert sign_in(api.client, "admin", ADMIN_PASSWORD).status_code == 200
    assert sign_in(api.client, "admin", "wrong").status_code == 401
    # the same username from another address is not held back
    assert sign_in(from_address(api, "198.51.100.20"), "zhao", "zhao-password").status_code == 200
    # an IPv6 client counts by its /64: a neighbouring address of that household shares its count
    household = [from_address(api, f"2001:db8:0:7::{n}") for n in range(1, 12)]
    for n, client in enumerate(household[:10]):
        assert sign_in(client, "zhao", f"v6-guess-{n}").status_code == 401
    assert sign_in(household[10], "zhao", "zhao-password").status_code == 429
    assert sign_in(from_address(api, "2001:db8:0:8::1"), "zhao", "zhao-password").status_code == 200

    api.clock.advance(HOUR)
    assert sign_in(api.client, "zhao", "zhao-password").status_code == 200


def test_successful_sign_ins_never_count(api: Api) -> None:
    api.settings.signin_failures_per_ip = 2
    api.settings.signin_failures_per_account = 2
    api.user("li", "technician", teams=("property",))
    for _ in range(5):
        assert sign_in(api.client, "admin", ADMIN_PASSWORD).status_code == 200
        assert sign_in(api.client, "li", "li-password").status_code == 200
    # after 10 successes the address still has both of its failures to use
    assert sign_in(api.client, "admin", "wrong").status_code == 401
    assert sign_in(api.client, "li", "wrong").status_code == 401
    assert sign_in(api.client, "li", "li-password").status_code == 429


def test_guesses_sent_together_cannot_pass_the_limit(api: Api) -> None:
    api.settings.signin_failures_per_ip = 100
    api.settings.signin_failures_per_account = 3
    clients = [from_address(api, "192.0.2.44") for _ in range(6)]
    guesses = [(clients[n % 6], f"together-{n}") for n in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda guess: sign_in(guess[0], "admin", guess[1]).status_code, guesses))
    assert sorted(answers) == [401] * 3 + [429] * 9
