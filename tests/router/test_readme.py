"""The README's runnable examples run, and pass their asserts, on both backends.

A ```python block preceded by ``<!-- test: run -->`` is executed in a fresh
interpreter with ``EXEC_ROUTER_PURE`` set for the backend under test; one
preceded by ``<!-- test: skip -->`` is documentation only. Every python block
must carry one of the two markers.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
RUN = "<!-- test: run -->"
SKIP = "<!-- test: skip -->"
MIN_RUNNABLE = 6


class Backend(Protocol):
    """The part of conftest's ``Impl`` used here: which backend to run."""

    name: str


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    marker: str | None
    code: str


def python_blocks(text: str) -> list[Block]:
    """Fenced python blocks, each with the marker directly above it (blank lines allowed)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    marker: str | None = None
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped in (RUN, SKIP):
            marker = stripped
        elif stripped.startswith("```"):
            start, lang = i, stripped[3:].strip()
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                i += 1
            if i == len(lines):
                raise AssertionError(f"README.md:{start + 1}: unterminated code fence")
            if lang == "python":
                blocks.append(Block(start + 1, marker, "\n".join(lines[start + 1 : i]) + "\n"))
            marker = None
        elif stripped:
            marker = None
        i += 1
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))
RUNNABLE = [b for b in BLOCKS if b.marker == RUN]


def _package_root() -> str:
    spec = importlib.util.find_spec("exec_router")
    assert spec is not None
    assert spec.submodule_search_locations
    return str(Path(next(iter(spec.submodule_search_locations))).parent)


def test_every_python_block_is_marked() -> None:
    unmarked = [b.line for b in BLOCKS if b.marker is None]
    assert not unmarked, f"python blocks without {RUN} or {SKIP} at README.md lines {unmarked}"
    assert len(RUNNABLE) >= MIN_RUNNABLE
    assert all("assert " in b.code for b in RUNNABLE)


def test_markers_precede_python_blocks() -> None:
    text = README.read_text(encoding="utf-8")
    marked = sum(1 for b in BLOCKS if b.marker is not None)
    assert text.count(RUN) + text.count(SKIP) == marked


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: f"line{b.line}")
def test_readme_example_runs(impl: Backend, block: Block, tmp_path: Path) -> None:
    env = dict(os.environ)
    env.pop("EXEC_ROUTER_PURE", None)
    if impl.name == "pure":
        env["EXEC_ROUTER_PURE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(), env.get("PYTHONPATH")]))
    code = block.code + "\nimport exec_router as _er\nprint('backend=' + _er.BACKEND)\n"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"README.md:{block.line} failed:\n{proc.stderr}"
    assert proc.stdout.splitlines()[-1] == f"backend={impl.name}"
