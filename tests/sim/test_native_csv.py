"""The native one-pass CSV parser (exec_router._core.csv_columns) against Arrow's reader:
the same values to the bit, and every file outside its subset handed back to Arrow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exec_router._core import csv_columns
from exec_router.simulator import TapeError, load_book, load_trades, loaders
from exec_router.simulator.loaders import BINANCE_BOOK, BINANCE_TRADES

decimals = st.builds(
    lambda sign, whole, frac: f"{sign}{whole}{'.' + frac if frac else ''}",
    st.sampled_from(["", "-"]),
    st.from_regex(r"[0-9]{1,20}", fullmatch=True),
    st.from_regex(r"[0-9]{0,24}", fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(decimals, min_size=1, max_size=20), st.integers(-(2**63) + 1, 2**63 - 1))
def test_decimals_parse_to_the_correctly_rounded_double(texts: list[str], ts: int) -> None:
    data = "".join(f"{ts},{t},{'true' if k % 2 else 'False'}\n" for k, t in enumerate(texts))
    out = csv_columns("", data.encode(), 3, False, [(0, "i"), (1, "f"), (2, "b")])
    assert out is not None
    got = np.frombuffer(out[1], dtype=np.float64)
    assert [v.hex() for v in got.tolist()] == [float(t).hex() for t in texts]
    assert np.frombuffer(out[0], dtype=np.int64).tolist() == [ts] * len(texts)
    assert np.frombuffer(out[2], dtype=np.bool_).tolist() == [k % 2 == 1 for k in range(len(texts))]


@pytest.mark.parametrize(
    "text",
    [
        "1,2.5e3\n",  # exponent
        "1, 2.5\n",  # space
        '1,"2.5"\n',  # quotes
        "1,\n",  # empty field
        "1,2.5,3\n",  # a field too many
        "1,2.5\r3,4\n",  # a bare CR ends a line for Arrow
        "1,.5\n",
        "1,nan\n",
        "1.0,2\n",  # an integer column
        "9223372036854775808,2\n",  # past int64
    ],
)
def test_outside_the_subset_is_handed_back(text: str) -> None:
    assert csv_columns("", text.encode(), 2, False, [(0, "i"), (1, "f")]) is None


def _arrow_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loaders, "_native_columns", lambda src, layout: None)


def _book(path: Path, rows: int, newline: str = "\n") -> Path:
    rng = np.random.default_rng(7)
    bid = np.round(65_000 + np.cumsum(rng.integers(-3, 4, rows)) * 0.1, 1)
    lines = [",".join(BINANCE_BOOK)] + [
        f"{8_200_000_000 + k},{b!r},{rng.random() * 9:.{k % 9}f},{b + 0.1:.1f},"
        f"{rng.integers(0, 10**6) / 1000},{1_700_000_000_000 + 100 * k},{1_700_000_000_003 + k}"
        for k, b in enumerate(bid.tolist())
    ]
    path.write_text(newline.join(lines) + newline)
    return path


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_book_file_equals_arrow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, newline: str
) -> None:
    path = _book(tmp_path / "BTCUSDT-bookTicker-2024-03-01.csv", 20_000, newline)
    native = load_book(str(path))
    _arrow_only(monkeypatch)
    arrow = load_book(str(path))
    for a, b in zip(native, arrow, strict=True):
        assert a is not None
        assert b is not None
        assert a.dtype == b.dtype
        assert a.tobytes() == b.tobytes()


def test_trades_file_equals_arrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "BTCUSDT-aggTrades-2024-03-01.csv"
    rows = [
        f"{5_100_000 + k},{65_000 + (k % 7) / 10},{(k % 13) / 1000 + 0.001:.3f},1,1,"
        f"{1_700_000_000_000 + 10 * k},{['true', 'false', 'True', 'FALSE'][k % 4]}"
        for k in range(5_000)
    ]
    path.write_text("\n".join([",".join(BINANCE_TRADES), *rows, ""]))
    native = load_trades(str(path))
    _arrow_only(monkeypatch)
    arrow = load_trades(str(path))
    for a, b in zip(native, arrow, strict=True):
        assert a.dtype == b.dtype
        assert a.tobytes() == b.tobytes()


def test_a_bad_line_is_still_named(tmp_path: Path) -> None:
    path = _book(tmp_path / "book.csv", 100)
    lines = path.read_text().splitlines()
    lines[57] = lines[57].replace(",", ",x", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TapeError, match=r"book\.csv:58"):
        load_book(str(path))
