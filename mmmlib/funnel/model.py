r"""The unaware → activated → converted (U-A-C) funnel as a differentiable simulation (Chapter 2).

After Diff-MMM (Horie, 2025), repaired: a market of segments :math:`k` of size :math:`M_k`
in which, each day :math:`t`,

.. math::

    p^{UA}_{k,t} &= \sigma\big(\alpha^{UA}_k + \textstyle\sum_c m^{UA}_c \beta^{UA}_{k,c}\, p_{c,t}\big),
    \qquad
    p^{AC}_{k,t} = \sigma\big(\alpha^{AC}_k + \textstyle\sum_c m^{AC}_c \beta^{AC}_{k,c}\, p_{c,t}\big),\\
    A_{k,t} &= A_{k,t-1} + (M_k - A_{k,t-1})\,p^{UA}_{k,t} - \lambda_k A_{k,t-1}
               - (1-\lambda_k)\,p^{AC}_{k,t} A_{k,t-1},\\
    C_{k,t} &= (1-\lambda_k)\,p^{AC}_{k,t} A_{k,t-1},

with :math:`U = M - A` (converters return to the unaware pool: repeat purchase, mass conserved),
:math:`\lambda_k` the daily probability of forgetting, :math:`m` the structural mask (which
channel may act on which transition) and :math:`p_{c,t}` the media pressure: a Hill curve of
spend divided by its mean, where brand search also receives a spillover from TV,
:math:`\tilde x_{\text{brand},t} + \eta\,\mathrm{adstock}(\tilde x_{\text{TV}}; \rho)_t`.

Because the transition probabilities do not depend on the state, the activated stock is a
first-order *linear* recurrence :math:`A_t = a_t A_{t-1} + b_t`, solved by a doubling scan in
:math:`\lceil\log_2 T\rceil` vectorised steps (:func:`affine_scan`) instead of a Python loop over
days: one simulation of 730 days × 3 segments costs about a millisecond, forward and backward.

:class:`UACModel` fits the funnel's parameters to daily conversions (per segment, or only their
total) by maximum likelihood (negative binomial), with an optional ParamNet (segment attributes
→ parameters, the source's design) and a Laplace approximation for intervals. See Chapter 2.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from mmmlib.transforms import adstock, hill

__all__ = [
    "CHANNELS",
    "FunnelMask",
    "FunnelParams",
    "UACFit",
    "UACModel",
    "affine_scan",
    "attribution",
    "funnel",
    "media_pressure",
]

CHANNELS = ("tv", "display", "generic_search", "brand_search")


@dataclass(frozen=True)
class FunnelMask:
    """Which channel may act on which transition (1 = allowed), in :data:`CHANNELS` order.

    The default is Diff-MMM's: TV on awareness only, brand search on conversion only, display
    and generic search on both.
    """

    ua: tuple[int, ...] = (1, 1, 1, 0)
    ac: tuple[int, ...] = (0, 1, 1, 1)

    @classmethod
    def full(cls, n_channels: int = len(CHANNELS)) -> FunnelMask:
        """Every channel on both transitions (no structural knowledge)."""
        return cls(ua=(1,) * n_channels, ac=(1,) * n_channels)

    def tensors(self, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(self.ua, dtype=dtype), torch.tensor(self.ac, dtype=dtype)


@dataclass(frozen=True)
class FunnelParams:
    """Parameters of the funnel (truth or estimate), NumPy arrays.

    Attributes
    ----------
    alpha_ua, alpha_ac : (K,)
        Baseline logits of activation and conversion per segment.
    forget : (K,)
        Daily forgetting probability :math:`\\lambda_k` (A → U).
    beta_ua, beta_ac : (K, C)
        Media effects on the two logits (zero where the mask forbids).
    spillover : float
        :math:`\\eta`: TV adstock added to brand search's scaled spend.
    spill_decay : float
        :math:`\\rho`: geometric decay of that TV adstock.
    base : (K,)
        Organic conversions per day per segment (not driven by the funnel).
    hill_k, hill_slope : (C,)
        Hill half-saturation and slope of each channel's scaled spend.
    dispersion : float
        Negative-binomial :math:`\\phi` (variance :math:`\\mu + \\mu^2/\\phi`).
    """

    alpha_ua: np.ndarray
    alpha_ac: np.ndarray
    forget: np.ndarray
    beta_ua: np.ndarray
    beta_ac: np.ndarray
    spillover: float
    spill_decay: float
    base: np.ndarray
    hill_k: np.ndarray
    hill_slope: np.ndarray
    dispersion: float = math.inf

    def torch(self) -> dict[str, torch.Tensor]:
        """The parameters as float64 tensors (for :func:`funnel`)."""
        return {
            k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in self.__dict__.items() if k != "dispersion"
        }


# ------------------------------------------------------------------ dynamics
def affine_scan(a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Solve :math:`x_t = a_t x_{t-1} + b_t` for all ``t`` along the last axis.

    Hillis–Steele doubling: affine maps compose as
    :math:`(a_2, b_2)\\circ(a_1, b_1) = (a_2 a_1,\\ a_2 b_1 + b_2)`; after
    :math:`\\lceil\\log_2 T\\rceil` rounds every prefix is composed. Differentiable, no loop
    over time steps, and stable (only products of the :math:`a_t` are formed).

    Parameters
    ----------
    a, b : torch.Tensor, shape (..., T)
    x0 : torch.Tensor, shape (...)
        The state before the first step.

    Returns
    -------
    torch.Tensor, shape (..., T)
        :math:`x_1, \\dots, x_T`.
    """
    b = torch.cat([(a[..., :1] * x0.unsqueeze(-1) + b[..., :1]), b[..., 1:]], dim=-1)
    a = torch.cat([torch.zeros_like(a[..., :1]), a[..., 1:]], dim=-1)
    T = a.shape[-1]
    shift = 1
    while shift < T:
        b = torch.cat([b[..., :shift], a[..., shift:] * b[..., :-shift] + b[..., shift:]], dim=-1)
        a = torch.cat([a[..., :shift], a[..., shift:] * a[..., :-shift]], dim=-1)
        shift *= 2
    return b


def media_pressure(
    spend_scaled: torch.Tensor,
    hill_k: torch.Tensor,
    hill_slope: torch.Tensor,
    spillover: torch.Tensor,
    spill_decay: torch.Tensor,
    tv: int = 0,
    brand: int = 3,
) -> torch.Tensor:
    """Hill pressure of each channel, ``(T, C)``, with TV's spillover into brand search.

    ``spend_scaled`` is spend over its mean, ``(T, C)``. Brand search's input becomes
    :math:`\\tilde x_{\\text{brand}} + \\eta\\,\\mathrm{adstock}(\\tilde x_{\\text{TV}};\\rho)` (normalised
    adstock: a constant input keeps its level) before the Hill curve.
    """
    x = spend_scaled
    if brand is not None and tv is not None:
        tv_stock = adstock(x[:, tv : tv + 1], spill_decay.reshape(1), normalise=True)[:, 0]
        x = torch.cat([x[:, :brand], (x[:, brand] + spillover * tv_stock).unsqueeze(1), x[:, brand + 1 :]], dim=1)
    return hill(x, hill_k, hill_slope)


def funnel(
    params: dict[str, torch.Tensor],
    pressure: torch.Tensor,
    sizes: torch.Tensor,
    mask: FunnelMask = FunnelMask(),
    initial_active: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Daily conversions and activated stock per segment.

    Parameters
    ----------
    params : dict of tensors
        ``alpha_ua, alpha_ac, forget`` (K,), ``beta_ua, beta_ac`` (K, C).
    pressure : torch.Tensor, shape (T, C)
        Media pressure (:func:`media_pressure`).
    sizes : torch.Tensor, shape (K,)
        Segment sizes :math:`M_k`.
    mask : FunnelMask
        Structural mask (forbidden links contribute nothing whatever their β).
    initial_active : float
        Share of each segment activated before day 1.

    Returns
    -------
    conversions, active : torch.Tensor, shape (K, T) each
        Funnel conversions :math:`C_{k,t}` (without the organic base) and :math:`A_{k,t}`.
    """
    m_ua, m_ac = (t.to(pressure.dtype) for t in mask.tensors())
    logit_ua = params["alpha_ua"][:, None] + (params["beta_ua"] * m_ua) @ pressure.T  # (K, T)
    logit_ac = params["alpha_ac"][:, None] + (params["beta_ac"] * m_ac) @ pressure.T
    p_ua, p_ac = torch.sigmoid(logit_ua), torch.sigmoid(logit_ac)
    lam = params["forget"][:, None]
    keep = (1.0 - lam) * (1.0 - p_ac)  # an activated consumer stays activated
    a = keep - p_ua
    b = sizes[:, None] * p_ua
    A0 = initial_active * sizes
    active = affine_scan(a, b, A0)  # A_1..A_T
    previous = torch.cat([A0[:, None], active[:, :-1]], dim=1)
    conversions = (1.0 - lam) * p_ac * previous
    return conversions, active


def attribution(
    params: dict[str, torch.Tensor],
    spend_scaled: torch.Tensor,
    sizes: torch.Tensor,
    mask: FunnelMask = FunnelMask(),
    initial_active: float = 0.15,
) -> torch.Tensor:
    """Funnel conversions attributable to each channel by counterfactual removal, ``(C,)``.

    Channel :math:`c`'s contribution is the drop in total conversions when its spend is set to
    zero (removing TV also removes its spillover into brand search). Contributions need not add
    up to the media-driven total (the funnel is not additive); shares are taken over their sum.
    """
    def total(x):
        p = media_pressure(x, params["hill_k"], params["hill_slope"], params["spillover"], params["spill_decay"])
        return funnel(params, p, sizes, mask, initial_active)[0].sum()

    full = total(spend_scaled)
    out = []
    for c in range(spend_scaled.shape[1]):
        x = spend_scaled.clone()
        x[:, c] = 0.0
        out.append(full - total(x))
    return torch.stack(out)


# --------------------------------------------------------------------- model
class ParamNet(nn.Module):
    """Segment attributes → funnel parameters (Diff-MMM's design): a two-layer MLP with one
    head per parameter block. With a handful of segments it is a lookup table with extra steps;
    it is here to reproduce the source, not because it helps."""

    def __init__(self, n_attributes: int, n_channels: int, hidden: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_attributes, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 3 + 2 * n_channels)
        self.n_channels = n_channels
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, attributes: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(attributes))  # (K, 3 + 2C): alpha_ua, alpha_ac, logit forget, log betas


@dataclass
class UACFit:
    """A fitted funnel: point estimates, Laplace draws, and the fit's bookkeeping.

    Attributes
    ----------
    params : FunnelParams
        Maximum-likelihood estimates.
    draws : dict of numpy arrays
        Laplace-approximation draws of each parameter block (``(S, ...)``); empty with ParamNet.
    attribution_share : pandas.DataFrame
        Per channel: ``estimate`` and 90% interval ``lo``, ``hi`` of the share of funnel
        conversions attributed to each channel.
    loss : numpy.ndarray
        Negative log-likelihood per optimiser iteration.
    seconds : float
        Wall time of the optimisation (Laplace excluded).
    laplace_seconds : float
        Wall time of the Hessian and the draws.
    converged : bool
        Whether the optimiser reported convergence and the Hessian was positive definite.
    """

    params: FunnelParams
    draws: dict[str, np.ndarray]
    attribution_share: pd.DataFrame
    loss: np.ndarray
    seconds: float
    laplace_seconds: float = 0.0
    converged: bool = True
    fitted: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def interval(self, name: str, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Equal-tailed interval of a parameter block from the Laplace draws."""
        if name not in self.draws:
            raise KeyError(f"no draws for {name!r} (fitted with ParamNet or without Laplace?)")
        q = (1.0 - level) / 2.0
        return np.quantile(self.draws[name], q, axis=0), np.quantile(self.draws[name], 1.0 - q, axis=0)


_BLOCKS = ("alpha_ua", "alpha_ac", "forget", "beta_ua", "beta_ac", "spillover", "spill_decay", "base", "dispersion")


class UACModel:
    """Maximum-likelihood U-A-C funnel with a structural mask.

    Parameters
    ----------
    mask : FunnelMask
        Which channel acts on which transition in the *model*.
    observe : str
        ``segments`` (conversions per segment are observed) or ``total`` (only their sum,
        as in Diff-MMM).
    param_net : bool
        Map segment attributes to parameters with :class:`ParamNet` (the source) instead of
        free per-segment parameters. No Laplace intervals then.
    param_net_optimizer : str
        How ParamNet is fitted: ``adam`` (the source: Adam at learning rate 0.005, gradients
        clipped at 1, from its head biases of media effects near 5) or ``lbfgs`` (the free fit's
        L-BFGS from the free fit's start: the head's biases give every segment that start and its
        small random weights barely move it), so that the two fits differ only in how parameters
        are produced.
    hill_k, hill_slope : float
        Hill parameters, fixed (Diff-MMM's experiment fixes them at the truth).
    initial_active : float
        Share activated before day 1.
    likelihood : str
        ``negbin`` (dispersion estimated) or ``poisson``.
    """

    def __init__(
        self,
        mask: FunnelMask = FunnelMask(),
        observe: str = "segments",
        param_net: bool = False,
        param_net_optimizer: str = "adam",
        hill_k: float = 0.5,
        hill_slope: float = 2.0,
        initial_active: float = 0.15,
        likelihood: str = "negbin",
    ) -> None:
        if observe not in ("segments", "total"):
            raise ValueError(f"observe must be 'segments' or 'total', got {observe!r}")
        if param_net_optimizer not in ("adam", "lbfgs"):
            raise ValueError(f"param_net_optimizer must be 'adam' or 'lbfgs', got {param_net_optimizer!r}")
        if likelihood not in ("negbin", "poisson"):
            raise ValueError(f"likelihood must be 'negbin' or 'poisson', got {likelihood!r}")
        if not 0.0 <= initial_active < 1.0:
            raise ValueError(f"initial_active must be in [0, 1), got {initial_active}")
        self.mask = mask
        self.observe = observe
        self.param_net = param_net
        self.param_net_optimizer = param_net_optimizer
        self.hill_k = float(hill_k)
        self.hill_slope = float(hill_slope)
        self.initial_active = initial_active
        self.likelihood = likelihood

    # -------------------------------------------------------------- pieces
    def _allowed(self) -> tuple[list[int], list[int]]:
        return [c for c, m in enumerate(self.mask.ua) if m], [c for c, m in enumerate(self.mask.ac) if m]

    def _init_vector(self, K: int, C: int, y_mean: float) -> torch.Tensor:
        """Unconstrained start: alpha -5, beta 1, forget 0.2, spillover 0.3, base 10% of y.
        Only the β the mask allows are parameters."""
        ua, ac = self._allowed()
        parts = [
            torch.full((K,), -5.0),
            torch.full((K,), -5.0),
            torch.full((K,), math.log(0.2 / 0.8)),
            torch.zeros(K * len(ua)),
            torch.zeros(K * len(ac)),
            torch.tensor([math.log(0.3)]),
            torch.tensor([0.0]),
            torch.full((K,), math.log(max(0.1 * y_mean, 1e-3))),
            torch.tensor([math.log(50.0)]),
        ]
        return torch.cat(parts).to(torch.float64)

    def _unpack(self, theta: torch.Tensor, K: int, C: int) -> dict[str, torch.Tensor]:
        i = 0

        def take(n):
            nonlocal i
            v = theta[i : i + n]
            i += n
            return v

        ua, ac = self._allowed()

        def betas(idx):
            b = torch.exp(take(K * len(idx))).reshape(K, len(idx))
            return torch.zeros((K, C), dtype=theta.dtype).index_copy(1, torch.tensor(idx, dtype=torch.long), b)

        out = {
            "alpha_ua": take(K),
            "alpha_ac": take(K),
            "forget": torch.sigmoid(take(K)),
            "beta_ua": betas(ua),
            "beta_ac": betas(ac),
            "spillover": torch.exp(take(1))[0],
            "spill_decay": torch.sigmoid(take(1))[0],
            "base": torch.exp(take(K)),
            "dispersion": torch.exp(take(1))[0],
        }
        return out

    def _fixed(self, C: int) -> dict[str, torch.Tensor]:
        return {
            "hill_k": torch.full((C,), self.hill_k, dtype=torch.float64),
            "hill_slope": torch.full((C,), self.hill_slope, dtype=torch.float64),
        }

    def _mean(self, p: dict[str, torch.Tensor], x: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        pressure = media_pressure(x, p["hill_k"], p["hill_slope"], p["spillover"], p["spill_decay"])
        conv, _ = funnel(p, pressure, sizes, self.mask, self.initial_active)
        mu = conv + p["base"][:, None]  # (K, T)
        return mu if self.observe == "segments" else mu.sum(dim=0, keepdim=True)

    def _nll(self, mu: torch.Tensor, y: torch.Tensor, dispersion: torch.Tensor) -> torch.Tensor:
        if self.likelihood == "poisson":
            return -(y * torch.log(mu) - mu - torch.lgamma(y + 1.0)).sum()
        phi = dispersion
        return -(
            torch.lgamma(y + phi)
            - torch.lgamma(phi)
            - torch.lgamma(y + 1.0)
            + phi * torch.log(phi / (phi + mu))
            + y * torch.log(mu / (phi + mu))
        ).sum()

    # ----------------------------------------------------------------- fit
    def fit(
        self,
        spend: np.ndarray,
        conversions: np.ndarray,
        sizes: np.ndarray,
        attributes: np.ndarray | None = None,
        seed: int = 0,
        max_iter: int = 400,
        laplace_draws: int = 400,
    ) -> UACFit:
        """Fit by maximum likelihood (L-BFGS, or Adam with ParamNet) and, with free
        parameters, draw from the Laplace approximation at the optimum.

        Parameters
        ----------
        spend : array, shape (T, C)
            Daily spend per channel (scaled by its mean inside).
        conversions : array, shape (T, K) or (T,)
            Daily conversions per segment (``observe="segments"``) or in total.
        sizes : array, shape (K,)
            Segment sizes.
        attributes : array, shape (K, A), optional
            Segment attributes (required with ``param_net=True``).
        seed : int
            Seed of the ParamNet initialisation and of the Laplace draws.
        max_iter : int
            Optimiser iterations.
        laplace_draws : int
            Draws from the Laplace approximation (0: none).
        """
        spend = np.asarray(spend, dtype=np.float64)
        y = np.asarray(conversions, dtype=np.float64)
        sizes_t = torch.as_tensor(np.asarray(sizes, dtype=np.float64))
        T, C = spend.shape
        K = len(sizes_t)
        if C != len(self.mask.ua):
            raise ValueError(f"spend has {C} channels but the mask has {len(self.mask.ua)}")
        if self.observe == "segments":
            if y.shape != (T, K):
                raise ValueError(f"conversions must be (T, K) = ({T}, {K}) with observe='segments', got {y.shape}")
            y_t = torch.tensor(y.T.copy())
        else:
            y = y.reshape(T, -1).sum(axis=1) if y.ndim == 2 else y
            if y.shape != (T,):
                raise ValueError(f"conversions must have T = {T} rows, got {y.shape}")
            y_t = torch.as_tensor(y[None, :])
        if not np.isfinite(spend).all() or (spend < 0).any():
            bad = np.argwhere(~np.isfinite(spend) | (spend < 0))[0]
            raise ValueError(f"spend must be finite and >= 0: row {bad[0]}, channel {bad[1]}")
        if not np.isfinite(y).all() or (y < 0).any():
            raise ValueError("conversions must be finite counts >= 0")
        if (spend.mean(axis=0) <= 0).any():
            raise ValueError(f"channel {int(np.argmin(spend.mean(axis=0)))} has no spend: its pressure is undefined")
        x = torch.as_tensor(spend / spend.mean(axis=0))
        fixed = self._fixed(C)
        y_mean = float(y_t.mean()) / (1 if self.observe == "segments" else K)
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(seed)
        if self.param_net:
            if attributes is None:
                raise ValueError("param_net=True needs the segment attributes")
            theta, losses, converged = self._fit_param_net(x, y_t, sizes_t, np.asarray(attributes), fixed, seed, max_iter)
        else:
            theta0 = self._init_vector(K, C, y_mean)

            def objective(th):
                p = {**self._unpack(th, K, C), **fixed}
                return self._nll(self._mean(p, x, sizes_t), y_t, p["dispersion"])

            theta, losses, converged = _lbfgs(objective, theta0, max_iter)
        seconds = time.perf_counter() - t0
        p_hat = {**self._unpack(theta, K, C), **fixed} if not self.param_net else theta
        with torch.no_grad():
            fitted = self._mean(p_hat, x, sizes_t).numpy()
        est = _to_params(p_hat)
        draws: dict[str, np.ndarray] = {}
        share_draws = None
        t1 = time.perf_counter()
        if not self.param_net and laplace_draws > 0:
            draws, share_draws, pd_ok = self._laplace(theta, objective, K, C, fixed, x, sizes_t, laplace_draws, gen)
            converged = converged and pd_ok
        laplace_seconds = time.perf_counter() - t1
        with torch.no_grad():
            contrib = attribution(p_hat, x, sizes_t, self.mask, self.initial_active).numpy()
        share = contrib / contrib.sum()
        table = pd.DataFrame({"estimate": share}, index=pd.Index(CHANNELS[:C], name="channel"))
        if share_draws is not None:
            table["lo"], table["hi"] = np.quantile(share_draws, 0.05, axis=0), np.quantile(share_draws, 0.95, axis=0)
        return UACFit(
            params=est,
            draws=draws,
            attribution_share=table,
            loss=np.asarray(losses),
            seconds=seconds,
            laplace_seconds=laplace_seconds,
            converged=bool(converged),
            fitted=fitted,
        )

    def _laplace(self, theta, objective, K, C, fixed, x, sizes_t, n, gen):
        """Gaussian approximation at the optimum in the unconstrained space: covariance = inverse
        Hessian of the negative log-likelihood; draws mapped through the constraints."""
        H = torch.autograd.functional.hessian(objective, theta)
        evals, vecs = torch.linalg.eigh(0.5 * (H + H.T))
        pd_ok = bool(evals.min() > 1e-3)
        # flat or negative curvature (an effect pushed to zero, a boundary optimum): floor the
        # curvature, so the interval is wide instead of undefined, and say so through `converged`
        scale = vecs / torch.sqrt(torch.clamp(evals, min=1e-3))
        eps = torch.randn((n, len(theta)), generator=gen, dtype=torch.float64)
        samples = torch.clamp(theta + eps @ scale.T, -30.0, 30.0)  # keeps exp() finite
        per = [self._unpack(s, K, C) for s in samples]
        draws = {k: torch.stack([p[k] for p in per]).numpy() for k in per[0]}
        n_share = min(n, 200)
        shares = []
        with torch.no_grad():
            for p in per[:n_share]:
                c = attribution({**p, **fixed}, x, sizes_t, self.mask, self.initial_active)
                shares.append((c / c.sum()).numpy())
        return draws, np.stack(shares), pd_ok

    def _fit_param_net(self, x, y_t, sizes_t, attributes, fixed, seed, max_iter):
        torch.manual_seed(seed)
        K, C = len(sizes_t), x.shape[1]
        net = ParamNet(attributes.shape[1], C).to(torch.float64)
        if self.param_net_optimizer == "adam":  # Diff-MMM's head biases: alpha -5, softplus(beta) = 5, forget logit -1
            bias = [-5.0, -5.0, -1.0] + [5.0] * (2 * C)
        else:  # the free fit's start (_init_vector): alpha -5, beta 1 (softplus), forget 0.2
            bias = [-5.0, -5.0, math.log(0.2 / 0.8)] + [math.log(math.e - 1.0)] * (2 * C)
        with torch.no_grad():
            net.head.bias.copy_(torch.tensor(bias, dtype=torch.float64))
        shared = nn.ParameterDict(
            {
                "log_spill": nn.Parameter(torch.tensor(math.log(0.3), dtype=torch.float64)),
                "logit_decay": nn.Parameter(torch.tensor(0.0, dtype=torch.float64)),
                "log_base": nn.Parameter(torch.full((K,), math.log(max(0.1 * float(y_t.mean()), 1e-3)), dtype=torch.float64)),
                "log_phi": nn.Parameter(torch.tensor(math.log(50.0), dtype=torch.float64)),
            }
        )
        attr = torch.as_tensor(attributes, dtype=torch.float64)
        weights = [*net.parameters(), *shared.parameters()]

        def params():
            h = net(attr)
            return {
                "alpha_ua": h[:, 0],
                "alpha_ac": h[:, 1],
                "forget": torch.sigmoid(h[:, 2]),
                "beta_ua": nn.functional.softplus(h[:, 3 : 3 + C]),
                "beta_ac": nn.functional.softplus(h[:, 3 + C :]),
                "spillover": torch.exp(shared["log_spill"]),
                "spill_decay": torch.sigmoid(shared["logit_decay"]),
                "base": torch.exp(shared["log_base"]),
                "dispersion": torch.exp(shared["log_phi"]),
                **fixed,
            }

        def loss_fn():
            p = params()
            return self._nll(self._mean(p, x, sizes_t), y_t, p["dispersion"])

        if self.param_net_optimizer == "lbfgs":
            losses, converged = _minimise_lbfgs(weights, loss_fn, max_iter)
        else:
            opt = torch.optim.Adam(weights, lr=0.005)
            losses, converged = [], True
            for _ in range(max_iter):
                opt.zero_grad()
                loss = loss_fn()
                loss.backward()
                nn.utils.clip_grad_norm_(weights, 1.0)
                opt.step()
                losses.append(float(loss.detach()))
        with torch.no_grad():
            return {k: v.detach() for k, v in params().items()}, losses, converged


def _minimise_lbfgs(weights: list[torch.Tensor], loss_fn, max_iter: int) -> tuple[list[float], bool]:
    """Minimise ``loss_fn()`` over the tensors ``weights`` (in place) with L-BFGS and a strong Wolfe
    line search; returns the loss trace and whether the largest gradient fell below 1e-2."""
    opt = torch.optim.LBFGS(weights, lr=1.0, max_iter=max_iter, history_size=50, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-6, tolerance_change=1e-12)
    losses: list[float] = []

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        losses.append(float(loss.detach()))
        return loss

    opt.step(closure)
    grads = [w.grad.abs().max() for w in weights if w.grad is not None]
    return losses, bool(grads) and float(max(grads)) < 1e-2


def _lbfgs(objective, theta0: torch.Tensor, max_iter: int) -> tuple[torch.Tensor, list[float], bool]:
    """Minimise ``objective(theta)`` from ``theta0`` with :func:`_minimise_lbfgs`; returns the
    optimum, the loss trace and whether the gradient norm fell below tolerance."""
    theta = theta0.clone().requires_grad_(True)
    losses, converged = _minimise_lbfgs([theta], lambda: objective(theta), max_iter)
    return theta.detach(), losses, converged


def _to_params(p: dict[str, torch.Tensor]) -> FunnelParams:
    g = {k: v.detach().numpy() for k, v in p.items()}
    return FunnelParams(
        alpha_ua=g["alpha_ua"],
        alpha_ac=g["alpha_ac"],
        forget=g["forget"],
        beta_ua=g["beta_ua"],
        beta_ac=g["beta_ac"],
        spillover=float(g["spillover"]),
        spill_decay=float(g["spill_decay"]),
        base=g["base"],
        hill_k=g["hill_k"],
        hill_slope=g["hill_slope"],
        dispersion=float(g["dispersion"]),
    )

