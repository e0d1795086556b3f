"""Chapter 6's experiments: the scoreboard over the shared worlds, and the book's runtime table.

:func:`record_scoreboard` glues every cell of the scoreboard under ``ch06.<metric>.<world>.<method>``
(a method that does not apply, or gives no interval, is glued as text that says so), the plots
show each seed as a point, and :func:`book_runtimes` reads how long every chapter took from
the executed chapters' results files and the recorded quick-profile timings. See Chapter 6.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy import stats

from mmmlib.benchmark import METHODS, METRICS, PROFILES, SweepSettings, applies
from mmmlib.data import DATA_FILES_READ
from mmmlib.simulate.suite import WORLDS

__all__ = [
    "METHOD_LABELS",
    "WORLD_LABELS",
    "ACCURACY",
    "COSTS",
    "settings_for",
    "record_scoreboard",
    "best_by_world",
    "holdout_vs_roi",
    "book_runtimes",
    "plot_scores",
    "plot_costs",
    "plot_runtimes",
]

METHOD_LABELS = {
    "regression": "regression",
    "lightweightmmm": "LightweightMMM",
    "bayes_roi": "Bayes + ROI prior",
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
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {tuple(PROFILES)}, got {profile!r}")
    return replace(PROFILES[profile], first_seed=seed)


ACCURACY = ("roi_mape", "share_mae", "roi_coverage", "holdout_mape", "regret")
COSTS = ("seconds", "peak_rss_mb")


def record_scoreboard(results, board: pd.DataFrame, metrics=ACCURACY, prefix: str = "ch06") -> int:
    """Record (and glue) the seed mean of ``metrics`` for every world and method, under
    ``<prefix>.<metric>.<world>.<method>``.

    Cells with no number are recorded as text: ``n/a`` where the method does not apply to the
    world, ``none`` where it gives no interval. Returns the number of cells recorded.
    """
    n = 0
    for metric in metrics:
        label = METRICS[metric][0]
        unit, fmt = _UNITS[metric]
        for world in WORLDS:
            for method in METHODS:
                key = f"{prefix}.{metric}.{world}.{method}"
                meaning = f"{label}, {METHOD_LABELS[method]} on the {WORLD_LABELS[world]} world, mean over seeds"
                if not applies(method, world) or (world, method) not in board.index:
                    results.add(key, "n/a", "not applicable", meaning)
                else:
                    value = board.loc[(world, method), (metric, "mean")]
                    if np.isnan(value):
                        results.add(key, "none", "no interval", meaning)
                    else:
                        results.add(key, float(value), unit, meaning, fmt=fmt)
                n += 1
    return n


def best_by_world(board: pd.DataFrame, metric: str) -> pd.Series:
    """Per world, the method with the best seed mean of ``metric`` (coverage: nearest 0.9)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {tuple(METRICS)}, got {metric!r}")
    means = board[(metric, "mean")].dropna()
    if metric == "roi_coverage":
        means = -(means - 0.9).abs()
    elif not METRICS[metric][1]:
        means = -means
    return means.groupby(level="world", sort=False).idxmax().map(lambda wm: wm[1])


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


def book_runtimes(results_dir: str | Path, quick_file: str | Path, exclude: str = "") -> pd.DataFrame:
    """Wall time of every executed chapter, first cell to last: the full profile from its results
    file, the quick profile from ``quick_file`` (written by ``benchmarks/bench_book.py``; missing:
    not measured).

    Both files become inputs of the chapter that reads them (a new timing makes it stale), so
    the reading chapter ``exclude`` s its own results file.
    """
    rows = {}
    for path in sorted(Path(results_dir).glob("[0-9][0-9]_*.json")):
        if path.stem == exclude:
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        prov = doc.get("provenance", {})
        if prov.get("parameters", {}).get("profile") != "full":
            continue
        DATA_FILES_READ.add(str(path.resolve()))
        hw = prov.get("hardware", {})
        rows[doc["chapter"]] = {"full_s": prov.get("wall_time_s", np.nan), "cores": hw.get("cores"),
                                "gpu": hw.get("gpu", "none")}
    quick = Path(quick_file)
    if quick.is_file():
        DATA_FILES_READ.add(str(quick.resolve()))
        for chapter, seconds in json.loads(quick.read_text(encoding="utf-8"))["quick_s"].items():
            rows.setdefault(chapter, {"full_s": np.nan, "cores": None, "gpu": "none"})["quick_s"] = seconds
    table = pd.DataFrame.from_dict(rows, orient="index")
    if "quick_s" not in table:
        table["quick_s"] = np.nan
    table.index.name = "chapter"
    return table.sort_index()[["quick_s", "full_s", "cores", "gpu"]]


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


def plot_runtimes(table: pd.DataFrame) -> plt.Figure:
    """Minutes per chapter at the quick and full profiles."""
    long = (table[["quick_s", "full_s"]] / 60.0).rename(columns={"quick_s": "quick", "full_s": "full"})
    long = long.reset_index().melt(id_vars="chapter", var_name="profile", value_name="minutes").dropna()
    fig, ax = plt.subplots(figsize=(8, 3.8), layout="constrained")
    sns.barplot(long, y="chapter", x="minutes", hue="profile", palette={"quick": "#9ecae1", "full": "#08519c"}, ax=ax)
    ax.set(xlabel="wall time (minutes, 2 CPU cores)", ylabel="", title="How long each chapter takes to execute")
    for container in ax.containers:
        ax.bar_label(container, fmt="%.1f", fontsize=8, padding=2)
    return fig
