"""The in-tree build backend puts cargo's output on the terminal during `pip install .`."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("maturin")

CHILD = """
import os, sys
sys.path.insert(0, {backend!r})
import maturin_progress as backend

def fake_build(wheel_directory, config_settings=None, metadata_directory=None):
    os.write(2, b"Compiling exec-router (cargo progress)\\n")  # what cargo writes to stderr
    return "exec_router.whl"

captured = open({captured!r}, "wb")
os.dup2(captured.fileno(), 2)  # pip captures the backend's stderr like this
assert backend._with_progress(fake_build)("dist") == "exec_router.whl"
os.write(2, b"after the build\\n")
"""


def _child(tmp_path: Path) -> tuple[str, Path]:
    captured = tmp_path / "captured.txt"
    code = CHILD.format(backend=str(ROOT / "build_backend"), captured=str(captured))
    return code, captured


def test_cargo_output_reaches_the_terminal(tmp_path: Path) -> None:
    code, captured = _child(tmp_path)
    pid, fd = pty.fork()  # the child's controlling terminal is this pty
    if pid == 0:  # pragma: no cover - the child
        os.execv(sys.executable, [sys.executable, "-c", code])
    shown = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, shown
    assert b"Compiling exec-router (cargo progress)" in shown
    assert b"building the Rust core with cargo" in shown
    assert captured.read_bytes() == b"after the build\n"  # stderr restored after the hook


def test_without_a_terminal_nothing_changes(tmp_path: Path) -> None:
    code, captured = _child(tmp_path)
    subprocess.run(
        [sys.executable, "-c", code], check=True, start_new_session=True, stdin=subprocess.DEVNULL
    )
    assert captured.read_bytes() == (b"Compiling exec-router (cargo progress)\nafter the build\n")


def test_the_backend_exports_every_maturin_hook() -> None:
    sys.path.insert(0, str(ROOT / "build_backend"))
    try:
        import maturin
        import maturin_progress
    finally:
        sys.path.remove(str(ROOT / "build_backend"))
    hooks = [n for n in dir(maturin) if n.startswith(("build_", "get_requires_", "prepare_"))]
    assert hooks
    for name in hooks:
        assert callable(getattr(maturin_progress, name)), name
