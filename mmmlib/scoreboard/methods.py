"""The scoreboard: every chapter's model on the same worlds, scored the same way (Chapter 6).

One *task* is one method fitted to one world drawn with one seed
(:mod:`mmmlib.scoreboard.suite`). It returns one row of scores:

``roi_mape``
    Mean absolute percentage error of the channels' ROI over the training weeks.
``share_mae``
    Mean absolute error of each channel's share of the media contribution.
``roi_coverage``
    Share of channels whose 90% ROI interval holds the true ROI (methods with intervals).
``holdout_mape``
    MAPE of the forecast of the last ``holdout_weeks`` weeks of sales.
``regret``
    Share of the achievable true uplift that the method's budget misses, when it reallocates
    the training weeks' mean weekly budget within ±``bounds_pct`` of each channel's spend
    (:func:`mmmlib.optimize.regret`; 0 is the true optimum, 1 no better than not moving,
    above 1 worse than not moving).
``seconds``, ``peak_rss_mb``
    Wall time of the fit and the peak resident memory of the process that ran the task.

Sweeps run through an *executor*: any object with ``submit(fn, *args)`` returning a future
with ``result()``. The default is a local process pool (``spawn``, one fresh process per task,
so the peak memory is the task's own); a ``dask.distributed.Client`` works as it is, and
:class:`RayExecutor` adapts Ray. Each task seeds itself and runs one thread, so its numbers do
not depend on where or in which order it runs.

Command line::

    python -m mmmlib.scoreboard.methods --profile full --executor local --workers 2 --out scores.csv
    python -m mmmlib.scoreboard.methods --profile full --executor dask://scheduler:8786 --out scores.csv
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from mmmlib.bayes.lift import LiftDesign, LiftTest
from mmmlib.metrics import coverage, mae, mape
from mmmlib.runtime import peak_rss_mb
from mmmlib.scoreboard.suite import LIFT_WORLDS, WORLDS, SuiteWorld, make_world, run_experiments

__all__ = [
    "METHODS",
    "METRICS",
    "SweepSettings",
    "SWEEPS",
    "Task",
    "MethodFit",
    "LIFT_DESIGN",
    "LIFT_WORLDS",
    "applies",
    "bayes_method_fit",
    "fit_bayes_model",
    "make_tasks",
    "finite_draws",
    "fit_method",
    "score",
    "run_task",
    "InlineExecutor",
    "RayExecutor",
    "executor_from",
    "run_sweep",
    "scoreboard",
    "main",
]

METHODS: dict[str, str] = {
    "prior_only": "reference: the ROI-prior model's prior alone (every ROI at its prior median, shares at spend shares)",
    "regression": "linear regression on spend (a naive reference)",
    "lightweightmmm": "chapter 1: LightweightMMM's hill-adstock model, cost prior (SVI)",
    "bayes_roi": "chapter 1: the same model with our ROI prior (SVI)",
    "bayes_lift": "chapter 8: the ROI-prior model with one lift test per channel in its likelihood (SVI)",
    "deepcausal": "chapter 3: DeepCausal GRU coefficients, national series",
    "funnel": "chapter 2: the U-A-C funnel on daily per-segment data",
}
"""The methods, in the scoreboard's order, with a one-line description."""

METRICS: dict[str, tuple[str, bool]] = {
    "roi_mape": ("ROI error (MAPE)", False),
    "share_mae": ("share error (MAE)", False),
    "roi_coverage": ("90% ROI interval coverage", True),
    "holdout_mape": ("holdout sales error (MAPE)", False),
    "regret": ("budget regret", False),
    "seconds": ("fit time (s)", False),
    "peak_rss_mb": ("peak memory (MB)", False),
}
"""Score columns: a readable label and whether higher is better (coverage: nearer 0.9 is)."""


@dataclass(frozen=True)
class SweepSettings:
    """Sizes of one scoreboard profile.

    Attributes
    ----------
    worlds : tuple of str
        Worlds of :mod:`mmmlib.scoreboard.suite`.
    seeds : int
        Seeds per world (``first_seed``, ``first_seed + 1``, ...).
    first_seed : int
        The first world seed.
    methods : tuple of str
        Keys of :data:`METHODS`.
    svi_steps : int
        SVI steps of the chapter-1 models.
    deepcausal_epochs, deepcausal_hidden : int
        DeepCausal training epochs and GRU size.
    funnel_iter : int
        L-BFGS iterations of the funnel model.
    interval_draws : int
        Laplace draws for the funnel model's ROI intervals.
    holdout_weeks : int
        Final weeks held out.
    bounds_pct : float
        Each channel's spend may move by this fraction in the budget test.
    workers : int
        Local processes.
    """

    worlds: tuple[str, ...] = WORLDS
    seeds: int = 5
    first_seed: int = 0
    methods: tuple[str, ...] = tuple(METHODS)
    svi_steps: int = 3000
    deepcausal_epochs: int = 800
    deepcausal_hidden: int = 32
    funnel_iter: int = 400
    interval_draws: int = 100
    holdout_weeks: int = 13
    bounds_pct: float = 0.3
    workers: int = 2

    def __post_init__(self) -> None:
        bad = [w for w in self.worlds if w not in WORLDS]
        if bad or not self.worlds:
            raise ValueError(f"worlds must be among {WORLDS}, got {self.worlds}")
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"methods must be among {tuple(METHODS)}, got {self.methods}")
        for name in ("seeds", "svi_steps", "deepcausal_epochs", "deepcausal_hidden", "funnel_iter", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.first_seed < 0:
            raise ValueError(f"first_seed must be >= 0, got {self.first_seed}")
        if not 0.0 < self.bounds_pct < 1.0:
            raise ValueError(f"bounds_pct must be in (0, 1), got {self.bounds_pct}")


SWEEPS: dict[str, SweepSettings] = {  # per profile (mmmlib.runtime.PROFILES)
    "quick": SweepSettings(seeds=1, svi_steps=600, deepcausal_epochs=150, deepcausal_hidden=16,
                           funnel_iter=60, interval_draws=20),
    "full": SweepSettings(),
}


@dataclass(frozen=True)
class Task:
    """One method on one world and seed."""

    world: str
    seed: int
    method: str
    settings: SweepSettings = field(default_factory=SweepSettings)

    def __str__(self) -> str:
        return f"{self.method} on {self.world} (seed {self.seed})"


@dataclass(frozen=True)
class MethodFit:
    """What a fitted method says about a world, in the world's units.

    Attributes
    ----------
    roi : numpy.ndarray, shape (C,)
        Point estimate of each channel's ROI over the training weeks.
    roi_lo, roi_hi : numpy.ndarray or None
        90% interval (``None``: the method gives none).
    share : numpy.ndarray, shape (C,)
        Each channel's share of the media contribution.
    holdout : numpy.ndarray, shape (H,)
        Forecast of the holdout weeks' sales (NaN: the method forecasts none).
    response : callable or None
        The method's expected weekly sales (up to a constant) of a constant weekly spend plan
        (``None``: the method proposes no budget).
    seconds : float
        Wall time of the fit.
    dropped_draws : int
        Posterior draws discarded as non-finite (see :func:`finite_draws`).
    """

    roi: np.ndarray
    roi_lo: np.ndarray | None
    roi_hi: np.ndarray | None
    share: np.ndarray
    holdout: np.ndarray
    response: Callable[[np.ndarray], float] | None
    seconds: float
    dropped_draws: int = 0


#: The experiment the ``bayes_lift`` method runs on every channel before fitting.
LIFT_DESIGN = LiftDesign(spend_change=0.2, weeks=4, relative_se=0.2, post_weeks=4)


def applies(method: str, world: str) -> bool:
    """Whether ``method`` can be fitted to ``world``: the funnel model needs the funnel world's daily
    per-segment conversions; lift tests need a world whose experiments have a known true lift
    (:data:`LIFT_WORLDS`); every other method reads weekly sales."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {method!r}")
    if world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {world!r}")
    if method == "bayes_lift":
        return world in LIFT_WORLDS
    return method != "funnel" or world == "funnel"


def make_tasks(settings: SweepSettings) -> list[Task]:
    """Every applicable (world, seed, method), world by world."""
    return [
        Task(w, s, m, settings)
        for w in settings.worlds
        for s in range(settings.first_seed, settings.first_seed + settings.seeds)
        for m in settings.methods
        if applies(m, w)
    ]


# -------------------------------------------------------------------- methods
def _fit_regression(world: SuiteWorld, settings: SweepSettings) -> MethodFit:
    """Ordinary least squares of sales on spend, a linear trend, two yearly harmonics and the
    controls; ROI is the spend coefficient, with a t interval."""
    from scipy import stats

    t0 = time.perf_counter()
    frame = world.data.frame
    n, h = world.data.n_times, world.holdout_weeks
    t = np.arange(n, dtype=np.float64)
    season = [f(2 * np.pi * k * t / 52.0) for k in (1, 2) for f in (np.sin, np.cos)]
    spend = world.data.spend_array().reshape(n, -1)
    controls = world.data.controls_array().reshape(n, -1) if world.data.controls else np.zeros((n, 0))
    X = np.column_stack([spend, np.ones(n), t / n, *season, controls])
    y = frame[world.data.target].to_numpy()
    tr = slice(0, n - h)
    coef, *_ = np.linalg.lstsq(X[tr], y[tr], rcond=None)
    resid = y[tr] - X[tr] @ coef
    dof = max(n - h - X.shape[1], 1)
    cov = (resid @ resid / dof) * np.linalg.pinv(X[tr].T @ X[tr])
    C = spend.shape[1]
    roi, se = coef[:C], np.sqrt(np.diag(cov)[:C])
    q = stats.t.ppf(0.95, dof)
    contrib = roi * spend[tr].sum(axis=0)
    seconds = time.perf_counter() - t0
    return MethodFit(roi, roi - q * se, roi + q * se, contrib / contrib.sum(), X[n - h :] @ coef,
                     lambda s: float(np.dot(roi, s)), seconds)


def fit_bayes_model(world: SuiteWorld, prior: str, seed: int, svi_steps: int, draws: int = 2000,
                    tests: Sequence[LiftTest] | None = None,
                    roi_prior_by_channel: dict[str, tuple[float, float]] | None = None,
                    inference: str = "svi", nuts: dict | None = None):
    """Chapter 1's hill-adstock model fitted to the training weeks of ``world``, as the scoreboard
    and Chapter 8 fit it: ``prior`` ``"roi"`` (the data-centred ROI prior) or ``"cost"``; lift
    ``tests`` in the likelihood; full-rank Gaussian VI of ``svi_steps`` steps and ``draws`` draws,
    or NUTS with the settings ``nuts``.

    Returns
    -------
    tuple
        The fitted :class:`~mmmlib.bayes.model.BayesianMMM` and the wall time of the fit (s).
    """
    from mmmlib.bayes.model import BayesianMMM

    train, _ = world.split()
    if inference == "svi":
        kw = dict(inference="svi", svi_steps=svi_steps, num_samples=max(draws // 2, 1), chains=2)
    else:
        kw = dict(inference="nuts", **(nuts or {}))
    mmm = BayesianMMM(model="hill_adstock", media_prior=prior, roi_prior="data",
                      roi_prior_by_channel=roi_prior_by_channel)
    t0 = time.perf_counter()
    mmm.fit(train, seed=seed, lift_tests=list(tests) if tests else None, **kw)
    return mmm, time.perf_counter() - t0


def _fit_bayes(world: SuiteWorld, settings: SweepSettings, prior: str, seed: int, lift: bool = False) -> MethodFit:
    """Chapter 1's model; with ``lift``, after :data:`LIFT_DESIGN` run on every channel (Chapter 8)."""
    tests = run_experiments(world, LIFT_DESIGN) if lift else None
    mmm, seconds = fit_bayes_model(world, prior, seed, settings.svi_steps, tests=tests)
    return bayes_method_fit(mmm, world, seconds)


def _fit_prior_only(world: SuiteWorld) -> MethodFit:
    """What the ROI-prior model knows before it sees the sales: every channel's ROI at the median of
    its data-centred ROI prior (:func:`~mmmlib.bayes.model.data_roi_prior`), the prior's central
    90% interval, and so each channel's contribution in proportion to its spend. It forecasts no
    sales and proposes no budget (holdout error and regret are not scored)."""
    from scipy import stats

    from mmmlib.bayes.model import data_roi_prior

    t0 = time.perf_counter()
    train, test = world.split()
    mu, sigma = data_roi_prior(train)
    C = len(world.channels)
    z = stats.norm.ppf(0.95)
    spend = train.spend_array().reshape(train.n_times, C).sum(axis=0)
    return MethodFit(np.full(C, np.exp(mu)), np.full(C, np.exp(mu - z * sigma)), np.full(C, np.exp(mu + z * sigma)),
                     spend / spend.sum(), np.full(test.n_times, np.nan), None, time.perf_counter() - t0)


def bayes_method_fit(mmm, world: SuiteWorld, seconds: float) -> MethodFit:
    """A fitted :class:`~mmmlib.bayes.model.BayesianMMM` as a scoreboard entry: posterior-median
    ROI with its 90% interval, shares, the holdout forecast and the posterior-mean response."""
    from mmmlib.optimize import model_response

    train, test = world.split()
    dropped = finite_draws(mmm)
    r = mmm.roi().reindex(list(world.channels))
    share = mmm.contribution_share().reindex(list(world.channels))["median"].to_numpy()
    holdout = mmm.predict(test, history=train)["mean"].to_numpy()
    return MethodFit(r["median"].to_numpy(), r["lo"].to_numpy(), r["hi"].to_numpy(), share, holdout,
                     model_response(mmm), seconds, dropped)


def finite_draws(mmm) -> int:
    """Drop the posterior draws of a fitted :class:`~mmmlib.bayes.model.BayesianMMM` in which any
    parameter is not finite, and return how many were dropped.

    With the ROI prior a draw's media coefficient is ROI × spend / Σ Hill(adstock); a draw with a
    large half-saturation and slope makes the Hill sum underflow to 0 and the coefficient
    infinite, and one such draw makes every posterior mean infinite. The scoreboard counts them.
    """
    samples = mmm.samples_
    n = len(next(iter(samples.values())))
    keep = np.ones(n, dtype=bool)
    for v in samples.values():
        keep &= np.isfinite(v.reshape(n, -1).numpy()).all(axis=1)
    if keep.all():
        return 0
    if not keep.any():
        raise ValueError("every posterior draw has a non-finite parameter")
    idx = np.flatnonzero(keep)
    mmm.samples_ = {k: v[idx] for k, v in samples.items()}
    return int(n - len(idx))


def _fit_deepcausal(world: SuiteWorld, settings: SweepSettings) -> MethodFit:
    from mmmlib.deepcausal.model import DeepCausalConfig, fit_deepcausal
    from mmmlib.deepcausal.panel import split_panel

    n, h = world.data.n_times, world.holdout_weeks
    spend = world.data.spend_array().reshape(n, -1)
    controls = world.data.controls_array().reshape(n, -1) if world.data.controls else np.zeros((n, 1))
    sales = world.data.target_array().reshape(n)
    split = split_panel(spend[None], controls[None], sales[None], h)
    config = DeepCausalConfig(hidden=settings.deepcausal_hidden, epochs=settings.deepcausal_epochs)
    t0 = time.perf_counter()
    fit = fit_deepcausal(split, world.channels, config, progress=False)
    seconds = time.perf_counter() - t0
    tr = split.train
    contrib = fit.parts["media"][0, tr].sum(axis=0)
    usual = split.mean_spend[0]
    last = slice(n - h - 13, n - h)

    def response(s: np.ndarray) -> float:
        return float(fit.response(np.asarray(s) / usual, weeks=last).sum())

    return MethodFit(contrib / spend[tr].sum(axis=0), None, None, contrib / contrib.sum(),
                     fit.prediction[0, n - h :], response, seconds)


def _fit_funnel(world: SuiteWorld, settings: SweepSettings, seed: int) -> MethodFit:
    import torch

    from mmmlib.funnel.model import FunnelParams, UACModel, attribution, funnel, media_pressure
    from mmmlib.scoreboard.suite import funnel_weekly_response

    native = world.native
    days = world.train_weeks * 7
    spend = native.spend.to_numpy()
    model = UACModel(initial_active=native.config.initial_active)
    t0 = time.perf_counter()
    fit = model.fit(spend[:days], native.conversions.to_numpy()[:days], native.sizes, seed=seed,
                    max_iter=settings.funnel_iter, laplace_draws=settings.interval_draws)
    seconds = time.perf_counter() - t0
    mean_daily = spend[:days].mean(axis=0)
    x = torch.as_tensor(spend / mean_daily)
    sizes = torch.as_tensor(native.sizes)
    spent = spend[:days].sum(axis=0)
    C = spend.shape[1]
    fixed = {"hill_k": torch.full((C,), model.hill_k), "hill_slope": torch.full((C,), model.hill_slope)}

    def contributions(p: dict[str, torch.Tensor]) -> np.ndarray:
        with torch.no_grad():
            return attribution(p, x[:days], sizes, model.mask, model.initial_active).numpy()

    p_hat = fit.params.torch()
    contrib = contributions(p_hat)
    lo = hi = None
    if fit.draws:
        draws = [contributions({**{k: torch.as_tensor(v[i]) for k, v in fit.draws.items()}, **fixed})
                 for i in range(len(fit.draws["alpha_ua"]))]
        lo, hi = np.quantile(np.stack(draws) / spent, [0.05, 0.95], axis=0)
    with torch.no_grad():
        pressure = media_pressure(x, p_hat["hill_k"], p_hat["hill_slope"], p_hat["spillover"], p_hat["spill_decay"])
        conv, _ = funnel(p_hat, pressure, sizes, model.mask, model.initial_active)
    daily = (conv + p_hat["base"][:, None]).sum(dim=0).numpy()
    weekly = daily[: world.data.n_times * 7].reshape(-1, 7).sum(axis=1)
    params: FunnelParams = fit.params
    response = funnel_weekly_response(params, model.mask, native.sizes, mean_daily, model.initial_active)
    return MethodFit(contrib / spent, lo, hi, contrib / contrib.sum(), weekly[world.train_weeks :], response, seconds)


def fit_method(method: str, world: SuiteWorld, settings: SweepSettings, seed: int = 0) -> MethodFit:
    """Fit one method to the training weeks of ``world``."""
    if not applies(method, world.name):
        raise ValueError(f"method {method!r} does not apply to the {world.name!r} world")
    if method == "prior_only":
        return _fit_prior_only(world)
    if method == "regression":
        return _fit_regression(world, settings)
    if method == "lightweightmmm":
        return _fit_bayes(world, settings, "cost", seed)
    if method == "bayes_roi":
        return _fit_bayes(world, settings, "roi", seed)
    if method == "bayes_lift":
        return _fit_bayes(world, settings, "roi", seed, lift=True)
    if method == "deepcausal":
        return _fit_deepcausal(world, settings)
    return _fit_funnel(world, settings, seed)


def score(fit: MethodFit, world: SuiteWorld, bounds_pct: float = 0.3) -> dict[str, float]:
    """Score a fitted method against the world's truth (see the module docstring)."""
    from mmmlib.optimize import optimize_budget, regret

    truth_roi = world.roi.to_numpy()
    observed = world.data.target_array().reshape(world.data.n_times)[world.train_weeks :]
    lost = float("nan")
    if fit.response is not None:
        chosen = optimize_budget(fit.response, world.current, world.channels, bounds_pct=bounds_pct)
        lost, _ = regret(chosen, world.response)
    has_interval = fit.roi_lo is not None and fit.roi_hi is not None
    return {
        "roi_mape": mape(fit.roi, truth_roi),
        "share_mae": mae(fit.share, world.share.to_numpy()),
        "roi_coverage": coverage(fit.roi_lo, fit.roi_hi, truth_roi) if has_interval else float("nan"),
        "holdout_mape": mape(fit.holdout, observed) if np.isfinite(fit.holdout).all() else float("nan"),
        "regret": lost,
    }


def run_task(task: Task) -> dict[str, Any]:
    """Run one task in this process: seed everything, one thread, build the world, fit, score.

    Returns
    -------
    dict
        ``world, seed, method`` and the scores of :data:`METRICS`.
    """
    from mmmlib.runtime import setup

    setup(seed=task.seed, threads=1, use_gpu=False)
    try:
        world = make_world(task.world, seed=task.seed, holdout_weeks=task.settings.holdout_weeks)
        with warnings.catch_warnings():
            # overflowing posterior draws warn before finite_draws drops (and counts) them
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = fit_method(task.method, world, task.settings, seed=task.seed)
        scores = score(fit, world, task.settings.bounds_pct)
    except Exception as err:  # name the task: a sweep runs hundreds
        raise RuntimeError(f"scoreboard task {task} failed: {type(err).__name__}: {err}") from err
    return {"world": task.world, "seed": task.seed, "method": task.method, **scores,
            "seconds": fit.seconds, "peak_rss_mb": peak_rss_mb(), "dropped_draws": fit.dropped_draws}


# ------------------------------------------------------------------ executors
class Executor(Protocol):
    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any: ...


class InlineExecutor:
    """Runs each task at submission, in this process (for tests and debugging)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as err:
            future.set_exception(err)
        return future

    def shutdown(self, wait: bool = True) -> None:
        """Nothing to release."""


class RayExecutor:
    """Submit tasks to a Ray cluster (``ray`` must be installed; it is not a dependency).

    Parameters
    ----------
    address : str, optional
        ``ray://host:port``, ``auto``, or ``None`` for a local Ray instance.
    """

    def __init__(self, address: str | None = None) -> None:
        try:
            import ray
        except ImportError as err:
            raise ImportError("the ray executor needs `pip install ray`") from err
        self._ray = ray
        ray.init(address=address, ignore_reinit_error=True)

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:
        return self._ray.remote(num_cpus=1)(fn).remote(*args).future()

    def shutdown(self, wait: bool = True) -> None:
        self._ray.shutdown()


def executor_from(spec: str = "local", workers: int = 2) -> Executor:
    """An executor from a short description.

    Parameters
    ----------
    spec : str
        ``local`` (a pool of fresh ``spawn`` processes, one per task), ``inline`` (this
        process), ``dask://host:port`` (a running Dask scheduler; ``dask`` alone starts a
        local cluster), ``ray`` or ``ray://host:port``.
    workers : int
        Processes of the local pool.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if spec == "local":
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   max_tasks_per_child=1)
    if spec == "inline":
        return InlineExecutor()
    if spec == "dask" or spec.startswith("dask://"):
        try:
            from dask.distributed import Client
        except ImportError as err:
            raise ImportError("the dask executor needs `pip install dask distributed`") from err
        address = spec.removeprefix("dask://") if spec != "dask" else None
        return Client(address) if address else Client(n_workers=workers, threads_per_worker=1)
    if spec == "ray" or spec.startswith("ray://"):
        return RayExecutor(spec if spec != "ray" else None)
    raise ValueError(f"executor must be 'local', 'inline', 'dask[://host:port]' or 'ray[://host:port]', got {spec!r}")


def _release(executor: Executor) -> None:
    """Shut down a pool this module made; only disconnect from a Dask cluster (never stop it)."""
    if type(executor).__module__.startswith("distributed"):
        executor.close()
    elif hasattr(executor, "shutdown"):
        executor.shutdown(wait=True)


def run_sweep(
    tasks: Sequence[Task], executor: Executor | str | None = None, progress: bool = True
) -> pd.DataFrame:
    """Run tasks through an executor and collect one row per task, in task order.

    Parameters
    ----------
    tasks : sequence of Task
    executor : object with ``submit``, or str, optional
        An executor (left running), or a spec for :func:`executor_from` (released at the
        end). Default: ``"local"`` with the first task's ``workers``.
    progress : bool
        Show a progress bar over finished tasks.
    """
    from tqdm.auto import tqdm

    if not tasks:
        raise ValueError("no tasks to run")
    own = executor is None or isinstance(executor, str)
    ex = executor_from(executor or "local", tasks[0].settings.workers) if own else executor
    try:
        futures = [ex.submit(run_task, task) for task in tasks]
        bar = tqdm(futures, desc="scoreboard", leave=False, **({} if progress else {"disable": True}))
        rows = [f.result() for f in bar]
    finally:
        if own:
            _release(ex)
    return pd.DataFrame(rows)


def scoreboard(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every score, per world and method.

    Returns a frame indexed by (world, method), in the order of :data:`WORLDS` and
    :data:`METHODS`, with columns ``(metric, "mean" | "sd")`` and ``seeds``.
    """
    missing = [c for c in ("world", "method", "seed", *METRICS) if c not in rows.columns]
    if missing:
        raise ValueError(f"rows lack the columns {missing}")
    grouped = rows.groupby(["world", "method"], sort=False)
    table = grouped[list(METRICS)].agg(["mean", "std"]).rename(columns={"std": "sd"}, level=1)
    table[("seeds", "")] = grouped["seed"].nunique()
    order = [(w, m) for w in WORLDS for m in METHODS if (w, m) in table.index]
    return table.loc[order]


# ------------------------------------------------------------------------ CLI
def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mmmlib.scoreboard.methods", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", choices=tuple(SWEEPS), default="quick")
    p.add_argument("--seeds", type=int, default=None, help="seeds per world (default: the profile's)")
    p.add_argument("--worlds", nargs="+", default=None, help=f"subset of {WORLDS}")
    p.add_argument("--methods", nargs="+", default=None, help=f"subset of {tuple(METHODS)}")
    p.add_argument("--executor", default="local", help="local, inline, dask[://host:port], ray[://host:port]")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--out", type=Path, required=True, help="CSV of one row per task (written atomically)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a sweep from the command line and write one CSV row per task."""
    from mmmlib.files import atomic_write_text

    args = _parse(argv)
    try:
        overrides: dict[str, Any] = {}
        for name in ("seeds", "workers"):
            if getattr(args, name) is not None:
                overrides[name] = getattr(args, name)
        if args.worlds:
            overrides["worlds"] = tuple(args.worlds)
        if args.methods:
            overrides["methods"] = tuple(args.methods)
        settings = replace(SWEEPS[args.profile], **overrides)
        executor = executor_from(args.executor, settings.workers)
    except (ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        rows = run_sweep(make_tasks(settings), executor)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        _release(executor)
    atomic_write_text(args.out, rows.to_csv(index=False))
    print(f"{len(rows)} tasks in {time.perf_counter() - start:.0f} s -> {args.out}")
    print(scoreboard(rows).xs("mean", axis=1, level=1).round(3).to_string())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
