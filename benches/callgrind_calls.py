"""Callgrind instructions per call of the router's hot cases: repeatable on a noisy machine.

``python benches/callgrind_calls.py [--legacy PATH] [--n N] [CASE ...]`` runs each case under
``valgrind --tool=callgrind`` twice, with N and 2N iterations, and prints the difference
divided by N: the instructions of one iteration (the Python loop included), free of start-up
and import. With ``--legacy`` the legacy router module at PATH is measured too.
``--inner IMPL CASE N`` is the driver valgrind runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

CASES = ("register_working + note_fill", "maker_price", "plan_exit CATASTROPHIC_LOSS")


def load(impl: str) -> ModuleType:
    """``native``, ``pure`` or a path to a legacy router module."""
    if impl == "native":
        import exec_router._core as core

        return core
    if impl == "pure":
        import exec_router.reference as reference

        return reference
    spec = importlib.util.spec_from_file_location("exec_router_legacy", impl)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{impl}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def loop(module: ModuleType, case: str) -> Callable[[int], None]:
    """A function making ``n`` calls of ``case``, written out as a runtime makes them."""
    from exec_router import ExecConfig

    config = getattr(module, "ExecConfig", ExecConfig)(style="maker_both")
    r: Any = module.ExecutionRouter(config, clock=lambda: 1000.0)
    if case == "register_working + note_fill":
        plan = r.plan_entry(
            trade_id="t1",
            asset="BTCUSDT",
            position_side="LONG",
            reference_price=65000.0,
            spread_bps=1.0,
        )
        register, fill = r.register_working, r.note_fill

        def run(n: int) -> None:
            for _ in range(n):
                register(trade_id="t1", asset="BTCUSDT", position_side="LONG", plan=plan)
                fill("t1")

        return run
    if case == "maker_price":
        maker_price = r.maker_price

        def run(n: int) -> None:
            for _ in range(n):
                maker_price(asset="ETHUSDT", order_side="SELL", reference_price=3000.0)

        return run
    if case == "plan_exit CATASTROPHIC_LOSS":
        plan_exit = r.plan_exit

        def run(n: int) -> None:
            for _ in range(n):
                plan_exit(
                    trade_id="t1",
                    asset="BTCUSDT",
                    position_side="LONG",
                    reference_price=65000.0,
                    reason="CATASTROPHIC_LOSS",
                    spread_bps=1.0,
                )

        return run
    raise SystemExit(f"unknown case {case!r}; known: {', '.join(CASES)}")


def total(impl: str, case: str, n: int) -> int:
    """Instructions of a whole run of ``n`` iterations under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "--inner",
            impl,
            case,
            str(n),
        ]
        subprocess.run(cmd, check=True, capture_output=True, env={**os.environ})
        found = re.search(r"^summary:\s+(\d+)", out.read_text(), re.MULTILINE)
        if found is None:
            raise SystemExit(f"no summary in {out}")
        return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inner", nargs=3, metavar=("IMPL", "CASE", "N"))
    parser.add_argument("--legacy", help="path of a legacy router module to measure too")
    parser.add_argument("--n", type=int, default=20_000, help="iterations (default 20,000)")
    parser.add_argument("cases", nargs="*", default=list(CASES))
    args = parser.parse_args()
    if args.inner:
        impl, case, n = args.inner
        run = loop(load(impl), case)
        run(100)  # warm caches and the specialising interpreter
        run(int(n))
        return
    impls = ["native"] + ([args.legacy] if args.legacy else [])
    for case in args.cases:
        per = {}
        for impl in impls:
            per[impl] = (total(impl, case, 2 * args.n) - total(impl, case, args.n)) / args.n
        line = f"{case}: native {per['native']:,.0f} instr/call"
        if args.legacy:
            legacy = per[args.legacy]
            line += f", legacy {legacy:,.0f}, legacy / native {legacy / per['native']:.2f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
