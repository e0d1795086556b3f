r"""Worlds with time-varying coefficients: the data of Chapter 5 (MMM-Diffusion).

Many short weekly series :math:`i` (brands or markets), each with media channels :math:`c` and
controls :math:`k`. Sales are a time-varying regression on transformed media and controls,

.. math::

    y_{it} = b_{it} + \sum_c \beta_{itc}\, x_{itc} + \sum_k \gamma_{itk}\, z_{itk} + \varepsilon_{it},
    \qquad x_{itc} = \mathrm{hill}(\mathrm{adstock}(s_{i\cdot c}))_t,

with flighted spend :math:`s` (on/off campaigns), fixed and known media transforms, a baseline
:math:`b_{it}` (level, trend, yearly season) and Gaussian noise.

**Coefficients.** Media coefficients are positive, log-Ornstein–Uhlenbeck with regime jumps
(the source system's setting, with the volatilities of Chapter 5):

.. math::

    \log\beta_{itc} = \mu_{ic} + u_{itc} + J_{itc},\qquad
    u_{itc} = (1-\kappa)\,u_{i,t-1,c} + \sigma_m\,\eta_{itc},\qquad
    J_{itc} = \sum_{s\le t} N_{isc}\,\xi_{isc},

with :math:`N \sim \mathrm{Bernoulli}(1/52)` jumps of size :math:`\xi \sim \mathcal N(0, 0.3^2)`.
Control coefficients are OU around a series-level mean whose sign is known (price and competitor
pressure lower sales, promotions raise them), with volatility :math:`\sigma_k`.

The truth kept: every coefficient path, the baseline and the noise, so every contribution has
a true answer. See Chapter 5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mmmlib.transforms import adstock, hill

__all__ = [
    "TVCConfig",
    "TVCWorld",
    "baseline_features",
    "media_features",
    "simulate_tvc",
    "validate_tvc",
]

DEFAULT_CHANNELS: tuple[str, ...] = ("tv", "search", "social", "display", "radio")
DEFAULT_CONTROLS: tuple[str, ...] = ("price", "promotion", "competitor")


@dataclass(frozen=True)
class TVCConfig:
    """Settings of a time-varying-coefficient world.

    Attributes
    ----------
    n_weeks : int
        Length :math:`T` of every series.
    channels, controls : tuple of str
        Names of the media channels and of the controls.
    beta_median : tuple of float
        Median media coefficient per channel (sales units per unit of transformed media).
    beta_spread : float
        Standard deviation of the series-level log coefficient :math:`\\mu_{ic}` around the median.
    kappa : float
        Mean reversion of the OU processes, per week.
    vol_media, vol_control : float
        Weekly OU volatility of :math:`\\log\\beta` and of :math:`\\gamma` (relative to its mean).
    jump_rate, jump_sd : float
        Weekly probability and log-size of a regime jump of a media coefficient.
    gamma_mean : tuple of float
        Mean control coefficient per control (its sign is the known sign).
    decay : tuple of float
        Adstock decay per channel (known to every method).
    half_saturation : float
        Hill half-saturation point, in units of a channel's mean spend when on air.
    slope : float
        Hill slope.
    on_share : tuple of float
        Share of weeks a channel is on air (campaign flighting).
    noise : float
        Standard deviation of the sales noise relative to the series level.
    level : float
        Mean baseline level.
    """

    n_weeks: int = 104
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    controls: tuple[str, ...] = DEFAULT_CONTROLS
    beta_median: tuple[float, ...] = (24.0, 16.0, 14.0, 10.0, 12.0)
    beta_spread: float = 0.3
    kappa: float = 0.1
    vol_media: float = 0.12
    vol_control: float = 0.08
    jump_rate: float = 1 / 52
    jump_sd: float = 0.3
    gamma_mean: tuple[float, ...] = (-4.0, 6.0, -3.0)
    decay: tuple[float, ...] = (0.6, 0.1, 0.3, 0.2, 0.4)
    half_saturation: float = 1.0
    slope: float = 1.5
    on_share: tuple[float, ...] = (0.5, 0.8, 0.65, 0.6, 0.5)
    noise: float = 0.02
    level: float = 100.0

    def __post_init__(self) -> None:
        c = len(self.channels)
        for name in ("beta_median", "decay", "on_share"):
            if len(getattr(self, name)) != c:
                raise ValueError(f"TVCConfig.{name} needs one value per channel ({c}), got {len(getattr(self, name))}")
        if len(self.gamma_mean) != len(self.controls):
            raise ValueError(f"TVCConfig.gamma_mean needs one value per control ({len(self.controls)})")
        if self.n_weeks < 8:
            raise ValueError(f"TVCConfig.n_weeks must be at least 8, got {self.n_weeks}")
        if not 0 < self.kappa < 1:
            raise ValueError(f"TVCConfig.kappa must lie in (0, 1), got {self.kappa}")
        if any(not 0 <= d < 1 for d in self.decay):
            raise ValueError(f"TVCConfig.decay must lie in [0, 1), got {self.decay}")
        if any(not 0 < s <= 1 for s in self.on_share):
            raise ValueError(f"TVCConfig.on_share must lie in (0, 1], got {self.on_share}")
        if self.noise <= 0:
            raise ValueError(f"TVCConfig.noise must be positive, got {self.noise}")

    @property
    def control_signs(self) -> np.ndarray:
        """Known sign of each control coefficient."""
        return np.sign(np.asarray(self.gamma_mean, dtype=float))


@dataclass
class TVCWorld:
    """A batch of simulated series and their truth.

    Attributes
    ----------
    config : TVCConfig
        How it was made.
    spend : ndarray, shape (N, T, C)
        Media spend.
    media : ndarray, shape (N, T, C)
        Transformed media :math:`x = \\mathrm{hill}(\\mathrm{adstock}(s))`.
    controls : ndarray, shape (N, T, K)
        Standardised controls.
    sales : ndarray, shape (N, T)
        Observed sales.
    beta, gamma : ndarray, shapes (N, T, C) and (N, T, K)
        True media and control coefficients.
    baseline : ndarray, shape (N, T)
        True baseline.
    noise_sd : ndarray, shape (N,)
        True noise standard deviation of each series.
    """

    config: TVCConfig
    spend: np.ndarray
    media: np.ndarray
    controls: np.ndarray
    sales: np.ndarray
    beta: np.ndarray
    gamma: np.ndarray
    baseline: np.ndarray
    noise_sd: np.ndarray
    seed: int = field(default=0)

    def __post_init__(self) -> None:
        validate_tvc(self.spend, self.controls, self.sales, self.config)

    @property
    def n(self) -> int:
        """Number of series."""
        return self.sales.shape[0]

    @property
    def noise(self) -> np.ndarray:
        """The sales noise: sales minus baseline, media and control contributions, shape (N, T)."""
        return (self.sales - self.baseline - (self.beta * self.media).sum(-1)
                - (self.gamma * self.controls).sum(-1))

    @property
    def contributions(self) -> np.ndarray:
        """True media contributions :math:`\\beta x`, shape (N, T, C)."""
        return self.beta * self.media

    def subset(self, rows: np.ndarray | slice) -> TVCWorld:
        """The same world restricted to some series."""
        return TVCWorld(self.config, self.spend[rows], self.media[rows], self.controls[rows], self.sales[rows],
                        self.beta[rows], self.gamma[rows], self.baseline[rows], self.noise_sd[rows], self.seed)


def validate_tvc(spend: np.ndarray, controls: np.ndarray, sales: np.ndarray, config: TVCConfig) -> None:
    """Check shapes and values of time-varying-coefficient inputs, naming what is wrong.

    Raises
    ------
    ValueError
        For a wrong shape, a missing value, or a negative spend (naming series, week and column).
    """
    n, t = np.shape(sales)[:2] if np.ndim(sales) == 2 else (None, None)
    if n is None:
        raise ValueError(f"sales must have shape (series, weeks), got {np.shape(sales)}")
    want = {"spend": (n, t, len(config.channels)), "controls": (n, t, len(config.controls))}
    for name, arr in (("spend", spend), ("controls", controls)):
        if np.shape(arr) != want[name]:
            raise ValueError(f"{name} must have shape {want[name]} (series, weeks, columns), got {np.shape(arr)}")
    for name, arr, cols in (("spend", spend, config.channels), ("controls", controls, config.controls),
                            ("sales", sales[..., None], ("sales",))):
        bad = np.argwhere(~np.isfinite(arr))
        if len(bad):
            i, w, c = bad[0]
            raise ValueError(f"{name} has a missing or infinite value in column '{cols[c]}' at series {i}, week {w}")
    bad = np.argwhere(spend < 0)
    if len(bad):
        i, w, c = bad[0]
        raise ValueError(f"spend is negative in column '{config.channels[c]}' at series {i}, week {w}: "
                         f"{spend[i, w, c]:.3g}")


def media_features(spend: np.ndarray, config: TVCConfig) -> np.ndarray:
    """Known media transform: Hill of normalised geometric adstock, per channel.

    Parameters
    ----------
    spend : ndarray, shape (N, T, C)
    config : TVCConfig

    Returns
    -------
    ndarray, shape (N, T, C), values in [0, 1)
    """
    s = np.asarray(spend, dtype=float)
    a = adstock(np.transpose(s, (1, 2, 0)), np.asarray(config.decay), normalise=True).numpy()  # (T, C, N)
    x = hill(np.clip(a, 0.0, None), config.half_saturation, config.slope).numpy()
    return np.transpose(x, (2, 0, 1))


def baseline_features(n_weeks: int) -> np.ndarray:
    """Regressors of the baseline: level, linear trend, yearly sine and cosine, shape (T, 4)."""
    t = np.arange(n_weeks, dtype=float)
    w = 2 * np.pi * t / 52.0
    return np.stack([np.ones_like(t), t / n_weeks - 0.5, np.sin(w), np.cos(w)], axis=1)


def _ou(rng: np.random.Generator, n: int, t: int, k: int, kappa: float, vol: float) -> np.ndarray:
    """Stationary OU paths, shape (n, t, k)."""
    out = np.empty((n, t, k))
    out[:, 0] = rng.normal(0.0, vol / np.sqrt(2 * kappa - kappa**2), (n, k))
    eps = rng.normal(0.0, vol, (n, t, k))
    for s in range(1, t):
        out[:, s] = (1 - kappa) * out[:, s - 1] + eps[:, s]
    return out


def _flighted_spend(rng: np.random.Generator, n: int, t: int, on_share: np.ndarray) -> np.ndarray:
    """On/off campaigns of random length with log-normal weekly levels (mean 1 when on air)."""
    c = len(on_share)
    mean_on = 6.0
    p_off = 1 / mean_on
    p_on = p_off * on_share / (1 - on_share + 1e-9)
    state = rng.random((n, c)) < on_share
    on = np.empty((n, t, c), dtype=bool)
    for s in range(t):
        on[:, s] = state
        u = rng.random((n, c))
        state = np.where(state, u > p_off, u < np.minimum(p_on, 1.0))
    level = rng.lognormal(-0.125, 0.5, (n, 1, c)) * rng.lognormal(-0.02, 0.2, (n, t, c))
    return on * level


def simulate_tvc(config: TVCConfig | None = None, n_series: int = 1000, seed: int = 0) -> TVCWorld:
    """Simulate ``n_series`` independent series with time-varying coefficients.

    Parameters
    ----------
    config : TVCConfig, optional
        World settings (defaults: 104 weeks, 5 channels, 3 controls).
    n_series : int
        Number of series.
    seed : int
        Seed of the generator; the same seed gives the same world.

    Returns
    -------
    TVCWorld
    """
    cfg = config or TVCConfig()
    rng, spend, media = _begin_world(cfg, n_series, seed)
    n, t, c = n_series, cfg.n_weeks, len(cfg.channels)

    mu = np.log(np.asarray(cfg.beta_median))[None, :] + rng.normal(0.0, cfg.beta_spread, (n, c))
    u = _ou(rng, n, t, c, cfg.kappa, cfg.vol_media)
    jumps = (rng.random((n, t, c)) < cfg.jump_rate) * rng.normal(0.0, cfg.jump_sd, (n, t, c))
    jumps[:, 0] = 0.0
    beta = np.exp(mu[:, None, :] + u + np.cumsum(jumps, axis=1))

    return _complete_world(rng, cfg, spend, media, beta, seed)


def _begin_world(cfg: TVCConfig, n_series: int, seed: int) -> tuple[np.random.Generator, np.ndarray, np.ndarray]:
    """The seeded generator, flighted spend and transformed media every world family starts from."""
    if n_series < 1:
        raise ValueError(f"n_series must be at least 1, got {n_series}")
    rng = np.random.default_rng(seed)
    spend = _flighted_spend(rng, n_series, cfg.n_weeks, np.asarray(cfg.on_share))
    return rng, spend, media_features(spend, cfg)


def _complete_world(rng: np.random.Generator, cfg: TVCConfig, spend: np.ndarray, media: np.ndarray,
                    beta: np.ndarray, seed: int) -> TVCWorld:
    """Controls with their coefficients, baseline, noise and sales around given media
    coefficients: what every world family shares (the families differ in how ``beta`` moves)."""
    n, t, k = spend.shape[0], cfg.n_weeks, len(cfg.controls)
    g_mean = np.asarray(cfg.gamma_mean)
    g_level = g_mean[None, :] * rng.lognormal(-0.045, 0.3, (n, k))
    gamma = g_level[:, None, :] * (1 + _ou(rng, n, t, k, cfg.kappa, cfg.vol_control))

    price = _ou(rng, n, t, 1, 0.15, 0.5)[..., 0]
    promo = (rng.random((n, t)) < 0.15).astype(float)
    competitor = _ou(rng, n, t, 1, 0.05, 0.3)[..., 0]
    raw = np.stack([price, promo, competitor], axis=-1)[..., :k]
    if k > 3:
        raw = np.concatenate([raw, _ou(rng, n, t, k - 3, 0.1, 0.45)], axis=-1)
    controls = (raw - raw.mean(axis=1, keepdims=True)) / (raw.std(axis=1, keepdims=True) + 1e-9)

    level = cfg.level * rng.lognormal(0.0, 0.1, n)
    coef = np.stack([level, level * rng.normal(0.0, 0.1, n), level * rng.uniform(0.03, 0.1, n),
                     level * rng.uniform(-0.05, 0.05, n)], axis=1)
    baseline = coef @ baseline_features(t).T
    noise_sd = cfg.noise * level
    sales = (baseline + (beta * media).sum(-1) + (gamma * controls).sum(-1)
             + noise_sd[:, None] * rng.standard_normal((n, t)))
    return TVCWorld(cfg, spend, media, controls, sales, beta, gamma, baseline, noise_sd, seed)
