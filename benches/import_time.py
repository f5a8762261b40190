"""``import exec_router`` with the Rust core vs with the pure reference alone.

Runs ``python -X importtime -c "import exec_router"`` in fresh interpreters
and reports the median cumulative import time of the ``exec_router`` package.

Usage: python benches/import_time.py [RUNS]   (default 21)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys


def import_us(pure: bool) -> int:
    env = {**os.environ, "EXEC_ROUTER_PURE": "1" if pure else ""}
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import exec_router"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    for line in out.stderr.splitlines():
        fields = [f.strip() for f in line.removeprefix("import time:").split("|")]
        if len(fields) == 3 and fields[2] == "exec_router":
            return int(fields[1])
    raise RuntimeError("exec_router is missing from -X importtime output")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    native = statistics.median(import_us(False) for _ in range(runs))
    pure = statistics.median(import_us(True) for _ in range(runs))
    print(
        f"import exec_router (median of {runs}, -X importtime cumulative): "
        f"Rust core {native / 1000:.1f} ms, pure reference alone {pure / 1000:.1f} ms "
        f"({native / pure:.2f}×)."
    )


if __name__ == "__main__":
    main()
