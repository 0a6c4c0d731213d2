"""`REDIS_URL`'s forms: redis-py's own (`redis://`, `rediss://`, `unix://`) and Sentinel's.

`redis+sentinel://[[user]:password@]host:port[,host:port…]/service_name[/db]` is the format of the
`redis-sentinel-url` package (its format only; the connection is redis-py's own Sentinel support):
the hosts are the sentinels, `service_name` the monitored primary's name, and the user and password
those of the Redis servers (the sentinels are asked without a password).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

SENTINEL_SCHEME = "redis+sentinel"
SCHEMES = ("redis", "rediss", "unix", SENTINEL_SCHEME)
SENTINEL_FORMAT = "redis+sentinel://[:password@]host:port[,host:port…]/service_name[/db]"


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int
    username: str | None
    password: str | None


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def is_sentinel(url: str) -> bool:
    return scheme_of(url) == SENTINEL_SCHEME


def check_redis_url(url: str) -> str:
    """The URL when its form is one we connect to; else ValueError saying which forms are."""
    scheme = scheme_of(url)
    if scheme not in SCHEMES:
        forms = ", ".join(f"{s}://" for s in SCHEMES)
        got = f"{scheme}://" if scheme else "no scheme"  # never the rest: it may hold a password
        raise ValueError(f"REDIS_URL must start with one of {forms}; got {got}")
    if scheme == SENTINEL_SCHEME:
        parse_sentinel_url(url)
    return url


def parse_sentinel_url(url: str) -> SentinelUrl:
    auth, hosts, path, query = _split(url)
    username, _, password = auth.partition(":")
    sentinels = tuple(_host_port(item) for item in hosts.split(",") if item.strip())
    parts = [p for p in path.split("/") if p]
    if not sentinels or not parts or len(parts) > 2:
        raise ValueError(f"REDIS_URL for Sentinel is {SENTINEL_FORMAT}; got {_masked(url)}")
    options = dict(pair.partition("=")[::2] for pair in query.split("&") if pair)
    if set(options) - {"db"} or (len(parts) == 2 and "db" in options):
        raise ValueError("REDIS_URL for Sentinel takes no query options but ?db=N (or the db in the path)")
    db = parts[1] if len(parts) == 2 else options.get("db", "0")
    if not db.isdigit():
        raise ValueError(f"REDIS_URL: the database after the service name is a number; got {db!r}")
    return SentinelUrl(
        sentinels=sentinels,
        service_name=unquote(parts[0]),
        db=int(db),
        username=unquote(username) or None,
        password=unquote(password) or None,
    )


def with_password(url: str, password: str) -> str:
    """A Sentinel URL with `password` filled in (the caller checked it has none)."""
    auth, hosts, path, query = _split(url)
    username = quote(unquote(auth.partition(":")[0]), safe="")
    tail = f"/{path}" + (f"?{query}" if query else "")
    return f"{scheme_of(url)}://{username}:{quote(password, safe='')}@{hosts}{tail}"


def sentinel_display(url: str) -> str:
    """Sentinels, service and database with the password masked: `***@h1:26379,h2:26379/mymaster/0`."""
    target = parse_sentinel_url(url)
    hosts = ",".join(f"{host}:{port}" for host, port in target.sentinels)
    return f"{'***@' if target.password else ''}{hosts}/{target.service_name}/{target.db}"


def _split(url: str) -> tuple[str, str, str, str]:
    """(auth, hosts, path, query) of a Sentinel URL. The auth ends at the last `@`, so a password
    holding `/` or `@` unencoded stays whole and never leaks into the other parts (or errors)."""
    rest = url.split("://", 1)[1]
    auth, _, after = rest.rpartition("@")
    hosts, _, path = after.partition("/")
    path, _, query = path.partition("?")
    return auth, hosts, path, query


def _host_port(item: str) -> tuple[str, int]:
    split = urlsplit(f"//{item.strip()}")
    try:
        port = split.port or 26379
    except ValueError:
        raise ValueError(f"REDIS_URL: {item.strip()!r} is not host:port") from None
    if not split.hostname:
        raise ValueError(f"REDIS_URL: {item.strip()!r} is not host:port")
    return split.hostname, port


def _masked(url: str) -> str:
    auth, hosts, path, query = _split(url)
    return f"{scheme_of(url)}://{'***@' if auth else ''}{hosts}/{path}" + (f"?{query}" if query else "")
