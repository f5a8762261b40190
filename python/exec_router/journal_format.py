"""The journal's bytes, in Python: the executable spec of the format.

``rust/journal_format.rs`` writes the same bytes; docs/state-and-journal.md has
the byte table. A file is a 64-byte header, then frames::

    [u32 length][u32 CRC-32C of the payload][payload]
    payload = u8 kind, u64 seq, u16 mask, an i64 per counter the mask selects, body

A put or pop frame carries the counters that changed since the frame before it
(a reader keeps the others); config and snapshot frames carry all of them.

All integers are little-endian. Values (trade ids, assets, metadata, the
config) use a tagged encoding of exactly None, bool, int (64-bit), finite
float, str, tuple, list and dict.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from .config import ExecConfig
from .constants import COUNTER_KEYS
from .errors import JournalError

__all__ = [
    "CHUNK",
    "HEADER_LEN",
    "MAGIC",
    "VERSION",
    "Replay",
    "boot_id",
    "config_fields",
    "crc32c",
    "read",
]

MAGIC = b"\x89ERJRNL\n"
VERSION = 2  # format 1 (all counters in every frame) was never released
HEADER_LEN = 64
FRAME_HEAD = 8
MAX_NESTING = 32
CHUNK = 1 << 20

SNAPSHOT, PUT, POP, CONFIG = 1, 2, 3, 4
_KINDS = {SNAPSHOT: "snapshot", PUT: "put", POP: "pop", CONFIG: "config"}

_NONE, _FALSE, _TRUE, _INT, _FLOAT, _STR, _TUPLE, _LIST, _DICT = range(9)
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1

_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_HEAD = struct.Struct("<II")
_PREFIX = struct.Struct("<BQH")  # kind, seq, counter mask
_PREFIX_LEN = _PREFIX.size
ALL = 0xFFFF  # a bit per counter
assert len(COUNTER_KEYS) == 16


# ── CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) ──────────────────


def _table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _table()


def _crc32c_py(data: bytes, crc: int = 0) -> int:
    c = crc ^ 0xFFFFFFFF
    t = _TABLE
    for b in bytes(data):
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _fast_crc() -> Callable[[bytes], int]:
    """The native core's CRC-32C if it is importable (the same function, faster)."""
    try:
        from ._core import _crc32c
    except ImportError:
        return _crc32c_py
    return _crc32c


crc32c = _fast_crc()


# ── values ──────────────────────────────────────────────────────────────────


def _refuse_type(what: str, value: object) -> TypeError:
    return TypeError(f"the journal cannot write {what}: a {type(value).__qualname__}")


def encode_value(out: bytearray, value: Any, what: str, depth: int = 0) -> None:
    """Append ``value``'s encoding: TypeError or ValueError if it has none."""
    if depth > MAX_NESTING:
        raise ValueError(f"the journal cannot write {what}: nested deeper than {MAX_NESTING}")
    t = type(value)
    if value is None:
        out.append(_NONE)
    elif t is bool:
        out.append(_TRUE if value else _FALSE)
    elif t is int:
        if not _I64_MIN <= value <= _I64_MAX:
            raise ValueError(f"the journal cannot write {what}: an int beyond 64 bits")
        out.append(_INT)
        out += _I64.pack(value)
    elif t is float:
        if not math.isfinite(value):
            raise ValueError(f"the journal cannot write {what}: a non-finite float")
        out.append(_FLOAT)
        out += _F64.pack(value)
    elif t is str:
        _encode_str(out, value, what)
    elif t is tuple or t is list:
        out.append(_TUPLE if t is tuple else _LIST)
        items = list(value)
        out += _count(len(items), what)
        for item in items:
            encode_value(out, item, what, depth + 1)
    elif t is dict:
        out.append(_DICT)
        pairs = list(value.items())
        out += _count(len(pairs), what)
        for k, v in pairs:
            encode_value(out, k, what, depth + 1)
            encode_value(out, v, what, depth + 1)
    else:
        raise _refuse_type(what, value)


def _count(n: int, what: str) -> bytes:
    if n > 0xFFFFFFFF:
        raise ValueError(f"the journal cannot write {what}: too many items")
    return _U32.pack(n)


def _encode_str(out: bytearray, text: Any, what: str) -> None:
    if not isinstance(text, str):
        raise _refuse_type(what, text)
    try:
        raw = str.encode(text, "utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"the journal cannot write {what}: a str that is not valid Unicode"
        ) from None
    out.append(_STR)
    out += _count(len(raw), what)
    out += raw


def _finite(x: float, what: str) -> bytes:
    if not math.isfinite(x):
        raise ValueError(f"the journal cannot write {what}: a non-finite time")
    return _F64.pack(x)


def order_body(wo: Any, clock_at: float, wall: float, boot: float) -> bytes:
    """A PUT body: the whole order, and the clocks when it was written."""
    out = bytearray()
    plan = wo.plan
    encode_value(out, wo.trade_id, "trade_id")
    encode_value(out, wo.asset, "asset")
    _encode_str(out, wo.side, "side")
    _encode_str(out, wo.action, "action")
    _encode_str(out, plan.order_type, "plan.order_type")
    out += _F64.pack(plan.limit_price)
    out.append(1 if plan.post_only else 0)
    out += _F64.pack(plan.ttl_s)
    out.append(1 if plan.is_maker else 0)
    _encode_str(out, plan.action, "plan.action")
    _encode_str(out, plan.reason, "plan.reason")
    out.append(1 if plan.suppress else 0)
    encode_value(out, plan.metadata, "plan.metadata")
    if not (math.isfinite(wo.submitted_at) and math.isfinite(wo.deadline)):
        raise ValueError("the journal cannot write the order: a non-finite time")
    out += _F64.pack(wo.submitted_at) + _F64.pack(wo.deadline)
    out += _I64.pack(wo.retries_left)
    encode_value(out, wo.base_trade_id, "base_trade_id")
    out += _I64.pack(wo.retry_n)
    out += _F64.pack(clock_at) + _F64.pack(wall) + _F64.pack(boot)
    return bytes(out)


def pop_body(trade_id: Any) -> bytes:
    out = bytearray()
    encode_value(out, trade_id, "trade_id")
    return bytes(out)


def config_fields(config: Any) -> dict[str, Any]:
    """A config by its ``ExecConfig`` fields (a subclass's extra fields are not kept)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(ExecConfig)}


def config_body(config: Any) -> bytes:
    out = bytearray()
    encode_value(out, config_fields(config), "config")
    return bytes(out)


def header(file_id: bytes, boot: bytes, wall: float) -> bytes:
    h = MAGIC + struct.pack("<II", VERSION, HEADER_LEN) + file_id + boot + _F64.pack(wall)
    h += _U32.pack(0)
    return h + _U32.pack(crc32c(h))


def changed(prev: list[int], counts: list[int]) -> int:
    """The mask of the counters that differ."""
    mask = 0
    for i, (a, b) in enumerate(zip(prev, counts, strict=True)):
        if a != b:
            mask |= 1 << i
    return mask


def frame(kind: int, seq: int, counts: Iterable[int], body: bytes, mask: int = ALL) -> bytes:
    """A frame carrying the counters ``mask`` selects (all by default)."""
    values = [c for i, c in enumerate(counts) if mask >> i & 1]
    try:
        payload = _PREFIX.pack(kind, seq, mask) + struct.pack(f"<{len(values)}q", *values) + body
    except struct.error as exc:
        raise JournalError(f"the journal cannot write the counters: {exc}") from None
    return _HEAD.pack(len(payload), crc32c(payload)) + payload


def frame_len(body_len: int) -> int:
    """The size of a frame holding ``body_len`` bytes and all the counters."""
    return FRAME_HEAD + _PREFIX_LEN + 8 * len(COUNTER_KEYS) + body_len


def round_up(n: int) -> int:
    return (n // CHUNK + 1) * CHUNK


def threshold(floor: int, live: int) -> int:
    """Compact past max(floor, 4x live)."""
    return max(floor, 4 * live)


def boot_id() -> bytes:
    """The 16 bytes of /proc/sys/kernel/random/boot_id, or zeros."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            text = f.read()
    except OSError:
        return bytes(16)
    digits = "".join(c for c in text if c in "0123456789abcdefABCDEF")
    return bytes.fromhex(digits) if len(digits) == 32 else bytes(16)


def now() -> tuple[float, float]:
    """(wall, boot) seconds: CLOCK_REALTIME and CLOCK_BOOTTIME."""
    return time.clock_gettime(time.CLOCK_REALTIME), time.clock_gettime(time.CLOCK_BOOTTIME)


def snapshot(
    file_id: bytes,
    boot: bytes,
    wall: float,
    config: bytes,
    counts: list[int],
    bodies: list[bytes],
    seq: int,
) -> bytes:
    """A whole file: header, CONFIG, SNAPSHOT(n) and n PUT frames."""
    parts = [header(file_id, boot, wall), frame(CONFIG, seq + 1, counts, config)]
    parts.append(frame(SNAPSHOT, seq + 2, counts, struct.pack("<Q", len(bodies))))
    parts += [frame(PUT, seq + 3 + i, counts, body) for i, body in enumerate(bodies)]
    return b"".join(parts)


# ── reading ─────────────────────────────────────────────────────────────────


class _Decoder:
    __slots__ = ("data", "pos", "where")

    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.pos, self.where = data, 0, where

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise JournalError(f"{self.where}: a record ends early")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def f64(self) -> float:
        value: float = _F64.unpack(self.take(8))[0]
        return value

    def i64(self) -> int:
        value: int = _I64.unpack(self.take(8))[0]
        return value

    def u32(self) -> int:
        value: int = _U32.unpack(self.take(4))[0]
        return value

    def text(self) -> str:
        value = self.value()
        if type(value) is not str:
            raise JournalError(f"{self.where}: a str field holds {type(value).__name__}")
        return value

    def value(self, depth: int = 0) -> Any:
        if depth > MAX_NESTING:
            raise JournalError(f"{self.where}: a value nested too deep")
        tag = self.u8()
        if tag == _NONE:
            return None
        if tag in (_FALSE, _TRUE):
            return tag == _TRUE
        if tag == _INT:
            return self.i64()
        if tag == _FLOAT:
            return self.f64()
        if tag == _STR:
            try:
                return self.take(self.u32()).decode("utf-8")
            except UnicodeDecodeError:
                raise JournalError(f"{self.where}: a str that is not UTF-8") from None
        if tag in (_TUPLE, _LIST):
            items = [self.value(depth + 1) for _ in range(self.u32())]
            return tuple(items) if tag == _TUPLE else items
        if tag == _DICT:
            out = {}
            for _ in range(self.u32()):
                k = self.value(depth + 1)
                try:
                    out[k] = self.value(depth + 1)
                except TypeError:
                    raise JournalError(f"{self.where}: an unhashable dict key") from None
            return out
        raise JournalError(f"{self.where}: unknown value tag {tag}")


class Order(NamedTuple):
    """One journaled order, times in its writer's router clock (a plain tuple
    of these fields when the native reader made it)."""

    trade_id: Any
    asset: Any
    side: str
    action: str
    plan: dict[str, Any]
    submitted_at: float
    deadline: float
    retries_left: int
    base_trade_id: Any
    retry_n: int
    clock_at: float
    wall_at: float
    boot_at: float


def decode_order(body: bytes, where: str) -> Order:
    d = _Decoder(body, where)
    trade_id, asset, side, action = d.value(), d.value(), d.text(), d.text()
    plan = {
        "order_type": d.text(),
        "limit_price": d.f64(),
        "post_only": d.u8() != 0,
        "ttl_s": d.f64(),
        "is_maker": d.u8() != 0,
        "action": d.text(),
        "reason": d.text(),
        "suppress": d.u8() != 0,
        "metadata": d.value(),
    }
    if type(plan["metadata"]) is not dict:
        raise JournalError(f"{where}: plan.metadata is not a dict")
    submitted_at, deadline, retries_left = d.f64(), d.f64(), d.i64()
    base, retry_n = d.value(), d.i64()
    clock_at, wall_at, boot_at = d.f64(), d.f64(), d.f64()
    if d.pos != len(body):
        raise JournalError(f"{where}: {len(body) - d.pos} bytes after the order")
    return Order(
        trade_id, asset, side, action, plan, submitted_at, deadline, retries_left, base,
        retry_n, clock_at, wall_at, boot_at,
    )  # fmt: skip


@dataclass
class Replay:
    """A journal read back: what the registry held after its last whole record."""

    file_id: bytes
    boot_id: bytes
    created: float
    config: dict[str, Any] | None
    counters: dict[str, int]
    orders: dict[Any, Order]
    end: int  # bytes of whole records (a torn tail starts here)
    torn: bool
    seq: int
    records: int


def check_header(data: bytes, name: str) -> tuple[bytes, bytes, float]:
    """Refuse what is not a journal of a version this code reads."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        kind = "an empty file" if not data else "no journal header at offset 0"
        raise JournalError(f"{name!r} is not an exec-router journal: {kind}")
    if len(data) < HEADER_LEN:
        raise JournalError(
            f"{name!r} is a damaged exec-router journal: header cut at offset {len(data)}"
        )
    version, length = struct.unpack_from("<II", data, 8)
    if version > VERSION:
        raise JournalError(
            f"{name!r} is an exec-router journal of format {version}, newer than this "
            f"exec_router reads (up to {VERSION}); upgrade exec_router"
        )
    (crc,) = _U32.unpack_from(data, 60)
    if version < 1 or length != HEADER_LEN or crc32c(data[:60]) != crc:
        raise JournalError(f"{name!r} is a damaged exec-router journal: bad header at offset 0")
    if version < VERSION:
        raise JournalError(
            f"{name!r} is an exec-router journal of format {version}, a development format "
            f"that was never released; this exec_router reads format {VERSION}"
        )
    (wall,) = _F64.unpack_from(data, 48)
    return bytes(data[16:32]), bytes(data[32:48]), wall


def _zero(data: bytes, start: int) -> bool:
    tail = memoryview(data)[start:]
    return not tail or tail.tobytes().count(0) == len(tail)


def _native_reader() -> Callable[[bytes, str], tuple[Any, ...]] | None:
    try:
        from ._core import _journal_read
    except ImportError:
        return None
    return _journal_read


_NATIVE_READ = _native_reader()


def read(data: bytes, name: str, *, native: bool = True) -> Replay:
    """Replay ``data``. A torn tail (an incomplete last record, then only zeros)
    ends the log; damage before it raises JournalError with its offset.

    The native core reads by the same rules, faster (its orders are plain
    tuples of ``Order``'s fields); ``native=False`` runs this spec."""
    if native and _NATIVE_READ is not None:
        fid, boot, created, cfg, counts, found, end, torn, seq, records = _NATIVE_READ(data, name)
        counted = dict(zip(COUNTER_KEYS, counts, strict=True))
        return Replay(fid, boot, created, cfg, counted, found, end, torn, seq, records)
    file_id, boot, created = check_header(data, name)
    orders: dict[Any, Order] = {}
    config: dict[str, Any] | None = None
    counters: list[int] = [0] * len(COUNTER_KEYS)
    pos, size, seq, records, torn = HEADER_LEN, len(data), 0, 0, False
    snapshot_left = 0
    while pos < size:
        if pos + FRAME_HEAD > size:
            if _zero(data, pos):
                break
            torn = True
            break
        length, crc = _HEAD.unpack_from(data, pos)
        stop = pos + FRAME_HEAD + length
        if length == 0 and _zero(data, pos):
            break
        bad = length < _PREFIX_LEN or stop > size or crc32c(data[pos + FRAME_HEAD : stop]) != crc
        if bad:
            if _zero(data, min(stop, size)) and length < (1 << 31):
                torn = True
                break
            raise JournalError(
                f"{name!r} is a damaged exec-router journal: bad record at offset {pos}"
            )
        payload = data[pos + FRAME_HEAD : stop]
        kind, rseq, mask = _PREFIX.unpack_from(payload)
        where = f"{name!r}: record at offset {pos}"
        if kind in (CONFIG, SNAPSHOT) and mask != ALL:
            raise JournalError(f"{where}: bad counters (mask {mask:#06x})")
        counts = list(counters)
        d = _Decoder(payload, where)
        d.pos = _PREFIX_LEN
        for i in range(len(counts)):
            if mask >> i & 1:
                counts[i] = d.i64()
        body = payload[d.pos :]
        if kind not in _KINDS or rseq <= seq:
            raise JournalError(f"{where} is damaged (kind {kind}, seq {rseq})")
        if snapshot_left and kind != PUT:
            raise JournalError(f"{where}: a snapshot ends early")
        if kind == SNAPSHOT:
            orders.clear()
            (snapshot_left,) = struct.unpack("<Q", body) if len(body) == 8 else (-1,)
            if snapshot_left < 0:
                raise JournalError(f"{where}: a bad snapshot record")
        elif kind == PUT:
            order = decode_order(body, where)
            try:
                orders[order.trade_id] = order
            except TypeError:
                raise JournalError(f"{where}: an unhashable trade id") from None
            snapshot_left = max(0, snapshot_left - 1)
        elif kind == POP:
            d = _Decoder(body, where)
            key = d.value()
            try:
                orders.pop(key, None)
            except TypeError:
                raise JournalError(f"{where}: an unhashable trade id") from None
        else:
            cfg = _Decoder(body, where).value()
            if type(cfg) is not dict:
                raise JournalError(f"{where}: the config is not a mapping")
            config = cfg
        counters, seq, records, pos = counts, rseq, records + 1, stop
    if snapshot_left:
        raise JournalError(f"{name!r}: a snapshot ends early at offset {pos}")
    counted = dict(zip(COUNTER_KEYS, counters, strict=True))
    return Replay(file_id, boot, created, config, counted, orders, pos, torn, seq, records)


# ── the pure backend's writer ───────────────────────────────────────────────


_forks = 0


def _forked_child() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked_child)


def lock_fd(fd: int) -> None:
    """The process's write lock on ``fd`` (a POSIX record lock, F_SETLK)."""
    import fcntl

    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _sync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Writer:
    """The pure backend's journal writer: the same bytes as the native one.

    The registry change that follows an append is made by the caller
    (``reference.py``) in statements that call nothing, so neither a signal
    handler nor another thread runs between the record and the change.
    """

    __slots__ = (
        "_group",
        "_sync_lock",
        "bodies",
        "boot_id",
        "compaction_errors",
        "compactions",
        "config",
        "end",
        "fd",
        "file_id",
        "fixed_times",
        "floor",
        "forks",
        "last",
        "last_compaction_s",
        "last_error",
        "last_sync_s",
        "live",
        "lock",
        "max_sync_s",
        "mm",
        "mode",
        "path",
        "records",
        "seq",
        "stop",
        "syncs",
        "threshold",
        "times_fn",
        "written",
    )

    def __init__(
        self,
        fd: int,
        path: str,
        mode: str,
        group_ms: float | None,
        file_id: bytes,
        times_fn: Callable[[], tuple[float, float]] | None,
        fixed_times: tuple[float, float] | None,
        config: bytes,
        counts: list[int],
        bodies: dict[Any, bytes],
        floor: int = CHUNK,
    ) -> None:
        self.fd, self.path, self.file_id = fd, path, file_id
        self.floor = floor
        self.boot_id = boot_id()
        self.times_fn = times_fn
        self.fixed_times = fixed_times
        self.mode = mode if group_ms is None else "group"
        self.forks = _forks
        self.config = config
        self.end = self.seq = self.records = self.live = 0
        # (seq, counters) of the last frame appended: the caller sets it with the
        # change; a put or pop right after it carries only the counters that changed.
        self.last: tuple[int, list[int]] | None = None
        self.threshold = floor
        self.compactions = self.compaction_errors = self.syncs = 0
        self.last_compaction_s = self.last_sync_s = self.max_sync_s = 0.0
        self.last_error: str | None = None
        self.mm: mmap.mmap | None = None
        self.bodies: dict[Any, bytes] = {}
        self._sync_lock = threading.Lock()
        self.lock = threading.Lock()  # one registry change at a time, record to change
        self.written = 0
        self.stop = False
        self._group: threading.Thread | None = None
        try:
            self.rewrite(counts, bodies)
        except BaseException:
            os.close(fd)
            raise
        self.compactions = 0
        if group_ms is not None:
            self._group = threading.Thread(
                target=self._group_loop, args=(group_ms / 1000.0,), daemon=True
            )
            self._group.start()

    def times(self) -> tuple[float, float]:
        """(wall, boot) now: the system clocks, or the tests' ``times_fn``."""
        if self.times_fn is None:
            return now()
        wall, boot = self.times_fn()
        self.fixed_times = (float(wall), float(boot))
        return self.fixed_times

    def last_times(self) -> tuple[float, float]:
        return now() if self.fixed_times is None else self.fixed_times

    def check_fork(self) -> None:
        if _forks != self.forks:
            raise JournalError(
                f"journal {self.path}: this process was forked from the one that attached "
                "it; detach it and attach a journal of its own"
            )

    # ── appending: prepare (may raise), then the caller's call-free commit ──

    def prepare(
        self, kind: int, counts: list[int], body: bytes
    ) -> tuple[bytes, bytes, int, int, bytes]:
        """The frame's head and payload, its start and stop offsets, and zeros to
        undo it; the map has room. The caller stores the head first, then the
        payload (a kill between leaves a torn tail, never a hole)."""
        self.check_fork()
        mask, last = ALL, self.last
        if kind in (PUT, POP) and last is not None and last[0] == self.seq:
            mask = changed(last[1], counts)
        data = frame(kind, self.seq + 1, counts, body, mask)
        start = self.end
        stop = start + len(data)
        mm = self.mm
        assert mm is not None
        if stop > len(mm):
            self.grow(stop)
        return data[:FRAME_HEAD], data[FRAME_HEAD:], start, stop, bytes(len(data))

    def synced(self, start: int, stop: int) -> None:
        """After the frame is in the map, before the change: sync it (power mode)."""
        if self.mode == "power":
            t = time.perf_counter()
            page = mmap.PAGESIZE
            first = start - start % page
            try:
                assert self.mm is not None
                self.mm.flush(first, stop - first)
            except OSError as exc:
                raise JournalError(f"journal {self.path}: cannot sync: {exc}") from exc
            self._note_sync(time.perf_counter() - t)
        elif self.mode == "group":
            self.written = self.seq + 1

    def _note_sync(self, dt: float) -> None:
        self.syncs += 1
        self.last_sync_s = dt
        self.max_sync_s = max(self.max_sync_s, dt)

    def grow(self, needed: int) -> None:
        cap = round_up(needed)
        try:
            os.posix_fallocate(self.fd, 0, cap)
            assert self.mm is not None
            self.mm.resize(cap)  # never closes: closing its descriptor would drop the lock
        except OSError as exc:
            raise JournalError(f"journal {self.path}: cannot grow: {exc}") from exc
        _prefault(self.mm, self.end)

    def after_change(self, router: Any) -> None:
        if self.end > self.threshold:
            try:
                self.rewrite(_counts(router), self.live_bodies(router))
            except JournalError as exc:
                self.compaction_errors += 1
                self.last_error = str(exc)
                self.threshold = self.end + self.end // 2

    def live_bodies(self, router: Any) -> dict[Any, bytes]:
        bodies = self.bodies
        return {k: bodies[k] for k in router._working if k in bodies}

    # ── snapshots ──────────────────────────────────────────────────────────

    def rewrite(self, counts: list[int], bodies: dict[Any, bytes]) -> None:
        """Replace the file by a snapshot: a new file, synced, locked, renamed over."""
        self.check_fork()
        t = time.perf_counter()
        wall, _ = self.last_times()
        content = snapshot(
            self.file_id, self.boot_id, wall, self.config, counts, list(bodies.values()), self.seq
        )
        frames = 2 + len(bodies)
        directory, name = os.path.split(self.path)
        tmp = os.path.join(directory, f".{name}.{os.urandom(8).hex()}.new")
        new_fd = -1
        try:
            new_fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            cap = round_up(len(content))
            os.posix_fallocate(new_fd, 0, cap)
            os.pwrite(new_fd, content, 0)
            os.fdatasync(new_fd)
            lock_fd(new_fd)
            new_mm = mmap.mmap(new_fd, cap)
            _prefault(new_mm, len(content))
        except BaseException as exc:
            if new_fd >= 0:
                os.close(new_fd)
            _unlink(tmp)
            if isinstance(exc, OSError):
                raise JournalError(f"journal {self.path}: cannot write a snapshot: {exc}") from exc
            raise
        new_bodies = dict(bodies)
        old = (self.fd, self.mm, self.end, self.seq, self.records, self.bodies)
        # Swapped before the rename, with no call between: an interrupt after
        # the rename finds the writer on the new file.
        self.fd, self.mm, self.end, self.seq, self.records, self.bodies = (
            new_fd, new_mm, len(content), self.seq + frames, frames, new_bodies
        )  # fmt: skip
        try:
            os.rename(tmp, self.path)
        except OSError as exc:
            self.fd, self.mm, self.end, self.seq, self.records, self.bodies = old
            new_mm.close()
            os.close(new_fd)
            _unlink(tmp)
            raise JournalError(f"journal {self.path}: cannot write a snapshot: {exc}") from exc
        self.live = sum(frame_len(len(b)) for b in bodies.values())
        self.threshold = threshold(self.floor, self.live)
        self.compactions += 1
        self.last_compaction_s = time.perf_counter() - t
        with self._sync_lock:
            if old[1] is not None:
                old[1].close()
            os.close(old[0])
        try:
            _sync_dir(self.path)
        except OSError as exc:
            raise JournalError(f"journal {self.path}: cannot sync the directory: {exc}") from exc

    # ── sync modes, stats, closing ─────────────────────────────────────────

    def _group_loop(self, every: float) -> None:
        synced = self.written
        while not self.stop:
            time.sleep(every)
            written = self.written
            if written == synced:
                continue
            with self._sync_lock:
                if self.stop:
                    return
                t = time.perf_counter()
                try:
                    os.fdatasync(self.fd)
                except OSError as exc:
                    self.last_error = str(exc)
                    continue
            synced = written
            self._note_sync(time.perf_counter() - t)

    def flush(self) -> None:
        if self.mode != "process" and _forks == self.forks and self.mm is not None:
            t = time.perf_counter()
            self.mm.flush()
            self._note_sync(time.perf_counter() - t)

    def close(self) -> None:
        """Sync (power, group) and close: the lock goes with the descriptor."""
        self.stop = True
        group = self._group
        if group is not None and _forks == self.forks:
            group.join()
        with self._sync_lock:
            if self.mm is None:
                return
            try:
                self.flush()
            finally:
                self.mm.close()
                self.mm = None
                os.close(self.fd)

    def data(self) -> bytes:
        assert self.mm is not None
        return self.mm[: self.end]

    def stats(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "bytes": self.end,
            "capacity": len(self.mm) if self.mm is not None else 0,
            "compact_at": self.threshold,
            "compactions": self.compactions,
            "compacting": False,
            "compaction_ready": False,
            "compaction_errors": self.compaction_errors,
            "last_compaction_s": self.last_compaction_s,
            "last_switch_s": self.last_compaction_s,
            "syncs": self.syncs,
            "last_sync_s": self.last_sync_s,
            "max_sync_s": self.max_sync_s,
            "last_error": self.last_error,
            "sync": "process" if self.mode == "process" else "power",
        }


def _prefault(mm: mmap.mmap, start: int) -> None:
    """Take the write fault of each page from ``start`` on now (each byte is
    written back unchanged), not one append in a dozen later."""
    for off in range(start - start % mmap.PAGESIZE, len(mm), mmap.PAGESIZE):
        mm[off] = mm[off]


def _counts(router: Any) -> list[int]:
    counters = router.counters
    return [counters[k] for k in COUNTER_KEYS]


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
