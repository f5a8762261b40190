"""The picture: cost breakdown per style and markout curves (matplotlib, optional extra)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def plot(summaries: Sequence[dict[str, Any]], path: str, title: str = "") -> None:
    """Write a PNG: left, the cost per round trip by part; right, markouts after maker fills."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(
        1, 2, figsize=(12, 5.2), gridspec_kw={"width_ratios": [1.2, 1]}
    )
    parts = (
        ("fees", "fees", "#4c72b0"),
        ("entry_slippage", "entry slippage", "#55a868"),
        ("exit_slippage", "exit slippage", "#c44e52"),
        ("missed", "missed entries (per RT)", "#8172b2"),
    )
    styles = [s["style"] for s in summaries]
    xs = list(range(len(styles)))
    up = [0.0] * len(styles)  # stacked bars: costs stack up, savings stack down
    down = [0.0] * len(styles)
    for key, label, color in parts:
        values = [_part(s["costs_bps"], key) for s in summaries]
        bottoms = [u if v >= 0 else d for v, u, d in zip(values, up, down, strict=True)]
        left.bar(xs, values, 0.6, bottom=bottoms, label=label, color=color)
        for i, v in enumerate(values):
            if v >= 0:
                up[i] += v
            else:
                down[i] += v
    totals = [s["costs_bps"]["total_incl_missed"] or 0.0 for s in summaries]
    left.scatter(xs, totals, marker="D", color="black", zorder=3, label="total incl. missed")
    for i, v in enumerate(totals):
        left.annotate(f"{v:.2f}", (i, v), textcoords="offset points", xytext=(0, 7), ha="center")
    left.axhline(0, color="grey", linewidth=0.8)
    left.set_xticks(xs, styles)
    left.set_ylabel("bps of notional per round trip (+ = cost)")
    left.set_title("Cost per round trip")
    left.set_ylim(min(0.0, *down) * 1.2 - 0.2, max(1.0, *up, *totals) * 1.15)
    left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)

    for s in summaries:
        curve = s.get("markout_curve_bps") or {}
        points = [(float(h[:-1]), v) for h, v in curve.items() if v is not None]
        if points:
            xs2, ys = zip(*points, strict=True)
            right.plot(xs2, ys, marker="o", label=s["style"])
    right.axhline(0, color="grey", linewidth=0.8)
    right.set_xscale("log")
    right.set_xlabel("seconds after the maker fill")
    right.set_ylabel("mid move against the fill, bps (+ = adverse)")
    right.set_title("Markouts after maker fills")
    if right.lines:
        right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _part(costs: dict[str, Any], key: str) -> float:
    if key == "missed":
        total, incl = costs["total_per_round_trip"], costs["total_incl_missed"]
        return 0.0 if total is None or incl is None else float(incl - total)
    return float(costs[key] or 0.0)


def plot_ranking(
    ranked: Sequence[dict[str, Any]], path: str, keys: Sequence[str], subtitle: str = ""
) -> None:
    """Write a PNG: each config's total cost incl. missed entries with its 95% interval.

    Cheapest at the top; each row is named by the swept settings. Green: the best; blue: not
    significantly worse; grey: significantly worse (paired interval of the difference > 0).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [s for s in ranked if s["costs_bps"]["total_incl_missed"] is not None]
    names = [" ".join(f"{k}={s['config'][k]}" for k in keys) for s in rows]
    values = [float(s["costs_bps"]["total_incl_missed"]) for s in rows]
    lows = [
        v - (s["ci95_bps"][0] if s["ci95_bps"][0] is not None else v)
        for v, s in zip(values, rows, strict=True)
    ]
    highs = [
        (s["ci95_bps"][1] if s["ci95_bps"][1] is not None else v) - v
        for v, s in zip(values, rows, strict=True)
    ]
    colors = [
        "#55a868" if i == 0 else "#8c8c8c" if s["vs_best"]["significant"] else "#4c72b0"
        for i, s in enumerate(rows)
    ]
    ys = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.32 * max(len(rows), 1)))
    for y, v, lo, hi, c in zip(ys, values, lows, highs, colors, strict=True):
        ax.errorbar(v, y, xerr=[[lo], [hi]], fmt="o", color=c, ecolor=c, capsize=3)
    ax.set_yticks(ys, names, fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_xlabel("total cost incl. missed entries, bps per round trip (+ = cost), 95% CI")
    ax.set_title(
        "Sweep ranking: green best, blue not significantly worse, grey significantly worse"
        + (f"\n{subtitle}" if subtitle else ""),
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
