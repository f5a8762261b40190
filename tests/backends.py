"""The backends under test, native first: the one list the tests and the benches use."""

from __future__ import annotations

import importlib
from types import ModuleType

from exec_router import reference

#: Why the native core is missing (only while developing without a build), or None.
NATIVE_MISSING: str | None = None
try:
    NATIVE: ModuleType | None = importlib.import_module("exec_router._core")
except ImportError as exc:
    NATIVE, NATIVE_MISSING = None, str(exc)

#: (name, module) of each available backend: ("native", _core), then ("pure", reference).
BACKENDS: list[tuple[str, ModuleType]] = [
    *([("native", NATIVE)] if NATIVE is not None else []),
    ("pure", reference),
]
