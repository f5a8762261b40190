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
