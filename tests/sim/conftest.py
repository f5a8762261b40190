"""Simulator tests never touch the user's tape cache: one fresh cache per test session."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache() -> Iterator[None]:
    old = os.environ.get("XDG_CACHE_HOME")
    with tempfile.TemporaryDirectory(prefix="exec-router-cache-") as tmp:
        os.environ["XDG_CACHE_HOME"] = tmp
        yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old
