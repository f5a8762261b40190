"""Benchmark fixtures: each case runs on the Rust core and the pure reference."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from exec_router import reference

IMPLS = {"rust": importlib.import_module("exec_router._core"), "pure": reference}


@pytest.fixture(params=list(IMPLS), ids=list(IMPLS))
def impl(request: pytest.FixtureRequest) -> tuple[str, ModuleType]:
    return request.param, IMPLS[request.param]
