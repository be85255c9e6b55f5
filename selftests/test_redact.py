"""Self-tests of secret masking."""

from __future__ import annotations

import pytest

from soakcheck.redact import mask_secrets, mask_values

SECRET_CASES = [
    pytest.param(
        "GET /api/monitoring/queue-stats Bearer s3cr3t-Token_value.x",
        "Bearer s3cr3t-Token_value.x",
        "Bearer ***",
        id="bearer-token",
    ),
    pytest.param(
        "Authorization: Basic dXNlcjpwYXNzd29yZA==",
        "dXNlcjpwYXNzd29yZA==",
        "Authorization: Basic ***",
        id="authorization-header",
    ),
    pytest.param(
        '{"headers":{"authorization":"Bearer abc.def.ghi"}}',
        "abc.def.ghi",
        '"authorization":"Bearer ***"',
        id="authorization-json",
    ),
    pytest.param(
        "stripe key sk_live_51HqLyjWDarjtT1zdp7dcXyz9 loaded",
        "51HqLyjWDarjtT1zdp7dc",
        "sk_live_***Xyz9",
        id="stripe-secret-key",
    ),
    pytest.param(
        "restricted rk_test_4eC39HqLyjWDarjtT1zdp7dc",
        "4eC39HqLyjWDarjtT1zd",
        "rk_test_***p7dc",
        id="stripe-restricted-key",
    ),
    pytest.param(
        "STRIPE_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "MfKQ9r8GKYqrTwjUPD8ILPZI",
        "whsec_***",
        id="stripe-webhook-secret",
    ),
    pytest.param(
        "connecting to redis://:hunter2pass@127.0.0.1:6379/0",
        "hunter2pass",
        "redis://:***@127.0.0.1:6379/0",
        id="url-password-only",
    ),
    pytest.param(
        "connecting to rediss://default:p4ss/word@cache.internal:6380",
        "p4ss",
        "rediss://default:***@cache.internal:6380",
        id="url-user-and-password",
    ),
    pytest.param(
        "db connect failed password=correct-horse user=app",
        "correct-horse",
        "password=***",
        id="password-pair",
    ),
    pytest.param(
        '{"user":"app","password": "tr0ub4dor&3"}',
        "tr0ub4dor",
        '"password": "***"',
        id="password-json",
    ),
    pytest.param(
        "posting to https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXX",
        "T00000000/B00000000",
        "https://hooks.slack.com/services/***",
        id="slack-webhook",
    ),
]


@pytest.mark.parametrize(("text", "secret", "masked"), SECRET_CASES)
def test_secret_is_masked(text: str, secret: str, masked: str) -> None:
    """Each kind of secret is replaced, keeping only the parts meant to stay."""
    result = mask_secrets(text)

    assert secret not in result
    assert masked in result


@pytest.mark.parametrize(("text", "secret", "masked"), SECRET_CASES)
def test_masking_twice_changes_nothing(text: str, secret: str, masked: str) -> None:
    """Masking an already masked text returns it unchanged."""
    once = mask_secrets(text)

    assert mask_secrets(once) == once


def test_short_stripe_key_is_masked_whole() -> None:
    """A Stripe key too short to show its last characters safely is masked whole."""
    result = mask_secrets("key sk_test_abc123")

    assert result == "key sk_test_***"


def test_plain_text_is_left_alone() -> None:
    """Text without secrets, even with the words token or password, is unchanged."""
    text = "INFO password reset email sent; nextPageToken cursor advanced; 0 errors"

    assert mask_secrets(text) == text


def test_mask_values_masks_known_secrets() -> None:
    """Configured secret values are masked wherever they appear, longest first."""
    text = "token abcdef123456 and abcdef123456-extended, short ab"

    result = mask_values(text, ["abcdef123456", "abcdef123456-extended", "ab", None])

    assert result == "token *** and ***, short ab"
