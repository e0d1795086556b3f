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

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mmmlib.bayes.lift import LiftDesign, LiftTest, lift_roi_prior, plan_tests
from mmmlib.bayes.model import BayesianMMM
from mmmlib.metrics import mape
from mmmlib.runtime import check_profile, setup
from mmmlib.scoreboard.methods import bayes_method_fit, score
from mmmlib.scoreboard.suite import SuiteWorld, make_world
from mmmlib.workers import map_on_cores

__all__ = [
    "DESIGNS",
    "STRATEGIES",
    "Arm",
    "LiftStudySettings",
    "fit_arm",
    "marginal_roi",
    "run_arms",
    "run_selection",
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
        Key of :data:`DESIGNS`; ``None``: no experiment.
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
        if self.design is not None and self.design not in DESIGNS:
            raise ValueError(f"Arm.design must be one of {tuple(DESIGNS)} or None, got {self.design!r}")
        if self.use not in ("likelihood", "prior"):
            raise ValueError(f"Arm.use must be 'likelihood' or 'prior', got {self.use!r}")

    @property
    def label(self) -> str:
        if self.design is None:
            return "no experiment"
        return f"{DESIGNS[self.design].label}" + (", as ROI prior" if self.use == "prior" else "")


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
        Steps of each VI fit; ``draws``: posterior draws kept.
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
    draws: int = 1000
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
    if arm.design is None:
        return []
    channels = world.channels if arm.channels is None else arm.channels
    return plan_tests(world.native, channels, DESIGNS[arm.design], seed=arm.seed, last_period=world.train_weeks)


def _fit(world: SuiteWorld, tests: Sequence[LiftTest], use: str, settings: LiftStudySettings, seed: int,
         inference: str = "svi") -> BayesianMMM:
    train, _ = world.split()
    own = {t.channel: lift_roi_prior(t, train) for t in tests} if use == "prior" else None
    mmm = BayesianMMM(model="hill_adstock", media_prior="roi", roi_prior="data", roi_prior_by_channel=own)
    if inference == "svi":
        kw = dict(inference="svi", svi_steps=settings.svi_steps, num_samples=settings.draws, chains=1)
    else:
        kw = dict(inference="nuts", **settings.nuts)
    return mmm.fit(train, seed=seed, lift_tests=list(tests) if use == "likelihood" and tests else None, **kw)


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
    t0 = time.perf_counter()
    mmm = _fit(world, tests, arm.use, settings, arm.seed, inference)
    seconds = time.perf_counter() - t0
    return {"world": arm.world, "seed": arm.seed, "design": arm.design or "none", "use": arm.use,
            "tested": len(tests), "inference": inference, **_score(mmm, world, tests, seconds)}


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
    design = DESIGNS[settings.selection_design]
    channels = list(world.channels)
    every = {t.channel: t for t in plan_tests(world.native, channels, design, seed=seed, last_period=world.train_weeks)}
    t0 = time.perf_counter()
    base = _fit(world, [], "likelihood", settings, seed)
    base_row = _score(base, world, [], time.perf_counter() - t0)
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
            tests = [every[c] for c in chosen]
            t0 = time.perf_counter()
            mmm = _fit(world, tests, settings.selection_use, settings, seed)
            rows.append({"seed": seed, "strategy": strategy, "step": step, "tested": " ".join(chosen),
                         **_score(mmm, world, tests, time.perf_counter() - t0)})
    return rows


def run_selection(settings: LiftStudySettings) -> pd.DataFrame:
    """:func:`selection_path` for seeds ``0 .. selection_seeds - 1``, a seed per core."""
    seeds = list(range(settings.selection_seeds))
    if settings.workers <= 1:
        paths = [selection_path(s, settings) for s in seeds]
    else:
        paths = map_on_cores(lambda s: selection_path(s, settings), seeds, workers=settings.workers)
    return pd.DataFrame([row for path in paths for row in path])
