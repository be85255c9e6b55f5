"""The one exception probes raise when they cannot measure."""


class ProbeError(Exception):
    """A probe could not reach its system; the message gives the reason and the fix."""
