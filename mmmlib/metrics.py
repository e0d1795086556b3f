"""Scores used across the book: recovery of the truth and predictive error.

All functions take array-likes (numpy, pandas or torch) and return floats. See
Chapter 1 onwards for their use against ground truth.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mape", "mae", "rmse", "r2", "coverage", "interval_width"]


def _arrays(*xs) -> list[np.ndarray]:
    out = [np.asarray(x, dtype=np.float64) for x in xs]
    shapes = {a.shape for a in out}
    if len(shapes) != 1:
        raise ValueError(f"shapes differ: {[a.shape for a in out]}")
    return out


def mape(estimate, truth) -> float:
    r"""Mean absolute percentage error :math:`\frac1n\sum_i |\hat\theta_i-\theta_i|/|\theta_i|`
    (a fraction: 0.2 means 20%). Truth values must be non-zero."""
    est, tru = _arrays(estimate, truth)
    if np.any(tru == 0):
        raise ValueError("mape: truth contains zeros")
    return float(np.mean(np.abs(est - tru) / np.abs(tru)))


def mae(estimate, truth) -> float:
    """Mean absolute error."""
    est, tru = _arrays(estimate, truth)
    return float(np.mean(np.abs(est - tru)))


def rmse(estimate, truth) -> float:
    """Root mean squared error."""
    est, tru = _arrays(estimate, truth)
    return float(np.sqrt(np.mean((est - tru) ** 2)))


def r2(prediction, observed) -> float:
    r"""Coefficient of determination :math:`1 - \sum(y-\hat y)^2/\sum(y-\bar y)^2`."""
    pred, obs = _arrays(prediction, observed)
    ss_tot = np.sum((obs - obs.mean()) ** 2)
    if ss_tot == 0:
        raise ValueError("r2: observed values are constant")
    return float(1.0 - np.sum((obs - pred) ** 2) / ss_tot)


def coverage(lower, upper, truth) -> float:
    """Fraction of truths inside ``[lower, upper]``."""
    lo, hi, tru = _arrays(lower, upper, truth)
    if np.any(lo > hi):
        raise ValueError("coverage: a lower bound exceeds its upper bound")
    return float(np.mean((tru >= lo) & (tru <= hi)))


def interval_width(lower, upper) -> float:
    """Mean width of the intervals."""
    lo, hi = _arrays(lower, upper)
    return float(np.mean(hi - lo))
