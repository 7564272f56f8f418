"""The console's cookie and CSRF tokens: a table of what passes and what does not."""

from __future__ import annotations

from core.console.keys import SESSION_S, ConsoleKeys

NOW = 1_800_000_000.0


def test_a_fresh_cookie_passes_until_it_expires() -> None:
    keys = ConsoleKeys("tok")
    cookie = keys.issue(NOW)
    assert "tok" not in cookie
    nonce = keys.check(cookie, NOW + 10)
    assert nonce is not None
    assert keys.check(cookie, NOW + SESSION_S + 1) is None


def test_tampered_foreign_and_malformed_cookies_fail() -> None:
    keys = ConsoleKeys("tok")
    cookie = keys.issue(NOW)
    expiry, nonce, mac = cookie.split(".")
    later = f"{int(expiry) + 10**6}.{nonce}.{mac}"  # a longer life, same MAC
    for bad in (
        None,
        "",
        "x",
        later,
        f"{expiry}.{nonce}.{'0' * 64}",
        ConsoleKeys("other").issue(NOW),
    ):
        assert keys.check(bad, NOW) is None, bad


def test_the_csrf_token_belongs_to_its_session() -> None:
    keys = ConsoleKeys("tok")
    a = keys.check(keys.issue(NOW), NOW)
    b = keys.check(keys.issue(NOW), NOW)
    assert a is not None and b is not None
    assert keys.csrf_matches(a, keys.csrf(a))
    assert not keys.csrf_matches(a, keys.csrf(b))
    assert not keys.csrf_matches(a, None)
    assert not keys.csrf_matches(a, "")


def test_logout_refuses_the_cookie_even_replayed() -> None:
    keys = ConsoleKeys("tok")
    cookie = keys.issue(NOW)
    other = keys.issue(NOW)
    keys.revoke(cookie, NOW + 1)
    assert keys.check(cookie, NOW + 2) is None
    assert keys.check(other, NOW + 2) is not None
    keys.revoke("garbage", NOW)  # nothing to forget: no error
