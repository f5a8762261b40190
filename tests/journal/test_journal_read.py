"""Reading a journal back: the native restore (orders decoded straight into
working orders, registered at once) against the spec's reader and the pure
backend, on hand-made files: trade-id identity, damaged bodies, the index."""

from __future__ import annotations

import gc
import struct
import weakref
from pathlib import Path
from typing import Any

import pytest

from exec_router import journal as journal_module
from exec_router import journal_format as jf
from exec_router.constants import COUNTER_KEYS
from exec_router.errors import JournalError
from exec_router.journal import Journal

from ..backends import BACKENDS
from ..conftest import FakeClock, Impl
from .journal_child import order_fields

WALL, BOOT = 1_700_000_000.0, 5_000.0
PUT, POP, SNAPSHOT = jf.PUT, jf.POP, jf.SNAPSHOT


def enc(value: Any) -> bytes:
    out = bytearray()
    jf.encode_value(out, value, "test")
    return bytes(out)


def raw_str(raw: bytes) -> bytes:
    return b"\x05" + struct.pack("<I", len(raw)) + raw


def put_body(trade_id: Any = "t", **raw: bytes) -> bytes:
    """A PUT body field by field (the spec's layout); ``raw`` replaces a field's bytes."""
    action = raw.get("action_value", b"EXIT")
    fields = {
        "trade_id": enc(trade_id),
        "asset": enc("BTCUSDT"),
        "side": enc("LONG"),
        "action": raw_str(action),
        "order_type": enc("LIMIT"),
        "limit_price": struct.pack("<d", 100.0),
        "post_only": b"\x01",
        "ttl_s": struct.pack("<d", 5.0),
        "is_maker": b"\x01",
        "plan_action": raw_str(action),
        "reason": enc("maker_exit:TAKE_PROFIT"),
        "suppress": b"\x00",
        "metadata": enc({}),
        "times": struct.pack("<dd", 1000.0, 1005.0),
        "retries_left": struct.pack("<q", 0),
        "base_trade_id": enc(trade_id),  # as register_working sets it
        "retry_n": struct.pack("<q", 0),
        "clocks": struct.pack("<ddd", 1000.0, WALL, BOOT),
    }
    for k, v in raw.items():
        if k != "action_value":
            fields[k] = v
    return b"".join(fields.values())


def journal_bytes(records: list[tuple[int, bytes]]) -> bytes:
    counts = [0] * len(COUNTER_KEYS)
    out = jf.header(bytes(16), jf.boot_id(), WALL)
    for seq, (kind, body) in enumerate(records, 1):
        out += jf.frame(kind, seq, counts, body)
    return out


@pytest.fixture(autouse=True)
def fixed_clocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """No time passes between writing and restoring."""
    monkeypatch.setattr(journal_module, "_clocks", lambda: (WALL, BOOT))


def restored(path: Path, impl: Impl) -> Any:
    with Journal(path) as journal:
        return journal.restore(router_type=impl.ExecutionRouter, clock=FakeClock(1000.0))


def described(orders: Any) -> list[tuple[str, Any, float]]:
    return [(type(o.trade_id).__name__, o.trade_id, o.plan.limit_price) for o in orders]


def price(p: float) -> bytes:
    return struct.pack("<d", p)


ID_LOGS = {
    # A later put of an equal key replaces in place (1 == 1.0 == True), a pop removes.
    "replaced": [
        (PUT, put_body(1, limit_price=price(1.0))),
        (PUT, put_body("x", limit_price=price(2.0))),
        (PUT, put_body(1.0, limit_price=price(3.0))),
        (PUT, put_body(True, limit_price=price(4.0))),
        (PUT, put_body((1, "a"), limit_price=price(5.0))),
        (PUT, put_body(2, limit_price=price(6.0))),
        (POP, enc(2.0)),
        (PUT, put_body(2, limit_price=price(7.0))),
        (POP, enc("x")),
        (PUT, put_body("x", limit_price=price(8.0))),
        (POP, enc("absent")),
    ],
    # Pops only: the dict has holes.
    "popped": [
        *[(PUT, put_body(f"t{i}", limit_price=price(i + 1.0))) for i in range(30)],
        *[(POP, enc(f"t{i}")) for i in range(0, 30, 3)],
    ],
    # A snapshot starts over.
    "snapshot": [
        (PUT, put_body("old")),
        (PUT, put_body(1)),
        (SNAPSHOT, struct.pack("<Q", 2)),
        (PUT, put_body(1.0, limit_price=price(9.0))),
        (PUT, put_body("new")),
        (PUT, put_body(True, limit_price=price(10.0))),
    ],
}


@pytest.mark.parametrize("log", list(ID_LOGS))
def test_trade_ids_keep_dict_semantics_in_each_backend(tmp_path: Path, log: str) -> None:
    path = tmp_path / "j"
    data = journal_bytes(ID_LOGS[log])
    path.write_bytes(data)
    spec = jf.read(data, str(path), native=False)
    want = [(type(o.trade_id).__name__, o.trade_id, o.plan["limit_price"]) for o in
            map(jf.Order._make, spec.orders.values())]  # fmt: skip
    assert len(want) >= 2
    for name, module in BACKENDS:
        router = restored(path, Impl(name, module))
        assert described(router.working_orders()) == want, name
        for _, tid, p in want:
            assert router.working(tid).plan.limit_price == p


def test_restored_strings_are_shared_and_metadata_is_each_plans_own(tmp_path: Path) -> None:
    long = "A" * 100
    path = tmp_path / "j"
    path.write_bytes(
        journal_bytes(
            [
                (PUT, put_body("a")),
                (PUT, put_body("b")),
                (PUT, put_body("c", asset=enc(long), metadata=enc({"k": [1, {"n": None}]}))),
                (PUT, put_body("d", metadata=enc({"k": "v"}))),
            ]
        )
    )
    for name, module in BACKENDS:
        a, b, c, d = restored(path, Impl(name, module)).working_orders()
        assert a.plan.metadata == b.plan.metadata == {}
        a.plan.metadata["mine"] = 1
        assert b.plan.metadata == {}
        assert a.plan.metadata == {"mine": 1}
        assert c.asset == long
        assert c.plan.metadata == {"k": [1, {"n": None}]}
        assert d.plan.metadata == {"k": "v"}
        assert [o.action for o in (a, b, c, d)] == ["EXIT"] * 4
        if name == "native":  # one str per distinct string
            assert a.asset is b.asset
            assert a.side is b.side
            assert a.plan.reason is b.plan.reason
            assert next(iter(c.plan.metadata)) is next(iter(d.plan.metadata))


def nested(depth: int) -> bytes:
    """A list nested ``depth`` deep."""
    return b"\x07\x01\x00\x00\x00" * depth + enc(None)


BAD = {
    "unknown tag": (PUT, put_body(trade_id=None, base_trade_id=b"\x09")),
    "unhashable trade id": (PUT, put_body([1])),
    "unhashable tuple id": (PUT, put_body((1, [2]))),
    "side not UTF-8": (PUT, put_body(side=raw_str(b"\xffONG"))),
    "side an int": (PUT, put_body(side=enc(5))),
    "side a bad tag": (PUT, put_body(side=b"\x0a")),
    "reason not UTF-8": (PUT, put_body(reason=raw_str(b"\xc3"))),
    "long asset not UTF-8": (PUT, put_body(asset=raw_str(b"\xff" * 100))),
    "metadata a list": (PUT, put_body(metadata=enc([]))),
    "metadata cut": (
        PUT,
        put_body(
            metadata=b"\x08\x00\x00",
            times=b"",
            retries_left=b"",
            base_trade_id=b"",
            retry_n=b"",
            clocks=b"",
        ),
    ),
    "metadata key unhashable": (
        PUT,
        put_body(metadata=b"\x08\x01\x00\x00\x00" + enc([1]) + enc(1)),
    ),
    "metadata too deep": (PUT, put_body(metadata=b"\x08\x01\x00\x00\x00" + enc("k") + nested(32))),
    "bytes after": (PUT, put_body() + b"\x00"),
    "ends early": (PUT, put_body()[:-3]),
    "pop unhashable": (POP, enc({"a": 1})),
    "pop bad tag": (POP, b"\x0b"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_damaged_body_raises_the_specs_error_in_each_reader(tmp_path: Path, case: str) -> None:
    path = tmp_path / "j"
    data = journal_bytes([(PUT, put_body("ok")), BAD[case]])
    path.write_bytes(data)
    with pytest.raises(JournalError) as spec:
        jf.read(data, str(path), native=False)
    assert "record at offset" in str(spec.value)
    with pytest.raises(JournalError) as fast:
        jf.read(data, str(path))
    assert str(fast.value) == str(spec.value)
    for name, module in BACKENDS:
        with pytest.raises(JournalError) as err:
            restored(path, Impl(name, module))
        assert str(err.value) == str(spec.value), name
    assert path.read_bytes() == data  # left untouched


def test_nesting_up_to_the_limit_restores(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_bytes(
        journal_bytes([(PUT, put_body(metadata=b"\x08\x01\x00\x00\x00" + enc("k") + nested(31)))])
    )
    for name, module in BACKENDS:
        (wo,) = restored(path, Impl(name, module)).working_orders()
        v = wo.plan.metadata["k"]
        for _ in range(31):
            (v,) = v
        assert v is None


def test_the_index_after_a_restore_matches_the_reference(tmp_path: Path) -> None:
    """Expiry order and the duplicate-entry guard of a restored registry
    (past the index's small size), then after changes."""
    records = []
    for i in range(60):
        action = b"ENTER" if i % 4 == 1 else b"EXIT"
        deadline = 1000.0 + (i * 37) % 23
        times = struct.pack("<dd", 1000.0, deadline)
        records.append((PUT, put_body(f"t{i}", action_value=action, times=times)))
    records.append((PUT, put_body("t1", times=struct.pack("<dd", 1000.0, 1002.5))))  # an exit now
    path = tmp_path / "j"
    path.write_bytes(journal_bytes(records))
    seen = []
    for _, module in BACKENDS:
        clock = FakeClock(1000.0)
        with Journal(path) as journal:
            router = journal.restore(router_type=module.ExecutionRouter, clock=clock)
        steps = []
        for now in (999.0, 1000.0, 1003.0, 1011.5, 1022.0, 1030.0):
            clock.now = now
            steps.append([wo.trade_id for wo in router.expired()])
        plan = router.plan_entry(trade_id="new", asset="BTCUSDT", position_side="LONG",
                                 reference_price=100.0)  # fmt: skip
        steps.append([plan.suppress, plan.reason])
        router.note_fill("t5")
        router.clear_working("t9")
        router.working("t13").action = "EXIT"
        router.working("t17").deadline = 999.5
        clock.now = 1000.0
        steps.append([wo.trade_id for wo in router.expired()])
        plan = router.plan_entry(trade_id="new", asset="BTCUSDT", position_side="LONG",
                                 reference_price=100.0)  # fmt: skip
        steps.append([plan.reason])
        steps.append([order_fields(wo) for wo in router.working_orders()])
        seen.append(steps)
    native, pure = seen
    assert native == pure
    assert "t17" in native[-3]
    assert "t5" not in native[-3]
    assert "t9" not in native[-3]
    assert native[-4] == [True, "working_entry_exists:t5"]  # t1 came back as an exit
    assert native[-2] == ["working_entry_exists:t17"]


@pytest.mark.parametrize("busy", ["registered", "observed"])
def test_a_busy_native_router_restores_order_by_order(tmp_path: Path, busy: str) -> None:
    """The native call on a router that already holds orders (or is observed)
    registers each order as the reference does: an equal id replaces in place."""
    path = tmp_path / "j"
    data = journal_bytes([(PUT, put_body(1.0)), (PUT, put_body("x")), (PUT, put_body("pre"))])
    path.write_bytes(data)
    results = []
    for name, module in BACKENDS:
        router = Impl(name, module).router(clock=FakeClock(1000.0))
        seen: list[tuple[str, Any]] = []
        note = seen.append
        if busy == "registered":
            plan = module.ExecutionPlan(order_type="LIMIT", limit_price=1.0, action="EXIT")
            for tid in ("pre", 1, "mid"):
                router.register_working(trade_id=tid, asset="X", position_side="LONG", plan=plan)
        elif name == "native":
            router._observe_registry(lambda op, tid, wo, note=note: note((op, tid)))
        times = None
        if name == "native":
            *fields, times = module._journal_read(data, str(path), True)
            replay = journal_module._replay(fields)
        else:
            replay = jf.read(data, str(path))
        journal_module.restore_orders(router, replay, times)
        results.append(described(router.working_orders()))
        if name == "native" and busy == "observed":
            assert seen == [("put", 1.0), ("put", "x"), ("put", "pre")]
    native, pure = results
    assert native == pure
    if busy == "registered":
        assert [t for _, t, _ in native] == ["pre", 1.0, "mid", "x"]


def test_a_restore_leaves_its_orders_in_the_oldest_gc_generation(tmp_path: Path) -> None:
    """No young collection traverses the restored orders right after a restore;
    they stay collectable, the GC's state and the process's frozen objects
    are left as they were."""
    path = tmp_path / "j"
    path.write_bytes(journal_bytes([(PUT, put_body(f"t{i}")) for i in range(50)]))
    for name, module in BACKENDS:
        impl = Impl(name, module)
        router = restored(path, impl)
        wo = router.working_orders()[7]
        assert gc.isenabled()
        assert gc.is_tracked(wo)
        assert any(o is wo for o in gc.get_objects(generation=2)), name
        assert not any(o is wo for o in gc.get_objects(generation=0)), name
        # A cycle through a restored order is still collected.
        wo.plan.metadata["me"] = wo
        gone = weakref.ref(wo.plan)
        router.clear_working("t7")
        del wo
        gc.collect()
        assert gone() is None, name
        gc.disable()
        try:
            restored(path, impl)
            assert not gc.isenabled()
        finally:
            gc.enable()
        keep = [object(), {}]
        gc.freeze()
        try:
            frozen = gc.get_freeze_count()
            restored(path, impl)
            assert gc.get_freeze_count() == frozen  # nothing frozen was released
        finally:
            gc.unfreeze()
        del keep


def test_a_closed_journal_does_not_restore(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_bytes(journal_bytes([(PUT, put_body("a"))]))
    for name, module in BACKENDS:
        journal = Journal(path)
        journal.close()
        with pytest.raises(RuntimeError, match="is closed"):
            journal.restore(router_type=module.ExecutionRouter)
        assert len(restored(path, Impl(name, module)).working_orders()) == 1
