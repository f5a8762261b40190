"""Release metadata: one version, --version, licence, classifiers, URLs, groups, sdist."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from importlib.metadata import metadata, version
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

import exec_router

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def cargo_version() -> str:
    text = (ROOT / "Cargo.toml").read_text(encoding="utf-8")
    package = text.split("[package]", 1)[1].split("\n[", 1)[0]
    found = re.search(r'^version = "([^"]+)"', package, re.M)
    assert found
    return found.group(1)


def test_one_version_from_cargo_toml() -> None:
    assert exec_router.__version__ == cargo_version() == version("exec-router")
    assert "version" in PYPROJECT["project"]["dynamic"]
    assert "version" not in PYPROJECT["project"]


def test_version_flag() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "exec_router", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (0, f"exec-router {cargo_version()}\n")


def test_licence_classifiers_and_urls() -> None:
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    meta = metadata("exec-router")
    assert meta["License-Expression"] == "MIT"
    assert "LICENSE" in (meta.get_all("License-File") or [])
    classifiers = set(meta.get_all("Classifier") or [])
    for minor in range(10, 15):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert {"Programming Language :: Rust", "Typing :: Typed"} <= classifiers
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls)
    assert meta["Requires-Python"] == ">=3.10"


def _group(name: str, env: dict[str, str]) -> list[str]:
    """The names the dependency group installs under ``env`` (includes followed)."""
    names: list[str] = []
    for item in PYPROJECT["dependency-groups"][name]:
        if isinstance(item, dict):
            names += _group(item["include-group"], env)
            continue
        req = Requirement(item)
        if req.marker is None or req.marker.evaluate(env):
            assert len(req.specifier) == 1, item
            assert str(req.specifier).startswith("=="), item
            names.append(req.name)
    return names


@pytest.mark.parametrize("minor", [10, 11, 12, 13, 14])
@pytest.mark.parametrize("group", ["backend", "build", "sim", "test", "dev"])
def test_dependency_groups_pin_each_package_once(group: str, minor: int) -> None:
    env = {"python_version": f"3.{minor}", "sys_platform": "linux", "platform_system": "Linux"}
    names = _group(group, env)
    assert names
    assert len(names) == len(set(names)), names
    assert Marker("python_version >= '3.10'").evaluate(env)


def test_sim_extra_matches_the_sim_group() -> None:
    extra = {Requirement(r).name for r in PYPROJECT["project"]["optional-dependencies"]["sim"]}
    group = set(_group("sim", {"python_version": "3.13"}))
    assert extra == group


def test_sdist_holds_the_licence_and_the_sources(tmp_path: Path) -> None:
    maturin = shutil.which("maturin", path=str(Path(sys.executable).parent))
    if maturin is None:
        pytest.skip("maturin is not installed beside this interpreter")
    subprocess.run(
        [maturin, "sdist", "--out", str(tmp_path)], cwd=ROOT, check=True, capture_output=True
    )
    (sdist,) = tmp_path.glob("exec_router-*.tar.gz")
    assert sdist.name == f"exec_router-{cargo_version()}.tar.gz"
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in (
        "LICENSE",
        "Cargo.toml",
        "Cargo.lock",
        "pyproject.toml",
        "rust/lib.rs",
        "python/exec_router/__init__.py",
        "python/exec_router/_core.pyi",
        "python/exec_router/py.typed",
        "build_backend/maturin_progress.py",
    ):
        assert needed in names, needed
