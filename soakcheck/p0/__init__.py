"""The manual P0 tests' probes: requests that change state on the target.

Only `make p0` sends them, and only to a target whose file sets
`allowed = true` under `[p0]`. Each module reaches the backend (or its Redis)
and returns facts; the tests in tests/p0/ judge them.
"""
