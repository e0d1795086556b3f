"""The book's figures: one seaborn theme, functions that return the figure.

Every function takes the objects of :mod:`mmmlib` (worlds, truths, fits), draws a
figure a reader understands without the text (titles, axis labels with units,
legends), and returns the :class:`matplotlib.figure.Figure`. See Chapter 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mmmlib.simulate.media import GroundTruth, SimulatedWorld
from mmmlib.transforms import adstock, carryover

__all__ = [
    "set_theme",
    "channel_palette",
    "plot_spend",
    "plot_adstock_kernels",
    "plot_response_curves",
    "plot_decomposition",
]


def set_theme() -> None:
    """The book's look: seaborn whitegrid, colour-blind palette, fixed size and DPI."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update(
        {
            "figure.figsize": (9.0, 4.5),
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "axes.titleweight": "bold",
            "axes.titlesize": 12,
            "legend.frameon": False,
            "figure.constrained_layout.use": True,
        }
    )


def channel_palette(channels: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One fixed colour per channel, the same in every figure."""
    colours = sns.color_palette("colorblind", n_colors=max(len(channels), 3))
    return dict(zip(channels, colours, strict=False))


def plot_spend(world: SimulatedWorld) -> plt.Figure:
    """Weekly spend per channel, one panel each, the seasonal baseline shaded behind."""
    truth = world.truth
    channels = truth.channels
    pal = channel_palette(channels)
    fig, axes = plt.subplots(len(channels), 1, sharex=True, figsize=(9.0, 1.6 * len(channels) + 0.8))
    axes = np.atleast_1d(axes)
    base = truth.baseline / truth.baseline.max()
    for ax, ch in zip(axes, channels, strict=True):
        spend = truth.spend[ch]
        ax.fill_between(spend.index, 0, base * spend.max(), color="0.9", label="baseline demand (scaled)")
        ax.plot(spend.index, spend, color=pal[ch], lw=1.4, label=f"{ch} spend")
        ax.set_ylabel("spend\n(k/week)")
        ax.set_title(ch, loc="left", fontsize=10)
        ax.set_ylim(bottom=0)
    axes[0].legend(loc="upper right", ncols=2, fontsize=8)
    axes[-1].set_xlabel("week")
    fig.suptitle(f"Weekly spend by channel, {world.config.name} world")
    return fig


def plot_adstock_kernels(
    decays: pd.Series, carryover_example: tuple[float, float] | None = (0.6, 2.0), n_lags: int = 13
) -> plt.Figure:
    """Response over the weeks after a one-week burst: geometric adstock per channel
    (normalised), and optionally a delayed-peak carryover for comparison."""
    impulse = np.zeros((n_lags, 1))
    impulse[0] = 1.0
    fig, ax = plt.subplots(figsize=(8.0, 3.8))
    pal = channel_palette(list(decays.index))
    for ch, lam in decays.items():
        w = adstock(impulse, [lam]).numpy()[:, 0]
        ax.plot(range(n_lags), w, marker="o", ms=3, color=pal[ch], label=f"{ch}: adstock, decay {lam:.2f}")
    if carryover_example is not None:
        tau, theta = carryover_example
        w = carryover(impulse, [tau], [theta], number_lags=n_lags).numpy()[:, 0]
        ax.plot(range(n_lags), w, ls="--", color="0.3", label=f"carryover, retention {tau}, peak at week {theta:g}")
    ax.set_xlabel("weeks after a one-week burst of media")
    ax.set_ylabel("share of the effect in that week")
    ax.set_title("How long a week of media keeps working")
    ax.legend(fontsize=8)
    return fig


def plot_response_curves(truth: GroundTruth, max_multiple: float = 3.0) -> plt.Figure:
    """True long-run weekly contribution against constant weekly spend, per channel,
    with each channel's average weekly spend marked."""
    channels = truth.channels
    pal = channel_palette(channels)
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    mean_spend = truth.spend.mean()
    for ch in channels:
        grid = np.linspace(0.0, max_multiple * mean_spend[ch], 200)
        ax.plot(grid, truth.response(ch, grid), color=pal[ch], lw=2, label=ch)
        ax.scatter([mean_spend[ch]], truth.response(ch, mean_spend[ch]), color=pal[ch], edgecolor="k", zorder=3)
    ax.set_xlabel("constant weekly spend (k)")
    ax.set_ylabel("weekly contribution to sales (k)")
    ax.set_title("True response curves (dots: average weekly spend)")
    ax.legend(title="channel")
    return fig


def plot_decomposition(world: SimulatedWorld) -> plt.Figure:
    """Observed sales over the true decomposition: baseline plus stacked channel contributions."""
    truth = world.truth
    channels = truth.channels
    pal = channel_palette(channels)
    sales = world.data.frame.groupby(world.data.date)[world.data.target].sum()
    fig, ax = plt.subplots(figsize=(9.0, 4.2))
    layers = [truth.baseline.to_numpy()] + [truth.contributions[c].to_numpy() for c in channels]
    colours = ["0.8"] + [pal[c] for c in channels]
    ax.stackplot(truth.baseline.index, *layers, colors=colours, labels=["baseline", *channels], alpha=0.85)
    ax.plot(sales.index, sales.to_numpy(), color="k", lw=1.0, label="observed sales")
    ax.set_ylabel("weekly sales (k)")
    ax.set_xlabel("week")
    ax.set_title(f"What made the sales, {world.config.name} world (true decomposition)")
    ax.legend(loc="upper left", ncols=3, fontsize=8)
    return fig


def plot_roi_recovery(tables: dict[str, pd.DataFrame], title: str = "ROI: posterior 90% intervals against the truth") -> plt.Figure:
    """Forest plot: per channel, each fit's posterior median and 90% interval of ROI
    (one colour per fit), with the true ROI as a black cross.

    ``tables`` maps a fit label to :func:`mmmlib.evaluate.roi_table` output.
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
