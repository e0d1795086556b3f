r"""A conditional denoising diffusion model of time-varying coefficient paths (MMM-Diffusion; Chapter 5).

The model generates, for one series, the matrix :math:`v \in \mathbb R^{T\times D}` of standardised
coefficient paths: log media coefficients (so media coefficients are positive by construction),
control coefficients, and the baseline, conditioned on the transformed media :math:`x`, the controls
:math:`z` and the observed sales :math:`y`.

**Diffusion.** A cosine noise schedule :math:`\bar\alpha_k` over :math:`K` steps (Nichol & Dhariwal),
:math:`v_k = \sqrt{\bar\alpha_k}\,v_0 + \sqrt{1-\bar\alpha_k}\,\epsilon`, and a network that predicts
:math:`v_0` (x₀-prediction). Sampling by ancestral DDPM over all :math:`K` steps or by deterministic
DDIM over a subsequence.

**Denoiser** (the source's two stages, after Kimodo/GMD):

1. a *campaign* transformer encoder reads the noisy path with controls and sales and predicts two
   aggregate paths, total media contribution and baseline (loss ``campaign``);
2. a *channel* transformer decoder reads the noisy path with media, attends to stage 1's output
   (cross-attention) and predicts :math:`\hat v_0` for every coefficient (loss ``channel``).

**Losses** (source names): ``channel``, ``campaign``, ``spectral`` (log-magnitude FFT difference,
more weight on high frequencies), ``temporal`` (first and second differences), ``sales``
(reconstruction :math:`b + \sum_c\beta x + \sum_k\gamma z` against the observed sales),
``contrib`` (channel contributions against the truth) and ``sign`` (known signs of control
coefficients). Auxiliary terms are off for the first quarter of training and then ramped in.

**Reading a Kalman smoother** (``kalman=True``, our change). The conditioning also carries the
posterior mean :math:`m` and standard deviation :math:`s` of every coefficient under the linear
state-space smoother of :mod:`mmmlib.tvc.statespace`, and the diffusion runs on the whitened
residual :math:`(v - m)/s` instead of :math:`v`. Where the smoother is calibrated that residual is
about standard normal, so the noise schedule works on the scale of the posterior, and the network
learns only what the Gaussian prior gets wrong (log-normal coefficients, jumps).

**Sales consistency.** At sampling time :math:`\hat v_0` can be projected every few steps onto
the sales equation: a linearised Gaussian update of each week's coefficients given that week's
sales residual, with the sales noise variance in the denominator (:func:`project_sales`), so the
projection explains the residual only as far as the noise allows.

**Calibrated spread** (our change, optional). A sampler trained on a finite set of paths can be
too sure of itself. :meth:`TVCDiffusion.calibrate_spread` measures, on held-out simulated series
with known paths, the factor by which every draw's deviation of the log media coefficient from the
mean over the draws must be scaled for the 90% bands of the media coefficients to hold 90% of the
true values, control coefficients and the baseline being left as drawn (Kuleshov et al. 2018's
recalibration, for a single scale), and
:meth:`TVCDiffusion.sample` applies it (:meth:`PathSamples.widen`). Median paths are kept; the
factor is learned on the training family, so it is only as right as the family. See Chapter 5.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mmmlib.tvc.statespace import KalmanTVC
from mmmlib.tvc.world import TVCWorld, baseline_features

__all__ = [
    "DiffusionConfig",
    "DualDenoiser",
    "PathSamples",
    "SpreadCalibration",
    "TVCDiffusion",
    "TVCScaler",
    "cosine_schedule",
    "kalman_features",
    "project_sales",
    "sample_quantile",
    "spread_factor",
]

#: Names of the training loss terms, in the order of the source (see :class:`DiffusionConfig`).
LOSS_TERMS: tuple[str, ...] = ("channel", "campaign", "spectral", "temporal", "sales", "contrib", "sign")


@dataclass(frozen=True)
class DiffusionConfig:
    """Size, schedule and training settings of the diffusion model.

    Attributes
    ----------
    d_model, heads, campaign_layers, channel_layers, ff_mult : int
        Transformer width, attention heads, depth of the two stages, feed-forward multiple.
    steps : int
        Diffusion steps :math:`K` (DDPM trains and samples over all of them).
    ddim_steps : int
        Steps of the DDIM sampler.
    epochs, batch_size : int
        Passes over the training series and series per step.
    lr : float
        Peak learning rate of AdamW (linear warm-up, cosine decay).
    weights : dict
        Weight of every loss term (see :data:`LOSS_TERMS`).
    aux_off, aux_ramp : float
        Auxiliary terms are off for the first ``aux_off`` of training and reach full weight after
        a further ``aux_ramp``.
    project_every : int
        Sales projection every this many sampling steps (0: never).
    project_var : float
        Prior variance of each standardised coefficient in the projection.
    clip : float
        :math:`\\hat v_0` is clipped to ``[-clip, clip]`` while sampling.
    snr_cap : float
        The denoising loss at step :math:`k` is weighted by :math:`1 + \\min(\\mathrm{SNR}_k, \\text{cap})`
        (min-SNR weighting, Hang et al. 2023), so the low-noise steps that shape the spread of the
        samples are not drowned by the high-noise ones.
    kalman : bool
        Condition on the Kalman smoother's posterior (:class:`~mmmlib.tvc.statespace.KalmanTVC`)
        and diffuse the whitened residual from its mean; ``False`` is the source's design.
    """

    d_model: int = 64
    heads: int = 4
    campaign_layers: int = 2
    channel_layers: int = 2
    ff_mult: int = 2
    steps: int = 100
    ddim_steps: int = 20
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weights: dict[str, float] = field(default_factory=lambda: {
        "channel": 1.0, "campaign": 0.5, "spectral": 0.02, "temporal": 0.05,
        "sales": 0.2, "contrib": 0.2, "sign": 0.1})
    aux_off: float = 0.25
    aux_ramp: float = 0.25
    project_every: int = 1
    project_var: float = 0.05
    clip: float = 5.0
    kalman: bool = True
    snr_cap: float = 5.0

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(LOSS_TERMS)
        if unknown:
            raise ValueError(f"DiffusionConfig.weights has unknown terms {sorted(unknown)}; known: {LOSS_TERMS}")
        if self.d_model % self.heads:
            raise ValueError(f"DiffusionConfig.d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        if self.ddim_steps > self.steps:
            raise ValueError(f"DiffusionConfig.ddim_steps ({self.ddim_steps}) exceeds steps ({self.steps})")


def cosine_schedule(steps: int, s: float = 0.008) -> torch.Tensor:
    r"""Cumulative signal fractions :math:`\bar\alpha_k`, :math:`k = 0..K-1`, of the cosine schedule.

    .. math:: \bar\alpha_k = f(k+1)/f(0),\quad f(u) = \cos^2\!\Big(\frac{u/K + s}{1+s}\,\frac\pi2\Big),

    with every step's :math:`\beta_k = 1 - \bar\alpha_k/\bar\alpha_{k-1}` clipped to 0.999.
    """
    u = torch.arange(steps + 1, dtype=torch.float64)
    f = torch.cos((u / steps + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    beta = (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - beta, 0).float()


@dataclass
class TVCScaler:
    """Standardisation of coefficient paths and conditioning inputs, fitted on training series.

    The path has :math:`D = C + K + 1` columns: :math:`\\log\\beta` per channel, :math:`\\gamma` per
    control, and the baseline.
    """

    mean: np.ndarray
    sd: np.ndarray
    sales_mean: float
    sales_sd: float
    media_sd: np.ndarray
    noise_var: float
    n_media: int
    n_controls: int
    signs: np.ndarray

    @classmethod
    def fit(cls, train: TVCWorld) -> TVCScaler:
        """Moments from the training series (truth included: the model is trained on simulations)."""
        path = np.concatenate([np.log(train.beta), train.gamma, train.baseline[..., None]], axis=-1)
        return cls(mean=path.mean((0, 1)), sd=path.std((0, 1)) + 1e-6, sales_mean=float(train.sales.mean()),
                   sales_sd=float(train.sales.std()), media_sd=train.media.std((0, 1)) + 1e-6,
                   noise_var=float(train.noise.var()), n_media=train.beta.shape[-1], n_controls=train.gamma.shape[-1],
                   signs=train.config.control_signs)

    def encode(self, world: TVCWorld) -> np.ndarray:
        """Standardised true paths of a world, shape (N, T, D)."""
        path = np.concatenate([np.log(world.beta), world.gamma, world.baseline[..., None]], axis=-1)
        return ((path - self.mean) / self.sd).astype(np.float32)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation as float32 tensors."""
        return torch.as_tensor(self.mean, dtype=torch.float32), torch.as_tensor(self.sd, dtype=torch.float32)

    def decode(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Media coefficients, control coefficients and baseline from standardised paths ``(..., T, D)``."""
        m, s = self.tensors()
        nat = v * s + m
        c, k = self.n_media, self.n_controls
        return torch.exp(nat[..., :c].clamp(max=20.0)), nat[..., c: c + k], nat[..., c + k]

    def conditioning(self, media: np.ndarray, controls: np.ndarray, sales: np.ndarray) -> np.ndarray:
        """Per-week conditioning features (media, controls, sales, trend, season), shape (N, T, C + K + 4)."""
        n, t, _ = media.shape
        f = np.broadcast_to(baseline_features(t)[:, 1:], (n, t, 3))
        y = (sales - self.sales_mean) / self.sales_sd
        return np.concatenate([media / self.media_sd, controls, y[..., None], f], axis=-1).astype(np.float32)


def kalman_features(scaler: TVCScaler, kalman: KalmanTVC, media: np.ndarray, controls: np.ndarray,
                    sales: np.ndarray, chunk: int = 500) -> np.ndarray:
    """The Kalman smoother's posterior in the model's standardised space, shape (N, T, 2 D).

    The first :math:`D` columns are the smoothed mean path (log of the media coefficients floored at
    a tenth of their training median, controls, baseline); the last :math:`D` are the log of the
    posterior standard deviations on the same scale (delta method for the log).
    """
    out = []
    c, k = scaler.n_media, scaler.n_controls
    floor = 0.1 * np.exp(scaler.mean[:c])
    for lo in range(0, media.shape[0], chunk):
        sl = slice(lo, lo + chunk)
        post = kalman.smooth(media[sl], controls[sl], sales[sl])
        beta = np.maximum(post.beta, floor)
        mean = np.concatenate([np.log(beta), post.gamma, post.baseline[..., None]], -1)
        sd = np.concatenate([post.beta_sd / beta, post.sd[..., c: c + k], post.baseline_sd[..., None]], -1)
        out.append(np.concatenate([(mean - scaler.mean) / scaler.sd, np.log(sd / scaler.sd + 1e-6)], -1))
    return np.concatenate(out).astype(np.float32)


def _sales_hat(scaler: TVCScaler, v: torch.Tensor, media: torch.Tensor, controls: torch.Tensor) -> torch.Tensor:
    """Sales implied by standardised paths ``v`` (B, T, D) for media (B, T, C) and controls (B, T, K)."""
    beta, gamma, base = scaler.decode(v)
    return base + (beta * media).sum(-1) + (gamma * controls).sum(-1)


def project_sales(scaler: TVCScaler, v0: torch.Tensor, media: torch.Tensor, controls: torch.Tensor,
                  sales: torch.Tensor, prior_var: float) -> torch.Tensor:
    r"""Move each week's coefficients towards the sales equation (a linearised Gaussian update).

    With the residual :math:`r_t = y_t - \hat y_t(v)` and its gradient :math:`J_t = \partial\hat y_t/\partial v_t`,

    .. math:: v_t \leftarrow v_t + \frac{p\,J_t\, r_t}{p\,J_t^\top J_t + \sigma^2},

    the posterior mean of :math:`v_t` under a :math:`\mathcal N(v_t, p I)` prior and one
    linearised observation with the sales noise variance :math:`\sigma^2`.

    Parameters
    ----------
    scaler : TVCScaler
    v0 : Tensor, shape (B, T, D)
        Current estimate of the clean standardised path.
    media, controls : Tensor, shapes (B, T, C), (B, T, K)
    sales : Tensor, shape (B, T)
    prior_var : float
        :math:`p`.
    """
    _, sd = scaler.tensors()
    c, k = scaler.n_media, scaler.n_controls
    beta, _, _ = scaler.decode(v0)
    jac = torch.cat([beta * media * sd[:c], controls * sd[c: c + k], sd[c + k].expand(*v0.shape[:2], 1)], -1)
    r = sales - _sales_hat(scaler, v0, media, controls)
    gain = prior_var * jac / (prior_var * (jac * jac).sum(-1, keepdim=True) + scaler.noise_var)
    return v0 + gain * r[..., None]


@contextmanager
def _float32() -> Iterator[None]:
    """Run model code in float32 whatever the chapter's default dtype is."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _sinusoid(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of positions or diffusion steps ``x`` (any shape) into ``dim`` features."""
    half = dim // 2
    freq = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / half)
    ang = x.float()[..., None] * freq
    return torch.cat([torch.sin(ang), torch.cos(ang)], -1)


class DualDenoiser(nn.Module):
    """Two-stage transformer denoiser: campaign encoder, then channel decoder with cross-attention.

    Parameters
    ----------
    n_media, n_controls : int
    config : DiffusionConfig
    """

    def __init__(self, n_media: int, n_controls: int, config: DiffusionConfig) -> None:
        super().__init__()
        d = config.d_model
        self.dim = n_media + n_controls + 1
        self.n_media, self.n_controls = n_media, n_controls
        self.n_kalman = 2 * self.dim if config.kalman else 0
        self.step_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.in_campaign = nn.Linear(self.dim + n_controls + 4 + self.n_kalman, d)
        self.in_channel = nn.Linear(self.dim + n_media + 4 + self.n_kalman, d)

        def layer(kind: type) -> nn.Module:
            return kind(d, config.heads, config.ff_mult * d, dropout=0.0, batch_first=True, norm_first=True)

        self.campaign = nn.TransformerEncoder(layer(nn.TransformerEncoderLayer), config.campaign_layers,
                                              enable_nested_tensor=False)
        self.channel = nn.TransformerDecoder(layer(nn.TransformerDecoderLayer), config.channel_layers)
        self.out_campaign = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2))
        self.out_channel = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, self.dim))

    def forward(self, vk: torch.Tensor, k: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict the clean path and the two aggregate paths.

        Parameters
        ----------
        vk : Tensor, shape (B, T, D)
            Noisy standardised path.
        k : Tensor, shape (B,)
            Diffusion step of each path.
        cond : Tensor, shape (B, T, C + K + 4 [+ 2 D])
            Media, controls, sales, trend and season features (:meth:`TVCScaler.conditioning`),
            then the Kalman features (:func:`kalman_features`) when the model uses them.

        Returns
        -------
        v0_hat : Tensor, shape (B, T, D)
            The clean diffused variable: the standardised path, or its whitened residual from the
            Kalman mean when the model reads the smoother (see :meth:`TVCDiffusion.to_path`).
        campaign_hat : Tensor, shape (B, T, 2)
            Standardised total media contribution and baseline.
        """
        b, t, _ = vk.shape
        c, kk = self.n_media, self.n_controls
        d = self.step_mlp[0].in_features
        emb = self.step_mlp(_sinusoid(k, d))[:, None, :] + _sinusoid(torch.arange(t), d)[None]
        media, rest = cond[..., :c], cond[..., c:]
        h1 = self.campaign(self.in_campaign(torch.cat([vk, rest], -1)) + emb)
        h2 = self.channel(self.in_channel(torch.cat([vk, media, rest[..., kk:]], -1)) + emb, h1)
        return self.out_channel(h2), self.out_campaign(h1)


@dataclass
class PathSamples:
    """Samples of coefficient paths for a batch of series.

    Attributes
    ----------
    beta : ndarray, shape (N, S, T, C)
    gamma : ndarray, shape (N, S, T, K)
    baseline : ndarray, shape (N, S, T)
    seconds : float
        Wall time of the sampler.
    """

    beta: np.ndarray
    gamma: np.ndarray
    baseline: np.ndarray
    seconds: float

    def sales(self, media: np.ndarray, controls: np.ndarray) -> np.ndarray:
        """Sales implied by every sample, shape (N, S, T)."""
        return (self.baseline + (self.beta * media[:, None]).sum(-1) + (self.gamma * controls[:, None]).sum(-1))

    def widen(self, factor: float) -> PathSamples:
        """The same draws with the spread of the media coefficients scaled by ``factor``.

        Every draw's log media coefficient is moved away from (or towards) the mean of the draws'
        log coefficients, week by week, by ``factor``; the geometric mean, so the median path, is
        kept. The arithmetic mean of a log-normal-like set of draws grows with their spread, so
        the posterior means move a little. Control coefficients and baseline are left as drawn.
        """
        if not factor > 0:
            raise ValueError(f"factor must be positive, got {factor!r}")
        log_beta = np.log(self.beta)
        mid = log_beta.mean(1, keepdims=True)
        return PathSamples(np.exp(mid + factor * (log_beta - mid)), self.gamma, self.baseline, self.seconds)


def sample_quantile(draws: np.ndarray, q: float, axis: int = 1) -> np.ndarray:
    """The ``q`` quantile of ``draws`` along ``axis``, read so that sample bands are unbiased.

    With :math:`S` draws, the interval between the :math:`j`-th smallest and the :math:`j`-th
    largest holds a fresh draw from the same distribution with probability
    :math:`(S + 1 - 2j)/(S + 1)`, whatever the distribution. NumPy's default rule puts the ``q``
    quantile at rank :math:`1 + q(S - 1)`, so a 90% band from 32 exact posterior draws covers
    only about 0.85. The rule used here (Hyndman and Fan's type 6) puts it at rank
    :math:`q(S + 1)`: exact when that is a whole number (for 90% bands, :math:`S` = 19, 39,
    59, ...), and within about 0.01 between those counts for :math:`S \\ge 24`, so a method's
    coverage is not lowered by how few paths it drew.
    """
    return np.quantile(draws, q, axis=axis, method="weibull")


def spread_factor(samples: PathSamples, truth: np.ndarray, level: float = 0.9) -> float:
    """The factor of :meth:`PathSamples.widen` for which the media coefficients' central bands cover ``level``.

    Parameters
    ----------
    samples : PathSamples
        Raw draws of held-out series.
    truth : ndarray, shape (N, T, C)
        Their true media coefficients.
    level : float
        Nominal level of the central band (read with :func:`sample_quantile`).

    Returns
    -------
    float
        In log space, with mean :math:`m` of the draws and band ends :math:`l \\le m \\le u`,
        scaling every deviation by :math:`f` moves the band to :math:`[m + f(l - m), m + f(u - m)]`;
        a true value :math:`z` is inside it from :math:`f_z = (z - m)/(u - m)` on (or
        :math:`(m - z)/(m - l)` below the mean). The factor is the ``level`` quantile of the
        :math:`f_z`, so the scaled bands hold that share of the true values; ``inf`` when that
        share lies off bands without spread.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    if truth.shape != samples.beta.shape[:1] + samples.beta.shape[2:]:
        raise ValueError(f"truth {truth.shape} does not match the draws {samples.beta.shape} (draws on axis 1)")
    draws, z = np.log(samples.beta), np.log(truth)
    m = draws.mean(1)
    lo = np.minimum(sample_quantile(draws, (1 - level) / 2), m)
    hi = np.maximum(sample_quantile(draws, (1 + level) / 2), m)
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(z >= m, (z - m) / (hi - m), (m - z) / (m - lo))
    need = np.where(np.isnan(need), 0.0, need)  # the truth exactly at a degenerate band
    if np.isinf(np.quantile(need, level, method="higher")):
        return math.inf  # the truth lies off bands without spread: no factor reaches it
    return float(np.quantile(need, level))


@dataclass(frozen=True)
class SpreadCalibration:
    """What :meth:`TVCDiffusion.calibrate_spread` learned and the sampler settings it holds for.

    Attributes
    ----------
    factor : float
        Scale of every draw's deviation from the mean of the draws.
    raw_coverage : float
        Coverage of the 90% bands of the media coefficients before scaling, on the held-out series.
    method, steps, project :
        The sampler settings the factor was measured with (it is applied only with these).
    series, draws : int
        Held-out series and draws per series it was measured on.
    """

    factor: float
    raw_coverage: float
    method: str
    steps: int
    project: bool
    series: int
    draws: int


class TVCDiffusion:
    """Train and sample the conditional diffusion model of coefficient paths.

    Parameters
    ----------
    config : DiffusionConfig
    """

    def __init__(self, config: DiffusionConfig | None = None) -> None:
        self.config = config or DiffusionConfig()
        self.net: DualDenoiser | None = None
        self.scaler: TVCScaler | None = None
        self.kalman: KalmanTVC | None = None
        self.abar = cosine_schedule(self.config.steps)
        self.history: list[dict[str, float]] = []
        self.fit_seconds = float("nan")
        self.spread: SpreadCalibration | None = None

    # ------------------------------------------------------------------ training
    def _aux_factor(self, progress: float) -> float:
        c = self.config
        if progress < c.aux_off:
            return 0.0
        return min(1.0, (progress - c.aux_off) / max(c.aux_ramp, 1e-9))

    def _snr_weight(self, k: torch.Tensor) -> torch.Tensor:
        """Weight of the denoising loss at step ``k``: 1 + min(SNR, snr_cap), more weight on low noise."""
        ab = self.abar[k]
        return 1 + (ab / (1 - ab)).clamp(max=self.config.snr_cap)

    def losses(self, v0: torch.Tensor, cond: torch.Tensor, media: torch.Tensor, controls: torch.Tensor,
               sales: torch.Tensor, k: torch.Tensor, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every loss term for one batch, before weighting.

        ``v0`` is the standardised true path; the denoising (``channel``) loss is computed on the
        diffused variable (:meth:`to_diffused`), the others on the path.
        """
        sc = self.scaler
        clip = self.config.clip
        ab = self.abar[k][:, None, None]
        x0 = self.to_diffused(v0, cond).clamp(-clip, clip)
        xk = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        x_hat, camp_hat = self.net(xk, k, cond)
        v_hat = self.to_path(x_hat.clamp(-clip, clip), cond)
        beta, gamma, base = sc.decode(v0)
        beta_h, gamma_h, _ = sc.decode(v_hat.clamp(-self.config.clip, self.config.clip))
        contrib, contrib_h = beta * media, beta_h * media
        ys = sc.sales_sd
        camp = torch.stack([contrib.sum(-1) / ys, (base - sc.sales_mean) / ys], -1)
        f_true, f_hat = torch.fft.rfft(v0, dim=1).abs(), torch.fft.rfft(v_hat, dim=1).abs()
        wf = 1 + torch.linspace(0, 1, f_true.shape[1])[None, :, None]
        d1, d1h = v0.diff(dim=1), v_hat.diff(dim=1)
        signs = torch.as_tensor(sc.signs, dtype=torch.float32)
        return {
            "channel": (self._snr_weight(k)[:, None, None] * (x_hat - x0) ** 2).mean(),
            "campaign": ((camp_hat - camp) ** 2).mean(),
            "spectral": (wf * (torch.log1p(f_hat) - torch.log1p(f_true)).abs()).mean(),
            "temporal": ((d1h - d1) ** 2).mean() + ((d1h.diff(dim=1) - d1.diff(dim=1)) ** 2).mean(),
            "sales": (((_sales_hat(sc, v_hat.clamp(-self.config.clip, self.config.clip), media, controls)
                        - sales) / ys) ** 2).mean(),
            "contrib": (((contrib_h - contrib) / ys) ** 2).mean(),
            "sign": (torch.relu(-signs * gamma_h) ** 2).mean() / float(np.mean(sc.sd[sc.n_media: -1] ** 2)),
        }

    def _kalman_parts(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Kalman mean and standard deviation (standardised path units) from the conditioning."""
        off = self.scaler.n_media + self.scaler.n_controls + 4
        d = self.net.dim
        return cond[..., off: off + d], cond[..., off + d: off + 2 * d].exp()

    def to_diffused(self, v: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The variable the diffusion runs on: the standardised path, or with the Kalman smoother its
        whitened residual :math:`(v - m_{KF}) / s_{KF}` (about standard normal where the smoother is
        calibrated, so the noise schedule is on the scale of the posterior, not of the prior)."""
        if self.kalman is None:
            return v
        m, s = self._kalman_parts(cond)
        return (v - m) / s

    def to_path(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_diffused`."""
        if self.kalman is None:
            return x
        m, s = self._kalman_parts(cond)
        return m + s * x

    def fit(self, train: TVCWorld, valid: TVCWorld | None = None, seed: int = 0, progress: bool = False) -> TVCDiffusion:
        """Train on simulated series (their true paths are the denoising targets).

        Parameters
        ----------
        train : TVCWorld
            Training series.
        valid : TVCWorld, optional
            Series for a validation loss after every epoch (denoising loss at fixed steps).
        seed : int
            Seed of the batch order and of the diffusion noise.
        progress : bool
            Show a progress bar over epochs.
        """
        with _float32():
            return self._fit(train, valid, seed, progress)

    def _fit(self, train: TVCWorld, valid: TVCWorld | None, seed: int, progress: bool) -> TVCDiffusion:
        c = self.config
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.scaler = TVCScaler.fit(train)
        self.kalman = KalmanTVC.calibrate(train) if c.kalman else None
        self.net = DualDenoiser(train.beta.shape[-1], train.gamma.shape[-1], c).float()
        data = self._tensors(train)
        val = self._tensors(valid) if valid is not None else None
        n = data[0].shape[0]
        per_epoch = max(1, n // c.batch_size)
        total = per_epoch * c.epochs
        opt = torch.optim.AdamW(self.net.parameters(), lr=c.lr, weight_decay=1e-4)
        warm = max(1, total // 20)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=c.epochs, desc="diffusion epochs")
        start = time.perf_counter()
        step = 0
        for epoch in range(c.epochs):
            self.net.train()
            perm = torch.randperm(n, generator=gen)
            sums = dict.fromkeys(("loss", *LOSS_TERMS), 0.0)
            for b in range(per_epoch):
                idx = perm[b * c.batch_size:(b + 1) * c.batch_size]
                v0, cond, media, controls, sales = (x[idx] for x in data)
                k = torch.randint(0, c.steps, (len(idx),), generator=gen)
                noise = torch.randn(v0.shape, generator=gen)
                terms = self.losses(v0, cond, media, controls, sales, k, noise)
                aux = self._aux_factor(step / total)
                loss = sum(c.weights.get(name, 0.0) * (1.0 if name == "channel" else aux) * val_
                           for name, val_ in terms.items())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
                opt.step()
                sched.step()
                step += 1
                sums["loss"] += float(loss.detach())
                for name, val_ in terms.items():
                    sums[name] += float(val_.detach())
            row = {"epoch": epoch + 1, **{key: v / per_epoch for key, v in sums.items()}, "aux_weight": aux}
            if val is not None:
                row["valid_channel"] = self._valid_loss(val)
            self.history.append(row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.3f}")
        if bar is not None:
            bar.close()
        self.fit_seconds = time.perf_counter() - start
        self.net.eval()
        return self

    def conditioning(self, media: np.ndarray, controls: np.ndarray, sales: np.ndarray) -> np.ndarray:
        """Conditioning features of series: data, plus the Kalman posterior when the model uses it."""
        cond = self.scaler.conditioning(media, controls, sales)
        if self.kalman is None:
            return cond
        return np.concatenate([cond, kalman_features(self.scaler, self.kalman, media, controls, sales)], -1)

    def _tensors(self, world: TVCWorld) -> tuple[torch.Tensor, ...]:
        sc = self.scaler
        f32 = torch.float32
        return (torch.as_tensor(sc.encode(world)),
                torch.as_tensor(self.conditioning(world.media, world.controls, world.sales)),
                torch.as_tensor(world.media, dtype=f32), torch.as_tensor(world.controls, dtype=f32),
                torch.as_tensor(world.sales, dtype=f32))

    @torch.no_grad()
    def _valid_loss(self, val: tuple[torch.Tensor, ...]) -> float:
        """Channel loss on validation series at 8 fixed steps and fixed noise (comparable across epochs)."""
        self.net.eval()
        gen = torch.Generator().manual_seed(12345)
        cond = val[1][:256]
        v0 = self.to_diffused(val[0][:256], cond).clamp(-self.config.clip, self.config.clip)
        out = []
        for k_ in torch.linspace(0, self.config.steps - 1, 8).long():
            k = torch.full((v0.shape[0],), int(k_))
            ab = self.abar[k][:, None, None]
            vk = ab.sqrt() * v0 + (1 - ab).sqrt() * torch.randn(v0.shape, generator=gen)
            out.append(float(((self.net(vk, k, cond)[0] - v0) ** 2).mean()))
        self.net.train()
        return float(np.mean(out))

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, media: np.ndarray, controls: np.ndarray, sales: np.ndarray, n_samples: int = 100,
               method: str = "ddim", steps: int | None = None, project: bool = True, seed: int = 0,
               batch: int = 512, calibrated: bool = True) -> PathSamples:
        """Draw coefficient paths for each series given its media, controls and sales.

        Parameters
        ----------
        media, controls : ndarray, shapes (N, T, C), (N, T, K)
        sales : ndarray, shape (N, T)
        n_samples : int
            Paths per series.
        method : {"ddim", "ddpm"}
            Deterministic DDIM over ``steps`` steps, or ancestral DDPM over all :math:`K` steps.
        steps : int, optional
            DDIM steps (default ``config.ddim_steps``).
        project : bool
            Apply the sales projection (:func:`project_sales`) every ``config.project_every`` steps.
        seed : int
            Seed of the initial noise (and of DDPM's noise).
        batch : int
            Paths per network call.
        calibrated : bool
            Scale the draws' spread by the factor of :meth:`calibrate_spread` when the model has
            one (raises when it was measured with other sampler settings); ``False``: raw draws.

        Returns
        -------
        PathSamples
        """
        if self.net is None:
            raise RuntimeError("fit the model before sampling")
        steps = self._steps(method, steps)
        factor = 1.0
        if calibrated and self.spread is not None:
            cal = self.spread
            if (cal.method, cal.steps, cal.project) != (method, steps, project):
                raise ValueError(f"the spread was calibrated with method={cal.method!r}, steps={cal.steps}, "
                                 f"project={cal.project}; sampling with method={method!r}, steps={steps}, "
                                 f"project={project} needs calibrated=False or a new calibrate_spread")
            factor = cal.factor
        with _float32():
            return self._sample(media, controls, sales, n_samples, method, steps, project, seed, batch, factor)

    def _steps(self, method: str, steps: int | None) -> int:
        """The denoising steps a sampler runs: ``steps`` (default ``config.ddim_steps``) for DDIM, all
        :math:`K` for DDPM."""
        if method not in ("ddim", "ddpm"):
            raise ValueError(f"method must be 'ddim' or 'ddpm', got {method!r}")
        return (steps or self.config.ddim_steps) if method == "ddim" else self.config.steps

    def calibrate_spread(self, world: TVCWorld, n_samples: int = 19, method: str = "ddim", steps: int | None = None,
                         project: bool = True, seed: int = 0, level: float = 0.9) -> SpreadCalibration:
        """Measure and keep the factor that calibrates the spread of the sampled paths.

        Samples ``n_samples`` raw paths for every series of ``world`` (held-out simulated series
        of the training family, with known paths) and finds the factor of :meth:`PathSamples.widen`
        for which the ``level`` bands of the media coefficients hold ``level`` of the true values
        (:func:`spread_factor`). Later calls of :meth:`sample` with the same sampler settings
        apply it.

        Parameters
        ----------
        world : TVCWorld
            Held-out series (not the test series).
        n_samples, method, steps, project, seed :
            As in :meth:`sample`.
        level : float
            Nominal level of the bands.

        Returns
        -------
        SpreadCalibration

        Raises
        ------
        ValueError
            With fewer than 2 draws per series, or when no finite factor reaches ``level``
            (draws without spread where the truth lies off them).
        """
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
            raise ValueError(f"calibrate_spread needs n_samples >= 2 draws per series (a spread), got {n_samples!r}")
        raw = self.sample(world.media, world.controls, world.sales, n_samples, method=method, steps=steps,
                          project=project, seed=seed, calibrated=False)
        lo, hi = sample_quantile(raw.beta, (1 - level) / 2), sample_quantile(raw.beta, (1 + level) / 2)
        factor = spread_factor(raw, world.beta, level)
        if not math.isfinite(factor):
            raise ValueError(f"no finite factor makes the {level:.0%} bands cover the truth of these {world.n} "
                             "series: the draws have no spread where the truth lies off them")
        self.spread = SpreadCalibration(
            factor=factor,
            raw_coverage=float(((world.beta >= lo) & (world.beta <= hi)).mean()),
            method=method, steps=self._steps(method, steps), project=project, series=world.n, draws=n_samples)
        return self.spread

    def _sample(self, media: np.ndarray, controls: np.ndarray, sales: np.ndarray, n_samples: int, method: str,
                steps: int, project: bool, seed: int, batch: int, factor: float) -> PathSamples:
        c = self.config
        sc = self.scaler
        if media.shape[-1] != sc.n_media or controls.shape[-1] != sc.n_controls:
            raise ValueError(f"the model was trained with {sc.n_media} channels and {sc.n_controls} controls, "
                             f"got {media.shape[-1]} and {controls.shape[-1]}")
        n, t, _ = media.shape
        cond = torch.as_tensor(self.conditioning(media, controls, sales)).repeat_interleave(n_samples, 0)
        f32 = torch.float32
        m_t = torch.as_tensor(media, dtype=f32).repeat_interleave(n_samples, 0)
        z_t = torch.as_tensor(controls, dtype=f32).repeat_interleave(n_samples, 0)
        y_t = torch.as_tensor(sales, dtype=f32).repeat_interleave(n_samples, 0)
        if method == "ddim":
            ks = torch.linspace(c.steps - 1, 0, steps).round().long().tolist()
        else:
            ks = list(range(c.steps - 1, -1, -1))
        gen = torch.Generator().manual_seed(seed)
        start = time.perf_counter()
        out = []
        for lo in range(0, n * n_samples, batch):
            sl = slice(lo, min(lo + batch, n * n_samples))
            out.append(self._run_chain(cond[sl], m_t[sl], z_t[sl], y_t[sl], ks, method, project, gen))
        seconds = time.perf_counter() - start
        v = torch.cat(out).reshape(n, n_samples, t, -1)
        beta, gamma, base = sc.decode(v)
        samples = PathSamples(beta.double().numpy(), gamma.double().numpy(), base.double().numpy(), seconds)
        return samples if factor == 1.0 else samples.widen(factor)

    def _run_chain(self, cond: torch.Tensor, media: torch.Tensor, controls: torch.Tensor, sales: torch.Tensor,
                   ks: list[int], method: str, project: bool, gen: torch.Generator) -> torch.Tensor:
        c = self.config
        b, t = cond.shape[:2]
        v = torch.randn((b, t, self.net.dim), generator=gen)
        v0 = v
        for i, k in enumerate(ks):
            kk = torch.full((b,), k, dtype=torch.long)
            v0 = self.net(v, kk, cond)[0].clamp(-c.clip, c.clip)
            if project and c.project_every and (i % c.project_every == 0 or i == len(ks) - 1):
                path = project_sales(self.scaler, self.to_path(v0, cond), media, controls, sales, c.project_var)
                v0 = self.to_diffused(path, cond)
            if i == len(ks) - 1:
                break
            ab = self.abar[k]
            if method == "ddim":
                ab_next = self.abar[ks[i + 1]]
                eps = (v - ab.sqrt() * v0) / (1 - ab).sqrt()
                v = ab_next.sqrt() * v0 + (1 - ab_next).sqrt() * eps
            else:
                ab_prev = self.abar[k - 1]
                beta_k = 1 - ab / ab_prev
                mean = (ab_prev.sqrt() * beta_k / (1 - ab)) * v0 + ((1 - beta_k).sqrt() * (1 - ab_prev) / (1 - ab)) * v
                var = beta_k * (1 - ab_prev) / (1 - ab)
                v = mean + var.sqrt() * torch.randn(v.shape, generator=gen)
        return self.to_path(v0, cond)
