"""Journal under faults: the same bytes from both backends, damage, interrupts at
every Python call, a SIGINT storm, forks, other processes, full and read-only disks,
and the former SQLite format."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exec_router import ExecConfig
from exec_router import journal_format as jf
from exec_router.constants import COUNTER_KEYS
from exec_router.errors import JournalError
from exec_router.journal import Journal

from ..backends import BACKENDS
from ..conftest import FakeClock, Impl
from ..support import maker_plan
from .journal_child import order_fields

DATA = Path(__file__).parent.parent / "data"
FIXED = (1_700_000_000.0, 5_000.0)


def register(router: Any, impl: Impl, trade_id: Any, **kw: Any) -> Any:
    plan_kw = {k: kw.pop(k) for k in ("action", "ttl_s", "limit_price", "metadata") if k in kw}
    return router.register_working(
        trade_id=trade_id,
        asset=kw.pop("asset", "BTCUSDT"),
        position_side=kw.pop("position_side", "LONG"),
        plan=maker_plan(impl, **plan_kw),
        **kw,
    )


REGISTRY_COUNTERS = ("fills_working", "cancels")


def read_both(data: bytes, name: str = "live") -> jf.Replay:
    """``data`` read by the spec (Python) and by the native reader: the same replay."""
    spec = jf.read(data, name, native=False)
    fast = jf.read(data, name)
    assert [tuple(o) for o in spec.orders.values()] == [tuple(o) for o in fast.orders.values()]
    assert list(spec.orders) == list(fast.orders)
    spec.orders, fast.orders = {}, {}
    assert spec == fast
    return jf.read(data, name)


def journal_equals_registry(router: Any, counters: tuple[str, ...] | None = None) -> None:
    """The attached journal, read back, holds exactly the router's registry and counters
    (``counters``: only these; the others, bumped outside registry changes, are
    recorded with the next change)."""
    data = router._journal_bytes()
    r = read_both(data)
    want = router.working_orders()
    assert list(r.orders) == [wo.trade_id for wo in want]
    for o, wo in zip(map(jf.Order._make, r.orders.values()), want, strict=True):
        got = {
            "trade_id": o.trade_id, "asset": o.asset, "side": o.side, "action": o.action,
            "plan": o.plan, "retries_left": o.retries_left, "base_trade_id": o.base_trade_id,
            "retry_n": o.retry_n,
        }  # fmt: skip
        assert got == order_fields(wo)
        assert (o.submitted_at, o.deadline) == (wo.submitted_at, wo.deadline)
    if counters is None:
        assert r.counters == dict(router.counters)
    else:
        assert {k: r.counters[k] for k in counters} == {k: router.counters[k] for k in counters}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "router.journal"


def _impls() -> list[tuple[str, Any]]:
    return BACKENDS


# ── the two backends write the same bytes ────────────────────────────────────


def _script(router: Any, impl: Any, clock: FakeClock) -> None:
    rng = random.Random(11)
    plan = impl.ExecutionPlan
    for n in range(400):
        clock.now += rng.random()
        tid: Any = rng.choice([f"t{n % 37}", n % 11, ("pair", n % 5), 2.5 * (n % 3)])
        op = rng.random()
        if op < 0.55:
            router.register_working(
                trade_id=tid, asset=rng.choice(["BTCUSDT", None, 3]), position_side="long",
                plan=plan(order_type="LIMIT", limit_price=rng.uniform(1, 9), post_only=True,
                          ttl_s=rng.choice([0.0, 8.0]), is_maker=True,
                          action=rng.choice(["ENTER", "EXIT"]), reason="r",
                          metadata={"n": n, "x": [True, None, -0.0, "é"], "d": {1: (2,)}}),
                base_trade_id=rng.choice([None, "b"]), retry_n=rng.randrange(3),
            )  # fmt: skip
        elif op < 0.75:
            router.note_fill(tid)
        elif op < 0.9:
            router.note_cancel(tid)
        else:
            router.clear_working(tid)
        if n == 200:
            router.config = ExecConfig(style="maker_exit", tick_overrides={"BTCUSDT": 0.5})
        if rng.random() < 0.2:  # counters that move between registry changes
            router.plan_entry(
                trade_id=f"p{n}", asset="ETHUSDT", position_side="LONG", reference_price=100.0
            )


def test_both_backends_write_the_same_bytes_and_read_each_other(tmp_path: Path) -> None:
    files = {}
    for name, impl in _impls():
        clock = FakeClock(100.0)
        router = impl.ExecutionRouter(clock=clock)
        path = tmp_path / f"{name}.journal"
        journal = Journal(path)
        journal._file_id = bytes(range(16))
        journal._times = lambda c=clock: (FIXED[0] + c.now, FIXED[1] + c.now)
        journal._compact_bytes = 8192  # several compactions on the way
        journal.attach(router)
        _script(router, impl, clock)
        assert journal.stats()["compactions"] >= 3
        journal_equals_registry(router)
        journal.sync()
        journal.close()
        files[name] = path.read_bytes(), router
    if len(files) < 2:
        pytest.skip("one backend")
    (a, ra), (b, _rb) = files["native"], files["pure"]
    assert a == b
    for name, impl in _impls():  # each backend restores the other's file
        other = tmp_path / ("pure.journal" if name == "native" else "native.journal")
        with Journal(other) as journal:
            restored = journal.restore(router_type=impl.ExecutionRouter, clock=FakeClock(0.0))
        assert [order_fields(wo) for wo in restored.working_orders()] == [
            order_fields(wo) for wo in ra.working_orders()
        ]
        assert dict(restored.counters) == dict(ra.counters)
        assert restored.config == ExecConfig(style="maker_exit", tick_overrides={"BTCUSDT": 0.5})


def test_crc32c_is_castagnoli() -> None:
    assert jf._crc32c_py(b"123456789") == 0xE3069283
    assert jf.crc32c(b"123456789") == 0xE3069283
    data = random.Random(1).randbytes(3000)
    assert jf.crc32c(data) == jf._crc32c_py(data)


# ── counters: each frame carries those that changed ──────────────────────────


def _masks(data: bytes) -> list[tuple[int, int, int]]:
    """(kind, counter mask, frame size) of each whole frame."""
    return [
        (data[at + 8], int.from_bytes(data[at + 17 : at + 19], "little"), size)
        for at, size in _frames(data)
    ]


def test_a_frame_carries_only_the_counters_that_changed(impl: Impl, path: Path) -> None:
    router = impl.router(clock=FakeClock(10.0))
    fills = 1 << COUNTER_KEYS.index("fills_working")
    cancels = 1 << COUNTER_KEYS.index("cancels")
    with Journal(path) as journal:
        journal.attach(router)
        register(router, impl, "a")  # the first frame after a snapshot: all counters
        router.note_fill("a")
        register(router, impl, "b")
        register(router, impl, "c")
        router.note_cancel("b")
        router.plan_entry(
            trade_id="p", asset="ETHUSDT", position_side="LONG", reference_price=100.0
        )
        router.note_fill("c")  # fills, and what the plan counted
        router.config = ExecConfig(style="maker_exit")
        router.clear_working("zzz")  # not registered: no record
        register(router, impl, "d")
        data = router._journal_bytes()
        journal_equals_registry(router)
    masks = _masks(data)
    counts = dict(router.counters)
    planned = sum(
        1 << i
        for i, k in enumerate(COUNTER_KEYS)
        if k not in ("fills_working", "cancels") and counts[k]
    )
    assert planned  # the plan counted something
    assert [(k, m) for k, m, _ in masks] == [
        (jf.CONFIG, jf.ALL),
        (jf.SNAPSHOT, jf.ALL),
        (jf.PUT, jf.ALL),
        (jf.POP, fills),
        (jf.PUT, 0),
        (jf.PUT, 0),
        (jf.POP, cancels),
        (jf.POP, fills | planned),
        (jf.CONFIG, jf.ALL),
        (jf.PUT, 0),
    ]
    pop_a = masks[3][2]
    assert pop_a == 8 + 1 + 8 + 2 + 8 + len(jf.pop_body("a"))
    put_b, put_a = masks[4][2], masks[2][2]
    assert put_a - put_b == 8 * len(COUNTER_KEYS)
    with Journal(path) as journal:
        restored = journal.restore(router_type=impl.ExecutionRouter)
    assert dict(restored.counters) == counts
    assert [wo.trade_id for wo in restored.working_orders()] == ["d"]


def _first_frame_with_mask(data: bytes, mask: int) -> bytes:
    """``data``'s header and its first frame (the config) rewritten with ``mask``."""
    at, size = _frames(data)[0]
    payload = data[at + 8 : at + size]
    kind, seq = payload[0], int.from_bytes(payload[1:9], "little")
    counts = [
        int.from_bytes(payload[11 + 8 * i : 19 + 8 * i], "little", signed=True)
        for i in range(len(COUNTER_KEYS))
    ]
    body = payload[11 + 8 * len(COUNTER_KEYS) :]
    return data[:at] + jf.frame(kind, seq, counts, body, mask)


def test_a_config_frame_without_all_counters_is_damage(impl: Impl, path: Path) -> None:
    _written(impl, path)
    data = path.read_bytes()
    whole = _first_frame_with_mask(data, jf.ALL)
    assert read_both(whole).config is not None  # the rebuilt frame reads
    cut = _first_frame_with_mask(data, jf.ALL & ~1)
    for native in (False, True):
        with pytest.raises(JournalError, match=r"offset 64: bad counters \(mask 0xfffe\)"):
            jf.read(cut, str(path), native=native)


def _as_format_1(path: Path) -> bytes:
    data = bytearray(path.read_bytes())
    data[8:12] = (1).to_bytes(4, "little")
    data[60:64] = jf.crc32c(bytes(data[:60])).to_bytes(4, "little")
    return bytes(data)


def test_a_format_1_journal_is_refused_by_name(impl: Impl, path: Path) -> None:
    """Format 1 was a development format, never released: refused, and left as it is."""
    _written(impl, path)
    data = _as_format_1(path)
    path.write_bytes(data)
    reason = "journal of format 1, a development format that was never released"
    for native in (False, True):
        with pytest.raises(JournalError, match=reason):
            jf.read(data, str(path), native=native)
    with pytest.raises(JournalError, match=reason):
        Journal(path)
    assert path.read_bytes() == data


# ── damage ───────────────────────────────────────────────────────────────────


def _written(impl: Impl, path: Path, n: int = 30) -> Any:
    router = impl.router(clock=FakeClock(10.0))
    with Journal(path) as journal:
        journal.attach(router)
        for i in range(n):
            register(router, impl, f"t{i}", metadata={"i": i})
        router.note_fill("t3")
    return router


def _frames(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of each whole frame."""
    out, pos = [], jf.HEADER_LEN
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "little")
        if length == 0:
            break
        out.append((pos, 8 + length))
        pos += 8 + length
    return out


@pytest.mark.parametrize("cut", ["half_payload", "head_only", "length_only"])
def test_a_torn_tail_was_never_acknowledged_and_is_cut(impl: Impl, path: Path, cut: str) -> None:
    router = _written(impl, path)
    data = bytearray(path.read_bytes())
    last, size = _frames(bytes(data))[-1]  # the fill of t3
    keep = {"half_payload": size // 2, "head_only": 8, "length_only": 4}[cut]
    data[last + keep : last + size] = bytes(size - keep)
    path.write_bytes(bytes(data))
    with Journal(path) as journal:
        r = journal.replay()
        assert r.torn
        assert r.end == last
        restored = journal.restore(router_type=impl.ExecutionRouter)
        assert [wo.trade_id for wo in restored.working_orders()] == [f"t{i}" for i in range(30)]
        assert restored.counters["fills_working"] == 0
        journal.attach(restored)  # writes on from there
        restored.note_fill("t5")
    with Journal(path) as journal:
        assert "t5" not in journal.replay().orders
        assert "t3" in journal.replay().orders
    del router


def test_a_flipped_byte_in_the_middle_names_its_offset_and_changes_nothing(
    impl: Impl, path: Path
) -> None:
    _written(impl, path)
    data = bytearray(path.read_bytes())
    frames = _frames(bytes(data))
    at, size = frames[len(frames) // 2]
    data[at + size // 2] ^= 0x40
    path.write_bytes(bytes(data))
    before = path.read_bytes()
    journal = Journal(path)
    with pytest.raises(JournalError, match=f"bad record at offset {at}"):
        journal.restore(router_type=impl.ExecutionRouter)
    with pytest.raises(JournalError, match=f"bad record at offset {at}"):
        jf.read(before, str(path), native=False)
    journal.close()
    assert path.read_bytes() == before


# ── interrupts at every Python call inside a registry change ────────────────


class _Inject:
    """A trace function that raises ``exc`` at the n-th Python function call."""

    def __init__(self, n: int, exc: type[BaseException]) -> None:
        self.n, self.exc, self.calls, self.fired = n, exc, 0, False

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            self.calls += 1
            if self.calls == self.n:
                self.fired = True
                raise self.exc("injected")


def _ops(router: Any, impl: Impl) -> list[tuple[str, Callable[[], Any]]]:
    return [
        ("register", lambda: register(router, impl, "new", metadata={"a": [1, "b"]})),
        ("replace", lambda: register(router, impl, "keep", limit_price=3.0)),
        ("fill", lambda: router.note_fill("new")),
        ("cancel", lambda: router.note_cancel("keep")),
        ("clear", lambda: router.clear_working("other")),
        ("config", lambda: setattr(router, "config", ExecConfig(style="maker_entry"))),
    ]


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_an_interrupt_at_any_call_leaves_journal_equal_to_registry(
    impl: Impl, path: Path, exc: type[BaseException], monkeypatch: pytest.MonkeyPatch
) -> None:
    import exec_router.journal as journal_module

    clock = FakeClock(1.0)
    # Python calls in every change: the clock, the journal's clocks, hooks.
    monkeypatch.setattr(journal_module, "_clocks", lambda: (FIXED[0] + clock.now, FIXED[1]))
    router = impl.router(clock=clock)
    for stage in ("on_working", "on_fill", "on_cancel"):
        router.register_hook(stage, lambda wo, ctx: None)
    journal = Journal(path)
    journal._compact_bytes = 4096  # compactions among the interrupted changes
    journal.attach(router)
    fired = 0
    for name, op in _ops(router, impl):
        n = 1
        while True:
            for tid in ("keep", "other", "new"):  # each op finds what it acts on
                if router.working(tid) is None and not (name == "register" and tid == "new"):
                    register(router, impl, tid)
            if name == "register" and router.working("new") is not None:
                router.clear_working("new")
            inject = _Inject(n, exc)
            sys.settrace(inject)
            try:
                op()
            except (exc, ValueError):  # a clock that raised: a ValueError naming it
                pass
            finally:
                sys.settrace(None)
            journal_equals_registry(router, REGISTRY_COUNTERS)
            register(router, impl, "probe")  # the next call works
            router.note_cancel("probe")
            journal_equals_registry(router, REGISTRY_COUNTERS)
            if not inject.fired:
                break
            fired += 1
            n += 1
    stats = journal.stats()
    journal.close()
    with Journal(path) as again:
        restored = again.restore(router_type=impl.ExecutionRouter, clock=clock)
    assert [wo.trade_id for wo in restored.working_orders()] == [
        wo.trade_id for wo in router.working_orders()
    ]
    assert fired >= 6
    assert stats["compactions"] >= 1
    print(f"interrupts[{impl.name}, {exc.__name__}]: {fired} injected")


def test_async_sigint_storm(impl: Impl, path: Path) -> None:
    """SIGALRM every 50-300 us raises KeyboardInterrupt anywhere; 400 caught."""
    router = impl.router()
    journal = Journal(path)
    journal._compact_bytes = 16384
    journal.attach(router)
    rng = random.Random(4)
    caught = ops = 0
    old = signal.signal(signal.SIGALRM, signal.default_int_handler)
    try:
        while caught < 400:
            try:
                signal.setitimer(signal.ITIMER_REAL, rng.uniform(5e-5, 3e-4))
                for _ in range(50):
                    tid = f"t{rng.randrange(40)}"
                    r = rng.random()
                    if r < 0.5:
                        register(router, impl, tid, metadata={"r": r})
                    elif r < 0.8:
                        router.note_fill(tid)
                    else:
                        router.note_cancel(tid)
                    ops += 1
                signal.setitimer(signal.ITIMER_REAL, 0)
            except KeyboardInterrupt:
                caught += 1
            for _ in range(3):  # the timer is off; a tick may still be pending
                try:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    journal_equals_registry(router)
                    break
                except KeyboardInterrupt:
                    continue
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    register(router, impl, "after")
    router.note_fill("after")
    journal_equals_registry(router)
    journal.close()
    print(f"sigint storm[{impl.name}]: {caught} caught over {ops} ops")


# ── processes ────────────────────────────────────────────────────────────────


def _in_child(code: str, path: Path, backend_name: str) -> subprocess.CompletedProcess[str]:
    prelude = textwrap.dedent(
        f"""
        import sys, importlib
        from exec_router.journal import Journal, JournalError
        from exec_router import ExecConfig
        mod = importlib.import_module(
            "exec_router._core" if {backend_name!r} == "native" else "exec_router.reference")
        path = {str(path)!r}
        plan = mod.ExecutionPlan(order_type="LIMIT", limit_price=1.0, ttl_s=9.0,
                                 is_maker=True, action="EXIT")
        """
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_another_process_is_refused_through_any_path(
    impl: Impl, path: Path, tmp_path: Path
) -> None:
    router = impl.router()
    journal = Journal(path)
    journal.attach(router)
    register(router, impl, "a")
    link = tmp_path / "link"
    link.symlink_to(path)
    for target in (path, link):
        child = _in_child(
            """
            j = Journal(path)
            try:
                j.attach(mod.ExecutionRouter())
            except JournalError as e:
                print("refused:", e)
            """,
            target,
            impl.name,
        )
        assert "attached by another process" in child.stdout, child.stderr
    # It can read, though (a restore while the owner runs).
    child = _in_child(
        "print([w.trade_id for w in Journal(path).restore(router_type=mod.ExecutionRouter)"
        ".working_orders()])",
        link,
        impl.name,
    )
    assert child.stdout.strip() == "['a']", child.stderr
    journal.close()
    child = _in_child("Journal(path).attach(mod.ExecutionRouter()); print('ok')", link, impl.name)
    assert child.stdout.strip() == "ok", child.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_cannot_write_and_never_blocks_the_parent(
    impl: Impl, path: Path, tmp_path: Path
) -> None:
    router = impl.router()
    journal = Journal(path)
    journal.attach(router)
    register(router, impl, "a")
    up_r, up_w = os.pipe()  # child -> parent
    down_r, down_w = os.pipe()  # parent -> child
    pid = os.fork()
    if pid == 0:  # the child: report, then linger holding what it inherited
        code = 0
        try:
            try:
                register(router, impl, "child")
                code = 1
            except JournalError:
                pass
            if router.working("child") is not None:
                code = 2
            journal.detach()  # the child leaves the parent's file alone...
            own = Journal(tmp_path / "child.journal")
            own.attach(router)  # ...and attaches its own
            register(router, impl, "child")
            own.close()
        except BaseException:
            code = 3
        os.write(up_w, bytes([code]))
        os.read(down_r, 1)  # linger until the parent is done
        os._exit(code)
    try:
        assert os.read(up_r, 1) == b"\x00"
        register(router, impl, "b")  # the parent writes on
        journal.detach()  # and can attach again while the child lives
        journal.attach(router)
        register(router, impl, "c")
        journal.close()
        # A successor (another process) attaches while the child still lives.
        child = _in_child(
            "j = Journal(path); r = j.restore(router_type=mod.ExecutionRouter); j.attach(r);"
            "print([w.trade_id for w in r.working_orders()])",
            path,
            impl.name,
        )
        assert child.stdout.strip() == "['a', 'b', 'c']", child.stderr
        with Journal(tmp_path / "child.journal") as theirs:
            assert list(theirs.replay().orders) == ["a", "child"]
    finally:
        os.write(down_w, b"x")
        os.waitpid(pid, 0)
        for fd in (up_r, up_w, down_r, down_w):
            os.close(fd)


def test_a_killed_owner_leaves_no_lock(impl: Impl, path: Path) -> None:
    child = _in_child(
        """
        import os
        j = Journal(path); r = mod.ExecutionRouter(); j.attach(r)
        r.register_working(trade_id="a", asset="X", position_side="LONG", plan=plan)
        os.kill(os.getpid(), 9)
        """,
        path,
        impl.name,
    )
    assert child.returncode == -9
    with Journal(path) as journal:
        restored = journal.restore(router_type=impl.ExecutionRouter)
        journal.attach(restored)
        assert [wo.trade_id for wo in restored.working_orders()] == ["a"]


# ── full and read-only disks ─────────────────────────────────────────────────


@contextlib.contextmanager
def _tmpfs(tmp_path: Path, size: str) -> Iterator[Path | None]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        yield None
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill_until_refused(router: Any, impl: Impl) -> tuple[int, JournalError]:
    for i in range(200_000):
        try:
            register(router, impl, f"t{i}", metadata={"pad": "x" * 2000})
        except JournalError as err:
            return i, err
    raise AssertionError("the disk never filled")


def test_a_full_disk_raises_journal_error_and_changes_nothing(impl: Impl, tmp_path: Path) -> None:
    with _tmpfs(tmp_path, "3m") as mnt:
        if mnt is None:  # not root: the same fault from a file-size limit
            _full_disk_by_rlimit(impl, tmp_path)
            return
        path = mnt / "router.journal"
        filler = mnt / "filler"
        filler.write_bytes(b"x" * (1 << 20))
        router = impl.router()
        journal = Journal(path)
        journal.attach(router)
        n, err = _fill_until_refused(router, impl)
        assert "No space left" in str(err)
        assert len(router.working_orders()) == n
        assert router.working(f"t{n}") is None
        assert (
            router.plan_entry(
                trade_id="p", asset="BTCUSDT", position_side="LONG", reference_price=1.0
            )
            is not None
        )  # planning still works
        with pytest.raises(JournalError):  # again: still full
            register(router, impl, "big", metadata={"pad": "x" * 200_000})
        assert router.working("big") is None
        journal_equals_registry(router, REGISTRY_COUNTERS)
        # Space returns: the next change goes through, the file restores.
        filler.unlink()
        register(router, impl, f"t{n}", metadata={"pad": "x" * 2000})
        router.note_fill("t0")
        journal_equals_registry(router, REGISTRY_COUNTERS)
        journal.close()
        with Journal(path) as again:
            restored = again.restore(router_type=impl.ExecutionRouter)
        assert [wo.trade_id for wo in restored.working_orders()] == [
            wo.trade_id for wo in router.working_orders()
        ]


def _full_disk_by_rlimit(impl: Impl, tmp_path: Path) -> None:
    child = _in_child(
        """
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (3 << 20, 3 << 20))
        r = mod.ExecutionRouter(); j = Journal(path); j.attach(r)
        for i in range(100000):
            try:
                r.register_working(trade_id=f"t{i}", asset="X", position_side="LONG",
                                   plan=mod.ExecutionPlan(order_type="LIMIT", limit_price=1.0,
                                   ttl_s=9.0, is_maker=True, metadata={"pad": "x" * 2000}))
            except JournalError:
                break
        assert r.working(f"t{i}") is None and len(r.working_orders()) == i
        print("refused at", i)
        """,
        tmp_path / "rl.journal",
        impl.name,
    )
    assert "refused at" in child.stdout, child.stderr


def test_a_read_only_file_system(impl: Impl, tmp_path: Path) -> None:
    with _tmpfs(tmp_path, "8m") as mnt:
        if mnt is None:
            pytest.skip("needs root to mount a read-only file system")
        path = mnt / "router.journal"
        router = impl.router()
        journal = Journal(path)
        journal.attach(router)
        register(router, impl, "x")
        journal.detach()  # (a file open for writing keeps the mount writable)
        remount = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True)
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remount.stderr!r}")
        with Journal(path) as reader:  # a journal on read-only media restores
            restored = reader.restore(router_type=impl.ExecutionRouter)
        assert [wo.trade_id for wo in restored.working_orders()] == ["x"]
        with pytest.raises(JournalError, match="Read-only file system"):
            journal.attach(router)
        assert [wo.trade_id for wo in router.working_orders()] == ["x"]
        register(router, impl, "y")  # not journaled, and works
        assert (
            router.plan_entry(
                trade_id="p", asset="BTCUSDT", position_side="LONG", reference_price=1.0
            )
            is not None
        )
        with pytest.raises(JournalError, match="Read-only file system"):
            Journal(mnt / "new.journal")
        journal.close()


# ── migration and configs ────────────────────────────────────────────────────


def test_a_sqlite_journal_restores_and_is_replaced_on_attach(impl: Impl, tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copy(DATA / "journal-sqlite-v1.db", path)
    with Journal(path) as journal:
        restored = journal.restore(router_type=impl.ExecutionRouter)
        assert [wo.trade_id for wo in restored.working_orders()] == ["a", "b", 7]
        assert restored.config == ExecConfig(style="maker_both", entry_retries=2)
        assert restored.counters["fills_working"] == 1
        assert restored.working(7).plan.metadata == {"k": [2, "x"]}
        assert restored.working(7).plan.limit_price == 102.0
        journal.attach(restored)
        register(restored, impl, "new")
    assert path.read_bytes()[:8] == jf.MAGIC
    with Journal(path) as journal:
        assert list(journal.replay().orders) == ["a", "b", 7, "new"]


def test_a_config_subclass_restores_as_exec_config(impl: Impl, path: Path) -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Mine(ExecConfig):
        extra: int = 5

    router = impl.router(config=Mine(style="maker_both"))
    with Journal(path) as journal:
        journal.attach(router)
        register(router, impl, "a")
    with Journal(path) as journal:
        restored = journal.restore(router_type=impl.ExecutionRouter)
        assert type(restored.config) is ExecConfig
        assert restored.config == ExecConfig(style="maker_both")
        mine = Mine(style="maker_exit")
        assert journal.restore(mine, router_type=impl.ExecutionRouter).config is mine


def test_non_finite_clock_readings_are_refused_before_anything(impl: Impl, path: Path) -> None:
    readings = iter([1.0, float("nan")])
    router = impl.router(clock=lambda: next(readings))
    with Journal(path) as journal:
        journal.attach(router)
        with pytest.raises(ValueError, match="clock"):
            register(router, impl, "a")
        assert router.working_orders() == []
        assert journal.replay().orders == {}
