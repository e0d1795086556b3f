"""Chapter 8's figures: what each experiment design does to the scores, the ROI intervals it leaves,
and which channel to test first."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mmmlib.bayes.plots import plot_roi_recovery

__all__ = ["SCORE_LABELS", "plot_design_scores", "plot_roi_intervals", "plot_selection"]

#: Axis labels of the scores the figures show.
SCORE_LABELS = {
    "roi_mape": "ROI error (MAPE)",
    "mroi_mape": "marginal-ROI error (MAPE)",
    "regret": "budget regret",
    "roi_coverage": "90% ROI interval coverage",
}


def plot_design_scores(rows: pd.DataFrame, order: list[str], scores=("roi_mape", "mroi_mape", "regret")) -> plt.Figure:
    """One panel per score: each arm's mean over seeds (dot) and the seeds themselves (small
    marks), one colour per world; the dashed line is the model without experiments.

    ``rows`` has columns ``arm`` (labels, in ``order``), ``world`` and the scores.
    """
    worlds = list(dict.fromkeys(rows["world"]))
    colours = dict(zip(worlds, sns.color_palette("colorblind", len(worlds)), strict=True))
    fig, axes = plt.subplots(1, len(scores), figsize=(4.2 * len(scores), 0.9 + 0.45 * len(order)), sharey=True,
                             layout="constrained")
    axes = np.atleast_1d(axes)
    y = {arm: i for i, arm in enumerate(order)}
    for ax, score in zip(axes, scores, strict=True):
        for j, world in enumerate(worlds):
            sub = rows[rows["world"] == world]
            dy = (j - (len(worlds) - 1) / 2) * 0.22
            ax.plot(sub[score], sub["arm"].map(y) + dy, "|", color=colours[world], alpha=0.5, ms=7)
            means = sub.groupby("arm")[score].mean().reindex(order)
            ax.plot(means.to_numpy(), np.arange(len(order)) + dy, "o", color=colours[world], ms=7,
                    label=f"{world} world (mean)")
            ax.axvline(means.iloc[0], color=colours[world], ls="--", lw=1)
        ax.set_xlabel(SCORE_LABELS.get(score, score))
        ax.set_xlim(left=0)
    axes[0].set_yticks(np.arange(len(order)), order)
    axes[0].invert_yaxis()
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle("One experiment per channel: scores by design (dashed: no experiment)")
    return fig


def plot_roi_intervals(rows: pd.DataFrame, truth: pd.Series, title: str) -> plt.Figure:
    """Per channel, each arm's posterior median and 90% interval of ROI (one colour per arm) and
    the true ROI (black cross): :func:`mmmlib.bayes.plots.plot_roi_recovery` on the study's rows.

    ``rows``: one row per arm with ``arm`` and ``roi_median.<c>``, ``roi_lo.<c>``, ``roi_hi.<c>``
    columns; ``truth``: the true ROI by channel.
    """
    channels = list(truth.index)
    tables = {
        row["arm"]: pd.DataFrame(
            {
                "median": [row[f"roi_median.{c}"] for c in channels],
                "lo": [row[f"roi_lo.{c}"] for c in channels],
                "hi": [row[f"roi_hi.{c}"] for c in channels],
                "true": truth.to_numpy(),
            },
            index=channels,
        )
        for _, row in rows.iterrows()
    }
    return plot_roi_recovery(tables, title=title)


def plot_selection(sel: pd.DataFrame, scores=("roi_mape", "regret")) -> plt.Figure:
    """Each strategy's mean score (± one standard error over seeds) against the number of
    experiments run, one panel per score."""
    strategies = list(dict.fromkeys(sel["strategy"]))
    colours = dict(zip(strategies, sns.color_palette("colorblind", len(strategies)), strict=True))
    fig, axes = plt.subplots(1, len(scores), figsize=(4.6 * len(scores), 3.6), layout="constrained")
    axes = np.atleast_1d(axes)
    n = sel["seed"].nunique()
    for ax, score in zip(axes, scores, strict=True):
        for k, strategy in enumerate(strategies):
            g = sel[sel["strategy"] == strategy].groupby("step")[score]
            mean, se = g.mean(), g.std(ddof=1) / np.sqrt(n)
            x = mean.index.to_numpy() + (k - 1) * 0.06
            ax.errorbar(x, mean, yerr=se, marker="o", capsize=3, color=colours[strategy], label=strategy)
        ax.set_xticks(sorted(sel["step"].unique()))
        ax.set_xlabel("experiments run")
        ax.set_ylabel(SCORE_LABELS.get(score, score))
        ax.set_ylim(bottom=0)
    axes[0].legend(title="next channel", fontsize=8)
    fig.suptitle(f"Which channel to test next ({n} worlds; mean ± 1 s.e.)")
    return fig
