"""Media transforms: adstock, carryover, Hill and logistic saturation.

Pure functions, torch-first and differentiable, with LightweightMMM's names,
argument names and conventions (see Chapter 0 and Chapter 1):

- time is on axis 0: ``data`` has shape ``(T, C)`` (national) or ``(T, C, G)`` (geo);
- every parameter has one value per channel, shape ``(C,)``; for geo data it is
  broadcast over geos (LightweightMMM expands it to ``(C, 1)``; so do we). Any
  parameter shape that broadcasts against ``data.shape[1:]`` is accepted;
- numpy arrays and Python floats are accepted and converted to torch tensors;
  the result is always a :class:`torch.Tensor` (float64 unless a float tensor of
  another dtype is given).
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import torch

ArrayLike: TypeAlias = torch.Tensor | np.ndarray | float | list

__all__ = [
    "adstock",
    "apply_exponent_safe",
    "carryover",
    "hill",
    "logistic_saturation",
    "fourier_features",
    "as_tensor",
]


def as_tensor(x: ArrayLike, like: torch.Tensor | None = None) -> torch.Tensor:
    """Convert ``x`` to a floating tensor (float64 by default, or the dtype of ``like``)."""
    if isinstance(x, torch.Tensor):
        t = x
        if not torch.is_floating_point(t):
            t = t.to(torch.float64)
    else:
        arr = np.asarray(x, dtype=np.float64)
        # torch cannot share a read-only buffer (pandas' copy-on-write arrays, memory maps):
        # take a copy rather than a tensor whose writes would be undefined.
        t = torch.as_tensor(arr if arr.flags.writeable else arr.copy())
    if like is not None:
        t = t.to(dtype=like.dtype, device=like.device)
    return t


def _param(p: ArrayLike, data: torch.Tensor, name: str) -> torch.Tensor:
    """Cast a per-channel parameter and shape it to broadcast against ``data[t]``."""
    p = as_tensor(p, like=data)
    if data.ndim == 3 and p.ndim == 1:
        p = p.unsqueeze(-1)  # (C,) -> (C, 1): the same for every geo
    try:
        torch.broadcast_shapes(p.shape, data.shape[1:])
    except RuntimeError as err:
        raise ValueError(
            f"parameter {name!r} of shape {tuple(p.shape)} does not broadcast against "
            f"data of shape {tuple(data.shape)} (time on axis 0, one value per channel)"
        ) from err
    return p


def _data(data: ArrayLike) -> torch.Tensor:
    t = as_tensor(data)
    if t.ndim < 1:
        raise ValueError("data must have a time axis (axis 0)")
    return t


def adstock(data: ArrayLike, lag_weight: ArrayLike = 0.9, normalise: bool = True) -> torch.Tensor:
    r"""Geometric adstock, LightweightMMM's ``adstock``.

    .. math::

        a_0 = x_0, \qquad a_t = x_t + \lambda\, a_{t-1}, \qquad
        \text{and if normalise: } \tilde a_t = (1-\lambda)\, a_t .

    The current period has weight 1 before normalisation; normalising by
    :math:`1/(1-\lambda)` makes the long-run mass of a constant input equal to
    the input (:math:`\sum_k (1-\lambda)\lambda^k = 1`).

    Computed by a parallel prefix scan of the recursion (Hillis–Steele): after the round with
    offset :math:`k = 1, 2, 4, \dots`, :math:`a_t` holds :math:`\sum_{j < 2k} \lambda^j x_{t-j}`,
    by :math:`a_t \leftarrow a_t + \lambda^k a_{t-k}`. That is :math:`\lceil\log_2 T\rceil`
    vectorised steps, memory linear in :math:`T` (a convolution with a :math:`T`-long kernel
    expands to :math:`T \times T` per channel, geo and posterior draw), differentiable in
    :math:`\lambda` (including :math:`\lambda = 0`), and batched over any parameter shape.

    Parameters
    ----------
    data : array-like, shape (T, C) or (T, C, G)
        Media, time on axis 0.
    lag_weight : array-like, shape (C,)
        Decay :math:`\lambda \in [0, 1)` per channel.
    normalise : bool
        Multiply by :math:`(1-\lambda)`.

    Returns
    -------
    torch.Tensor
        Same shape as ``data``.

    Examples
    --------
    >>> adstock([[1.0], [0.0], [0.0]], [0.5], normalise=False).squeeze().tolist()
    [1.0, 0.5, 0.25]

    See Chapter 0 for a picture and Chapter 1 for its priors.
    """
    x = _data(data)
    lam = _param(lag_weight, x, "lag_weight")
    T = x.shape[0]
    shape = torch.broadcast_shapes(lam.shape, x.shape[1:])
    out = x.expand(T, *shape)
    power = lam.expand(shape)  # lam^k for the current offset k
    k = 1
    while k < T:
        out = torch.cat([out[:k], out[k:] + power * out[:-k]], dim=0)
        power = power * power
        k *= 2
    if normalise:
        out = out * (1.0 - lam)
    return out


def carryover(
    data: ArrayLike,
    ad_effect_retention_rate: ArrayLike,
    peak_effect_delay: ArrayLike,
    number_lags: int = 13,
) -> torch.Tensor:
    r"""Carryover with a delayed peak, LightweightMMM's ``carryover``.

    A causal window of ``number_lags`` lags :math:`l = 0, \dots, L-1` with weights
    peaking at :math:`l = \theta`:

    .. math::

        w_l = \tau^{(l-\theta)^2}, \qquad
        c_t = \frac{\sum_{l=0}^{L-1} w_l\, x_{t-l}}{\sum_{l=0}^{L-1} w_l},

    with :math:`x_{t} = 0` for :math:`t < 0` (zero padding before the first period).

    Parameters
    ----------
    data : array-like, shape (T, C) or (T, C, G)
        Media, time on axis 0.
    ad_effect_retention_rate : array-like, shape (C,)
        :math:`\tau \in (0, 1]`; larger values spread the effect over more lags.
    peak_effect_delay : array-like, shape (C,)
        :math:`\theta \ge 0`, the lag (in periods) of the peak effect.
    number_lags : int
        Window length :math:`L` (13 in LightweightMMM).

    Returns
    -------
    torch.Tensor
        Same shape as ``data``.

    See Chapter 1 for the model that uses it.
    """
    if int(number_lags) != number_lags or number_lags < 1:
        raise ValueError(f"number_lags must be a positive integer, got {number_lags!r}")
    x = _data(data)
    tau = _param(ad_effect_retention_rate, x, "ad_effect_retention_rate")
    theta = _param(peak_effect_delay, x, "peak_effect_delay")
    L = int(number_lags)
    shape = (L,) + (1,) * (x.ndim - 1)
    lags = torch.arange(L, dtype=x.dtype, device=x.device).reshape(shape)
    w = tau.unsqueeze(0) ** ((lags - theta.unsqueeze(0)) ** 2)  # (L, ...)
    w = w / w.sum(dim=0, keepdim=True)
    T = x.shape[0]
    padded = torch.cat([x.new_zeros((L - 1,) + tuple(x.shape[1:])), x], dim=0)
    out = x.new_zeros(torch.broadcast_shapes(x.shape, (T,) + tuple(w.shape[1:])))
    for lag in range(L):  # L is small (13); each step is vectorised over time
        out = out + w[lag] * padded[L - 1 - lag : L - 1 - lag + T]
    return out


def apply_exponent_safe(data: ArrayLike, exponent: ArrayLike) -> torch.Tensor:
    r"""Elementwise :math:`x^{\rho}` with :math:`0^{\rho} := 0` and finite gradients.

    LightweightMMM applies this after ``adstock`` and ``carryover`` (the ``adstock``
    and ``carryover`` models use :math:`\rho \sim \mathrm{Beta}(9, 1)`).
    """
    x = _data(data)
    rho = _param(exponent, x, "exponent")
    safe = torch.where(x == 0, torch.ones_like(x), x)
    return torch.where(x == 0, torch.zeros_like(x), safe**rho)


def hill(
    data: ArrayLike,
    half_max_effective_concentration: ArrayLike,
    slope: ArrayLike,
) -> torch.Tensor:
    r"""Hill saturation, LightweightMMM's ``hill``.

    .. math::

        h(x) = \frac{1}{1 + (x/K)^{-S}} = \frac{x^S}{x^S + K^S}, \qquad h(0) = 0,

    monotone increasing in :math:`x \ge 0`, bounded in :math:`[0, 1)`, equal to
    :math:`1/2` at :math:`x = K`.

    Parameters
    ----------
    data : array-like, shape (T, C) or (T, C, G)
        Non-negative (adstocked) media.
    half_max_effective_concentration : array-like, shape (C,)
        :math:`K > 0`.
    slope : array-like, shape (C,)
        :math:`S > 0`; :math:`S > 1` gives an S-shape.

    Returns
    -------
    torch.Tensor
        Same shape as ``data``, values in :math:`[0, 1)`.

    See Chapter 0 for the true response curves built from it.
    """
    x = _data(data)
    K = _param(half_max_effective_concentration, x, "half_max_effective_concentration")
    S = _param(slope, x, "slope")
    ratio = x / K
    inv = apply_exponent_safe(ratio, -S)  # (x/K)^(-S), 0 where x == 0
    return torch.where(inv == 0, torch.zeros_like(inv), 1.0 / (1.0 + inv))


def logistic_saturation(data: ArrayLike, lam: ArrayLike) -> torch.Tensor:
    r"""Logistic saturation (PyMC-Marketing's convention).

    .. math::

        s(x) = \frac{1 - e^{-\lambda x}}{1 + e^{-\lambda x}} = \tanh(\lambda x / 2),

    zero at zero, concave, bounded by 1.

    Parameters
    ----------
    data : array-like, shape (T, C) or (T, C, G)
        Non-negative media.
    lam : array-like, shape (C,)
        :math:`\lambda > 0`, the steepness per channel.
    """
    x = _data(data)
    lam_t = _param(lam, x, "lam")
    return torch.tanh(lam_t * x / 2.0)


def fourier_features(n_times: int, period: float = 52.0, degrees: int = 2, offset: int = 0) -> torch.Tensor:
    r"""Fourier seasonality features, LightweightMMM's convention.

    .. math::

        \big[\sin(2\pi d t / P),\ \cos(2\pi d t / P)\big]_{d = 1..D}, \quad t = \text{offset}, \dots

    Parameters
    ----------
    n_times : int
        Number of periods :math:`T`.
    period : float
        :math:`P` (52 for weekly data with a yearly cycle, 365.25 for daily).
    degrees : int
        :math:`D`, the number of harmonics.
    offset : int
        Index of the first period (to continue a training window into a holdout).

    Returns
    -------
    torch.Tensor
        Shape ``(T, 2D)``: sines for :math:`d = 1..D`, then cosines.
    """
    if degrees < 0 or n_times < 0:
        raise ValueError("n_times and degrees must be non-negative")
    t = torch.arange(offset, offset + n_times, dtype=torch.float64)[:, None]
    d = torch.arange(1, degrees + 1, dtype=torch.float64)[None, :]
    angle = 2.0 * torch.pi * d * t / period
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)
