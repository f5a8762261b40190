"""A crash-safe journal of a router's working-order registry, on SQLite (WAL).

Attach a :class:`Journal` to a router and every registry change
(``register_working``, ``note_fill``, ``note_cancel``, ``clear_working``) is
committed, in one transaction, before the router call returns. After a crash,
``Journal(path).restore()`` rebuilds a router holding exactly the registry the
process had acknowledged, via :func:`exec_router.state.from_state`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import sqlite3
import struct
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from . import state as _state
from .config import ExecConfig

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


class JournalError(ValueError):
    """The file is not a journal this version of exec_router can open."""


class Journal:
    """A crash-safe record of one router's working orders, in the SQLite file ``path``.

    A missing ``path`` is created atomically. An existing one must be an
    exec-router journal of a format this version reads; anything else (not
    SQLite, another application's database, a newer format, an empty file)
    raises :class:`JournalError` and is left untouched.

    ``synchronous="NORMAL"`` (the default) makes each change durable against a
    crash of the process; ``"FULL"`` also against power loss, at the price of
    an fsync per change.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    ) -> None:
        if synchronous not in _SYNC_MODES:
            raise ValueError(f"Journal() got an invalid synchronous: {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        if not self.path.exists():
            _create(self.path, synchronous)
        _check_header(self.path)
        _check_database(self.path)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={synchronous}")
        except BaseException:
            self._conn.close()
            raise
        self._lock = threading.Lock()
        self._router: Any = None
        self._rows: dict[Any, int] = {}  # trade_id -> orders.seq, with the router's key equality
        self._config: ExecConfig | None = None  # the config last written
        self._closed = False

    # ── lifecycle ────────────────────────────────────────────────────────────

    def attach(self, router: Any) -> None:
        """Journal ``router``: write its current registry, then every change.

        The router's registry observer is taken over (a router has one). A
        journal serves one router at a time, and a file one journal.
        """
        self._check_open()
        if self._router is not None:
            raise RuntimeError("Journal.attach(): already attached; detach() first")
        with self._lock:
            # Observer first: a change racing the snapshot waits for the lock.
            router._observe_registry(self._observe)
            self._router = router
            try:
                self._write_all()
            except BaseException:
                router._observe_registry(None)
                self._router = None
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
            self._write_all()

    def detach(self) -> None:
        """Stop journaling; the file keeps the registry as of the last change."""
        with self._lock:
            router, self._router = self._router, None
            self._rows.clear()
            self._config = None
        if router is not None:
            router._observe_registry(None)

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
        with self._lock:
            rows = self._conn.execute("SELECT record FROM orders ORDER BY seq").fetchall()
            meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
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

    def _observe(self, op: str, trade_id: Any, wo: Any) -> None:
        """The router's registry observer: commit the change for ``trade_id``.

        It writes what the registry holds *now* for that id, so changes whose
        notifications race (threads) still leave the journal equal to the
        registry once the calls have returned.
        """
        with self._lock:
            router = self._router
            if router is None:
                return
            current = router.working(trade_id)
            record, error = None, None
            if current is not None:
                try:
                    record = self._record(router, current)
                except TypeError as exc:  # not JSON: drop any stale row, then raise
                    error = exc
            seq = self._rows.get(trade_id)
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                if record is None:
                    if seq is not None:
                        conn.execute("DELETE FROM orders WHERE seq = ?", (seq,))
                    seq = None
                elif seq is not None and op == "put":  # replacement keeps its position
                    conn.execute("UPDATE orders SET record = ? WHERE seq = ?", (record, seq))
                else:  # new, or popped and registered again since: goes last
                    if seq is not None:
                        conn.execute("DELETE FROM orders WHERE seq = ?", (seq,))
                    seq = conn.execute(
                        "INSERT INTO orders (record) VALUES (?)", (record,)
                    ).lastrowid
                self._write_meta(router)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                self._config = None
                raise
            if seq is None:
                self._rows.pop(trade_id, None)
            else:
                self._rows[trade_id] = seq
        if error is not None:
            raise error

    def _write_all(self) -> None:
        router, conn = self._router, self._conn
        offset = _state.wall_offset(router)
        records = [
            (wo.trade_id, json.dumps(_state.order_record(wo, offset)))
            for wo in router.working_orders()
        ]
        rows: dict[Any, int] = {}
        self._config = None
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM orders")
            for trade_id, record in records:
                cursor = conn.execute("INSERT INTO orders (record) VALUES (?)", (record,))
                assert cursor.lastrowid is not None
                rows[trade_id] = cursor.lastrowid
            self._write_meta(router)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            self._config = None
            raise
        self._rows = rows

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
    except OSError as err:
        raise JournalError(f"cannot create journal {str(path)!r}: {err}") from err
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            leftover.unlink(missing_ok=True)


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
    the file, plus the schema. Read-only: this connection never writes ``path``."""
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
    except sqlite3.DatabaseError as err:
        raise JournalError(f"{str(path)!r} is not a readable exec-router journal: {err}") from err
    finally:
        conn.close()
    _check_ids(path, app_id, version)
    if not tables >= _TABLES:
        raise JournalError(f"{str(path)!r} is an exec-router journal with a damaged schema")
