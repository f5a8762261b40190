"""Memory: the native router's resident set does not grow over 500k trading cycles.

A cycle plans an entry and an exit, registers the quote, polls ``expired`` and fills or
cancels it, with hooks that close over the router and one that raises (so the error
path and its log call run too). The loop runs in a fresh interpreter: RSS is read from
``/proc/self/statm`` after a warm-up of 50k cycles and again at the end. A leak of a
few bytes a cycle would add megabytes; the bound is a memory bound, not a timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("exec_router._core", reason="exec_router._core is not built")
pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm (Linux)"
)

WARMUP = 50_000
CYCLES = 500_000
GROWTH_LIMIT = 2 * 1024 * 1024  # bytes: 4 bytes a cycle would already exceed it

SCRIPT = textwrap.dedent(
    """
    import gc, json, os, sys
    from exec_router import _core
    from exec_router.config import ExecConfig

    PAGE = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE

    class Quiet:
        def warning(self, msg, *args):
            pass

    now = [1000.0]
    config = ExecConfig(style="maker_both", entry_miss="retry")
    router = _core.ExecutionRouter(config, logger=Quiet(), clock=lambda: now[0])
    seen = [0]

    def count(payload, ctx, r=router):
        seen[0] += 1

    def boom(payload, ctx):
        raise RuntimeError("hook bug")

    router.register_hook("pre_submit", count)
    router.register_hook("on_working", count)
    router.register_hook("on_fill", boom)
    router.register_hook("on_cancel", count)

    def cycle(i):
        tid = f"t{i}"
        entry = router.plan_entry(
            trade_id=tid, asset="BTCUSDT", position_side="LONG", reference_price=65000.0,
            spread_bps=1.0,
        )
        router.register_working(trade_id=tid, asset="BTCUSDT", position_side="LONG", plan=entry)
        router.plan_exit(
            trade_id=tid, asset="ETHUSDT", position_side="LONG", reference_price=3000.0,
            reason="STOP_LOSS",
        )
        now[0] += 0.001
        router.expired()
        if i % 2:
            router.note_fill(tid)
        else:
            router.note_cancel(tid)
        if i % 1000 == 0:
            router.snapshot()

    for i in range(WARMUP):
        cycle(i)
    gc.collect()
    warm = rss()
    for i in range(WARMUP, CYCLES):
        cycle(i)
    gc.collect()
    end = rss()
    print(json.dumps({"warm": warm, "end": end, "counters": dict(router.counters),
                      "seen": seen[0], "working": len(router.working_orders())}))
    """
)


def test_native_rss_is_flat_over_500k_cycles() -> None:
    script = f"WARMUP = {WARMUP}\nCYCLES = {CYCLES}\n{SCRIPT}"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    counters = result["counters"]
    assert counters["plans_entry"] == CYCLES
    assert counters["maker_entries"] == CYCLES
    assert counters["fills_working"] + counters["cancels"] == CYCLES
    assert counters["hook_errors"] == CYCLES // 2
    assert result["working"] == 0
    assert result["seen"] == 3 * CYCLES + CYCLES // 2  # pre_submit x2, on_working, on_cancel
    growth = result["end"] - result["warm"]
    assert growth <= GROWTH_LIMIT, f"RSS grew by {growth} bytes after warm-up ({result})"
