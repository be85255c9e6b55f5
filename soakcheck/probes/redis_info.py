"""Redis probe: PING and one INFO call, read into facts a soak checker judges.

The facts cover what a BullMQ backend depends on: reachability, memory
against `maxmemory`, the eviction policy (BullMQ can lose jobs under any
policy but `noeviction`), evictions, persistence health and rejected connections.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import (
    parse_qsl,
    quote,
    unquote,
    urlencode,
    urlsplit,
    urlunsplit,
)

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from soakcheck.probes.errors import ProbeError

log = logging.getLogger(__name__)

SCHEMES = ("redis", "rediss")
DEFAULT_PASSWORD_ENV = "REDIS_PASSWORD"

# INFO lines end in CRLF on the wire and in LF in redis-cli output or pastes.
LINE_BREAK = re.compile(r"\r?\n")


@dataclass
class RedisFinding:
    """One condition a checker flags, with a code that is stable across runs."""

    code: str
    message: str


@dataclass
class RedisFacts:
    """Facts from one PING and one INFO call, where None means unknown."""

    url: str
    ping_ok: bool
    ping_error: str | None = None
    ping_ms: float | None = None
    info_error: str | None = None
    redis_version: str | None = None
    used_memory: int | None = None
    used_memory_human: str | None = None
    maxmemory: int | None = None
    maxmemory_human: str | None = None
    maxmemory_policy: str | None = None
    evicted_keys: int | None = None
    rejected_connections: int | None = None
    rdb_last_bgsave_status: str | None = None
    rdb_changes_since_last_save: int | None = None
    aof_enabled: bool | None = None
    aof_last_write_status: str | None = None
    mem_fragmentation_ratio: float | None = None
    mem_fragmentation_bytes: int | None = None
    connected_clients: int | None = None
    info: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def memory_ratio(self) -> float | None:
        """Return used_memory / maxmemory, or None when either is unknown or 0."""
        if self.used_memory is None or not self.maxmemory:
            return None

        return self.used_memory / self.maxmemory

    def to_dict(self) -> dict[str, Any]:
        """Return the facts as JSON-ready data for a checkpoint, without raw INFO."""
        data = asdict(self)
        data.pop("info")
        return data

    def findings(
        self,
        previous: RedisFacts | Mapping[str, Any] | None = None,
        *,
        memory_ratio_max: float = 0.9,
        fragmentation_ratio_max: float = 1.5,
        fragmentation_bytes_min: int = 50 * 1024 * 1024,
    ) -> list[RedisFinding]:
        """List the conditions a checker flags, comparing counters with `previous`.

        `previous` is the facts of the last checkpoint, as an object or as the
        dict from `to_dict`. A counter that went down (Redis restarted, or
        CONFIG RESETSTAT ran) is compared against 0.
        """
        if not self.ping_ok:
            message = self.ping_error or "Redis PING failed"
            return [RedisFinding("redis_unreachable", message)]

        found = []
        if self.info_error is not None:
            found.append(RedisFinding("info_failed", self.info_error))

        found += self._policy_findings()
        found += self._counter_findings(previous)
        found += self._persistence_findings()
        found += self._memory_findings(
            memory_ratio_max, fragmentation_ratio_max, fragmentation_bytes_min
        )
        return found

    def _policy_findings(self) -> list[RedisFinding]:
        if self.maxmemory_policy is None:
            return [
                RedisFinding(
                    "maxmemory_policy_unknown",
                    "maxmemory_policy is missing from INFO, so the eviction "
                    "policy is unknown: check it with CONFIG GET maxmemory-policy "
                    "or the provider's settings",
                )
            ]

        if self.maxmemory_policy != "noeviction":
            return [
                RedisFinding(
                    "maxmemory_policy_not_noeviction",
                    f"maxmemory_policy is {self.maxmemory_policy}, expected "
                    "noeviction, because BullMQ loses jobs and locks when Redis "
                    "evicts keys: set maxmemory-policy noeviction",
                )
            ]

        return []

    def _counter_findings(
        self, previous: RedisFacts | Mapping[str, Any] | None
    ) -> list[RedisFinding]:
        before = previous.to_dict() if isinstance(previous, RedisFacts) else previous
        found = []

        evicted = _counter_growth(self.evicted_keys, before, "evicted_keys")
        if evicted:
            found.append(
                RedisFinding(
                    "evicted_keys_grew",
                    f"evicted_keys grew by {evicted} to {self.evicted_keys}, so "
                    "Redis deleted keys to free memory and queue data may be lost",
                )
            )
        elif before is None and self.evicted_keys:
            found.append(
                RedisFinding(
                    "evicted_keys_nonzero",
                    f"evicted_keys is {self.evicted_keys} since the last restart "
                    "or CONFIG RESETSTAT, so queue data may have been lost",
                )
            )

        rejected = _counter_growth(
            self.rejected_connections, before, "rejected_connections"
        )
        if rejected:
            found.append(
                RedisFinding(
                    "rejected_connections_grew",
                    f"rejected_connections grew by {rejected} to "
                    f"{self.rejected_connections}: raise maxclients or find "
                    "the client that leaks connections",
                )
            )

        return found

    def persistence_failures(self) -> list[str]:
        """List the failed persistence writes as `field=value`, empty when fine.

        A bgsave status other than ok means a save was attempted and failed,
        so RDB persistence is on even though INFO has no flag for it. The AOF
        write status counts only while AOF is enabled.
        """
        failures = []

        status = self.rdb_last_bgsave_status
        if status is not None and status != "ok":
            failures.append(f"rdb_last_bgsave_status={status}")

        status = self.aof_last_write_status
        if self.aof_enabled and status is not None and status != "ok":
            failures.append(f"aof_last_write_status={status}")

        return failures

    def _persistence_findings(self) -> list[RedisFinding]:
        found = []

        for failure in self.persistence_failures():
            name = failure.partition("=")[0]
            code = (
                "rdb_last_bgsave_failed"
                if name.startswith("rdb")
                else "aof_last_write_failed"
            )
            found.append(
                RedisFinding(
                    code,
                    f"{failure} while persistence is on: check the Redis log "
                    "for the failed write (disk space, permissions)",
                )
            )

        return found

    def _memory_findings(
        self,
        memory_ratio_max: float,
        fragmentation_ratio_max: float,
        fragmentation_bytes_min: int,
    ) -> list[RedisFinding]:
        found = []

        ratio = self.memory_ratio
        if ratio is not None and ratio >= memory_ratio_max:
            found.append(
                RedisFinding(
                    "memory_near_maxmemory",
                    f"used_memory is {ratio:.0%} of maxmemory ({self.used_memory} "
                    f"of {self.maxmemory} bytes), limit {memory_ratio_max:.0%}: "
                    "writes fail with OOM at the limit under noeviction",
                )
            )

        # A high ratio on a small instance is a few MB of allocator overhead,
        # so the ratio counts only when the wasted bytes are large too.
        wasted = self.mem_fragmentation_bytes
        frag = self.mem_fragmentation_ratio
        if (
            frag is not None
            and wasted is not None
            and frag > fragmentation_ratio_max
            and wasted >= fragmentation_bytes_min
        ):
            found.append(
                RedisFinding(
                    "high_fragmentation",
                    f"mem_fragmentation_ratio is {frag} ({wasted} bytes), limit "
                    f"{fragmentation_ratio_max}: consider activedefrag yes",
                )
            )

        return found


def connect(
    url: str,
    password: str | None = None,
    timeout_s: float = 5.0,
    *,
    tls_ca_file: str | None = None,
) -> redis.Redis:
    """Build a client for a redis:// or rediss:// URL without connecting yet.

    `password`, when given, replaces any password in the URL. Commands fail
    after `timeout_s` seconds of connecting or of waiting for a reply, with no
    retry, so a hung Redis costs one timeout per command. `tls_ca_file` names
    the CA bundle that signed the server certificate of a rediss:// URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ProbeError(
            f"Redis URL {redact_url(url)} has scheme {parts.scheme!r}: "
            "use redis://host:port/db or rediss://host:port/db for TLS"
        )

    query = parse_qsl(parts.query)
    url_password = unquote(parts.password) if parts.password else None
    url_password = url_password or dict(query).get("password")
    clean_url = _without_password(url)

    options: dict[str, Any] = {
        "password": password if password is not None else url_password,
        "socket_connect_timeout": timeout_s,
        "socket_timeout": timeout_s,
        "decode_responses": True,
        "retry": Retry(NoBackoff(), 0),
    }
    if tls_ca_file is not None:
        options["ssl_ca_certs"] = tls_ca_file

    try:
        client = redis.Redis.from_url(clean_url, **options)
    except ValueError as exc:
        raise ProbeError(
            f"Redis URL {redact_url(url)} is invalid ({exc}): "
            "use redis://host:port/db or rediss://host:port/db for TLS"
        ) from exc

    log.debug("redis client built for %s", redact_url(url))
    return client


def parse_info(text: str) -> dict[str, str]:
    """Parse INFO text into field -> raw string value.

    Accepts CRLF or LF line endings and partial captures that start
    mid-section. Section headers (`# Memory`) and blank lines are skipped.
    """
    fields: dict[str, str] = {}

    for line in LINE_BREAK.split(text):
        line = line.strip()
        if not line or line.startswith("#"):
            continue

        # Field names never contain ':', but values do (paths, keyspace lines).
        name, colon, value = line.partition(":")
        if colon:
            fields[name.strip()] = value.strip()

    return fields


def facts_from_info(
    url: str, info: Mapping[str, str], ping_ms: float | None = None
) -> RedisFacts:
    """Build facts from parsed INFO fields; a field that is absent stays None."""
    return RedisFacts(
        url=url,
        ping_ok=True,
        ping_ms=ping_ms,
        redis_version=info.get("redis_version"),
        used_memory=_int(info, "used_memory"),
        used_memory_human=info.get("used_memory_human"),
        maxmemory=_int(info, "maxmemory"),
        maxmemory_human=info.get("maxmemory_human"),
        maxmemory_policy=info.get("maxmemory_policy") or None,
        evicted_keys=_int(info, "evicted_keys"),
        rejected_connections=_int(info, "rejected_connections"),
        rdb_last_bgsave_status=info.get("rdb_last_bgsave_status"),
        rdb_changes_since_last_save=_int(info, "rdb_changes_since_last_save"),
        aof_enabled=_flag(info, "aof_enabled"),
        aof_last_write_status=info.get("aof_last_write_status"),
        mem_fragmentation_ratio=_float(info, "mem_fragmentation_ratio"),
        mem_fragmentation_bytes=_int(info, "mem_fragmentation_bytes"),
        connected_clients=_int(info, "connected_clients"),
        info=dict(info),
    )


def read_redis_facts(
    client: redis.Redis, *, password_env: str = DEFAULT_PASSWORD_ENV
) -> RedisFacts:
    """Send PING and one INFO to `client` and return what they showed.

    Never raises for a Redis failure: an unreachable server, a missing or
    wrong password and a timeout come back as facts with `ping_ok` False and
    a `ping_error` that names the URL (without its password) and the fix, where
    `password_env` is the environment variable that contains the password.
    """
    url = client_url(client)
    log.debug("redis probe start url=%s", url)

    try:
        started = time.perf_counter()
        client.ping()
        ping_ms = (time.perf_counter() - started) * 1000.0
    except redis.RedisError as exc:
        message = describe_redis_error(client, exc, password_env=password_env)
        log.warning("redis probe failed url=%s error=%s", url, message)
        return RedisFacts(url=url, ping_ok=False, ping_error=message)

    try:
        info = parse_info(_read_info_text(client))
    except redis.RedisError as exc:
        message = describe_redis_error(client, exc, password_env=password_env)
        log.warning("redis INFO failed url=%s error=%s", url, message)
        return RedisFacts(url=url, ping_ok=True, ping_ms=ping_ms, info_error=message)

    facts = facts_from_info(url, info, ping_ms)
    log.info(
        "redis probe done url=%s ping_ms=%.1f used_memory=%s policy=%s",
        url,
        ping_ms,
        facts.used_memory,
        facts.maxmemory_policy,
    )
    return facts


def describe_redis_error(
    client: redis.Redis,
    exc: BaseException,
    *,
    password_env: str = DEFAULT_PASSWORD_ENV,
) -> str:
    """Explain a redis-py error in one sentence with the URL and the fix.

    The client's password is masked in case a server echoes it back.
    """
    url = client_url(client)
    reason = _mask(str(exc), client)
    kwargs = client.connection_pool.connection_kwargs

    if isinstance(exc, redis.AuthenticationError):
        # The NOAUTH reply text depends on the first command redis-py sends
        # (HELLO or AUTH), so whether a password was sent decides the advice.
        if not kwargs.get("password"):
            return (
                f"Redis at {url} requires a password and none was given: "
                f"set {password_env} to the Redis password"
            )
        if "without any password configured" in reason or "no password" in reason:
            return (
                f"Redis at {url} has no password configured but one was sent "
                f"({reason}): unset {password_env} or configure requirepass"
            )
        return (
            f"Redis at {url} rejected the password ({reason}): "
            f"check {password_env} and the username in the URL"
        )

    if isinstance(exc, redis.TimeoutError):
        timeout = kwargs.get("socket_timeout")
        if issubclass(client.connection_pool.connection_class, redis.SSLConnection):
            # Redis 7 without TLS waits for a command after a TLS handshake
            # starts, so a rediss:// URL for it ends in a timeout, not an error.
            return (
                f"Redis at {url} did not reply within {timeout} s ({reason}): "
                "if the server does not use TLS, write the URL as redis://; "
                "otherwise check that the host and port are right and reachable"
            )
        return (
            f"Redis at {url} did not reply within {timeout} s ({reason}): "
            "check that the host and port are right and reachable"
        )

    if isinstance(exc, redis.ConnectionError):
        return (
            f"cannot connect to Redis at {url} ({reason}): check the URL, "
            "that redis-server is running, and TLS (rediss://) if it requires it"
        )

    return f"Redis at {url} returned an error: {reason}"


def client_url(client: redis.Redis) -> str:
    """Return the client's address as a URL without password or query."""
    kwargs = client.connection_pool.connection_kwargs
    connection_class = client.connection_pool.connection_class
    scheme = "rediss" if issubclass(connection_class, redis.SSLConnection) else "redis"

    user = kwargs.get("username")
    userinfo = f"{quote(user, safe='')}@" if user else ""
    host = kwargs.get("host", "localhost")
    if ":" in host:
        host = f"[{host}]"

    return (
        f"{scheme}://{userinfo}{host}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
    )


def redact_url(url: str) -> str:
    """Return `url` with its password and query string removed, for messages."""
    parts = urlsplit(_without_password(url))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _without_password(url: str) -> str:
    parts = urlsplit(url)

    netloc = parts.netloc.rpartition("@")[2]
    if parts.username:
        netloc = f"{parts.username}@{netloc}"

    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "password"]
    return urlunsplit(
        (parts.scheme, netloc, parts.path, urlencode(query), parts.fragment)
    )


def _read_info_text(client: redis.Redis) -> str:
    # redis-py's INFO callback turns values into ints and floats, but
    # parse_info keeps the raw strings. A second client on the same pool
    # reads the raw reply and leaves the caller's client callbacks alone.
    raw_view = redis.Redis(connection_pool=client.connection_pool)
    raw_view.set_response_callback("INFO", lambda response, **options: response)

    # Plain INFO returns the default sections (server, clients, memory,
    # persistence, stats and more) on every Redis version. INFO with several
    # section names needs Redis 7.0, so one plain INFO is the portable call.
    reply = raw_view.execute_command("INFO")
    if isinstance(reply, bytes):
        return reply.decode("utf-8", errors="replace")
    return str(reply)


def _mask(text: str, client: redis.Redis) -> str:
    password = client.connection_pool.connection_kwargs.get("password")
    if password:
        return text.replace(str(password), "***")
    return text


def _counter_growth(
    current: int | None, before: Mapping[str, Any] | None, name: str
) -> int:
    if current is None or before is None:
        return 0

    previous = before.get(name)
    if not isinstance(previous, int):
        return 0

    # A counter below its previous value was reset, so all of it is new.
    if current < previous:
        return current
    return current - previous


def _int(info: Mapping[str, str], name: str) -> int | None:
    value = info.get(name)
    if value is None:
        return None

    try:
        return int(value)
    except ValueError:
        log.debug("INFO field %s is not an integer: %r", name, value)
        return None


def _float(info: Mapping[str, str], name: str) -> float | None:
    value = info.get(name)
    if value is None:
        return None

    try:
        return float(value)
    except ValueError:
        log.debug("INFO field %s is not a number: %r", name, value)
        return None


def _flag(info: Mapping[str, str], name: str) -> bool | None:
    value = _int(info, name)
    if value is None:
        return None
    return value != 0
