r"""Budget allocation: maximise expected response under a total budget and per-channel bounds.

The problem (weekly spend :math:`s_c` per channel, long-run response curves :math:`r_c`):

.. math::

    \max_{s}\ \sum_c r_c(s_c) \quad\text{s.t.}\quad \sum_c s_c = B,\qquad
    \ell_c \le s_c \le u_c,

solved with SLSQP as LightweightMMM does; the bounds default to the current weekly spend
:math:`\pm 20\%` (LightweightMMM's default). For a fitted Bayesian model the curve is the
posterior mean response; on simulated data the *regret* compares the chosen allocation with
the one that is optimal under the true curves:

.. math::

    \text{regret} = \frac{R(s^\star) - R(\hat s)}{R(s^\star) - R(s^0)},

the share of the achievable uplift (over the current mix :math:`s^0`) that the model's
allocation :math:`\hat s` leaves on the table, all evaluated with the true response
:math:`R`. See Chapter 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize

__all__ = ["Allocation", "optimize_budget", "regret", "truth_response", "model_response"]

Response = Callable[[np.ndarray], float]
"""Maps weekly spend per channel, shape ``(C,)``, to the expected total weekly response."""


@dataclass(frozen=True)
class Allocation:
    """An optimised budget split.

    Attributes
    ----------
    channels : tuple of str
        Channel names.
    spend : numpy.ndarray
        Optimised weekly spend per channel.
    current : numpy.ndarray
        The current weekly spend per channel.
    expected : float
        Expected weekly response of ``spend`` (under the curve that was optimised).
    expected_current : float
        Expected weekly response of ``current`` under the same curve.
    lower, upper : numpy.ndarray
        The bounds used.
    converged : bool
        Whether SLSQP reported success.
    """

    channels: tuple[str, ...]
    spend: np.ndarray
    current: np.ndarray
    expected: float
    expected_current: float
    lower: np.ndarray
    upper: np.ndarray
    converged: bool

    @property
    def uplift(self) -> float:
        """Expected weekly response gained over the current mix."""
        return self.expected - self.expected_current

    @property
    def uplift_pct(self) -> float:
        """Uplift as a fraction of the current expected response."""
        return self.uplift / self.expected_current

    def table(self) -> pd.DataFrame:
        """Current and optimised weekly spend per channel, with the change in percent."""
        return pd.DataFrame(
            {
                "current": self.current,
                "optimised": self.spend,
                "change": self.spend / self.current - 1.0,
                "lower": self.lower,
                "upper": self.upper,
            },
            index=pd.Index(self.channels, name="channel"),
        )


def optimize_budget(
    response: Response,
    current: Sequence[float] | np.ndarray,
    channels: Sequence[str],
    budget: float | None = None,
    bounds_pct: float = 0.2,
    lower: Sequence[float] | None = None,
    upper: Sequence[float] | None = None,
) -> Allocation:
    """Maximise ``response(spend)`` subject to ``sum(spend) == budget`` and bounds.

    Parameters
    ----------
    response : callable
        Expected total weekly response of a spend vector ``(C,)``.
    current : array-like, shape (C,)
        Current weekly spend per channel (the starting point and the reference).
    channels : sequence of str
        Channel names, for tables.
    budget : float, optional
        Total weekly budget; defaults to the current total.
    bounds_pct : float
        Bounds ``current * (1 ± bounds_pct)`` unless ``lower``/``upper`` are given.
    lower, upper : array-like, optional
        Explicit per-channel bounds.

    Returns
    -------
    Allocation
    """
    cur = np.asarray(current, dtype=np.float64)
    if cur.ndim != 1 or len(cur) != len(channels):
        raise ValueError(f"current must have one value per channel ({len(channels)}), got shape {cur.shape}")
    if np.any(cur < 0):
        raise ValueError(f"current spend must be non-negative, got {cur}")
    if not 0 <= bounds_pct:
        raise ValueError(f"bounds_pct must be >= 0, got {bounds_pct}")
    lo = np.asarray(lower, dtype=np.float64) if lower is not None else cur * (1.0 - bounds_pct)
    hi = np.asarray(upper, dtype=np.float64) if upper is not None else cur * (1.0 + bounds_pct)
    lo = np.maximum(lo, 0.0)
    if np.any(lo > hi):
        c = int(np.flatnonzero(lo > hi)[0])
        raise ValueError(f"channel {channels[c]!r}: lower bound {lo[c]:.4g} exceeds upper bound {hi[c]:.4g}")
    total = float(cur.sum()) if budget is None else float(budget)
    if not lo.sum() - 1e-9 <= total <= hi.sum() + 1e-9:
        raise ValueError(
            f"budget {total:.4g} cannot be met within the bounds (between {lo.sum():.4g} and {hi.sum():.4g})"
        )
    scale = max(float(np.abs(response(cur))), 1e-12)
    start = np.clip(cur * total / max(cur.sum(), 1e-12), lo, hi)
    result = minimize(
        lambda s: -response(s) / scale,
        start,
        method="SLSQP",
        bounds=list(zip(lo, hi, strict=True)),
        constraints=[{"type": "eq", "fun": lambda s: (s.sum() - total) / max(total, 1e-12)}],
        options={"maxiter": 500, "ftol": 1e-12},
    )
    spend = np.clip(result.x, lo, hi)
    return Allocation(
        channels=tuple(channels),
        spend=spend,
        current=cur,
        expected=float(response(spend)),
        expected_current=float(response(cur)),
        lower=lo,
        upper=hi,
        converged=bool(result.success),
    )


def truth_response(truth) -> Response:
    """The true expected weekly response of a simulated world (:class:`~mmmlib.worlds.media.GroundTruth`)."""
    channels = truth.channels

    def response(spend: np.ndarray) -> float:
        return float(sum(truth.response(ch, s)[0] for ch, s in zip(channels, spend, strict=True)))

    return response


def model_response(mmm) -> Response:
    """The posterior-mean expected weekly response of a fitted :class:`~mmmlib.bayes.model.BayesianMMM`."""
    channels = mmm.data_.channels

    def response(spend: np.ndarray) -> float:
        return float(
            sum(mmm.response_draws(ch, np.array([s]))[:, 0].mean() for ch, s in zip(channels, spend, strict=True))
        )

    return response


def regret(allocation: Allocation, true_response: Response) -> tuple[float, Allocation]:
    """Share of the achievable true uplift that ``allocation`` misses.

    Returns the regret and the allocation that is optimal under ``true_response`` with the
    same budget and bounds.
    """
    best = optimize_budget(
        true_response,
        allocation.current,
        allocation.channels,
        budget=float(allocation.spend.sum()),
        lower=allocation.lower,
        upper=allocation.upper,
    )
    achievable = best.expected - true_response(allocation.current)
    if achievable <= 0:
        return 0.0, best
    return float((best.expected - true_response(allocation.spend)) / achievable), best
