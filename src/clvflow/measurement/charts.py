"""The report's two charts as PNG bytes (matplotlib, Agg backend: no display needed).

Both have a fixed pixel size (``COHORT_SIZE``, ``CLV_SIZE``) so the report's layout does not
shift from one day to the next.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
COHORT_SIZE = (1000, 640)  # pixels
CLV_SIZE = (900, 480)
PREDICTION_SIZE = (900, 480)
INK = "#2b2118"


def _figure(size: tuple[int, int]) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def cohort_heatmap(shares: pd.DataFrame, sizes: pd.Series) -> bytes:
    """Rows: first-order month (with its size); columns: months since; cells: % ordering."""
    fig = _figure(COHORT_SIZE)
    ax = fig.add_subplot()
    values = shares.to_numpy(dtype=float)
    later = values[:, 1:]  # month 0 is always 100%: scale the colours to the later months
    top = max(0.3, float(np.max(np.nan_to_num(later), initial=0.0)))
    image = ax.imshow(np.ma.masked_invalid(values), cmap="YlGnBu", vmin=0, vmax=top, aspect="auto")
    for (row, col), value in np.ndenumerate(values):
        if not math.isnan(value):
            color = "white" if value > 0.6 * top else INK
            ax.text(col, row, f"{value:.0%}", ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(values.shape[1]))
    ax.set_xticklabels([str(c) for c in shares.columns])
    ax.set_yticks(range(values.shape[0]))
    ax.set_yticklabels([f"{label}  (n={int(sizes[label])})" for label in shares.index])
    ax.set_xlabel("months since first order")
    ax.set_title("Monthly cohort retention: share of each first-order cohort ordering again")
    fig.colorbar(image, ax=ax, format=lambda v, _: f"{v:.0%}")
    fig.tight_layout()
    return _png(fig)


def clv_histogram(values: pd.Series, currency: str) -> bytes:
    """Historical CLV of the buyers, up to the 99th percentile (the long tail is noted)."""
    fig = _figure(CLV_SIZE)
    ax = fig.add_subplot()
    data = values.to_numpy(dtype=float)
    if len(data) == 0:
        ax.text(0.5, 0.5, "No orders yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        cap = float(np.quantile(data, 0.99))
        shown = data[data <= cap]
        ax.hist(shown, bins=40, color="#7a9e9f", edgecolor="white")
        mean, median = float(data.mean()), float(np.median(data))
        ax.axvline(median, color=INK, linestyle="--", label=f"median {median:,.0f} {currency}")
        ax.axvline(mean, color="#b5523b", label=f"mean {mean:,.0f} {currency}")
        ax.legend(frameon=False)
        hidden = len(data) - len(shown)
        if hidden:
            ax.text(0.99, 0.80, f"{hidden} customers above {cap:,.0f} {currency} not shown",
                    ha="right", transform=ax.transAxes, fontsize=8, color="#666")  # fmt: skip
        ax.set_xlabel(f"historical CLV ({currency})")
        ax.set_ylabel("customers")
    ax.set_title(f"Distribution of historical CLV ({len(data)} customers with orders)")
    fig.tight_layout()
    return _png(fig)


def prediction_check(check: dict[str, Any]) -> bytes:
    """The prediction check's classic chart: mean purchases in the holdout by repeat
    purchases before it, actual against the model and the naive baseline (``check``:
    :func:`clvflow.predictions.check.check_summary`'s values)."""
    fig = _figure(PREDICTION_SIZE)
    ax = fig.add_subplot()
    rows = check["by_repeat_purchases"]
    labels = [r["label"] for r in rows]
    ax.plot(labels, [r["actual"] for r in rows], marker="o", color=INK, label="actual")
    ax.plot(labels, [r["predicted"] for r in rows], marker="s", color="#b5523b", label="model")
    ax.plot(labels, [r["naive"] for r in rows], linestyle=":", color="#7a9e9f", label="naive")
    ax.set_xlabel(f"repeat purchases up to {check['cutoff'][:10]}")
    ax.set_ylabel(f"mean purchases in the {check['holdout_days']} days after")
    ax.set_title("Predicted against actual purchases, by past repeat purchases")
    ax.legend(frameon=False)
    fig.tight_layout()
    return _png(fig)
