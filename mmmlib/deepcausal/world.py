r"""A geo panel in which channel spends drive one another along a known acyclic graph.

The world behind Chapter 3 (DeepCausal). Regions :math:`r`, weeks :math:`t`, channels :math:`c`.

**Spend.** Each channel's log-spend deviation :math:`u_{r,t,c}` is a lag-one structural
vector autoregression whose cross-channel part is a known DAG :math:`A` (``A[i, j] != 0``
means *i drives j*, e.g. TV airtime raises brand queries, and the search budget follows the
queries the next week):

.. math::

    u_{r,t,j} = \phi\,u_{r,t-1,j} + \sum_i A_{ij}\,u_{r,t-1,i} + \varepsilon_{r,t,j},
    \qquad \varepsilon \sim \mathcal N(0, 1),

    x_{r,t,c} = \bar x_{r,c}\,\exp\bigl(\sigma_u\,u_{r,t,c}/s_c + s^{\text{spend}}(t)\bigr),

with :math:`s_c` the stationary scale of :math:`u_{\cdot,\cdot,c}` (so every channel has the
same log-spend variability) and a mild spend seasonality.

**Sales.** Relative to the region's size :math:`n_r`, with LightweightMMM's normalised
geometric adstock and Hill saturation (:mod:`mmmlib.transforms`; a steady spend at the
region's mean gives :math:`a \to 1`),

.. math::

    y_{r,t} = n_r\Bigl[b_r + s(t) + \sum_k \gamma_k z_{r,t,k}
              + \sum_c \beta_{r,t,c}\,\mathrm{hill}_c\bigl(\mathrm{adstock}_c(x_{r,\cdot,c}/\bar x_{r,c})_t\bigr)\Bigr]
              (1 + \epsilon_{r,t}),

where the media coefficients drift slowly,
:math:`\beta_{r,t,c} = \beta_c\,m_{r,c}\exp\{\delta\sin(2\pi t/P_c + \varphi_c)\}`.

The spend graph is *not* an effect on sales: TV's effect on sales is its own term; that its
airtime also moves the search budget is a fact about how the advertiser spends.
The truth kept: the graph, :math:`\beta_{r,t,c}`, every contribution, and the response curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mmmlib.deepcausal.panel import saturated_media
from mmmlib.transforms import hill

__all__ = [
    "GeoGraphConfig",
    "GeoGraphTruth",
    "GeoGraphWorld",
    "simulate_geo_graph",
    "edges_frame",
]

DEFAULT_CHANNELS: tuple[str, ...] = ("tv", "radio", "ooh", "video", "social", "display", "search", "print")
DEFAULT_EDGES: tuple[tuple[str, str, float], ...] = (
    ("tv", "social", 0.6),
    ("tv", "search", 0.6),
    ("social", "search", 0.5),
    ("video", "display", 0.6),
    ("radio", "ooh", -0.5),
)
"""(parent, child, weight): TV and social drive brand search, TV drives social, video
drives display retargeting, and radio and out-of-home compete for the same local budget."""


@dataclass(frozen=True)
class GeoGraphConfig:
    """Settings of the geo-graph world.

    Attributes
    ----------
    n_regions, n_weeks : int
        Panel size.
    channels : tuple of str
        Channel names (at least two).
    edges : tuple of (str, str, float)
        The spend graph as (parent, child, weight); must be acyclic.
    n_controls : int
        Number of control variables (AR(1), standardised).
    spend_persistence : float
        :math:`\\phi`, own-lag coefficient of every log-spend series.
    spend_log_sd : float
        :math:`\\sigma_u`, standard deviation of log spend around its mean.
    media_share : float
        Target share of sales due to media at mean spend (sets :math:`\\beta_c`).
    drift : float
        :math:`\\delta`, amplitude of the slow multiplicative drift of the media coefficients.
    season_amplitude : float
        Amplitude of the (national) sales seasonality relative to the baseline.
    noise : float
        Relative sd of the multiplicative sales noise.
    region_size_sd : float
        Log-sd of region sizes (between-region heterogeneity).
    """

    n_regions: int = 50
    n_weeks: int = 104
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    edges: tuple[tuple[str, str, float], ...] = DEFAULT_EDGES
    n_controls: int = 3
    spend_persistence: float = 0.5
    spend_log_sd: float = 0.4
    media_share: float = 0.3
    drift: float = 0.3
    season_amplitude: float = 0.12
    noise: float = 0.03
    region_size_sd: float = 0.8

    def __post_init__(self) -> None:
        if self.n_regions < 2:
            raise ValueError(f"n_regions must be >= 2, got {self.n_regions}")
        if self.n_weeks < 20:
            raise ValueError(f"n_weeks must be >= 20, got {self.n_weeks}")
        if len(self.channels) < 2 or len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels must be at least two distinct names, got {self.channels}")
        for parent, child, _ in self.edges:
            for name in (parent, child):
                if name not in self.channels:
                    raise ValueError(f"edge ({parent!r}, {child!r}): unknown channel {name!r}")
            if parent == child:
                raise ValueError(f"edge ({parent!r}, {child!r}): self-loops are not allowed")
        if not is_acyclic(self.adjacency()):
            raise ValueError(f"edges must form a DAG, got {self.edges}")
        if not 0 <= self.spend_persistence < 1:
            raise ValueError(f"spend_persistence must be in [0, 1), got {self.spend_persistence}")
        for name in ("spend_log_sd", "media_share", "drift", "season_amplitude", "noise", "region_size_sd"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.media_share >= 1:
            raise ValueError(f"media_share must be < 1, got {self.media_share}")

    def adjacency(self) -> np.ndarray:
        """Weighted adjacency ``A[i, j]`` = weight of edge *i → j*."""
        idx = {c: i for i, c in enumerate(self.channels)}
        a = np.zeros((len(self.channels), len(self.channels)))
        for parent, child, weight in self.edges:
            a[idx[parent], idx[child]] = weight
        return a


def is_acyclic(adjacency: np.ndarray) -> bool:
    """Whether the directed graph with nonzero entries of ``adjacency`` has no cycle."""
    a = (np.asarray(adjacency) != 0).astype(int)
    remaining = list(range(a.shape[0]))
    while remaining:
        sources = [j for j in remaining if not any(a[i, j] for i in remaining)]
        if not sources:
            return False
        remaining = [j for j in remaining if j not in sources]
    return True


@dataclass(frozen=True)
class GeoGraphTruth:
    """What generated a :class:`GeoGraphWorld`.

    Attributes
    ----------
    adjacency : numpy.ndarray, shape (C, C)
        The spend graph, ``adjacency[i, j]`` = weight of *i → j*.
    beta : numpy.ndarray, shape (R, T, C)
        Time-varying media coefficients (sales relative to region size).
    decay, half, slope : numpy.ndarray, shape (C,)
        Adstock decay and Hill parameters (on spend relative to the region's mean spend).
    gamma : numpy.ndarray, shape (K,)
        Control coefficients.
    baseline : numpy.ndarray, shape (R,)
        Region baselines :math:`b_r`.
    season : numpy.ndarray, shape (T,)
        National seasonality :math:`s(t)`.
    size : numpy.ndarray, shape (R,)
        Region sizes :math:`n_r`.
    mean_spend : numpy.ndarray, shape (R, C)
        :math:`\\bar x_{r,c}`.
    contributions : numpy.ndarray, shape (R, T, C)
        Media contributions in sales units (before the multiplicative noise).
    expected : numpy.ndarray, shape (R, T)
        Expected sales (no noise).
    """

    adjacency: np.ndarray
    beta: np.ndarray
    decay: np.ndarray
    half: np.ndarray
    slope: np.ndarray
    gamma: np.ndarray
    baseline: np.ndarray
    season: np.ndarray
    size: np.ndarray
    mean_spend: np.ndarray
    contributions: np.ndarray
    expected: np.ndarray

    def response(self, spend_multiple: np.ndarray, weeks: slice | None = None) -> np.ndarray:
        """Expected weekly media sales per channel, summed over regions, at steady spend.

        Parameters
        ----------
        spend_multiple : numpy.ndarray, shape (C,) or (N, C)
            Steady weekly spend as a multiple of each region's mean spend (1 = the usual level).
        weeks : slice, optional
            Which weeks' coefficients to average (default: all).

        Returns
        -------
        numpy.ndarray, shape (C,) or (N, C)
        """
        m = np.atleast_2d(np.asarray(spend_multiple, dtype=np.float64))
        beta = self.beta[:, weeks if weeks is not None else slice(None)].mean(axis=1)  # (R, C)
        h = hill(m, self.half, self.slope).numpy()  # (N, C)
        out = np.einsum("r,rc,nc->nc", self.size, beta, h)
        return out[0] if np.ndim(spend_multiple) == 1 else out


@dataclass(frozen=True)
class GeoGraphWorld:
    """A simulated geo panel with its truth.

    Attributes
    ----------
    config : GeoGraphConfig
    media : numpy.ndarray, shape (R, T, C)
        Weekly spend.
    controls : numpy.ndarray, shape (R, T, K)
    sales : numpy.ndarray, shape (R, T)
    truth : GeoGraphTruth
    seed : int
    """

    config: GeoGraphConfig
    media: np.ndarray
    controls: np.ndarray
    sales: np.ndarray
    truth: GeoGraphTruth
    seed: int
    regions: tuple[str, ...] = field(default=())

    @property
    def channels(self) -> tuple[str, ...]:
        return self.config.channels

    def to_frame(self) -> pd.DataFrame:
        """Long table: one row per region-week with spend, controls and sales."""
        r, t, c = self.media.shape
        frame = pd.DataFrame(
            {
                "region": np.repeat(self.regions, t),
                "week": np.tile(np.arange(t), r),
                **{f"spend_{ch}": self.media[:, :, i].ravel() for i, ch in enumerate(self.channels)},
                **{f"control_{k}": self.controls[:, :, k].ravel() for k in range(self.controls.shape[2])},
                "sales": self.sales.ravel(),
            }
        )
        return frame


def _stationary_scale(adjacency: np.ndarray, phi: float, n: int = 4000, seed: int = 12345) -> np.ndarray:
    """Standard deviation of each channel of the lag-one SVAR (by a long simulation)."""
    rng = np.random.default_rng(seed)
    c = adjacency.shape[0]
    transition = phi * np.eye(c) + adjacency  # u_t = u_{t-1} @ transition + e
    u = np.zeros(c)
    draws = np.empty((n, c))
    for t in range(n):
        u = u @ transition + rng.standard_normal(c)
        draws[t] = u
    return draws[200:].std(axis=0)


def simulate_geo_graph(config: GeoGraphConfig = GeoGraphConfig(), seed: int = 0) -> GeoGraphWorld:
    """Simulate the geo-graph world.

    Parameters
    ----------
    config : GeoGraphConfig
    seed : int

    Returns
    -------
    GeoGraphWorld
    """
    rng = np.random.default_rng(seed)
    n_r, n_t, n_c, n_k = config.n_regions, config.n_weeks, len(config.channels), config.n_controls
    adjacency = config.adjacency()
    transition = config.spend_persistence * np.eye(n_c) + adjacency
    if np.max(np.abs(np.linalg.eigvals(transition))) >= 1:
        raise ValueError("the spend process is not stationary: reduce spend_persistence or edge weights")
    scale = _stationary_scale(adjacency, config.spend_persistence)

    burn = 30
    u = np.zeros((n_r, n_t + burn, n_c))
    for t in range(1, n_t + burn):
        u[:, t] = u[:, t - 1] @ transition + rng.standard_normal((n_r, n_c))
    u = u[:, burn:] / scale
    weeks = np.arange(n_t)
    spend_season = 0.15 * np.sin(2 * np.pi * (weeks - 8) / 52.0)
    size = np.exp(rng.normal(0.0, config.region_size_sd, n_r))
    budget_share = rng.dirichlet(np.full(n_c, 4.0))
    mean_spend = 1000.0 * size[:, None] * budget_share[None, :] * np.exp(rng.normal(0, 0.3, (n_r, n_c)))
    media = mean_spend[:, None, :] * np.exp(config.spend_log_sd * u + spend_season[None, :, None])

    ctrl = np.zeros((n_r, n_t, n_k))
    for t in range(n_t):
        prev = ctrl[:, t - 1] if t else 0.0
        ctrl[:, t] = 0.7 * prev + np.sqrt(1 - 0.49) * rng.standard_normal((n_r, n_k))
    gamma = rng.uniform(0.01, 0.04, n_k) * rng.choice([-1.0, 1.0], n_k)

    decay = rng.uniform(0.1, 0.6, n_c)
    half = rng.uniform(0.6, 1.4, n_c)
    slope = rng.uniform(1.0, 2.5, n_c)
    # Contribution at mean spend: beta_c * hill(1); spread across channels, summing to media_share.
    weight = rng.dirichlet(np.full(n_c, 3.0))
    beta_c = config.media_share * weight / hill(np.ones((1, n_c)), half, slope).numpy()[0]
    region_mult = np.exp(rng.normal(0, 0.2, (n_r, n_c)))
    period = rng.uniform(1.0, 2.0, n_c) * n_t
    phase = rng.uniform(0, 2 * np.pi, n_c)
    drift = np.exp(config.drift * np.sin(2 * np.pi * weeks[:, None] / period + phase))  # (T, C)
    beta = beta_c[None, None, :] * region_mult[:, None, :] * drift[None, :, :]

    relative = media / mean_spend[:, None, :]
    sat = saturated_media(relative, decay, half, slope).numpy()
    media_rel = beta * sat  # (R, T, C), relative to size
    season = config.season_amplitude * (
        np.sin(2 * np.pi * weeks / 52.0) + 0.4 * np.cos(4 * np.pi * weeks / 52.0)
    )
    baseline = 1.0 + rng.normal(0, 0.05, n_r)
    relative_sales = baseline[:, None] + season[None, :] + ctrl @ gamma + media_rel.sum(axis=2)
    expected = size[:, None] * relative_sales
    sales = expected * (1.0 + config.noise * rng.standard_normal((n_r, n_t)))

    truth = GeoGraphTruth(
        adjacency=adjacency,
        beta=beta,
        decay=decay,
        half=half,
        slope=slope,
        gamma=gamma,
        baseline=baseline,
        season=season,
        size=size,
        mean_spend=mean_spend,
        contributions=size[:, None, None] * media_rel,
        expected=expected,
    )
    regions = tuple(f"R{r:03d}" for r in range(n_r))
    return GeoGraphWorld(config, media, ctrl, sales, truth, seed, regions)


def edges_frame(adjacency: np.ndarray, channels: Sequence[str]) -> pd.DataFrame:
    """Nonzero entries of an adjacency as a (parent, child, weight) table."""
    i, j = np.nonzero(adjacency)
    return pd.DataFrame(
        {"parent": [channels[a] for a in i], "child": [channels[b] for b in j], "weight": adjacency[i, j]}
    )
