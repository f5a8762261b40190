"""The runnable examples of README.md and docs/*.md run, and pass, on both backends.

A ```python block preceded by ``<!-- test: run -->`` is executed in a fresh
interpreter with ``EXEC_ROUTER_PURE`` set for the backend under test; one
preceded by ``<!-- test: skip -->`` is documentation only. Every python block
must carry one of the two markers. Every relative link between these files
points at a file that exists and, with a ``#fragment``, at one of its headings.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = "<!-- test: run -->"
SKIP = "<!-- test: skip -->"
MIN_RUNNABLE = 6


class Backend(Protocol):
    """The part of conftest's ``Impl`` used here: which backend to run."""

    name: str


@dataclass(frozen=True)
class Block:
    file: str  # relative to the repository root
    line: int  # 1-based line of the opening fence
    marker: str | None
    code: str


def python_blocks(path: Path) -> list[Block]:
    """Fenced python blocks, each with the marker directly above it (blank lines allowed)."""
    name = path.relative_to(ROOT).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
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
                raise AssertionError(f"{name}:{start + 1}: unterminated code fence")
            if lang == "python":
                code = "\n".join(lines[start + 1 : i]) + "\n"
                blocks.append(Block(name, start + 1, marker, code))
            marker = None
        elif stripped:
            marker = None
        i += 1
    return blocks


BLOCKS = [block for path in DOCS for block in python_blocks(path)]
RUNNABLE = [b for b in BLOCKS if b.marker == RUN]


def _package_root() -> str:
    spec = importlib.util.find_spec("exec_router")
    assert spec is not None
    assert spec.submodule_search_locations
    return str(Path(next(iter(spec.submodule_search_locations))).parent)


def test_every_python_block_is_marked() -> None:
    unmarked = [f"{b.file}:{b.line}" for b in BLOCKS if b.marker is None]
    assert not unmarked, f"python blocks without {RUN} or {SKIP} at {unmarked}"
    assert len(RUNNABLE) >= MIN_RUNNABLE
    assert all("assert " in b.code for b in RUNNABLE)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_markers_precede_python_blocks(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    name = path.relative_to(ROOT).as_posix()
    marked = sum(1 for b in BLOCKS if b.file == name and b.marker is not None)
    assert text.count(RUN) + text.count(SKIP) == marked


def test_docs_have_runnable_examples() -> None:
    files = {b.file for b in RUNNABLE}
    assert {"README.md", "docs/router.md", "docs/simulator.md"} <= files


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, fragment = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        missing = not dest.exists()
        if missing or (fragment and fragment not in anchors(dest)):
            broken.append(target)
    assert not broken, f"{path.name}: broken links {broken}"


def test_readme_is_short() -> None:
    # 300: the journal's guarantees, each with its test (issue 10), are listed in it.
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 300


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: f"{b.file}:{b.line}")
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
    assert proc.returncode == 0, f"{block.file}:{block.line} failed:\n{proc.stderr}"
    assert proc.stdout.splitlines()[-1] == f"backend={impl.name}"
