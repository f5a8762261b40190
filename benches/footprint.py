"""Bytes per working order: Python heap (tracemalloc) plus the Rust side.

Each measurement runs in a fresh interpreter that registers n orders, each
with its own plan from ``plan_entry``. The Python side is tracemalloc's
growth; the total is the growth of the resident set; the Rust side (the
expiry index and entry set, allocated by Rust) is the difference.

Usage: python benches/footprint.py [N]   (default 1,000,000)
"""

from __future__ import annotations

import os
import subprocess
import sys

CHILD = r"""
import gc, sys, tracemalloc
traced = sys.argv[2] == "traced"
import exec_router as er

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

router = er.ExecutionRouter(er.ExecConfig(style="maker_both"), clock=lambda: 1000.0)
ids = [f"w{i}" for i in range(int(sys.argv[1]))]
gc.collect()
if traced:
    tracemalloc.start()
before = tracemalloc.get_traced_memory()[0] if traced else rss()
plan_entry, register = router.plan_entry, router.register_working
for tid in ids:
    plan = plan_entry(trade_id=tid, asset="BTCUSDT", position_side="LONG", reference_price=65000.0)
    register(trade_id=tid, asset="BTCUSDT", position_side="LONG", plan=plan)
gc.collect()
after = tracemalloc.get_traced_memory()[0] if traced else rss()
assert len(router.working_orders()) == len(ids)
print(after - before)
"""


def measure(backend: str, n: int, mode: str) -> float:
    env = {**os.environ, "EXEC_ROUTER_PURE": "1" if backend == "pure" else ""}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout) / n


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    print("| bytes per working order | n | Python heap (tracemalloc) | Rust side | total (RSS) |")
    print("|---|---:|---:|---:|---:|")
    for backend, size in (("rust", n), ("pure", min(n, 100_000))):
        python, total = measure(backend, size, "traced"), measure(backend, size, "rss")
        rust = f"{total - python:,.0f}" if backend == "rust" else "—"
        print(f"| {backend} | {size:,} | {python:,.0f} | {rust} | {total:,.0f} |")
    print("\nEach order has its own plan; its trade id string (about 56 bytes) is not counted.")


if __name__ == "__main__":
    main()
