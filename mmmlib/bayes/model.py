r"""Bayesian marketing-mix models after LightweightMMM, in Pyro (see Chapter 1).

Three media transforms with LightweightMMM's names, parameterisation and priors:

- ``adstock``: :math:`f = \mathrm{adstock}(x;\lambda)^{\rho}`, :math:`\lambda \sim \mathrm{Beta}(2,1)`,
  :math:`\rho \sim \mathrm{Beta}(9,1)`;
- ``hill_adstock``: :math:`f = \mathrm{hill}(\mathrm{adstock}(x;\lambda); K, S)`,
  :math:`\lambda \sim \mathrm{Beta}(2,1)`, :math:`K, S \sim \mathrm{Gamma}(1,1)`;
- ``carryover``: :math:`f = \mathrm{carryover}(x;\tau,\theta)^{\rho}`, :math:`\tau \sim \mathrm{Beta}(1,1)`,
  :math:`\theta \sim \mathrm{HalfNormal}(2)`, :math:`\rho \sim \mathrm{Beta}(9,1)`.

National likelihood (target and media divided by their means, as LightweightMMM does):

.. math::

    y_t \sim \mathcal N\Big(\alpha + \mu_{\text{trend}}\, t^{\kappa} + s_t
      + \sum_m \beta_m f_m(x_{\cdot,m})_t + \sum_i \lambda_i z_{t,i},\ \sigma\Big),

:math:`\alpha \sim \mathrm{HalfNormal}(2)`, :math:`\mu_{\text{trend}} \sim \mathcal N(0,1)`,
:math:`\kappa \sim \mathcal U(0.5, 1.5)`, :math:`\sigma \sim \mathrm{Gamma}(1,1)`, Fourier
seasonality :math:`s_t` with :math:`\gamma \sim \mathcal N(0,1)`, controls
:math:`\lambda_i \sim \mathcal N(0,1)` and the *cost prior*
:math:`\beta_m \sim \mathrm{HalfNormal}(v_m)` with :math:`v_m` the channel's total cost over the
mean total cost (``media_prior="flat"`` uses :math:`v_m = 1`). The geo model has per-geo
intercept, noise and trend, a shared :math:`\kappa`, :math:`\beta_{m,g} \sim \mathrm{HalfNormal}(\beta_m\sqrt{2/\pi})`
and seasonality scaled per geo by :math:`c_g \sim \mathrm{HalfNormal}(0.5)`.

Every reported number (ROI, contributions, predictions) is on the original scale.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import MCMC, NUTS, SVI, JitTrace_ELBO, Trace_ELBO
from pyro.infer.autoguide import AutoLowRankMultivariateNormal, AutoMultivariateNormal
from pyro.infer.autoguide.initialization import init_to_median
from torch.distributions import biject_to

from mmmlib.bayes.density import NationalDensity
from mmmlib.bayes.lift import LiftTest, lift_arrays
from mmmlib.data import MediaDataset
from mmmlib.inference.diagnostics import inference_data, interval_summary, summarize_draws
from mmmlib.inference.nuts import sample_nuts
from mmmlib.inference.vi import fit_advi
from mmmlib.transforms import adstock, apply_exponent_safe, carryover, fourier_features, hill

__all__ = ["BayesianMMM", "MODELS", "PRIOR_DOMINATED_SD_RATIO", "Diagnostics", "data_roi_prior", "media_transform"]

#: The media transforms, with LightweightMMM's names.
MODELS = ("adstock", "hill_adstock", "carryover")
#: The priors on the media effect (LightweightMMM's cost prior, a flat one, or a prior on ROI).
MEDIA_PRIORS = ("cost", "flat", "roi")
#: Full-rank VI steps that initialise NUTS (numpy backend).
NUTS_INIT_VI_STEPS = 1000
#: A channel whose posterior sd of log ROI is above this fraction of its prior sd learned little
#: from the data: its ROI is mostly the prior's (see :meth:`BayesianMMM.roi_contraction`).
PRIOR_DOMINATED_SD_RATIO = 0.75
#: Pyro SVI (geo panels, lift tests) with a JIT-traced ELBO (see ``benchmarks/bench_geo.py``).
SVI_JIT = True
TRANSFORM_SITES = {
    "adstock": ("lag_weight", "exponent"),
    "hill_adstock": ("lag_weight", "half_max_effective_concentration", "slope"),
    "carryover": ("ad_effect_retention_rate", "peak_effect_delay", "exponent"),
}


def media_transform(model: str, media: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Apply a model's media transform; parameters broadcast against ``media.shape[1:]``."""
    if model == "adstock":
        return apply_exponent_safe(adstock(media, params["lag_weight"]), params["exponent"])
    if model == "hill_adstock":
        return hill(
            adstock(media, params["lag_weight"]),
            params["half_max_effective_concentration"],
            params["slope"],
        )
    if model == "carryover":
        return apply_exponent_safe(
            carryover(media, params["ad_effect_retention_rate"], params["peak_effect_delay"]),
            params["exponent"],
        )
    raise ValueError(f"model must be one of {MODELS}, got {model!r}")


def _transform_priors(model: str, n: int) -> dict[str, dist.Distribution]:
    one = torch.ones(n)
    if model == "adstock":
        return {"lag_weight": dist.Beta(2.0 * one, one), "exponent": dist.Beta(9.0 * one, one)}
    if model == "hill_adstock":
        return {
            "lag_weight": dist.Beta(2.0 * one, one),
            "half_max_effective_concentration": dist.Gamma(one, one),
            "slope": dist.Gamma(one, one),
        }
    return {
        "ad_effect_retention_rate": dist.Beta(one, one),
        "peak_effect_delay": dist.HalfNormal(2.0 * one),
        "exponent": dist.Beta(9.0 * one, one),
    }


def data_roi_prior(
    data: MediaDataset, media_share: float = 0.3, sigma: float = 0.9, revenue_per_kpi: float = 1.0
) -> tuple[float, float]:
    """Log-normal ROI prior ``(mu, sigma)`` in the data's own units: its median is the ROI every
    channel would have if media drove ``media_share`` of the target.

    A return "in currency" (Meridian's LogNormal(0.2, 0.9), median 1.2) assumes target and spend
    are both money; when the target is conversions, or media are scaled 0-1 and used as spend,
    that prior is off by orders of magnitude and the posterior stays at it. This centre moves
    with the data's units. On Chapter 0's worlds it is close to the fixed default.

    Parameters
    ----------
    data : MediaDataset
        Training data (target and spend).
    media_share : float
        Share of the target the prior's median attributes to media, in (0, 1].
    sigma : float
        Prior sd of log ROI.
    revenue_per_kpi : float
        Revenue per unit of target (1 when the target is revenue).
    """
    if not 0.0 < media_share <= 1.0:
        raise ValueError(f"media_share must be in (0, 1], got {media_share}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    ratio = float(revenue_per_kpi * data.target_array().sum() / data.spend_array().sum())
    if not (math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"total target over total spend must be positive and finite, got {ratio}")
    return float(np.log(media_share * ratio)), float(sigma)


@dataclass(frozen=True)
class Diagnostics:
    """Convergence diagnostics of a fit.

    Attributes
    ----------
    inference : str
        ``nuts`` or ``svi``.
    max_rhat : float
        Largest rank-normalised split R-hat (ArviZ) over all scalar parameters (NaN for SVI).
    min_ess : float
        Smallest bulk or tail effective sample size (ArviZ; NaN for SVI).
    divergences : int
        Divergent transitions after warm-up, all chains (0 for SVI).
    num_draws : int
        Posterior draws (all chains).
    fit_seconds : float
        Wall time of inference.
    table : pandas.DataFrame
        Per parameter: mean, sd and (NUTS) rhat, ess_bulk, ess_tail, ess, mcse_mean
        (:func:`mmmlib.inference.diagnostics.summarize_draws`).
    mean_leapfrog : float
        Mean gradient evaluations per draw after warm-up (NumPy NUTS; NaN otherwise): the
        sampler's cost, set by the posterior's geometry.
    tree_depth_hits : int
        Draws after warm-up whose trajectory was cut at the tree-depth cap (NumPy NUTS).
    """

    inference: str
    max_rhat: float
    min_ess: float
    divergences: int
    num_draws: int
    fit_seconds: float
    table: pd.DataFrame = field(repr=False)
    mean_leapfrog: float = float("nan")
    tree_depth_hits: int = 0

    @property
    def divergence_rate(self) -> float:
        return self.divergences / max(self.num_draws, 1)


@dataclass(frozen=True)
class _Prepared:
    media: torch.Tensor  # (T, C[, G]) scaled
    controls: torch.Tensor  # (T, K[, G]) standardised
    seasonal: torch.Tensor  # (T, 2D)
    t_index: torch.Tensor  # (T,)
    target: torch.Tensor | None  # (T[, G]) scaled


class BayesianMMM:
    """A LightweightMMM-style Bayesian MMM fitted with Pyro (NUTS or SVI).

    Parameters
    ----------
    model : str
        ``hill_adstock`` (default), ``adstock`` or ``carryover``.
    seasonality_degrees : int
        Fourier harmonics :math:`D`.
    seasonality_period : float
        :math:`P` in periods (52 for weekly data).
    weekday_seasonality : bool
        Add seven day-of-week effects (daily data).
    media_prior : str
        ``cost`` (LightweightMMM: :math:`\\beta_m \\sim \\mathrm{HalfNormal}(v_m)`,
        :math:`v_m` = ``cost_prior_multiplier`` times the channel's cost over the mean cost),
        ``flat`` (:math:`\\mathrm{HalfNormal}(1)` for every channel) or ``roi`` (national
        data only): the ROI itself is the parameter, :math:`\\mathrm{ROI}_m \\sim
        \\mathrm{LogNormal}(\\mu, s)` (Meridian's default :math:`(0.2, 0.9)`), and
        :math:`\\beta_m` is the coefficient that gives this ROI over the training window.
    trend_index : str, optional
        ``raw``: the trend is :math:`t^\\kappa` on the integer index :math:`t = 0, 1, \\dots`
        (LightweightMMM's model: its :math:`\\mathcal N(0, 1)` coefficient leaves the trend
        almost unconstrained, since :math:`t^\\kappa` reaches :math:`T^\\kappa`); ``unit``:
        :math:`t` divided by the training length, so the prior keeps the trend within about one
        mean target over the window. Default: ``raw`` for the cost and flat priors (the port of
        LightweightMMM agrees with the original only with it; Chapter 1), ``unit`` for the ROI
        prior. The NumPy backend samples either as the trend on :math:`t/T` (see
        :class:`~mmmlib.bayes.density.NationalDensity`, ``trend_base``).
    roi_prior : tuple of float or "data"
        :math:`(\\mu, s)` of the LogNormal ROI prior (``media_prior="roi"``); ``"data"``
        centres it on the training data's own units (:func:`data_roi_prior`, resolved at
        :meth:`fit`; the resolved pair is ``roi_prior_``). The default assumes ROI in currency;
        :meth:`fit` warns when, at the prior's median ROI, media would make more than the whole
        target or less than a thousandth of it (a KPI in conversions, say).
    revenue_per_kpi : float
        Revenue per unit of target (default 1: the target is revenue). ROI is reported, and
        its prior placed, in revenue per unit of spend; contributions, predictions and response
        curves stay in target units.
    cost_prior_multiplier : float
        Scale of the cost prior (``media_prior="cost"``): :math:`v_m` is this times the channel's
        total cost over the mean channel's. Default 0.15, as LightweightMMM's README and demo
        notebooks scale the costs (``CustomScaler(divide_operation=jnp.mean, multiply_by=0.15)``)
        before passing them as ``media_prior``; 1 gives the prior of the unscaled costs over their mean,
        6.7 times wider.
    roi_prior_by_channel : dict, optional
        ``{channel: (mu, s)}``: a channel's own LogNormal ROI prior in place of ``roi_prior``
        (for example one built from an experiment, :func:`~mmmlib.bayes.lift.lift_roi_prior`).
        The resolved per-channel parameters are ``roi_prior_mu_`` and ``roi_prior_sigma_``.

    Examples
    --------
    >>> mmm = BayesianMMM(model="hill_adstock")                     # doctest: +SKIP
    >>> mmm.fit(world.data, inference="nuts", chains=2, seed=0)     # doctest: +SKIP
    >>> mmm.roi()                                                   # doctest: +SKIP
    """

    def __init__(
        self,
        model: str = "hill_adstock",
        seasonality_degrees: int = 2,
        seasonality_period: float = 52.0,
        weekday_seasonality: bool = False,
        media_prior: str = "cost",
        trend_index: str | None = None,
        roi_prior: tuple[float, float] | str = (0.2, 0.9),
        revenue_per_kpi: float = 1.0,
        roi_prior_by_channel: dict[str, tuple[float, float]] | None = None,
        cost_prior_multiplier: float = 0.15,
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        if media_prior not in MEDIA_PRIORS:
            raise ValueError(f"media_prior must be one of {MEDIA_PRIORS}, got {media_prior!r}")
        if isinstance(roi_prior, str):
            if roi_prior != "data":
                raise ValueError(f"roi_prior must be (mu, sigma) or 'data', got {roi_prior!r}")
        elif len(roi_prior) != 2 or not roi_prior[1] > 0 or not all(map(math.isfinite, roi_prior)):
            raise ValueError(f"roi_prior must be (mu, sigma) with finite mu and sigma > 0, got {roi_prior!r}")
        by_channel = {str(c): (float(p[0]), float(p[1])) for c, p in (roi_prior_by_channel or {}).items()}
        for c, (mu, sd) in by_channel.items():
            if not (math.isfinite(mu) and math.isfinite(sd) and sd > 0):
                raise ValueError(f"roi_prior_by_channel[{c!r}] must be (mu, sigma) with finite mu and sigma > 0, "
                                 f"got {(mu, sd)}")
        if by_channel and media_prior != "roi":
            raise ValueError(f"roi_prior_by_channel needs media_prior='roi', got {media_prior!r}")
        if not (math.isfinite(revenue_per_kpi) and revenue_per_kpi > 0):
            raise ValueError(f"revenue_per_kpi must be a positive number, got {revenue_per_kpi!r}")
        if not (math.isfinite(cost_prior_multiplier) and cost_prior_multiplier > 0):
            raise ValueError(f"cost_prior_multiplier must be a positive number, got {cost_prior_multiplier!r}")
        if seasonality_degrees < 0:
            raise ValueError(f"seasonality_degrees must be >= 0, got {seasonality_degrees}")
        self.model_name = model
        self.seasonality_degrees = int(seasonality_degrees)
        self.seasonality_period = float(seasonality_period)
        self.weekday_seasonality = bool(weekday_seasonality)
        if trend_index is None:
            trend_index = "unit" if media_prior == "roi" else "raw"
        if trend_index not in ("raw", "unit"):
            raise ValueError(f"trend_index must be 'raw' or 'unit', got {trend_index!r}")
        self.trend_index = trend_index
        self.media_prior = media_prior
        self.roi_prior = roi_prior if isinstance(roi_prior, str) else (float(roi_prior[0]), float(roi_prior[1]))
        self.revenue_per_kpi = float(revenue_per_kpi)
        self.roi_prior_by_channel = by_channel
        self.cost_prior_multiplier = float(cost_prior_multiplier)
        self.samples_: dict[str, torch.Tensor] | None = None
        self.data_: MediaDataset | None = None
        self.diagnostics_: Diagnostics | None = None
        self.lift_tests_: tuple[LiftTest, ...] = ()
        self.lift_: dict[str, torch.Tensor] | None = None

    # --------------------------------------------------------------- scaling
    def _scales(self, data: MediaDataset) -> None:
        media = data.media_array()
        spend = data.spend_array()
        y = data.target_array()
        ctrl = data.controls_array()
        self.media_scale_ = media.mean(axis=0)  # (C[, G])
        if np.any(self.media_scale_ <= 0):
            bad = data.channels[int(np.flatnonzero((self.media_scale_ <= 0).reshape(len(data.channels), -1).any(1))[0])]
            raise ValueError(f"channel {bad!r} has no media in the training data: cannot scale it")
        if not np.all(np.isfinite(y)) or np.any(y.reshape(y.shape[0], -1).mean(axis=0) <= 0):
            raise ValueError(f"target column {data.target!r} must be finite with a positive mean (in every geo): "
                             "the model divides it by its mean")
        total_spend = _weekly_spend(spend).sum(axis=0)
        if np.any(total_spend <= 0):
            bad = data.channels[int(np.flatnonzero(total_spend <= 0)[0])]
            raise ValueError(f"channel {bad!r} has no spend in the training data: its ROI and cost prior are undefined")
        self.target_scale_ = y.mean(axis=0)  # scalar or (G,)
        self.n_train_ = float(data.n_times)
        self.control_mean_ = ctrl.mean(axis=0)
        self.control_sd_ = np.where(ctrl.std(axis=0) > 0, ctrl.std(axis=0), 1.0)
        total_cost = _weekly_spend(spend).sum(axis=0)
        self.cost_prior_ = (self.cost_prior_multiplier * total_cost / total_cost.mean() if self.media_prior == "cost"
                            else np.ones_like(total_cost))
        self.price_ = spend.sum(axis=0) / np.maximum(media.sum(axis=0), 1e-12)  # spend per media unit
        # ROI (revenue per spend) -> total scaled contribution
        self.roi_units_ = total_cost / (float(np.sum(self.target_scale_)) * self.revenue_per_kpi)
        self.roi_prior_ = (data_roi_prior(data, revenue_per_kpi=self.revenue_per_kpi)
                           if self.roi_prior == "data" else self.roi_prior)
        unknown = sorted(set(self.roi_prior_by_channel) - set(data.channels))
        if unknown:
            raise ValueError(f"roi_prior_by_channel names channels that are not in the data: {unknown}; "
                             f"channels: {list(data.channels)}")
        own = [self.roi_prior_by_channel.get(c, self.roi_prior_) for c in data.channels]
        self.roi_prior_mu_ = np.array([p[0] for p in own])
        self.roi_prior_sigma_ = np.array([p[1] for p in own])
        if self.media_prior == "roi":
            # Media at every channel's prior-median ROI, as a share of the target: above 1, or
            # below 1/1000, the prior is in other units than the data (a KPI in conversions
            # with the currency default), and a channel the data do not see stays at it.
            share = float(np.exp(self.roi_prior_mu_) @ total_cost) / (float(y.sum()) * self.revenue_per_kpi)
            if not 1e-3 <= share <= 1.0:
                warnings.warn(
                    f"at its prior median ROI, media would make {share:.3g} times the target {data.target!r}: "
                    "the ROI prior is not in the data's units (is the target revenue?). Set revenue_per_kpi, or "
                    "roi_prior='data' to centre the prior on the data's units",
                    UserWarning, stacklevel=4,
                )

    def _prepare(self, data: MediaDataset, offset: int = 0, with_target: bool = True) -> _Prepared:
        media = torch.as_tensor(data.media_array() / self.media_scale_)
        ctrl = torch.as_tensor((data.controls_array() - self.control_mean_) / self.control_sd_)
        T = media.shape[0]
        seasonal = fourier_features(T, self.seasonality_period, self.seasonality_degrees, offset=offset)
        if self.weekday_seasonality:
            dow = torch.as_tensor(data.dates.dayofweek.to_numpy())
            seasonal = torch.cat([seasonal, torch.nn.functional.one_hot(dow, 7).double()], dim=1)
        t_index = torch.arange(offset, offset + T, dtype=torch.float64)
        if self.trend_index == "unit":
            t_index = t_index / self.n_train_
        target = torch.as_tensor(data.target_array() / self.target_scale_) if with_target else None
        return _Prepared(media, ctrl, seasonal, t_index, target)

    # ---------------------------------------------------------------- model
    def _model(self, media, controls, seasonal, t_index, target=None):
        T, C = media.shape[0], media.shape[1]
        geo = media.ndim == 3
        G = media.shape[2] if geo else 1
        K = controls.shape[1]
        n_fourier = 2 * self.seasonality_degrees
        cost = torch.as_tensor(self.cost_prior_, dtype=media.dtype)

        with pyro.plate("channels", C, dim=-1):
            params = {name: pyro.sample(name, d) for name, d in _transform_priors(self.model_name, C).items()}
            if self.media_prior == "roi":
                roi = pyro.sample("roi", dist.LogNormal(torch.as_tensor(self.roi_prior_mu_, dtype=media.dtype),
                                                        torch.as_tensor(self.roi_prior_sigma_, dtype=media.dtype)))
            else:
                coef_media = pyro.sample("coef_media", dist.HalfNormal(cost))
        expo_trend = pyro.sample("expo_trend", dist.Uniform(0.5, 1.5))
        if geo:
            with pyro.plate("geos", G, dim=-1):
                intercept = pyro.sample("intercept", dist.HalfNormal(2.0))
                sigma = pyro.sample("sigma", dist.Gamma(1.0, 1.0))
                coef_trend = pyro.sample("coef_trend", dist.Normal(0.0, 1.0))
                season_scale = pyro.sample("seasonality_scale", dist.HalfNormal(0.5))
            with pyro.plate("geo_channels_g", G, dim=-1), pyro.plate("geo_channels_c", C, dim=-2):
                coef_media_geo = pyro.sample(
                    "coef_media_geo", dist.HalfNormal(coef_media.unsqueeze(-1) * math.sqrt(2.0 / math.pi))
                )
            params = {k: v.unsqueeze(-1) for k, v in params.items()}
        else:
            intercept = pyro.sample("intercept", dist.HalfNormal(2.0))
            sigma = pyro.sample("sigma", dist.Gamma(1.0, 1.0))
            coef_trend = pyro.sample("coef_trend", dist.Normal(0.0, 1.0))
        trend_t = apply_exponent_safe(t_index, expo_trend)  # 0^k = 0, finite gradient in k
        mu = intercept + coef_trend * (trend_t.unsqueeze(-1) if geo else trend_t)
        if n_fourier + (7 if self.weekday_seasonality else 0) > 0:
            with pyro.plate("seasonal_terms", seasonal.shape[1], dim=-1):
                gamma = pyro.sample("gamma_seasonality", dist.Normal(0.0, 1.0))
            season = seasonal @ gamma
            mu = mu + (season.unsqueeze(-1) * season_scale if geo else season)
        if K > 0:
            with pyro.plate("controls", K, dim=-1):
                coef_extra = pyro.sample("coef_extra", dist.Normal(0.0, 1.0))
            mu = mu + (torch.einsum("tkg,k->tg", controls, coef_extra) if geo else controls @ coef_extra)
        transformed = media_transform(self.model_name, media, params)
        if geo:
            mu = mu + (transformed * coef_media_geo).sum(dim=1)
            with pyro.plate("time", T, dim=-2), pyro.plate("obs_geos", G, dim=-1):
                pyro.sample("target", dist.Normal(mu, sigma), obs=target)
        else:
            if self.media_prior == "roi":  # the coefficient that gives each channel its sampled ROI
                units = torch.as_tensor(self.roi_units_, dtype=media.dtype)
                coef_media = pyro.deterministic("coef_media", roi * units / transformed.sum(dim=-2))
            mu = mu + (transformed * coef_media.unsqueeze(-2)).sum(-1)
            with pyro.plate("time", T, dim=-1):
                pyro.sample("target", dist.Normal(mu, sigma), obs=target)
        lift = self.__dict__.get("lift_")
        if lift is not None and target is not None:  # experiments, observed through the same response
            pred = self._lift_prediction(media, params, coef_media_geo if geo else coef_media, transformed, lift)
            with pyro.plate("lift_tests", pred.shape[0], dim=-1):
                pyro.sample("lift", dist.Normal(pred, lift["se"]), obs=lift["lift"])

    def _lift_prediction(self, media, params, coef, transformed, lift) -> torch.Tensor:
        """The model's incremental target of each lift test (original units), one draw: the
        channel's media times the test's multiplier, through the channel's own transform,
        minus the fitted transform, over the test's window and geos."""
        idx = lift["channel"]
        geo = media.ndim == 3
        params_k = {k: v[idx] for k, v in params.items()}  # (K,) or (K, 1)
        if geo:
            changed = media[:, idx, :] * lift["multiplier"]  # (T, K, G)
            diff = (media_transform(self.model_name, changed, params_k) - transformed[:, idx, :])
            per_geo = (diff * lift["window"].unsqueeze(-1)).sum(dim=0)  # (K, G)
            return (per_geo * coef[idx] * lift["target_scale"] * lift["geo_mask"]).sum(dim=-1)
        changed = media[:, idx] * lift["multiplier"][..., 0]  # (T, K)
        diff = media_transform(self.model_name, changed, params_k) - transformed[:, idx]
        return (diff * lift["window"]).sum(dim=0) * coef[idx] * lift["target_scale"]

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        data: MediaDataset,
        inference: str = "nuts",
        num_warmup: int = 1000,
        num_samples: int = 1000,
        chains: int = 2,
        seed: int = 0,
        svi_steps: int = 3000,
        svi_lr: float = 0.02,
        target_accept_prob: float = 0.85,
        progress: bool = False,
        backend: str = "auto",
        max_tree_depth: int = 10,
        coordinates: str | None = None,
        lift_tests: Sequence[LiftTest] | None = None,
    ) -> BayesianMMM:
        """Fit to a :class:`~mmmlib.data.MediaDataset`, and to experiments when given.

        Parameters
        ----------
        data : MediaDataset
            Media, spend (for the cost prior and ROI), target and controls.
        inference : str
            ``nuts`` or ``svi`` (a low-rank multivariate-normal guide; full-rank for national
            data). With the ``numpy`` backend, NUTS chains start at draws of a short full-rank VI
            fit (:data:`NUTS_INIT_VI_STEPS` steps) and warm up from its covariance; Pyro's NUTS
            starts at ``init_to_median``.
        num_warmup, num_samples, chains : int
            NUTS settings per chain; SVI draws ``num_samples * chains`` from its guide.
        seed : int
            Seed of the inference.
        svi_steps, svi_lr : int, float
            SVI optimisation steps and Adam learning rate.
        target_accept_prob : float
            NUTS step-size adaptation target (LightweightMMM: 0.85).
        progress : bool
            Show a progress bar (off in the book).
        backend : str
            Implementation: ``pyro`` (Pyro's NUTS, JIT-compiled, or Pyro's SVI on the Pyro
            program), ``numpy`` (the same model's hand-differentiated log density,
            :class:`~mmmlib.bayes.density.NationalDensity`, sampled by
            :func:`mmmlib.inference.nuts.sample_nuts` with chains in parallel processes, or fitted by the
            full-rank Gaussian VI of :func:`mmmlib.inference.vi.fit_advi`; national data only) or ``auto``
            (``numpy`` for national data, ``pyro`` for geo panels). Lift tests work with both.
        max_tree_depth : int
            NUTS tree-depth cap (LightweightMMM and Stan: 10): at most ``2**max_tree_depth - 1``
            gradient evaluations per draw. Transitions that hit it are counted in
            :meth:`diagnostics` (``tree_depth_hits``).
        coordinates : str, optional
            Coordinates the ``numpy`` backend samples in (see
            :mod:`mmmlib.bayes.density`; the posterior is the same in all): ``native``
            (log ``coef_media`` and log intercept, as LightweightMMM), ``roi`` (log ROI instead
            of log ``coef_media``) or ``level`` (log ROI, and the window mean of the whole mean
            function instead of the log intercept). Default: ``level`` for the ROI prior (in
            ``roi`` coordinates its always-on channels trade off against the intercept along a
            bent ridge, where NUTS diverged), ``native`` for the cost and flat priors
            (LightweightMMM's; ``benchmarks/bench_bayes.py`` compares the three on the cost prior).
            SVI fits its Gaussian in the same coordinates.
        lift_tests : sequence of LiftTest, optional
            Experiments on the training periods (:class:`~mmmlib.bayes.lift.LiftTest`): each is
            one more observation, the model's incremental target of the test's spend change
            through the same adstock and saturation, with the test's standard error. Needs the
            Pyro backend (``auto`` chooses it).
        """
        if inference not in ("nuts", "svi"):
            raise ValueError(f"inference must be 'nuts' or 'svi', got {inference!r}")
        if backend not in ("auto", "pyro", "numpy"):
            raise ValueError(f"backend must be 'auto', 'pyro' or 'numpy', got {backend!r}")
        geo = data.geo is not None
        if geo and self.media_prior == "roi":
            raise ValueError("media_prior='roi' is implemented for national data only; use 'cost' or 'flat'")
        if geo and backend == "numpy":
            raise ValueError("backend='numpy' is implemented for national data only; use 'pyro'")
        if backend == "auto":
            backend = "pyro" if geo else "numpy"
        if coordinates is None:
            coordinates = "level" if self.media_prior == "roi" else "native"
        if coordinates not in ("native", "roi", "level"):
            raise ValueError(f"coordinates must be 'native', 'roi' or 'level', got {coordinates!r}")
        if coordinates == "native" and self.media_prior == "roi":
            raise ValueError("media_prior='roi' samples log ROI: coordinates must be 'roi' or 'level', not 'native'")
        if not 1 <= max_tree_depth <= 15:
            raise ValueError(f"max_tree_depth must be in 1..15, got {max_tree_depth}")
        if chains < 1 or num_samples < 1 or num_warmup < 0:
            raise ValueError("chains and num_samples must be >= 1 and num_warmup >= 0")
        if not 0.0 < target_accept_prob < 1.0:
            raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob}")
        if inference == "svi" and not (svi_steps >= 1 and math.isfinite(svi_lr) and svi_lr > 0):
            raise ValueError(f"svi_steps must be >= 1 and svi_lr a positive number, got {svi_steps} and {svi_lr}")
        # All or nothing: a fit that fails leaves the model as it was (no new scaling beside old
        # draws). Pyro's parameters and the data are float64 whatever torch's default dtype is.
        state = dict(self.__dict__)
        default_dtype = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            return self._fit(
                data, inference, backend, num_warmup, num_samples, chains, seed, svi_steps, svi_lr,
                target_accept_prob, progress, max_tree_depth, coordinates, lift_tests,
            )
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(state)
            raise
        finally:
            torch.set_default_dtype(default_dtype)

    def _fit(
        self, data, inference, backend, num_warmup, num_samples, chains, seed, svi_steps, svi_lr,
        target_accept_prob, progress, max_tree_depth, coordinates, lift_tests=None,
    ) -> BayesianMMM:
        self.backend_ = backend
        self._scales(data)
        prep = self._prepare(data)
        self.lift_tests_ = tuple(lift_tests) if lift_tests else ()
        self.lift_ = None
        if lift_tests:
            arr = lift_arrays(lift_tests, data.channels, data.n_times, data.geos)
            geo = data.geo is not None
            self.lift_ = {k: torch.as_tensor(v) for k, v in arr.items()}
            self.lift_["target_scale"] = torch.as_tensor(np.asarray(self.target_scale_, dtype=np.float64))
            if not geo:
                self.lift_["target_scale"] = self.lift_["target_scale"].reshape(())
        args = (prep.media, prep.controls, prep.seasonal, prep.t_index)
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        t0 = time.perf_counter()
        if inference == "nuts" and backend == "numpy":
            samples, table, divergences = self._run_nuts_numpy(
                prep, num_warmup, num_samples, chains, target_accept_prob, seed, max_tree_depth, coordinates
            )
        elif inference == "nuts":
            samples, table, divergences = self._run_nuts(
                args, prep.target, num_warmup, num_samples, chains, target_accept_prob, progress, seed,
                max_tree_depth,
            )
        else:
            if backend == "numpy":
                samples = self._run_advi_numpy(prep, svi_steps, svi_lr, num_samples * chains, seed, coordinates)
            else:
                samples = self._run_svi(args, prep.target, svi_steps, svi_lr, num_samples * chains, progress)
            self.posterior_ = {k: v.numpy()[None] for k, v in samples.items()}  # one "chain" of guide draws
            self.sample_stats_ = {}
            table = pd.DataFrame(
                {k: [float(v.mean()), float(v.std())] for k, v in samples.items()}, index=["mean", "sd"]
            ).T
            divergences = 0
        seconds = time.perf_counter() - t0
        if "roi" in samples and "coef_media" not in samples:
            samples["coef_media"] = self._roi_to_coef(prep, samples)
            n_chains = next(iter(self.posterior_.values())).shape[0]
            self.posterior_["coef_media"] = samples["coef_media"].numpy().reshape(n_chains, -1, *samples["coef_media"].shape[1:])
        self.inference_ = inference
        if not (inference == "svi" and backend != "numpy"):
            self.svi_restarts_ = 0
        self.sampler_settings_ = dict(num_warmup=int(num_warmup), num_samples=int(num_samples), chains=int(chains),
                                      target_accept_prob=float(target_accept_prob), max_tree_depth=int(max_tree_depth))
        self.samples_ = samples
        self.data_ = data
        n_draws = next(iter(samples.values())).shape[0]
        nuts_stats = {}
        if inference == "nuts" and backend == "numpy":
            nuts_stats = dict(
                mean_leapfrog=float(self.nuts_.n_leapfrog.mean()),
                tree_depth_hits=int((self.nuts_.tree_depth >= max_tree_depth).sum()),
            )
        self.diagnostics_ = Diagnostics(
            inference=inference,
            max_rhat=float(table["rhat"].max()) if "rhat" in table else float("nan"),
            min_ess=float(table["ess"].min()) if "ess" in table else float("nan"),
            divergences=int(divergences),
            num_draws=int(n_draws),
            fit_seconds=seconds,
            table=table,
            **nuts_stats,
        )
        return self

    def _run_nuts(
        self, args, target, num_warmup, num_samples, chains, target_accept_prob, progress, seed, max_tree_depth=10
    ):
        by_chain: list[dict[str, torch.Tensor]] = []
        divergences = 0
        for c in range(chains):  # sequential chains: reproducible, no process pool
            pyro.set_rng_seed(seed + 1000 * c)
            kernel = NUTS(
                self._model,
                jit_compile=True,
                ignore_jit_warnings=True,
                target_accept_prob=target_accept_prob,
                init_strategy=init_to_median(num_samples=15),
                max_tree_depth=max_tree_depth,
            )
            mcmc = MCMC(
                kernel,
                num_samples=num_samples,
                warmup_steps=num_warmup,
                num_chains=1,
                disable_progbar=not progress,
            )
            mcmc.run(*args, target=target)
            by_chain.append({k: v.detach() for k, v in mcmc.get_samples().items()})
            extra = mcmc.diagnostics()
            divergences += int(sum(len(v) for v in extra.get("divergences", {}).values()))
        stacked = {k: torch.stack([s[k] for s in by_chain]).numpy() for k in by_chain[0]}  # (chains, draws, ...)
        self.posterior_ = stacked
        self.sample_stats_ = {}
        samples = {k: torch.as_tensor(v.reshape((-1,) + v.shape[2:])) for k, v in stacked.items()}
        return samples, summarize_draws(stacked), divergences

    def density(self, data: MediaDataset, coordinates: str = "roi") -> NationalDensity:
        """The model's log density on ``data`` (national) as a NumPy function with gradient,
        in ``roi``, ``level`` or ``native`` coordinates (see :class:`~mmmlib.bayes.density.NationalDensity`)."""
        self._scales(data)
        prep = self._prepare(data)
        return self._density(prep, coordinates)

    def _density(self, prep: _Prepared, coordinates: str = "roi") -> NationalDensity:
        # LightweightMMM's raw index is sampled as the trend on t / T, with the prior that its
        # Normal(0, 1) coefficient on t implies (NationalDensity's trend_base): the same posterior,
        # without the curved ridge between a coefficient of order 1e-3 and its exponent.
        base = self.n_train_ if self.trend_index == "raw" else 1.0
        return NationalDensity(
            self.model_name,
            prep.media.numpy(),
            prep.controls.numpy(),
            prep.seasonal.numpy(),
            prep.t_index.numpy() / base,
            prep.target.numpy(),
            self.cost_prior_,
            media_prior=self.media_prior,
            roi_units=self.roi_units_,
            roi_prior=(self.roi_prior_mu_, self.roi_prior_sigma_),
            coordinates=coordinates,
            trend_base=base,
            lift=self._density_lift(),
        )

    def _density_lift(self) -> dict[str, np.ndarray] | None:
        """The lift tests in the NumPy density's units (target divided by its mean)."""
        lift = self.__dict__.get("lift_")
        if not lift:
            return None
        scale = float(lift["target_scale"])
        return {"channel": lift["channel"].numpy(), "multiplier": lift["multiplier"].numpy()[..., 0],
                "window": lift["window"].numpy(), "lift": lift["lift"].numpy() / scale, "se": lift["se"].numpy() / scale}

    def _run_nuts_numpy(
        self, prep, num_warmup, num_samples, chains, target_accept_prob, seed, max_tree_depth=10, coordinates="level"
    ):
        density = self._density(prep, coordinates)
        z0 = density.unconstrain(density.prior_median())
        # Start from a short full-rank VI fit (as Stan's Pathfinder initialisation): each chain at
        # its own draw of the approximation, warm-up from its covariance. The identity metric at
        # the prior median cost 2.6 times the gradients of sampling in warm-up (157 against 61 per
        # iteration, easy world, ROI prior); from the VI fit warm-up costs about what sampling does.
        vi = fit_advi(density, z0, steps=NUTS_INIT_VI_STEPS, seed=seed)
        starts = vi.sample(chains, seed=seed + 1)
        res = sample_nuts(
            density, starts, num_warmup=num_warmup, num_samples=num_samples, chains=chains, seed=seed,
            target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth, dense_mass=True,
            init_inverse_mass=vi.scale_tril @ vi.scale_tril.T, init_jitter=0.0,
        )
        self.nuts_ = res
        per_chain = [density.constrain(res.draws[c]) for c in range(chains)]
        for pc in per_chain:  # coordinates are a device of the sampler: report the sites of the Pyro program
            pc.pop("level", None)
            if self.media_prior != "roi":
                pc.pop("roi", None)
        stacked = {k: np.stack([pc[k] for pc in per_chain]) for k in per_chain[0]}  # (chains, draws, ...)
        self.posterior_ = stacked
        self.sample_stats_ = {
            "diverging": np.asarray(res.divergent, dtype=bool),
            "tree_depth": np.asarray(res.tree_depth),
            "n_steps": np.asarray(res.n_leapfrog),
        }
        samples = {k: torch.as_tensor(v.reshape((-1,) + v.shape[2:])) for k, v in stacked.items()}
        return samples, summarize_draws(stacked), res.num_divergent

    def _roi_to_coef(self, prep: _Prepared, samples: dict[str, torch.Tensor]) -> torch.Tensor:
        """``coef_media`` per draw from the sampled ROI (``media_prior="roi"``)."""
        n = samples["roi"].shape[0]
        x = prep.media.unsqueeze(-1).expand(*prep.media.shape, n)
        params = {k: samples[k].T for k in TRANSFORM_SITES[self.model_name]}
        with torch.no_grad():
            f = media_transform(self.model_name, x, params)  # (T, C, S)
        units = torch.as_tensor(self.roi_units_)
        return samples["roi"] * units[None, :] / f.sum(dim=0).T

    def _run_advi_numpy(self, prep, steps, lr, n_draws, seed, coordinates="level"):
        """Full-rank Gaussian VI on the NumPy density (:func:`mmmlib.inference.vi.fit_advi`): the
        ``AutoMultivariateNormal`` family, without Pyro's per-step overhead, in the sampler's
        coordinates (a Gaussian there is a different family than in others)."""
        density = self._density(prep, coordinates)
        z0 = density.unconstrain(density.prior_median())
        res = fit_advi(density, z0, steps=steps, seed=seed, lr=lr)
        self.advi_ = res
        self.svi_losses_ = -res.elbo
        draws = density.constrain(res.sample(n_draws, seed=seed + 1))
        draws.pop("level", None)
        if self.media_prior != "roi":
            draws.pop("roi", None)
        return {k: torch.as_tensor(v) for k, v in draws.items()}

    def _svi_attempt(self, args, target, steps, lr, init_scale, progress):
        """One SVI run; returns ``(guide, losses, failure)``, ``failure`` ``None`` or what went wrong."""
        geo = args[0].ndim == 3
        guide_cls = AutoLowRankMultivariateNormal if geo else AutoMultivariateNormal
        guide = guide_cls(self._model, init_loc_fn=init_to_median(num_samples=15), init_scale=init_scale)
        optim = pyro.optim.ClippedAdam({"lr": lr, "lrd": 0.1 ** (1.0 / max(steps, 1)), "clip_norm": 10.0})
        # The JIT-traced ELBO runs the same program as one compiled graph: the model's Python (plates,
        # transforms, sites) is traced once instead of replayed at each step.
        elbo = JitTrace_ELBO(ignore_jit_warnings=True) if SVI_JIT else Trace_ELBO()
        svi = SVI(self._model, guide, optim, elbo)
        losses = []
        iterator = range(steps)
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc="SVI")
        with warnings.catch_warnings():  # torch announces its tracer's successor at every trace
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.* is deprecated", category=DeprecationWarning)
            for step in iterator:
                try:
                    loss = svi.step(*args, target=target)
                except (RuntimeError, ValueError) as err:  # linalg.cholesky, or a NaN parameter of a distribution
                    last = (str(err).strip().splitlines() or [type(err).__name__])[-1]
                    return guide, losses, f"step {step}: {last[:200]}"
                if not math.isfinite(loss):
                    return guide, losses, f"step {step}: loss {loss}"
                losses.append(loss)
        return guide, losses, None

    def _run_svi(self, args, target, steps, lr, n_draws, progress):
        # A non-finite loss, or a guide whose covariance is no longer positive-definite (its
        # Cholesky fails), ends a run; it is restarted (a new start from the prior, the random
        # stream moving on) with half the learning rate and half the guide's initial scale, twice,
        # before the fit gives up.
        for attempt in range(3):
            pyro.clear_param_store()
            guide, losses, failure = self._svi_attempt(args, target, steps, lr / 2**attempt, 0.1 / 2**attempt, progress)
            if failure is None:
                break
        else:
            raise RuntimeError(
                f"SVI failed three times ({failure}), the last with learning rate {lr / 4:g}: the data may have a "
                "channel or geo whose scale differs by orders of magnitude from the others, or too few weeks with "
                "spend; try inference='nuts', fewer channels, or svi_lr smaller than that"
            )
        self.svi_restarts_ = attempt
        self.svi_losses_ = np.asarray(losses)
        with torch.no_grad():  # all draws at once: one batch from the Gaussian, then each site's bijection
            latent = guide.get_posterior().sample((n_draws,))
            out, pos = {}, 0
            for name, site in guide.prototype_trace.iter_stochastic_nodes():
                shape = tuple(guide._unconstrained_shapes[name])
                size = math.prod(shape)
                u = latent[:, pos : pos + size].reshape(n_draws, *shape)
                out[name] = biject_to(site["fn"].support)(u).clone()
                pos += size
            if pos != latent.shape[-1]:
                raise RuntimeError(f"guide latent has {latent.shape[-1]} coordinates, the sites {pos}")
            return out

    # --------------------------------------------------------------- outputs
    def _check_fitted(self) -> None:
        if self.samples_ is None:
            raise RuntimeError("call fit() first")

    def _draw_params(self, geo: bool, samples: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Transform parameters with the draw axis last, to broadcast against (T, C[, G], S)."""
        samples = self.samples_ if samples is None else samples
        out = {}
        for name in TRANSFORM_SITES[self.model_name]:
            v = samples[name].T  # (C, S)
            out[name] = v.unsqueeze(1) if geo else v  # (C, 1, S) for geo
        return out

    def _media_effect(
        self, media_scaled: torch.Tensor, samples: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Per-draw media effect on the scaled target, ``(S, T, C[, G])``, of the posterior
        draws (or of ``samples``, e.g. prior draws)."""
        samples = self.samples_ if samples is None else samples
        geo = media_scaled.ndim == 3
        x = media_scaled.unsqueeze(-1)  # (T, C[, G], 1) -> broadcast with draws
        n = samples["coef_media"].shape[0]
        x = x.expand(*media_scaled.shape, n)
        f = media_transform(self.model_name, x, self._draw_params(geo, samples))  # (T, C[, G], S)
        f = f.movedim(-1, 0)  # (S, T, C[, G])
        if geo:
            return f * samples["coef_media_geo"].unsqueeze(1)  # (S, C, G) -> (S, 1, C, G)
        return f * samples["coef_media"].unsqueeze(1)

    def _effect_draws(self, data: MediaDataset | None) -> np.ndarray:
        """Per-draw media effect on the original scale, ``(S, T, C)`` or ``(S, T, C, G)``.

        The training data's are computed once per posterior and kept: ROI, shares and
        contributions all read them. The cache holds the draws it was computed from, so replacing
        ``samples_`` (e.g. dropping non-finite draws) recomputes it.
        """
        self._check_fitted()
        training = data is None or data is self.data_
        cache = self.__dict__.get("_effect_cache")
        if training and cache is not None and cache[0] is self.samples_:
            return cache[1]
        prep = self._prepare(self.data_ if training else data, with_target=False)
        with torch.no_grad():
            eff = self._media_effect(prep.media).numpy()
        scale = np.asarray(self.target_scale_)
        eff = eff * (scale[None, None, None, :] if eff.ndim == 4 else float(scale))
        if training:
            self._effect_cache = (self.samples_, eff)
        return eff

    def contribution_draws(self, data: MediaDataset | None = None, by_geo: bool = False) -> np.ndarray:
        """Per-draw contributions on the original scale.

        Parameters
        ----------
        data : MediaDataset, optional
            Data to compute them on (default: the training data).
        by_geo : bool
            Keep the geo axis of a geo panel.

        Returns
        -------
        ndarray
            ``(S, T, C)`` summed over geos, or ``(S, T, C, G)`` with ``by_geo`` (geos in the
            order of ``data.geos``).
        """
        eff = self._effect_draws(data)
        if by_geo:
            if eff.ndim != 4:
                raise ValueError("by_geo=True needs a geo panel; this model was fitted to national data")
            return eff
        return eff.sum(axis=-1) if eff.ndim == 4 else eff

    def roi(self, level: float = 0.9, by_geo: bool = False) -> pd.DataFrame:
        """ROI per channel: total contribution over the training window / total spend (times
        ``revenue_per_kpi``: revenue per unit of spend).

        Parameters
        ----------
        level : float
            Probability of the central interval (90% by default).
        by_geo : bool
            One row per (geo, channel) of a geo panel: the geo's contribution over its own spend.

        Returns
        -------
        DataFrame
            Indexed by channel (or by geo and channel) with ``mean``, ``median``, ``lo``, ``hi``.
        """
        channels = list(self.data_.channels) if self.samples_ is not None else []
        if by_geo:
            contrib = self.contribution_draws(by_geo=True).sum(axis=1)  # (S, C, G)
            spend = self.data_.spend_array().sum(axis=0)  # (C, G)
            with np.errstate(divide="ignore", invalid="ignore"):
                draws = np.where(spend[None] > 0, self.revenue_per_kpi * contrib / spend[None], np.nan)
            draws = draws.transpose(0, 2, 1).reshape(draws.shape[0], -1)  # (S, G * C), geo-major
            geos = self.data_.geos
            out = interval_summary(draws, [f"{g}|{c}" for g in geos for c in channels], level)
            out.index = pd.MultiIndex.from_product([geos, channels], names=["geo", "channel"])
            return out
        contrib = self.contribution_draws().sum(axis=1)  # (S, C)
        total_spend = _weekly_spend(self.data_.spend_array()).sum(axis=0)
        return interval_summary(self.revenue_per_kpi * contrib / total_spend[None, :], channels, level)

    def prior_roi_draws(self, n: int = 1000, seed: int = 0) -> np.ndarray:
        """ROI per channel under the prior alone, on the training data's spend, ``(n, C)``.

        For the ``roi`` prior these are draws of its LogNormal; for the cost and flat priors,
        the ROI that prior draws of the coefficients and transform parameters imply. The global
        random state is left as it was.
        """
        self._check_fitted()
        if n < 2:
            raise ValueError(f"n must be >= 2, got {n}")
        prep = self._prepare(self.data_, with_target=False)
        sites = [*TRANSFORM_SITES[self.model_name], "coef_media", "coef_media_geo", "roi"]
        draws: dict[str, list[torch.Tensor]] = {}
        default_dtype = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            with torch.no_grad(), pyro.poutine.seed(rng_seed=seed):  # restores the random state on exit
                for _ in range(n):  # the model is written for one draw at a time
                    trace = pyro.poutine.trace(self._model).get_trace(
                        prep.media, prep.controls, prep.seasonal, prep.t_index)
                    for name in sites:
                        if name in trace.nodes:
                            draws.setdefault(name, []).append(trace.nodes[name]["value"])
        finally:
            torch.set_default_dtype(default_dtype)
        samples = {k: torch.stack(v) for k, v in draws.items()}
        if "roi" in samples:
            return samples["roi"].numpy()
        with torch.no_grad():
            eff = self._media_effect(prep.media, samples).numpy()  # (n, T, C[, G])
        scale = np.asarray(self.target_scale_)
        contrib = (eff * scale[None, None, None, :]).sum(axis=(1, 3)) if eff.ndim == 4 else eff.sum(axis=1) * float(scale)
        total_spend = _weekly_spend(self.data_.spend_array()).sum(axis=0)
        return self.revenue_per_kpi * contrib / total_spend[None, :]

    def roi_contraction(self, n_prior: int = 1000, seed: int = 0) -> pd.DataFrame:
        """How much the data narrowed each channel's ROI: posterior against prior spread.

        Returns
        -------
        DataFrame
            Indexed by channel: ``prior_sd`` and ``posterior_sd`` of log ROI (the ``roi``
            prior's is its :math:`s`; otherwise from :meth:`prior_roi_draws`), ``sd_ratio``
            and ``prior_dominated`` (``sd_ratio`` above :data:`PRIOR_DOMINATED_SD_RATIO`: the
            channel's ROI is mostly its prior's, so a report should not read it as measured).
        """
        self._check_fitted()
        channels = list(self.data_.channels)
        post = self.roi()  # fills the effect cache
        contrib = self.contribution_draws().sum(axis=1)
        total_spend = _weekly_spend(self.data_.spend_array()).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_post = np.log(self.revenue_per_kpi * contrib / total_spend[None, :])
        post_sd = np.array([np.std(col[np.isfinite(col)]) for col in log_post.T])
        if self.media_prior == "roi":
            prior_sd = self.roi_prior_sigma_.copy()
        else:
            with np.errstate(divide="ignore"):
                log_prior = np.log(self.prior_roi_draws(n_prior, seed))
            prior_sd = np.array([np.std(col[np.isfinite(col)]) for col in log_prior.T])
        out = pd.DataFrame({"prior_sd": prior_sd, "posterior_sd": post_sd}, index=pd.Index(channels, name="channel"))
        out["sd_ratio"] = out["posterior_sd"] / out["prior_sd"]
        out["prior_dominated"] = out["sd_ratio"] > PRIOR_DOMINATED_SD_RATIO
        out["posterior_median"] = post["median"].reindex(channels)
        return out

    def predict_lift(self, test: LiftTest) -> np.ndarray:
        """Posterior draws of the incremental target a lift test would measure, ``(S,)``: the
        contributions with the test's spend change minus the fitted ones, over its window and geos.

        Use it to plan an experiment (how large, how long, which channel) before running it, or to
        check a fit against a test it was not given.
        """
        self._check_fitted()
        data = self.data_
        arr = lift_arrays([test], data.channels, data.n_times, data.geos)
        c = int(arr["channel"][0])
        prep = self._prepare(data, with_target=False)
        changed = prep.media.clone()
        if changed.ndim == 3:
            changed[:, c, :] = changed[:, c, :] * torch.as_tensor(arr["multiplier"][:, 0, :])
        else:
            changed[:, c] = changed[:, c] * torch.as_tensor(arr["multiplier"][:, 0, 0])
        with torch.no_grad():
            diff = (self._media_effect(changed) - self._media_effect(prep.media))[:, :, c].numpy()  # (S, T[, G])
        scale = np.asarray(self.target_scale_, dtype=np.float64)
        if diff.ndim == 3:
            return (diff * arr["window"][None, :, :1] * (scale * arr["geo_mask"][0])[None, None, :]).sum(axis=(1, 2))
        return (diff * arr["window"][None, :, 0]).sum(axis=1) * float(scale)

    def contribution_share(self, level: float = 0.9) -> pd.DataFrame:
        """Each channel's share of the total media contribution (same columns as :meth:`roi`)."""
        contrib = self.contribution_draws().sum(axis=1)
        share = contrib / contrib.sum(axis=1, keepdims=True)
        return interval_summary(share, list(self.data_.channels), level)

    def contributions(self) -> pd.DataFrame:
        """Posterior-mean contribution per period and channel, plus ``baseline`` (national sum)."""
        c = self.contribution_draws().mean(axis=0)  # (T, C)
        pred = self.predict_draws(self.data_).mean(axis=0)  # (T,)
        out = pd.DataFrame(c, index=self.data_.dates, columns=list(self.data_.channels))
        out.insert(0, "baseline", pred - c.sum(axis=1))
        return out

    def predict_draws(self, data: MediaDataset, history: MediaDataset | None = None) -> np.ndarray:
        """Posterior mean function draws on the original scale, national sum, ``(S, T)``.

        ``history`` (e.g. the training data) is prepended so carry-over continues into
        ``data``; the trend and seasonality continue from the end of the history.
        """
        self._check_fitted()
        if history is not None:
            full = MediaDataset(
                frame=pd.concat([history.frame, data.frame], ignore_index=True),
                date=data.date, media=data.media, spend=data.spend, target=data.target,
                controls=data.controls, geo=data.geo, channels=data.channels, name=data.name,
            )
            return self.predict_draws(full)[:, -data.n_times :]
        prep = self._prepare(data, with_target=False)
        with torch.no_grad():
            mu = self._mean_function(prep)  # (S, T[, G])
        scale = np.asarray(self.target_scale_)
        mu = mu.numpy()
        if mu.ndim == 3:
            return (mu * scale[None, None, :]).sum(axis=-1)
        return mu * float(scale)

    def _mean_function(self, prep: _Prepared) -> torch.Tensor:
        s = self.samples_
        geo = prep.media.ndim == 3
        t = prep.t_index
        trend_t = apply_exponent_safe(t.unsqueeze(0), s["expo_trend"].unsqueeze(-1))  # (S, T)
        if geo:
            mu = s["intercept"].unsqueeze(1) + s["coef_trend"].unsqueeze(1) * trend_t.unsqueeze(-1)
        else:
            mu = s["intercept"].unsqueeze(-1) + s["coef_trend"].unsqueeze(-1) * trend_t
        if "gamma_seasonality" in s:
            season = s["gamma_seasonality"] @ prep.seasonal.T  # (S, T)
            mu = mu + (season.unsqueeze(-1) * s["seasonality_scale"].unsqueeze(1) if geo else season)
        if "coef_extra" in s:
            if geo:
                mu = mu + torch.einsum("tkg,sk->stg", prep.controls, s["coef_extra"])
            else:
                mu = mu + s["coef_extra"] @ prep.controls.T
        eff = self._media_effect(prep.media).sum(dim=2)  # (S, T[, G])
        return mu + eff

    def predict(self, data: MediaDataset, history: MediaDataset | None = None, level: float = 0.9) -> pd.DataFrame:
        """Predicted (national) target per period: ``mean``, ``lo``, ``hi`` of the mean function
        and ``lo_obs``/``hi_obs`` including observation noise."""
        mu = self.predict_draws(data, history)
        sigma = self.samples_["sigma"].numpy()
        scale = np.asarray(self.target_scale_)
        noise_sd = (sigma * scale).reshape(sigma.shape[0], -1)
        noise_sd = np.sqrt((noise_sd**2).sum(axis=1))[:, None]
        rng = np.random.default_rng(0)
        obs = mu + rng.normal(size=mu.shape) * noise_sd
        a = (1.0 - level) / 2.0
        return pd.DataFrame(
            {
                "mean": mu.mean(axis=0),
                "lo": np.quantile(mu, a, axis=0),
                "hi": np.quantile(mu, 1 - a, axis=0),
                "lo_obs": np.quantile(obs, a, axis=0),
                "hi_obs": np.quantile(obs, 1 - a, axis=0),
            },
            index=data.dates,
        )

    def response_draws(self, channel: str, weekly_spend: np.ndarray) -> np.ndarray:
        """Long-run weekly contribution (original scale, national) of a constant weekly spend,
        per draw: ``(S, len(weekly_spend))``.

        With normalised adstock (and normalised carryover weights) a constant input is its
        own steady state, so the response is :math:`\\beta f(s / (\\text{price}\\cdot\\bar m))`.
        """
        self._check_fitted()
        if channel not in self.data_.channels:
            raise ValueError(f"unknown channel {channel!r}; the model's channels are {list(self.data_.channels)}")
        c = list(self.data_.channels).index(channel)
        spend = np.atleast_1d(np.asarray(weekly_spend, dtype=np.float64))
        geo = self.data_.geo is not None
        if geo:
            # spend shared across geos as in the training data
            split = self.data_.spend_array()[:, c, :].sum(axis=0)
            split = split / split.sum()
            x = spend[:, None] * split[None, :] / self.price_[c] / self.media_scale_[c]  # (N, G)
        else:
            x = spend / self.price_[c] / self.media_scale_[c]  # (N,)
        x_t = torch.as_tensor(x).unsqueeze(-1)  # (N[, G], 1)
        name_params = {
            k: self.samples_[k][:, c].reshape(1, -1) if geo else self.samples_[k][:, c]
            for k in TRANSFORM_SITES[self.model_name]
        }
        f = _steady_state(self.model_name, x_t, name_params)  # (N[, G], S)
        if geo:
            beta = self.samples_["coef_media_geo"][:, c, :].T.numpy()  # (G, S)
            resp = (f.numpy() * beta[None] * np.asarray(self.target_scale_)[None, :, None]).sum(axis=1)
        else:
            resp = f.numpy() * self.samples_["coef_media"][:, c].numpy()[None, :] * float(self.target_scale_)
        return resp.T

    def response_curves(self, n_points: int = 50, max_multiple: float = 3.0) -> pd.DataFrame:
        """Posterior response curves for every channel: long-run weekly contribution at
        constant weekly spend from 0 to ``max_multiple`` × the average; tidy frame with
        ``channel``, ``spend``, ``mean``, ``lo``, ``hi``."""
        self._check_fitted()
        if n_points < 2 or not max_multiple > 0:
            raise ValueError(f"n_points must be >= 2 and max_multiple > 0, got {n_points} and {max_multiple}")
        rows = []
        mean_weekly = _weekly_spend(self.data_.spend_array()).mean(axis=0)
        for c, ch in enumerate(self.data_.channels):
            grid = np.linspace(0.0, max_multiple * mean_weekly[c], n_points)
            r = self.response_draws(ch, grid)
            rows.append(
                pd.DataFrame(
                    {
                        "channel": ch,
                        "spend": grid,
                        "mean": r.mean(axis=0),
                        "lo": np.quantile(r, 0.05, axis=0),
                        "hi": np.quantile(r, 0.95, axis=0),
                    }
                )
            )
        return pd.concat(rows, ignore_index=True)

    def diagnostics(self) -> Diagnostics:
        """R-hat, ESS, divergences and fit time (see :class:`Diagnostics`)."""
        self._check_fitted()
        return self.diagnostics_

    def to_inference_data(self) -> az.InferenceData:
        """The posterior as an :class:`arviz.InferenceData`: every site with its chains (SVI: one
        "chain" of guide draws), named dimensions (``channel``, ``geo``, ...), the sampler's
        statistics (NumPy NUTS: ``diverging``, ``tree_depth``, ``n_steps``) and, as attributes,
        the model, prior, inference and the mmmlib version. ``idata.to_netcdf(path)`` saves it."""
        self._check_fitted()
        from mmmlib import __version__

        channels = list(self.data_.channels)
        dims = {name: ["channel"] for name in (*TRANSFORM_SITES[self.model_name], "coef_media", "roi")}
        coords: dict[str, list] = {"channel": channels}
        if self.data_.geo is not None:
            geos = list(pd.unique(self.data_.frame[self.data_.geo]))
            coords["geo"] = geos
            dims.update({k: ["geo"] for k in ("intercept", "sigma", "coef_trend", "seasonality_scale")})
            dims["coef_media_geo"] = ["channel", "geo"]
        if self.data_.controls:
            coords["control"] = list(self.data_.controls)
            dims["coef_extra"] = ["control"]
        post = {k: v for k, v in self.posterior_.items()}
        dims = {k: v for k, v in dims.items() if k in post and post[k].ndim == 2 + len(v)}
        return inference_data(
            post, self.sample_stats_ or None, dims=dims, coords=coords,
            attrs=dict(model=self.model_name, media_prior=self.media_prior, inference=self.inference_,
                       backend=self.backend_, mmmlib_version=__version__),
        )

    def save(self, path: str | Path) -> Path:
        """Write the fitted model to one file (see :func:`mmmlib.bayes.persist.save_model`):
        :meth:`load` with the same mmmlib version gives identical :meth:`roi` and
        :meth:`predict`; another version is refused."""
        from mmmlib.bayes.persist import save_model

        return save_model(self, path)

    @classmethod
    def load(cls, path: str | Path) -> BayesianMMM:
        """Read a model written by :meth:`save` with this mmmlib version."""
        from mmmlib.bayes.persist import load_model

        model = load_model(path)
        if not isinstance(model, cls):
            raise ValueError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def summary(self) -> dict[str, Any]:
        """Short description of the fitted model for tables."""
        d = self.diagnostics()
        return {
            "model": self.model_name,
            "media_prior": self.media_prior,
            "inference": d.inference,
            "draws": d.num_draws,
            "max_rhat": d.max_rhat,
            "divergences": d.divergences,
            "seconds": d.fit_seconds,
        }


def _weekly_spend(spend: np.ndarray) -> np.ndarray:
    """National spend per period and channel, ``(T, C)``, from ``(T, C)`` or ``(T, C, G)``."""
    return spend.reshape(spend.shape[0], spend.shape[1], -1).sum(axis=2)


def _steady_state(model: str, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Media transform at a constant input (normalised adstock/carryover leave it unchanged)."""
    if model == "hill_adstock":
        return hill(x, params["half_max_effective_concentration"], params["slope"])
    return apply_exponent_safe(x, params["exponent"])
