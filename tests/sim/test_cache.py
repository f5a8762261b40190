"""The tape cache: hit, miss on any change, damaged entries rebuilt, concurrent builders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from exec_router.__main__ import main
from exec_router.simulator import cache as cache_module
from exec_router.simulator.cache import TapeCache, TapeSpec, read_entry, register_loader
from exec_router.simulator.loaders import BINANCE_BOOK, load_tape
from exec_router.simulator.sources import csv_spec
from exec_router.simulator.tape import Tape

ROWS = 2_000


def write_book(path: Path, rows: int = ROWS, shift: float = 0.0) -> None:
    lines = [",".join(BINANCE_BOOK)]
    for i in range(rows):
        bid = 65_000.0 + shift + (i % 7) / 10
        lines.append(f"{i},{bid:.1f},1.5,{bid + 0.1:.1f},2.0,{1_700_000_000_000 + 100 * i},0")
    path.write_text("\n".join(lines) + "\n")


def same(a: Tape, b: Tape) -> bool:
    fields = ("ts", "bid", "ask", "bid_qty", "ask_qty", "trade_ts", "trade_px", "trade_side")
    return (a.symbol, a.source) == (b.symbol, b.source) and all(
        (getattr(a, f) is None and getattr(b, f) is None)
        or np.array_equal(getattr(a, f), getattr(b, f))
        for f in fields
    )


@pytest.fixture
def book(tmp_path: Path) -> Path:
    path = tmp_path / "BTCUSDT-bookTicker-2023-11-14.csv"
    write_book(path)
    return path


@pytest.fixture
def cache(tmp_path: Path) -> TapeCache:
    return TapeCache(tmp_path / "cache")


def entry(cache: TapeCache) -> Path:
    (path,) = cache.root.glob("*.arrow")
    return path


def test_second_load_is_a_memory_mapped_hit(book: Path, cache: TapeCache) -> None:
    spec = csv_spec(str(book), None, "BTCUSDT", True)
    first = cache.load(spec)[0]
    again = cache.load(spec)[0]
    assert (cache.builds, cache.hits) == (1, 1)
    assert same(first, again)
    assert same(again, load_tape(str(book), symbol="BTCUSDT"))
    assert not again.ts.flags.writeable  # a view of the mapped file, not a copy
    assert TapeCache(cache.root).load(spec)[0].rows == ROWS  # another process: same entry


def test_any_change_to_the_inputs_or_the_loader_misses(
    book: Path, cache: TapeCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = csv_spec(str(book), None, "BTCUSDT", True)
    key0, _ = cache.key(spec)
    cache.load(spec)
    write_book(book, shift=1.0)  # same size, new content and mtime
    key1, _ = cache.key(spec)
    assert key1 != key0
    assert cache.load(spec)[0].bid[0] == 65_001.0
    st = book.stat()
    os.utime(book, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # mtime only
    key2, _ = cache.key(spec)
    assert key2 not in (key0, key1)
    assert cache.key(csv_spec(str(book), None, "BTCUSDT", False))[0] != key2  # options
    assert cache.key(csv_spec(str(book), None, "ETHUSDT", True))[0] != key2
    loader = cache_module.get_loader("csv")
    monkeypatch.setitem(cache_module._LOADERS, "csv", loader.__class__("csv", "2", loader.load))
    assert cache.key(spec)[0] != key2  # the loader's version
    assert cache.builds == 2


def test_the_content_hash_is_read_once_per_file_state(
    book: Path, cache: TapeCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = csv_spec(str(book), None, "BTCUSDT", True)
    calls: list[str] = []
    real = cache_module.content_hash
    monkeypatch.setattr(cache_module, "content_hash", lambda p: calls.append(p) or real(p))
    for _ in range(3):
        cache.load(spec)
    assert len(calls) == 1


@pytest.mark.parametrize(
    "damage",
    ["flip a data byte", "truncate", "zero length", "garbage", "flip the metadata"],
)
def test_a_damaged_entry_is_deleted_and_rebuilt_with_one_warning(
    book: Path, cache: TapeCache, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    spec = csv_spec(str(book), None, "BTCUSDT", True)
    good = cache.load(spec)[0]
    path = entry(cache)
    data = bytearray(path.read_bytes())
    if damage == "flip a data byte":
        # a price in the middle of the bid column: the file still opens
        needle = np.float64(good.bid[ROWS // 2]).tobytes()
        at = data.index(needle, len(data) // 4)
        data[at + 3] ^= 0x10
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "zero length":
        data = bytearray()
    elif damage == "garbage":
        data = bytearray(b"not arrow at all" * 100)
    else:  # valid JSON that no longer matches: a column length off by one
        data = bytearray(
            bytes(data).replace(f'"len": {ROWS}'.encode(), f'"len": {ROWS - 1}'.encode())
        )
    path.write_bytes(bytes(data))
    capsys.readouterr()
    again = cache.load(spec)[0]
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"cache entry {path} is damaged (" in err
    assert err.endswith("); deleted, rebuilding\n")
    assert same(again, good)
    assert cache.builds == 2
    read_entry(entry(cache), entry(cache).stem)  # the rebuilt entry is sound


def test_concurrent_builders_of_one_key(tmp_path: Path) -> None:
    """Same key, both building at once: the second rename replaces the first, both right."""
    code = textwrap.dedent(
        """
        import hashlib, sys, time
        from pathlib import Path
        from exec_router.simulator import cache as c
        from exec_router.simulator.synthetic import synthetic_tape

        gates = Path(sys.argv[2])
        def slow(paths, options):
            (gates / sys.argv[3]).touch()
            while len(list(gates.iterdir())) < 2:
                time.sleep(0.01)
            return [synthetic_tape(hours=0.5, seed=3)]

        c.register_loader("slow", "1", slow)
        cache = c.TapeCache(Path(sys.argv[1]))
        tape = cache.load(c.TapeSpec("slow"))[0]
        print(cache.builds, hashlib.sha256(tape.ts.tobytes() + tape.ask.tobytes()).hexdigest())
        """
    )
    gates = tmp_path / "gates"
    gates.mkdir()
    root = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(root), str(gates), f"g{k}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [out.split()[0] for out, _ in outs] == ["1", "1"]
    assert len({out.split()[1] for out, _ in outs}) == 1
    (path,) = root.glob("*.arrow")
    assert not list(root.glob("*.tmp"))
    register_loader("slow", "1", lambda paths, options: [])  # for the key below only
    tapes = read_entry(path, path.stem)
    assert tapes[0].rows == 18_000


def test_cache_command_lists_and_clears(
    book: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "c"
    js = tmp_path / "out.json"
    args = ["simulate", "--book", str(book), "--styles", "taker", "--cache-dir", str(root)]
    assert main([*args, "--json", str(js)]) == 0
    first = json.loads(js.read_text())["styles"]
    assert main([*args, "--json", str(js)]) == 0  # from the cache: the same answer
    assert (
        json.loads(js.read_text())["styles"]["taker"]["costs_bps"] == (first["taker"]["costs_bps"])
    )
    capsys.readouterr()
    assert main(["cache", "list", "--cache-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "1 entries" in out
    assert book.name in out
    assert f"{ROWS:,} events" in out
    assert main(["cache", "clear", "--cache-dir", str(root)]) == 0
    assert "removed 1 entries" in capsys.readouterr().out
    assert not list(root.glob("*.arrow"))
    assert main([*args, "--no-cache"]) == 0
    assert not list(root.glob("*.arrow"))


def test_the_default_cache_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_module.default_cache_dir() == tmp_path / "exec-router"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_module.default_cache_dir() == Path.home() / ".cache" / "exec-router"


def test_an_unknown_loader_is_named() -> None:
    with pytest.raises(ValueError, match="unknown tape loader 'nope'"):
        TapeCache().load(TapeSpec("nope"))


def test_a_background_write_is_complete_after_flush(book: Path, tmp_path: Path) -> None:
    cache = TapeCache(tmp_path / "bg", background=True)
    spec = csv_spec(str(book), None, "BTCUSDT", True)
    tape = cache.load(spec)[0]
    cache_module.flush()
    assert not cache_module._WRITERS
    (path,) = (tmp_path / "bg").glob("*.arrow")
    assert same(read_entry(path, path.stem)[0], tape)
    assert not list((tmp_path / "bg").glob("*.tmp"))
