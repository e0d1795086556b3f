"""Chapter 5's experiments: diffusion for time-varying coefficients against state-space smoothers.

The functions simulate the two world families (log-OU coefficients, and creative wear-out with
resets and regime jumps), fit the models, score coefficient paths against the truth (correlation
with its spread over resampled series, interval coverage, sales reconstruction) and draw the
chapter's figures. See Chapter 5.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mmmlib.data import DATA_FILES_READ
from mmmlib.runtime import check_profile
from mmmlib.tvc.diffusion import DiffusionConfig, PathSamples, TVCDiffusion, sample_quantile
from mmmlib.tvc.particle import ParticleTVC
from mmmlib.tvc.statespace import LogKalmanTVC, TVCPosterior
from mmmlib.tvc.wearout import WearoutDynamics, WearoutPaths, simulate_wearout
from mmmlib.tvc.world import TVCConfig, TVCWorld, baseline_features, simulate_tvc
from mmmlib.workers import map_on_cores

__all__ = [
    "bootstrap_scores",
    "check_world",
    "correlation_spread",
    "coverage_curve",
    "DiffusionSettings",
    "estimate_from_kalman",
    "estimate_from_log_kalman",
    "estimate_from_samples",
    "first_draws",
    "FloorStudy",
    "load_floor_study",
    "headline",
    "make_wearout_worlds",
    "make_worlds",
    "oracle_estimate",
    "particle_estimate",
    "path_correlation",
    "PathEstimate",
    "plot_calibration",
    "plot_correlations",
    "plot_decomposition",
    "plot_families",
    "plot_floor",
    "plot_paths",
    "plot_score_intervals",
    "plot_training",
    "restrict",
    "sampling_speed",
    "score_paths",
    "score_table",
    "series_scores",
]

Z90 = 1.6448536269514722


@dataclass(frozen=True)
class DiffusionSettings:
    """Sizes of a Chapter 5 run (``quick`` for CI, ``full`` for the book).

    Attributes
    ----------
    world : TVCConfig
        The simulated world (weeks, channels, volatilities).
    n_train, n_valid, n_test : int
        Simulated series to train on, to validate on after each epoch, and to score.
    fit : DiffusionConfig
        The diffusion model (the source's design is the same with ``kalman=False``).
    n_samples : int
        Sampled paths per test series for the main model.
    ablation_samples : int
        Sampled paths per test series for the ablations (the source's design, no projection).
    ddpm_series : int
        Test series on which the (slower) DDPM sampler is also scored.
    n_check : int
        Further fresh series on which the smoothers and our model are scored, to show how much a
        score on ``n_test`` series varies and what the data identify.
    check_draws : int
        Sampled paths per series on the large sets (19: the smallest and largest of 19 draws
        bound an exact 90% interval, see :func:`~mmmlib.tvc.diffusion.sample_quantile`; 39 for ``n_samples``: the
        2nd smallest and largest).
    wearout : WearoutDynamics
        The second world family (creative wear-out with resets, regime jumps).
    n_wearout_test : int
        Test series of the wear-out family (its training and validation sets have the sizes
        of the log-OU family's).
    particles : int
        Particles of the true-dynamics smoother on every wear-out test series.
    particle_ladder : tuple of int
        Larger particle counts run on the first ``ladder_series`` test series, to show how far
        the particle smoother is from its limit.
    n_transfer : int
        Series on which a model trained on one family is tested on the other.
    n_calibrate : int
        Validation series of each family on which our model's spread is calibrated
        (:meth:`~mmmlib.tvc.diffusion.TVCDiffusion.calibrate_spread`), ``check_draws`` paths each.
    """

    world: TVCConfig
    n_train: int
    n_valid: int
    n_test: int
    fit: DiffusionConfig
    n_samples: int = 39
    ablation_samples: int = 19
    ddpm_series: int = 4
    n_check: int = 300
    check_draws: int = 19
    wearout: WearoutDynamics = field(default_factory=WearoutDynamics)
    n_wearout_test: int = 300
    particles: int = 500
    particle_ladder: tuple[int, ...] = (4000,)
    ladder_series: int = 20
    n_transfer: int = 60
    n_calibrate: int = 100

    @property
    def source_fit(self) -> DiffusionConfig:
        """The source's design: conditioning on data only, no Kalman correction."""
        return replace(self.fit, kalman=False)

    @classmethod
    def for_profile(cls, profile: str) -> DiffusionSettings:
        """The chapter's settings for ``quick`` or ``full``."""
        if check_profile(profile) == "quick":
            return cls(world=TVCConfig(n_weeks=52), n_train=1000, n_valid=200, n_test=20,
                       fit=DiffusionConfig(d_model=64, steps=100, ddim_steps=20, epochs=6), n_samples=39,
                       ablation_samples=19, ddpm_series=4, n_check=100, check_draws=19, n_wearout_test=60,
                       particles=100, particle_ladder=(400,), ladder_series=8, n_transfer=20,
                       n_calibrate=40)
        return cls(world=TVCConfig(n_weeks=104), n_train=6000, n_valid=300, n_test=40,
                   fit=DiffusionConfig(d_model=64, steps=500, ddim_steps=20, epochs=14), n_samples=39,
                   ablation_samples=19, ddpm_series=4, n_check=300, check_draws=19, n_wearout_test=300,
                   particles=500, particle_ladder=(4000,), ladder_series=20, n_transfer=60,
                   n_calibrate=100)


def make_worlds(settings: DiffusionSettings, seed: int = 0) -> tuple[TVCWorld, TVCWorld, TVCWorld]:
    """Independent training, validation and test series (different generator seeds)."""
    s = settings
    return (simulate_tvc(s.world, s.n_train, seed=1000 * seed + 1),
            simulate_tvc(s.world, s.n_valid, seed=1000 * seed + 2),
            simulate_tvc(s.world, s.n_test, seed=1000 * seed + 3))


def fit_side_by_side(configs: Sequence[DiffusionConfig], train: TVCWorld, valid: TVCWorld | None = None,
                     seed: int = 0, workers: int | None = None) -> list[TVCDiffusion]:
    """Train one diffusion model per configuration on the same series, a model per core.

    The models are independent, and a training gains little from a second thread, so they train
    side by side (:func:`mmmlib.workers.map_on_cores`), each on one thread whichever way it runs:
    a model does not depend on ``workers``, and its ``fit_seconds`` is one core's training time.

    Parameters
    ----------
    configs : sequence of DiffusionConfig
        One model each.
    train, valid : TVCWorld
        Training and validation series (as in :meth:`TVCDiffusion.fit`).
    seed : int
        Every model's training seed.
    workers : int, optional
        Processes (default ``MMM_THREADS``).

    Returns
    -------
    list of TVCDiffusion
        The trained models, in the order of ``configs``.
    """
    return map_on_cores(lambda config: TVCDiffusion(config).fit(train, valid, seed=seed), configs, workers=workers)


def check_world(settings: DiffusionSettings, seed: int = 0) -> TVCWorld:
    """``n_check`` further fresh series, independent of :func:`make_worlds`'s three."""
    return simulate_tvc(settings.world, settings.n_check, seed=1000 * seed + 4)


def make_wearout_worlds(settings: DiffusionSettings, seed: int = 0) -> tuple[TVCWorld, TVCWorld, TVCWorld, WearoutPaths]:
    """Training, validation and test series of the wear-out family, and the test series' latent paths.

    Same sizes as the log-OU family's training and validation sets, ``n_wearout_test`` test
    series; generator seeds differ from every log-OU set's.
    """
    s = settings
    train, _ = simulate_wearout(s.world, s.wearout, s.n_train, seed=1000 * seed + 11)
    valid, _ = simulate_wearout(s.world, s.wearout, s.n_valid, seed=1000 * seed + 12)
    test, paths = simulate_wearout(s.world, s.wearout, s.n_wearout_test, seed=1000 * seed + 13)
    return train, valid, test, paths


def estimate_from_log_kalman(smoother: LogKalmanTVC, world: TVCWorld) -> tuple[PathEstimate, int]:
    """The log Kalman smoother's estimate, and the number of series whose mode search did not converge."""
    start = time.perf_counter()
    post = smoother.smooth(world.media, world.controls, world.sales, warn=False)
    return estimate_from_kalman(post, world, time.perf_counter() - start), int((~post.converged).sum())


def oracle_estimate(train: TVCWorld, world: TVCWorld, paths: WearoutPaths, dynamics: WearoutDynamics,
                    draws: int) -> PathEstimate:
    """The posterior of a smoother told every launch and jump (only levels, controls, baseline unknown)."""
    oracle = ParticleTVC.calibrate(train, dynamics, n_particles=1, n_draws=draws)
    samples, _ = oracle.given_multipliers(world.media, world.controls, world.sales,
                                          world.beta / paths.fresh[:, None, :])
    return estimate_from_samples(samples, world)


def particle_estimate(train: TVCWorld, world: TVCWorld, dynamics: WearoutDynamics, particles: int,
                      draws: int, seed: int = 0) -> PathEstimate:
    """The particle smoother under the true wear-out dynamics (:class:`~mmmlib.tvc.particle.ParticleTVC`)."""
    pf = ParticleTVC.calibrate(train, dynamics, n_particles=particles, n_draws=draws, seed=seed)
    return estimate_from_samples(pf.sample(world.media, world.controls, world.sales), world)


def first_draws(samples: PathSamples, k: int) -> PathSamples:
    """The first ``k`` sampled paths of every series (to measure what fewer draws cost)."""
    if not 1 <= k <= samples.beta.shape[1]:
        raise ValueError(f"k must lie in 1..{samples.beta.shape[1]} (the draws available), got {k}")
    return PathSamples(samples.beta[:, :k], samples.gamma[:, :k], samples.baseline[:, :k], samples.seconds)


def restrict(est: PathEstimate, rows: slice) -> PathEstimate:
    """The same estimate restricted to some series."""
    return PathEstimate(est.mean[rows], lambda q: est.quantile(q)[rows], est.sales[rows], est.seconds)


@dataclass(frozen=True)
class FloorStudy:
    """The particle ladder recorded by ``benchmarks/study_wearout_floor.py``: the true-dynamics smoother
    with more particles than a chapter can afford, on the chapter's first wear-out test series.

    Attributes
    ----------
    runs : DataFrame
        One row per run: ``particles``, ``seed``, ``corr``, ``coverage90`` and ``rel_error`` on
        ``scored_draws`` draws per series (as the chapter scores every method), ``corr_more_draws``
        on all the run's draws (NaN when it kept only ``scored_draws``), ``cpu_seconds`` (one thread).
    oracle : dict
        ``corr``, ``coverage90``, ``rel_error`` of the smoother told every launch and jump.
    profile : str
        The chapter profile whose worlds the study used.
    chapter_seed : int
        The chapter seed whose worlds the study used.
    series : int
        Test series (the first ones of the chapter's wear-out test set).
    scored_draws : int
        Draws per series behind ``corr``.
    more_draws : int
        Draws per series behind ``corr_more_draws``.
    commit : str
        Commit of the code that ran the study.
    """

    runs: pd.DataFrame
    oracle: dict
    profile: str
    chapter_seed: int
    series: int
    scored_draws: int
    more_draws: int
    commit: str

    def top(self) -> pd.DataFrame:
        """The runs at the largest particle count."""
        return self.runs[self.runs["particles"] == self.runs["particles"].max()]

    def floor(self) -> dict[str, float]:
        """What the ladder says of the floor.

        Returns
        -------
        dict
            ``particles`` (the largest count) and ``corr`` (mean score of its runs); ``below`` (the
            next smaller count) and ``rise`` (the mean score's gain from it: the ladder is still
            climbing while that is clearly above the Monte Carlo error); ``spread`` (largest minus
            smallest score of the runs at ``spread_particles``, the largest count run more than
            once: a measure of the run-to-run error at the larger counts); NaN where a count is missing.
        """
        counts = sorted(self.runs["particles"].unique())
        at = {p: self.runs.loc[self.runs["particles"] == p, "corr"] for p in counts}
        top = at[counts[-1]]
        repeated = [p for p in counts if len(at[p]) > 1]
        nan = float("nan")
        return {"particles": int(counts[-1]), "corr": float(top.mean()),
                "below": int(counts[-2]) if len(counts) > 1 else nan,
                "rise": float(top.mean() - at[counts[-2]].mean()) if len(counts) > 1 else nan,
                "spread_particles": int(repeated[-1]) if repeated else nan,
                "spread": float(at[repeated[-1]].max() - at[repeated[-1]].min()) if repeated else nan}


def load_floor_study(path: str | Path) -> FloorStudy:
    """Read the file written by ``benchmarks/study_wearout_floor.py``.

    The read is recorded with the chapter's data files (:data:`mmmlib.data.DATA_FILES_READ`), so a
    new study makes the chapter stale.

    Raises
    ------
    FileNotFoundError
        When the study has not been run.
    ValueError
        When the file lacks a field the chapter reads (named in the message).
    """
    path = Path(path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    for key in ("runs", "oracle", "profile", "chapter_seed", "series", "git_commit"):
        if key not in doc:
            raise ValueError(f"{path}: the floor study has no field {key!r}; rerun benchmarks/study_wearout_floor.py")
    if not doc["runs"]:
        raise ValueError(f"{path}: the floor study holds no runs")
    scored = min(int(r["draws"]) for r in doc["runs"])
    rows = []
    for i, r in enumerate(doc["runs"]):
        sc = r.get("scores", {})
        if str(scored) not in sc:
            raise ValueError(f"{path}: run {i} ({r.get('particles')} particles) has no scores on {scored} draws")
        more = sc.get(str(r["draws"]), {}) if int(r["draws"]) != scored else {}
        rows.append({"particles": int(r["particles"]), "seed": int(r["seed"]), **sc[str(scored)],
                     "corr_more_draws": more.get("corr", np.nan), "cpu_seconds": float(r["cpu_seconds"])})
    DATA_FILES_READ.add(str(path.resolve()))
    return FloorStudy(runs=pd.DataFrame(rows), oracle=dict(doc["oracle"]), profile=str(doc["profile"]),
                      chapter_seed=int(doc["chapter_seed"]), series=int(doc["series"]), scored_draws=scored,
                      more_draws=max(int(r["draws"]) for r in doc["runs"]), commit=str(doc["git_commit"]))


def series_scores(est: PathEstimate, world: TVCWorld) -> np.ndarray:
    """Within-series path correlation of every series and channel, shape (N, C)."""
    return path_correlation(est.mean, world.beta)


def headline(r: np.ndarray) -> float:
    """The chapter's headline correlation: median over channels of the median over series of ``r`` (N, C)."""
    return float(np.median(np.nanmedian(r, axis=0)))


def bootstrap_scores(estimates: dict[str, PathEstimate], world: TVCWorld, reference: str | None = None,
                     draws: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Headline correlation of each method with its 5-95% spread over bootstrap resamples of the series.

    Every method is resampled on the same series each draw, so ``diff_*`` columns (method minus
    ``reference``) carry the paired spread of a difference, narrower than either score's.

    Returns
    -------
    DataFrame
        One row per method: ``corr``, ``lo``, ``hi`` and, with ``reference``, ``diff``,
        ``diff_lo``, ``diff_hi``.
    """
    r = {name: series_scores(est, world) for name, est in estimates.items()}
    rng = np.random.default_rng(seed)
    idx = [rng.integers(0, world.n, world.n) for _ in range(draws)]
    boot = {name: np.array([headline(v[i]) for i in idx]) for name, v in r.items()}
    rows = {}
    for name, v in r.items():
        row = {"corr": headline(v), "lo": float(np.quantile(boot[name], 0.05)), "hi": float(np.quantile(boot[name], 0.95))}
        if reference is not None:
            d = boot[name] - boot[reference]
            row |= {"diff": headline(v) - headline(r[reference]), "diff_lo": float(np.quantile(d, 0.05)),
                    "diff_hi": float(np.quantile(d, 0.95))}
        rows[name] = row
    return pd.DataFrame(rows).T


@dataclass
class PathEstimate:
    """A method's estimate of the media coefficient paths of the test series.

    Attributes
    ----------
    mean : ndarray, shape (N, T, C)
        Posterior mean of the media coefficients.
    quantile : callable
        ``quantile(q)`` gives the ``q`` quantile of every coefficient, shape (N, T, C).
    sales : ndarray, shape (N, T)
        Sales reconstructed from the posterior-mean coefficients (and baseline).
    seconds : float
        Wall time of the estimate (sampling or smoothing).
    """

    mean: np.ndarray
    quantile: object
    sales: np.ndarray
    seconds: float


def estimate_from_samples(samples: PathSamples, world: TVCWorld) -> PathEstimate:
    """Posterior mean, quantiles (:func:`~mmmlib.tvc.diffusion.sample_quantile`) and reconstructed sales from sampled paths."""
    fitted = samples.sales(world.media, world.controls).mean(1)
    return PathEstimate(samples.beta.mean(1), lambda q: sample_quantile(samples.beta, q), fitted,
                        samples.seconds)


def estimate_from_kalman(post: TVCPosterior, world: TVCWorld, seconds: float) -> PathEstimate:
    """Posterior mean and quantiles of a Kalman smoother (Gaussian, or log-normal for the log smoother)."""
    c, k = post.n_media, post.n_controls
    base = (post.mean[..., c + k:] * baseline_features(world.config.n_weeks)).sum(-1)
    fitted = base + (post.beta * world.media).sum(-1) + (post.gamma * world.controls).sum(-1)
    return PathEstimate(post.beta, post.beta_quantile, fitted, seconds)


def path_correlation(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Correlation over weeks of estimated and true paths, per series and channel, shape (N, C).

    A constant path (no variation) gives NaN.
    """
    a = estimate - estimate.mean(1, keepdims=True)
    b = truth - truth.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(1) / den, np.nan)


def correlation_spread(est: PathEstimate, world: TVCWorld, size: int, draws: int = 2000,
                       seed: int = 0) -> dict[str, float]:
    """How much the headline correlation of :func:`score_paths` varies over test sets of ``size`` series.

    Draws ``draws`` subsets of ``size`` series (without replacement) and recomputes the median over
    channels of the median within-series correlation on each.

    Returns
    -------
    dict
        ``all`` (on every series), ``sd``, ``lo`` and ``hi`` (5% and 95% quantiles over subsets).
    """
    if not 1 <= size <= world.n:
        raise ValueError(f"size must lie in 1..{world.n} (the series available), got {size}")
    r = series_scores(est, world)
    rng = np.random.default_rng(seed)
    meds = np.array([headline(r[rng.choice(world.n, size, replace=False)]) for _ in range(draws)])
    return {"all": headline(r), "sd": float(meds.std()),
            "lo": float(np.quantile(meds, 0.05)), "hi": float(np.quantile(meds, 0.95))}


def coverage_curve(est: PathEstimate, truth: np.ndarray, levels: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)) -> dict:
    """Share of true coefficients inside the central interval of each nominal level."""
    out = {}
    for lev in levels:
        lo, hi = est.quantile((1 - lev) / 2), est.quantile((1 + lev) / 2)
        out[lev] = float(((truth >= lo) & (truth <= hi)).mean())
    return out


def score_paths(est: PathEstimate, world: TVCWorld) -> dict[str, float]:
    """Scores of one method on the test series.

    Returns
    -------
    dict
        ``corr`` (median over channels of the median within-series correlation), ``corr_pooled``
        (correlation over all series and weeks, median over channels), ``coverage90``,
        ``width90`` (mean interval width relative to the true coefficient), ``mape_sales``
        (reconstruction of observed sales from the posterior-mean coefficients), ``rel_error``
        (median absolute relative error of the coefficients), ``seconds``.
    """
    truth = world.beta
    r = series_scores(est, world)
    pooled = [np.corrcoef(est.mean[..., j].ravel(), truth[..., j].ravel())[0, 1] for j in range(truth.shape[-1])]
    lo, hi = est.quantile(0.05), est.quantile(0.95)
    return {
        "corr": headline(r),
        "corr_pooled": float(np.median(pooled)),
        "coverage90": float(((truth >= lo) & (truth <= hi)).mean()),
        "width90": float(np.mean((hi - lo) / truth)),
        "rel_error": float(np.median(np.abs(est.mean - truth) / truth)),
        "mape_sales": float(np.mean(np.abs(est.sales - world.sales) / np.abs(world.sales))),
        "seconds": float(est.seconds),
    }


def score_table(estimates: dict[str, PathEstimate], world: TVCWorld) -> pd.DataFrame:
    """One row of :func:`score_paths` per method."""
    return pd.DataFrame({name: score_paths(est, world) for name, est in estimates.items()}).T


def channel_correlations(estimates: dict[str, PathEstimate], world: TVCWorld) -> pd.DataFrame:
    """Median within-series correlation per method and channel (long format)."""
    rows = []
    for name, est in estimates.items():
        r = np.nanmedian(series_scores(est, world), axis=0)
        rows += [{"method": name, "channel": ch, "correlation": float(v)} for ch, v in zip(world.config.channels, r, strict=True)]
    return pd.DataFrame(rows)


def sampling_speed(model: TVCDiffusion, world: TVCWorld, paths: int = 100, steps: int = 50,
                   method: str = "ddim") -> float:
    """Seconds to draw ``paths`` coefficient paths for one series with ``steps`` DDIM steps (or DDPM)."""
    s = model.sample(world.media[:1], world.controls[:1], world.sales[:1], n_samples=paths, method=method,
                     steps=steps if method == "ddim" else None, seed=1, calibrated=False)
    return s.seconds


# ----------------------------------------------------------------------------- figures
def plot_training(histories: dict[str, list[dict[str, float]]]) -> plt.Figure:
    """Denoising loss (training and validation) and auxiliary terms per epoch, one line per model."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), layout="constrained")
    for name, hist in histories.items():
        h = pd.DataFrame(hist)
        axes[0].plot(h["epoch"], h["channel"], label=f"{name}: training")
        if "valid_channel" in h:
            axes[0].plot(h["epoch"], h["valid_channel"], ls="--", label=f"{name}: validation")
        axes[1].plot(h["epoch"], h["sales"], label=name)
        axes[2].plot(h["epoch"], h["aux_weight"], label=name)
    axes[0].set(title="denoising loss (channel)", xlabel="epoch", ylabel="weighted MSE, standardised")
    axes[1].set(title="sales reconstruction loss", xlabel="epoch", ylabel="MSE / sales variance", yscale="log")
    axes[2].set(title="weight of the auxiliary losses", xlabel="epoch", ylabel="factor")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    return fig


def plot_paths(world: TVCWorld, series: int, estimates: dict[str, PathEstimate],
               samples: PathSamples | None = None, n_show: int = 5) -> plt.Figure:
    """True and estimated media coefficient paths of one test series, with 90% bands."""
    ch = world.config.channels
    fig, axes = plt.subplots(len(ch), 1, figsize=(10, 2.0 * len(ch)), sharex=True, layout="constrained")
    t = np.arange(world.config.n_weeks)
    colors = sns.color_palette("deep", len(estimates) + 1)
    for j, ax in enumerate(np.atleast_1d(axes)):
        if samples is not None:
            for s in range(min(n_show, samples.beta.shape[1])):
                ax.plot(t, samples.beta[series, s, :, j], color="0.75", lw=0.6,
                        label="diffusion samples" if (s == 0 and j == 0) else None)
        for (name, est), col in zip(estimates.items(), colors[1:], strict=True):
            lo, hi = est.quantile(0.05)[series, :, j], est.quantile(0.95)[series, :, j]
            ax.fill_between(t, lo, hi, color=col, alpha=0.2)
            ax.plot(t, est.mean[series, :, j], color=col, lw=1.4, label=f"{name} (mean, 90% band)" if j == 0 else None)
        ax.plot(t, world.beta[series, :, j], color="black", lw=1.8, label="truth" if j == 0 else None)
        on = world.spend[series, :, j] > 0
        ax.scatter(t[~on], np.full((~on).sum(), ax.get_ylim()[0]), marker="|", color="tab:red", s=30,
                   label="off air" if j == 0 else None)
        ax.set_ylabel(f"β {ch[j]}")
    axes[0].legend(fontsize=7, ncol=3, loc="upper left")
    axes[-1].set_xlabel("week")
    fig.suptitle(f"Media coefficient paths of test series {series}")
    return fig


def plot_decomposition(world: TVCWorld, series: int, est: PathEstimate, name: str) -> plt.Figure:
    """Weekly media contributions of one test series: truth against a method's posterior mean."""
    ch = world.config.channels
    t = np.arange(world.config.n_weeks)
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6), sharey=True, layout="constrained")
    for ax, beta, title in ((axes[0], world.beta[series], "truth"), (axes[1], est.mean[series], name)):
        contrib = beta * world.media[series]
        ax.stackplot(t, contrib.T, labels=ch, alpha=0.85)
        ax.set(title=f"media contributions: {title}", xlabel="week")
    axes[0].set_ylabel("sales units")
    axes[1].legend(fontsize=7, loc="upper right")
    return fig


def plot_correlations(table: pd.DataFrame, target: float = 0.6) -> plt.Figure:
    """Median within-series correlation with the true path, per channel and method."""
    fig, ax = plt.subplots(figsize=(9, 3.8), layout="constrained")
    sns.barplot(data=table, x="channel", y="correlation", hue="method", ax=ax)
    ax.axhline(target, color="black", ls="--", lw=1)
    ax.text(ax.get_xlim()[1], target, " target", va="center", fontsize=8)
    ax.axhline(0, color="0.4", lw=0.8)
    ax.set(ylabel="median correlation over weeks", title="How well each method tracks the true coefficient path")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def plot_calibration(curves: dict[str, dict[float, float]]) -> plt.Figure:
    """Empirical against nominal coverage of central intervals (on the diagonal = calibrated)."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2), layout="constrained")
    ax.plot([0.4, 1], [0.4, 1], color="0.5", ls="--", lw=1, label="calibrated")
    ax.axhspan(0.8, 0.95, xmin=0, xmax=1, color="tab:green", alpha=0.08, label="target at 90%: 0.80-0.95")
    for name, c in curves.items():
        ax.plot(list(c), list(c.values()), marker="o", label=name)
    ax.set(xlabel="nominal coverage", ylabel="share of true coefficients inside", xlim=(0.4, 1), ylim=(0, 1),
           title="Calibration of the bands")
    ax.legend(fontsize=7, loc="upper left")
    return fig


def plot_families(families: dict[str, TVCWorld], channel: int = 0, n_series: int = 4) -> plt.Figure:
    """True media coefficient paths of a few series of each world family, one panel per family."""
    fig, axes = plt.subplots(1, len(families), figsize=(5.2 * len(families), 3.4), sharey=True,
                             layout="constrained")
    for ax, (name, world) in zip(np.atleast_1d(axes), families.items(), strict=True):
        t = np.arange(world.config.n_weeks)
        for i in range(n_series):
            ax.plot(t, world.beta[i, :, channel], lw=1.2)
        ax.set(title=name, xlabel="week", yscale="log")
    np.atleast_1d(axes)[0].set_ylabel(f"true β, {families[next(iter(families))].config.channels[channel]} (log scale)")
    return fig


def plot_score_intervals(table: pd.DataFrame) -> plt.Figure:
    """Headline path correlation of each method with its 5-95% bootstrap spread, one panel per test family.

    Parameters
    ----------
    table : DataFrame
        Columns ``family``, ``method``, ``corr``, ``lo``, ``hi`` (as from :func:`bootstrap_scores`).
    """
    fams = list(dict.fromkeys(table["family"]))
    fig, axes = plt.subplots(1, len(fams), figsize=(6.0 * len(fams), 0.45 * table.groupby("family").size().max() + 1.4),
                             layout="constrained", squeeze=False)
    for ax, fam in zip(axes[0], fams, strict=True):
        sub = table[table["family"] == fam].reset_index(drop=True)
        y = np.arange(len(sub))[::-1]
        ax.errorbar(sub["corr"], y, xerr=[sub["corr"] - sub["lo"], sub["hi"] - sub["corr"]], fmt="o", color="tab:blue",
                    ecolor="0.4", capsize=3)
        ax.set_yticks(y, sub["method"])
        ax.set(title=f"test series: {fam}", xlabel="median path correlation (5-95% over resampled series)")
        ax.grid(axis="x", alpha=0.3)
    return fig


def plot_floor(ladder: dict[int, float], study: FloorStudy, methods: dict[str, float], series: int) -> plt.Figure:
    """Path correlation of the true-dynamics particle smoother against its particle count, next to
    other methods on the same series.

    Parameters
    ----------
    ladder : dict
        Particle count -> correlation of the chapter's own runs.
    study : FloorStudy
        The longer ladder (each run a dot; runs at one count differ by their seed only).
    methods : dict
        Method name -> correlation on the same series (drawn as horizontal lines).
    series : int
        Number of series behind every score (for the title).
    """
    fig, ax = plt.subplots(figsize=(10, 4.2), layout="constrained")
    counts = sorted(ladder)
    ax.plot(counts, [ladder[c] for c in counts], "s-", color="tab:blue", label="particle smoother, this chapter's runs")
    ax.plot(study.runs["particles"], study.runs["corr"], "o", color="tab:orange", mfc="none", ms=8,
            label="particle smoother, longer ladder (one dot per seed)")
    means = study.runs.groupby("particles")["corr"].mean()
    ax.plot(means.index, means.to_numpy(), "-", color="tab:orange", lw=1)
    colours = ["tab:red", "0.35", "tab:green", "tab:purple"]
    styles = ["--", ":", "-.", (0, (5, 1, 1, 1))]
    for i, (name, value) in enumerate(methods.items()):
        ax.axhline(value, color=colours[i % len(colours)], ls=styles[i % len(styles)], lw=1.5, label=name)
    ax.set_xscale("log")
    ax.set(xlabel="particles per series (log scale)", ylabel="median path correlation",
           title=f"Wear-out family, {series} test series: how much the true dynamics identify")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig
