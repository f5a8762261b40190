"""The capture parser reads what ``json`` reads, whatever the key order, spacing, envelope,
extra fields or escapes (which send a line from the fast path to serde_json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from exec_router import _core

EXTRA = st.one_of(
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.text(max_size=6),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.sampled_from(["x", "y"]), st.integers(0, 9), max_size=2),
)
PRICE = st.decimals(min_value="0.01", max_value="99999.99", places=2).map(str)
QTY = st.decimals(min_value="0", max_value="9999.999", places=3).map(str)


@st.composite
def message(draw: Any) -> tuple[str, dict[str, Any]]:
    bid = draw(PRICE)
    ask = str(max(float(bid), float(draw(PRICE))))
    if "." not in ask:
        ask += ".0"
    msg: dict[str, Any] = {
        "e": "bookTicker",
        "u": draw(st.integers(0, 2**62)),
        "s": draw(st.sampled_from(["ETHUSDT", "BTCUSDT", "X\u00e9USDT"])),
        "b": bid,
        "B": draw(QTY),
        "a": ask,
        "A": draw(QTY),
        "T": draw(st.integers(1, 2**50)),
        "E": draw(st.integers(1, 2**50)),
    }
    for k in draw(st.lists(st.sampled_from(["X", "n", "zz", "id"]), unique=True, max_size=3)):
        msg[k] = draw(EXTRA)
    keys = draw(st.permutations(list(msg)))
    msg = {k: msg[k] for k in keys}
    sep = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")]))
    body = json.dumps(msg, separators=sep, ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):
        body = '{"stream":"s@bookTicker","data":' + body + "}"
    if draw(st.booleans()):
        body = f"{draw(st.integers(0, 2**62))} {body}"
    return body, msg


@settings(max_examples=150, deadline=None)
@given(st.lists(message(), min_size=1, max_size=20))
def test_parser_reads_what_json_reads(tmp_path_factory: Any, lines: list[Any]) -> None:
    path: Path = tmp_path_factory.mktemp("cap") / "c.txt"
    path.write_text("\n".join(text for text, _ in lines) + "\n", encoding="utf-8")
    got = _core.parse_capture(str(path), threads=2)["symbols"]
    want: dict[str, list[dict[str, Any]]] = {}
    for _, msg in lines:
        want.setdefault(msg["s"], []).append(msg)
    assert list(got) == list(want)
    for sym, msgs in want.items():
        book = got[sym]["book"]
        assert np.frombuffer(book["ts"], np.int64).tolist() == [m["T"] for m in msgs]
        for col, key in (("bid", "b"), ("ask", "a"), ("bid_qty", "B"), ("ask_qty", "A")):
            assert np.frombuffer(book[col], np.float64).tolist() == [float(m[key]) for m in msgs]


#: Binance USD-M key order of each message kind (the collector's layout, read by the
#: parser's fast path); any other order, spacing or extra key takes the general path.
ORDER = {
    "bookTicker": ["e", "u", "s", "b", "B", "a", "A", "T", "E"],
    "trade": ["e", "E", "T", "s", "t", "p", "q", "X", "m"],
    "aggTrade": ["e", "E", "a", "s", "p", "q", "f", "l", "T", "m"],
    "depthUpdate": ["e", "E", "T", "s", "U", "u", "pu", "b", "a"],
}
LEVEL = st.tuples(PRICE, QTY).map(list)


@st.composite
def any_message(draw: Any, chain: dict[str, int]) -> tuple[str, dict[str, Any]]:
    """A message of any kind, in Binance's key order or shuffled, with or without extra
    keys, spaces, escapes, the envelope and the local time."""
    kind = draw(st.sampled_from(list(ORDER)))
    sym = draw(st.sampled_from(["ETHUSDT", "BTCUSDT", "X\u00e9USDT"]))
    t = draw(st.integers(0, 2**53))
    msg: dict[str, Any] = {"e": kind, "E": t + draw(st.integers(0, 9)), "T": t, "s": sym}
    if kind == "bookTicker":
        bid = draw(PRICE)
        ask = str(max(float(bid), float(draw(PRICE))))
        msg |= {"u": draw(st.integers(0, 2**64 - 1)), "b": bid, "B": draw(QTY)}
        msg |= {"a": ask if "." in ask else ask + ".0", "A": draw(QTY)}
    elif kind == "depthUpdate":
        first = chain.get(sym, 0) + 1
        last = first + draw(st.integers(0, 5))
        msg |= {"U": first, "u": last, "pu": first - 1}
        msg |= {"b": draw(st.lists(LEVEL, max_size=4)), "a": draw(st.lists(LEVEL, max_size=4))}
        chain[sym] = last
    else:
        msg |= {"p": draw(PRICE), "q": draw(QTY), "m": draw(st.booleans())}
        if kind == "trade":
            msg |= {"t": draw(st.integers(0, 2**63)), "X": draw(st.sampled_from(["MARKET", "NA"]))}
        else:
            msg |= {"a": draw(st.integers(0, 2**63)), "f": 1, "l": draw(st.integers(1, 99))}
    keys = ORDER[kind]
    if draw(st.booleans()):
        keys = draw(st.permutations(keys))
    msg = {k: msg[k] for k in keys}
    if draw(st.integers(0, 3)) == 0:
        msg["zz"] = draw(EXTRA)
    sep = draw(st.sampled_from([(",", ":"), (",", ":"), (", ", ": ")]))
    body = json.dumps(msg, separators=sep, ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):
        body = '{"stream":"' + sym.lower() + '@x","data":' + body + "}"
    if draw(st.booleans()):
        body = f"{draw(st.integers(0, 2**62))} {body}"
    return body, msg


def _rows(got: dict[str, Any], col: str, dtype: Any) -> list[Any]:
    return np.frombuffer(got[col], dtype).tolist()


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_every_kind_reads_what_json_reads(tmp_path_factory: Any, data: Any) -> None:
    chain: dict[str, int] = {}
    lines = data.draw(st.lists(any_message(chain), min_size=1, max_size=25))
    path: Path = tmp_path_factory.mktemp("cap") / "c.txt"
    path.write_text("\n".join(text for text, _ in lines) + "\n", encoding="utf-8")
    got = _core.parse_capture(str(path), threads=2, block=data.draw(st.sampled_from([0, 300])))
    assert got["messages"] == len(lines)
    symbols = got["symbols"]
    for sym in {m["s"] for _, m in lines}:
        msgs = [(n, m) for n, (_, m) in enumerate(lines, 1) if m["s"] == sym]
        book = [m for _, m in msgs if m["e"] == "bookTicker"]
        cols = symbols[sym]["book"]
        assert _rows(cols, "ts", np.int64) == [m["T"] for m in book]
        for col, key in (("bid", "b"), ("ask", "a"), ("bid_qty", "B"), ("ask_qty", "A")):
            assert _rows(cols, col, np.float64) == [float(m[key]) for m in book]
        for kind, name in (("trade", "trade"), ("aggTrade", "agg")):
            trades = [m for _, m in msgs if m["e"] == kind]
            cols = symbols[sym][name]
            assert _rows(cols, "ts", np.int64) == [m["T"] for m in trades]
            assert _rows(cols, "px", np.float64) == [float(m["p"]) for m in trades]
            assert _rows(cols, "qty", np.float64) == [float(m["q"]) for m in trades]
            assert _rows(cols, "side", np.int8) == [-1 if m["m"] else 1 for m in trades]
        depth = [(n, m) for n, m in msgs if m["e"] == "depthUpdate"]
        cols = symbols[sym]["depth"]
        assert _rows(cols, "line", np.uint64) == [n for n, _ in depth]
        assert _rows(cols, "first_id", np.uint64) == [m["U"] for _, m in depth]
        assert _rows(cols, "last_id", np.uint64) == [m["u"] for _, m in depth]
        assert _rows(cols, "prev_id", np.uint64) == [m["pu"] for _, m in depth]
        sides = (("b", 1), ("a", -1))
        levels = [(lv, side) for _, m in depth for key, side in sides for lv in m[key]]
        assert _rows(cols, "px", np.float64) == [float(p) for (p, _), _ in levels]
        assert _rows(cols, "qty", np.float64) == [float(q) for (_, q), _ in levels]
        assert _rows(cols, "side", np.int8) == [s for _, s in levels]
