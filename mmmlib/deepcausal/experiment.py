"""Chapter 3's experiments: DeepCausal on geo panels, its graph, ablations and the peers.

Every function returns a plain table (or a figure), so the chapter holds no model code.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mmmlib.deepcausal.graph import GraphFit, edge_scores, notears, spend_deviations
from mmmlib.deepcausal.model import DeepCausalConfig, DeepCausalFit, fit_deepcausal
from mmmlib.deepcausal.panel import PanelSplit, naive_forecasts, pooled_r2, split_panel, within_r2
from mmmlib.deepcausal.world import GeoGraphConfig, GeoGraphWorld, simulate_geo_graph
from mmmlib.metrics import rmse
from mmmlib.optimize import optimize_budget

__all__ = [
    "Scale",
    "SCALES",
    "holdout_weeks",
    "prepare",
    "forecast_scores",
    "score_fit",
    "attribution_table",
    "graph_recovery",
    "graph_vs_panel_size",
    "ablations",
    "budget_check",
    "peer_scores",
    "national_bayes",
    "national_r2",
    "naive_rows",
    "plot_holdout",
    "plot_beta_paths",
    "plot_graphs",
    "plot_recovery_vs_size",
]


@dataclass(frozen=True)
class Scale:
    """Sizes of one profile of the chapter."""

    world: GeoGraphConfig
    model: DeepCausalConfig
    graph_seeds: int
    peer_epochs: int | None
    peer_hidden: int | None
    size_grid: tuple[int, ...]


SCALES = {
    "quick": Scale(
        world=GeoGraphConfig(n_regions=20, n_weeks=104),
        model=DeepCausalConfig(hidden=32, epochs=150),
        graph_seeds=5,
        peer_epochs=30,
        peer_hidden=32,
        size_grid=(1, 2, 5, 20),
    ),
    "full": Scale(
        world=GeoGraphConfig(n_regions=50, n_weeks=104),
        model=DeepCausalConfig(hidden=64, epochs=1000),
        graph_seeds=10,
        peer_epochs=None,
        peer_hidden=None,
        size_grid=(1, 2, 3, 5, 10, 20, 50),
    ),
}


def holdout_weeks(n_weeks: int) -> int:
    """The source's holdout: ``int(0.12 * T)`` final weeks (12 of 104)."""
    return int(0.12 * n_weeks)


def prepare(world: GeoGraphWorld) -> PanelSplit:
    """Split and scale a world's panel with the source's holdout length."""
    return split_panel(world.media, world.controls, world.sales, holdout_weeks(world.config.n_weeks))


def forecast_scores(prediction: np.ndarray, world: GeoGraphWorld, train_weeks: int, label: str) -> dict:
    """Holdout and training scores of a (R, T) prediction on the original sales scale."""
    ho, tr = slice(train_weeks, None), slice(0, train_weeks)
    obs = world.sales
    return {
        "model": label,
        "holdout R² (pooled)": pooled_r2(prediction[:, ho], obs[:, ho]),
        "holdout R² (within region)": within_r2(prediction[:, ho], obs[:, ho]),
        "holdout RMSE": rmse(prediction[:, ho], obs[:, ho]),
        "train R² (within region)": within_r2(prediction[:, tr], obs[:, tr]),
    }


def score_fit(fit: DeepCausalFit, world: GeoGraphWorld, label: str) -> dict:
    """Forecast scores plus attribution and coefficient recovery of a fit."""
    row = forecast_scores(fit.prediction, world, fit.split.train_weeks, label)
    tr = fit.split.train
    est = fit.parts["media"][:, tr].sum(axis=(0, 1))
    tru = world.truth.contributions[:, tr].sum(axis=(0, 1))
    row["contribution error (median |rel.|)"] = float(np.median(np.abs(est / tru - 1)))
    row["media share (model)"] = float(est.sum() / fit.prediction[:, tr].sum())
    row["media share (truth)"] = float(tru.sum() / world.truth.expected[:, tr].sum())
    # Does beta follow the drift? Correlation over weeks of the region-averaged coefficient.
    est_path = fit.beta.mean(axis=0)
    tru_path = world.truth.beta.mean(axis=0)
    cors = [np.corrcoef(est_path[:, c], tru_path[:, c])[0, 1] if est_path[:, c].std() > 1e-9 else np.nan
            for c in range(est_path.shape[1])]
    row["β drift correlation (median)"] = float(np.nanmedian(cors)) if np.any(np.isfinite(cors)) else np.nan
    row["additivity gap"] = fit.additivity_gap()
    return row


def naive_rows(world: GeoGraphWorld, split: PanelSplit) -> list[dict]:
    """Scores of the per-region-mean and last-4-weeks forecasts (holdout only)."""
    rows = []
    for label, forecast in naive_forecasts(world.sales, split.train_weeks).items():
        full = np.concatenate([np.full((world.sales.shape[0], split.train_weeks), np.nan), forecast], axis=1)
        ho = slice(split.train_weeks, None)
        rows.append({
            "model": f"naive: {label}",
            "holdout R² (pooled)": pooled_r2(full[:, ho], world.sales[:, ho]),
            "holdout R² (within region)": within_r2(full[:, ho], world.sales[:, ho]),
            "holdout RMSE": rmse(full[:, ho], world.sales[:, ho]),
        })
    oracle = world.truth.expected
    rows.append({
        "model": "oracle: true expected sales",
        "holdout R² (pooled)": pooled_r2(oracle[:, ho], world.sales[:, ho]),
        "holdout R² (within region)": within_r2(oracle[:, ho], world.sales[:, ho]),
        "holdout RMSE": rmse(oracle[:, ho], world.sales[:, ho]),
    })
    return rows


def attribution_table(fit: DeepCausalFit, world: GeoGraphWorld) -> pd.DataFrame:
    """Per channel: true and estimated share of training-week sales, and the relative error."""
    tr = fit.split.train
    est = fit.parts["media"][:, tr].sum(axis=(0, 1))
    tru = world.truth.contributions[:, tr].sum(axis=(0, 1))
    total = world.sales[:, tr].sum()
    return pd.DataFrame(
        {"true share": tru / total, "estimated share": est / total, "relative error": est / tru - 1},
        index=pd.Index(world.channels, name="channel"),
    )


def graph_recovery(
    scale: Scale, seed: int = 0, lambda1: float = 0.02, threshold: float = 0.2
) -> tuple[pd.DataFrame, dict[str, GraphFit]]:
    """NOTEARS on the spends of ``scale.graph_seeds`` worlds, lag-one and contemporaneous.

    Returns one row per (seed, model) with SHD, precision, recall, F1 and the seconds taken,
    and both fits on the first world (keyed by model label).
    """
    rows, first = [], {}
    for s in range(seed, seed + scale.graph_seeds):
        world = simulate_geo_graph(scale.world, seed=s)
        train = world.config.n_weeks - holdout_weeks(world.config.n_weeks)
        z = spend_deviations(world.media, train)[:, :train]
        for lag, label in ((1, "NOTEARS, lag one (ours)"), (0, "NOTEARS, same week")):
            start = time.perf_counter()
            g = notears(z, world.channels, lag=lag, lambda1=lambda1, threshold=threshold)
            rows.append({"seed": s, "model": label, **edge_scores(g.weights, world.truth.adjacency),
                         "seconds": time.perf_counter() - start})
            first.setdefault(label, g)
    return pd.DataFrame(rows), first


def graph_vs_panel_size(scale: Scale, seed: int = 0) -> pd.DataFrame:
    """Lag-one NOTEARS recovery as the number of regions grows (same weeks), over seeds."""
    rows = []
    for n_regions in scale.size_grid:
        cfg = replace(scale.world, n_regions=max(n_regions, 2))
        for s in range(seed, seed + scale.graph_seeds):
            world = simulate_geo_graph(cfg, seed=s)
            train = cfg.n_weeks - holdout_weeks(cfg.n_weeks)
            z = spend_deviations(world.media[:n_regions], train)[:, :train]
            g = notears(z, world.channels, lag=1)
            rows.append({"regions": n_regions, "seed": s, **edge_scores(g.weights, world.truth.adjacency)})
    return pd.DataFrame(rows)


def ablations(world: GeoGraphWorld, split: PanelSplit, base: DeepCausalConfig, device="cpu") -> tuple[pd.DataFrame, dict]:
    """The model and its variants on one world: static coefficients, GRU fed with spend, the source's mixing layer."""
    variants = {
        "DeepCausal (ours): GRU on exogenous inputs": base,
        "static coefficients (no GRU)": replace(base, coefficients="static"),
        "GRU also reads spend (as the source)": replace(base, gru_inputs="media"),
        "with the source's triangular mixing layer": replace(base, mixing="deepcausal"),
    }
    rows, fits = [], {}
    for label, cfg in variants.items():
        start = time.perf_counter()
        fit = fit_deepcausal(split, world.channels, cfg, device=device, progress=False)
        row = score_fit(fit, world, label)
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        fits[label] = fit
    return pd.DataFrame(rows), fits


def budget_check(fit: DeepCausalFit, world: GeoGraphWorld, bounds_pct: float = 0.2) -> tuple[pd.DataFrame, dict]:
    """Optimise next quarter's channel budget with the model's response curves; score it on the true curves.

    Spend per channel is national weekly spend; a channel's spend is split over regions in
    proportion to its usual (training mean) spend, so a national multiple ``m_c`` is the
    same multiple in every region. Returns the allocation table and the regret summary.
    """
    usual = fit.split.mean_spend.sum(axis=0)  # national usual weekly spend (C,)
    weeks = slice(-13, None)

    def model_curve(spend: np.ndarray) -> float:
        return float(fit.response(spend / usual, weeks=weeks).sum())

    true_level = world.truth.mean_spend.sum(axis=0)  # the simulator's reference spend

    def true_curve(spend: np.ndarray) -> float:
        return float(world.truth.response(spend / true_level, weeks=weeks).sum())

    chosen = optimize_budget(model_curve, usual, world.channels, bounds_pct=bounds_pct)
    best = optimize_budget(true_curve, usual, world.channels, bounds_pct=bounds_pct)
    achievable = true_curve(best.spend) - true_curve(usual)
    got = true_curve(chosen.spend) - true_curve(usual)
    table = chosen.table().assign(**{"optimal (truth)": best.spend})
    summary = {
        "uplift promised": chosen.uplift_pct,
        "uplift realised": got / true_curve(usual),
        "uplift achievable": achievable / true_curve(usual),
        "regret": (achievable - got) / achievable if achievable > 0 else 0.0,
    }
    return table, summary


def peer_scores(world: GeoGraphWorld, split: PanelSplit, scale: Scale, seed: int = 42) -> tuple[dict, dict, object]:
    """Run the ``deepcausalmmm`` package on the same panel and split; forecast and graph scores."""
    from mmmlib.deepcausal.peer import PEER_VERSION, run_deepcausalmmm

    run = run_deepcausalmmm(world.media, world.controls, world.sales, holdout_weeks(world.config.n_weeks),
                            epochs=scale.peer_epochs, hidden=scale.peer_hidden, dag_mode="notears", seed=seed)
    row = forecast_scores(run.prediction, world, run.train_weeks, f"deepcausalmmm {PEER_VERSION} (peer)")
    row["media share (model)"] = run.media_share
    row["seconds"] = run.seconds
    graph = {"model": f"deepcausalmmm {PEER_VERSION}, its NOTEARS mode",
             **edge_scores(run.adjacency_thresholded, world.truth.adjacency)}
    return row, graph, run


def national_bayes(world: GeoGraphWorld, split: PanelSplit, svi_steps: int = 3000, seed: int = 0) -> dict:
    """Chapter 1's Bayesian MMM on the national sums (SVI), scored on the national holdout.

    Also returns the national holdout R² of the sum of a DeepCausal prediction for comparison
    (the caller adds it).
    """
    from mmmlib.bayes.model import BayesianMMM
    from mmmlib.data import MediaDataset

    n_t = world.sales.shape[1]
    frame = pd.DataFrame({"date": pd.date_range("2023-01-02", periods=n_t, freq="W-MON"),
                          "sales": world.sales.sum(axis=0)})
    for c, name in enumerate(world.channels):
        frame[f"spend_{name}"] = world.media[:, :, c].sum(axis=0)
    for k in range(world.controls.shape[2]):
        frame[f"control_{k}"] = world.controls[:, :, k].mean(axis=0)
    spend = tuple(f"spend_{n}" for n in world.channels)
    controls = tuple(f"control_{k}" for k in range(world.controls.shape[2]))

    def dataset(rows: slice) -> MediaDataset:
        return MediaDataset(frame.iloc[rows].reset_index(drop=True), "date", spend, spend, "sales", controls,
                            channels=world.channels, name="national")

    train, test = dataset(split.train), dataset(split.holdout)
    mmm = BayesianMMM(model="hill_adstock")
    start = time.perf_counter()
    mmm.fit(train, inference="svi", svi_steps=svi_steps, seed=seed)
    seconds = time.perf_counter() - start
    pred = mmm.predict(test, history=train)["mean"].to_numpy()
    obs = frame["sales"].to_numpy()[split.holdout]
    est = mmm.contribution_draws().sum(axis=1).mean(axis=0)  # (C,) posterior-mean totals over training
    tr = split.train
    tru = world.truth.contributions[:, tr].sum(axis=(0, 1))
    return {
        "model": "chapter 1 Bayesian MMM, national sums (SVI)",
        "national holdout R²": float(1 - np.sum((obs - pred) ** 2) / np.sum((obs - obs.mean()) ** 2)),
        "contribution error (median |rel.|)": float(np.median(np.abs(est / tru - 1))),
        "media share (model)": float(est.sum() / world.sales[:, tr].sum()),
        "seconds": seconds,
    }


def national_r2(prediction: np.ndarray, world: GeoGraphWorld, train_weeks: int) -> float:
    """Holdout :math:`R^2` of the national weekly sum of a (R, T) prediction."""
    pred = prediction[:, train_weeks:].sum(axis=0)
    obs = world.sales[:, train_weeks:].sum(axis=0)
    return float(1 - np.sum((obs - pred) ** 2) / np.sum((obs - obs.mean()) ** 2))


# ------------------------------------------------------------------ figures
def plot_holdout(world: GeoGraphWorld, predictions: dict[str, np.ndarray], train_weeks: int,
                 regions: Sequence[int] = (0, 1, 2, 3)) -> plt.Figure:
    """Observed sales and each model's prediction for a few regions, holdout shaded."""
    cols = min(2, len(regions))  # at most two panels a row: read at the page's width
    rows = int(np.ceil(len(regions) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.0 * rows), sharex=True, squeeze=False,
                             layout="constrained")
    axes = axes.ravel()
    weeks = np.arange(world.sales.shape[1])
    for ax, r in zip(axes, regions, strict=False):
        ax.axvspan(train_weeks - 0.5, weeks[-1] + 0.5, color="0.92", zorder=0)
        ax.plot(weeks, world.sales[r], color="black", lw=1.2, label="observed")
        for label, pred in predictions.items():
            ax.plot(weeks, pred[r], lw=1.1, label=label)
        ax.set_title(f"region {world.regions[r]}")
        ax.set_xlabel("week")
    for ax in axes[len(regions):]:
        ax.set_visible(False)
    for ax in axes[::cols]:
        ax.set_ylabel("sales")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("Weekly sales and predictions (grey: the 12-week holdout)")
    return fig


def plot_beta_paths(fit: DeepCausalFit, world: GeoGraphWorld, channels: Sequence[str] | None = None) -> plt.Figure:
    """Region-averaged media coefficient over time, estimated against true, one panel per channel.

    Both are shown relative to their own mean, so the panel reads as "does the drift follow".
    """
    channels = list(channels or world.channels)
    n = len(channels)
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 2.3 * rows), sharex=True, squeeze=False,
                             layout="constrained")
    for ax, ch in zip(axes.ravel(), channels, strict=False):
        c = world.channels.index(ch)
        est = fit.beta[:, :, c].mean(axis=0)
        tru = world.truth.beta[:, :, c].mean(axis=0)
        ax.plot(tru / tru.mean(), color="black", lw=1.5, label="truth")
        ax.plot(est / est.mean(), lw=1.2, label="DeepCausal")
        ax.axvline(fit.split.train_weeks - 0.5, color="0.6", lw=0.8, ls="--")
        ax.set_title(ch)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Media coefficient over weeks, relative to its mean (dashed: start of the holdout)")
    return fig


def plot_graphs(truth: np.ndarray, learned: dict[str, np.ndarray], channels: Sequence[str]) -> plt.Figure:
    """Adjacency heat maps: the true spend graph and each learned one (rows: parent, columns: child)."""
    panels = {"truth": truth, **learned}
    cols = min(2, len(panels))
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.2 * rows), squeeze=False, layout="constrained")
    axes = axes.ravel()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    vmax = max(float(np.max(np.abs(m))) for m in panels.values()) or 1.0
    for ax, (label, m) in zip(axes, panels.items(), strict=False):
        sns.heatmap(pd.DataFrame(m, index=channels, columns=channels), ax=ax, cmap="RdBu_r", center=0,
                    vmin=-vmax, vmax=vmax, cbar=False, annot=True, mask=(m == 0), fmt=".2f",
                    annot_kws={"size": 7}, linewidths=0.5, linecolor="0.9")
        ax.set_facecolor("white")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("child")
        ax.set_ylabel("parent")
    fig.suptitle("Spend graphs: edge weight from row (parent) to column (child); blank = no edge")
    return fig


def plot_recovery_vs_size(table: pd.DataFrame) -> plt.Figure:
    """Edge F1 and SHD of lag-one NOTEARS against the number of regions (mean and seeds)."""
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.2), layout="constrained")
    for ax, metric in zip(axes, ("f1", "shd"), strict=True):
        sns.stripplot(data=table, x="regions", y=metric, ax=ax, color="0.5", alpha=0.6, size=4)
        sns.pointplot(data=table, x="regions", y=metric, ax=ax, color="C0", errorbar=None)
        ax.set_ylabel({"f1": "edge F1", "shd": "structural Hamming distance"}[metric])
        ax.set_xlabel("regions in the panel")
    fig.suptitle("How many regions the graph needs (one dot per seed)")
    return fig
