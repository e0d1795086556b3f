r"""Simulation-based calibration of the Bayesian MMM (Talts et al. 2018).

Draw every parameter from the prior, simulate a target from the model with those parameters,
fit the simulated target, and record the *rank* of each true value among :math:`L` posterior
draws. If the sampler draws from the exact posterior, each rank is uniform on
:math:`\{0, \dots, L\}` whatever the prior, the media or the model; a sampler that is too
narrow piles ranks at both ends, one that is biased piles them at one end.

The simulation runs the Pyro program of :class:`~mmmlib.bayes.model.BayesianMMM` forwards
(``target`` unobserved), while the fits use the NumPy density and the book's own NUTS and VI:
a density that disagreed with the program fails the check like a wrong sampler, if the error
is large enough for the number of replications (``SBCSettings.mutations`` measures how large).
The media, controls and spend are those of a simulated world; only the parameters and the target
are drawn, in the model's scaled units. See Chapter 7.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
import pandas as pd
import pyro
import torch
from pyro import poutine
from scipy import stats
from torch.distributions import constraints

from mmmlib.bayes.evaluate import converged as _meets_criterion
from mmmlib.bayes.model import (
    TRANSFORM_SITES,
    BayesianMMM,
    _Prepared,
    _transform_priors,
    media_transform,
)
from mmmlib.data import MediaDataset
from mmmlib.workers import map_on_cores

__all__ = ["KIND_LABELS", "MUTATIONS", "SBCSettings", "SBCResult", "plot_rank_histograms", "run_sbc", "simulate_from_prior", "uniformity"]


def _check_bins(ranks_of: int, bins: int) -> None:
    """The rank histogram's bins must split the :math:`L + 1` possible ranks evenly."""
    if bins < 1 or (ranks_of + 1) % bins:
        raise ValueError(f"bins ({bins}) must divide ranks_of + 1 ({ranks_of + 1})")


@dataclass(frozen=True)
class SBCSettings:
    """One simulation-based calibration study.

    Attributes
    ----------
    replications : int
        Prior draws, each simulated and fitted once per inference method.
    model, media_prior : str
        The :class:`~mmmlib.bayes.model.BayesianMMM` being checked.
    num_warmup, num_samples, chains, target_accept_prob, max_tree_depth :
        NUTS settings of each fit.
    svi_steps : int
        Steps of the full-rank Gaussian VI fit (0: no VI arm).
    ranks_of : int
        :math:`L`: posterior draws (evenly thinned) each true value is ranked among.
    bins : int
        Histogram bins of the uniformity test (:math:`L + 1` must be a multiple).
    mutations : bool
        Also rank the :data:`MUTATIONS` of every NUTS fit's draws (inference ``"NUTS, <name>"``):
        the power of the test against posteriors known to be wrong, at no extra sampling.
    """

    replications: int = 100
    model: str = "hill_adstock"
    media_prior: str = "roi"
    num_warmup: int = 500
    num_samples: int = 500
    chains: int = 2
    target_accept_prob: float = 0.9
    max_tree_depth: int = 10
    svi_steps: int = 2000
    ranks_of: int = 99
    bins: int = 10
    mutations: bool = False

    def __post_init__(self) -> None:
        if self.replications < 1:
            raise ValueError(f"replications must be >= 1, got {self.replications}")
        _check_bins(self.ranks_of, self.bins)
        if self.num_samples * self.chains < self.ranks_of:
            raise ValueError(f"num_samples * chains must be >= ranks_of ({self.ranks_of})")


@dataclass
class SBCResult:
    """Ranks of one study.

    Attributes
    ----------
    settings : SBCSettings
    ranks : pandas.DataFrame
        One row per (replication, inference, parameter): ``rank`` in ``0..L``, the true value,
        and the fit's ``divergences`` and ``max_rhat`` (NUTS).
    fits : pandas.DataFrame
        One row per (replication, inference): divergences, their share of the draws, largest
        R-hat, seconds, and ``converged`` (whether a NUTS fit meets
        :data:`~mmmlib.bayes.evaluate.CONVERGED`; VI fits: ``True``).
    """

    settings: SBCSettings
    ranks: pd.DataFrame
    fits: pd.DataFrame = field(repr=False)


def _checked_parameters(mmm: BayesianMMM, channels: list[str]) -> list[tuple[str, str, int]]:
    """(label, site, channel index) of every checked quantity: each channel's ROI and its
    transform parameters."""
    out = []
    for c, ch in enumerate(channels):
        out.append((f"roi[{ch}]", "roi", c))
        out += [(f"{site}[{ch}]", site, c) for site in TRANSFORM_SITES[mmm.model_name]]
    return out


def _roi(mmm: BayesianMMM, media: torch.Tensor, draws: dict[str, np.ndarray]) -> np.ndarray:
    """ROI per draw, ``(S, C)``, from ``coef_media`` and the transform parameters."""
    if "roi" in draws:
        return np.asarray(draws["roi"])
    n = draws["coef_media"].shape[0]
    params = {k: torch.as_tensor(draws[k]).T for k in TRANSFORM_SITES[mmm.model_name]}
    with torch.no_grad():
        f = media_transform(mmm.model_name, media.unsqueeze(-1).expand(*media.shape, n), params)  # (T, C, S)
    return np.asarray(draws["coef_media"]) * f.sum(dim=0).T.numpy() / mmm.roi_units_[None, :]


def simulate_from_prior(mmm: BayesianMMM, data: MediaDataset, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One draw of every parameter from the prior and of the (scaled) target given them.

    ``mmm`` must have been scaled on ``data`` (``mmm._scales(data)``). Returns the true values
    (with ``roi`` for any prior) and the simulated scaled target ``(T,)``.
    """
    prep = mmm._prepare(data, with_target=False)
    pyro.set_rng_seed(seed)
    with torch.no_grad():
        tr = poutine.trace(mmm._model).get_trace(prep.media, prep.controls, prep.seasonal, prep.t_index, target=None)
    truth = {
        name: node["value"].detach().numpy().copy()
        for name, node in tr.nodes.items()
        if node["type"] == "sample" and name != "target"
    }
    if "coef_media" in tr.nodes:
        truth["coef_media"] = tr.nodes["coef_media"]["value"].detach().numpy().copy()
    truth["roi"] = _roi(mmm, prep.media, {k: v[None] for k, v in truth.items()})[0]
    return truth, tr.nodes["target"]["value"].detach().numpy().copy()


UNIT_INTERVAL_SITES = frozenset(
    name for model in TRANSFORM_SITES for name, prior in _transform_priors(model, 1).items() if prior.support is constraints.unit_interval
)
"""Checked parameters that live in (0, 1), read from the supports of the model's own priors; every
other checked parameter is positive."""

MUTATIONS = {"20% too narrow": (0.8, 0.0), "biased by 0.3 sd": (1.0, 0.3)}
"""Known-wrong posteriors ranked beside every NUTS fit, as (scale, shift in posterior sd) of the
draws about their mean in unconstrained coordinates: a test that does not reject them has too
little power to vouch for the sampler."""


def _unconstrained(site: str, x: np.ndarray) -> np.ndarray:
    """log, or logit for a parameter in (0, 1): ranks do not change, shrinking is meaningful."""
    x = np.clip(np.asarray(x, dtype=float), np.finfo(float).tiny, None)
    if site in UNIT_INTERVAL_SITES:
        x = np.minimum(x, 1.0 - np.finfo(float).epsneg)
        return np.log(x) - np.log1p(-x)
    return np.log(x)


def _ranks(truth: dict, draws: dict, roi: np.ndarray, checked, L: int, scale: float = 1.0, shift: float = 0.0) -> dict[str, int]:
    """Rank of each truth among ``L`` evenly thinned draws; ``scale`` and ``shift`` (in posterior
    sd) first distort the draws about their mean in unconstrained coordinates (a mutation)."""
    S = roi.shape[0]
    keep = np.unique(np.linspace(0, S - 1, L).round().astype(int))
    out = {}
    for label, site, c in checked:
        post = _unconstrained(site, roi[:, c] if site == "roi" else np.asarray(draws[site])[:, c])
        if not np.isfinite(post).all():
            raise ValueError(f"{label}: non-finite posterior draws; a rank would be meaningless")
        if scale != 1.0 or shift != 0.0:
            post = post.mean() + scale * (post - post.mean()) + shift * post.std()
        out[label] = int((post[keep] < _unconstrained(site, truth[site][c])).sum())
    return out


def run_sbc(
    settings: SBCSettings, data: MediaDataset, seed: int = 0, progress: bool = False, workers: int | None = None
) -> SBCResult:
    """Run a simulation-based calibration study on the media of ``data``.

    Replication ``r`` draws its parameters with seed ``seed + r`` and fits with the same seed:
    the study is reproducible and any replication can be rerun alone.

    Parameters
    ----------
    settings : SBCSettings
        The study.
    data : MediaDataset
        National data whose media, controls and spend every replication uses.
    seed : int
        Seed of replication 0.
    progress : bool
        Show a progress bar over replications.
    workers : int, optional
        Worker processes (default :func:`~mmmlib.workers.default_workers`), each running whole
        replications on one core, its NUTS chains one after another. The ranks do not depend on
        it: every chain is seeded by its replication and its index. A replication per core keeps
        the cores busy through the VI fit and the shorter chain, which running one replication's
        chains side by side does not.
    """
    if data.geo is not None:
        raise ValueError("simulation-based calibration runs on national data")
    mmm = BayesianMMM(model=settings.model, media_prior=settings.media_prior)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        mmm._scales(data)
        study = _Study(settings, mmm, data, mmm._prepare(data), _checked_parameters(mmm, list(data.channels)), seed)
        outs = map_on_cores(partial(_replication, study), range(settings.replications), workers, progress, "SBC")
    finally:
        torch.set_default_dtype(default)
    rank_rows = [row for ranks, _ in outs for row in ranks]
    fit_rows = [row for _, fits in outs for row in fits]
    return SBCResult(settings, pd.DataFrame(rank_rows), pd.DataFrame(fit_rows))


@dataclass(frozen=True)
class _Study:
    """What every replication of :func:`run_sbc` shares."""

    settings: SBCSettings
    mmm: BayesianMMM
    data: MediaDataset
    prep: _Prepared
    checked: list
    seed: int


def _replication(study: _Study, r: int) -> tuple[list[dict], list[dict]]:
    """Simulate and fit replication ``r``: its rank rows and fit rows."""
    settings, mmm, seed = study.settings, study.mmm, study.seed
    torch.set_default_dtype(torch.float64)
    coords = "level" if settings.media_prior == "roi" else "native"
    truth, y = simulate_from_prior(mmm, study.data, seed + r)
    prep = replace(study.prep, target=torch.as_tensor(y))
    rank_rows, fit_rows = [], []
    for arm in ["NUTS"] + (["VI"] if settings.svi_steps > 0 else []):
        if arm == "NUTS":
            draws, table, div = mmm._run_nuts_numpy(
                prep, settings.num_warmup, settings.num_samples, settings.chains,
                settings.target_accept_prob, seed + r, settings.max_tree_depth, coords,
            )
            seconds = float(np.sum(mmm.nuts_.seconds))
            max_rhat = float(table["rhat"].max())
        else:
            draws = mmm._run_advi_numpy(
                prep, settings.svi_steps, 0.02, settings.num_samples * settings.chains, seed + r, coords
            )
            div, seconds, max_rhat = 0, float("nan"), float("nan")
        rate = div / (settings.num_samples * settings.chains)
        draws = {k: v.numpy() for k, v in draws.items()}
        roi = _roi(mmm, prep.media, draws)
        for label, rank in _ranks(truth, draws, roi, study.checked, settings.ranks_of).items():
            rank_rows.append(dict(replication=r, inference=arm, parameter=label, rank=rank))
        if arm == "NUTS" and settings.mutations:
            for name, (scale, shift) in MUTATIONS.items():
                for label, rank in _ranks(truth, draws, roi, study.checked, settings.ranks_of, scale, shift).items():
                    rank_rows.append(dict(replication=r, inference=f"NUTS, {name}", parameter=label, rank=rank))
        fit_rows.append(dict(replication=r, inference=arm, divergences=int(div), divergence_rate=rate, max_rhat=max_rhat,
                             seconds=seconds, converged=_meets_criterion(dict(inference=arm.lower(), max_rhat=max_rhat, divergence_rate=rate))))
    return rank_rows, fit_rows


def uniformity(
    result: SBCResult, alpha: float = 0.01, converged: bool | None = None, bins: int | None = None, pooled: bool = False
) -> pd.DataFrame:
    """Per (inference, parameter): a chi-square test that the ranks are uniform over equal bins,
    its p-value, whether it is rejected at ``alpha`` after a Bonferroni correction over all
    parameters of that inference, and the coverage of the central 90% posterior interval (the
    share of ranks inside the middle 90% of ``0..L``).

    Parameters
    ----------
    result : SBCResult
    alpha : float
        Family-wise level of the tests of one inference method.
    converged : bool, optional
        Test only the fits that meet (``True``) or miss (``False``) the convergence criterion
        (column ``converged`` of ``result.fits``); ``None``: every fit. Choosing fits by a
        property of their data is a selection, so uniformity within a class is a diagnostic, not
        a guarantee; the column ``n`` says how many fits a row rests on.
    bins : int, optional
        Bins of the test (default ``settings.bins``; ``ranks_of + 1`` must be a multiple). Use
        fewer for a small class: the chi-square test wants some five ranks per bin.
    pooled : bool
        Test each kind of parameter with its channels pooled (``parameter`` is then the kind,
        e.g. ``roi``): four times the ranks per test, and a Bonferroni correction over fewer tests.
        The channels of one replication share its data set, so their ranks need not be
        independent, as the chi-square test assumes: a pooled test can reject a calibrated
        sampler somewhat more often than ``alpha``, and its rejections are a diagnostic.
    """
    s = result.settings
    L = s.ranks_of
    bins = s.bins if bins is None else bins
    _check_bins(L, bins)
    ranks = result.ranks
    if converged is not None:
        keep = result.fits.loc[result.fits["converged"] == converged, ["replication", "inference"]]
        ranks = ranks.assign(_fit=ranks["inference"].str.split(",").str[0]).merge(  # a mutation belongs to its NUTS fit
            keep.rename(columns={"inference": "_fit"}), on=["replication", "_fit"]).drop(columns="_fit")
    if pooled:
        ranks = ranks.assign(parameter=ranks["parameter"].map(_kind))
    rows = []
    for (arm, par), g in ranks.groupby(["inference", "parameter"], sort=False):
        counts = np.bincount(g["rank"].to_numpy() * bins // (L + 1), minlength=bins)
        p = float(stats.chisquare(counts).pvalue)
        lo, hi = 0.05 * (L + 1), 0.95 * (L + 1)
        rows.append(dict(inference=arm, parameter=par, n=len(g), p_value=p,
                         coverage_90=float(((g["rank"] >= lo) & (g["rank"] < hi)).mean()),
                         low_tail=float((g["rank"] < lo).mean()), high_tail=float((g["rank"] >= hi).mean())))
    out = pd.DataFrame(rows, columns=["inference", "parameter", "n", "p_value", "coverage_90", "low_tail", "high_tail"])
    n_tests = out.groupby("inference")["parameter"].transform("count")
    out["rejected"] = out["p_value"] < alpha / n_tests
    return out


def _kind(parameter: str) -> str:
    return parameter.split("[")[0]


KIND_LABELS = {
    "roi": "ROI",
    "lag_weight": "adstock decay",
    "half_max_effective_concentration": "Hill half-saturation",
    "slope": "Hill slope",
    "exponent": "power",
    "ad_effect_retention_rate": "carry-over retention",
    "peak_effect_delay": "peak delay",
}


def plot_rank_histograms(result: SBCResult, arms: list[str] | None = None):
    """Rank histograms, one panel per (inference, kind of parameter), channels pooled, with the
    99% band of a bin's count under uniform ranks (binomial) shaded. ``arms``: the inference
    methods shown (default: all but the mutations)."""
    import matplotlib.pyplot as plt

    s = result.settings
    L = s.ranks_of
    ranks = result.ranks.assign(kind=result.ranks["parameter"].map(_kind))
    arms = arms or [a for a in pd.unique(ranks["inference"]) if a in ("NUTS", "VI")]
    kinds = list(pd.unique(ranks["kind"]))
    fig, axes = plt.subplots(len(arms), len(kinds), figsize=(2.3 * len(kinds) + 0.6, 2.3 * len(arms) + 0.6),
                             sharex=True, squeeze=False)
    for i, arm in enumerate(arms):
        for j, kind in enumerate(kinds):
            ax = axes[i, j]
            r = ranks[(ranks["inference"] == arm) & (ranks["kind"] == kind)]["rank"].to_numpy()
            counts = np.bincount(r * s.bins // (L + 1), minlength=s.bins)
            n = len(r)
            lo, hi = stats.binom.ppf([0.005, 0.995], n, 1.0 / s.bins)
            ax.axhspan(lo, hi, color="0.85", zorder=0)
            ax.axhline(n / s.bins, color="0.5", lw=1, zorder=1)
            ax.bar((np.arange(s.bins) + 0.5) / s.bins, counts, width=0.9 / s.bins, color="C0" if arm == "NUTS" else "C1",
                   zorder=2)
            ax.set_xlim(0, 1)
            ax.set_title(f"{arm}: {KIND_LABELS.get(kind, kind)}", fontsize=10)
            if j == 0:
                ax.set_ylabel("fits per bin")
            if i == len(arms) - 1:
                ax.set_xlabel("rank of the truth / L")
    prior = {"roi": "ROI prior", "cost": "cost prior"}.get(s.media_prior, f"{s.media_prior} prior")
    fig.suptitle(f"{s.model}, {prior}: rank of the true value among {L} posterior draws, {s.replications} simulated "
                 "data sets (grey: 99% band of a uniform rank)", fontsize=11)
    return fig
