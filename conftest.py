"""Loads the soakcheck plugin for the checklist in tests/."""

pytest_plugins = ["soakcheck.plugin"]
