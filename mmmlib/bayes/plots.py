"""Chapter 1's figures: ROI recovery, fitted against true response curves, budget allocation."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mmmlib.plots import channel_palette
from mmmlib.worlds.media import GroundTruth

__all__ = ["plot_roi_recovery", "plot_fitted_response", "plot_allocation"]


def plot_roi_recovery(tables: dict[str, pd.DataFrame], title: str = "ROI: posterior 90% intervals against the truth") -> plt.Figure:
    """Forest plot: per channel, each fit's posterior median and 90% interval of ROI
    (one colour per fit), with the true ROI as a black cross.

    ``tables`` maps a fit label to :func:`mmmlib.bayes.evaluate.roi_table` output.
    """
    labels = list(tables)
    channels = list(next(iter(tables.values())).index)
    colours = sns.color_palette("colorblind", len(labels))
    fig, ax = plt.subplots(figsize=(8.0, 0.9 + 0.55 * len(channels) * max(1, len(labels)) ** 0.5))
    height = 0.7 / max(len(labels), 1)
    for j, label in enumerate(labels):
        t = tables[label].reindex(channels)
        y = np.arange(len(channels)) + (j - (len(labels) - 1) / 2) * height
        ax.hlines(y, t["lo"], t["hi"], color=colours[j], lw=3, label=label)
        ax.plot(t["median"], y, "o", color=colours[j], ms=5)
    true = next(iter(tables.values())).reindex(channels)["true"]
    ax.plot(true, np.arange(len(channels)), "kx", ms=10, mew=2.5, label="true ROI")
    ax.set_yticks(np.arange(len(channels)), channels)
    ax.invert_yaxis()
    ax.set_xlabel("return on investment (sales per unit of spend)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_fitted_response(mmm, truth: GroundTruth, max_multiple: float = 3.0) -> plt.Figure:
    """Posterior long-run response curves (median and 90% band) against the true curves,
    one panel per channel; the grey band marks the range of weekly spend seen in the data."""
    curves = mmm.response_curves(n_points=60, max_multiple=max_multiple)
    channels = list(truth.channels)
    pal = channel_palette(channels)
    fig, axes = plt.subplots(1, len(channels), figsize=(3.0 * len(channels), 3.2), sharey=False, layout="constrained")
    for ax, ch in zip(np.atleast_1d(axes), channels, strict=True):
        c = curves[curves["channel"] == ch]
        spend = truth.spend[ch]
        ax.axvspan(spend.min(), spend.max(), color="0.9", zorder=0)
        ax.fill_between(c["spend"], c["lo"], c["hi"], color=pal[ch], alpha=0.3, lw=0)
        ax.plot(c["spend"], c["mean"], color=pal[ch], lw=2, label="posterior")
        ax.plot(c["spend"], truth.response(ch, c["spend"].to_numpy()), "k--", lw=1.5, label="truth")
        ax.set_title(ch)
        ax.set_xlabel("weekly spend (k)")
    np.atleast_1d(axes)[0].set_ylabel("weekly contribution (k)")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle("Response curves: posterior (band: 90%) vs truth; grey: spend range in the data")
    return fig


def plot_allocation(table: pd.DataFrame) -> plt.Figure:
    """Weekly spend per channel under several allocations (columns of ``table``)."""
    long = table.reset_index(names="channel").melt(id_vars="channel", var_name="allocation", value_name="spend")
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    sns.barplot(long, x="channel", y="spend", hue="allocation", ax=ax, palette="colorblind")
    ax.set_ylabel("weekly spend (k)")
    ax.set_title("Budget allocation: current mix, the model's optimum and the true optimum")
    return fig
