r"""What lift tests buy the Bayesian MMM, on worlds with known truth (Chapter 8).

An *arm* fits Chapter 1's ROI-prior model (hill adstock, data-centred ROI prior, full-rank
Gaussian VI) to the training weeks of one scoreboard world (:mod:`mmmlib.scoreboard.suite`),
after running one experiment of a given :class:`~mmmlib.bayes.lift.LiftDesign` on some channels,
and scores it as the scoreboard does, plus the error of the *marginal* ROI:

``roi_mape``, ``roi_coverage``, ``regret``, ``share_mae``
    As in :mod:`mmmlib.scoreboard.methods` (posterior-median ROI, 90% intervals, budget regret).
``mroi_mape``
    Error of the marginal ROI at the current plan: for each channel,
    :math:`\partial R / \partial s_c` of the weekly response :math:`R` to a constant weekly spend
    plan :math:`s`, by central differences of ±5% of the channel's spend, the model's posterior
    mean response against the world's true one. An experiment that raises spend by a fraction
    measures this slope times the added spend (plus carry-over); the average ROI is what it
    measures only when the channel is switched off.
``lift_ratio``
    Mean over the tests of the posterior-mean predicted lift over the measured one.

Every arm draws its own experiments: their weeks and measurement noise are seeded by the world,
its seed and the design (:func:`mmmlib.scoreboard.suite.experiment_seed`), so no two designs or
worlds share their noise. An arm whose ``design`` joins two keys with ``+`` (``plus20+off``) runs
both experiments on every channel it tests: two points of the response curve, which constrain
its curvature more than one (a Hill curve with adstock has three shape parameters, so they do not
fix it).

*Shape known* (:func:`fit_shape_known`): the same tests read by an analyst who knows every
channel's true response curve (adstock decay, half-saturation, slope) and fits only the
coefficients (flat prior, the book's oracle of :func:`mmmlib.bayes.evaluate.oracle_roi` with the
tests as further observations). It differs from the Bayesian model in the curve (known, not chosen
by priors) and also in how it treats the effect sizes (a flat prior and an exact Gaussian posterior,
not the ROI prior and VI).

An experiment enters the model in one of two ways (``use``): ``likelihood`` (one more observation
of the model's predicted incremental sales, :meth:`BayesianMMM.fit` with ``lift_tests``) or
``prior`` (the test's incremental ROI as the channel's LogNormal ROI prior,
:func:`~mmmlib.bayes.lift.lift_roi_prior`).

*Which channel first* (:func:`selection_path`): starting from the model without experiments, test
next the untested channel whose log-ROI posterior is widest (``widest``), whose posterior sd of
weekly contribution at the current plan is largest (``at_stake``: the most money the model is
unsure about), or one at random (``random``), refit, and repeat.

Arms run a process per core (:func:`mmmlib.workers.map_on_cores`), each seeded by its own world
seed, so the numbers do not depend on the order or the number of workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mmmlib.bayes.evaluate import baseline_design, positive_gaussian_draws
from mmmlib.bayes.lift import LiftDesign, LiftTest, lift_roi_prior, true_lift
from mmmlib.bayes.model import BayesianMMM
from mmmlib.metrics import mape
from mmmlib.runtime import check_profile, setup
from mmmlib.scoreboard.board import paired_difference
from mmmlib.scoreboard.methods import (
    SweepSettings,
    bayes_method_fit,
    fit_bayes_model,
    fit_method,
    score,
)
from mmmlib.scoreboard.suite import LIFT_WORLDS, SuiteWorld, make_world, run_experiments
from mmmlib.workers import map_on_cores
from mmmlib.worlds.media import true_contributions

__all__ = [
    "DESIGNS",
    "STRATEGIES",
    "Arm",
    "LiftStudySettings",
    "fit_arm",
    "fit_shape_known",
    "marginal_roi",
    "measurement_errors",
    "paired_change",
    "run_arms",
    "run_prior_only",
    "run_selection",
    "run_shape_known",
    "selection_path",
]

#: The designs the chapter compares, by key. ``plus20`` is the thesis's reference design (a
#: modest, cheap increment of a month, the kind most often run); the others vary its size and noise.
DESIGNS: dict[str, LiftDesign] = {
    "plus20": LiftDesign(0.2, 4, 0.2),
    "plus50": LiftDesign(0.5, 4, 0.2),
    "off": LiftDesign(-1.0, 4, 0.2),
    "plus20_se10": LiftDesign(0.2, 4, 0.1),
    "plus20_se40": LiftDesign(0.2, 4, 0.4),
}
#: Ways of choosing the next channel to test (see the module docstring).
STRATEGIES = ("widest", "at_stake", "random")


@dataclass(frozen=True)
class Arm:
    """One fit: a world and seed, the experiments run before it, and how they are used.

    Attributes
    ----------
    world : str
        A scoreboard world with known lifts (:data:`mmmlib.scoreboard.methods.LIFT_WORLDS`).
    seed : int
        World seed (also the seed of the tests' windows and noise, and of the fit).
    design : str or None
        Key of :data:`DESIGNS`, or keys joined by ``+`` (each run on every channel tested);
        ``None``: no experiment.
    channels : tuple of str or None
        Channels tested (``None``: every channel).
    use : str
        ``likelihood`` or ``prior``.
    """

    world: str
    seed: int
    design: str | None = None
    channels: tuple[str, ...] | None = None
    use: str = "likelihood"

    def __post_init__(self) -> None:
        if self.design is not None and (not self.design or any(d not in DESIGNS for d in self.design.split("+"))):
            raise ValueError(f"Arm.design must be keys of {tuple(DESIGNS)} joined by '+', or None, got {self.design!r}")
        if self.use not in ("likelihood", "prior"):
            raise ValueError(f"Arm.use must be 'likelihood' or 'prior', got {self.use!r}")
        if self.design is not None and "+" in self.design:
            if len(set(self.design.split("+"))) < len(self.design.split("+")):
                raise ValueError(f"Arm.design names a design twice (one measurement counted twice): {self.design!r}")
            if self.use == "prior":
                raise ValueError("an arm of two designs per channel reads them in the likelihood: one ROI prior per "
                                 f"channel cannot hold two tests, got {self.design!r} with use='prior'")

    @property
    def designs(self) -> tuple[LiftDesign, ...]:
        """The designs run on every channel tested (none without experiment)."""
        return () if self.design is None else tuple(DESIGNS[d] for d in self.design.split("+"))

    @property
    def label(self) -> str:
        if self.design is None:
            return "no experiment"
        return " and ".join(d.label for d in self.designs) + (", as ROI prior" if self.use == "prior" else "")


@dataclass(frozen=True)
class LiftStudySettings:
    """Sizes of one Chapter 8 run (``quick`` for CI, ``full`` for the book).

    Attributes
    ----------
    worlds : tuple of str
        Worlds of the design comparison.
    seeds : int
        World seeds per arm of the design comparison (0, 1, ...).
    prior_designs : tuple of str
        Designs also run the prior-only way.
    selection_world, selection_seeds, selection_design, selection_use :
        World, number of seeds, design and use of the tests of the which-channel-first study.
    selection_steps : int
        Experiments chosen one after another.
    svi_steps : int
        Steps of each VI fit; ``draws``: posterior draws kept (as in Chapter 6's scoreboard).
    nuts : dict
        NUTS settings of the check of the reference design against VI.
    workers : int
        Worker processes.
    """

    worlds: tuple[str, ...] = ("easy", "correlated")
    seeds: int = 5
    prior_designs: tuple[str, ...] = ("plus20", "off")
    selection_world: str = "easy"
    selection_seeds: int = 20
    selection_design: str = "off"
    selection_use: str = "prior"
    selection_steps: int = 2
    svi_steps: int = 3000
    draws: int = 2000
    nuts: dict = field(default_factory=lambda: {"num_warmup": 500, "num_samples": 500, "chains": 2})
    workers: int = 2

    @classmethod
    def for_profile(cls, profile: str) -> LiftStudySettings:
        if check_profile(profile) == "quick":
            return cls(worlds=("easy",), seeds=1, selection_seeds=2, svi_steps=800, draws=300,
                       nuts={"num_warmup": 150, "num_samples": 150, "chains": 2})
        return cls()


def marginal_roi(response, current: np.ndarray, step: float = 0.05) -> np.ndarray:
    """Marginal ROI of every channel at ``current`` weekly spend: central differences of the
    weekly response to ±``step`` of the channel's spend."""
    current = np.asarray(current, dtype=np.float64)
    out = np.empty(len(current))
    for c, s in enumerate(current):
        h = step * s
        up, down = current.copy(), current.copy()
        up[c] += h
        down[c] -= h
        out[c] = (response(up) - response(down)) / (2 * h)
    return out


def _tests(arm: Arm, world: SuiteWorld) -> list[LiftTest]:
    return [t for design in arm.designs for t in run_experiments(world, design, arm.channels)]


def _fit(world: SuiteWorld, tests: Sequence[LiftTest], use: str, settings: LiftStudySettings, seed: int,
         inference: str = "svi") -> tuple[BayesianMMM, float]:
    train, _ = world.split()
    own = {t.channel: lift_roi_prior(t, train) for t in tests} if use == "prior" else None
    return fit_bayes_model(world, "roi", seed, settings.svi_steps, settings.draws,
                           tests=tests if use == "likelihood" else None, roi_prior_by_channel=own,
                           inference=inference, nuts=settings.nuts)


def measurement_errors(arms: Sequence[Arm]) -> pd.DataFrame:
    r"""Every test the arms ran, against the world's true lift: one row per test with ``world``,
    ``seed``, ``design`` (of the arm), ``test`` (the design's label), ``channel``, ``z`` (the
    measurement error in standard errors, :math:`(\widehat{\text{lift}} - \text{lift}) / \mathrm{se}`)
    and ``ratio`` (measured over true lift). What the study drew, so that a reader can check that
    the noise is centred and that no two arms share it."""
    rows = []
    for arm in arms:
        world = make_world(arm.world, arm.seed)
        for design in arm.designs:
            for t in run_experiments(world, design, arm.channels):
                truth = true_lift(world.native, t.channel, t.start, t.end, t.spend_change, post_periods=t.post_periods)
                rows.append({"world": arm.world, "seed": arm.seed, "design": arm.design, "test": design.label,
                             "channel": t.channel, "z": (t.lift - truth) / t.se, "ratio": t.lift / truth})
    return pd.DataFrame(rows, columns=["world", "seed", "design", "test", "channel", "z", "ratio"])


def _score(mmm: BayesianMMM, world: SuiteWorld, tests: Sequence[LiftTest], seconds: float) -> dict:
    fit = bayes_method_fit(mmm, world, seconds)
    out = score(fit, world)
    true_m = marginal_roi(world.response, world.current)
    out["mroi_mape"] = mape(marginal_roi(fit.response, world.current), true_m)
    out["lift_ratio"] = (float(np.mean([mmm.predict_lift(t).mean() / t.lift for t in tests]))
                         if tests and mmm.lift_tests_ else float("nan"))
    out["seconds"] = seconds
    log_roi = np.log(mmm.samples_["roi"].numpy())
    for c, ch in enumerate(world.channels):
        out[f"roi_median.{ch}"] = float(fit.roi[c])
        out[f"roi_lo.{ch}"], out[f"roi_hi.{ch}"] = float(fit.roi_lo[c]), float(fit.roi_hi[c])
        out[f"log_roi_sd.{ch}"] = float(log_roi[:, c].std())
    return out


def fit_arm(arm: Arm, settings: LiftStudySettings, inference: str = "svi") -> dict:
    """Fit and score one arm (in a fresh random state seeded by the arm)."""
    setup(arm.seed, threads=1)
    world = make_world(arm.world, arm.seed)
    tests = _tests(arm, world)
    mmm, seconds = _fit(world, tests, arm.use, settings, arm.seed, inference)
    return {"world": arm.world, "seed": arm.seed, "design": arm.design or "none", "use": arm.use,
            "tested": len(tests), "inference": inference, **_score(mmm, world, tests, seconds)}


def fit_shape_known(world: SuiteWorld, tests: Sequence[LiftTest], level: float = 0.9, draws: int = 4000,
                    seed: int = 0) -> dict:
    r"""The tests read by an analyst who knows every channel's true response curve.

    Sales over the training weeks are linear in the world's true media contributions
    :math:`m_{tc}` (its adstock and Hill curves at their true parameters) times a scale
    :math:`\gamma_c` (1 is the truth), beside an intercept, a trend, the world's yearly harmonics
    and its controls, with Gaussian noise whose sd is that of the least-squares residuals
    (:func:`mmmlib.bayes.evaluate.oracle_roi`'s analyst). A test on channel :math:`c` is one more
    observation :math:`\widehat{\text{lift}} \sim \mathcal N(\gamma_c\,\text{lift}, \mathrm{se}^2)`,
    since with the curve known the lift scales with :math:`\gamma_c`. Under a flat prior the
    posterior is Gaussian, restricted to :math:`\gamma \ge 0` and drawn as the oracle's
    (:func:`mmmlib.bayes.evaluate.positive_gaussian_draws`); a channel's ROI and
    marginal ROI are :math:`\gamma_c` times the true ones.

    Returns
    -------
    dict
        ``roi_mape``, ``roi_coverage`` (of the central ``level`` interval) and ``mroi_mape``,
        scored as the arms are.
    """
    if world.name not in LIFT_WORLDS:
        raise ValueError(f"fit_shape_known: the true curves are known on {LIFT_WORLDS}, not the {world.name!r} world")
    native, n = world.native, world.train_weeks
    C = len(world.channels)
    contrib = true_contributions(native)[:n].reshape(n, C, -1).sum(axis=-1)
    base = baseline_design(n, native.config.seasonality_degrees, native.data.controls_array()[:n])
    X = np.column_stack([base, contrib])
    y = native.data.target_array()[:n].reshape(n).astype(np.float64)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    sigma = float(np.sqrt(np.sum((y - X @ coef) ** 2) / (n - X.shape[1])))
    rows, obs = [X / sigma], [y / sigma]
    for t in tests:
        d = np.zeros(X.shape[1])
        d[base.shape[1] + list(world.channels).index(t.channel)] = true_lift(
            native, t.channel, t.start, t.end, t.spend_change, post_periods=t.post_periods) / t.se
        rows.append(d[None, :])
        obs.append(np.array([t.lift / t.se]))
    A, b = np.vstack(rows), np.concatenate(obs)
    mean, *_ = np.linalg.lstsq(A, b, rcond=None)
    cov = np.linalg.inv(A.T @ A)[-C:, -C:]
    gamma = positive_gaussian_draws(mean[-C:], cov, draws, seed)
    a = (1.0 - level) / 2.0
    lo, med, hi = np.quantile(gamma, [a, 0.5, 1.0 - a], axis=0)
    return {"roi_mape": float(np.mean(np.abs(med - 1.0))),
            "roi_coverage": float(np.mean((lo <= 1.0) & (1.0 <= hi))),
            "mroi_mape": float(np.mean(np.abs(med - 1.0)))}


def run_shape_known(arms: Sequence[Arm]) -> pd.DataFrame:
    """:func:`fit_shape_known` for every arm whose tests are in the likelihood (the same tests as
    the arm's), one row each: ``world, seed, design`` and the scores."""
    rows = []
    for arm in arms:
        world = make_world(arm.world, arm.seed)
        rows.append({"world": arm.world, "seed": arm.seed, "design": arm.design or "none",
                     **fit_shape_known(world, _tests(arm, world), seed=arm.seed)})
    return pd.DataFrame(rows)


def run_prior_only(worlds: Sequence[str], seeds: Sequence[int]) -> pd.DataFrame:
    """The reference every arm is read against: the ROI-prior model's prior alone, before any sales
    or test (Chapter 6's ``prior_only`` method), one row per world and seed with ``roi_mape`` and
    ``roi_coverage``."""
    rows = []
    for name in worlds:
        for seed in seeds:
            world = make_world(name, seed)
            scores = score(fit_method("prior_only", world, SweepSettings()), world)
            rows.append({"world": name, "seed": seed, "key": "prior_only", "roi_mape": scores["roi_mape"],
                         "roi_coverage": scores["roi_coverage"]})
    return pd.DataFrame(rows)


def paired_change(rows: pd.DataFrame, metric: str, key: str, base: str = "none", alpha: float = 0.05) -> dict:
    """How arm ``key`` changes ``metric`` against arm ``base`` on the same worlds and seeds: the
    paired t-test of :func:`mmmlib.scoreboard.board.paired_difference` over (world, seed).

    Returns
    -------
    dict
        ``diff`` (mean of key minus base), ``se``, ``n``, ``p`` and ``verdict``: ``falls`` or
        ``rises`` beyond seed noise, or ``does not move beyond seed noise``.
    """
    table = rows.pivot_table(index=["world", "seed"], columns="key", values=metric)
    if key not in table or base not in table:
        raise ValueError(f"paired_change: rows have no arm {key!r} or {base!r}; they have {list(table.columns)}")
    out = paired_difference(table[key], table[base], alpha)
    out["verdict"] = {"lower": "falls", "higher": "rises"}.get(out["verdict"], "does not move beyond seed noise")
    return out


def run_arms(arms: Sequence[Arm], settings: LiftStudySettings, inference: str = "svi") -> pd.DataFrame:
    """Every arm, ``settings.workers`` at a time, an arm per core; one row each, in the order given.

    With one worker the arms run here, one after another, on the caller's thread budget: a NUTS
    arm's chains then run side by side (in a worker they run one after another).
    """
    if settings.workers <= 1:
        rows = [fit_arm(a, settings, inference) for a in arms]
    else:
        rows = map_on_cores(lambda arm: fit_arm(arm, settings, inference), arms, workers=settings.workers)
    return pd.DataFrame(rows)


def _at_stake(mmm: BayesianMMM, world: SuiteWorld) -> np.ndarray:
    """Posterior sd of each channel's weekly contribution at the current plan."""
    return np.array([mmm.response_draws(ch, np.array([s]))[:, 0].std() for ch, s in zip(world.channels, world.current,
                                                                                         strict=True)])


def selection_path(seed: int, settings: LiftStudySettings) -> list[dict]:
    """Choose experiments one after another by every strategy, from the same untested fit.

    Returns one row per (strategy, number of experiments), the untested fit as step 0 of each.
    """
    setup(seed, threads=1)
    world = make_world(settings.selection_world, seed)
    channels = list(world.channels)
    every: dict[str, list[LiftTest]] = {c: [] for c in channels}
    for design in Arm(settings.selection_world, seed, settings.selection_design).designs:
        for t in run_experiments(world, design):
            every[t.channel].append(t)
    base, seconds = _fit(world, [], "likelihood", settings, seed)
    base_row = _score(base, world, [], seconds)
    rows = []
    for strategy in STRATEGIES:
        rows.append({"seed": seed, "strategy": strategy, "step": 0, "tested": "", **base_row})
        mmm, chosen = base, []
        rng = np.random.default_rng([seed, 7919])
        for step in range(1, settings.selection_steps + 1):
            left = [c for c in channels if c not in chosen]
            if strategy == "random":
                pick = left[int(rng.integers(len(left)))]
            else:
                value = (np.log(mmm.samples_["roi"].numpy()).std(axis=0) if strategy == "widest"
                         else _at_stake(mmm, world))
                pick = max(left, key=lambda c: value[channels.index(c)])
            chosen.append(pick)
            tests = [t for c in chosen for t in every[c]]
            mmm, seconds = _fit(world, tests, settings.selection_use, settings, seed)
            rows.append({"seed": seed, "strategy": strategy, "step": step, "tested": " ".join(chosen),
                         **_score(mmm, world, tests, seconds)})
    return rows


def run_selection(settings: LiftStudySettings) -> pd.DataFrame:
    """:func:`selection_path` for seeds ``0 .. selection_seeds - 1``, a seed per core."""
    seeds = list(range(settings.selection_seeds))
    if settings.workers <= 1:
        paths = [selection_path(s, settings) for s in seeds]
    else:
        paths = map_on_cores(lambda s: selection_path(s, settings), seeds, workers=settings.workers)
    return pd.DataFrame([row for path in paths for row in path])
