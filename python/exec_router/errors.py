"""The package-wide base of the errors exec_router defines."""

from __future__ import annotations


class ExecRouterError(Exception):
    """Base of ``ConfigError``, ``StateError`` and ``JournalError``: catch it to
    catch any of them. Each also keeps its own standard base (``ValueError``)."""
