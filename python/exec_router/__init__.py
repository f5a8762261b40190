"""exec_router: the execution-style layer of a trading runtime.

Decides *how* an intent reaches the venue (taker MARKET or post-only maker
LIMIT, quote price, TTL, miss policy), never *whether*. The hot path runs in
a Rust core; ``EXEC_ROUTER_PURE=1`` selects the pure-Python reference
implementation of the same API instead.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Literal

from .config import ConfigError, ExecConfig
from .constants import (
    DEFAULT_TICKS,
    HOOK_STAGES,
    LOGGER,
    MAKER_EXIT_REASONS,
    MAX_DEPTH,
    VALID_EXHAUST,
    VALID_MISS,
    VALID_STYLES,
    MissAction,
)
from .errors import ExecRouterError

__all__ = [
    "BACKEND",
    "DEFAULT_TICKS",
    "HOOK_STAGES",
    "LOGGER",
    "MAKER_EXIT_REASONS",
    "MAX_DEPTH",
    "VALID_EXHAUST",
    "VALID_MISS",
    "VALID_STYLES",
    "ConfigError",
    "ExecConfig",
    "ExecRouterError",
    "ExecutionPlan",
    "ExecutionRouter",
    "Journal",
    "JournalError",
    "MissAction",
    "StateError",
    "WorkingOrder",
    "__version__",
]


def _pure_requested() -> bool:
    return os.environ.get("EXEC_ROUTER_PURE", "").strip() not in ("", "0")


BACKEND: Literal["native", "pure"]

if TYPE_CHECKING:
    from ._core import ExecutionPlan, ExecutionRouter, WorkingOrder
elif _pure_requested():
    from .reference import ExecutionPlan, ExecutionRouter, WorkingOrder
else:
    try:
        from ._core import ExecutionPlan, ExecutionRouter, WorkingOrder
    except ImportError as exc:
        raise ImportError(
            f"exec_router: the native core (exec_router._core) failed to load: {exc}. "
            "Reinstall the wheel for this platform, or set EXEC_ROUTER_PURE=1 to use "
            "the pure-Python reference implementation (much slower)."
        ) from exc

BACKEND = "pure" if _pure_requested() else "native"

if TYPE_CHECKING:
    from .errors import JournalError
    from .journal import Journal
    from .state import StateError

    __version__: str

_LAZY = {"Journal": "journal", "JournalError": "errors", "StateError": "state"}


def _version() -> str:
    """Cargo.toml's version: built into the core, else the installed distribution's."""
    try:
        from ._core import __version__ as version
    except ImportError:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        try:
            return dist_version("exec-router")
        except PackageNotFoundError:
            return "0+unknown"
    return version


def __getattr__(name: str) -> object:
    """Import the journal and state helpers, and read the version, on first use."""
    if name == "__version__":
        return _version()
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
