"""A report on a model fitted to a user's data: figures, tables, diagnostics, a budget, the posterior.

Nothing here needs a simulated truth: these are the views a practitioner reads after fitting
:class:`~mmmlib.bayes.model.BayesianMMM` to their own CSV. :func:`write_report` writes a
self-contained folder (``report.md`` with its figures, the tables as CSV, the posterior as ArviZ
NetCDF and the fitted model) through a staging folder, so a failure leaves no half-written report.
``python -m mmmlib fit`` (:mod:`mmmlib.cli`) calls it.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mmmlib.bayes.model import PRIOR_DOMINATED_SD_RATIO, _weekly_spend
from mmmlib.optimize import model_response, optimize_budget
from mmmlib.plots import channel_palette, set_theme

__all__ = [
    "BudgetPlan",
    "budget_plan",
    "diagnostics_verdict",
    "prior_warnings",
    "plot_fit",
    "plot_response_curves",
    "plot_roi",
    "write_report",
]


# ------------------------------------------------------------------ figures
def plot_fit(mmm, level: float = 0.9) -> plt.Figure:
    """Observed target against the fitted mean function (national sum) over the training periods,
    with the central ``level`` band of the mean and of new observations."""
    data = mmm.data_
    pred = mmm.predict(data, level=level)
    observed = data.target_array().reshape(data.n_times, -1).sum(axis=1)
    fig, ax = plt.subplots(figsize=(9.0, 3.8))
    ax.fill_between(pred.index, pred["lo_obs"], pred["hi_obs"], color="0.88", label=f"{level:.0%} band, new data")
    ax.fill_between(pred.index, pred["lo"], pred["hi"], color="C0", alpha=0.35, label=f"{level:.0%} band, mean")
    ax.plot(pred.index, pred["mean"], color="C0", lw=1.4, label="fitted mean")
    ax.plot(pred.index, observed, color="black", lw=1.0, label="observed")
    ax.set(xlabel="", ylabel=data.target, title="Fit over time")
    ax.legend(fontsize=8, ncol=4, loc="upper left")
    return fig


def plot_roi(mmm, level: float = 0.9) -> plt.Figure:
    """Posterior ROI and contribution share per channel: median and central ``level`` interval."""
    roi, share = mmm.roi(level), mmm.contribution_share(level)
    channels = list(roi.index)
    pal = channel_palette(channels)
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 0.5 * len(channels) + 1.6), sharey=True)
    for ax, table, title in ((axes[0], roi, "ROI"), (axes[1], share, "share of the media effect")):
        y = np.arange(len(channels))
        for i, ch in enumerate(channels):
            ax.hlines(y[i], table.loc[ch, "lo"], table.loc[ch, "hi"], color=pal[ch], lw=4)
            ax.plot(table.loc[ch, "median"], y[i], "o", color="black", ms=5)
        ax.set_yticks(y, channels)
        ax.set_title(f"{title} (median, {level:.0%} interval)")
    axes[0].axvline(1.0, color="0.5", lw=0.8, ls="--")
    axes[0].invert_yaxis()
    return fig


def plot_response_curves(mmm, level: float = 0.9) -> plt.Figure:
    """Long-run weekly contribution of a constant weekly spend per channel (median and band); the
    dot marks the channel's average spend in the data."""
    curves = mmm.response_curves()
    channels = list(dict.fromkeys(curves["channel"]))
    pal = channel_palette(channels)
    cols = min(2, len(channels))
    rows = math.ceil(len(channels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 2.8 * rows), squeeze=False)
    mean_spend = _weekly_spend(mmm.data_.spend_array()).mean(axis=0)
    for k, (ax, ch) in enumerate(zip(axes.ravel(), channels, strict=False)):
        c = curves[curves["channel"] == ch]
        ax.fill_between(c["spend"], c["lo"], c["hi"], color=pal[ch], alpha=0.3)
        ax.plot(c["spend"], c["mean"], color=pal[ch], lw=1.8)
        at = float(mmm.response_draws(ch, np.array([mean_spend[k]]))[:, 0].mean())
        ax.plot(mean_spend[k], at, "o", color="black", ms=4)
        ax.set(title=ch, xlabel="weekly spend", ylabel="weekly contribution")
    for ax in axes.ravel()[len(channels):]:
        ax.set_visible(False)
    fig.suptitle(f"Response curves (mean, {level:.0%} band; dot: average spend)")
    return fig


# -------------------------------------------------------------- diagnostics
def diagnostics_verdict(diagnostics) -> str:
    """A plain-language verdict on a fit's :class:`~mmmlib.bayes.model.Diagnostics`."""
    if diagnostics.inference == "svi":
        return ("Fitted by variational inference: a fast Gaussian approximation whose intervals are often too "
                "narrow. Refit with --inference nuts before quoting intervals.")
    problems = []
    if not diagnostics.max_rhat <= 1.01:
        problems.append(f"the chains disagree (largest R-hat {diagnostics.max_rhat:.3f} > 1.01)")
    if not diagnostics.min_ess >= 400:
        problems.append(f"few effective draws (smallest ESS {diagnostics.min_ess:.0f} < 400)")
    if diagnostics.divergence_rate >= 0.01:
        problems.append(f"{diagnostics.divergences} divergent transitions ({diagnostics.divergence_rate:.1%})")
    if diagnostics.tree_depth_hits:
        problems.append(f"{diagnostics.tree_depth_hits} transitions hit the tree-depth limit")
    if not problems:
        return (f"NUTS converged: largest R-hat {diagnostics.max_rhat:.3f}, smallest ESS {diagnostics.min_ess:.0f}, "
                f"{diagnostics.divergences} divergent transitions. The intervals can be read as posterior intervals.")
    return ("Do not trust these intervals yet: " + "; ".join(problems) +
            ". Run more warm-up and draws, or a higher target acceptance.")


def prior_warnings(mmm, contraction: pd.DataFrame | None = None) -> list[str]:
    """Plain-language warnings when the prior, not the data, sets a channel's ROI.

    One warning per channel whose posterior spread of log ROI is above
    :data:`~mmmlib.bayes.model.PRIOR_DOMINATED_SD_RATIO` of its prior's
    (:meth:`~mmmlib.bayes.model.BayesianMMM.roi_contraction`), and one when every channel is: the
    usual sign that the prior sits in the wrong units (a target in conversions read as revenue,
    media scaled 0-1 used as spend).
    """
    table = mmm.roi_contraction() if contraction is None else contraction
    dominated = list(table.index[table["prior_dominated"]])
    out = [f"channel {ch!r}: the data narrowed its ROI prior only to {table.loc[ch, 'sd_ratio']:.0%} of its spread "
           f"(threshold {PRIOR_DOMINATED_SD_RATIO:.0%}); its ROI ({table.loc[ch, 'posterior_median']:.3g}) is "
           "mostly the prior's" for ch in dominated]
    if dominated and len(dominated) == len(table):
        out.append("every channel's ROI is mostly its prior: check that target and spend are in the units the prior "
                   "assumes (a target in conversions needs revenue_per_kpi / --revenue-per-kpi, or the data-centred "
                   "prior --roi-prior data)")
    return out


# ------------------------------------------------------------------ budget
@dataclass(frozen=True)
class BudgetPlan:
    """A reallocation of the same weekly budget within ``±bounds_pct`` per channel.

    Attributes
    ----------
    table : DataFrame
        Per channel: ``current`` and ``planned`` weekly spend and the ``change``.
    gain_mean, gain_lo, gain_hi : float
        Posterior mean and central interval of the weekly gain of the plan over the current mix.
    level : float
        Probability of that interval.
    """

    table: pd.DataFrame
    gain_mean: float
    gain_lo: float
    gain_hi: float
    level: float


def budget_plan(mmm, bounds_pct: float = 0.3, level: float = 0.9) -> BudgetPlan:
    """The budget that maximises the posterior-mean response with every channel's weekly spend
    within ``±bounds_pct`` of its average, the total unchanged; its gain per posterior draw."""
    if not 0 < bounds_pct < 1:
        raise ValueError(f"bounds_pct must be in (0, 1), got {bounds_pct}")
    data = mmm.data_
    channels = list(data.channels)
    current = _weekly_spend(data.spend_array()).mean(axis=0)
    plan = optimize_budget(model_response(mmm), current, channels, bounds_pct=bounds_pct)
    gain = sum(mmm.response_draws(ch, np.array([plan.spend[k], current[k]])) @ np.array([1.0, -1.0])
               for k, ch in enumerate(channels))
    a = (1.0 - level) / 2.0
    table = pd.DataFrame({"current": current, "planned": plan.spend}, index=pd.Index(channels, name="channel"))
    table["change"] = table["planned"] / table["current"] - 1.0
    return BudgetPlan(table, float(gain.mean()), float(np.quantile(gain, a)), float(np.quantile(gain, 1 - a)), level)


# ------------------------------------------------------------------ report
def _md_table(frame: pd.DataFrame, fmt: str = "{:.3g}") -> str:
    cols = [frame.index.name or ""] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, row in frame.iterrows():
        cells = [fmt.format(v) if isinstance(v, (float, np.floating)) else str(v) for v in row]
        lines.append("| " + " | ".join([str(idx), *cells]) + " |")
    return "\n".join(lines)


def write_report(mmm, out_dir: str | Path, source: str = "", force: bool = False) -> list[Path]:
    """Write the report of a fitted model into ``out_dir``.

    Parameters
    ----------
    mmm : BayesianMMM
        A fitted model.
    out_dir : str or Path
        Folder to create. It must not exist (or be empty) unless ``force``, which replaces it.
    source : str
        What was fitted (e.g. the CSV's name), for the report's header.
    force : bool
        Replace an existing, non-empty ``out_dir``.

    Returns
    -------
    list of Path
        The files written, relative to ``out_dir``.
    """
    if getattr(mmm, "samples_", None) is None:
        raise ValueError("write_report: the model is not fitted (call fit() first)")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not force)):
        raise ValueError(f"{out} exists and is not an empty folder; choose another --out or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write(mmm, stage, source)
        files = sorted(p.relative_to(stage) for p in stage.rglob("*") if p.is_file())
        if out.exists():
            shutil.rmtree(out)
        stage.rename(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return files


def _write(mmm, stage: Path, source: str) -> None:
    set_theme()
    (stage / "figures").mkdir()
    figures = {"fit": plot_fit(mmm), "roi": plot_roi(mmm), "response_curves": plot_response_curves(mmm)}
    for name, fig in figures.items():
        fig.savefig(stage / "figures" / f"{name}.png")
        plt.close(fig)
    roi, share = mmm.roi(), mmm.contribution_share()
    roi.to_csv(stage / "roi.csv")
    share.to_csv(stage / "contribution_share.csv")
    mmm.contributions().to_csv(stage / "contributions.csv")
    mmm.response_curves().to_csv(stage / "response_curves.csv", index=False)
    diag = mmm.diagnostics()
    diag.table.to_csv(stage / "diagnostics.csv")
    plan = budget_plan(mmm)
    plan.table.to_csv(stage / "budget.csv")
    contraction = mmm.roi_contraction()
    contraction.to_csv(stage / "prior_vs_posterior.csv")
    warnings = prior_warnings(mmm, contraction)
    mmm.to_inference_data().to_netcdf(str(stage / "posterior.nc"), engine="h5netcdf")
    mmm.save(stage / "model.pkl")
    data = mmm.data_
    prior_text = (f"LogNormal({mmm.roi_prior_[0]:.3g}, {mmm.roi_prior_[1]:.3g}) on each channel's ROI"
                  + (" (centred on the data's own units)" if mmm.roi_prior == "data" else "")
                  + "".join(f"; LogNormal({mu:.3g}, {sd:.3g}) for {c}" for c, (mu, sd) in mmm.roi_prior_by_channel.items())
                  if mmm.media_prior == "roi" else f"the `{mmm.media_prior}` prior on the media coefficients")
    units = "revenue" if mmm.revenue_per_kpi != 1.0 else f"`{data.target}`"
    lines = [
        f"# Marketing-mix model report{': ' + source if source else ''}",
        "",
        f"Model `{mmm.model_name}` with the `{mmm.media_prior}` prior, fitted by {diag.inference.upper()} to "
        f"{data.n_times} periods, {len(data.channels)} channels"
        + (f" and {len(data.geos)} geos" if data.geo else "") + f" (target `{data.target}`).",
        "",
        "## Diagnostics",
        "",
        diagnostics_verdict(diag),
        "",
        "## Fit over time",
        "",
        "![Fit over time](figures/fit.png)",
        "",
        "## Return on investment and contribution share",
        "",
        f"ROI is each channel's total contribution over the data's window, in {units}, divided by its "
        "total spend. Observational data identify the return near the usual spend far better than this "
        "average return from zero: read wide intervals as 'the data cannot tell'.",
        "",
        "![ROI and share](figures/roi.png)",
        "",
        _md_table(roi.rename(columns={"lo": "5%", "hi": "95%"})),
        "",
        "## What the data told, and what the prior did",
        "",
        f"Prior: {prior_text}. For each channel, the spread (sd of log ROI) of the prior and of the "
        f"posterior; a ratio above {PRIOR_DOMINATED_SD_RATIO:.0%} means the data said little about that channel.",
        "",
        _md_table(contraction[["prior_sd", "posterior_sd", "sd_ratio"]]),
        "",
        *(["**Warnings.**", "", *[f"- {w}" for w in warnings], ""] if warnings else
          ["Every channel's ROI is narrower than its prior: the data, not the prior, set it.", ""]),
        "## Response curves",
        "",
        "![Response curves](figures/response_curves.png)",
        "",
        "## A budget within ±30% of current spend",
        "",
        f"Same total weekly budget, each channel within ±30% of its average: expected gain "
        f"{plan.gain_mean:.4g} per period ({plan.level:.0%} interval {plan.gain_lo:.4g} to {plan.gain_hi:.4g}).",
        "",
        _md_table(plan.table),
        "",
        "## Files",
        "",
        "`roi.csv`, `contribution_share.csv`, `contributions.csv`, `response_curves.csv`, `budget.csv`, "
        "`diagnostics.csv`, `prior_vs_posterior.csv`; the posterior as ArviZ `InferenceData` "
        "(`posterior.nc`); the fitted model (`model.pkl`, read it back with "
        "`mmmlib.bayes.model.BayesianMMM.load`).",
        "",
    ]
    (stage / "report.md").write_text("\n".join(lines), encoding="utf-8")
