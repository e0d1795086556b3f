r"""A media-panel world with known ground truth (national or geo panel).

The data-generating process, for channel :math:`c`, geo :math:`g` and week :math:`t`
(see Chapter 0 for pictures of every part):

.. math::

    \tilde x_{t,c,g} &= \frac{m_{t,c,g}}{\bar m_c\, w_g}
        \quad\text{(media over its planned mean level)} \\
    \mathrm{contrib}_{t,c,g} &= \beta_c\, w_g\;
        \mathrm{hill}\!\big(\mathrm{adstock}(\tilde x_{\cdot,c,g};\lambda_c)_t;\,K_c, S_c\big) \\
    \mu_{t,g} &= w_g\big(\alpha + \delta t + s_t + \textstyle\sum_k \gamma_k z_{t,k}\big)
        + \textstyle\sum_c \mathrm{contrib}_{t,c,g} \\
    y_{t,g} &= \mu_{t,g} + \varepsilon_{t,g}, \qquad
        \varepsilon_{t,g} \sim \mathcal N\big(0, (\text{noise\_cv}\cdot\bar\mu_g)^2\big)

with :math:`w_g` the geo's population share (1 for national data), the adstock
normalised (LightweightMMM's convention), :math:`m = \text{spend}/\text{cost per unit}`,
and :math:`\beta_c` set so that the channel's true ROI over the simulated window
(total contribution / total spend) equals the configured value exactly.

Spend patterns: ``flighted`` (on/off bursts, e.g. TV), ``always_on`` (smooth with
noise, e.g. search), ``correlated`` (driven by one shared latent process whose
weight is ``WorldConfig.correlation``, e.g. social and display).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from mmmlib.data import MediaDataset
from mmmlib.transforms import adstock, hill

__all__ = [
    "ChannelSpec",
    "WorldConfig",
    "GroundTruth",
    "SimulatedWorld",
    "simulate_media_world",
    "easy_world",
    "hard_world",
    "toy_world",
    "channel_correlation",
    "true_contributions",
]

PATTERNS = ("flighted", "always_on", "correlated")


@dataclass(frozen=True)
class ChannelSpec:
    """One channel of a simulated world.

    Attributes
    ----------
    name : str
        Channel name (columns become ``media_<name>`` and ``spend_<name>``).
    pattern : str
        ``flighted``, ``always_on`` or ``correlated``.
    mean_spend : float
        Planned mean weekly spend (national, in thousands).
    cost_per_unit : float
        Spend per media unit (e.g. per thousand impressions).
    roi : float
        True return on investment over the simulated window.
    decay : float
        Adstock decay :math:`\\lambda \\in [0, 1)`.
    half_saturation : float
        Hill :math:`K`, in units of the planned mean media level.
    slope : float
        Hill :math:`S`.
    """

    name: str
    pattern: str
    mean_spend: float
    cost_per_unit: float
    roi: float
    decay: float
    half_saturation: float
    slope: float

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"channel {self.name!r}: pattern must be one of {PATTERNS}, got {self.pattern!r}")
        for attr in ("mean_spend", "cost_per_unit", "half_saturation", "slope"):
            if getattr(self, attr) <= 0:
                raise ValueError(f"channel {self.name!r}: {attr} must be > 0, got {getattr(self, attr)}")
        if self.roi < 0:
            raise ValueError(f"channel {self.name!r}: roi must be >= 0, got {self.roi}")
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"channel {self.name!r}: decay must be in [0, 1), got {self.decay}")


DEFAULT_CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec("tv", "flighted", 20.0, 0.010, roi=1.6, decay=0.6, half_saturation=1.2, slope=2.0),
    ChannelSpec("search", "always_on", 10.0, 0.002, roi=2.8, decay=0.1, half_saturation=0.8, slope=1.2),
    ChannelSpec("social", "correlated", 8.0, 0.005, roi=1.1, decay=0.3, half_saturation=1.0, slope=1.5),
    ChannelSpec("display", "correlated", 6.0, 0.004, roi=0.6, decay=0.3, half_saturation=0.9, slope=1.0),
)


@dataclass(frozen=True)
class WorldConfig:
    """Every setting of a simulated media world (frozen: one config, one world per seed).

    Attributes
    ----------
    name : str
        Label for tables and figures.
    n_weeks : int
        Number of weekly periods.
    channels : tuple of ChannelSpec
        The channels.
    n_geos : int
        1 for a national series; more for a geo panel.
    intercept : float
        Baseline weekly sales (national, thousands).
    trend : float
        Baseline growth per week, as a fraction of the intercept.
    seasonality_amplitude : float
        Peak-to-mean size of the yearly cycle, as a fraction of the intercept.
    seasonality_degrees : int
        Fourier harmonics in the yearly cycle.
    n_controls : int
        Number of control variables (AR(1), standardised).
    control_effect : float
        Scale of control coefficients, as a fraction of the intercept.
    noise_cv : float
        Noise standard deviation as a fraction of mean expected sales.
    correlation : float
        Weight of the shared latent process in ``correlated`` channels (0..1).
    always_on_variation : float
        Log-scale standard deviation of ``always_on`` spend around its plan (AR(1), 0.6).
    flights_follow_season : bool
        Place flighted channels' bursts into the seasonal peak (confounding).
    search_follows_demand : bool
        Let ``always_on`` spend track the seasonal demand (confounding).
    start : str
        First week (a date).
    """

    name: str = "easy"
    n_weeks: int = 156
    channels: tuple[ChannelSpec, ...] = DEFAULT_CHANNELS
    n_geos: int = 1
    intercept: float = 100.0
    trend: float = 0.001
    seasonality_amplitude: float = 0.15
    seasonality_degrees: int = 2
    n_controls: int = 1
    control_effect: float = 0.04
    noise_cv: float = 0.06
    correlation: float = 0.2
    always_on_variation: float = 0.15
    flights_follow_season: bool = False
    search_follows_demand: bool = False
    start: str = "2023-01-01"

    def __post_init__(self) -> None:
        if self.n_weeks < 8:
            raise ValueError(f"n_weeks must be >= 8, got {self.n_weeks}")
        if self.n_geos < 1:
            raise ValueError(f"n_geos must be >= 1, got {self.n_geos}")
        if not self.channels:
            raise ValueError("channels: give at least one ChannelSpec")
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channels: names must be unique, got {names}")
        if not 0.0 <= self.correlation <= 1.0:
            raise ValueError(f"correlation must be in [0, 1], got {self.correlation}")
        if self.noise_cv < 0:
            raise ValueError(f"noise_cv must be >= 0, got {self.noise_cv}")


@dataclass(frozen=True)
class GroundTruth:
    """What the world really did; every chapter scores its model against this.

    Attributes
    ----------
    contributions : pandas.DataFrame
        Weekly contribution of each channel (summed over geos), index = dates.
    baseline : pandas.Series
        Weekly non-media expected sales (intercept, trend, season, controls).
    expected_sales : pandas.Series
        ``baseline + contributions.sum(axis=1)``: sales without noise.
    params : pandas.DataFrame
        Per channel: decay, half_saturation, slope, beta, cost_per_unit, media_scale.
    spend : pandas.DataFrame
        Weekly spend per channel (summed over geos).
    geo_weights : numpy.ndarray
        Population share of each geo (sums to 1).
    contributions_geo : numpy.ndarray
        ``(T, C, G)`` contributions per geo.
    """

    contributions: pd.DataFrame
    baseline: pd.Series
    expected_sales: pd.Series
    params: pd.DataFrame
    spend: pd.DataFrame
    geo_weights: np.ndarray
    contributions_geo: np.ndarray = field(repr=False)

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self.contributions.columns)

    @property
    def roi(self) -> pd.Series:
        """Total contribution / total spend per channel over the window."""
        return (self.contributions.sum() / self.spend.sum()).rename("roi")

    @property
    def share(self) -> pd.Series:
        """Each channel's share of the total media contribution."""
        total = self.contributions.sum()
        return (total / total.sum()).rename("share")

    @property
    def media_share_of_sales(self) -> float:
        """Media contribution as a fraction of expected sales."""
        return float(self.contributions.to_numpy().sum() / self.expected_sales.sum())

    def table(self) -> pd.DataFrame:
        """One row per channel: spend, contribution, ROI, share and response parameters."""
        out = pd.DataFrame(
            {
                "spend": self.spend.sum(),
                "contribution": self.contributions.sum(),
                "roi": self.roi,
                "share": self.share,
            }
        )
        return out.join(self.params[["decay", "half_saturation", "slope", "beta"]])

    def response(self, channel: str, weekly_spend: np.ndarray | float) -> np.ndarray:
        """Long-run weekly contribution of a constant national weekly spend.

        With normalised adstock a constant input is its own steady state, so the
        steady-state response is :math:`\\beta\\,\\mathrm{hill}(s / (\\text{cpu}\\,\\bar m))`
        summed over geos (geos share spend by population).
        """
        p = self.params.loc[channel]
        s = np.atleast_1d(np.asarray(weekly_spend, dtype=np.float64))
        x = s / p["cost_per_unit"] / p["media_scale"]
        h = hill(x[:, None], [p["half_saturation"]], [p["slope"]])[:, 0].numpy()
        return p["beta"] * h  # sum_g w_g * beta * hill(x w_g / (scale w_g)) = beta * hill(x)


@dataclass(frozen=True)
class SimulatedWorld:
    """A simulated dataset with its ground truth and the config that made it."""

    data: MediaDataset
    truth: GroundTruth
    config: WorldConfig
    seed: int


# ----------------------------------------------------------------------- parts
def _ar1(rng: np.random.Generator, n: int, phi: float, size: int = 1) -> np.ndarray:
    """Stationary AR(1) with unit variance, shape ``(n, size)``."""
    out = np.empty((n, size))
    out[0] = rng.normal(size=size)
    scale = np.sqrt(1.0 - phi**2)
    for t in range(1, n):
        out[t] = phi * out[t - 1] + scale * rng.normal(size=size)
    return out


def _season(n: int, degrees: int, rng: np.random.Generator) -> np.ndarray:
    """A yearly cycle scaled to max |s| = 1, with a fixed dominant first harmonic."""
    t = np.arange(n)
    s = np.cos(2 * np.pi * (t - 47) / 52.0)  # peak in late November (week 47)
    for d in range(2, degrees + 1):
        a, b = rng.normal(scale=0.3, size=2)
        s = s + a * np.sin(2 * np.pi * d * t / 52.0) + b * np.cos(2 * np.pi * d * t / 52.0)
    return s / np.abs(s).max()


def _flights(rng: np.random.Generator, n: int, season: np.ndarray | None) -> np.ndarray:
    """On/off bursts: 3-8 weeks on, 2-6 weeks off; in-flight level lognormal around 1."""
    on = np.zeros(n, dtype=bool)
    t = int(rng.integers(0, 4))
    while t < n:
        length = int(rng.integers(3, 9))
        if season is None:
            on[t : t + length] = True
            t += length + int(rng.integers(2, 7))
        else:
            # follow the season: start bursts where demand is high, skip the trough
            if season[t] > -0.2 or rng.uniform() < 0.15:
                on[t : t + length] = True
                t += length + int(rng.integers(2, 5))
            else:
                t += 1
    level = np.exp(rng.normal(0.0, 0.25, size=n))
    pattern = on * level
    if season is not None:
        pattern = pattern * (1.0 + 0.6 * np.clip(season, 0.0, None))
    return pattern / pattern.mean()


def _spend_patterns(
    cfg: WorldConfig, rng: np.random.Generator, season: np.ndarray
) -> np.ndarray:
    """National weekly spend, ``(T, C)``, each column with mean = the channel's mean_spend."""
    n = cfg.n_weeks
    shared = _ar1(rng, n, 0.8)[:, 0]
    cols = []
    for ch in cfg.channels:
        if ch.pattern == "flighted":
            p = _flights(rng, n, season if cfg.flights_follow_season else None)
        elif ch.pattern == "always_on":
            own = _ar1(rng, n, 0.6)[:, 0]
            demand = 0.25 * season if cfg.search_follows_demand else 0.0
            p = np.exp(cfg.always_on_variation * own + demand)
        else:  # correlated
            own = _ar1(rng, n, 0.8)[:, 0]
            r = cfg.correlation
            latent = np.sqrt(r) * shared + np.sqrt(1.0 - r) * own
            p = np.exp(0.3 * latent)
        cols.append(ch.mean_spend * p / p.mean())
    return np.stack(cols, axis=1)


def simulate_media_world(config: WorldConfig = WorldConfig(), seed: int = 0) -> SimulatedWorld:
    """Simulate one media world and its ground truth.

    Parameters
    ----------
    config : WorldConfig
        The world's settings.
    seed : int
        Seed of the world's own random generator (independent of the global seeds).

    Returns
    -------
    SimulatedWorld
        ``.data`` (a :class:`~mmmlib.data.MediaDataset` with columns ``date``,
        ``geo`` for panels, ``media_<c>``, ``spend_<c>``, ``control_<k>``, ``sales``)
        and ``.truth`` (a :class:`GroundTruth`).

    See Chapter 0.
    """
    cfg = config
    rng = np.random.default_rng(seed)
    T, C, G = cfg.n_weeks, len(cfg.channels), cfg.n_geos
    names = [c.name for c in cfg.channels]
    dates = pd.date_range(cfg.start, periods=T, freq="7D")

    season = _season(T, cfg.seasonality_degrees, rng)
    spend_nat = _spend_patterns(cfg, rng, season)  # (T, C)
    weights = np.ones(1) if G == 1 else rng.dirichlet(np.full(G, 4.0))
    # geo split of spend: population share with geo-level noise, re-normalised per week
    if G == 1:
        split = np.ones((T, C, 1))
    else:
        split = weights[None, None, :] * np.exp(rng.normal(0.0, 0.15, size=(T, C, G)))
        split = split / split.sum(axis=2, keepdims=True)
    spend = spend_nat[:, :, None] * split  # (T, C, G)
    cpu = np.array([c.cost_per_unit for c in cfg.channels])
    media = spend / cpu[None, :, None] * np.exp(rng.normal(0.0, 0.03, size=spend.shape))
    media_scale = np.array([c.mean_spend / c.cost_per_unit for c in cfg.channels])

    x_tilde = media / (media_scale[None, :, None] * weights[None, None, :])
    decay = np.array([c.decay for c in cfg.channels])
    K = np.array([c.half_saturation for c in cfg.channels])
    S = np.array([c.slope for c in cfg.channels])
    sat = hill(adstock(x_tilde, decay), K, S).numpy()  # (T, C, G)
    unit = sat * weights[None, None, :]
    roi = np.array([c.roi for c in cfg.channels])
    beta = roi * spend.sum(axis=(0, 2)) / unit.sum(axis=(0, 2))
    contrib = beta[None, :, None] * unit  # (T, C, G)

    t = np.arange(T)
    controls = _ar1(rng, T, 0.7, size=cfg.n_controls)  # (T, K), shared across geos
    gamma = rng.normal(0.0, cfg.control_effect, size=cfg.n_controls) * cfg.intercept
    base_nat = (
        cfg.intercept * (1.0 + cfg.trend * t + cfg.seasonality_amplitude * season)
        + controls @ gamma
    )
    baseline = base_nat[:, None] * weights[None, :]  # (T, G)
    mu = baseline + contrib.sum(axis=1)
    noise_sd = cfg.noise_cv * mu.mean(axis=0)
    sales = mu + rng.normal(size=mu.shape) * noise_sd[None, :]

    rows = []
    geo_names = ["national"] if G == 1 else [f"geo_{g:02d}" for g in range(G)]
    for g, geo_name in enumerate(geo_names):
        part = {"date": dates}
        if G > 1:
            part["geo"] = geo_name
        for c, n in enumerate(names):
            part[f"media_{n}"] = media[:, c, g]
        for c, n in enumerate(names):
            part[f"spend_{n}"] = spend[:, c, g]
        for k in range(cfg.n_controls):
            part[f"control_{k}"] = controls[:, k]
        part["sales"] = sales[:, g]
        rows.append(pd.DataFrame(part))
    frame = pd.concat(rows, ignore_index=True)
    data = MediaDataset(
        frame=frame,
        date="date",
        media=tuple(f"media_{n}" for n in names),
        spend=tuple(f"spend_{n}" for n in names),
        target="sales",
        controls=tuple(f"control_{k}" for k in range(cfg.n_controls)),
        geo="geo" if G > 1 else None,
        channels=tuple(names),
        name=cfg.name,
    )
    idx = pd.Index(dates, name="date")
    truth = GroundTruth(
        contributions=pd.DataFrame(contrib.sum(axis=2), index=idx, columns=names),
        baseline=pd.Series(baseline.sum(axis=1), index=idx, name="baseline"),
        expected_sales=pd.Series(mu.sum(axis=1), index=idx, name="expected_sales"),
        params=pd.DataFrame(
            {
                "decay": decay,
                "half_saturation": K,
                "slope": S,
                "beta": beta,
                "cost_per_unit": cpu,
                "media_scale": media_scale,
            },
            index=pd.Index(names, name="channel"),
        ),
        spend=pd.DataFrame(spend.sum(axis=2), index=idx, columns=names),
        geo_weights=weights,
        contributions_geo=contrib,
    )
    return SimulatedWorld(data=data, truth=truth, config=cfg, seed=seed)


# ---------------------------------------------------------------------- presets
def easy_world(seed: int = 0, n_weeks: int = 156, n_geos: int = 1, **overrides) -> SimulatedWorld:
    """The easy world: independent spend patterns, TV flighted at random, 6% noise."""
    cfg = WorldConfig(name="easy", n_weeks=n_weeks, n_geos=n_geos)
    return simulate_media_world(replace(cfg, **overrides), seed=seed)


def hard_world(seed: int = 0, n_weeks: int = 156, n_geos: int = 1, **overrides) -> SimulatedWorld:
    """The hard world: social and display move together (correlation weight 0.85), TV is
    flighted into the seasonal peak, search follows demand, 8% noise."""
    cfg = WorldConfig(
        name="hard",
        n_weeks=n_weeks,
        n_geos=n_geos,
        noise_cv=0.08,
        correlation=0.85,
        flights_follow_season=True,
        search_follows_demand=True,
    )
    return simulate_media_world(replace(cfg, **overrides), seed=seed)


def toy_world(seed: int = 0, n_weeks: int = 104) -> SimulatedWorld:
    """LightweightMMM's tutorial sanity check: three channels whose true return is 1/1, 1/2
    and 1/3 of their cost, with no carry-over and (almost) no saturation.

    The three channels vary independently (log-normal AR(1) around equal plans); the Hill
    half-saturation is 50 times the mean media level, so each response is linear within 2%
    over the observed range.
    """
    channels = tuple(
        ChannelSpec(name, "correlated", 10.0, 0.01, roi=roi, decay=0.0, half_saturation=50.0, slope=1.0)
        for name, roi in (("one", 1.0), ("half", 0.5), ("third", 1.0 / 3.0))
    )
    cfg = WorldConfig(name="toy", n_weeks=n_weeks, channels=channels, correlation=0.0, trend=0.0)
    return simulate_media_world(cfg, seed=seed)


def channel_correlation(world: SimulatedWorld, channels: Sequence[str] | None = None) -> pd.DataFrame:
    """Correlation matrix of national weekly spend between channels."""
    spend = world.truth.spend
    if channels is not None:
        spend = spend[list(channels)]
    return spend.corr()


def true_contributions(world: SimulatedWorld, multiplier: np.ndarray | None = None) -> np.ndarray:
    """The world's true contributions ``(T, C, G)`` (``G`` = 1 for national data), recomputed from
    its media and its true response, with each channel's media (and so its spend) multiplied by
    ``multiplier`` (same shape; default: ones, the world as simulated).

    Counterfactuals of the world: an experiment that changes one channel's spend in some weeks
    and geos is this with the multiplier above 1 there (see :mod:`mmmlib.bayes.lift`).
    """
    media = world.data.media_array()
    if media.ndim == 2:
        media = media[:, :, None]
    if multiplier is not None:
        multiplier = np.asarray(multiplier, dtype=np.float64)
        if multiplier.shape != media.shape:
            raise ValueError(f"multiplier must have the media's shape {media.shape}, got {multiplier.shape}")
        media = media * multiplier
    p = world.truth.params
    weights = world.truth.geo_weights
    x_tilde = media / (p["media_scale"].to_numpy()[None, :, None] * weights[None, None, :])
    sat = hill(adstock(x_tilde, p["decay"].to_numpy()), p["half_saturation"].to_numpy(), p["slope"].to_numpy()).numpy()
    return p["beta"].to_numpy()[None, :, None] * sat * weights[None, None, :]
