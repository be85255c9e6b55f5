"""Self-tests of the Redis probe: INFO samples from real servers and live Redis."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from selftests.redis_server import RedisServer, free_port
from soakcheck.probes.errors import ProbeError
from soakcheck.probes.redis_info import (
    RedisFacts,
    connect,
    facts_from_info,
    parse_info,
    read_redis_facts,
    redact_url,
)

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "redis"
EXPECTED = json.loads((SAMPLES / "expected.json").read_text())["files"]
FACT_NAMES = {f.name for f in fields(RedisFacts)}

# Keys of an expected entry that describe the sample instead of a value.
DESCRIPTIVE_KEYS = {"source", "notes", "same_values_as", "expected_flags"}

SECRET = "s3cret-Pa55word"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path)
    running.wait_ready()
    yield running
    running.stop()


@pytest.fixture
def locked_server(tmp_path: Path) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path, "--requirepass", SECRET)
    running.wait_ready()
    yield running
    running.stop()


def read_sample(name: str) -> str:
    """Return a sample with its line endings as stored, CRLF included."""
    return (SAMPLES / name).read_bytes().decode("utf-8")


def sample_facts(name: str) -> RedisFacts:
    return facts_from_info(f"sample:{name}", parse_info(read_sample(name)))


def calls(stats: dict, command: str) -> int:
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def expected_values() -> list:
    params = []
    for name, entry in EXPECTED.items():
        short = name.removeprefix("info_").removesuffix(".txt")
        for key, value in entry.items():
            if key not in DESCRIPTIVE_KEYS:
                params.append(pytest.param(name, key, value, id=f"{short}-{key}"))
    return params


@pytest.mark.parametrize(("name", "key", "expected"), expected_values())
def test_sample_value_matches_expected(name: str, key: str, expected: object) -> None:
    """Each INFO sample reads to its expected value, and an absent one to None."""
    raw = parse_info(read_sample(name))
    facts = facts_from_info(name, raw)

    # A value annotated "(from ...)" was taken from outside the capture, so
    # the capture itself leaves the field unknown.
    if isinstance(expected, str) and "(from" in expected:
        observed, expected = getattr(facts, key, raw.get(key)), None
    elif key in FACT_NAMES:
        observed = getattr(facts, key)
    else:
        observed = raw.get(key)
        expected = None if expected is None else str(expected)

    assert observed == expected


@pytest.mark.parametrize(
    "name",
    [pytest.param(name, id=name.removeprefix("info_")) for name in EXPECTED],
)
def test_sample_findings_match_expected(name: str) -> None:
    """Each INFO sample raises exactly the flags its expected entry lists."""
    facts = sample_facts(name)

    codes = sorted(finding.code for finding in facts.findings())

    assert codes == sorted(EXPECTED[name].get("expected_flags", []))


def test_parse_info_crlf_values_keep_no_cr() -> None:
    """INFO read with CRLF endings keeps no carriage return in any value."""
    text = read_sample("info_memory_noeviction_CRLF_wire_DERIVED.txt")
    wire = text.replace("\r\n", "\n").replace("\n", "\r\n")

    parsed = parse_info(wire)

    assert not [value for value in parsed.values() if value.endswith("\r")]
    assert parsed["maxmemory_policy"] == "noeviction"


def test_parse_info_lf_and_crlf_agree() -> None:
    """The same INFO text parses alike with LF and with CRLF line endings."""
    text = read_sample("info_7.0.10_persistence_stats_PARTIAL.txt")
    lf = text.replace("\r\n", "\n")

    crlf = lf.replace("\n", "\r\n")

    assert parse_info(lf) == parse_info(crlf)


def test_parse_info_partial_capture() -> None:
    """A capture starting mid-section keeps its first line and colons in values."""
    text = "used_memory:1024\r\n\r\n# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\n"

    parsed = parse_info(text)

    assert parsed["used_memory"] == "1024"
    assert parsed["db0"] == "keys=3,expires=0,avg_ttl=0"
    assert "# Keyspace" not in parsed


def test_maxmemory_zero_means_no_limit() -> None:
    """maxmemory 0 gives no memory ratio and no near-limit finding."""
    facts = facts_from_info("x", {"used_memory": "5000", "maxmemory": "0"})

    codes = [finding.code for finding in facts.findings()]

    assert facts.memory_ratio is None
    assert "memory_near_maxmemory" not in codes


def test_memory_near_maxmemory_flagged() -> None:
    """used_memory at 95 % of maxmemory is flagged."""
    facts = facts_from_info(
        "x",
        {"used_memory": "950", "maxmemory": "1000", "maxmemory_policy": "noeviction"},
    )

    codes = [finding.code for finding in facts.findings()]

    assert codes == ["memory_near_maxmemory"]


def test_evicted_keys_growth_uses_previous_checkpoint() -> None:
    """evicted_keys is flagged when it grew since the previous checkpoint only."""
    info = {"maxmemory_policy": "noeviction", "evicted_keys": "7"}
    facts = facts_from_info("x", info)

    grew = [f.code for f in facts.findings({"evicted_keys": 3})]
    same = [f.code for f in facts.findings({"evicted_keys": 7})]
    after_reset = [f.code for f in facts.findings({"evicted_keys": 50})]

    assert grew == ["evicted_keys_grew"]
    assert same == []
    assert after_reset == ["evicted_keys_grew"]


def test_rejected_connections_growth_flagged() -> None:
    """rejected_connections that grew since the previous facts are flagged."""
    info = {"maxmemory_policy": "noeviction", "rejected_connections": "4"}
    before = facts_from_info("x", {**info, "rejected_connections": "1"})

    codes = [f.code for f in facts_from_info("x", info).findings(before)]

    assert codes == ["rejected_connections_grew"]


@pytest.mark.parametrize(
    ("info", "failures"),
    [
        pytest.param(
            {"rdb_last_bgsave_status": "err"},
            ["rdb_last_bgsave_status=err"],
            id="rdb-err",
        ),
        pytest.param(
            {"aof_enabled": "1", "aof_last_write_status": "err"},
            ["aof_last_write_status=err"],
            id="aof-on-err",
        ),
        pytest.param(
            {"aof_enabled": "0", "aof_last_write_status": "err"},
            [],
            id="aof-off-err",
        ),
        pytest.param(
            {"rdb_last_bgsave_status": "ok", "aof_last_write_status": "ok"},
            [],
            id="all-ok",
        ),
    ],
)
def test_persistence_failures(info: dict[str, str], failures: list[str]) -> None:
    """Failed persistence writes are listed only while that persistence is on."""
    facts = facts_from_info("x", info)

    assert facts.persistence_failures() == failures


def test_connect_rejects_other_scheme() -> None:
    """A URL that is not redis:// or rediss:// is rejected without its password."""
    with pytest.raises(ProbeError) as caught:
        connect(f"http://user:{SECRET}@127.0.0.1:6379/0")

    assert "rediss://" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_connect_rejects_invalid_port() -> None:
    """A URL with a port that is not a number is rejected without its password."""
    with pytest.raises(ProbeError) as caught:
        connect(f"redis://:{SECRET}@127.0.0.1:port/0")

    assert "is invalid" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_redact_url_drops_password_and_query() -> None:
    """redact_url keeps host and user but drops the password and query."""
    url = f"redis://app:{SECRET}@127.0.0.1:6380/2?password={SECRET}"

    assert redact_url(url) == "redis://app@127.0.0.1:6380/2"


def test_live_facts_read(server: RedisServer) -> None:
    """A live Redis returns its version, memory, policy and clients."""
    client = connect(server.url)

    facts = read_redis_facts(client)

    assert facts.ping_ok
    assert facts.ping_ms is not None and facts.ping_ms > 0
    assert facts.redis_version == server.admin().info("server")["redis_version"]
    assert facts.used_memory is not None and facts.used_memory > 0
    assert facts.maxmemory == 0
    assert facts.maxmemory_policy == "noeviction"
    assert facts.aof_enabled is False
    assert facts.connected_clients is not None and facts.connected_clients >= 1
    assert facts.findings() == []


def test_live_read_sends_two_commands(server: RedisServer) -> None:
    """Reading the facts costs one PING and one INFO."""
    client = connect(server.url)
    client.ping()
    admin = server.admin()
    before = admin.info("commandstats")

    read_redis_facts(client)
    after = admin.info("commandstats")

    assert calls(after, "ping") - calls(before, "ping") == 1
    # The admin's own INFO call before the read is the second one counted.
    assert calls(after, "info") - calls(before, "info") == 2


@pytest.mark.parametrize(
    ("policy", "flagged"),
    [
        pytest.param("noeviction", False, id="noeviction-ok"),
        pytest.param("allkeys-lru", True, id="allkeys-lru-flagged"),
        pytest.param("volatile-lru", True, id="volatile-lru-flagged"),
    ],
)
def test_live_eviction_policy(server: RedisServer, policy: str, flagged: bool) -> None:
    """Every maxmemory policy but noeviction is flagged."""
    server.admin().config_set("maxmemory-policy", policy)

    facts = read_redis_facts(connect(server.url))
    codes = [finding.code for finding in facts.findings()]

    assert facts.maxmemory_policy == policy
    assert ("maxmemory_policy_not_noeviction" in codes) is flagged


def test_live_evicted_keys_growth(server: RedisServer) -> None:
    """Writing past a small maxmemory under allkeys-lru shows evicted_keys grow."""
    admin = server.admin()
    client = connect(server.url)
    before = read_redis_facts(client)
    if before.used_memory is None:
        pytest.fail("INFO of the live Redis has no used_memory")
    admin.config_set("maxmemory", before.used_memory + 1024 * 1024)
    admin.config_set("maxmemory-policy", "allkeys-lru")

    # 4 MB of values against a 1 MB margin must evict, in a bounded loop.
    value = "x" * 10_000
    for batch in range(8):
        pipe = admin.pipeline(transaction=False)
        for index in range(50):
            pipe.set(f"fill:{batch}:{index}", value)
        pipe.execute()
    after = read_redis_facts(client)
    codes = [finding.code for finding in after.findings(before)]

    assert after.evicted_keys is not None and after.evicted_keys > 0
    assert "evicted_keys_grew" in codes


def test_live_password_missing(locked_server: RedisServer) -> None:
    """A Redis that needs a password yields a message naming the variable to set."""
    client = connect(locked_server.url)

    facts = read_redis_facts(client, password_env="SOAK_REDIS_PASSWORD")

    assert not facts.ping_ok
    assert facts.ping_error is not None
    assert "set SOAK_REDIS_PASSWORD" in facts.ping_error
    assert locked_server.url in facts.ping_error


def test_live_password_given(locked_server: RedisServer) -> None:
    """The password from the caller overrides a wrong one in the URL."""
    url = f"redis://:wrong@127.0.0.1:{locked_server.port}/0"

    facts = read_redis_facts(connect(url, password=SECRET))

    assert facts.ping_ok
    assert facts.maxmemory_policy == "noeviction"


def test_live_wrong_password_kept_secret(
    locked_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A rejected password appears in no message, repr or log line."""
    caplog.set_level(logging.DEBUG)
    url = f"redis://:{SECRET}-old@127.0.0.1:{locked_server.port}/0"

    facts = read_redis_facts(connect(url), password_env="SOAK_REDIS_PASSWORD")

    assert not facts.ping_ok
    assert facts.ping_error is not None
    assert "rejected the password" in facts.ping_error
    assert SECRET not in facts.ping_error
    assert SECRET not in repr(facts)
    assert SECRET not in json.dumps(facts.to_dict())
    assert SECRET not in caplog.text


def test_live_info_denied(locked_server: RedisServer) -> None:
    """A user allowed PING but not INFO yields ping_ok with an INFO error."""
    locked_server.admin().acl_setuser(
        "pinger", enabled=True, passwords=[f"+{SECRET}"], commands=["+ping"]
    )
    url = f"redis://pinger@127.0.0.1:{locked_server.port}/0"

    facts = read_redis_facts(connect(url, password=SECRET))
    codes = [finding.code for finding in facts.findings()]

    assert facts.ping_ok
    assert facts.info_error is not None
    assert facts.maxmemory_policy is None
    assert codes == ["info_failed", "maxmemory_policy_unknown"]


def test_live_connection_refused() -> None:
    """A port where nothing listens yields a connect error with the fix."""
    url = f"redis://127.0.0.1:{free_port()}/0"

    facts = read_redis_facts(connect(url, timeout_s=1.0))

    assert not facts.ping_ok
    assert facts.ping_error is not None
    assert facts.ping_error.startswith(f"cannot connect to Redis at {url}")


def test_live_silent_server_times_out() -> None:
    """A server that accepts but never replies fails within the timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
        started = time.monotonic()

        facts = read_redis_facts(connect(url, timeout_s=0.3))
        elapsed = time.monotonic() - started

    assert not facts.ping_ok
    assert facts.ping_error is not None
    assert "did not reply within 0.3 s" in facts.ping_error
    assert elapsed < 2.0


def test_live_tls(tmp_path: Path) -> None:
    """A rediss:// URL reaches a TLS-only Redis that uses a self-signed cert."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not found, so no certificate can be made")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt"]
        + ["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    tls = RedisServer(tmp_path, tls=(cert, key))
    tls.wait_ready()
    url = f"rediss://127.0.0.1:{tls.port}/0"

    try:
        facts = read_redis_facts(connect(url, tls_ca_file=str(cert)))
    finally:
        tls.stop()

    assert facts.ping_ok
    assert facts.url == url


def test_live_tls_url_to_plain_server(tmp_path: Path) -> None:
    """A rediss:// URL for a plain Redis times out with a hint to use redis://."""
    plain = RedisServer(tmp_path)
    plain.wait_ready()
    url = f"rediss://127.0.0.1:{plain.port}/0"

    try:
        facts = read_redis_facts(connect(url, timeout_s=0.5))
    finally:
        plain.stop()

    assert not facts.ping_ok
    assert facts.ping_error is not None
    assert "write the URL as redis://" in facts.ping_error
