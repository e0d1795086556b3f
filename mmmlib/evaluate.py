"""Score a fitted model against a simulated world's ground truth.

One place for the recovery numbers every chapter reports: ROI and contribution-share error,
interval coverage, how much the data moved the ROI away from its prior, holdout error and
convergence diagnostics, as one row per fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mmmlib.data import MediaDataset
from mmmlib.metrics import coverage, mae, mape
from mmmlib.models.bayes import BayesianMMM
from mmmlib.simulate.media import GroundTruth, SimulatedWorld

__all__ = ["FitSpec", "roi_table", "score_fit", "fit_and_score", "holdout_score"]


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
        out["posterior_to_prior_sd"] = log_roi.std(axis=0) / mmm.roi_prior[1]
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
