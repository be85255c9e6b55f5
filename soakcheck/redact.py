"""Secret masking for anything soakcheck writes: reports, log lines, JSON.

`mask_secrets` recognises secrets by their shape (bearer tokens, Stripe keys,
URL passwords, password fields, Slack webhook paths, Authorization headers).
`mask_values` masks secrets known by value, such as the configured monitoring
token, wherever they appear.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

# Values shorter than this are not masked by value: replacing every "ab" or
# "1234" in a report would hide real content and reveal little.
MIN_VALUE_LENGTH = 6

# Stripe keys keep their prefix and, when long enough, their last 4
# characters, as the Stripe dashboard shows them.
_STRIPE_KEY_RE = re.compile(
    r"\b(?P<prefix>(?:sk|rk|pk)_(?:live|test)_|whsec_)(?P<body>[A-Za-z0-9]+)"
)
_STRIPE_KEEP_LAST = 4
_STRIPE_MIN_BODY_FOR_TAIL = 16

# user:password@ in any scheme://, and the password-only form :password@.
# A slash is allowed in the password: people write unencoded ones, and
# masking a port and path by mistake is the safer error. The password is
# bounded and matched without backtracking, because an unbounded one made a
# long line of "a://:" repeats take seconds.
_URL_PASSWORD_RE = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)"
    r"(?P<password>[^\s@]{1,1024}+)(?=@)"
)

# Header form, either as text ("Authorization: Basic xyz") or as a JSON
# member ("authorization":"Bearer xyz"). The scheme word is kept.
_AUTH_HEADER_RE = re.compile(
    r"(?P<head>\b(?:proxy-)?authorization\"?\s*[:=]\s*\"?)"
    r"(?:(?P<scheme>Bearer|Basic|Token|Digest|ApiKey)\s+)?"
    r"(?P<value>[^\s\",;]+)",
    re.IGNORECASE,
)
_BEARER_RE = re.compile(r"\b(?P<head>Bearer\s+)(?P<token>[A-Za-z0-9\-._~+/]+=*)")

# JSON members and key=value pairs whose value is a secret.
_SECRET_KEYS = (
    r"password|passwd|pwd|secret|client_secret|api_key|apikey|api-key|"
    r"access_token|refresh_token|auth_token|token|cookie|set-cookie|"
    r"webhook_secret|signing_secret"
)
_JSON_SECRET_RE = re.compile(
    r"(?P<head>\"(?:" + _SECRET_KEYS + r")\"\s*:\s*\")(?P<value>(?:[^\"\\]|\\.)*)\"",
    re.IGNORECASE,
)
_PAIR_SECRET_RE = re.compile(
    r"(?P<head>(?<![\w-])(?:" + _SECRET_KEYS + r")\s*[=:]\s*)"
    r"(?P<value>(?!\*\*\*)[^\s&;,\"']+)",
    re.IGNORECASE,
)

_SLACK_WEBHOOK_RE = re.compile(
    r"(?P<head>\bhooks\.slack\.com/(?:services|workflows|triggers)/)"
    r"(?P<path>[A-Za-z0-9_/-]+)"
)

# A JSON Web Token outside a bearer header, for example in a query string.
_JWT_RE = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+")


def _mask_stripe_key(match: re.Match[str]) -> str:
    body = match.group("body")
    if len(body) < _STRIPE_MIN_BODY_FOR_TAIL:
        return match.group("prefix") + MASK

    return match.group("prefix") + MASK + body[-_STRIPE_KEEP_LAST:]


def _mask_auth_header(match: re.Match[str]) -> str:
    scheme = match.group("scheme")
    if scheme:
        return f"{match.group('head')}{scheme} {MASK}"

    return match.group("head") + MASK


def mask_secrets(text: str) -> str:
    """Replace every recognised secret in `text` with `***`.

    Masking an already masked text changes nothing, so callers may mask at
    every layer without checking what an earlier layer did.
    """
    if not text:
        return text

    text = _SLACK_WEBHOOK_RE.sub(lambda m: m.group("head") + MASK, text)
    text = _URL_PASSWORD_RE.sub(lambda m: m.group("head") + MASK, text)
    text = _AUTH_HEADER_RE.sub(_mask_auth_header, text)
    text = _BEARER_RE.sub(lambda m: m.group("head") + MASK, text)
    text = _STRIPE_KEY_RE.sub(_mask_stripe_key, text)
    text = _JSON_SECRET_RE.sub(lambda m: f'{m.group("head")}{MASK}"', text)
    text = _PAIR_SECRET_RE.sub(lambda m: m.group("head") + MASK, text)
    return _JWT_RE.sub("eyJ" + MASK, text)


def mask_values(text: str, secrets: Iterable[str | None]) -> str:
    """Replace each occurrence of the given secret values in `text` with `***`.

    Values shorter than `MIN_VALUE_LENGTH` characters and empty or missing
    values are ignored. Longer values are replaced first, so a secret that
    contains another one is masked whole.
    """
    values = sorted(
        {value for value in secrets if value and len(value) >= MIN_VALUE_LENGTH},
        key=len,
        reverse=True,
    )
    for value in values:
        text = text.replace(value, MASK)

    return text
