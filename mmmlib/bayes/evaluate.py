"""Score a fitted model against a simulated world's ground truth.

One place for the recovery numbers every chapter reports: ROI and contribution-share error,
interval coverage, how much the data moved the ROI away from its prior, holdout error and
convergence diagnostics, as one row per fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from mmmlib.bayes.model import BayesianMMM
from mmmlib.data import MediaDataset
from mmmlib.metrics import coverage, mae, mape
from mmmlib.transforms import adstock, fourier_features, hill
from mmmlib.worlds.media import GroundTruth, SimulatedWorld

__all__ = ["FitSpec", "roi_table", "score_fit", "fit_and_score", "holdout_score", "oracle_roi"]


@dataclass(frozen=True)
class FitSpec:
    """One fit of a chapter-1 model: which model, prior and inference, and how long.

    Attributes
    ----------
    label : str
        Row label in tables.
    model : str
        ``adstock``, ``hill_adstock`` or ``carryover``.
    media_prior : str
        ``cost``, ``flat`` or ``roi``.
    inference : str
        ``nuts`` or ``svi``.
    num_warmup, num_samples, chains : int
        NUTS settings (SVI draws ``num_samples * chains``).
    svi_steps : int
        SVI steps.
    backend : str
        NUTS backend (see :meth:`BayesianMMM.fit`).
    max_tree_depth : int
        NUTS tree-depth cap.
    target_accept_prob : float
        NUTS step-size adaptation target.
    coordinates : str, optional
        Sampler coordinates (see :meth:`BayesianMMM.fit`; default: the model's).
    """

    label: str
    model: str = "hill_adstock"
    media_prior: str = "cost"
    inference: str = "nuts"
    num_warmup: int = 1000
    num_samples: int = 1000
    chains: int = 2
    svi_steps: int = 3000
    backend: str = "auto"
    max_tree_depth: int = 10
    target_accept_prob: float = 0.85
    coordinates: str | None = None

    def build(self) -> BayesianMMM:
        return BayesianMMM(model=self.model, media_prior=self.media_prior)


def roi_table(mmm: BayesianMMM, truth: GroundTruth) -> pd.DataFrame:
    """Per channel: true ROI, posterior median and 90% interval, whether it covers the truth,
    the absolute percentage error, and the posterior-to-prior spread of log ROI (``roi``
    prior only; near 1 means the data said little about the channel)."""
    r = mmm.roi()
    true = truth.roi.reindex(r.index)
    out = pd.DataFrame(
        {
            "true": true,
            "median": r["median"],
            "lo": r["lo"],
            "hi": r["hi"],
        }
    )
    out["covered"] = (out["lo"] <= out["true"]) & (out["true"] <= out["hi"])
    out["abs_pct_error"] = (out["median"] - out["true"]).abs() / out["true"]
    if mmm.media_prior == "roi":
        log_roi = np.log(mmm.samples_["roi"].numpy())
        out["posterior_to_prior_sd"] = log_roi.std(axis=0) / mmm.roi_prior_sigma_
    return out


def score_fit(mmm: BayesianMMM, world: SimulatedWorld, label: str = "") -> dict[str, float | int | str]:
    """One summary row: ROI MAPE, share MAE, channels covered, R-hat, divergences, seconds."""
    table = roi_table(mmm, world.truth)
    share = mmm.contribution_share()
    true_share = world.truth.share.reindex(share.index)
    d = mmm.diagnostics()
    return {
        "label": label,
        "world": world.config.name,
        "model": mmm.model_name,
        "media_prior": mmm.media_prior,
        "inference": d.inference,
        "roi_mape": mape(table["median"], table["true"]),
        "share_mae": mae(share["median"], true_share),
        "covered": int(table["covered"].sum()),
        "channels": len(table),
        "coverage": coverage(table["lo"], table["hi"], table["true"]),
        "max_rhat": d.max_rhat,
        "divergences": d.divergences,
        "divergence_rate": d.divergence_rate,
        "leapfrog_per_draw": d.mean_leapfrog,
        "depth_hits": d.tree_depth_hits,
        "seconds": d.fit_seconds,
    }


def fit_and_score(spec: FitSpec, world: SimulatedWorld, seed: int = 0) -> tuple[BayesianMMM, dict]:
    """Fit ``spec`` to the world's data and score it (see :func:`score_fit`)."""
    mmm = spec.build().fit(
        world.data,
        inference=spec.inference,
        num_warmup=spec.num_warmup,
        num_samples=spec.num_samples,
        chains=spec.chains,
        seed=seed,
        svi_steps=spec.svi_steps,
        backend=spec.backend,
        max_tree_depth=spec.max_tree_depth,
        target_accept_prob=spec.target_accept_prob,
        coordinates=spec.coordinates,
    )
    return mmm, score_fit(mmm, world, spec.label)


def holdout_score(mmm: BayesianMMM, train: MediaDataset, test: MediaDataset, level: float = 0.9) -> dict[str, float]:
    """Out-of-sample error of the last weeks: MAPE of the posterior mean and coverage of the
    ``level`` predictive interval (with observation noise), with adstock carried over from
    the training weeks."""
    pred = mmm.predict(test, history=train, level=level)
    y = test.target_array().reshape(test.n_times, -1).sum(axis=1)
    return {
        "holdout_mape": mape(pred["mean"].to_numpy(), y),
        "holdout_coverage": coverage(pred["lo_obs"].to_numpy(), pred["hi_obs"].to_numpy(), y),
    }


def oracle_roi(
    world: SimulatedWorld, level: float = 0.9, draws: int = 4000, seed: int = 0, weeks: int | None = None
) -> pd.DataFrame:
    r"""ROI of an analyst who knows the world's structure: what the data alone can tell.

    The analyst knows every channel's true media transform (adstock decay, Hill half-saturation and
    slope) and the form of the baseline (intercept, linear trend, the world's yearly harmonics,
    controls), so sales are linear in known features, and that media effects are not negative. With
    a flat prior, the posterior of the media coefficients is the least-squares Gaussian
    :math:`\mathcal N(\hat\beta, \hat\sigma^2 (X^\top X)^{-1})` restricted to
    :math:`\beta \ge 0` (drawn by rejection). What remains of the ROI error is noise and
    collinearity: a floor for any method that reads these data. ROI is
    :math:`\beta_m \sum_t f_m(t) / \sum_t \text{spend}_m(t)`; reported are its posterior median
    and central ``level`` interval.

    Parameters
    ----------
    world : SimulatedWorld
        A national world with its truth.
    level : float
        Probability of the central interval.
    draws : int
        Posterior draws of the restricted Gaussian.
    seed : int
        Seed of those draws.
    weeks : int, optional
        Fit and score only the first ``weeks`` weeks (a model's training window); the true ROI is
        then the truth's over those weeks. Default: every week.

    Returns
    -------
    pandas.DataFrame
        Per channel: ``true``, ``median``, ``lo``, ``hi``, ``covered``, ``abs_pct_error`` (the
        columns of :func:`roi_table`), and ``ols``, the unrestricted least-squares ROI.
    """
    data, truth = world.data, world.truth
    if data.geo is not None:
        raise ValueError("oracle_roi: national worlds only")
    n = data.n_times if weeks is None else int(weeks)
    if not 1 <= n <= data.n_times:
        raise ValueError(f"oracle_roi: weeks must be in [1, {data.n_times}], got {weeks}")
    p = truth.params.reindex(list(data.channels))
    x = data.media_array()[:n] / p["media_scale"].to_numpy(copy=True)[None, :]
    f = hill(adstock(x, p["decay"].to_numpy(copy=True)), p["half_saturation"].to_numpy(copy=True),
             p["slope"].to_numpy(copy=True)).numpy()
    T, C = f.shape
    design = np.column_stack([
        np.ones(T), np.arange(T, dtype=np.float64),
        fourier_features(T, 52.0, world.config.seasonality_degrees).numpy(), data.controls_array()[:n], f,
    ])
    y = data.target_array()[:n].astype(np.float64)
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ beta
    cov = float(resid @ resid) / (T - design.shape[1]) * np.linalg.inv(design.T @ design)
    mean, cov_m = beta[-C:], cov[-C:, -C:]
    b = _positive_gaussian_draws(mean, cov_m, draws, seed)
    to_roi = f.sum(axis=0) / data.spend_array()[:n].sum(axis=0)
    roi = b * to_roi[None, :]
    a = (1.0 - level) / 2.0
    out = pd.DataFrame(
        {
            "true": (truth.contributions.iloc[:n].sum() / truth.spend.iloc[:n].sum()).reindex(list(data.channels)).to_numpy(),
            "median": np.median(roi, axis=0),
            "lo": np.quantile(roi, a, axis=0),
            "hi": np.quantile(roi, 1.0 - a, axis=0),
        },
        index=pd.Index(list(data.channels), name="channel"),
    )
    out["covered"] = (out["lo"] <= out["true"]) & (out["true"] <= out["hi"])
    out["abs_pct_error"] = (out["median"] - out["true"]).abs() / out["true"]
    out["ols"] = mean * to_roi
    return out


def _positive_gaussian_draws(mean: np.ndarray, cov: np.ndarray, draws: int, seed: int = 0,
                             chains: int = 200, burn_in: int = 50) -> np.ndarray:
    """Draws of :math:`\\mathcal N(\\mu, \\Sigma)` restricted to the positive orthant, ``(draws, d)``,
    by Gibbs sampling (each coordinate given the others is a normal truncated at 0), ``chains``
    chains in parallel from the clipped mean. A zero covariance (noise-free data) gives the mean."""
    d = len(mean)
    if not np.any(cov):
        return np.tile(np.maximum(mean, 0.0), (draws, 1))
    rng = np.random.default_rng(seed)
    prec = np.linalg.inv(cov)
    sd = 1.0 / np.sqrt(np.diag(prec))
    x = np.tile(np.maximum(mean, 1e-9 * np.sqrt(np.diag(cov))), (chains, 1))
    per_chain = -(-draws // chains)
    out = []
    for it in range(burn_in + per_chain):
        for j in range(d):
            others = np.delete(np.arange(d), j)
            loc = mean[j] - (x[:, others] - mean[others]) @ prec[j, others] / prec[j, j]
            x[:, j] = stats.truncnorm.rvs(-loc / sd[j], np.inf, loc=loc, scale=sd[j], random_state=rng)
        if it >= burn_in:
            out.append(x.copy())
    return np.concatenate(out)[:draws]
