"""A crash-safe journal of a router's working-order registry, on SQLite (WAL).

Attach a :class:`Journal` to a router and every registry change
(``register_working``, ``note_fill``, ``note_cancel``, ``clear_working``) is
committed, in one transaction, before the router call returns. After a crash,
``Journal(path).restore()`` rebuilds a router holding exactly the registry the
process had acknowledged, via :func:`exec_router.state.from_state`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar, overload

try:
    import fcntl
except ImportError:  # not POSIX: no cross-journal writer lock
    fcntl = None  # type: ignore[assignment]

from . import state as _state
from .config import ExecConfig
from .errors import ExecRouterError

if TYPE_CHECKING:
    from . import ExecutionRouter

_R = TypeVar("_R")

__all__ = ["APPLICATION_ID", "FORMAT_VERSION", "Journal", "JournalError"]

APPLICATION_ID = 0x45524A4C  # "ERJL" in SQLite's header: this file is an exec-router journal
FORMAT_VERSION = 1  # PRAGMA user_version of the journals this module writes

_SQLITE_MAGIC = b"SQLite format 3\x00"
_SCHEMA = (
    "CREATE TABLE orders (seq INTEGER PRIMARY KEY, record TEXT NOT NULL)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
_TABLES = {"orders", "meta"}
_SYNC_MODES = ("NORMAL", "FULL")


class JournalError(ExecRouterError, ValueError):
    """The file is not a journal this version of exec_router can open."""


class Journal:
    """A crash-safe record of one router's working orders, in the SQLite file ``path``.

    A missing ``path`` is created atomically. An existing one must be an
    exec-router journal of a format this version reads; anything else (not
    SQLite, another application's database, a newer format, an empty file)
    raises :class:`JournalError` and is left untouched.

    ``synchronous="NORMAL"`` (the default) makes each change durable against a
    crash of the process; ``"FULL"`` also against power loss, at the price of
    an fsync per change. ``timeout`` is how long a change waits for another
    connection's lock on the file before it raises ``sqlite3.OperationalError``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        timeout: float = 5.0,
    ) -> None:
        if synchronous not in _SYNC_MODES:
            raise ValueError(f"Journal() got an invalid synchronous: {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        if not self.path.exists():
            _create(self.path, synchronous)
        _check_header(self.path)
        _check_database(self.path)
        self._conn = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={synchronous}")
        except BaseException:
            self._conn.close()
            raise
        self._lock = threading.Lock()
        self._router: Any = None
        self._observer: Any = None  # the callable installed on self._router
        self._writer: IO[bytes] | None = None  # holds the file's writer lock while attached
        self._rows: dict[Any, int] = {}  # trade_id -> orders.seq, with the router's key equality
        self._config: ExecConfig | None = None  # the config last written
        # Set while the file may not match the registry (a failed or interrupted write):
        # the next change rewrites the whole registry.
        self._stale = False
        self._closed = False

    # ── lifecycle ────────────────────────────────────────────────────────────

    def attach(self, router: Any) -> None:
        """Journal ``router``: write its current registry, then every change.

        A journal serves one router at a time, a router has one journal, and
        a file is attached by one journal at a time (a lock file beside it,
        released by ``detach``, ``close`` or the process ending).
        """
        self._check_open()
        if self._router is not None:
            raise RuntimeError("Journal.attach(): already attached; detach() first")
        self._writer = _lock_writer(self.path)

        def observer(op: str, trade_id: Any, wo: Any) -> None:
            self._observe(router, op, trade_id)

        with self._lock:
            # Observer first: a change racing the snapshot waits for the lock.
            previous = router._observe_registry(observer)
            if previous is not None:
                router._observe_registry(previous)
                self._release_writer()
                raise RuntimeError("Journal.attach(): the router already has a journal attached")
            self._router, self._observer = router, observer
            try:
                skipped = self._write_all()
                if skipped is not None:
                    raise skipped
            except BaseException:
                router._observe_registry(None)
                self._router = self._observer = None
                self._release_writer()
                raise

    def sync(self) -> None:
        """Rewrite the attached router's whole registry and counters.

        Call it after changing a ``WorkingOrder`` in place (say, extending its
        ``deadline``): such edits are not registry changes, so they are not
        journaled on their own.
        """
        self._check_open()
        if self._router is None:
            raise RuntimeError("Journal.sync(): no router attached")
        with self._lock:
            skipped = self._write_all()
        if skipped is not None:
            raise skipped

    def detach(self) -> None:
        """Stop journaling; the file keeps the registry as of the last change."""
        with self._lock:
            router, observer = self._router, self._observer
            self._router = self._observer = None
            self._rows.clear()
            self._config = None
            self._stale = False
        if router is not None:
            current = router._observe_registry(None)
            if current is not observer:  # not ours: put it back
                router._observe_registry(current)
        self._release_writer()

    def _release_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()  # closing the descriptor releases the lock

    def close(self) -> None:
        """Detach and close the file. Idempotent."""
        if self._closed:
            return
        self.detach()
        with self._lock:
            self._closed = True
            self._conn.close()

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

    # ── restore ──────────────────────────────────────────────────────────────

    def state(self) -> dict[str, Any]:
        """The journaled registry as an ``exec_router.state`` dict."""
        self._check_open()
        try:
            with self._lock:
                self._conn.execute("BEGIN")  # one snapshot for both reads
                try:
                    rows = self._conn.execute("SELECT record FROM orders ORDER BY seq").fetchall()
                    meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
                finally:
                    _rollback(self._conn)
            head = json.loads(meta["head"]) if "head" in meta else {}
            default = dataclasses.asdict(ExecConfig())
            config = json.loads(meta["config"]) if "config" in meta else default
            return {
                "format": _state.FORMAT,
                "version": _state.VERSION,
                "wall_time": head.get("wall_time", time.time()),
                "config": config,
                "counters": head.get("counters", {}),
                "working": [json.loads(record) for (record,) in rows],
            }
        except (sqlite3.DatabaseError, ValueError, TypeError, AttributeError) as err:
            raise JournalError(f"journal {str(self.path)!r} is damaged: {err}") from err

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

        ``config`` overrides the journaled config; ``logger`` and ``clock`` are
        the new router's. Deadlines are kept in wall-clock time: an order whose
        TTL ran out while the process was down comes back expired.
        ``router_type`` defaults to ``exec_router.ExecutionRouter`` (the
        selected backend). The new router is not attached.
        """
        if router_type is None:
            from . import ExecutionRouter as router_type
        return router_type.from_state(self.state(), config, logger=logger, clock=clock)

    # ── writing ──────────────────────────────────────────────────────────────

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"Journal {str(self.path)!r} is closed")

    def _observe(self, router: Any, op: str, trade_id: Any) -> None:
        """The router's registry observer: commit what it holds now for ``trade_id``.

        Writing the registry's current content (not the notified change) keeps
        the file equal to the registry when notifications race (threads).
        """
        with self._lock:
            if router is not self._router:
                return  # a late notification from a router since detached
            current = router.working(trade_id)
            record, error = None, None
            if current is not None:
                try:
                    record = self._record(router, current)
                except TypeError as exc:  # not JSON: drop the row, raise, rewrite next time
                    error = exc
            if self._stale:
                self._write_all()
            else:
                self._write_one(router, op, trade_id, record)
            self._stale = error is not None
        if error is not None:
            raise error

    @contextlib.contextmanager
    def _transaction(self, router: Any) -> Iterator[sqlite3.Connection]:
        """One write transaction that also records the router's counters and config;
        ``self._stale`` stays set unless it commits."""
        conn = self._conn
        self._stale = True
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            self._write_meta(router)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            self._config = None
            raise

    def _write_one(self, router: Any, op: str, trade_id: Any, record: str | None) -> None:
        """Commit ``record`` (None: no order) for ``trade_id``."""
        seq = self._rows.get(trade_id)
        with self._transaction(router) as conn:
            if seq is not None and (record is None or op != "put"):
                conn.execute("DELETE FROM orders WHERE seq = ?", (seq,))
                seq = None
            if record is not None and seq is not None:  # a replacement keeps its position
                conn.execute("UPDATE orders SET record = ? WHERE seq = ?", (record, seq))
            elif record is not None:  # new, or popped and registered again since: goes last
                seq = conn.execute("INSERT INTO orders (record) VALUES (?)", (record,)).lastrowid
        if seq is None:
            self._rows.pop(trade_id, None)
        else:
            self._rows[trade_id] = seq
        self._stale = False

    def _write_all(self) -> TypeError | None:
        """Rewrite the file from the attached router's registry. Orders that are
        not JSON are left out, as a single change leaves them out; returns the
        error of the first one."""
        router = self._router
        offset = _state.wall_offset(router)
        records, skipped = [], None
        for wo in router.working_orders():
            try:
                records.append((wo.trade_id, json.dumps(_state.order_record(wo, offset))))
            except TypeError as exc:
                skipped = skipped or exc
        rows: dict[Any, int] = {}
        self._config = None
        with self._transaction(router) as conn:
            conn.execute("DELETE FROM orders")
            for trade_id, record in records:
                seq = conn.execute("INSERT INTO orders (record) VALUES (?)", (record,)).lastrowid
                assert seq is not None
                rows[trade_id] = seq
        self._rows = rows
        self._stale = False
        return skipped

    @staticmethod
    def _record(router: Any, wo: Any) -> str:
        return json.dumps(_state.order_record(wo, _state.wall_offset(router)))

    def _write_meta(self, router: Any) -> None:
        head = {"wall_time": time.time(), "counters": dict(router.counters)}
        self._conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('head', ?)", (json.dumps(head),)
        )
        config = router.config
        if config is not self._config and config != self._config:
            self._conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('config', ?)",
                (json.dumps(dataclasses.asdict(config)),),
            )
        self._config = config


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


# ── opening: create atomically, refuse what is not ours ──────────────────────


def _create(path: Path, synchronous: str) -> None:
    """Build an empty journal beside ``path``, then link it into place.

    ``os.link`` never replaces an existing file, so a file that appeared
    meanwhile is kept (and then checked like any other).
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.new")
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("BEGIN")
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={FORMAT_VERSION}")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
        _fsync(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return
        if synchronous == "FULL":
            _fsync(path.parent, directory=True)
    except (OSError, sqlite3.Error) as err:
        raise JournalError(f"cannot create journal {str(path)!r}: {err}") from err
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            leftover.unlink(missing_ok=True)


def _lock_writer(path: Path) -> IO[bytes]:
    """Take the writer lock of ``path`` (a lock file beside it), or JournalError."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        handle = lock_path.open("ab")
    except OSError as err:
        raise JournalError(f"cannot lock journal {str(path)!r}: {err}") from err
    if fcntl is not None:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise JournalError(
                f"journal {str(path)!r} is attached by another Journal; detach or close it first"
            ) from None
    return handle


def _fsync(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_header(path: Path) -> None:
    """Refuse, from the raw bytes and before SQLite opens it, a file that is not ours."""
    try:
        with path.open("rb") as f:
            header = f.read(100)
    except OSError as err:
        raise JournalError(f"cannot read journal {str(path)!r}: {err}") from err
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        kind = "an empty file" if not header else "not an SQLite database"
        raise JournalError(f"{str(path)!r} is not an exec-router journal: {kind}")
    (version,) = struct.unpack(">I", header[60:64])
    (app_id,) = struct.unpack(">I", header[68:72])
    _check_ids(path, app_id, version)
    (page,) = struct.unpack(">H", header[16:18])
    page = 65536 if page == 1 else page
    if page < 512 or path.stat().st_size % page:
        raise JournalError(f"{str(path)!r} is a damaged exec-router journal: truncated")


def _check_ids(path: Path, app_id: int, version: int) -> None:
    if app_id != APPLICATION_ID:
        raise JournalError(
            f"{str(path)!r} is not an exec-router journal: "
            f"an SQLite database with application_id {app_id:#x}"
        )
    if version > FORMAT_VERSION:
        raise JournalError(
            f"{str(path)!r} is an exec-router journal of format {version}, newer than "
            f"this exec_router reads (up to {FORMAT_VERSION}); upgrade exec_router"
        )
    if version < 1:
        raise JournalError(f"{str(path)!r} is an exec-router journal of unknown format {version}")


def _check_database(path: Path) -> None:
    """The same checks through SQLite, which also sees a WAL not yet folded into
    the file, plus the schema and a quick integrity check. Read-only: this
    connection never writes ``path``; the -wal/-shm files it may create beside
    a refused file are removed again."""
    sidecars = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    new = [p for p in sidecars if not p.exists()]
    try:
        _check_sqlite(path)
    except JournalError:
        for p in new:
            p.unlink(missing_ok=True)
        raise


def _check_sqlite(path: Path) -> None:
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as err:
        raise JournalError(f"cannot open journal {str(path)!r}: {err}") from err
    try:
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        tables = {
            name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        (check,) = conn.execute("PRAGMA quick_check").fetchone()
    except sqlite3.DatabaseError as err:
        raise JournalError(f"{str(path)!r} is not a readable exec-router journal: {err}") from err
    finally:
        conn.close()
    _check_ids(path, app_id, version)
    if check != "ok":
        raise JournalError(f"{str(path)!r} is a damaged exec-router journal: {check}")
    if not tables >= _TABLES:
        raise JournalError(f"{str(path)!r} is an exec-router journal with a damaged schema")
