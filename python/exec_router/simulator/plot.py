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
        1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.2, 1]}
    )
    parts = (
        ("fees", "fees", "#4c72b0"),
        ("entry_slippage", "entry slippage", "#55a868"),
        ("exit_slippage", "exit slippage", "#c44e52"),
        ("missed", "missed entries (per RT)", "#8172b2"),
    )
    styles = [s["style"] for s in summaries]
    width = 0.8 / len(parts)
    for k, (key, label, color) in enumerate(parts):
        values = []
        for s in summaries:
            c = s["costs_bps"]
            if key == "missed":
                total, incl = c["total_per_round_trip"], c["total_incl_missed"]
                values.append(0.0 if total is None or incl is None else incl - total)
            else:
                values.append(c[key] or 0.0)
        xs = [i + (k - (len(parts) - 1) / 2) * width for i in range(len(styles))]
        left.bar(xs, values, width, label=label, color=color)
    totals = [s["costs_bps"]["total_incl_missed"] or 0.0 for s in summaries]
    left.scatter(
        range(len(styles)), totals, marker="D", color="black", zorder=3, label="total incl. missed"
    )
    for i, v in enumerate(totals):
        left.annotate(f"{v:.2f}", (i, v), textcoords="offset points", xytext=(0, 7), ha="center")
    left.axhline(0, color="grey", linewidth=0.8)
    left.set_xticks(range(len(styles)), styles)
    left.set_ylabel("bps of notional per round trip (+ = cost)")
    left.set_title("Cost per round trip")
    left.legend(fontsize=8, loc="upper right")

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
        right.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
