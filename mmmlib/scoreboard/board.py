"""Chapter 6's experiments: the scoreboard over the shared worlds.

:func:`record_scoreboard` glues every cell of the scoreboard under ``ch06.<metric>.<world>.<method>``
and its spread over seeds under ``ch06.<metric>_sd.<world>.<method>`` (a method that does not apply,
or gives no interval, is glued as text that says so); :func:`winners` names a method only when it
beats the others beyond the seed-to-seed noise; the plots show each seed as a point. See Chapter 6.
"""

from __future__ import annotations

from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy import stats

from mmmlib.metrics import paired_difference
from mmmlib.runtime import check_profile
from mmmlib.scoreboard.methods import METHODS, METRICS, SWEEPS, SweepSettings, applies
from mmmlib.scoreboard.suite import WORLDS

__all__ = [
    "METHOD_LABELS",
    "WORLD_LABELS",
    "ACCURACY",
    "COSTS",
    "settings_for",
    "record_scoreboard",
    "winners",
    "oracle_floor",
    "paired_difference",
    "signed",
    "spread_text",
    "record_oracle_floor",
    "holdout_vs_roi",
    "plot_scores",
    "plot_costs",
]

METHOD_LABELS = {
    "prior_only": "prior only",
    "regression": "regression",
    "lightweightmmm": "LightweightMMM model (SVI)",
    "bayes_roi": "Bayes + ROI prior (SVI)",
    "bayes_lift": "Bayes + lift tests (SVI)",
    "deepcausal": "DeepCausal",
    "funnel": "U-A-C funnel",
}
WORLD_LABELS = {"easy": "easy", "correlated": "correlated", "time_varying": "time-varying", "funnel": "funnel"}

_UNITS = {
    "roi_mape": ("fraction", ".2f"),
    "share_mae": ("share points", ".3f"),
    "roi_coverage": ("fraction", ".2f"),
    "holdout_mape": ("fraction", ".3f"),
    "regret": ("fraction of achievable uplift", ".2f"),
    "seconds": ("s", ".1f"),
    "peak_rss_mb": ("MB", ".0f"),
}


def settings_for(profile: str, seed: int = 0) -> SweepSettings:
    """The profile's sweep, with world seeds starting at ``seed``."""
    return replace(SWEEPS[check_profile(profile)], first_seed=seed)


ACCURACY = ("roi_mape", "share_mae", "roi_coverage", "holdout_mape", "regret")
COSTS = ("seconds", "peak_rss_mb")


def record_scoreboard(
    results, board: pd.DataFrame, metrics=ACCURACY, prefix: str = "ch06", spread: bool = True
) -> int:
    """Record (and glue) the seed mean of ``metrics`` for every world and method, under
    ``<prefix>.<metric>.<world>.<method>``, and (``spread``) the standard deviation over seeds
    under ``<prefix>.<metric>_sd.<world>.<method>``.

    Cells with no number are recorded as text: ``n/a`` where the method does not apply to the
    world, ``none`` where it gives no interval, ``not scored`` where it makes no forecast or
    budget (their spread is recorded as an empty text).
    Returns the number of cells recorded (means only).
    """
    n = 0
    for metric in metrics:
        label = METRICS[metric][0]
        unit, fmt = _UNITS[metric]
        for world in WORLDS:
            for method in METHODS:
                key = f"{prefix}.{metric}.{world}.{method}"
                meaning = f"{label}, {METHOD_LABELS[method]} on the {WORLD_LABELS[world]} world, mean over seeds"
                sd_key = f"{prefix}.{metric}_sd.{world}.{method}"
                sd_meaning = (f"{label}, {METHOD_LABELS[method]} on the {WORLD_LABELS[world]} world, "
                              "standard deviation over seeds")
                value = sd = np.nan
                if not applies(method, world) or (world, method) not in board.index:
                    results.add(key, "n/a", "not applicable", meaning)
                else:
                    value = board.loc[(world, method), (metric, "mean")]
                    sd = board.loc[(world, method), (metric, "sd")]
                    if np.isnan(value) and metric == "roi_coverage":
                        results.add(key, "none", "no interval", meaning)
                    elif np.isnan(value):
                        results.add(key, "not scored", "no forecast or budget", meaning)
                    else:
                        results.add(key, float(value), unit, meaning, fmt=fmt)
                if spread:
                    if np.isnan(value) or np.isnan(sd):
                        results.add(sd_key, "", "no spread", sd_meaning)
                    else:
                        results.add(sd_key, spread_text(sd, fmt), unit, sd_meaning)
                n += 1
    return n


def _lower_is_better(metric: str, values: pd.Series) -> pd.Series:
    """Scores oriented so that lower is better (coverage: distance from 0.9)."""
    if metric == "roi_coverage":
        return (values - 0.9).abs()
    return -values if METRICS[metric][1] else values


def winners(rows: pd.DataFrame, metric: str, alpha: float = 0.05) -> pd.Series:
    """Per world, the method that wins on ``metric`` beyond the seed-to-seed noise, or a tie.

    The method with the best seed mean is compared with every other method on the same worlds
    by a paired t-test over seeds (two-sided, level ``alpha``); every method it does not beat
    significantly is tied with it. With one seed nothing can be told apart.

    Parameters
    ----------
    rows : DataFrame
        One row per task: ``world``, ``method``, ``seed`` and the metric.
    metric : str
        A key of :data:`mmmlib.scoreboard.methods.METRICS`.
    alpha : float
        Test level.

    Returns
    -------
    Series
        Per world, the winner's label, or ``"tie: A, B"`` listing the tied methods best first.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {tuple(METRICS)}, got {metric!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    out = {}
    for world, group in rows.groupby("world", sort=False):
        table = group.pivot_table(index="seed", columns="method", values=metric)
        table = _lower_is_better(metric, table.dropna(axis=1, how="all"))
        if table.empty:
            continue
        order = table.mean().sort_values().index
        best, tied = order[0], [order[0]]
        for other in order[1:]:
            pair = table[[best, other]].dropna()
            diff = pair[other] - pair[best]
            if len(pair) < 2 or not np.isfinite(diff).all():
                tied.append(other)
                continue
            if diff.std(ddof=1) == 0:
                significant = diff.mean() > 0
            else:
                significant = stats.ttest_rel(pair[other], pair[best]).pvalue < alpha and diff.mean() > 0
            if not significant:
                tied.append(other)
        labels = [METHOD_LABELS[m] for m in tied]
        out[world] = labels[0] if len(labels) == 1 else "tie: " + ", ".join(labels)
    return pd.Series(out, name=metric)


def spread_text(sd: float, fmt: str = ".2f") -> str:
    """A spread as the book prints it after its mean: ``± 0.05``; empty when there is none (one
    seed).

    Examples
    --------
    >>> spread_text(0.0512), spread_text(float("nan"))
    ('± 0.05', '')
    """
    return "" if not np.isfinite(sd) else "± " + format(float(sd), fmt)


def signed(x: float, digits: int = 2) -> float:
    """``x`` rounded to ``digits``, with a rounded zero made positive, so that a signed display
    (``+.2f``) never shows ``-0.00``.

    Examples
    --------
    >>> format(signed(-0.001), "+.2f"), format(signed(-0.126), "+.2f")
    ('+0.00', '-0.13')
    """
    return float(np.round(x, digits)) + 0.0


ORACLE_WORLDS = ("easy", "correlated")
"""The worlds whose data-generating model an oracle can fit: constant effects through known
transforms (the time-varying world's drifting effects and the funnel world are not of that form)."""


def oracle_floor(settings: SweepSettings) -> pd.DataFrame:
    """ROI error and 90% coverage of the oracle (:func:`mmmlib.bayes.evaluate.oracle_roi`: true transforms,
    least squares, positive effects, no prior) on the training weeks of each seed of
    :data:`ORACLE_WORLDS`, scored against the same training-window truth as the methods on the board.

    With a flat prior its intervals are honest but its median is noisy where a channel's spend
    barely varies, so across seeds it is a reference for what the data alone identify, not a
    lower bound on the ROI error of a method with an informative prior.

    Returns
    -------
    DataFrame
        One row per (world, seed): ``roi_mape``, ``roi_coverage``.
    """
    from mmmlib.bayes.evaluate import oracle_roi
    from mmmlib.scoreboard.suite import make_world

    rows = []
    for world_name in ORACLE_WORLDS:
        if world_name not in settings.worlds:
            continue
        for seed in range(settings.first_seed, settings.first_seed + settings.seeds):
            world = make_world(world_name, seed=seed, holdout_weeks=settings.holdout_weeks)
            train = world.data.n_times - world.holdout_weeks
            table = oracle_roi(world.native, seed=seed, weeks=train)
            truth = world.roi.reindex(table.index)
            if not np.allclose(table["true"], truth):
                raise RuntimeError(f"oracle and scoreboard disagree on the {world_name} world's true ROI")
            rows.append({"world": world_name, "seed": seed, "roi_mape": float(table["abs_pct_error"].mean()),
                         "roi_coverage": float(table["covered"].mean())})
    return pd.DataFrame(rows)


def record_oracle_floor(results, floor: pd.DataFrame, prefix: str = "ch06") -> None:
    """Record the oracle's mean and seed sd of ROI error and coverage under
    ``<prefix>.<metric>.<world>.oracle`` and ``<prefix>.<metric>_sd.<world>.oracle`` (``n/a``
    for the worlds it cannot fit)."""
    for metric in ("roi_mape", "roi_coverage"):
        unit, fmt = _UNITS[metric]
        label = METRICS[metric][0]
        for world in WORLDS:
            key, sd_key = f"{prefix}.{metric}.{world}.oracle", f"{prefix}.{metric}_sd.{world}.oracle"
            meaning = f"{label} of the oracle (true transforms) on the {WORLD_LABELS[world]} world"
            values = floor.loc[floor["world"] == world, metric] if len(floor) else pd.Series(dtype=float)
            if values.empty:
                results.add(key, "n/a", "not applicable", meaning + ", mean over seeds")
                results.add(sd_key, "", "no spread", meaning + ", sd over seeds")
            else:
                results.add(key, float(values.mean()), unit, meaning + ", mean over seeds", fmt=fmt)
                sd = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
                results.add(sd_key, spread_text(sd, fmt), unit, meaning + ", sd over seeds")


def holdout_vs_roi(rows: pd.DataFrame) -> dict[str, float]:
    """Can a forecast score pick the method that attributes best? Rank correlations, over every
    (world, seed), between the methods' holdout error and their ROI error, and how often the
    method with the lowest holdout error also has the lowest ROI error.
    """
    rhos, hits, n = [], 0, 0
    for _, group in rows.groupby(["world", "seed"]):
        if len(group) < 3:
            continue
        rho = stats.spearmanr(group["holdout_mape"], group["roi_mape"]).statistic
        rhos.append(rho)
        hits += int(group["holdout_mape"].idxmin() == group["roi_mape"].idxmin())
        n += 1
    if not n:
        raise ValueError("holdout_vs_roi needs at least three methods per world and seed")
    return {"median_rho": float(np.median(rhos)), "picks_best": hits / n, "cases": n}


# -------------------------------------------------------------------- figures
def _palette() -> dict[str, tuple[float, float, float]]:
    return dict(zip([METHOD_LABELS[m] for m in METHODS], sns.color_palette("colorblind", len(METHODS)), strict=True))


def _labelled(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.assign(method=rows["method"].map(METHOD_LABELS), world=rows["world"].map(WORLD_LABELS))


def plot_scores(rows: pd.DataFrame) -> plt.Figure:
    """Four panels (ROI error, interval coverage, holdout error, budget regret): one point per
    seed, a bar for the mean, worlds on the x-axis, one colour per method."""
    data = _labelled(rows)
    worlds = [WORLD_LABELS[w] for w in WORLDS if w in set(rows["world"])]
    methods = [METHOD_LABELS[m] for m in METHODS if m in set(rows["method"])]
    panels = [("roi_mape", "ROI error (MAPE)\nlower is better", None),
              ("roi_coverage", "90% ROI intervals: share covering the truth\nnearer the dashed 0.9 is better", 0.9),
              ("holdout_mape", "holdout sales error (MAPE)\nlower is better", None),
              ("regret", "budget regret\n0 = true optimum, 1 = no better than not moving", 1.0)]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), layout="constrained", sharex=True)
    for ax, (metric, title, ref) in zip(axes.flat, panels, strict=True):
        sub = data.dropna(subset=[metric])
        sns.barplot(sub, x="world", y=metric, hue="method", order=worlds, hue_order=methods, palette=_palette(),
                    errorbar=None, alpha=0.35, ax=ax, legend=False)
        sns.stripplot(sub, x="world", y=metric, hue="method", order=worlds, hue_order=methods, palette=_palette(),
                      dodge=True, size=4, ax=ax, legend=ax is axes.flat[0])
        if ref is not None:
            ax.axhline(ref, color="0.3", ls="--", lw=1)
        ax.set(title=title, xlabel="", ylabel="")
    axes.flat[0].legend(title="", fontsize=8, ncols=2)
    fig.suptitle("Every method on the same worlds (points: seeds; bars: the mean)")
    return fig


def plot_costs(rows: pd.DataFrame) -> plt.Figure:
    """Fit time and peak memory per method (one point per task)."""
    data = _labelled(rows)
    order = [METHOD_LABELS[m] for m in METHODS if m in set(rows["method"])]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained", sharey=True)
    for ax, (metric, title) in zip(axes, [("seconds", "fit time (s, log scale)"),
                                          ("peak_rss_mb", "peak memory of the process (MB)")], strict=True):
        sns.stripplot(data, y="method", x=metric, hue="method", order=order, palette=_palette(), ax=ax,
                      legend=False, size=5, alpha=0.8)
        ax.set(title=title, xlabel="", ylabel="")
    axes[0].set_xscale("log")
    fig.suptitle("What each fit costs on one CPU thread")
    return fig
