"""kill -9: the journal holds exactly what the killed process acknowledged.

A child (tests/journal/journal_child.py) journals a seeded random sequence of
register/replace/fill/cancel/clear ops and acknowledges each op on stdout once
the call has returned. The parent replays the same sequence on a model of the
registry, kills the child with SIGKILL at a random point, restores from the
journal, and checks: every acknowledged registration not acknowledged-removed
is there with its fields, nothing acknowledged-removed is, and the one op in
flight (started, unacknowledged) is either wholly absent or applied. The next
child resumes from the same journal (restore, then attach a busy router).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from exec_router.journal import Journal

from .journal_child import PUTS, acknowledged, backend, expected_order, next_op

CHILD = Path(__file__).with_name("journal_child.py")
COMPACTIONS: list[int] = []  # reported by children that finished
MAX_OPS = 1200
# Per generation: ack count after which the parent kills the child; "attach"
# kills it as soon as it starts attaching (a snapshot being written); None
# lets it finish. 22 kills per backend at seeded random points.
_rng = random.Random(2026)
KILL_PLAN: list[int | str | None] = [
    *[400, "attach", 0, 1],
    *(_rng.randrange(2, MAX_OPS) for _ in range(18)),
    "attach",
    None,
]
DEADLINE_TOL = 0.05  # wall-clock jitter between two processes' clock offsets


def apply(model: dict[Any, dict[str, Any]], op: dict[str, Any], order: Any) -> None:
    if op["op"] in PUTS:
        model[op["tid"]] = order
    else:
        model.pop(op["tid"], None)


def counted(counters: dict[str, int], op: dict[str, Any], model: dict[Any, Any]) -> dict[str, int]:
    """Counters after ``op`` on ``model``, from ``counters`` before it."""
    after = dict(counters)
    if op["tid"] in model and op["op"] in ("fill", "cancel"):
        after["fills_working" if op["op"] == "fill" else "cancels"] += 1
    return after


def same_orders(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> bool:
    """Equal, field by field and in order; deadlines within DEADLINE_TOL (when known)."""
    if len(got) != len(want):
        return False
    for g, w in zip(got, want, strict=True):
        g, w = dict(g), dict(w)
        gd, wd = g.pop("deadline_wall"), w.pop("deadline_wall", None)
        if g != w or (wd is not None and abs(gd - wd) > DEADLINE_TOL):
            return False
    return True


def run_generation(
    path: Path, seed: int, backend_name: str, resume: bool, kill: int | str | None
) -> tuple[list[dict[str, Any]], bool]:
    """Run one child; return its acknowledged op lines and whether it was killed mid-run."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), str(seed), backend_name,
         "resume" if resume else "new", str(MAX_OPS)],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[bytes] = []
    acks = 0
    killed = False
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(b"{"):
            acks += 1
        at_attach = kill == "attach" and line == b"attaching\n"
        at_ready = kill == 0 and line == b"ready\n"
        if at_attach or at_ready or (isinstance(kill, int) and kill > 0 and acks == kill):
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
    lines.extend(proc.stdout.read().splitlines(keepends=True))  # written before the kill
    for line in lines:
        if line.startswith(b"compactions "):
            COMPACTIONS.append(int(line.split()[1]))
    proc.stdout.close()
    code = proc.wait()
    assert code == (-signal.SIGKILL if killed else 0), code
    finished = any(line == b"done\n" for line in lines)
    assert killed or finished
    acked = [json.loads(line) for line in lines if line.startswith(b"{") and line.endswith(b"\n")]
    return acked, not finished


@pytest.mark.parametrize("backend_name", ["native", "pure"])
def test_kill9_restores_exactly_what_was_acknowledged(tmp_path: Path, backend_name: str) -> None:
    module = backend(backend_name)
    path = tmp_path / "router.journal"
    model: dict[Any, dict[str, Any]] = {}
    counters: dict[str, int] | None = None
    stats = {"kills": 0, "mid_stream": 0, "acked": 0, "inflight_applied": 0}
    for gen, kill in enumerate(KILL_PLAN):
        seed = 7919 * (gen + 1)
        acked, interrupted = run_generation(path, seed, backend_name, gen > 0, kill)
        stats["kills"] += kill is not None
        stats["mid_stream"] += interrupted and bool(acked)
        stats["acked"] += len(acked)
        # Replay the child's sequence on the model.
        rng = random.Random(seed)
        for ack in acked:
            op = next_op(rng, list(model))
            assert (ack["op"], ack["tid"]) == (op["op"], op["tid"])
            apply(model, op, ack["wo"])
            counters = ack["counters"]
        want = list(model.values())

        with Journal(path) as journal:
            restored = journal.restore(router_type=module.ExecutionRouter)
        got = [acknowledged(wo) for wo in restored.working_orders()]
        got_counters = dict(restored.counters)

        if same_orders(got, want) and counters in (None, got_counters):
            pass
        else:
            # Only the op in flight may differ: it must then be wholly applied.
            assert interrupted, f"gen {gen}: journal != acknowledged"
            op = next_op(rng, list(model))
            alt = dict(model)
            apply(alt, op, expected_order(op) if op["op"] in PUTS else None)
            assert same_orders(got, list(alt.values())), f"gen {gen}: in-flight op half applied"
            before = counters or dict.fromkeys(got_counters, 0)
            assert got_counters in (before, counted(before, op, model)), f"gen {gen}: counters"
            stats["inflight_applied"] += 1
        # The next child resumes from what the journal holds.
        model = {o["trade_id"]: o for o in got}
        counters = got_counters
    assert stats["kills"] >= 20
    assert stats["acked"] > 2 * MAX_OPS
    assert COMPACTIONS
    assert COMPACTIONS[-1] >= 1
    print(f"kill9[{backend_name}]: {stats}, compactions in the last child: {COMPACTIONS[-1]}")
