"""Print ``make bench``'s table from pytest-benchmark's JSON output.

Usage: python benches/report.py BENCH.json [--check]

Medians per call (a case times ``inner`` calls), the ratio pure ÷ Rust per
case against its target, the maker ``plan_entry`` as a multiple of an empty
call with the same keyword arguments, and the scaling groups by n.
``--check`` exits 1 when a target is missed.
"""

from __future__ import annotations

import json
import platform
import sys
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

#: case -> least pure ÷ Rust ratio; with a legacy module (``make bench LEGACY=path``)
#: the same least ratio for legacy ÷ Rust.
TARGETS = {
    "plan_entry maker": 15,
    "plan_entry taker": 8,
    "plan_exit TAKE_PROFIT maker": 15,
    "plan_exit CATASTROPHIC_LOSS": 8,
    "plan_entry maker, 1 pre_submit hook": 5,
    "maker_price": 4,
    "register_working + note_fill": 4,
    "expired(), 10k working, none due": 1000,
    "plan_entry, 10k working exits": 300,
}
FLOOR = "floor: empty call, 5 kwargs"
FLOOR_LIMIT = 5.0


def per_call(bench: dict[str, Any]) -> float:
    return float(bench["stats"]["median"]) / int(bench["extra_info"].get("inner", 1))


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    for unit, scale in (("ns", 1e9), ("µs", 1e6), ("ms", 1e3)):
        if seconds * scale < 1000:
            return f"{seconds * scale:.3g} {unit}"
    return f"{seconds:.3g} s"


def judge(slow: float | None, rust: float | None, target: float) -> tuple[float | None, str]:
    """``slow ÷ rust`` and whether it meets ``target``."""
    ratio = slow / rust if slow and rust else None
    return ratio, "ok" if ratio is not None and ratio >= target else "MISSED"


def times(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    return f"{ratio:,.0f}×" if ratio >= 100 else f"{ratio:.1f}×"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str]) -> int:
    data = json.loads(Path(argv[0]).read_text())
    medians: dict[tuple[str, str, int | None], float] = {}
    journal: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if "journal" in info:
            journal[bench["group"]][info["journal"]] = per_call(bench)
        else:
            medians[(bench["group"], info["impl"], info.get("n"))] = per_call(bench)

    cpus = data.get("machine_info", {}).get("cpu", {}).get("count", "?")
    print(
        f"exec-router benchmarks, {date.today()}: {cpu_name()}, {cpus} CPUs,"
        f" Python {platform.python_version()}; medians per call, same run.\n"
    )
    legacy = any(impl == "legacy" for _, impl, _ in medians)
    head = "| case | Rust | pure | pure ÷ Rust | target | |"
    rule = "|---|---:|---:|---:|---:|---|"
    if legacy:
        head += " legacy | legacy ÷ Rust | |"
        rule += "---:|---:|---|"
    print(head)
    print(rule)
    missed = 0
    for case, target in TARGETS.items():
        rust, pure = medians.get((case, "native", None)), medians.get((case, "pure", None))
        ratio, status = judge(pure, rust, target)
        missed += status != "ok"
        row = f"| {case} | {fmt(rust)} | {fmt(pure)} | {times(ratio)} | ≥ {target}× | {status} |"
        if legacy:
            old = medians.get((case, "legacy", None))
            old_ratio, old_status = judge(old, rust, target)
            missed += old_status != "ok"
            row += f" {fmt(old)} | {times(old_ratio)} | {old_status} |"
        print(row)

    floor = medians.get((FLOOR, "python", None))
    maker = medians.get(("plan_entry maker", "native", None))
    if floor and maker:
        multiple = maker / floor
        missed += multiple > FLOOR_LIMIT
        print(
            f"\nFloor: an empty Python function called with the same 5 keyword arguments takes"
            f" {fmt(floor)}; the Rust maker plan_entry is {multiple:.1f}× that"
            f" (limit {FLOOR_LIMIT:g}×)."
        )

    scaling: dict[str, dict[tuple[str, int], float]] = defaultdict(dict)
    for (group, impl, n), value in medians.items():
        if n is not None:
            scaling[group][(impl, n)] = value
    if scaling:
        sizes = sorted({n for rows in scaling.values() for _, n in rows})
        print("\n| scaling (median per call) | " + " | ".join(f"n={n:,}" for n in sizes) + " |")
        print("|---|" + "---:|" * len(sizes))
        for group in sorted(scaling):
            for impl in ("native", "pure"):
                row = [fmt(scaling[group].get((impl, n))) for n in sizes]
                print(f"| {group.removeprefix('scaling: ')} ({impl}) | " + " | ".join(row) + " |")
    if journal:
        modes = ("off", "NORMAL", "FULL")
        print("\n| journal (median per call) | " + " | ".join(modes) + " |")
        print("|---|" + "---:|" * len(modes))
        for group in sorted(journal):
            row = [fmt(journal[group].get(m)) for m in modes]
            print(f"| {group.removeprefix('journal: ')} | " + " | ".join(row) + " |")
    if missed:
        print(f"\n{missed} target(s) missed.")
    return 1 if missed and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
