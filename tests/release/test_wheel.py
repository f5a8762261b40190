"""The release wheel `make test` built and installed: manylinux tag, stripped, licence.

`make test-python` passes the wheel in ``EXEC_ROUTER_WHEEL`` (and the expected tag in
``EXEC_ROUTER_WHEEL_TAG``); without it there is no wheel to check.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

WHEEL = os.environ.get("EXEC_ROUTER_WHEEL", "").strip()
TAG = os.environ.get("EXEC_ROUTER_WHEEL_TAG", "manylinux_2_17")

pytestmark = pytest.mark.skipif(not WHEEL, reason="no wheel given (make test passes one)")


def _core_member(wheel: zipfile.ZipFile) -> str:
    (member,) = [
        n
        for n in wheel.namelist()
        if n.startswith("exec_router/_core.") and n.endswith((".so", ".pyd"))
    ]
    return member


def test_auditwheel_confirms_the_tag() -> None:
    auditwheel = shutil.which("auditwheel", path=str(Path(sys.executable).parent))
    assert auditwheel, "auditwheel is in the dev group"
    proc = subprocess.run([auditwheel, "show", WHEEL], capture_output=True, text=True, check=True)
    tag = f"{TAG}_{platform.machine()}"
    assert f'is consistent with the following platform tag:\n"{tag}"' in proc.stdout
    assert tag in Path(WHEEL).name


def test_the_extension_is_stripped(tmp_path: Path) -> None:
    from elftools.elf.elffile import ELFFile  # auditwheel's dependency

    with zipfile.ZipFile(WHEEL) as wheel:
        so = Path(wheel.extract(_core_member(wheel), tmp_path))
    with so.open("rb") as fh:
        sections = {s.name for s in ELFFile(fh).iter_sections()}
    assert ".dynsym" in sections
    assert not sections & {".symtab", ".debug_info", ".debug_line"}, sections


def test_the_wheel_ships_the_licence() -> None:
    with zipfile.ZipFile(WHEEL) as wheel:
        licences = [n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert len(licences) == 1
        assert wheel.read(licences[0]).decode().startswith("MIT License")


def test_the_installed_core_is_the_wheels() -> None:
    import exec_router._core as core

    installed = Path(core.__file__)
    with zipfile.ZipFile(WHEEL) as wheel:
        assert installed.read_bytes() == wheel.read(_core_member(wheel))
