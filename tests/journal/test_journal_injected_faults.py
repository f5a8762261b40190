"""A file system gone read-only while a journal is attached (native core): the
errno is injected into the journal's system calls, since a mount with a writable
shared map cannot be remounted read-only. Each affected call raises JournalError
(or records a compaction error), the registry is unchanged, planning works, and
once the fault clears the file restores to the last acknowledged state."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exec_router.errors import JournalError
from exec_router.journal import Journal

from ..backends import NATIVE
from ..conftest import FakeClock
from .journal_child import order_fields
from .test_journal_compaction import GROW, OPEN, SYNC, _plan

pytestmark = pytest.mark.skipif(NATIVE is None, reason="faults are injected in the native core")


@pytest.fixture
def read_only() -> Iterator[Any]:
    """``read_only(on)``: EROFS from fallocate, opening a new file, msync and fsync."""

    def switch(on: bool) -> None:
        NATIVE._journal_faults(GROW | OPEN | SYNC, errno.EROFS if on else 0)  # type: ignore[union-attr]

    yield switch
    switch(False)


def _state(router: Any) -> tuple[list[dict[str, Any]], dict[str, int]]:
    return [order_fields(wo) for wo in router.working_orders()], dict(router.counters)


def _restored(path: Path) -> Any:
    with Journal(path) as j:
        return j.restore(router_type=NATIVE.ExecutionRouter, clock=FakeClock(0.0))  # type: ignore[union-attr]


def _plans(router: Any) -> None:
    plan = router.plan_entry(
        trade_id="p", asset="BTCUSDT", position_side="LONG", reference_price=100.0
    )
    assert plan.order_type in ("LIMIT", "MARKET")


@pytest.mark.parametrize("sync", ["process", "power"])
def test_a_file_system_gone_read_only_while_attached(
    tmp_path: Path, read_only: Any, sync: str
) -> None:
    path = tmp_path / "j.journal"
    router = NATIVE.ExecutionRouter(clock=FakeClock(100.0))  # type: ignore[union-attr]
    journal = Journal(path, sync="power" if sync == "power" else "process")
    journal._compact_bytes = 64 * 1024  # compactions start (and fail) on the way
    journal.attach(router)
    for i in range(5):
        router.register_working(
            trade_id=f"a{i}", asset="BTCUSDT", position_side="LONG", plan=_plan(NATIVE, i)
        )
    router.note_fill("a0")
    read_only(True)
    refused = accepted = 0
    errors: list[str] = []
    for i in range(1500):  # 2 KiB each: past the first MiB, so the file must grow
        before = _state(router)
        try:
            router.register_working(
                trade_id=f"b{i}", asset="BTCUSDT", position_side="LONG",
                plan=_plan(NATIVE, i, pad=2048),
            )  # fmt: skip
        except JournalError as exc:
            errors.append(str(exc))
            assert _state(router) == before  # nothing changed
            assert router.working(f"b{i}") is None
            refused += 1
        else:
            accepted += 1
        _plans(router)
        journal._settle()
        if refused >= 3:
            break
    stats = journal.stats()
    if sync == "power":
        assert accepted == 0  # every change needs its msync
    else:
        # The map takes records until the file must grow; compactions fail meanwhile.
        assert accepted > 0
        assert stats["compaction_errors"] >= 1
        assert "Read-only file system" in stats["last_error"]
    assert refused >= 3
    assert all("Read-only file system" in e for e in errors)
    acknowledged = _state(router)
    read_only(False)  # the file system is writable again
    router.register_working(
        trade_id="c", asset="BTCUSDT", position_side="LONG", plan=_plan(NATIVE, 1)
    )
    router.clear_working("c")
    assert _state(router) == acknowledged
    journal._settle()
    journal.close()
    assert _state(_restored(path)) == acknowledged


def test_a_read_only_sync_fails_journal_sync_and_changes_nothing(
    tmp_path: Path, read_only: Any
) -> None:
    path = tmp_path / "j.journal"
    router = NATIVE.ExecutionRouter(clock=FakeClock(100.0))  # type: ignore[union-attr]
    journal = Journal(path)
    journal.attach(router)
    router.register_working(
        trade_id="a", asset="BTCUSDT", position_side="LONG", plan=_plan(NATIVE, 1)
    )
    data = router._journal_bytes()
    read_only(True)
    with pytest.raises(JournalError, match="Read-only file system"):
        journal.sync()  # a snapshot cannot be written
    assert router._journal_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["j.journal"]  # no snapshot left behind
    read_only(False)
    router.register_working(
        trade_id="b", asset="BTCUSDT", position_side="LONG", plan=_plan(NATIVE, 2)
    )
    journal.close()
    assert [wo.trade_id for wo in _restored(path).working_orders()] == ["a", "b"]
