"""The typed user script (``mypy --strict`` in ``make lint``) also runs, on both backends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("user_script.py")


@pytest.mark.parametrize("pure", ["", "1"], ids=["native", "pure"])
def test_user_script_runs(pure: str) -> None:
    env = {**os.environ, "EXEC_ROUTER_PURE": pure}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
