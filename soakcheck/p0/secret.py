"""A secret value that never shows itself in a repr, a traceback or a report."""

from __future__ import annotations

from dataclasses import dataclass, field

# Prefixes that are not secret in themselves and tell which kind of key it is.
KNOWN_PREFIXES = ("whsec_", "sk_test_", "sk_live_", "rk_test_", "rk_live_")
MASK_MIN_LENGTH = 16


def mask_secret(secret: str) -> str:
    """Show a secret as its kind and last 4 characters: `whsec_…Ab12`."""
    prefix = next((p for p in KNOWN_PREFIXES if secret.startswith(p)), "")
    # The last 4 characters of a short secret give away too much of it.
    tail = secret[-4:] if len(secret) >= MASK_MIN_LENGTH else ""
    return f"{prefix}…{tail}"


@dataclass(frozen=True)
class Secret:
    """A secret and the environment variable it came from.

    pytest prints a failing test's arguments, so a fixture that returns a
    secret must return it wrapped; only `reveal()` gives the value.
    """

    variable: str
    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    @property
    def masked(self) -> str:
        return mask_secret(self._value)

    def __repr__(self) -> str:
        return f"Secret({self.variable}={self.masked})"

    __str__ = __repr__
