"""Health responses: every framework shape and every broken body is read right."""

import json
from pathlib import Path

import pytest

from soakcheck.probes.health import interpret, percentile

CASES = Path(__file__).resolve().parent.parent / "fixtures" / "health"
MANIFEST = json.loads((CASES / "cases.json").read_text())["cases"]


def _content_type(case: dict) -> str:
    return case["content_type"].replace(" (default)", "").replace(" (assumed)", "")


@pytest.mark.parametrize(
    "case", [pytest.param(case, id=case["file"]) for case in MANIFEST]
)
@pytest.mark.parametrize("preset", ["auto"])
def test_overall_verdict(case: dict, preset: str) -> None:
    """Each sample gets the overall verdict its manifest expects."""
    raw = (CASES / case["file"]).read_bytes()

    facts = interpret(
        "http://127.0.0.1/health",
        case["http_status"],
        _content_type(case),
        raw,
        preset=preset,
    )

    assert facts.overall == case["expected_overall"], facts.invalid_reason


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, id=case["file"])
        for case in MANIFEST
        if "expected_failing_components" in case
    ],
)
def test_failing_components(case: dict) -> None:
    """Exactly the components the manifest names are read as failing."""
    raw = (CASES / case["file"]).read_bytes()

    facts = interpret("u", case["http_status"], _content_type(case), raw, preset="auto")
    failing = sorted(name for name, ok in facts.services.items() if not ok)

    assert failing == sorted(case["expected_failing_components"])


def test_terminus_message_kept() -> None:
    """A Terminus component's error message is kept for the report."""
    raw = (CASES / "nestjs_terminus_error_503.json").read_bytes()

    facts = interpret("u", 503, "application/json", raw, preset="terminus")

    assert facts.service_messages["redis"] == "Connection is closed."


def test_health_json_warnings() -> None:
    """Checks in warn state of a health+json response are listed as warnings."""
    raw = (CASES / "health_json_ietf_draft_example.json").read_bytes()

    facts = interpret("u", 200, "application/health+json", raw, preset="health+json")

    assert sorted(facts.warnings) == [
        "cassandra:connections",
        "cpu:utilization",
        "memory:utilization",
    ]
    assert facts.uptime_s == pytest.approx(1209600.245)


def test_custom_uptime_read() -> None:
    """The uptime of a custom response is read from its top-level field."""
    raw = (CASES / "custom_services_objects_uptime.json").read_bytes()

    facts = interpret("u", 200, "application/json", raw, preset="auto")

    assert facts.uptime_s == 3600


def test_proxy_page_reported() -> None:
    """An nginx 502 page is invalid, naming the status and the page's first bytes."""
    raw = (CASES / "bad" / "nginx_502_bad_gateway.html").read_bytes()

    facts = interpret("u", 502, "text/html", raw)

    assert facts.overall == "invalid"
    assert "HTML page" in facts.invalid_reason
    assert "HTTP 502" in facts.invalid_reason
    assert "502 Bad Gateway" in facts.invalid_reason


def test_truncated_json_reported() -> None:
    """A body cut mid-document is reported as truncated JSON, not as healthy."""
    raw = (CASES / "bad" / "truncated_json_200.json").read_bytes()

    facts = interpret("u", 200, "application/json", raw)

    assert facts.overall == "invalid"
    assert "truncated JSON" in facts.invalid_reason


def test_seed_shape_read() -> None:
    """The seed backend's answer gives four service flags and the uptime."""
    body = {
        "status": "ok",
        "services": {
            "database": True,
            "supabase": True,
            "backgroundJobs": True,
            "webhookQueue": False,
        },
        "uptime": 7213.4,
    }

    facts = interpret("u", 200, "application/json", json.dumps(body).encode())

    assert facts.services["webhookQueue"] is False
    assert facts.overall == "unhealthy"
    assert facts.uptime_s == 7213.4
    assert facts.http_status_disagrees_with_body


def test_status_disagreement_flagged() -> None:
    """HTTP 200 with a DOWN body follows the body and is flagged."""
    facts = interpret("u", 200, "application/json", b'{"status": "DOWN"}')

    assert facts.overall == "unhealthy"
    assert facts.http_status_disagrees_with_body


def test_binary_body_survives() -> None:
    """Binary bytes in a body give an invalid answer, not an exception."""
    facts = interpret("u", 200, "application/octet-stream", b"\x00\xff\xfe{\x80")

    assert facts.overall == "invalid"


def test_long_body_cut_with_marker() -> None:
    """A long body is cut in the report with a visible marker."""
    facts = interpret("u", 500, "text/plain", b"x" * 5000)

    assert "cut, 5000 chars" in facts.body_excerpt


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        pytest.param([10.0], 10.0, id="one"),
        pytest.param([1.0, 2.0, 3.0, 4.0, 100.0], 100.0, id="five-with-outlier"),
        pytest.param([float(n) for n in range(1, 101)], 95.0, id="hundred"),
    ],
)
def test_percentile_nearest_rank(samples: list[float], expected: float) -> None:
    """p95 uses the nearest-rank method."""
    assert percentile(samples, 95) == expected
