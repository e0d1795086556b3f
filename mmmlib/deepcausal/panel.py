r"""Geo panels: the temporal split, scaling fitted on training weeks only, and panel scores.

A panel has regions :math:`r`, weeks :math:`t`, channels :math:`c` and controls :math:`k`.
The last ``holdout`` weeks are the test block. Every statistic used to scale the data (mean
spend per region and channel, control medians and IQRs, mean sales per region) is computed
from the training weeks alone, so nothing about the test block leaks into the inputs.

Scores. On panels of very different region sizes the pooled :math:`R^2` mostly measures
which regions are big. :func:`within_r2` removes each region's own mean (over the scored
weeks) first, so it asks whether the weekly *movements* are predicted; a per-region constant
scores at most 0 on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmmlib.metrics import r2
from mmmlib.transforms import adstock, hill

__all__ = [
    "PanelSplit",
    "split_panel",
    "pooled_r2",
    "within_r2",
    "naive_forecasts",
    "saturated_media",
]


@dataclass(frozen=True)
class PanelSplit:
    """A geo panel scaled with training-week statistics.

    Attributes
    ----------
    media : numpy.ndarray, shape (R, T, C)
        Spend divided by each region-channel's mean training spend (1 = usual level).
    controls : numpy.ndarray, shape (R, T, K)
        Robust z-scores (training median, IQR/1.349), clipped to ±5.
    sales : numpy.ndarray, shape (R, T)
        Sales divided by each region's mean training sales.
    train_weeks : int
        Weeks ``[0, train_weeks)`` are for fitting; the rest are the holdout.
    mean_spend : numpy.ndarray, shape (R, C)
    mean_sales : numpy.ndarray, shape (R,)
    raw_sales : numpy.ndarray, shape (R, T)
    """

    media: np.ndarray
    controls: np.ndarray
    sales: np.ndarray
    train_weeks: int
    mean_spend: np.ndarray
    mean_sales: np.ndarray
    raw_sales: np.ndarray

    @property
    def n_weeks(self) -> int:
        return self.sales.shape[1]

    @property
    def holdout(self) -> slice:
        return slice(self.train_weeks, self.n_weeks)

    @property
    def train(self) -> slice:
        return slice(0, self.train_weeks)


def split_panel(
    media: np.ndarray,
    controls: np.ndarray,
    sales: np.ndarray,
    holdout_weeks: int,
) -> PanelSplit:
    """Validate a panel, split off the last ``holdout_weeks`` and scale with training statistics.

    Parameters
    ----------
    media : numpy.ndarray, shape (R, T, C)
        Non-negative spend.
    controls : numpy.ndarray, shape (R, T, K)
    sales : numpy.ndarray, shape (R, T)
        Non-negative sales.
    holdout_weeks : int
        Length of the test block (at least 1, leaving at least 20 training weeks).

    Returns
    -------
    PanelSplit
    """
    media = np.asarray(media, dtype=np.float64)
    controls = np.asarray(controls, dtype=np.float64)
    sales = np.asarray(sales, dtype=np.float64)
    if media.ndim != 3:
        raise ValueError(f"media must have shape (regions, weeks, channels), got {media.shape}")
    if controls.ndim != 3 or controls.shape[:2] != media.shape[:2]:
        raise ValueError(f"controls must have shape {media.shape[:2]} + (K,), got {controls.shape}")
    if sales.shape != media.shape[:2]:
        raise ValueError(f"sales must have shape {media.shape[:2]}, got {sales.shape}")
    for name, arr in (("media", media), ("controls", controls), ("sales", sales)):
        bad = np.argwhere(~np.isfinite(arr))
        if len(bad):
            raise ValueError(f"{name} has a non-finite value at index {tuple(int(i) for i in bad[0])}")
    for name, arr in (("media", media), ("sales", sales)):
        bad = np.argwhere(arr < 0)
        if len(bad):
            raise ValueError(f"{name} must be non-negative: {arr[tuple(bad[0])]:.4g} at index {tuple(int(i) for i in bad[0])}")
    n_t = media.shape[1]
    train = n_t - int(holdout_weeks)
    if holdout_weeks < 1 or train < 20:
        raise ValueError(f"holdout_weeks={holdout_weeks} must be >= 1 and leave >= 20 training weeks (have {n_t})")
    mean_spend = media[:, :train].mean(axis=1)
    silent = np.argwhere(mean_spend <= 0)
    if len(silent):
        r, c = silent[0]
        raise ValueError(f"region {r}, channel {c}: no spend in the training weeks, cannot scale")
    mean_sales = sales[:, :train].mean(axis=1)
    if np.any(mean_sales <= 0):
        raise ValueError(f"region {int(np.argmin(mean_sales))}: no sales in the training weeks, cannot scale")
    flat = controls[:, :train].reshape(-1, controls.shape[2])
    median = np.median(flat, axis=0)
    iqr = np.subtract(*np.percentile(flat, [75, 25], axis=0)) / 1.349
    z = np.clip((controls - median) / np.where(iqr > 0, iqr, 1.0), -5.0, 5.0)
    return PanelSplit(
        media=media / mean_spend[:, None, :],
        controls=z,
        sales=sales / mean_sales[:, None],
        train_weeks=train,
        mean_spend=mean_spend,
        mean_sales=mean_sales,
        raw_sales=sales,
    )


def pooled_r2(prediction: np.ndarray, observed: np.ndarray) -> float:
    """:math:`R^2` over all region-weeks together (dominated by between-region differences)."""
    return r2(prediction, observed)


def within_r2(prediction: np.ndarray, observed: np.ndarray) -> float:
    r""":math:`R^2` with each region's own mean removed: :math:`1 - \sum(y-\hat y)^2 / \sum_r\sum_t (y_{rt} - \bar y_r)^2`.

    Both arrays have shape ``(R, T)``; a per-region constant cannot score above 0.
    """
    pred, obs = np.asarray(prediction, float), np.asarray(observed, float)
    if obs.ndim != 2:
        raise ValueError(f"within_r2 needs (regions, weeks) arrays, got {obs.shape}")
    return float(1.0 - np.sum((obs - pred) ** 2) / np.sum((obs - obs.mean(axis=1, keepdims=True)) ** 2))


def naive_forecasts(sales: np.ndarray, train_weeks: int, last: int = 4) -> dict[str, np.ndarray]:
    """The two naive forecasts of the holdout: each region's training mean, and its last ``last`` weeks' mean.

    Returns arrays of shape ``(R, T - train_weeks)``, keyed ``"region mean"`` and ``f"last {last} weeks"``.
    """
    sales = np.asarray(sales, float)
    horizon = sales.shape[1] - train_weeks
    region_mean = sales[:, :train_weeks].mean(axis=1, keepdims=True)
    recent = sales[:, train_weeks - last : train_weeks].mean(axis=1, keepdims=True)
    return {
        "region mean": np.repeat(region_mean, horizon, axis=1),
        f"last {last} weeks": np.repeat(recent, horizon, axis=1),
    }


def saturated_media(media, decay, half, slope) -> torch.Tensor:
    r"""Hill of the normalised geometric adstock, for region-first panels.

    :func:`mmmlib.transforms.adstock` (normalised) then :func:`mmmlib.transforms.hill`, with
    the panel's ``(R, T, C)`` layout turned into their time-first ``(T, C, R)`` and back.
    Differentiable in every argument.

    Parameters
    ----------
    media : array-like, shape (R, T, C)
        Non-negative media (e.g. spend over its usual level).
    decay, half, slope : array-like, shape (C,)
        Adstock decay :math:`\lambda`, Hill half-saturation :math:`K` and slope :math:`S`.

    Returns
    -------
    torch.Tensor, shape (R, T, C)
    """
    x = torch.as_tensor(media)
    if x.ndim != 3:
        raise ValueError(f"media must have shape (regions, weeks, channels), got {tuple(x.shape)}")
    time_first = x.permute(1, 2, 0)
    return hill(adstock(time_first, decay), half, slope).permute(2, 0, 1)
