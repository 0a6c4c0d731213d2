"""REDIS_URL's forms: redis-py's own, and `redis+sentinel://` (the redis-sentinel-url format), each
validated when settings load, with one clear error for a malformed one and no password shown."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from src.config import Settings, describe_errors
from src.redis_urls import SentinelUrl, parse_sentinel_url


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("redis+sentinel://s1:26379/mymaster", SentinelUrl((("s1", 26379),), "mymaster", 0, None, None)),
        (
            "redis+sentinel://:p%40ss@s1:26379,s2:26380,[::1]:26381/cache/2",
            SentinelUrl((("s1", 26379), ("s2", 26380), ("::1", 26381)), "cache", 2, None, "p@ss"),
        ),
        ("redis+sentinel://app:pw@s1/mymaster/1", SentinelUrl((("s1", 26379),), "mymaster", 1, "app", "pw")),
    ],
)
def test_sentinel_urls_parse(url: str, parsed: SentinelUrl) -> None:
    assert parse_sentinel_url(url) == parsed


def test_settings_read_the_database_and_show_no_password() -> None:
    loaded = settings(redis_url="redis+sentinel://:hunter2@s1:26379,s2:26379/mymaster/4")
    assert loaded.redis_db == 4
    assert loaded.redis_display == "***@s1:26379,s2:26379/mymaster/4"
    assert "hunter2" not in loaded.redis_display


def test_redis_password_fills_in_a_sentinel_url_without_one() -> None:
    loaded = settings(redis_url="redis+sentinel://s1:26379/mymaster/0", redis_password="pw")
    assert parse_sentinel_url(loaded.effective_redis_url).password == "pw"
    kept = settings(redis_url="redis+sentinel://:inurl@s1:26379/mymaster/0", redis_password="pw")
    assert parse_sentinel_url(kept.effective_redis_url).password == "inurl"  # the URL's wins


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://s1:26379", "REDIS_URL for Sentinel is redis+sentinel://"),
        ("redis+sentinel://:secret@s1:26379", "got redis+sentinel://***@s1:26379"),
        ("redis+sentinel://s1:port/mymaster", "'s1:port' is not host:port"),
        ("redis+sentinel://s1:26379/mymaster/zero", "the database after the service name is a number"),
        ("sentinel://s1:26379/mymaster", "REDIS_URL must start with one of redis://, rediss://, unix://"),
        ("localhost:6379", "REDIS_URL must start with one of"),
    ],
)
def test_a_malformed_url_is_one_clear_line(url: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(redis_url=url)
    line = describe_errors(caught.value)
    assert message in line and "secret" not in line and "\n" not in line


@pytest.mark.parametrize("url", ["redis://h:6379/0", "rediss://u:p@h:6380/1", "unix:///run/redis.sock?db=2"])
def test_redis_pys_own_forms_are_accepted(url: str) -> None:
    assert settings(redis_url=url).redis_url == url


def test_a_password_with_slashes_or_at_signs_stays_whole_and_secret() -> None:
    """Unencoded `/` and `@` in a password: the auth ends at the last `@`, so the password is read
    whole, and an error about the rest of the URL never shows a piece of it."""
    parsed = parse_sentinel_url("redis+sentinel://u:ab/c@d@s1:26379/mymaster/0")
    assert (parsed.username, parsed.password, parsed.sentinels) == ("u", "ab/c@d", (("s1", 26379),))
    with pytest.raises(ValidationError) as caught:
        settings(redis_url="redis+sentinel://u:ab/c@d@s1:port/mymaster/0")
    assert "ab/c" not in describe_errors(caught.value)
    with pytest.raises(ValidationError) as caught:
        settings(redis_url="redis:/:hunter2@h:6379/0")  # a typo in the scheme
    assert "hunter2" not in describe_errors(caught.value) and "got no scheme" in describe_errors(caught.value)


def test_the_database_may_come_as_a_query_option() -> None:
    assert settings(redis_url="redis+sentinel://s1:26379/mymaster?db=3").redis_db == 3
    with pytest.raises(ValidationError, match="takes no query options but"):
        settings(redis_url="redis+sentinel://s1:26379/mymaster?socket_timeout=1")


def test_an_encoded_username_is_not_encoded_twice() -> None:
    for url in ("redis+sentinel://app%40x@s1:26379/mymaster/0", "redis://app%40x@h:6379/0"):
        loaded = settings(redis_url=url, redis_password="pw")
        assert "app%40x:pw@" in loaded.effective_redis_url, loaded.effective_redis_url
