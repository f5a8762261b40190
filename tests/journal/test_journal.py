"""Journal: every registry change is recorded ahead, restore is exact, foreign files are refused."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from exec_router import ExecutionPlan, ExecutionRouter, StateError
from exec_router import journal as journal_module
from exec_router import journal_format as jf
from exec_router.journal import FORMAT_VERSION, Journal, JournalError

from ..conftest import FakeClock, Impl
from ..support import maker_plan
from .journal_child import order_fields as fields

WALL = 1_700_000_000.0  # time.time() during the tests that fix it
BOOT = 5_000.0  # CLOCK_BOOTTIME likewise


def register(router: Any, impl: Impl, trade_id: Any, **kw: Any) -> Any:
    plan_kw = {k: kw.pop(k) for k in ("action", "ttl_s", "limit_price", "metadata") if k in kw}
    return router.register_working(
        trade_id=trade_id,
        asset=kw.pop("asset", "BTCUSDT"),
        position_side=kw.pop("position_side", "LONG"),
        plan=maker_plan(impl, **plan_kw),
        **kw,
    )


def assert_same_registry(restored: Any, original: Any) -> None:
    """Same orders in the same order, field by field, times included; same counters."""
    got, want = restored.working_orders(), original.working_orders()
    assert [fields(wo) for wo in got] == [fields(wo) for wo in want]
    for g, w in zip(got, want, strict=True):
        assert g.submitted_at == pytest.approx(w.submitted_at, abs=1e-6)
        assert g.deadline == pytest.approx(w.deadline, abs=1e-6)
    assert dict(restored.counters) == dict(original.counters)


def journaled(path: Path, impl: Impl, **kw: Any) -> Any:
    """What a fresh process would restore from ``path`` (same clock and wall time)."""
    with Journal(path) as other:
        return other.restore(router_type=impl.ExecutionRouter, **kw)


def tids(router: Any) -> list[Any]:
    return [wo.trade_id for wo in router.working_orders()]


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    """``time.time()`` and the journal's wall and boot clocks move with the
    test's fake monotonic clock."""
    monkeypatch.setattr("time.time", lambda: WALL + clock.now)
    monkeypatch.setattr(journal_module, "_clocks", lambda: (WALL + clock.now, BOOT + clock.now))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "router.journal"


def test_new_file_is_one_journal_file_and_leaves_no_litter(impl: Impl, path: Path) -> None:
    with Journal(path) as journal:
        journal.attach(impl.router())
        register(impl.router(), impl, "x")
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    data = path.read_bytes()
    assert data[:8] == jf.MAGIC
    assert int.from_bytes(data[8:12], "little") == FORMAT_VERSION
    assert jf.read(data, "x").orders == {}


@pytest.mark.parametrize(("sync", "group_ms"), [("process", None), ("power", None), ("power", 2.0)])
def test_sync_modes(impl: Impl, path: Path, clock: FakeClock, sync: Any, group_ms: Any) -> None:
    router = impl.router(clock=clock)
    with Journal(path, sync=sync, group_ms=group_ms) as journal:
        journal.attach(router)
        for tid in ("a", "b", "c"):
            register(router, impl, tid)
        router.note_fill("b")
        stats = journal.stats()
        assert stats["records"] == 2 + 4
        assert stats["sync"] == sync
        if sync == "power" and group_ms is None:
            assert stats["syncs"] == 4
            assert stats["last_sync_s"] > 0
    assert tids(journaled(path, impl, clock=clock)) == ["a", "c"]
    for bad in ({"sync": "OFF"}, {"group_ms": 5.0}, {"sync": "power", "group_ms": -1}):
        with pytest.raises(ValueError, match="Journal\\(\\) got an invalid"):
            Journal(path, **bad)


def test_each_op_is_committed_before_the_call_returns(
    impl: Impl, path: Path, clock: FakeClock, wall: None
) -> None:
    router = impl.router(clock=clock, config=impl.ExecConfig(style="maker_both", entry_retries=2))
    journal = Journal(path)
    journal.attach(router)
    register(router, impl, "a", metadata={"k": [1, 2]})
    clock.now += 1.0
    register(router, impl, "b", action="EXIT", ttl_s=30.0)
    register(router, impl, "c", base_trade_id="base", retry_n=1)
    assert tids(journaled(path, impl, clock=clock)) == ["a", "b", "c"]
    assert_same_registry(journaled(path, impl, clock=clock), router)

    # Replacement: new fields, same position.
    clock.now += 2.0
    register(router, impl, "a", asset="ETHUSDT", position_side="short", limit_price=7.5)
    restored = journaled(path, impl, clock=clock)
    assert tids(restored) == ["a", "b", "c"]
    assert restored.working("a").asset == "ETHUSDT"
    assert restored.working("a").plan.limit_price == 7.5
    assert_same_registry(restored, router)

    router.note_fill("b")
    assert_same_registry(journaled(path, impl, clock=clock), router)
    router.note_cancel("c")
    assert_same_registry(journaled(path, impl, clock=clock), router)
    router.clear_working("a")
    assert tids(journaled(path, impl, clock=clock)) == []
    assert_same_registry(journaled(path, impl, clock=clock), router)
    journal.close()


def test_ops_on_absent_ids_and_reregistration(
    impl: Impl, path: Path, clock: FakeClock, wall: None
) -> None:
    router = impl.router(clock=clock)
    with Journal(path) as journal:
        journal.attach(router)
        for tid in ("a", "b", "c"):
            register(router, impl, tid, action="EXIT")
        router.note_fill("zz")
        router.note_cancel("zz")
        router.clear_working("zz")
        router.note_cancel("a")
        register(router, impl, "a", action="EXIT")  # registered again: now last
        assert tids(router) == ["b", "c", "a"]
        assert_same_registry(journaled(path, impl, clock=clock), router)


def test_trade_ids_match_by_python_equality(
    impl: Impl, path: Path, clock: FakeClock, wall: None
) -> None:
    router = impl.router(clock=clock)
    with Journal(path) as journal:
        journal.attach(router)
        register(router, impl, 1, action="EXIT")
        register(router, impl, "x", action="EXIT")
        register(router, impl, 1.0, action="EXIT", limit_price=3.0)  # replaces 1
        restored = journaled(path, impl, clock=clock)
        assert tids(restored) == [1, "x"]
        assert restored.working(1).plan.limit_price == 3.0
        router.note_fill(True)  # True == 1
        assert tids(journaled(path, impl, clock=clock)) == ["x"]


def test_restore_is_exact_and_counters_come_back(
    impl: Impl, path: Path, clock: FakeClock, wall: None
) -> None:
    config = impl.ExecConfig(style="maker_both", entry_retries=3, entry_miss="retry")
    router = impl.router(config=config, clock=clock)
    with Journal(path) as journal:
        journal.attach(router)
        rng = random.Random(7)
        for n in range(40):
            clock.now += rng.random()
            register(
                router,
                impl,
                f"t{n % 13}",
                action=rng.choice(["ENTER", "EXIT"]),
                ttl_s=rng.choice([0.1, 5.0, 60.0]),
                limit_price=rng.uniform(1, 100),
                retry_n=rng.randrange(3),
                base_trade_id=rng.choice([None, "b"]),
            )
            if n % 3 == 0:
                router.note_fill(f"t{rng.randrange(13)}")
            router.plan_entry(trade_id="p", asset="BTCUSDT", position_side="LONG",
                              reference_price=1.0)  # fmt: skip
        router.note_cancel(tids(router)[0])  # the last change is a pop
        restored = journaled(path, impl, clock=clock)
    assert restored.config == config
    assert len(restored.working_orders()) > 3
    assert_same_registry(restored, router)


@pytest.mark.parametrize("wall_step", [0.0, 3600.0, -3600.0])
def test_expiry_survives_downtime_and_a_new_clock_origin(
    impl: Impl, path: Path, clock: FakeClock, wall: None, monkeypatch: pytest.MonkeyPatch,
    wall_step: float,
) -> None:  # fmt: skip
    router = impl.router(clock=clock)
    with Journal(path) as journal:
        journal.attach(router)
        register(router, impl, "short", action="EXIT", ttl_s=5.0)
        register(router, impl, "long", action="EXIT", ttl_s=60.0)
    # Down for 30 s (the boot clock says so; the wall clock also stepped by
    # wall_step, which must move nothing); the new process's clock starts at 50.
    new_clock = FakeClock(50.0)
    down = clock.now + 30.0
    monkeypatch.setattr(
        journal_module,
        "_clocks",
        lambda: (
            WALL + down + wall_step + new_clock.now - 50.0,
            BOOT + down + new_clock.now - 50.0,
        ),
    )
    restored = journaled(path, impl, clock=new_clock)
    assert [wo.trade_id for wo in restored.expired()] == ["short"]
    assert restored.working("long").deadline == pytest.approx(50.0 + 30.0)
    assert restored.working("short").deadline == pytest.approx(50.0 - 25.0)
    new_clock.now += 29.0
    assert [wo.trade_id for wo in restored.expired()] == ["short"]
    new_clock.now += 1.0
    assert [wo.trade_id for wo in restored.expired()] == ["short", "long"]


def test_config_override_and_default_backend(path: Path, clock: FakeClock, impl: Impl) -> None:
    import exec_router

    router = impl.router(clock=clock)
    with Journal(path) as journal:
        journal.attach(router)
        register(router, impl, "a")
        config = impl.ExecConfig(style="maker_entry")
        restored = journal.restore(config, clock=clock)
    assert isinstance(restored, exec_router.ExecutionRouter)
    assert restored.config == config
    assert tids(restored) == ["a"]


def test_config_change_is_journaled_with_the_next_change(
    impl: Impl, path: Path, clock: FakeClock
) -> None:
    router = impl.router(clock=clock)
    with Journal(path) as journal:
        journal.attach(router)
        router.config = impl.ExecConfig(style="maker_exit", exit_ttl_s=9.0)
        register(router, impl, "a", action="EXIT")
    assert journaled(path, impl, clock=clock).config == router.config


def test_attach_writes_a_busy_router_over_stale_content(
    impl: Impl, path: Path, clock: FakeClock, wall: None
) -> None:
    old = impl.router(clock=clock)
    with Journal(path) as journal:
        journal.attach(old)
        for tid in ("x", "y"):
            register(old, impl, tid, action="EXIT")
    busy = impl.router(clock=clock)
    register(busy, impl, "a")
    register(busy, impl, "b", action="EXIT", base_trade_id="bb", retry_n=2)
    busy.note_fill("a")
    register(busy, impl, "c", action="EXIT")
    with Journal(path) as journal:
        journal.attach(busy)
        assert_same_registry(journaled(path, impl, clock=clock), busy)
        # A restored router attached to a new journal round-trips exactly.
        restored = journal.restore(router_type=impl.ExecutionRouter, clock=clock)
    with Journal(path.with_name("second")) as second:
        second.attach(restored)
        assert_same_registry(second.restore(router_type=impl.ExecutionRouter, clock=clock), busy)


def test_detach_close_and_context_manager(impl: Impl, path: Path, clock: FakeClock) -> None:
    router = impl.router(clock=clock)
    journal = Journal(path)
    journal.attach(router)
    with pytest.raises(RuntimeError, match="already attached"):
        journal.attach(router)
    register(router, impl, "a", action="EXIT")
    journal.detach()
    register(router, impl, "b", action="EXIT")  # not journaled
    assert tids(journaled(path, impl, clock=clock)) == ["a"]
    journal.attach(router)  # attach again: the whole registry
    assert tids(journaled(path, impl, clock=clock)) == ["a", "b"]
    with journal:
        pass
    journal.close()  # idempotent
    router.note_fill("a")  # the router no longer reports to the closed journal
    assert tids(journaled(path, impl, clock=clock)) == ["a", "b"]
    with pytest.raises(RuntimeError, match="closed"):
        journal.attach(router)
    assert "closed" in repr(journal)


def test_sync_writes_in_place_edits(impl: Impl, path: Path, clock: FakeClock, wall: None) -> None:
    router = impl.router(clock=clock)
    with Journal(path) as journal:
        with pytest.raises(RuntimeError, match="no router"):
            journal.sync()
        journal.attach(router)
        wo = register(router, impl, "a", action="EXIT")
        wo.deadline += 100.0
        journal.sync()
        assert journaled(path, impl, clock=clock).working("a").deadline == pytest.approx(
            wo.deadline
        )


def test_a_plan_registered_again_journals_its_metadata_as_it_is_then(
    impl: Impl, path: Path, clock: FakeClock
) -> None:
    """The plan's other fields are immutable (the native core encodes them once);
    its metadata is a mutable dict, written as it is at each registration."""
    router = impl.router(clock=clock)
    with_meta = maker_plan(impl, action="EXIT", metadata={"n": 1})
    bare = impl.ExecutionPlan(
        order_type="LIMIT", limit_price=7.0, ttl_s=9.0, is_maker=True, action="EXIT"
    )
    with Journal(path) as journal:
        journal.attach(router)
        router.register_working(trade_id="a", asset="BTCUSDT", position_side="LONG", plan=with_meta)
        with_meta.metadata["n"] = 2
        with_meta.metadata["added"] = [1, "x"]
        router.register_working(trade_id="b", asset="BTCUSDT", position_side="LONG", plan=with_meta)
        router.register_working(trade_id="c", asset="BTCUSDT", position_side="LONG", plan=bare)
        bare.metadata["late"] = True  # made on first access, after a registration
        router.register_working(trade_id="d", asset="BTCUSDT", position_side="LONG", plan=bare)
        bare.metadata["bad"] = object()
        with pytest.raises(TypeError, match=r"plan\.metadata: a object"):
            router.register_working(trade_id="e", asset="BTCUSDT", position_side="LONG", plan=bare)
        del bare.metadata["bad"]
        bare.metadata["late"] = False
        router.register_working(trade_id="a", asset="BTCUSDT", position_side="LONG", plan=bare)
    restored = journaled(path, impl, clock=clock)
    plans = {wo.trade_id: wo.plan for wo in restored.working_orders()}
    assert list(plans) == ["a", "b", "c", "d"]
    assert plans["b"].metadata == {"n": 2, "added": [1, "x"]}
    assert plans["c"].metadata == {}
    assert plans["d"].metadata == {"late": True}
    assert plans["a"].metadata == {"late": False}
    assert (plans["a"].limit_price, plans["b"].limit_price) == (7.0, 100.0)
    for p in plans.values():
        assert (p.order_type, p.is_maker, p.action) == ("LIMIT", True, "EXIT")


def test_unjournalable_order_is_refused_before_any_change(
    impl: Impl, path: Path, clock: FakeClock, wall: None
) -> None:
    router = impl.router(clock=clock)
    with Journal(path) as journal:
        journal.attach(router)
        register(router, impl, "a", action="EXIT")
        register(router, impl, "b", action="EXIT")
        before = [fields(wo) for wo in router.working_orders()], dict(router.counters)
        with pytest.raises(TypeError, match=r"journal cannot write trade_id: a frozenset"):
            register(router, impl, frozenset({1}), action="EXIT")
        with pytest.raises(TypeError, match=r"journal cannot write plan\.metadata: a object"):
            register(router, impl, "a", action="EXIT", metadata={"x": object()})
        with pytest.raises(ValueError, match=r"plan\.metadata: a non-finite float"):
            register(router, impl, "c", metadata={"x": float("nan")})
        with pytest.raises(ValueError, match="an int beyond 64 bits"):
            register(router, impl, "c", asset=2**70)
        assert ([fields(wo) for wo in router.working_orders()], dict(router.counters)) == before
        assert_same_registry(journaled(path, impl, clock=clock), router)
        # Registered again later: where a fresh registration goes (last), not elsewhere.
        router.note_fill("a")
        register(router, impl, "c", action="EXIT")
        register(router, impl, "a", action="EXIT")
        assert tids(router) == ["b", "c", "a"]
        assert_same_registry(journaled(path, impl, clock=clock), router)
        assert router.plan_entry(
            trade_id="p", asset="BTCUSDT", position_side="LONG", reference_price=1.0
        ).order_type in ("MARKET", "LIMIT")


def test_attach_refuses_an_unjournalable_registry(impl: Impl, path: Path) -> None:
    router = impl.router()
    register(router, impl, frozenset({1}), action="EXIT")
    with Journal(path) as journal:
        with pytest.raises(TypeError, match="trade_id"):
            journal.attach(router)
        router.note_fill(frozenset({1}))  # no journal left behind
        assert journal.state()["working"] == []
        assert journal.stats() == {}


def test_hook_that_changes_the_registry(
    impl: Impl, path: Path, clock: FakeClock, wall: None
) -> None:
    router = impl.router(clock=clock)
    router.register_hook(
        "on_working", lambda wo, ctx: router.note_fill(wo.trade_id) if wo.asset == "X" else None
    )
    with Journal(path) as journal:
        journal.attach(router)
        register(router, impl, "a", action="EXIT")
        register(router, impl, "b", action="EXIT", asset="X")
        assert tids(router) == ["a"]
        assert_same_registry(journaled(path, impl, clock=clock), router)


def test_concurrent_calls_leave_the_journal_equal_to_the_registry(
    impl: Impl, path: Path, clock: FakeClock, wall: None
) -> None:
    router = impl.router(clock=clock)
    with Journal(path) as journal:
        journal.attach(router)

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(150):
                tid = f"t{rng.randrange(8)}"
                op = rng.randrange(3)
                if op == 0:
                    register(router, impl, tid, action="EXIT", limit_price=float(seed + 1))
                elif op == 1:
                    router.note_fill(tid)
                else:
                    router.note_cancel(tid)

        threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        restored = journaled(path, impl, clock=clock)
    # Order may differ for ids registered concurrently; content may not.
    key = lambda wo: wo.trade_id  # noqa: E731
    got = sorted(restored.working_orders(), key=key)
    want = sorted(router.working_orders(), key=key)
    assert [fields(wo) for wo in got] == [fields(wo) for wo in want]
    assert dict(restored.counters) == dict(router.counters)


def test_state_is_an_exec_router_state(impl: Impl, path: Path, clock: FakeClock) -> None:
    router = impl.router(clock=clock)
    with Journal(path) as journal:
        assert journal.state()["working"] == []
        assert journal.restore(router_type=impl.ExecutionRouter).working_orders() == []
        journal.attach(router)
        register(router, impl, "a", action="EXIT")
        state = journal.state()
    assert (state["format"], state["version"]) == ("exec_router.state", 1)
    assert json.loads(json.dumps(state)) == state
    assert [r["trade_id"] for r in state["working"]] == ["a"]


# ── refusing files that are not journals ─────────────────────────────────────


def _busy_journal(path: Path) -> None:
    """A journal with a few hundred orders."""
    router = ExecutionRouter(clock=lambda: 1.0)
    with Journal(path) as journal:
        journal.attach(router)
        plan = ExecutionPlan(
            order_type="LIMIT", limit_price=1.0, ttl_s=9.0, is_maker=True, action="EXIT"
        )
        for i in range(300):
            router.register_working(
                trade_id=f"t{i}", asset="BTCUSDT", position_side="LONG", plan=plan
            )


def _newer_journal(path: Path) -> None:
    _busy_journal(path)
    data = bytearray(path.read_bytes())
    data[8:12] = (FORMAT_VERSION + 1).to_bytes(4, "little")
    path.write_bytes(bytes(data))


def _bad_header(path: Path) -> None:
    _busy_journal(path)
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF  # the file id: the header's CRC fails
    path.write_bytes(bytes(data))


def _foreign_sqlite(path: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE orders (seq INTEGER PRIMARY KEY, record TEXT NOT NULL)")
    conn.commit()
    conn.close()


FOREIGN = {
    "random_bytes": lambda p: p.write_bytes(random.Random(3).randbytes(8192)),
    "text": lambda p: p.write_text("trade_id,asset\nt1,BTCUSDT\n" * 50),
    "empty": lambda p: p.write_bytes(b""),
    "short_magic": lambda p: p.write_bytes(jf.MAGIC + b"\x01"),
    "foreign_sqlite": _foreign_sqlite,
    "newer_journal": _newer_journal,
    "bad_header": _bad_header,
}
REASONS = {
    "random_bytes": "not an exec-router journal",
    "text": "not an exec-router journal",
    "empty": "empty file",
    "short_magic": "header cut at offset 9",
    "foreign_sqlite": "application_id 0x0",
    "newer_journal": "newer than",
    "bad_header": "bad header at offset 0",
}


@pytest.mark.parametrize("kind", list(FOREIGN))
def test_foreign_files_are_refused_and_left_untouched(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "not-a-journal"
    FOREIGN[kind](path)
    before = path.read_bytes()
    others = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(JournalError, match=REASONS[kind]) as err:
        Journal(path)
    assert isinstance(err.value, ValueError)
    assert str(path) in str(err.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == others


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="is a directory"):
        Journal(tmp_path)


def test_one_record_per_change_and_none_for_a_no_op(
    impl: Impl, path: Path, clock: FakeClock
) -> None:
    router = impl.router(clock=clock)
    with Journal(path) as journal:
        journal.attach(router)
        records = journal.stats()["records"]
        register(router, impl, "a", action="EXIT")
        register(router, impl, "a", action="EXIT")
        router.note_fill("a")
        router.note_cancel("a")  # absent: no change, no record
        router.clear_working("a")
        router.note_fill(object())  # an id the journal cannot write was never registered
        assert journal.stats()["records"] == records + 3


# ── regressions from review ──────────────────────────────────────────────────


def test_an_order_far_in_the_future_restores(impl: Impl, path: Path, clock: FakeClock) -> None:
    router = impl.router(clock=clock)
    with Journal(path) as journal:
        journal.attach(router)
        far = register(router, impl, "far", ttl_s=1e300)
        register(router, impl, "b")
        restored = journaled(path, impl, clock=clock)
    assert tids(restored) == ["far", "b"]
    assert restored.working("far").deadline == far.deadline


def test_one_router_one_journal_one_file(impl: Impl, path: Path, clock: FakeClock) -> None:
    router, other = impl.router(clock=clock), impl.router(clock=clock)
    with Journal(path) as first, Journal(path.with_name("second")) as second:
        first.attach(router)
        with pytest.raises(RuntimeError, match="already has a journal"):
            second.attach(router)
        with Journal(path) as same_file, pytest.raises(JournalError, match="in this process"):
            same_file.attach(other)
        link = path.with_name("link")
        link.symlink_to(path)
        with Journal(link) as via_link, pytest.raises(JournalError, match="in this process"):
            via_link.attach(other)
        second.close()  # must not switch the first journal off
        register(router, impl, "a")
        assert tids(journaled(path, impl, clock=clock)) == ["a"]
        first.detach()
        second_try = Journal(path)
        second_try.attach(other)  # the file's lock went with the detach
        second_try.close()


def test_a_replacement_keeps_its_place_after_a_rejected_one(
    impl: Impl, path: Path, clock: FakeClock
) -> None:
    router = impl.router(clock=clock)
    with Journal(path) as journal:
        journal.attach(router)
        register(router, impl, "t1")
        register(router, impl, "t2")
        with pytest.raises(TypeError, match="asset"):
            register(router, impl, "t1", asset=("x", object()))
        register(router, impl, "t1")
        assert tids(journaled(path, impl, clock=clock)) == tids(router) == ["t1", "t2"]


def test_a_bad_saved_config_is_a_state_error(impl: Impl, clock: FakeClock) -> None:
    state = impl.router(clock=clock).export_state()
    state["config"]["style"] = "bogus"
    with pytest.raises(StateError, match="config"):
        impl.ExecutionRouter.from_state(state)


def test_a_missing_directory_is_a_journal_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="cannot create"):
        Journal(tmp_path / "missing" / "journal")
