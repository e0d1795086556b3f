"""Chapter 2's experiments: fit the U-A-C funnel to simulated worlds and score recovery.

One row per recovered quantity and seed, so the chapter can show medians, coverage and the
spread over seeds without any model code of its own. See Chapter 2.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mmmlib.funnel.model import CHANNELS, FunnelMask, UACFit, UACModel
from mmmlib.funnel.outside import OutsideConfig, simulate_outside_world
from mmmlib.funnel.world import UACWorld, UACWorldConfig, simulate_uac_world
from mmmlib.workers import map_on_cores

__all__ = [
    "FitSettings",
    "attribution_recovery",
    "parameter_recovery",
    "plot_attribution",
    "plot_recovery_errors",
    "plot_source_failure",
    "run_recovery",
    "summarise",
    "with_market",
]

GROUPS = {"alpha_ua": "α_UA", "alpha_ac": "α_AC", "forget": "λ (forgetting)", "beta": "media effects β",
          "spillover": "TV → brand search spillover"}


@dataclass(frozen=True)
class FitSettings:
    """How the model is fitted in an experiment.

    Attributes
    ----------
    label : str
        Row label.
    mask : FunnelMask
        The model's structural mask.
    observe : str
        ``segments`` or ``total``.
    param_net : bool
        Use Diff-MMM's ParamNet instead of free per-segment parameters.
    param_net_optimizer : str
        ``adam`` (the source's) or ``lbfgs`` (the free fit's optimiser and start); see
        :class:`~mmmlib.funnel.model.UACModel`.
    max_iter : int
        Optimiser iterations (Adam: epochs).
    laplace_draws : int
        Laplace draws for intervals.
    """

    label: str = "masked, per segment"
    mask: FunnelMask = field(default_factory=FunnelMask)
    observe: str = "segments"
    param_net: bool = False
    param_net_optimizer: str = "adam"
    max_iter: int = 400
    laplace_draws: int = 400

    def model(self, world: UACWorld) -> UACModel:
        c = world.config
        return UACModel(mask=self.mask, observe=self.observe, param_net=self.param_net,
                        param_net_optimizer=self.param_net_optimizer, hill_k=c.hill_k,
                        hill_slope=c.hill_slope, initial_active=c.initial_active)


def parameter_recovery(fit: UACFit, world: UACWorld, mask: FunnelMask) -> pd.DataFrame:
    """Per parameter and segment: truth, estimate, 90% interval, relative error, coverage.

    Media effects are compared where both the model's ``mask`` and the truth have a link (group
    ``beta``). A link the model allows but the truth lacks is group ``absent``, with truth 0 and
    neither relative error nor coverage: the model's effects are exponentials, always above 0, so no
    interval of theirs can hold 0, and scoring one would count a miss by construction. What such
    an effect is estimated at is reported apart (Chapter 2, the mask).
    """
    rows = []
    t, e = world.truth, fit.params
    K = len(t.alpha_ua)
    for name in ("alpha_ua", "alpha_ac", "forget"):
        lo, hi = fit.interval(name) if name in fit.draws else (np.full(K, np.nan), np.full(K, np.nan))
        for k in range(K):
            rows.append((name, name, k, "", getattr(t, name)[k], getattr(e, name)[k], lo[k], hi[k]))
    for name, model_mask, true_mask in (("beta_ua", mask.ua, world.true_mask.ua), ("beta_ac", mask.ac, world.true_mask.ac)):
        lo, hi = fit.interval(name) if name in fit.draws else (np.full(t.beta_ua.shape, np.nan),) * 2
        for k in range(K):
            for c, ch in enumerate(CHANNELS):
                if model_mask[c]:
                    truth = getattr(t, name)[k, c] if true_mask[c] else 0.0
                    rows.append(("beta" if true_mask[c] else "absent", name, k, ch, truth, getattr(e, name)[k, c],
                                 lo[k, c], hi[k, c]))
    lo, hi = fit.interval("spillover") if "spillover" in fit.draws else (np.nan, np.nan)
    rows.append(("spillover", "spillover", -1, "", t.spillover, e.spillover, lo, hi))
    df = pd.DataFrame(rows, columns=["group", "parameter", "segment", "channel", "true", "estimate", "lo", "hi"])
    df["rel_error"] = np.where(df["true"] != 0, (df["estimate"] - df["true"]) / df["true"].abs(), np.nan)
    covered = ((df["lo"] <= df["true"]) & (df["true"] <= df["hi"])).astype(float)
    df["covered"] = covered.where(df["lo"].notna() & (df["group"] != "absent"))  # NaN: no interval, or truth 0
    return df


def attribution_recovery(fit: UACFit, world: UACWorld) -> pd.DataFrame:
    """Per channel: true and estimated share of funnel conversions, interval, error in points."""
    a = fit.attribution_share.copy()
    a["true"] = world.true_share.reindex(a.index)
    a["error_pp"] = 100.0 * (a["estimate"] - a["true"])
    if "lo" in a:
        a["covered"] = (a["lo"] <= a["true"]) & (a["true"] <= a["hi"])
    return a.reset_index()


def run_recovery(
    settings: FitSettings,
    seeds: Sequence[int],
    world_config: UACWorldConfig | OutsideConfig | None = None,
    workers: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Simulate one world per seed, fit it, and collect recovery rows.

    ``world_config`` is a home-field world (:class:`~mmmlib.funnel.world.UACWorldConfig`,
    default) or one outside the model's family (:class:`~mmmlib.funnel.outside.OutsideConfig`).

    The markets are independent, and each is simulated and fitted from its own seed, so they
    run side by side on ``workers`` cores (default :func:`~mmmlib.workers.default_workers`)
    with the same results as one after another.

    Returns
    -------
    params, attribution, fits : pandas.DataFrame
        :func:`parameter_recovery` and :func:`attribution_recovery` rows with a ``seed``
        column, and one row per fit (seconds, Laplace seconds, convergence, iterations, and the
        smallest negative log-likelihood reached).
    """
    world_config = world_config or UACWorldConfig()
    rows = map_on_cores(partial(_recover_one, settings, world_config), seeds, workers)
    label = {"label": settings.label, "market": world_config.market_size, "n_days": world_config.n_days}
    return (pd.concat([p for p, _, _ in rows], ignore_index=True).assign(**label),
            pd.concat([a for _, a, _ in rows], ignore_index=True).assign(**label),
            pd.DataFrame([f for _, _, f in rows]).assign(**label))


def _recover_one(settings: FitSettings, world_config: UACWorldConfig | OutsideConfig, seed: int
                 ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """One market of :func:`run_recovery`: its parameter rows, attribution rows and fit row."""
    simulate = simulate_outside_world if isinstance(world_config, OutsideConfig) else simulate_uac_world
    world = simulate(world_config, seed=seed)
    fit = settings.model(world).fit(
        world.spend.to_numpy(), world.conversions.to_numpy(), world.sizes, attributes=world.attributes,
        seed=seed, max_iter=settings.max_iter, laplace_draws=0 if settings.param_net else settings.laplace_draws,
    )
    return (parameter_recovery(fit, world, settings.mask).assign(seed=seed),
            attribution_recovery(fit, world).assign(seed=seed),
            {"seed": seed, "seconds": fit.seconds, "laplace_seconds": fit.laplace_seconds,
             "converged": fit.converged, "iterations": len(fit.loss), "nll": float(np.min(fit.loss))})


def summarise(params: pd.DataFrame, attribution: pd.DataFrame) -> pd.DataFrame:
    """Median absolute relative error and 90% coverage per parameter group, and attribution
    error (median and largest absolute error in points) — one row per experiment label."""
    out = []
    for label, p in params.groupby("label", sort=False):
        row = {"label": label}
        for g, name in GROUPS.items():
            q = p[p["group"] == g]
            row[f"{name}: median |rel. error|"] = float(q["rel_error"].abs().median())
            cov = q["covered"].dropna()
            row[f"{name}: coverage"] = float(cov.astype(float).mean()) if len(cov) else np.nan
        a = attribution[attribution["label"] == label]
        row["attribution: median |error| (pp)"] = float(a["error_pp"].abs().median())
        row["attribution: max |error| (pp)"] = float(a["error_pp"].abs().max())
        out.append(row)
    return pd.DataFrame(out).set_index("label")


def with_market(config: UACWorldConfig, market_size: float) -> UACWorldConfig:
    """The same world at another market size (base conversions scaled with it)."""
    return replace(config, market_size=market_size, base=config.base * market_size / config.market_size)


# ------------------------------------------------------------------- figures
def plot_source_failure(src) -> plt.Figure:
    """Diff-MMM's generator: the summed daily activation "probability" (above 1 means mass is
    created) and the market's unaware + activated population, beside observed sales."""
    days = np.arange(src.sales.shape[0])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    ax = axes[0]
    for k in range(src.p_ua_total.shape[0]):
        ax.plot(days[1:120], src.p_ua_total[k, 1:120], lw=1, label=f"segment {k + 1}")
    ax.axhline(1.0, color="k", ls="--", lw=1)
    ax.set(xlabel="day", ylabel="summed P(U→A)", title="Activation 'probability' per day (first 120 days)")
    ax.legend(fontsize=8)
    ax = axes[1]
    people = src.unaware.sum(axis=0) + src.active.sum(axis=0)
    ax.plot(days[:120], people[:120] + 1.0, label="unaware + activated (+1)")
    ax.plot(days[:120], src.sales[:120], label="observed sales")
    ax.set_yscale("log")
    ax.set(xlabel="day", ylabel="people / sales (log scale)", title="The market explodes, then dies")
    ax.legend(fontsize=8)
    return fig


def plot_recovery_errors(params: pd.DataFrame) -> plt.Figure:
    """Relative error of every recovered parameter (one dot per seed and segment), per group
    and experiment; the band marks ±5%."""
    df = params.dropna(subset=["rel_error"]).copy()
    df["group"] = df["group"].map(GROUPS)
    fig, ax = plt.subplots(figsize=(9, 3.8), layout="constrained")
    ax.axhspan(-0.05, 0.05, color="0.9", zorder=0)
    sns.stripplot(df, x="group", y="rel_error", hue="label", dodge=True, size=3, alpha=0.6, ax=ax, palette="colorblind")
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xticks(ax.get_xticks(), [textwrap.fill(t.get_text(), 16) for t in ax.get_xticklabels()])
    ax.set(xlabel="", ylabel="(estimate − truth) / |truth|", title="Parameter recovery over seeds (band: ±5%)")
    ax.legend(fontsize=8, title=None)
    return fig


def plot_attribution(attribution: pd.DataFrame) -> plt.Figure:
    """Estimated share of funnel conversions per channel (mean over seeds, with the spread of
    the estimates) against the truth, one panel per experiment."""
    labels = list(dict.fromkeys(attribution["label"]))
    fig, axes = plt.subplots(1, len(labels), figsize=(3.3 * len(labels), 3.4), sharey=True, layout="constrained",
                             squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        a = attribution[attribution["label"] == label].groupby("channel", sort=False)
        est, true = a["estimate"], a["true"].mean()
        x = np.arange(len(true))
        ax.bar(x - 0.2, true.to_numpy(), width=0.4, color="0.6", label="truth")
        ax.bar(x + 0.2, est.mean().to_numpy(), width=0.4, yerr=[est.mean() - est.min(), est.max() - est.mean()],
               capsize=3, label="estimate (range over seeds)")
        ax.set_xticks(x, [c.replace("_", "\n") for c in true.index], fontsize=8)
        ax.set_title(label, fontsize=10)
    axes[0, 0].set_ylabel("share of funnel conversions")
    axes[0, 0].legend(fontsize=8)
    return fig
