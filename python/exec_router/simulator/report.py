"""Render the comparison: a rich table on stdout, or JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from exec_router.constants import COUNTER_KEYS

Row = tuple[str, Callable[[dict[str, Any]], Any], str]


def _get(*path: str) -> Callable[[dict[str, Any]], Any]:
    def read(summary: dict[str, Any]) -> Any:
        value: Any = summary
        for key in path:
            value = value[key]
        return value

    return read


SECTIONS: tuple[tuple[str, tuple[Row, ...]], ...] = (
    (
        "Entries",
        (
            ("planned", _get("entries", "planned"), "d"),
            ("maker fills", _get("entries", "maker_fills"), "d"),
            ("taker fills", _get("entries", "taker_fills"), "d"),
            ("skipped", _get("entries", "skipped"), "d"),
            ("suppressed by the global guard", _get("entries", "suppressed"), "d"),
            ("retried", _get("entries", "retried"), "d"),
            ("rejected (post-only)", _get("entries", "rejected"), "d"),
        ),
    ),
    (
        "Exits",
        (
            ("maker fills", _get("exits", "maker_fills"), "d"),
            ("taker fills", _get("exits", "taker_fills"), "d"),
            ("escalated", _get("exits", "escalated"), "d"),
        ),
    ),
    (
        "Size",
        (
            ("maker fill ratio", _get("size", "fill_ratio"), ".3f"),
            ("filled notional", _get("size", "filled_notional"), ",.0f"),
        ),
    ),
    (
        "Costs, bps (+ = cost)",
        (
            ("fees / round trip", _get("costs_bps", "fees"), ".2f"),
            ("entry slippage vs arrival mid", _get("costs_bps", "entry_slippage"), ".2f"),
            ("exit slippage vs arrival mid", _get("costs_bps", "exit_slippage"), ".2f"),
            ("total / round trip", _get("costs_bps", "total_per_round_trip"), ".2f"),
            ("missed entry, opportunity", _get("costs_bps", "missed_opportunity"), ".2f"),
            ("suppressed entry, opportunity", _get("costs_bps", "suppressed_opportunity"), ".2f"),
            ("total incl. missed / RT", _get("costs_bps", "total_incl_missed"), ".2f"),
        ),
    ),
    (
        "Fill latency, ms (decision → fill)",
        (
            ("entry p50", _get("fill_latency_ms", "entry_p50"), ".0f"),
            ("entry p95", _get("fill_latency_ms", "entry_p95"), ".0f"),
            ("exit p50", _get("fill_latency_ms", "exit_p50"), ".0f"),
            ("exit p95", _get("fill_latency_ms", "exit_p95"), ".0f"),
        ),
    ),
    (
        "Markouts after maker fills, bps",
        (
            ("maker fills", _get("markouts_bps", "maker_fills"), "d"),
            ("adverse move at 1 s", _get("markouts_bps", "1s"), ".2f"),
            ("adverse move at 5 s", _get("markouts_bps", "5s"), ".2f"),
            ("adverse move at 30 s", _get("markouts_bps", "30s"), ".2f"),
        ),
    ),
)


def range_table(by_model: Mapping[str, Sequence[dict[str, Any]]]) -> Table:
    """Per style, what each fill model gives, from the most optimistic to the most
    pessimistic: cost per round trip and maker fills (entries and exits)."""
    table = Table(
        title="Fill models, most optimistic to most pessimistic",
        title_justify="left",
        show_edge=False,
        pad_edge=False,
    )
    table.add_column("", no_wrap=True)
    models = list(by_model)
    for m in models:
        table.add_column(m, justify="right", no_wrap=True)
    table.add_column("range", justify="right", no_wrap=True)
    styles = [s["style"] for s in by_model[models[0]]]
    for i, style in enumerate(styles):
        if i:
            table.add_section()
        table.add_row(f"[bold]{style}[/bold]", *([""] * (len(models) + 1)))
        per = [by_model[m][i] for m in models]
        costs = [s["costs_bps"]["total_per_round_trip"] for s in per]
        fills = [s["markouts_bps"]["maker_fills"] for s in per]
        table.add_row(
            "  total / round trip, bps", *(fmt(c, ".2f") for c in costs), _span(costs, ".2f")
        )
        table.add_row("  maker fills", *(fmt(f, "d") for f in fills), _span(fills, "d"))
    return table


def _span(values: Sequence[Any], spec: str) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "—"
    return f"{fmt(known[0], spec)} … {fmt(known[-1], spec)}"


def fmt(value: Any, spec: str) -> str:
    if value is None:
        return "—"
    text = format(value, spec)
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def comparison_table(summaries: Sequence[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("", no_wrap=True)
    for s in summaries:
        table.add_column(s["style"], justify="right", no_wrap=True)
    for i, (section, rows) in enumerate(SECTIONS):
        if i:
            table.add_section()
        table.add_row(f"[bold]{section}[/bold]", *([""] * len(summaries)))
        for label, read, spec in rows:
            table.add_row(f"  {label}", *(fmt(read(s), spec) for s in summaries))
    return table


SYMBOL_ROWS: tuple[Row, ...] = (
    ("planned", _get("entries", "planned"), "d"),
    ("maker fills", _get("entries", "maker_fills"), "d"),
    ("taker fills", _get("entries", "taker_fills"), "d"),
    ("skipped", _get("entries", "skipped"), "d"),
    ("suppressed by the guard", _get("entries", "suppressed"), "d"),
    ("total / round trip, bps", _get("costs_bps", "total_per_round_trip"), ".2f"),
    ("suppressed, opportunity bps", _get("costs_bps", "suppressed_opportunity"), ".2f"),
    ("total incl. missed / RT, bps", _get("costs_bps", "total_incl_missed"), ".2f"),
)


def symbol_table(per_symbol: Mapping[str, Sequence[dict[str, Any]]], title: str) -> Table:
    """One section per symbol: its entries and costs under each style."""
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("", no_wrap=True)
    first = next(iter(per_symbol.values()))
    for s in first:
        table.add_column(s["style"], justify="right", no_wrap=True)
    for i, (symbol, summaries) in enumerate(per_symbol.items()):
        if i:
            table.add_section()
        table.add_row(f"[bold]{symbol}[/bold]", *([""] * len(summaries)))
        for label, read, spec in SYMBOL_ROWS:
            table.add_row(f"  {label}", *(fmt(read(s), spec) for s in summaries))
    return table


def counters_table(summaries: Sequence[dict[str, Any]]) -> Table:
    table = Table(title="Router counters", title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("", no_wrap=True)
    for s in summaries:
        table.add_column(s["style"], justify="right", no_wrap=True)
    for key in COUNTER_KEYS:
        values = [s["counters"][key] for s in summaries]
        if any(values):
            table.add_row(f"  {key}", *(str(v) for v in values))
    return table


def console(file: Any = None) -> Console:
    """A console for stdout; a fixed width when piped, so the table never wraps."""
    con = Console(file=file, highlight=False)
    if not con.is_terminal:
        con = Console(file=file, highlight=False, width=120)
    return con


def write_json(path: str, payload: dict[str, Any]) -> None:
    """Write the payload as JSON to ``path``, or to stdout for ``-``."""
    if path == "-":
        _dump(sys.stdout, payload)
        return
    with open(path, "w", encoding="utf-8") as fh:
        _dump(fh, payload)


def _dump(out: TextIO, payload: dict[str, Any]) -> None:
    json.dump(payload, out, indent=2, default=str)
    out.write("\n")
