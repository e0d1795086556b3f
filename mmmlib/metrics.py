"""Scores used across the book: recovery of the truth and predictive error.

All functions take array-likes (numpy, pandas or torch) and return floats. See
Chapter 1 onwards for their use against ground truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["mape", "mae", "rmse", "r2", "coverage", "interval_width", "paired_difference", "threshold_verdict"]


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


def paired_difference(a: pd.Series, b: pd.Series, alpha: float = 0.05) -> dict[str, float | str]:
    """Is ``a`` lower or higher than ``b`` beyond the noise of the units they share?

    The test the book decides its comparisons by: a two-sided paired t-test over the index
    labels (world seeds) present in both.

    Returns
    -------
    dict
        ``diff`` (mean of ``a - b``), ``se`` (its standard error), ``n`` (pairs), ``p`` and
        ``verdict``: ``lower`` or ``higher`` when p < ``alpha``, else ``tie``.

    Examples
    --------
    >>> a = pd.Series([0.30, 0.35, 0.28, 0.33]); b = pd.Series([0.50, 0.52, 0.49, 0.55])
    >>> paired_difference(a, b)["verdict"]
    'lower'
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    pair = pd.concat({"a": a, "b": b}, axis=1).dropna()
    diff = pair["a"] - pair["b"]
    n = len(diff)
    if n < 2:
        return {"diff": float(diff.mean()) if n else float("nan"), "se": float("nan"), "n": n, "p": float("nan"),
                "verdict": "tie"}
    se = float(diff.std(ddof=1) / np.sqrt(n))
    p = float(stats.ttest_rel(pair["a"], pair["b"]).pvalue) if se > 0 else (1.0 if diff.mean() == 0 else 0.0)
    verdict = "tie" if not p < alpha else ("lower" if diff.mean() < 0 else "higher")
    return {"diff": float(diff.mean()), "se": se, "n": n, "p": p, "verdict": verdict}


def threshold_verdict(values, goal: float, lower_is_better: bool = True, alpha: float = 0.05) -> dict[str, float | str]:
    """Is a target met over seeds? The mean of ``values`` against ``goal`` by a one-sample t-test.

    ``met`` when the mean is on the good side of ``goal`` and the two-sided p-value is below
    ``alpha``, ``missed`` when it is on the bad side with p below ``alpha``, otherwise
    ``not decided`` (the seeds cannot tell the mean from the goal; always so for one value).
    Without spread (every value equal) the value decides, and a goal reached exactly is met.

    Returns
    -------
    dict
        ``mean``, ``sd``, ``n``, ``p`` and ``verdict``.

    Examples
    --------
    >>> threshold_verdict([0.30, 0.35, 0.28, 0.33, 0.31], goal=0.20)["verdict"]
    'missed'
    >>> threshold_verdict([0.10, 0.30, 0.15, 0.25], goal=0.20)["verdict"]
    'not decided'
    >>> threshold_verdict([3, 3, 3], goal=3, lower_is_better=False)["verdict"]
    'met'
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if len(x) == 0:
        raise ValueError("threshold_verdict: no finite values")
    mean, n = float(x.mean()), len(x)
    sd = float(x.std(ddof=1)) if n > 1 else float("nan")
    if n > 1 and sd > 0:
        p = float(stats.ttest_1samp(x, goal).pvalue)
        good = mean < goal if lower_is_better else mean > goal
        verdict = "not decided" if not p < alpha else ("met" if good else "missed")
    elif n > 1:  # every seed gave the same value: it decides, and a goal reached exactly is met
        p = 0.0
        verdict = "met" if (mean <= goal if lower_is_better else mean >= goal) else "missed"
    else:
        p, verdict = float("nan"), "not decided"
    return {"mean": mean, "sd": sd, "n": n, "p": p, "verdict": verdict}
