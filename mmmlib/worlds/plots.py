"""Chapter 0's figures: spend patterns, carry-over kernels, true response curves, the true decomposition."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mmmlib.plots import channel_palette
from mmmlib.transforms import adstock, carryover
from mmmlib.worlds.media import GroundTruth, SimulatedWorld

__all__ = ["plot_spend", "plot_adstock_kernels", "plot_response_curves", "plot_decomposition"]


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
