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
