"""Journal ÷ no journal, paired: ``python benches/journal_ratio.py [--rounds N]``.

``test_bench_journal.py::test_register_fill`` times "off" and "process" one after the
other, and this machine's speed swings from one second to the next. This script alternates
them: in each round it times ``INNER`` ``register_working`` + ``note_fill`` pairs on a
router without a journal and on one with a journal (``sync="process"``, in a temporary
directory on /tmp), on one pinned CPU, and reports each side's median per pair, the median
of the per-round ratios (the issue's target: <= 2) and the journal's bytes per pair.
Compaction is off unless ``--compact`` (its cost is the compaction case's). Not part of
``make test``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benches.conftest import IMPLS, INNER  # noqa: E402
from benches.test_bench_journal import pairs  # noqa: E402

from exec_router.journal import Journal  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--impl", default="native", choices=[i.name for i in IMPLS])
    ap.add_argument("--compact", action="store_true", help="keep the 1 MiB compaction")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    impl = next(i for i in IMPLS if i.name == args.impl)
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        journal = Journal(Path(tmp) / "ratio.journal")
        if not args.compact:
            journal._compact_bytes = 1 << 40
        _, off = pairs(impl, None)
        _, on = pairs(impl, journal)
        start = journal.stats()["bytes"]
        a: list[float] = []
        b: list[float] = []
        for i in range(args.rounds):
            for run, out in ((off, a), (on, b)) if i % 2 else ((on, b), (off, a)):
                t = time.perf_counter_ns()
                run()
                out.append((time.perf_counter_ns() - t) / INNER)
        stats = journal.stats()
        journal.close()
    ratio = statistics.median(y / x for x, y in zip(a, b, strict=True))
    per_pair = (stats["bytes"] - start) / (args.rounds * INNER)
    print(
        f"{impl.name}, {args.rounds} rounds of {INNER} pairs: off {statistics.median(a):.0f} ns, "
        f'sync="process" {statistics.median(b):.0f} ns per pair (medians); '
        f"ratio {ratio:.2f} (median of rounds); {per_pair:.1f} journal bytes per pair"
        + ("" if stats["compactions"] == 0 else f" ({stats['compactions']} compactions)")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
