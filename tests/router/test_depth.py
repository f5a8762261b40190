"""Bounded re-entrancy: calls into the router nest at most ``MAX_DEPTH`` deep
in one thread, on both backends. Past it a planning call answers MARKET with
reason ``invalid_input:depth`` and any other call raises ``RecursionError``.

Python's recursion limit does not protect the native stack, so each case runs
in a fresh interpreter with ``sys.setrecursionlimit(200_000)``, on a thread with
a 256 KiB stack and on the main thread: a crash fails the test, not pytest.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from exec_router.constants import MAX_DEPTH

from ..conftest import Impl

SCRIPT = textwrap.dedent(
    """
    import json, sys, threading
    from exec_router import reference
    from exec_router.config import ExecConfig

    backend, case, where = sys.argv[1:4]
    if backend == "native":
        from exec_router import _core as api
    else:
        api = reference
    sys.setrecursionlimit(200_000)

    class Logger:
        def __init__(self):
            self.messages = []

        def warning(self, msg, *args):
            self.messages.append(msg % args)

    def run(out):
        logger = Logger()
        router = api.ExecutionRouter(ExecConfig(style="taker"), logger=logger, clock=lambda: 1.0)
        seen = {"hooks": 0, "refused": [], "reasons": []}
        quote = api.ExecutionPlan(
            order_type="LIMIT", limit_price=1.0, ttl_s=5.0, is_maker=True, action="EXIT"
        )

        def probe():
            seen["hooks"] += 1
            try:
                router.working("probe")
            except RecursionError as exc:
                seen["refused"].append(str(exc))

        def plan_again(payload, ctx):
            probe()
            if case == "plan_entry":
                plan = router.plan_entry(
                    trade_id="T", asset="BTCUSDT", position_side="LONG", reference_price=1.0
                )
            else:
                plan = router.plan_exit(
                    trade_id="T", asset="BTCUSDT", position_side="LONG",
                    reference_price=1.0, reason="STOP_LOSS",
                )
            seen["reasons"].append(plan.reason)

        def register_again(wo, ctx):
            probe()
            router.register_working(
                trade_id=seen["hooks"], asset="BTCUSDT", position_side="LONG", plan=quote
            )

        class Key:
            def __init__(self, n):
                self.n = n
                self.nested = False

            def __hash__(self):  # hashed more than once: nest only the first time
                if not self.nested:
                    self.nested = True
                    seen["hooks"] += 1
                    try:
                        router.working(Key(self.n + 1))
                    except RecursionError as exc:
                        seen["refused"].append(str(exc))
                return self.n

        if case == "plan_entry":
            router.register_hook("pre_plan", plan_again)
            first = router.plan_entry(
                trade_id="T", asset="BTCUSDT", position_side="LONG", reference_price=1.0
            )
        elif case == "plan_exit":
            router.register_hook("pre_submit", plan_again)
            first = router.plan_exit(
                trade_id="T", asset="BTCUSDT", position_side="LONG",
                reference_price=1.0, reason="STOP_LOSS",
            )
        elif case == "register_working":
            router.register_hook("on_working", register_again)
            first = router.register_working(
                trade_id=0, asset="BTCUSDT", position_side="LONG", plan=quote
            )
        else:
            first = router.working(Key(0))
        out.update(
            first=repr(type(first).__name__),
            hooks=seen["hooks"],
            refused=seen["refused"],
            reasons=seen["reasons"],
            counters=dict(router.counters),
            working=len(router.working_orders()),
            messages=logger.messages,
        )

    out = {}
    if where == "thread":
        threading.stack_size(256 * 1024)
        t = threading.Thread(target=run, args=(out,))
        t.start()
        t.join()
    else:
        run(out)
    print(json.dumps(out))
    """
)


def nest(impl: Impl, case: str, where: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, impl.name, case, where],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)  # type: ignore[no-any-return]


WHERE = ["thread", "main"]
REFUSED = f"working() nested deeper than {MAX_DEPTH} router calls"


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("case", ["plan_entry", "plan_exit"])
def test_planning_past_the_depth_falls_back_to_market(impl: Impl, case: str, where: str) -> None:
    out = nest(impl, case, where)
    # A hook runs at each depth 1..MAX_DEPTH; its probe is refused only at the last.
    assert out["hooks"] == MAX_DEPTH
    assert out["refused"] == [REFUSED]
    taker = "taker_default" if case == "plan_entry" else "taker_exit:STOP_LOSS"
    assert out["reasons"] == ["invalid_input:depth"] + [taker] * (MAX_DEPTH - 1)
    entry = case == "plan_entry"
    plans, takers = ("plans_entry", "taker_entries") if entry else ("plans_exit", "taker_exits")
    assert out["counters"][plans] == MAX_DEPTH + 1
    assert out["counters"][takers] == MAX_DEPTH + 1
    assert out["messages"] == [
        f"exec_router: {case} nested deeper than {MAX_DEPTH} router calls — falling back to MARKET"
    ]


@pytest.mark.parametrize("where", WHERE)
def test_registering_past_the_depth_raises_recursion_error(impl: Impl, where: str) -> None:
    out = nest(impl, "register_working", where)
    # Each of MAX_DEPTH nested calls registers; the last one's hook is refused.
    assert out["hooks"] == MAX_DEPTH
    assert out["refused"] == [REFUSED]
    assert out["working"] == MAX_DEPTH
    assert out["counters"]["hook_errors"] == 1
    (message,) = out["messages"]
    assert f"register_working() nested deeper than {MAX_DEPTH} router calls" in message


@pytest.mark.parametrize("where", WHERE)
def test_a_key_reentering_through_hash_is_bounded(impl: Impl, where: str) -> None:
    out = nest(impl, "key", where)
    assert out["hooks"] == MAX_DEPTH
    assert out["refused"] == [REFUSED]
