"""The command line and its defaults, importable without the ``sim`` extra (no numpy).

``exec-router --help`` and ``simulate --help`` parse here, before numpy, pyarrow or rich load.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Final

from exec_router import VALID_STYLES, ExecConfig, __version__

FILL_MODELS: Final = ("through", "touch", "queue", "print")
DEFAULT_FILL_MODEL: Final = "through"
#: The fill models from the most optimistic to the most pessimistic (``--fill-model all``).
BY_OPTIMISM: Final = ("print", "queue", "touch", "through")
#: With depth, where size removed from a quote's level comes from (``--cancel-from``).
CANCEL_FROM: Final = ("back", "proportional", "front")
#: BingX USDT-M perpetuals: maker 2 bps, taker 5 bps.
MAKER_FEE_BPS: Final = 2.0
TAKER_FEE_BPS: Final = 5.0
#: ExecConfig fields that ``--set`` and ``--sweep`` take, with their type names.
SWEEPABLE: Final = {
    f.name: str(f.type) for f in dataclasses.fields(ExecConfig) if f.name != "tick_overrides"
}
#: The sweep's bootstrap: over tapes (day × symbol) or entry intents; auto picks.
BOOTSTRAP_METHODS: Final = ("auto", "tapes", "intents")
#: How to get the extras from a checkout (this project is not on a package index).
INSTALL_HINT: Final = "from the checkout: pip install '.[{extra}]' (or make simulate)"


def parse_qty(items: list[str]) -> tuple[tuple[tuple[str, float], ...], float | None]:
    """``--qty`` values: per-symbol sizes (``SYMBOL=QTY``) and one default notional."""
    sizes: dict[str, float] = {}
    notional: float | None = None
    for item in items:
        sym, sep, text = item.rpartition("=")
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value > 0 or value == float("inf") or (sep and not sym.strip()):
            raise ValueError(f"--qty {item}: expected SYMBOL=QTY or a notional, a number > 0")
        if sep:
            sizes[sym.strip().upper()] = value
        elif notional is not None:
            raise ValueError(f"--qty {item}: the default notional is given twice")
        else:
            notional = value
    return tuple(sizes.items()), notional


class _DefaultsFormatter(argparse.HelpFormatter):
    """Appends ``(default: ...)`` to every option whose help does not state its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default:" in text or action.default is argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)".strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exec-router",
        description="exec-router tools. `simulate` replays a market tape through the router.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "simulate",
        help="compare taker / maker_entry / maker_exit / maker_both on a tape",
        description=(
            "Replay a market tape through the real router and show what each execution "
            "style costs. Without arguments: a synthetic day of BTCUSDT and a bracket strategy."
        ),
        formatter_class=_DefaultsFormatter,
    )
    data = p.add_argument_group("data (the file options repeat; one router runs every symbol)")
    data.add_argument(
        "--capture",
        metavar="FILE",
        action="append",
        default=[],
        help="recorded Binance USD-M streams: `<ts_ns> <json>` or bare JSON lines, plain or "
        ".gz; bookTicker, trade, aggTrade, depthUpdate, REST depth snapshot (default: none)",
    )
    data.add_argument(
        "--tardis",
        metavar="FILE",
        action="append",
        default=[],
        help="Tardis.dev CSV, plain or .gz: quotes, trades, incremental_book_L2, "
        "book_snapshot_25 (default: none)",
    )
    data.add_argument(
        "--book",
        metavar="FILE",
        action="append",
        default=[],
        help="Binance bookTicker or ts_ms,bid,ask[,qty] CSV; consecutive days of a symbol are "
        "joined (default: a synthetic tape when no file is given)",
    )
    data.add_argument(
        "--trades",
        metavar="FILE",
        action="append",
        default=[],
        help="Binance aggTrades or ts_ms,price,qty,side CSV (default: none)",
    )
    data.add_argument(
        "--intents",
        metavar="FILE",
        help="intents CSV instead of the bracket strategy; any symbol of the tape "
        "(default: the bracket)",
    )
    data.add_argument(
        "--symbol",
        help="symbol of --book/--trades files whose name does not say it, or of the synthetic "
        "tape (default: from the Binance file name; synthetic: BTCUSDT)",
    )
    data.add_argument(
        "--time",
        choices=("exchange", "local"),
        default="exchange",
        help="clock of captures and Tardis files: exchange time, or the local receive time "
        "(feed latency included)",
    )
    data.add_argument(
        "--allow-gaps",
        action="store_true",
        help="replay a capture whose depth stream has gaps (default: a gap is an error)",
    )
    data.add_argument(
        "--exchange-info",
        metavar="FILE",
        help="tick sizes from Binance futures exchangeInfo or BingX swap contracts JSON "
        "(default: the router's table)",
    )
    data.add_argument(
        "--tick",
        metavar="SYMBOL=SIZE",
        action="append",
        default=[],
        help="one tick size by hand; wins over --exchange-info (default: none)",
    )
    data.add_argument("--seed", type=int, default=7, help="synthetic tape seed")
    data.add_argument("--hours", type=float, default=24.0, help="synthetic tape length")
    data.add_argument("--days", type=int, default=1, help="with --sweep: synthetic days per symbol")
    data.add_argument(
        "--symbols",
        metavar="A,B",
        help="with --sweep: synthetic symbols, each day of each a tape (default: --symbol)",
    )
    data.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where parsed tapes are kept (default: $XDG_CACHE_HOME/exec-router)",
    )
    data.add_argument("--no-cache", action="store_true", help="parse the inputs and keep nothing")

    router = p.add_argument_group("router")
    router.add_argument(
        "--styles",
        help=f"comma-separated styles from {','.join(VALID_STYLES)} "
        "(default: all four; with --sweep: maker_both)",
    )
    router.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="FIELD=VALUE",
        help="ExecConfig fields for every style: "
        + ", ".join(k for k in SWEEPABLE if k != "style")
        + " (default: ExecConfig's defaults)",
    )
    router.add_argument(
        "--sweep",
        nargs="+",
        default=[],
        metavar="FIELD=V1,V2",
        help="run the grid of ExecConfig values on every core and rank by total cost "
        "(default: no sweep)",
    )
    router.add_argument("--jobs", type=int, default=0, help="sweep processes (0: all cores)")
    router.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="run the sweep's tasks on this Dask scheduler (default: local processes)",
    )
    router.add_argument(
        "--bootstrap",
        choices=BOOTSTRAP_METHODS,
        default="auto",
        help="the sweep's 95%% intervals resample tapes or entry intents; auto: tapes when "
        "there are 10 or more",
    )

    venue = p.add_argument_group("venue")
    venue.add_argument(
        "--fill-model",
        choices=(*FILL_MODELS, "all"),
        default=DEFAULT_FILL_MODEL,
        help="when a resting quote fills: at the first event that proves it under the model; "
        "print (any trade at the price) is the optimistic bound; all: every model, and the "
        "range per style",
    )
    venue.add_argument(
        "--cancel-from",
        choices=CANCEL_FROM,
        default="back",
        help="queue model with depth messages: size removed from a quote's level (not "
        "traded) is taken behind the quote first (back: hftbacktest's risk-averse model), in "
        "proportion, or ahead of it first (front)",
    )
    venue.add_argument(
        "--qty",
        metavar="[SYMBOL=]QTY",
        action="append",
        default=[],
        help="quote size: SYMBOL=QTY in the base asset, or a bare number, the notional in "
        "the quote asset for every other symbol; the queue model fills it in parts "
        "(default: a minimal quote, one lot)",
    )
    venue.add_argument("--latency-ms", type=int, default=50, help="order and cancel latency")
    venue.add_argument("--maker-fee-bps", type=float, default=MAKER_FEE_BPS, help="maker fee")
    venue.add_argument("--taker-fee-bps", type=float, default=TAKER_FEE_BPS, help="taker fee")

    strat = p.add_argument_group("bracket strategy")
    strat.add_argument("--every-s", type=float, default=300.0, help="seconds between entries")
    strat.add_argument(
        "--take-profit-bps", type=float, default=8.0, help="take profit at this mid gain"
    )
    strat.add_argument("--stop-loss-bps", type=float, default=16.0, help="stop at this mid loss")
    strat.add_argument(
        "--max-hold-s", type=float, default=180.0, help="close after this many seconds"
    )
    strat.add_argument(
        "--stagger-s",
        type=float,
        help="each symbol's bracket starts this much after the one before "
        "(default: --every-s / number of symbols)",
    )

    out = p.add_argument_group("output")
    out.add_argument(
        "--json",
        metavar="FILE",
        help="write the results as JSON; '-' writes them to stdout and the report to "
        "stderr (default: no JSON)",
    )
    out.add_argument(
        "--plot",
        metavar="FILE.png",
        help="draw costs and markouts (matplotlib); '.png' is added to a name without "
        "a suffix (default: no plot)",
    )
    out.add_argument(
        "--csv", metavar="FILE", help="with --sweep: every config's summary as CSV (default: none)"
    )
    out.add_argument(
        "--no-progress",
        action="store_true",
        help="never show progress bars (default: shown on a terminal)",
    )
    _cache_parser(sub)
    return parser


def _cache_parser(sub: Any) -> None:
    """``exec-router cache list|clear [--cache-dir DIR]``."""
    p = sub.add_parser(
        "cache",
        help="list or clear the tape cache",
        description="Parsed tapes kept between runs: one Arrow IPC file per set of inputs.",
        formatter_class=_DefaultsFormatter,
    )
    p.add_argument("action", choices=("list", "clear"), help="what to do")
    p.add_argument(
        "--cache-dir", metavar="DIR", help="the cache (default: $XDG_CACHE_HOME/exec-router)"
    )
