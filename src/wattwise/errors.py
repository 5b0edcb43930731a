"""Errors meant for the person at the terminal: the CLI prints their message without a traceback."""

from __future__ import annotations


class WattwiseError(Exception):
    """A problem the user can fix (bad input, missing file, unavailable provider)."""


class ConfigError(WattwiseError):
    """A setting or an argument has a value that cannot be used."""
