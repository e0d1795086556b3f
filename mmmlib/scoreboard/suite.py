r"""The scoreboard's shared worlds: one national weekly series per world and seed, with the truth
every method is scored against (Chapter 6).

Four worlds of increasing difficulty, each a :class:`SuiteWorld` with the same interface:

``easy``
    Chapter 0's easy media world (:func:`~mmmlib.worlds.media.easy_world`).
``correlated``
    Chapter 0's hard world: social and display driven by one shared process (weight 0.85), TV
    flighted into the seasonal peak, search following demand, 8% noise.
``time_varying``
    The easy world with each channel's effect multiplied by a log-OU path
    :math:`m_{t,c} = \exp(u_{t,c})`, :math:`u_{t,c} = (1-\kappa)u_{t-1,c} + \sigma\epsilon`,
    with Chapter 5's :math:`\kappa = 0.1` and :math:`\sigma = 0.12` per week, scaled so that
    each path averages 1 over the training weeks. Sales gain
    :math:`\sum_c \mathrm{contrib}_{t,c}(m_{t,c} - 1)`; the noise is the easy world's.
``funnel``
    Chapter 2's repaired unaware→activated→converted funnel
    (:func:`~mmmlib.funnel.world.simulate_uac_world`), 728 days summed into 104 weeks of
    spend and conversions. Media act on the funnel's logits, not additively on sales; a
    channel's contribution is the drop in conversions when its spend is removed.

Every world holds out its last ``holdout_weeks`` weeks. Truths are taken over the training
weeks (what a model fitted on them can know): ROI = contribution / spend and each channel's
share of the summed contributions. :attr:`SuiteWorld.response` is the true expected weekly
sales of a constant weekly spend plan, at the effectiveness of the last 13 training weeks.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from mmmlib.bayes.lift import LiftDesign, LiftTest, plan_tests
from mmmlib.data import MediaDataset
from mmmlib.funnel.model import FunnelMask, FunnelParams, attribution, funnel, media_pressure
from mmmlib.funnel.world import UACWorld, UACWorldConfig, simulate_uac_world
from mmmlib.worlds.media import SimulatedWorld, easy_world, hard_world

__all__ = [
    "LIFT_WORLDS",
    "WORLDS",
    "SuiteWorld",
    "experiment_seed",
    "make_world",
    "run_experiments",
    "tvc_multipliers",
    "funnel_weekly_response",
]

WORLDS = ("easy", "correlated", "time_varying", "funnel")
"""The scoreboard's worlds, easiest first."""
LIFT_WORLDS = ("easy", "correlated")
"""Worlds where an experiment's true lift is known: the media worlds with constant effects (the
time-varying world's lifts would need its effect paths)."""

Response = Callable[[np.ndarray], float]


@dataclass(frozen=True)
class SuiteWorld:
    """One world of the scoreboard: national weekly data and the truth over its training weeks.

    Attributes
    ----------
    name : str
        One of :data:`WORLDS`.
    seed : int
        The world's seed.
    data : MediaDataset
        All weeks (training then holdout), national, columns ``spend_<c>``, ``media_<c>``,
        ``sales`` and any controls.
    holdout_weeks : int
        Length of the final test block.
    roi : pandas.Series
        True ROI per channel over the training weeks.
    share : pandas.Series
        True share of the (summed) channel contributions over the training weeks.
    response : callable
        True expected weekly sales of a constant weekly spend vector ``(C,)``.
    current : numpy.ndarray
        Mean weekly spend per channel over the training weeks (the plan a budget moves from).
    native : SimulatedWorld or UACWorld
        The simulator's own output (the funnel model fits the daily, per-segment data).
    """

    name: str
    seed: int
    data: MediaDataset
    holdout_weeks: int
    roi: pd.Series
    share: pd.Series
    response: Response
    current: np.ndarray
    native: SimulatedWorld | UACWorld

    @property
    def channels(self) -> tuple[str, ...]:
        return self.data.channels

    @property
    def train_weeks(self) -> int:
        return self.data.n_times - self.holdout_weeks

    def split(self) -> tuple[MediaDataset, MediaDataset]:
        """Training weeks and holdout weeks."""
        return self.data.split(self.holdout_weeks)


def tvc_multipliers(
    rng: np.random.Generator, n_weeks: int, n_channels: int, train_weeks: int, kappa: float = 0.1, vol: float = 0.12
) -> np.ndarray:
    """Log-OU effect multipliers ``(T, C)``, stationary from week 0, mean 1 over the training weeks."""
    u = np.empty((n_weeks, n_channels))
    u[0] = rng.normal(0.0, vol / np.sqrt(2 * kappa - kappa**2), n_channels)
    for t in range(1, n_weeks):
        u[t] = (1 - kappa) * u[t - 1] + rng.normal(0.0, vol, n_channels)
    m = np.exp(u)
    return m / m[:train_weeks].mean(axis=0)


def _media_truth(world: SimulatedWorld, contributions: np.ndarray, train: int) -> tuple[pd.Series, pd.Series]:
    names = list(world.truth.channels)
    contrib = contributions[:train].sum(axis=0)
    spend = world.truth.spend.to_numpy()[:train].sum(axis=0)
    return (
        pd.Series(contrib / spend, index=pd.Index(names, name="channel"), name="roi"),
        pd.Series(contrib / contrib.sum(), index=pd.Index(names, name="channel"), name="share"),
    )


def _media_suite(name: str, world: SimulatedWorld, holdout: int, multipliers: np.ndarray | None) -> SuiteWorld:
    truth = world.truth
    train = world.config.n_weeks - holdout
    contrib = truth.contributions.to_numpy()
    data = world.data
    level = np.ones(len(truth.channels))
    if multipliers is not None:
        extra = (contrib * (multipliers - 1.0)).sum(axis=1)
        frame = data.frame.assign(sales=data.frame["sales"].to_numpy() + extra)
        data = replace(data, frame=frame, name=name)
        contrib = contrib * multipliers
        level = multipliers[train - 13 : train].mean(axis=0)
    else:
        data = replace(data, name=name)
    roi, share = _media_truth(world, contrib, train)
    channels = truth.channels

    def response(spend: np.ndarray) -> float:
        return float(sum(level[c] * truth.response(ch, s)[0] for c, (ch, s) in enumerate(zip(channels, spend, strict=True))))

    current = truth.spend.to_numpy()[:train].mean(axis=0)
    return SuiteWorld(name, world.seed, data, holdout, roi, share, response, current, world)


def funnel_weekly_response(
    params: FunnelParams, mask: FunnelMask, sizes: np.ndarray, mean_daily_spend: np.ndarray,
    initial_active: float = 0.15, days: int = 364,
) -> Response:
    """Steady-state weekly conversions (organic base included) of a constant weekly spend plan.

    The plan is spread evenly over the days of the week and scaled by ``mean_daily_spend`` (the
    scaling the funnel was fitted with); the funnel runs ``days`` days from ``initial_active``
    and the last four weeks are averaged.
    """
    p = params.torch()
    sizes_t = torch.as_tensor(np.asarray(sizes, dtype=np.float64))
    base = float(np.sum(params.base))

    def response(spend: np.ndarray) -> float:
        x = torch.as_tensor(np.asarray(spend, dtype=np.float64) / 7.0 / mean_daily_spend).expand(days, -1)
        with torch.no_grad():
            pressure = media_pressure(x, p["hill_k"], p["hill_slope"], p["spillover"], p["spill_decay"])
            conv, _ = funnel(p, pressure, sizes_t, mask, initial_active)
        return float(7.0 * (conv[:, -28:].sum(axis=0).mean() + base))  # mean day of the last 4 weeks

    return response


def _funnel_suite(seed: int, holdout: int) -> SuiteWorld:
    world = simulate_uac_world(UACWorldConfig(n_days=728, name="funnel"), seed=seed)
    n_weeks = world.config.n_days // 7
    train_days = (n_weeks - holdout) * 7
    spend_daily = world.spend.to_numpy()
    week = np.arange(world.config.n_days) // 7
    spend = np.stack([np.bincount(week, spend_daily[:, c]) for c in range(spend_daily.shape[1])], axis=1)
    sales = np.bincount(week, world.conversions.to_numpy().sum(axis=1))
    names = list(world.spend.columns)
    frame = pd.DataFrame({"date": pd.date_range("2023-01-02", periods=n_weeks, freq="7D")})
    for c, n in enumerate(names):
        frame[f"spend_{n}"] = spend[:, c]
    frame["sales"] = sales
    cols = tuple(f"spend_{n}" for n in names)
    data = MediaDataset(frame, "date", cols, cols, "sales", channels=tuple(names), name="funnel")
    # the truth over the training days, with spend scaled as a model fitted on them would
    mean_daily = spend_daily[:train_days].mean(axis=0)
    x = torch.as_tensor(spend_daily[:train_days] / mean_daily)
    with torch.no_grad():
        contrib = attribution(world.truth.torch(), x, torch.as_tensor(world.sizes), world.true_mask,
                              world.config.initial_active).numpy()
    spent = spend_daily[:train_days].sum(axis=0)
    index = pd.Index(names, name="channel")
    roi = pd.Series(contrib / spent, index=index, name="roi")
    share = pd.Series(contrib / contrib.sum(), index=index, name="share")
    response = funnel_weekly_response(world.truth, world.true_mask, world.sizes, mean_daily,
                                      world.config.initial_active)
    current = spend[: n_weeks - holdout].mean(axis=0)
    return SuiteWorld("funnel", seed, data, holdout, roi, share, response, current, world)


def make_world(name: str, seed: int = 0, holdout_weeks: int = 13) -> SuiteWorld:
    """Build one scoreboard world.

    Parameters
    ----------
    name : str
        One of :data:`WORLDS`.
    seed : int
        The world's seed (each world draws from its own generator).
    holdout_weeks : int
        Final weeks held out for the forecast score.

    Returns
    -------
    SuiteWorld
    """
    if name not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {name!r}")
    if not 1 <= holdout_weeks <= 26:
        raise ValueError(f"holdout_weeks must be in [1, 26], got {holdout_weeks}")
    if name == "easy":
        return _media_suite(name, easy_world(seed=seed), holdout_weeks, None)
    if name == "correlated":
        return _media_suite(name, hard_world(seed=seed), holdout_weeks, None)
    if name == "time_varying":
        world = easy_world(seed=seed)
        rng = np.random.default_rng([seed, 6])
        n = world.config.n_weeks
        m = tvc_multipliers(rng, n, len(world.truth.channels), n - holdout_weeks)
        return _media_suite(name, world, holdout_weeks, m)
    return _funnel_suite(seed, holdout_weeks)


def experiment_seed(world: str, seed: int, design: LiftDesign) -> int:
    """The seed of the experiments of ``design`` run in world ``world`` drawn with ``seed``.

    Every world, seed and design has its own: two designs (or the same design in two worlds) do
    not share the draws that choose their weeks and the noise of their measurements. The same
    design in the same world and seed always gets the same seed, so two chapters that run it
    report the same tests.

    Examples
    --------
    >>> a = experiment_seed("easy", 0, LiftDesign(0.2, 4, 0.2))
    >>> a == experiment_seed("easy", 0, LiftDesign(0.2, 4, 0.2))
    True
    >>> a == experiment_seed("easy", 0, LiftDesign(0.2, 4, 0.1)) or a == experiment_seed("correlated", 0, LiftDesign(0.2, 4, 0.2))
    False
    """
    key = f"{world}|{float(design.spend_change).hex()}|{design.weeks}|{float(design.relative_se).hex()}|{design.post_weeks}"
    return int(np.random.SeedSequence([int(seed), zlib.crc32(key.encode())]).generate_state(1)[0])


def run_experiments(world: SuiteWorld, design: LiftDesign, channels: Sequence[str] | None = None) -> list[LiftTest]:
    """Run ``design`` on ``channels`` (default: every channel) of a media world, inside its training
    weeks (:func:`mmmlib.bayes.lift.plan_tests`), seeded by :func:`experiment_seed`."""
    if world.name not in LIFT_WORLDS:
        raise ValueError(f"experiments need a media world with known lifts ({LIFT_WORLDS}), not the {world.name!r} world")
    channels = world.channels if channels is None else tuple(channels)
    return plan_tests(world.native, channels, design, seed=experiment_seed(world.name, world.seed, design),
                      last_period=world.train_weeks)
