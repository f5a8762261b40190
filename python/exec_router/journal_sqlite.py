"""Reading journals of the former SQLite format, so a runtime upgrades
without losing its resting orders. Read-only; sqlite3 is imported here only."""

from __future__ import annotations

import dataclasses
import json
import struct
import time
from pathlib import Path
from typing import Any

from . import state as _state
from .config import ExecConfig
from .errors import JournalError

SQLITE_MAGIC = b"SQLite format 3\x00"
APPLICATION_ID = 0x45524A4C  # "ERJL"
FORMAT_VERSION = 1


def is_sqlite(head: bytes) -> bool:
    return head.startswith(SQLITE_MAGIC)


def check_header(path: Path, header: bytes) -> None:
    """Refuse an SQLite file that is not an exec-router journal of a known version."""
    if len(header) < 100:
        raise JournalError(f"{str(path)!r} is a damaged exec-router journal: truncated")
    (version,) = struct.unpack(">I", header[60:64])
    (app_id,) = struct.unpack(">I", header[68:72])
    if app_id != APPLICATION_ID:
        raise JournalError(
            f"{str(path)!r} is not an exec-router journal: "
            f"an SQLite database with application_id {app_id:#x}"
        )
    if version > FORMAT_VERSION or version < 1:
        raise JournalError(
            f"{str(path)!r} is an SQLite exec-router journal of format {version}, "
            f"which this exec_router does not read"
        )


def read_state(path: Path) -> dict[str, Any]:
    """The journaled registry as an ``exec_router.state`` dict."""
    import sqlite3

    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as err:
        raise JournalError(f"cannot open journal {str(path)!r}: {err}") from err
    try:
        rows = conn.execute("SELECT record FROM orders ORDER BY seq").fetchall()
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
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
    except (sqlite3.Error, ValueError, TypeError, AttributeError, KeyError) as err:
        raise JournalError(f"journal {str(path)!r} is damaged: {err}") from err
    finally:
        conn.close()
