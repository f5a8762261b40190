"""Child process of the journal kill -9 test (tests/journal/test_journal_crash.py).

``journal_child.py PATH SEED BACKEND MODE MAX_OPS``: attach a journal at PATH
to a router (MODE "new": an empty one; "resume": the one the journal holds),
then run MAX_OPS seeded random registry ops. Prints ``attaching`` and
``ready`` around ``attach``, then one JSON line per acknowledged op (the call
returned), flushed, so the parent knows what the process acknowledged. The
journal compacts past 16 KiB (not 1 MiB), every few dozen ops, so kills also
land in compactions; the last line before ``done`` gives their count.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import random
import sys
import time
from typing import Any

ENTRY_RETRIES = 3
COMPACT_BYTES = 16 << 10
PUTS = ("register", "replace")


def next_op(rng: random.Random, keys: list[Any]) -> dict[str, Any]:
    """The next op, from the seeded ``rng`` and the registry's ids in registration order."""
    r = rng.random()
    if keys and r < 0.15:
        op, tid = "replace", rng.choice(keys)
    elif keys and r < 0.35:
        op, tid = "fill", rng.choice(keys)
    elif keys and r < 0.48:
        op, tid = "cancel", rng.choice(keys)
    elif keys and r < 0.56:
        op, tid = "clear", rng.choice(keys)
    elif r < 0.60:
        op, tid = rng.choice(["fill", "cancel", "clear"]), "never-registered"
    else:
        op = "register"
        n = rng.randrange(10**6)
        tid = n if rng.random() < 0.3 else f"t{n}"
    if op not in PUTS:
        return {"op": op, "tid": tid}
    action = rng.choice(["ENTER", "EXIT"])
    return {
        "op": op,
        "tid": tid,
        "asset": rng.choice(["BTCUSDT", "ETHUSDT", "SOLUSDT"]),
        "position_side": rng.choice(["LONG", "short"]),
        "base_trade_id": rng.choice([None, f"b{rng.randrange(100)}"]),
        "retry_n": rng.randrange(4),
        "plan": {
            "order_type": "LIMIT",
            "limit_price": round(rng.uniform(1.0, 1e5), 4),
            "post_only": True,
            "ttl_s": rng.choice([0.0, 2.5, 60.0, 3600.0]),
            "is_maker": True,
            "action": action,
            "reason": "maker_entry" if action == "ENTER" else "maker_exit:TAKE_PROFIT",
            "suppress": False,
            "metadata": {"n": rng.randrange(1000), "tags": ["x", rng.random()]},
        },
    }


def expected_order(op: dict[str, Any]) -> dict[str, Any]:
    """The working order a put op registers, as ``order_fields`` spells it (no deadline)."""
    retry_n, action = op["retry_n"], op["plan"]["action"]
    if retry_n > 0:
        retries_left = max(0, ENTRY_RETRIES - retry_n)
    else:
        retries_left = ENTRY_RETRIES if action == "ENTER" else 0
    return {
        "trade_id": op["tid"],
        "asset": op["asset"],
        "side": op["position_side"].upper(),
        "action": action,
        "plan": op["plan"],
        "retries_left": retries_left,
        "base_trade_id": op["base_trade_id"] or op["tid"],
        "retry_n": retry_n,
    }


def order_fields(wo: Any) -> dict[str, Any]:
    """A working order's fields, the plan's spelled out; times left out."""
    plan = {f.name: getattr(wo.plan, f.name) for f in dataclasses.fields(wo.plan)}
    return {
        "trade_id": wo.trade_id,
        "asset": wo.asset,
        "side": wo.side,
        "action": wo.action,
        "plan": plan,
        "retries_left": wo.retries_left,
        "base_trade_id": wo.base_trade_id,
        "retry_n": wo.retry_n,
    }


def acknowledged(wo: Any) -> dict[str, Any]:
    """``order_fields`` plus ``deadline_wall``, the deadline in wall-clock seconds."""
    return {**order_fields(wo), "deadline_wall": wo.deadline + time.time() - time.monotonic()}


def backend(name: str) -> Any:
    return importlib.import_module(
        "exec_router._core" if name == "native" else "exec_router.reference"
    )


def main(path: str, seed: int, backend_name: str, mode: str, max_ops: int) -> None:
    from exec_router import ExecConfig
    from exec_router.journal import Journal

    module = backend(backend_name)
    out = sys.stdout
    journal = Journal(path)
    journal._compact_bytes = COMPACT_BYTES
    if mode == "resume":
        router = journal.restore(router_type=module.ExecutionRouter)
    else:
        router = module.ExecutionRouter(ExecConfig(style="maker_both", entry_retries=ENTRY_RETRIES))
    out.write("attaching\n")
    out.flush()
    journal.attach(router)
    out.write("ready\n")
    out.flush()
    rng = random.Random(seed)
    for _ in range(max_ops):
        op = next_op(rng, [wo.trade_id for wo in router.working_orders()])
        tid = op["tid"]
        wo = None
        if op["op"] in PUTS:
            plan = module.ExecutionPlan(**op["plan"])
            wo = router.register_working(
                trade_id=tid,
                asset=op["asset"],
                position_side=op["position_side"],
                plan=plan,
                base_trade_id=op["base_trade_id"],
                retry_n=op["retry_n"],
            )
        elif op["op"] == "fill":
            router.note_fill(tid)
        elif op["op"] == "cancel":
            router.note_cancel(tid)
        else:
            router.clear_working(tid)
        ack = {
            "op": op["op"],
            "tid": tid,
            "wo": None if wo is None else acknowledged(wo),
            "counters": dict(router.counters),
        }
        out.write(json.dumps(ack) + "\n")
        out.flush()
    out.write(f"compactions {journal.stats()['compactions']}\n")
    journal.close()
    out.write("done\n")
    out.flush()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]))
