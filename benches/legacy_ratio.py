"""Legacy ÷ Rust, paired: ``python benches/legacy_ratio.py path/to/exec_router.py``.

pytest-benchmark times one implementation after the other, so on a shared machine the two
sides of a ratio can see different neighbours (a busy sibling core, a migration). This
script alternates them instead: in each round it times a batch of the Rust core, then a
batch of the legacy router, on the same CPU (the process is pinned), and reports each
side's median per call and the median of the per-round ratios. Each case checks its answer
against the pure reference first. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benches.conftest import INNER, Impl, legacy_impl  # noqa: E402
from benches.test_bench_router import (  # noqa: E402
    PURE,
    exit_,
    exit_loop,
    fields,
    maker_price_loop,
    register_fill_loop,
)

from exec_router import _core  # noqa: E402

Loop = Callable[[], None]
TARGETS = {
    "plan_exit CATASTROPHIC_LOSS": 8.0,
    "maker_price": 4.0,
    "register_working + note_fill": 4.0,
}


def catastrophic(impl: Impl) -> Loop:
    r = impl.router("maker_both")
    got = exit_(r, "CATASTROPHIC_LOSS")
    assert fields(got) == fields(exit_(PURE.router("maker_both"), "CATASTROPHIC_LOSS"))
    return exit_loop(r, "CATASTROPHIC_LOSS")


CASES: dict[str, Callable[[Impl], Loop]] = {
    "plan_exit CATASTROPHIC_LOSS": catastrophic,
    "maker_price": maker_price_loop,
    "register_working + note_fill": register_fill_loop,
}


def per_call(run: Loop, batch: int) -> float:
    t = time.perf_counter_ns()
    for _ in range(batch):
        run()
    return (time.perf_counter_ns() - t) / (batch * INNER)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("legacy", help="path of the legacy router module")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--batch", type=int, default=20, help="loops of 100 calls per side a round")
    args = ap.parse_args()
    os.environ["BENCH_LEGACY"] = args.legacy
    legacy = legacy_impl()
    assert legacy is not None
    native = Impl("rust", _core)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    load = os.getloadavg()[0]
    print(f"load average {load:.2f}; {args.rounds} rounds of {args.batch} x 100 calls")
    print("| case | Rust | legacy | legacy ÷ Rust (median of rounds) | target | |")
    print("|---|---:|---:|---:|---:|---|")
    missed = 0
    for case, make in CASES.items():
        ours, theirs = make(native), make(legacy)
        a, b = [], []
        for _ in range(args.rounds):
            a.append(per_call(ours, args.batch))
            b.append(per_call(theirs, args.batch))
        ratio = statistics.median(y / x for x, y in zip(a, b, strict=True))
        ok = ratio >= TARGETS[case]
        missed += not ok
        print(
            f"| {case} | {statistics.median(a):.0f} ns | {statistics.median(b):.0f} ns "
            f"| {ratio:.1f}× | ≥ {TARGETS[case]:g}× | {'ok' if ok else 'MISSED'} |"
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
