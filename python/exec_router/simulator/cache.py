"""The tape cache: input files -> parsed columns, once; later runs memory-map them.

An entry is one Arrow IPC file ``<key>.arrow`` holding every column of the loader's tapes
(uncompressed, so a reload maps the file and copies nothing). The key is a SHA-256 over the
loader's name, version and options, the package version, and each input file's name, size,
mtime and content hash (XXH3-128). The content hash of a file is remembered under its
stat (device, inode, size, mtime, ctime), so an unchanged file is not read again.

Each column carries its XXH3 checksum and length in the file's metadata, verified on every
reload: a corrupt or truncated entry is deleted and rebuilt with a one-line warning, never
read. An entry is written to a temporary file and renamed into place, so two processes
building the same entry at once both finish with a correct tape.

Loaders plug in by name with :func:`register_loader`: ``load(paths, options) -> [Tape]``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import xxhash

from .errors import TapeError
from .tape import Tape

FORMAT: Final = 1
SUFFIX: Final = ".arrow"
_META_KEY: Final = b"exec-router-cache"
_HASH_CHUNK: Final = 1 << 24
#: Tape fields stored per tape, in order; the size columns may be absent.
FIELDS: Final = (
    "ts",
    "bid",
    "ask",
    "bid_qty",
    "ask_qty",
    "trade_ts",
    "trade_px",
    "trade_qty",
    "trade_side",
)
_OPTIONAL: Final = frozenset({"bid_qty", "ask_qty"})

#: ``load(paths, options[, progress=...]) -> tapes``
LoadFn = Callable[..., list[Tape]]


@dataclass(frozen=True)
class Loader:
    """A named way to turn input files into tapes. Bump ``version`` when its output changes."""

    name: str
    version: str
    load: LoadFn


_LOADERS: dict[str, Loader] = {}
_WRITERS: list[threading.Thread] = []


def register_loader(name: str, version: str, load: LoadFn) -> Loader:
    """Make a loader available to :class:`TapeSpec` by name (the last registration wins)."""
    loader = Loader(name, version, load)
    _LOADERS[name] = loader
    return loader


def get_loader(name: str) -> Loader:
    if name not in _LOADERS:
        from . import sources  # noqa: F401  (registers the built-in loaders)
    try:
        return _LOADERS[name]
    except KeyError:
        raise ValueError(f"unknown tape loader {name!r}; known: {', '.join(_LOADERS)}") from None


@dataclass(frozen=True)
class TapeSpec:
    """What to load, and how: a loader name, its input files and its options (JSON values).

    Picklable and small, so a sweep ships specs to its workers, never tapes.
    """

    loader: str
    paths: tuple[str, ...] = ()
    options: tuple[tuple[str, Any], ...] = ()
    label: str = ""

    @classmethod
    def of(
        cls, loader: str, paths: Sequence[str] = (), label: str = "", **options: Any
    ) -> TapeSpec:
        return cls(
            loader,
            tuple(os.path.abspath(p) for p in paths),
            tuple(sorted(options.items())),
            label,
        )

    @property
    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/exec-router``, else ``~/.cache/exec-router``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "exec-router"


def warn(message: str) -> None:
    print(f"exec-router: {message}", file=sys.stderr, flush=True)


# ── keys ─────────────────────────────────────────────────────────────────────


def content_hash(path: str) -> str:
    """XXH3-128 of a file's bytes."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _column_hash(values: np.ndarray[Any, Any]) -> str:
    data: Any = np.ascontiguousarray(values).view(np.uint8)
    return xxhash.xxh3_128_hexdigest(data)


@dataclass
class TapeCache:
    """Cache entries under ``root`` (created on first write)."""

    root: Path = field(default_factory=default_cache_dir)
    hits: int = 0
    builds: int = 0
    #: Write new entries on a thread, so a one-off run does not wait for the disk.
    background: bool = False

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    # input identity
    def _memo_path(self, st: os.stat_result) -> Path:
        ident = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
        return self.root / "hashes" / hashlib.sha256(ident.encode()).hexdigest()[:32]

    def file_identity(self, path: str) -> dict[str, Any]:
        """Name, size, mtime and content hash of one input (the hash memoised by stat)."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise TapeError(path, None, "no such file") from None
        except OSError as exc:
            raise TapeError(path, None, f"cannot read ({exc.strerror or exc})") from None
        if os.path.isdir(path):
            raise TapeError(path, None, "is a directory, not a CSV file")
        memo = self._memo_path(st)
        digest = None
        with contextlib.suppress(OSError):
            text = memo.read_text().strip()
            digest = text if len(text) == 32 else None
        if digest is None:
            try:
                digest = content_hash(path)
            except OSError as exc:
                raise TapeError(path, None, f"cannot read ({exc.strerror or exc})") from None
            with contextlib.suppress(OSError):
                _atomic_write(memo, digest.encode())
        return {
            "name": os.path.basename(path),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "xxh3_128": digest,
        }

    def key(self, spec: TapeSpec) -> tuple[str, dict[str, Any]]:
        """The entry key of a spec, and what it was computed from."""
        from exec_router import __version__

        loader = get_loader(spec.loader)
        basis = {
            "format": FORMAT,
            "package": __version__,
            "loader": loader.name,
            "loader_version": loader.version,
            "options": spec.option_dict,
            "inputs": [self.file_identity(p) for p in spec.paths],
        }
        text = json.dumps(basis, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:40], basis

    def path_of(self, key: str) -> Path:
        return self.root / f"{key}{SUFFIX}"

    # load
    def load(self, spec: TapeSpec, *, key: str | None = None, progress: Any = None) -> list[Tape]:
        """The spec's tapes: from the entry if it is sound, else parsed and stored.

        ``progress`` goes to a loader that reports its reading (``progress=`` keyword).
        """
        basis: dict[str, Any] | None = None
        if key is None:
            key, basis = self.key(spec)
        path = self.path_of(key)
        if path.exists():
            try:
                tapes = read_entry(path, key)
            except FileNotFoundError:
                pass  # cleared meanwhile
            except CorruptEntry as exc:
                warn(f"cache entry {path} is damaged ({exc}); deleted, rebuilding")
                _unlink_if_same(path, exc.stat)
            else:
                self.hits += 1
                return tapes
        if basis is None:
            key2, basis = self.key(spec)
            if key2 != key:
                name = spec.paths[0] if spec.paths else spec.loader
                raise TapeError(name, None, "changed while the run was reading it; run again")
        extra = {} if progress is None else {"progress": progress}
        tapes = get_loader(spec.loader).load(spec.paths, spec.option_dict, **extra)
        self.builds += 1
        if self.background:
            # The caller goes on with the tapes while the entry is written (the arrays are
            # only read); the interpreter waits for the thread before it exits.
            thread = threading.Thread(
                target=self._write, args=(path, key, basis, tapes), name="tape-cache-writer"
            )
            thread.start()
            _WRITERS.append(thread)
        else:
            self._write(path, key, basis, tapes)
        return tapes

    def _write(self, path: Path, key: str, basis: dict[str, Any], tapes: list[Tape]) -> None:
        try:
            write_entry(path, key, basis, tapes)
        except OSError as exc:
            warn(f"cannot write the tape cache {self.root} ({exc.strerror or exc}); not cached")

    def ensure(self, spec: TapeSpec) -> str:
        """Build the entry if needed; return its key."""
        key, _ = self.key(spec)
        self.load(spec, key=key)
        return key

    # manage
    def entries(self) -> list[dict[str, Any]]:
        """Every entry's metadata (``damaged`` set where it cannot be read)."""
        out: list[dict[str, Any]] = []
        if not self.root.is_dir():
            return out
        for path in sorted(self.root.glob(f"*{SUFFIX}")):
            info: dict[str, Any] = {"path": str(path), "key": path.stem}
            try:
                info["bytes"] = path.stat().st_size
                meta = _read_meta(path)
                info.update(meta)
            except (CorruptEntry, OSError) as exc:
                info["damaged"] = str(exc)
            out.append(info)
        return out

    def clear(self) -> tuple[int, int]:
        """Delete every entry, temporary file and hash memo; (entries, bytes) removed."""
        count = size = 0
        if not self.root.is_dir():
            return 0, 0
        for path in [*self.root.glob(f"*{SUFFIX}"), *self.root.glob("*.tmp")]:
            with contextlib.suppress(OSError):
                size += path.stat().st_size
                path.unlink()
                count += path.suffix == SUFFIX
        hashes = self.root / "hashes"
        if hashes.is_dir():
            for path in hashes.iterdir():
                with contextlib.suppress(OSError):
                    path.unlink()
        return count, size


def flush() -> None:
    """Wait for every entry being written in the background."""
    while _WRITERS:
        _WRITERS.pop().join()


# ── the file ─────────────────────────────────────────────────────────────────


class CorruptEntry(Exception):
    """A cache file that cannot be trusted."""

    def __init__(self, message: str, stat: os.stat_result | None = None) -> None:
        super().__init__(message)
        self.stat = stat


def _list_column(values: np.ndarray[Any, Any]) -> pa.Array:
    flat = pa.array(values)
    return pa.LargeListArray.from_arrays(pa.array([0, len(values)], pa.int64()), flat)


def write_entry(path: Path, key: str, basis: dict[str, Any], tapes: Sequence[Tape]) -> None:
    """Write the tapes as one-row list columns ``<tape>.<field>``, then rename into place."""
    columns: dict[str, pa.Array] = {}
    checks: dict[str, dict[str, Any]] = {}
    for i, tape in enumerate(tapes):
        for name in FIELDS:
            values = getattr(tape, name)
            if values is None:
                continue
            col = f"{i}.{name}"
            columns[col] = _list_column(values)
            checks[col] = {
                "len": len(values),
                "dtype": str(values.dtype),
                "xxh3_128": _column_hash(values),
            }
    meta = {
        **basis,
        "key": key,
        "created": time.time(),
        "tapes": [
            {"symbol": t.symbol, "source": t.source, "rows": t.rows, "trades": t.trades}
            for t in tapes
        ],
        "columns": checks,
    }
    table = pa.table(columns)
    table = table.replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def _open(path: Path) -> Iterator[tuple[Any, os.stat_result]]:
    try:
        source = pa.memory_map(str(path), "r")
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise CorruptEntry(f"cannot open: {exc}") from None
    try:
        st = os.fstat(source.fileno())
        try:
            reader = pa.ipc.open_file(source)
        except (OSError, pa.ArrowException) as exc:
            raise CorruptEntry(f"not an Arrow file: {_first_line(exc)}", st) from None
        yield reader, st
    finally:
        source.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _meta(schema: pa.Schema, st: os.stat_result | None) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(_META_KEY)
    if raw is None:
        raise CorruptEntry("no exec-router metadata", st)
    try:
        meta = json.loads(raw)
    except ValueError:
        raise CorruptEntry("unreadable metadata", st) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CorruptEntry("another cache format", st)
    return meta


def _read_meta(path: Path) -> dict[str, Any]:
    with _open(path) as (reader, st):
        return _meta(reader.schema, st)


def read_entry(path: Path, key: str) -> list[Tape]:
    """The tapes of an entry, memory-mapped, after checking every column's checksum."""
    try:
        with _open(path) as (reader, st):
            meta = _meta(reader.schema, st)
            if meta.get("key") != key:
                raise CorruptEntry("its key does not match its name", st)
            try:
                table = reader.read_all()
                arrays = {
                    name: table.column(name).chunk(0).values.to_numpy(zero_copy_only=True)
                    for name in table.column_names
                }
            except (OSError, pa.ArrowException, IndexError, ValueError) as exc:
                raise CorruptEntry(f"unreadable columns: {_first_line(exc)}", st) from None
            checks = meta.get("columns", {})
            if set(checks) != set(arrays):
                raise CorruptEntry("columns do not match the metadata", st)
            for name, values in arrays.items():
                want = checks[name]
                if len(values) != want["len"] or str(values.dtype) != want["dtype"]:
                    raise CorruptEntry(f"column {name}: wrong length or type", st)
                if _column_hash(values) != want["xxh3_128"]:
                    raise CorruptEntry(f"column {name}: checksum mismatch", st)
            tapes = []
            for i, info in enumerate(meta["tapes"]):
                cols: dict[str, Any] = {
                    f: arrays.get(f"{i}.{f}")
                    for f in FIELDS
                    if f"{i}.{f}" in arrays or f in _OPTIONAL
                }
                tapes.append(Tape(**cols, symbol=info["symbol"], source=info["source"]))
            return tapes
    except (KeyError, TypeError) as exc:
        raise CorruptEntry(f"inconsistent metadata ({exc})") from None


def _unlink_if_same(path: Path, st: os.stat_result | None) -> None:
    """Delete a damaged entry unless another process already replaced it."""
    with contextlib.suppress(OSError):
        now = path.stat()
        if st is None or (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev):
            path.unlink()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


# ── the command ──────────────────────────────────────────────────────────────


def cache_command(args: Any) -> int:
    cache = TapeCache(Path(args.cache_dir) if args.cache_dir else default_cache_dir())
    if args.action == "clear":
        count, size = cache.clear()
        print(f"removed {count} entries ({size / 1e6:.1f} MB) from {cache.root}")
        return 0
    entries = cache.entries()
    print(f"{cache.root}: {len(entries)} entries")
    total = 0
    for e in entries:
        total += e.get("bytes", 0)
        mb = f"{e.get('bytes', 0) / 1e6:9.1f} MB"
        if "damaged" in e:
            print(f"  {e['key'][:12]}  {mb}  damaged: {e['damaged']}")
            continue
        tapes = e.get("tapes", [])
        rows = sum(t["rows"] + t["trades"] for t in tapes)
        symbols = ",".join(t["symbol"] for t in tapes)
        inputs = " ".join(i["name"] for i in e.get("inputs", [])) or json.dumps(
            e.get("options", {}), sort_keys=True
        )
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.get("created", 0)))
        print(
            f"  {e['key'][:12]}  {mb}  {rows:>12,} events  {e.get('loader')}  {symbols}  "
            f"{when}  {inputs}"
        )
    print(f"total {total / 1e6:.1f} MB")
    return 0
