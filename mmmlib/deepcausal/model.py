r"""DeepCausal, repaired: GRU time-varying media coefficients on a geo panel, and a channel graph.

After DeepCausalMMM :cite:p:`tirumala2025deepcausalmmm`, with its design faults fixed
(Chapter 3). On scaled data (:mod:`mmmlib.deepcausal.panel`: spend over its mean, sales over the
region's training mean) the prediction is an exact sum of parts,

.. math::

    \hat y_{r,t} = b_r + s(t) + \sum_k \gamma_k z_{r,t,k}
                   + \sum_c \beta_{r,t,c}\,\mathrm{hill}_c\bigl(\mathrm{adstock}_c(x_{r,\cdot,c})_t\bigr),

so contributions add up to the prediction by construction. The coefficients come from a GRU,

.. math::

    h_{r,t} = \mathrm{GRU}(u_{r,t}, h_{r,t-1}),\quad h_{r,-1} = \tanh(V e_r),\qquad
    \beta_{r,t,c} = B\,\sigma\bigl(\eta_c + [\,h_{r,t}, e_r\,]^\top w_c\bigr) \in (0, B),

bounded and non-negative, with a region embedding :math:`e_r`. Its inputs :math:`u_{r,t}` are
the *exogenous* series (week-of-year Fourier terms and controls) by default, so
:math:`\beta` does not react to the spend it multiplies and "contribution = x·β" stays a
counterfactual statement; ``gru_inputs="media"`` feeds the spend too, as the original does.
Hill half-saturation points start at each channel's median adstocked training spend (a
data-driven start). The loss is a Huber loss on training weeks only plus a penalty on week-to-week
changes of :math:`\beta`; no statistic of the holdout is read at any point (no early stopping
or learning-rate schedule on holdout error, unlike the original).

The channel graph is learned separately, on the spends, by NOTEARS under an augmented
Lagrangian (:mod:`mmmlib.deepcausal.graph`). It describes how the advertiser's channels move
one another; it is not an effect on sales. ``mixing="deepcausal"`` reproduces the original's
"DAG" feature-mixing layer (an upper-triangular sigmoid adjacency that blends each channel's
saturated input with its parents') for the ablation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mmmlib.deepcausal.panel import PanelSplit, saturated_media
from mmmlib.transforms import adstock, fourier_features, hill

__all__ = ["DeepCausalConfig", "DeepCausalFit", "DeepCausalNet", "fit_deepcausal"]


@dataclass(frozen=True)
class DeepCausalConfig:
    """Architecture and training settings.

    Attributes
    ----------
    hidden : int
        GRU hidden size.
    embedding : int
        Region embedding size.
    coefficients : {"gru", "static"}
        Time-varying coefficients from the GRU, or one coefficient per region and channel.
    gru_inputs : {"exogenous", "media"}
        What the GRU reads: Fourier terms and controls, or those plus the spend.
    mixing : {"none", "deepcausal"}
        ``"deepcausal"`` adds the original's triangular "DAG" mixing layer.
    bound : float
        Upper bound :math:`B` of every media coefficient (sales relative to the region mean).
    harmonics : int
        Fourier harmonics of the yearly seasonality.
    epochs, lr : int, float
        Adam steps (full batch) and learning rate.
    huber_delta : float
        Huber threshold on scaled sales.
    smooth : float
        Weight of the mean squared week-to-week change of :math:`\\beta`.
    weight_decay : float
    clip : float
        Gradient-norm clip.
    max_decay : float
        Upper bound of the adstock decay.
    hill_prior : float
        Weight of :math:`\\sum_c (\\log K_c - \\log K_c^0)^2`, a Gaussian prior that keeps each
        half-saturation point near its data-driven start :math:`K_c^0` (0: none).
    clock : bool
        Give the GRU the week index (over the training length) as an input, so that slow
        drifts that are not yearly can be represented.
    """

    hidden: int = 64
    embedding: int = 8
    coefficients: Literal["gru", "static"] = "gru"
    gru_inputs: Literal["exogenous", "media"] = "exogenous"
    mixing: Literal["none", "deepcausal"] = "none"
    bound: float = 1.0
    harmonics: int = 2
    epochs: int = 800
    lr: float = 0.01
    huber_delta: float = 0.1
    smooth: float = 10.0
    weight_decay: float = 1e-5
    clip: float = 1.0
    max_decay: float = 0.9
    hill_prior: float = 1e-3
    clock: bool = True

    def __post_init__(self) -> None:
        if self.coefficients not in ("gru", "static"):
            raise ValueError(f"coefficients must be 'gru' or 'static', got {self.coefficients!r}")
        if self.gru_inputs not in ("exogenous", "media"):
            raise ValueError(f"gru_inputs must be 'exogenous' or 'media', got {self.gru_inputs!r}")
        if self.mixing not in ("none", "deepcausal"):
            raise ValueError(f"mixing must be 'none' or 'deepcausal', got {self.mixing!r}")
        for name in ("hidden", "embedding", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("bound", "lr", "huber_delta", "clip", "max_decay"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_decay >= 1:
            raise ValueError(f"max_decay must be < 1, got {self.max_decay}")
        if self.smooth < 0 or self.weight_decay < 0 or self.hill_prior < 0:
            raise ValueError("smooth, weight_decay and hill_prior must be >= 0")


class DeepCausalNet(nn.Module):
    """The network of :class:`DeepCausalConfig` for ``R`` regions, ``C`` channels, ``K`` controls, ``F`` Fourier terms."""

    def __init__(
        self,
        config: DeepCausalConfig,
        n_regions: int,
        n_channels: int,
        n_controls: int,
        half_init: np.ndarray,
        clock_scale: float = 52.0,
    ):
        super().__init__()
        self.config = config
        self.clock_scale = float(clock_scale)
        c = n_channels
        self.decay_logit = nn.Parameter(torch.full((c,), -0.5))
        self.log_half = nn.Parameter(torch.as_tensor(np.log(half_init), dtype=torch.get_default_dtype()))
        self.slope_logit = nn.Parameter(torch.zeros(c))
        self.embed = nn.Embedding(n_regions, config.embedding)
        nn.init.normal_(self.embed.weight, std=0.1)
        self.baseline = nn.Parameter(torch.full((n_regions,), 0.8))
        n_fourier = 2 * config.harmonics
        self.season = nn.Parameter(torch.zeros(n_fourier))
        self.gamma = nn.Parameter(torch.zeros(n_controls))
        self.eta = nn.Parameter(torch.full((c,), -2.5))
        if config.coefficients == "gru":
            n_in = n_fourier + n_controls + (c if config.gru_inputs == "media" else 0) + int(config.clock)
            self.gru = nn.GRU(n_in, config.hidden, batch_first=True)
            self.h0 = nn.Linear(config.embedding, config.hidden)
            self.head = nn.Linear(config.hidden + config.embedding, c)
            nn.init.normal_(self.head.weight, std=0.01)
            nn.init.zeros_(self.head.bias)
        else:
            self.region_coef = nn.Linear(config.embedding, c)
            nn.init.normal_(self.region_coef.weight, std=0.01)
            nn.init.zeros_(self.region_coef.bias)
        if config.mixing == "deepcausal":
            self.edge_logit = nn.Parameter(torch.zeros(c, c))
            self.register_buffer("mask", torch.triu(torch.ones(c, c), diagonal=1))
            self.blend_logit = nn.Parameter(torch.full((c,), -1.4))

    @property
    def decay(self) -> torch.Tensor:
        return self.config.max_decay * torch.sigmoid(self.decay_logit)

    @property
    def half(self) -> torch.Tensor:
        return self.log_half.exp()

    @property
    def slope(self) -> torch.Tensor:
        return 0.5 + 3.5 * torch.sigmoid(self.slope_logit)

    def saturated(self, media: torch.Tensor) -> torch.Tensor:
        """Hill of the adstocked (relative) spend, then the optional mixing layer."""
        h = saturated_media(media, self.decay, self.half, self.slope)
        if self.config.mixing == "deepcausal":
            w = torch.sigmoid(self.edge_logit / 0.5) * self.mask
            m = torch.sigmoid(self.blend_logit)
            h = (1 - m) * h + m * (h @ w)
        return h

    def coefficients(self, media: torch.Tensor, controls: torch.Tensor, fourier: torch.Tensor) -> torch.Tensor:
        """Media coefficients :math:`\\beta`, shape ``(R, T, C)``."""
        n_r, n_t, n_c = media.shape
        e = self.embed.weight  # (R, E)
        if self.config.coefficients == "static":
            logits = self.eta + self.region_coef(e)  # (R, C)
            return self.config.bound * torch.sigmoid(logits)[:, None, :].expand(n_r, n_t, n_c)
        parts = [fourier[None].expand(n_r, -1, -1), controls]
        if self.config.clock:
            clock = torch.arange(n_t, dtype=media.dtype, device=media.device) / self.clock_scale
            parts.append(clock[None, :, None].expand(n_r, -1, -1))
        if self.config.gru_inputs == "media":
            parts.append(torch.log1p(media))
        h0 = torch.tanh(self.h0(e))[None]  # (1, R, H)
        out, _ = self.gru(torch.cat(parts, dim=2), h0)
        feats = torch.cat([out, e[:, None, :].expand(-1, n_t, -1)], dim=2)
        return self.config.bound * torch.sigmoid(self.eta + self.head(feats))

    def forward(self, media: torch.Tensor, controls: torch.Tensor, fourier: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every additive part of the prediction (scaled units), and the prediction."""
        beta = self.coefficients(media, controls, fourier)
        media_part = beta * self.saturated(media)
        n_r, n_t = media.shape[:2]
        base = self.baseline[:, None].expand(n_r, n_t)
        season = (fourier @ self.season)[None].expand(n_r, n_t)
        ctrl = controls * self.gamma
        pred = base + season + ctrl.sum(dim=2) + media_part.sum(dim=2)
        return {"prediction": pred, "baseline": base, "season": season, "controls": ctrl, "media": media_part, "beta": beta}


@dataclass
class DeepCausalFit:
    """A fitted model with its data and outputs (all arrays in sales units unless noted).

    Attributes
    ----------
    config : DeepCausalConfig
    channels : tuple of str
    split : PanelSplit
    net : DeepCausalNet
    prediction : numpy.ndarray, shape (R, T)
    parts : dict of str to numpy.ndarray
        ``baseline`` and ``season`` (R, T), ``controls`` (R, T, K), ``media`` (R, T, C); they
        add up to ``prediction``.
    beta : numpy.ndarray, shape (R, T, C)
        Coefficients on the scaled data.
    losses : numpy.ndarray
        Training loss per epoch.
    """

    config: DeepCausalConfig
    channels: tuple[str, ...]
    split: PanelSplit
    net: DeepCausalNet
    prediction: np.ndarray
    parts: dict[str, np.ndarray]
    beta: np.ndarray
    losses: np.ndarray = field(repr=False)

    def additivity_gap(self) -> float:
        """Largest ``|prediction - sum of parts|`` relative to the prediction (0 up to rounding)."""
        total = self.parts["baseline"] + self.parts["season"] + self.parts["controls"].sum(2) + self.parts["media"].sum(2)
        return float(np.max(np.abs(total - self.prediction) / np.abs(self.prediction)))

    def response(self, spend_multiple: np.ndarray, weeks: slice | None = None) -> np.ndarray:
        """Expected weekly media sales per channel, summed over regions, at a steady spend multiple.

        Mirrors :meth:`mmmlib.deepcausal.world.GeoGraphTruth.response`; ``weeks`` selects the
        coefficients averaged (default: the last 13 weeks, the "current" effectiveness).
        """
        m = np.atleast_2d(np.asarray(spend_multiple, dtype=np.float64))
        with torch.no_grad():
            half = self.net.half.cpu().numpy()
            slope = self.net.slope.cpu().numpy()
        weeks = weeks if weeks is not None else slice(-13, None)
        beta = self.beta[:, weeks].mean(axis=1)  # (R, C)
        h = hill(m, half, slope).numpy()  # (N, C)
        out = np.einsum("r,rc,nc->nc", self.split.mean_sales, beta, h)
        return out[0] if np.ndim(spend_multiple) == 1 else out


def _tensor(x: np.ndarray, device: torch.device | str) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.get_default_dtype(), device=device)


def fit_deepcausal(
    split: PanelSplit,
    channels: tuple[str, ...],
    config: DeepCausalConfig = DeepCausalConfig(),
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> DeepCausalFit:
    """Fit :class:`DeepCausalNet` on the training weeks of ``split`` and predict every week.

    Parameters
    ----------
    split : PanelSplit
        The scaled panel (:func:`mmmlib.deepcausal.panel.split_panel`).
    channels : tuple of str
        Channel names, one per column of ``split.media``.
    config : DeepCausalConfig
    device : torch.device or str
    progress : bool
        Show a progress bar.

    Returns
    -------
    DeepCausalFit
    """
    n_r, n_t, n_c = split.media.shape
    if len(channels) != n_c:
        raise ValueError(f"{len(channels)} channel names for {n_c} media columns")
    train = split.train
    fourier = fourier_features(n_t, 52.0, config.harmonics).numpy()
    # Data-driven Hill start: median adstocked training spend per channel at the initial decay.
    init_decay = config.max_decay / (1 + np.exp(0.5))
    with torch.no_grad():
        a0 = adstock(_tensor(split.media, "cpu").permute(1, 2, 0), torch.full((n_c,), init_decay)).numpy()  # (T, C, R)
    half_init = np.maximum(np.median(a0[train].transpose(0, 2, 1).reshape(-1, n_c), axis=0), 1e-3)

    net = DeepCausalNet(config, n_r, n_c, split.controls.shape[2], half_init, clock_scale=split.train_weeks).to(device)
    with torch.no_grad():
        net.baseline.copy_(_tensor(split.sales[:, train].mean(axis=1) * 0.8, device))
    log_half0 = _tensor(np.log(half_init), device)
    media = _tensor(split.media, device)
    controls = _tensor(split.controls, device)
    four = _tensor(fourier, device)
    y = _tensor(split.sales[:, train], device)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    huber = nn.HuberLoss(delta=config.huber_delta)
    losses = np.empty(config.epochs)
    bar = tqdm(range(config.epochs), desc="DeepCausal fit", disable=not progress, leave=False)
    for epoch in bar:
        opt.zero_grad()
        out = net(media[:, train], controls[:, train], four[train])
        loss = huber(out["prediction"], y)
        if config.smooth > 0 and config.coefficients == "gru":
            loss = loss + config.smooth * torch.mean(torch.diff(out["beta"], dim=1) ** 2)
        if config.hill_prior > 0:
            loss = loss + config.hill_prior * torch.sum((net.log_half - log_half0) ** 2)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), config.clip)
        opt.step()
        losses[epoch] = loss.item()
        if epoch % 50 == 0:
            bar.set_postfix(loss=f"{losses[epoch]:.2e}")
    net.eval()
    with torch.no_grad():
        out = {k: v.cpu().numpy() for k, v in net(media, controls, four).items()}
    scale = split.mean_sales
    parts = {
        "baseline": out["baseline"] * scale[:, None],
        "season": out["season"] * scale[:, None],
        "controls": out["controls"] * scale[:, None, None],
        "media": out["media"] * scale[:, None, None],
    }
    return DeepCausalFit(
        config=config,
        channels=tuple(channels),
        split=split,
        net=net,
        prediction=out["prediction"] * scale[:, None],
        parts=parts,
        beta=out["beta"],
        losses=losses,
    )
