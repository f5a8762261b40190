"""maturin's PEP 517 backend, with cargo's progress on the terminal during ``pip install .``.

pip captures a build backend's output and shows a spinner, so a two-minute Rust build looks
stuck. While maturin builds a wheel, this backend points its stderr (which cargo inherits)
at the controlling terminal when there is one; without a terminal (CI, pipes) nothing
changes. Every hook is maturin's own.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from maturin import build_editable as _build_editable
from maturin import (
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)
from maturin import build_wheel as _build_wheel

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]


@contextlib.contextmanager
def _stderr_on_terminal() -> Iterator[None]:
    try:
        tty = os.open("/dev/tty", os.O_WRONLY | os.O_NOCTTY) if os.name == "posix" else -1
    except OSError:
        tty = -1
    if tty < 0:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(tty, 2)
    os.close(tty)
    try:
        os.write(2, b"exec-router: building the Rust core with cargo\n")
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


# maturin warns when `build-backend` is not literally "maturin"; this backend is maturin's.
os.environ.setdefault("MATURIN_NO_MISSING_BUILD_BACKEND_WARNING", "1")


def _with_progress(hook: Callable[..., str]) -> Callable[..., str]:
    def run(*args: Any, **kwargs: Any) -> str:
        with _stderr_on_terminal():
            return hook(*args, **kwargs)

    run.__name__ = run.__qualname__ = hook.__name__
    run.__doc__ = hook.__doc__
    return run


build_wheel = _with_progress(_build_wheel)
build_editable = _with_progress(_build_editable)
