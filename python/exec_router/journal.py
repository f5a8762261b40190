"""A crash-safe journal of a router's working-order registry: one file, written ahead.

Attach a :class:`Journal` to a router and every registry change
(``register_working``, ``note_fill``, ``note_cancel``, ``clear_working``) and
every config change appends its record to the file *before* the change is made,
inside the router (Rust, or the pure backend's equivalent), with nothing in
Python between the two. If the append fails, the call raises
:class:`JournalError` and nothing changed. ``Journal(path).restore()`` rebuilds
a router holding exactly the registry the process had acknowledged.

The format is in ``journal_format.py`` (the spec) and docs/state-and-journal.md.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from . import journal_format as _jf
from . import journal_sqlite as _legacy
from .config import ExecConfig
from .constants import COUNTER_KEYS
from .errors import JournalError

if TYPE_CHECKING:
    from . import ExecutionRouter

_R = TypeVar("_R")

__all__ = ["FORMAT_VERSION", "Journal", "JournalError"]

FORMAT_VERSION = _jf.VERSION

# Journals open in this process, by real path: a POSIX lock never conflicts
# within one process, and closing any descriptor of a locked file drops it.
_OPEN: dict[str, Journal] = {}
_OPEN_LOCK = threading.Lock()
_ATTACH_TRIES = 5
# Tests only: ``fn() -> (wall, boot)`` in place of CLOCK_REALTIME and CLOCK_BOOTTIME.
_clocks: Callable[[], tuple[float, float]] | None = None


class Journal:
    """A crash-safe record of one router's working orders, in the file ``path``.

    A missing ``path`` is created (an empty journal). An existing one must be
    an exec-router journal of a format this version reads (or of the former
    SQLite format, which restores and is replaced by the new format on
    attach); anything else raises :class:`JournalError` and is left untouched.

    ``sync="process"`` (the default): once a call returns, its record is in
    the kernel's page cache; a crash of the process (kill -9 included) loses
    nothing. ``sync="power"``: each record is also synced to the device
    (msync) before the change. ``sync="power", group_ms=N``: a thread syncs
    at most every N ms, so a change is on the device within N ms plus one
    sync after its call returned.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sync: Literal["process", "power"] = "process",
        group_ms: float | None = None,
    ) -> None:
        if sync not in ("process", "power"):
            raise ValueError(f"Journal() got an invalid sync: {sync!r}")
        if group_ms is not None and (
            sync != "power"
            or isinstance(group_ms, bool)
            or not isinstance(group_ms, (int, float))
            or not 0 < group_ms < 3.6e6
        ):
            raise ValueError(
                f"Journal() got an invalid group_ms: {group_ms!r} (needs sync='power')"
            )
        self.path = Path(path)
        self.sync_mode = sync
        self.group_ms = None if group_ms is None else float(group_ms)
        self._real = os.path.realpath(self.path)
        self._router: Any = None
        self._closed = False
        self._legacy = False
        self._file_id: bytes | None = None  # tests fix it to compare bytes
        self._times: Callable[[], tuple[float, float]] | None = None  # likewise the clocks
        self._compact_bytes: int | None = None  # tests: compact past this, not 1 MiB
        self._check_or_create()

    # ── opening: create atomically, refuse what is not ours ───────────────

    def _check_or_create(self) -> None:
        path = self._real
        if os.path.isdir(path):
            raise JournalError(f"journal {str(self.path)!r} is a directory")
        if not os.path.exists(path):
            _create(path)
        head = self._read(limit=100)
        if _legacy.is_sqlite(head):
            _legacy.check_header(self.path, head)
            self._legacy = True
        else:
            _jf.check_header(head[: _jf.HEADER_LEN], str(self.path))

    def _read(self, limit: int | None = None) -> bytes:
        """The file's bytes: through the writer while this process has it attached."""
        with _OPEN_LOCK:
            holder = _OPEN.get(self._real)
        if holder is not None and holder._router is not None:
            data = holder._router._journal_bytes()
            if data is not None:
                return bytes(data if limit is None else data[:limit])
        try:
            with open(self._real, "rb") as f:
                return f.read() if limit is None else f.read(limit)
        except OSError as err:
            raise JournalError(f"cannot read journal {str(self.path)!r}: {err}") from err

    @contextlib.contextmanager
    def _bytes_to_read(self) -> Iterator[bytes | mmap.mmap]:
        """The file's bytes for a replay or restore: through the writer while this
        process has it attached, else the file mapped read-only for the native
        reader (no copy of a file of a million orders)."""
        with _OPEN_LOCK:
            holder = _OPEN.get(self._real)
        if _jf._NATIVE_READ is None or (holder is not None and holder._router is not None):
            yield self._read()
            return
        try:
            fd = os.open(self._real, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            raise JournalError(f"cannot read journal {str(self.path)!r}: {err}") from err
        try:  # the map keeps its own descriptor
            mapped: mmap.mmap | None = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # an empty file, or one that cannot be mapped
            mapped = None
        finally:
            os.close(fd)
        if mapped is None:
            yield self._read()
            return
        with mapped:
            yield mapped

    # ── lifecycle ────────────────────────────────────────────────────────────

    def attach(self, router: Any) -> None:
        """Journal ``router``: write its registry as a snapshot, then every change.

        A journal serves one router, a router has one journal, and a file is
        attached by one journal at a time: a POSIX lock on the file itself
        (any path or symlink to it), released by ``detach``/``close`` or the
        end of the process. A forked child does not hold it.
        """
        self._check_open()
        if self._router is not None:
            raise RuntimeError("Journal.attach(): already attached; detach() first")
        with _OPEN_LOCK:
            if self._real in _OPEN:
                raise JournalError(
                    f"journal {str(self.path)!r} is already attached in this process"
                )
            _OPEN[self._real] = self
        try:
            fd = self._open_locked()
            _remove_stale_snapshots(self._real)
            file_id = self._file_id if self._file_id is not None else os.urandom(16)
            router._journal_attach(
                fd,
                self._real,
                self.sync_mode,
                self.group_ms,
                file_id,
                self._times or _clocks,
                self._compact_bytes,
            )
        except BaseException:
            with _OPEN_LOCK:
                _OPEN.pop(self._real, None)
            raise
        self._router = router
        if self._legacy:  # now in the new format: the SQLite sidecars go
            self._legacy = False
            for suffix in ("-wal", "-shm", ".lock"):
                _unlink(self._real + suffix)

    def _open_locked(self) -> int:
        """A descriptor of the file, locked, that the path still names."""
        for _ in range(_ATTACH_TRIES):
            try:
                fd = os.open(self._real, os.O_RDWR | os.O_CLOEXEC)
            except OSError as err:
                raise JournalError(f"cannot open journal {str(self.path)!r}: {err}") from err
            try:
                _jf.lock_fd(fd)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.EACCES, errno.EAGAIN):
                    raise JournalError(
                        f"journal {str(self.path)!r} is attached by another process"
                    ) from None
                raise JournalError(f"cannot lock journal {str(self.path)!r}: {err}") from err
            try:
                same = os.fstat(fd).st_ino == os.stat(self._real).st_ino
            except OSError:
                same = False
            if same:
                return fd
            os.close(fd)  # replaced meanwhile (a compaction): lock the new file
        raise JournalError(f"journal {str(self.path)!r} keeps being replaced; try again")

    def sync(self) -> None:
        """Rewrite the file from the registry's current content (a snapshot).

        Call it after changing a ``WorkingOrder`` in place (say, extending its
        ``deadline``) or a plan's metadata: such edits are not registry
        changes, so they are not journaled on their own.
        """
        self._check_open()
        if self._router is None:
            raise RuntimeError("Journal.sync(): no router attached")
        self._router._journal_sync()

    def _settle(self) -> bool:
        """Wait for a compaction running in the background (native core) and switch
        to its file; whether one was pending. ``detach``/``close`` do it too."""
        self._check_open()
        return self._router is not None and bool(self._router._journal_settle())

    def detach(self) -> None:
        """Stop journaling (a pending compaction is finished first); the file keeps
        the registry as of the last change."""
        router, self._router = self._router, None
        if router is not None:
            try:
                router._journal_detach()
            finally:
                with _OPEN_LOCK:
                    if _OPEN.get(self._real) is self:
                        del _OPEN[self._real]

    def close(self) -> None:
        """Detach and close. Idempotent."""
        if not self._closed:
            self.detach()
            self._closed = True

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        status = "closed" if self._closed else "attached" if self._router else "detached"
        return f"<Journal {str(self.path)!r} {status}>"

    def stats(self) -> dict[str, Any]:
        """Records and bytes in the file, compactions (``compacting``: one is running
        in the background) and the last one's duration (s), syncs and their latency
        (s), the sync mode; empty when detached."""
        self._check_open()
        if self._router is None:
            return {}
        stats: dict[str, Any] = self._router._journal_stats() or {}
        return stats

    # ── restore ──────────────────────────────────────────────────────────────

    def replay(self) -> _jf.Replay:
        """The file read back (a torn tail is left out)."""
        self._check_open()
        if self._legacy:
            raise JournalError(f"journal {str(self.path)!r} is in the former SQLite format")
        with self._bytes_to_read() as data:
            if isinstance(data, mmap.mmap):  # only for the native reader
                from ._core import _journal_read

                return _replay(list(_journal_read(data, str(self.path))))
            return _jf.read(data, str(self.path))

    def state(self) -> dict[str, Any]:
        """The journaled registry as an ``exec_router.state`` dict (wall-clock times)."""
        from . import state as _state

        self._check_open()
        if self._legacy:
            return _legacy.read_state(self.path)
        r = self.replay()
        working = []
        for o in r.orders.values():
            o = _jf.Order._make(o)
            offset = o.wall_at - o.clock_at
            working.append(
                {
                    "trade_id": o.trade_id,
                    "asset": o.asset,
                    "position_side": o.side,
                    "action": o.action,
                    "plan": dict(o.plan),
                    "submitted_at": o.submitted_at + offset,
                    "deadline": o.deadline + offset,
                    "retries_left": o.retries_left,
                    "base_trade_id": o.base_trade_id,
                    "retry_n": o.retry_n,
                }
            )
        return {
            "format": _state.FORMAT,
            "version": _state.VERSION,
            "wall_time": time.time(),
            "config": r.config if r.config is not None else _jf.config_fields(ExecConfig()),
            "counters": r.counters,
            "working": working,
        }

    @overload
    def restore(
        self,
        config: ExecConfig | None = None,
        *,
        logger: Any = None,
        clock: Any = None,
        router_type: None = None,
    ) -> ExecutionRouter: ...
    @overload
    def restore(
        self,
        config: ExecConfig | None = None,
        *,
        logger: Any = None,
        clock: Any = None,
        router_type: type[_R],
    ) -> _R: ...
    def restore(
        self,
        config: ExecConfig | None = None,
        *,
        logger: Any = None,
        clock: Any = None,
        router_type: Any = None,
    ) -> Any:
        """A new router holding the journaled registry and counters.

        ``config`` overrides the journaled one (which restores as an
        ``ExecConfig`` whatever class wrote it); ``logger`` and ``clock`` are
        the new router's. Remaining TTLs are kept: within the same boot by the
        boot-relative clock (a wall-clock step moves nothing), across a reboot
        by the wall clock. An order whose TTL ran out meanwhile comes back
        expired. ``router_type`` defaults to ``exec_router.ExecutionRouter``.
        The new router is not attached.
        """
        if router_type is None:
            from . import ExecutionRouter as router_type
        if self._legacy:
            return router_type.from_state(
                _legacy.read_state(self.path), config, logger=logger, clock=clock
            )
        # A million orders are as many objects at once: no GC passes over them meanwhile.
        with _gc_paused():
            return self._restore(config, logger, clock, router_type)

    def _restore(self, config: ExecConfig | None, logger: Any, clock: Any, router_type: Any) -> Any:
        times = None
        if _native_type(router_type):  # orders read straight into WorkingOrders
            from ._core import _journal_read

            self._check_open()
            with self._bytes_to_read() as data:
                *fields, times = _journal_read(data, str(self.path), True)
            r = _replay(fields)
        else:
            r = self.replay()
        if config is None:
            try:
                config = ExecConfig(**r.config) if r.config is not None else ExecConfig()
            except (TypeError, ValueError) as err:
                raise JournalError(f"journal {str(self.path)!r} has a bad config: {err}") from err
        router = router_type(config, logger=logger, clock=clock)
        restore_orders(router, r, times)
        for key, value in r.counters.items():
            router.counters[key] = value
        return router

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"Journal {str(self.path)!r} is closed")


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No GC pass while a restore allocates its objects (two per order); then
    they join the oldest generation, not the youngest, so the next young
    collection (at the first allocation after ``gc.enable()``, still inside
    the restore) does not traverse them all, nor later a middle one.
    ``gc.freeze()`` + ``gc.unfreeze()`` moves every tracked object there in
    O(1); skipped when the process keeps objects frozen (unfreeze would
    release them)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
    finally:
        if was:
            gc.enable()


def _native_type(router_type: Any) -> bool:
    """Whether ``router_type`` is the native core's router (or a subclass)."""
    try:
        from ._core import ExecutionRouter as Native
    except ImportError:
        return False
    return isinstance(router_type, type) and issubclass(router_type, Native)


def _replay(fields: list[Any]) -> _jf.Replay:
    fid, boot, created, cfg, counts, found, end, torn, seq, records = fields
    counted = dict(zip(COUNTER_KEYS, counts, strict=True))
    return _jf.Replay(fid, boot, created, cfg, counted, found, end, torn, seq, records)


def _plan_type(router: Any) -> Any:
    from . import reference

    if isinstance(router, reference.ExecutionRouter):
        return reference.ExecutionPlan
    from ._core import ExecutionPlan

    return ExecutionPlan


def restore_orders(router: Any, r: _jf.Replay, times: Any = None) -> None:
    """Register ``r``'s orders on ``router`` with their remaining TTLs.

    With ``times`` (from ``_journal_read(..., working=True)``), ``r.orders``
    are the native core's ``WorkingOrder``s, registered in one native call;
    otherwise they are ``journal_format.Order`` tuples."""
    from . import state as _state

    plan_type = _plan_type(router)
    now = _state._clock_reading(router)
    wall_now, boot_now = (_clocks or _jf.now)()
    same_boot = r.boot_id != bytes(16) and r.boot_id == _jf.boot_id()
    if times is not None:
        router._journal_restore(r.orders, times, now, wall_now, boot_now, same_boot)
        return
    register = router.register_working
    for o in r.orders.values():
        tid, asset, side, action, plan, submitted, deadline, retries, base, retry_n = o[:10]
        clock_at, wall_at, boot_at = o[10:]
        elapsed = boot_now - boot_at if same_boot else wall_now - wall_at
        shift = now - clock_at - max(0.0, elapsed)
        try:
            wo = register(
                trade_id=tid,
                asset=asset,
                position_side=side,
                plan=plan_type(**plan),
                base_trade_id=base,
                retry_n=retry_n,
            )
            wo.action = action
            wo.submitted_at = submitted + shift
            wo.deadline = deadline + shift
            wo.retries_left = retries
        except (TypeError, ValueError) as err:
            raise JournalError(f"journal has a bad order {tid!r:.40}: {err}") from err


def _create(path: str) -> None:
    """An empty journal (a header): written beside ``path``, linked into place
    (``os.link`` never replaces a file that appeared meanwhile)."""
    wall, _ = _jf.now()
    content = _jf.header(os.urandom(16), _jf.boot_id(), wall)
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.urandom(6).hex()}.new")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return
    except OSError as err:
        raise JournalError(f"cannot create journal {path!r}: {err}") from err
    finally:
        _unlink(tmp)


def _remove_stale_snapshots(path: str) -> None:
    """Remove the snapshot files (``.<name>.<16 hex>.new``) a killed writer of
    ``path`` left beside it; the caller holds the file's lock, so none is in use."""
    directory, name = os.path.split(path)
    prefix = f".{name}."
    try:
        entries = os.listdir(directory or ".")
    except OSError:
        return
    for entry in entries:
        middle = entry[len(prefix) : -len(".new")]
        if (
            entry.startswith(prefix)
            and entry.endswith(".new")
            and len(middle) == 16
            and all(c in "0123456789abcdef" for c in middle)
        ):
            _unlink(os.path.join(directory, entry))


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
