"""Compaction in the background (native core): changes made while a compaction is
pending survive it, the settled file holds the pure backend's bytes, a failing
compaction loses nothing, and detach, close and fork while one is pending."""

from __future__ import annotations

import errno
import gc
import os
import random
import select
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from exec_router import journal_format as jf
from exec_router.errors import JournalError
from exec_router.journal import Journal

from ..backends import BACKENDS, NATIVE
from ..conftest import FakeClock
from .journal_child import order_fields
from .test_journal_faults import FIXED, journal_equals_registry

GROW, OPEN, SYNC = 1, 2, 4  # the native core's injectable system calls

pytestmark = pytest.mark.skipif(NATIVE is None, reason="the native core compacts in a thread")


def _plan(module: Any, n: int, pad: int = 0) -> Any:
    return module.ExecutionPlan(
        order_type="LIMIT", limit_price=1.0 + n % 7, post_only=True, ttl_s=8.0, is_maker=True,
        action="EXIT" if n % 3 else "ENTER", reason="r", metadata={"n": n, "pad": "p" * pad},
    )  # fmt: skip


def _register(router: Any, module: Any, tid: Any, n: int, pad: int = 0) -> None:
    router.register_working(
        trade_id=tid, asset="BTCUSDT", position_side="LONG", plan=_plan(module, n, pad)
    )


def _attach(
    path: Path, router: Any, clock: FakeClock, compact_bytes: int = 8192, sync: str = "process"
) -> Journal:
    if sync == "group":
        journal = Journal(path, sync="power", group_ms=1.0)
    else:
        journal = Journal(path, sync="power" if sync == "power" else "process")
    journal._file_id = bytes(range(16))
    journal._times = lambda: (FIXED[0] + clock.now, FIXED[1] + clock.now)
    journal._compact_bytes = compact_bytes
    journal.attach(router)
    return journal


def _on_disk(path: Path) -> jf.Replay:
    """The file as a fresh process reads it (not through the attached writer)."""
    return jf.read(path.read_bytes(), str(path))


def _same_as_disk(path: Path, router: Any) -> None:
    r = _on_disk(path)
    assert list(r.orders) == [wo.trade_id for wo in router.working_orders()]
    got = [order_fields(wo) for wo in _restored(path).working_orders()]
    assert got == [order_fields(wo) for wo in router.working_orders()]
    assert r.counters == dict(router.counters)


def _restored(path: Path) -> Any:
    """A router restored from a copy of the file (the original stays attached)."""
    copy = path.with_name("copy.journal")
    copy.write_bytes(path.read_bytes())
    with Journal(copy) as j:
        restored = j.restore(router_type=NATIVE.ExecutionRouter, clock=FakeClock(0.0))  # type: ignore[union-attr]
    copy.unlink()
    return restored


def _step(router: Any, module: Any, rng: random.Random, n: int) -> None:
    tid = f"t{rng.randrange(40)}"
    op = rng.random()
    if op < 0.6:
        _register(router, module, tid, n, pad=rng.randrange(60))
    elif op < 0.8:
        router.note_fill(tid)
    else:
        router.clear_working(tid)


def _until_pending(router: Any, journal: Journal, rng: random.Random, n: int) -> int:
    """Changes until a compaction is pending (held); returns the next step number."""
    while not journal.stats()["compacting"]:
        _step(router, NATIVE, rng, n)
        n += 1
        assert n < 100_000
    return n


def _held(
    tmp_path: Path, seed: int, sync: str = "process"
) -> tuple[Any, Path, Journal, random.Random, int]:
    """A journaled native router with a compaction pending and held back:
    (router, path, journal, rng, the next step number)."""
    clock = FakeClock(100.0)
    router = NATIVE.ExecutionRouter(clock=clock)  # type: ignore[union-attr]
    path = tmp_path / "j.journal"
    journal = _attach(path, router, clock, sync=sync)
    assert router._journal_hold(True)
    rng = random.Random(seed)
    return router, path, journal, rng, _until_pending(router, journal, rng, 0)


def _temp_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.endswith(".new"))


def _written(path: Path) -> list[str]:
    """The held compaction's snapshot file, once its thread has written it."""
    for _ in range(2000):
        if found := _temp_files(path):
            return found
        time.sleep(0.005)
    raise AssertionError("no snapshot file")


@pytest.mark.parametrize("sync", ["process", "power", "group"])
def test_changes_while_a_compaction_is_pending_survive_it(tmp_path: Path, sync: str) -> None:
    router, path, journal, rng, n = _held(tmp_path, 5, sync)
    before = journal.stats()
    assert len(_written(path)) == 1  # the snapshot, written beside the journal
    for _ in range(30):  # appended to the old file, which stays complete
        _step(router, NATIVE, rng, n)
        n += 1
        assert journal.stats()["compacting"]
        _same_as_disk(path, router)
    journal_equals_registry(router)
    old = journal.stats()["bytes"]
    assert journal._settle()
    after = journal.stats()
    assert after["compactions"] == before["compactions"] + 1
    assert not after["compacting"]
    assert after["bytes"] < old
    assert _temp_files(path) == []
    _same_as_disk(path, router)
    r = _on_disk(path)
    assert r.records == after["records"]
    assert after["sync"] == ("process" if sync == "process" else "power")
    if sync == "power":
        assert after["syncs"] > before["syncs"]
    journal.close()


def _lockstep(tmp_path: Path, hold: bool) -> tuple[list[int], dict[str, bytes]]:
    """The same changes on both backends; the native core's compactions held until the
    log would compact again. Returns the steps compared while nothing was pending."""
    routers, journals, clocks = {}, {}, {}
    for name, module in BACKENDS:
        clocks[name] = FakeClock(100.0)
        routers[name] = module.ExecutionRouter(clock=clocks[name])
        journals[name] = _attach(tmp_path / f"{name}.journal", routers[name], clocks[name])
    native = journals["native"]
    compared = []
    rngs = {name: random.Random(17) for name in routers}
    for n in range(1500):
        for name, module in BACKENDS:
            clocks[name].now += 0.25
            _step(routers[name], module, rngs[name], n)
        stats = native.stats()
        if hold and not stats["compacting"]:
            routers["native"]._journal_hold(True)
        if not stats["compacting"]:
            assert routers["native"]._journal_bytes() == routers["pure"]._journal_bytes()
            compared.append(n)
    for j in journals.values():
        j.close()
    return compared, {name: (tmp_path / f"{name}.journal").read_bytes() for name in routers}


@pytest.mark.skipif(len(BACKENDS) < 2, reason="one backend")
@pytest.mark.parametrize("hold", [False, True])
def test_the_settled_file_holds_the_pure_backends_bytes(tmp_path: Path, hold: bool) -> None:
    compared, files = _lockstep(tmp_path, hold)
    assert len(compared) > 100
    assert files["native"] == files["pure"]  # the whole file: capacity included
    with Journal(tmp_path / "native.journal") as j:
        assert j.replay().records > 0


def test_a_failing_background_compaction_loses_nothing_and_is_retried(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    clock = FakeClock(100.0)
    router = NATIVE.ExecutionRouter(clock=clock)  # type: ignore[union-attr]
    path = tmp_path / "j.journal"
    journal = _attach(path, router, clock)
    NATIVE._journal_faults(OPEN, errno.ENOSPC)  # type: ignore[union-attr]
    request.addfinalizer(lambda: NATIVE._journal_faults(0, 0))  # type: ignore[union-attr]
    rng = random.Random(9)
    n = 0
    while journal.stats()["compaction_errors"] == 0:
        _step(router, NATIVE, rng, n)
        n += 1
        journal._settle()
        assert n < 20_000
    stats = journal.stats()
    assert stats["compactions"] == 0
    assert "No space left on device" in stats["last_error"]
    assert stats["compact_at"] > stats["bytes"]  # retried once the log grew by half again
    journal_equals_registry(router)
    _same_as_disk(path, router)
    assert _temp_files(path) == []
    NATIVE._journal_faults(0, 0)  # space returns
    while journal.stats()["compactions"] == 0:
        _step(router, NATIVE, rng, n)
        n += 1
        journal._settle()
        assert n < 40_000
    journal_equals_registry(router)
    _same_as_disk(path, router)
    journal.close()


@pytest.mark.parametrize("how", ["detach", "close", "sync", "gc"])
def test_detach_close_and_sync_finish_a_pending_compaction(tmp_path: Path, how: str) -> None:
    router, path, journal, rng, n = _held(tmp_path, 3)
    for _ in range(5):
        _step(router, NATIVE, rng, n)
        n += 1
    size, inode = path.stat().st_size, path.stat().st_ino
    if how == "sync":
        journal.sync()
        assert journal.stats()["compactions"] == 2
        journal.close()
    elif how == "gc":  # the router goes without a detach: its writer finishes the work
        journal._router = None
        want = [order_fields(wo) for wo in router.working_orders()]
        del router
        gc.collect()
        router = None
    else:
        getattr(journal, how)()
    assert _temp_files(path) == []
    assert path.stat().st_ino != inode
    assert path.stat().st_size <= size
    if router is not None:
        _same_as_disk(path, router)
    else:
        assert [order_fields(wo) for wo in _restored(path).working_orders()] == want


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_never_switches_a_pending_compaction(tmp_path: Path) -> None:
    router, path, journal, _, _ = _held(tmp_path, 4)
    temp = _written(path)
    inode = path.stat().st_ino
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            try:
                _register(router, NATIVE, "child", 1)
                code = 1
            except JournalError:
                pass
            if journal._settle() is not True or journal.stats()["compactions"] != 0:
                code = 2
            journal.close()  # leaves the parent's files alone
        except BaseException:
            code = 3
        os.write(w, bytes([code]))
        os._exit(code)
    try:
        ready, _, _ = select.select([r], [], [], 60)
        if not ready:  # the child waits for a thread it does not have
            os.kill(pid, signal.SIGKILL)
        assert ready, "the forked child hung"
        assert os.read(r, 1) == b"\x00"
    finally:
        os.waitpid(pid, 0)
        os.close(r)
        os.close(w)
    assert path.stat().st_ino == inode
    assert _temp_files(path) == temp
    _register(router, NATIVE, "parent", 2)
    assert journal._settle()
    assert path.stat().st_ino != inode
    assert _temp_files(path) == []
    _same_as_disk(path, router)
    journal.close()


def test_stale_snapshot_files_are_removed_at_attach(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    stale = tmp_path / ".j.journal.0123456789abcdef.new"
    others = [tmp_path / ".j.journal.xyz.new", tmp_path / ".k.journal.0123456789abcdef.new"]
    for p in [stale, *others]:
        p.write_bytes(b"half a snapshot")
    for _, module in BACKENDS:
        stale.write_bytes(b"half a snapshot")
        with Journal(path) as journal:
            journal.attach(module.ExecutionRouter())
            assert not stale.exists()
            assert all(p.exists() for p in others)


def test_a_kill_while_a_compaction_is_pending_restores_and_the_next_attach_cleans_up(
    tmp_path: Path,
) -> None:
    from .test_journal_faults import _in_child

    path = tmp_path / "j.journal"
    child = _in_child(
        """
        import os
        r = mod.ExecutionRouter()
        j = Journal(path); j._compact_bytes = 8192; j.attach(r); r._journal_hold(True)
        n = 0
        while not j.stats()["compacting"]:
            r.register_working(trade_id=f"t{n % 30}", asset="X", position_side="LONG", plan=plan)
            n += 1
        for k in range(10):  # acknowledged while the compaction is pending
            r.note_fill(f"t{(n + k) % 30}")
        print(sorted(wo.trade_id for wo in r.working_orders()), dict(r.counters)["fills_working"])
        sys.stdout.flush()
        while not any(p.endswith(".new") for p in os.listdir(os.path.dirname(path))):
            pass
        os.kill(os.getpid(), 9)
        """,
        path,
        "native",
    )
    assert child.returncode == -9, child.stderr
    assert len(_temp_files(path)) == 1  # the held snapshot, never renamed
    with Journal(path) as j:
        r = j.restore(router_type=NATIVE.ExecutionRouter)  # type: ignore[union-attr]
        assert child.stdout.strip() == (
            f"{sorted(wo.trade_id for wo in r.working_orders())} {r.counters['fills_working']}"
        )
        j.attach(r)
        assert _temp_files(path) == []
