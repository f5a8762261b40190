"""The package-wide base of the errors exec_router defines."""

from __future__ import annotations


class ExecRouterError(Exception):
    """Base of ``ConfigError``, ``StateError`` and ``JournalError``: catch it to
    catch any of them. Each also keeps its own standard base (``ValueError``)."""


class JournalError(ExecRouterError, ValueError):
    """The journal cannot be read, written or attached: a file that is not a
    journal (or of a newer format), a damaged record (the message names its
    offset), a failed write (the change it announced did not happen), a lock
    held by another process, or a registry change in a forked child."""
