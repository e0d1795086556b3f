"""Score a fitted model against a simulated world's ground truth.

One place for the recovery numbers every chapter reports: ROI and contribution-share error,
interval coverage, how much the data moved the ROI away from its prior, holdout error and
convergence diagnostics, as one row per fit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

from mmmlib.bayes.model import BayesianMMM
from mmmlib.data import MediaDataset
from mmmlib.metrics import coverage, mae, mape
from mmmlib.transforms import adstock, fourier_features, hill
from mmmlib.worlds.media import GroundTruth, SimulatedWorld

__all__ = ["CONVERGED", "FitSpec", "baseline_design", "converged", "fit_converged", "fit_over_seeds", "kept_fits", "fit_and_score", "holdout_score", "oracle_roi", "positive_gaussian_draws",
           "roi_table", "score_fit"]


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
    cost_prior_multiplier : float
        Scale of the cost prior (see :class:`BayesianMMM`; LightweightMMM's README: 0.15).
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
    cost_prior_multiplier: float = 0.15

    def build(self) -> BayesianMMM:
        return BayesianMMM(model=self.model, media_prior=self.media_prior, cost_prior_multiplier=self.cost_prior_multiplier)


CONVERGED = "largest split R-hat at most 1.01 and under 1% divergent transitions"
"""The book's criterion for a NUTS fit whose numbers it reports (:func:`converged`)."""


def converged(row: dict) -> bool:
    """Whether a scored NUTS fit meets :data:`CONVERGED` (SVI fits have no such check: ``True``)."""
    if row.get("inference") != "nuts":
        return True
    return bool(row["max_rhat"] <= 1.01 and row["divergence_rate"] < 0.01)


def fit_converged(spec: FitSpec, world: SimulatedWorld, seed: int = 0, refit: bool = True) -> tuple[BayesianMMM, dict]:
    """:func:`fit_and_score`, and once more with twice the warm-up and a target acceptance of
    0.95 (smaller steps) when the first fit does not meet :data:`CONVERGED`.

    The row gains ``refit`` (whether the second fit was run) and ``converged`` (whether the
    fit returned meets the criterion); ``seconds`` covers both fits. ``refit=False`` never runs
    the second fit (a smoke test).
    """
    mmm, row = fit_and_score(spec, world, seed=seed)
    refit = refit and spec.inference == "nuts" and not converged(row)
    if refit:
        first = row["seconds"]
        again = replace(spec, num_warmup=2 * spec.num_warmup, target_accept_prob=max(0.95, spec.target_accept_prob))
        mmm, row = fit_and_score(again, world, seed=seed)
        row["seconds"] += first
    row.update(refit=refit, converged=converged(row))
    return mmm, row


def kept_fits(spread: pd.DataFrame, by: Sequence[str] = ("world", "label"), min_converged: int = 2) -> pd.DataFrame:
    """The fits whose numbers are reported: per group of ``by``, those that meet
    :data:`CONVERGED`, or every fit of a group where fewer than ``min_converged`` do (so that a mean
    and a spread exist); the column ``kept_all`` marks such groups.

    Examples
    --------
    >>> spread = pd.DataFrame({"world": ["a"] * 3 + ["b"] * 2, "label": "x",
    ...                        "converged": [True, True, False, False, True], "roi_mape": [.1, .2, .3, .4, .5]})
    >>> kept_fits(spread)[["world", "roi_mape", "kept_all"]].to_numpy().tolist()
    [['a', 0.1, False], ['a', 0.2, False], ['b', 0.4, True], ['b', 0.5, True]]
    """
    parts = []
    for _, group in spread.groupby(list(by), sort=False):
        good = group[group["converged"]]
        parts.append(good.assign(kept_all=False) if len(good) >= min_converged else group.assign(kept_all=True))
    return pd.concat(parts)


def fit_over_seeds(specs: Sequence[FitSpec], make_world: Callable[[int], SimulatedWorld], seeds: Sequence[int],
                   known: Mapping[tuple[int, str], tuple[BayesianMMM, dict]] | None = None,
                   budget: bool = False, refit: bool = True) -> pd.DataFrame:
    """Every spec on the worlds ``make_world(s)``, ``s`` in ``seeds`` (seed ``s`` also seeds the
    sampler), by :func:`fit_converged`: one row per (seed, spec) with the scores of
    :func:`score_fit`, ``world_seed``, ``refit`` and ``converged``.

    Parameters
    ----------
    known : mapping, optional
        ``{(seed, label): (model, row)}`` fits already made (reused, not refitted).
    budget : bool
        Also ``regret``: the budget regret of the allocation that maximises the posterior-mean
        response within +/-20% of each channel's mean weekly spend, against the true curves
        (:func:`mmmlib.optimize.regret`).
    refit : bool
        Passed to :func:`fit_converged`.
    """
    from mmmlib.optimize import model_response, optimize_budget, regret, truth_response

    rows = []
    for s in seeds:
        world = None
        for spec in specs:
            if known and (s, spec.label) in known:
                mmm, row = known[s, spec.label]
            else:
                world = world or make_world(s)
                mmm, row = fit_converged(spec, world, seed=s, refit=refit)
            row = dict(row, world_seed=s)
            row.setdefault("refit", False)
            row.setdefault("converged", converged(row))
            if budget:
                truth = (world or make_world(s)).truth
                alloc = optimize_budget(model_response(mmm), truth.spend.mean().to_numpy(), list(truth.channels))
                row["regret"] = round(regret(alloc, truth_response(truth))[0], 9) + 0.0
            rows.append(row)
    return pd.DataFrame(rows)


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
    :math:`\beta \ge 0` (drawn by :func:`positive_gaussian_draws`). What remains of its ROI error
    is noise and collinearity: a reference for what the data alone identify, not a floor (a method
    whose prior sits near the truth of a poorly measured channel can beat it). ROI is
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
    design = np.column_stack([baseline_design(T, world.config.seasonality_degrees, data.controls_array()[:n]), f])
    y = data.target_array()[:n].astype(np.float64)
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ beta
    cov = float(resid @ resid) / (T - design.shape[1]) * np.linalg.inv(design.T @ design)
    mean, cov_m = beta[-C:], cov[-C:, -C:]
    b = positive_gaussian_draws(mean, cov_m, draws, seed)
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


def baseline_design(n_weeks: int, seasonality_degrees: int, controls: np.ndarray) -> np.ndarray:
    """The oracle's baseline regressors, ``(n_weeks, 2 + 2 D + k)``: an intercept, the week
    index (a linear trend), ``D`` yearly Fourier harmonics and the ``k`` controls.

    Examples
    --------
    >>> baseline_design(4, 1, np.zeros((4, 1))).shape
    (4, 5)
    """
    controls = np.asarray(controls, dtype=np.float64).reshape(n_weeks, -1)
    return np.column_stack([np.ones(n_weeks), np.arange(n_weeks, dtype=np.float64),
                            fourier_features(n_weeks, 52.0, seasonality_degrees).numpy(), controls])


def positive_gaussian_draws(mean: np.ndarray, cov: np.ndarray, draws: int, seed: int = 0,
                            chains: int = 200, burn_in: int = 50) -> np.ndarray:
    """Draws of :math:`\\mathcal N(\\mu, \\Sigma)` restricted to the positive orthant, ``(draws, d)``,
    by Gibbs sampling (each coordinate given the others is a normal truncated at 0), ``chains``
    chains in parallel from the clipped mean. A zero covariance (noise-free data) gives the mean.

    The posterior of non-negative regression effects under a flat prior, as the oracle
    (:func:`oracle_roi`) and Chapter 8's reader of the true curves draw it.

    Examples
    --------
    >>> d = positive_gaussian_draws(np.array([0.0, 1.0]), np.eye(2), draws=2000, seed=0)
    >>> bool((d >= 0).all()), round(float(d[:, 0].mean()), 1)  # half-normal mean: 0.8
    (True, 0.8)
    """
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
