r"""Linear factor analysis, the baseline of Chapter 4.

Standardised columns :math:`x \in \mathbb R^p` are modelled as
:math:`x = \Lambda f + e`, :math:`f \sim \mathcal N(0, I_q)`, :math:`e \sim \mathcal N(0, \Psi)`
with diagonal :math:`\Psi`, fitted by EM on the sample covariance (Rubin & Thayer). The
predictive of hidden columns given observed ones is the Gaussian conditional; for ordinal
answers it is discretised to the answer categories (:func:`discretised_log_prob`), so the
baseline and the twin model are scored on the same probabilities.
See Chapter 4.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr, ndtr

__all__ = ["FactorAnalysis", "choose_n_factors", "discretised_log_prob", "fit_factor_analysis"]


@dataclass(frozen=True)
class FactorAnalysis:
    """A fitted factor model on standardised columns.

    Attributes
    ----------
    loadings : ndarray, shape (p, q)
    uniqueness : ndarray, shape (p,)
        Diagonal of :math:`\\Psi`.
    mean, scale : ndarray, shape (p,)
        Column means and standard deviations used to standardise.
    n_iter : int
        EM iterations used.
    """

    loadings: np.ndarray
    uniqueness: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    n_iter: int

    @property
    def covariance(self) -> np.ndarray:
        """Model covariance of the standardised columns, :math:`\\Lambda\\Lambda^\\top + \\Psi`."""
        return self.loadings @ self.loadings.T + np.diag(self.uniqueness)

    def log_likelihood(self, x: np.ndarray) -> float:
        """Mean Gaussian log-density per row of ``x`` (raw units)."""
        zs = (x - self.mean) / self.scale
        cov = self.covariance
        _, logdet = np.linalg.slogdet(cov)
        sol = np.linalg.solve(cov, zs.T).T
        p = x.shape[1]
        return float(np.mean(-0.5 * (np.sum(zs * sol, 1) + logdet + p * np.log(2 * np.pi)))
                     - np.sum(np.log(self.scale)))

    def conditional(self, x: np.ndarray, hidden: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (raw units) of the ``hidden`` columns given the others.

        The values of ``x`` in hidden columns are ignored.
        """
        hidden = np.asarray(hidden)
        obs = np.setdiff1d(np.arange(x.shape[1]), hidden)
        zs = (x - self.mean) / self.scale
        cov = self.covariance
        gain = np.linalg.solve(cov[np.ix_(obs, obs)], cov[np.ix_(obs, hidden)]).T  # (h, o)
        mean = zs[:, obs] @ gain.T
        var = np.diag(cov[np.ix_(hidden, hidden)] - gain @ cov[np.ix_(obs, hidden)])
        return mean * self.scale[hidden] + self.mean[hidden], np.sqrt(np.maximum(var, 1e-9)) * self.scale[hidden]


def fit_factor_analysis(x: np.ndarray, n_factors: int, max_iter: int = 1000, tol: float = 1e-7) -> FactorAnalysis:
    """Fit a factor model by EM.

    Parameters
    ----------
    x : ndarray, shape (n, p)
        Rows are observations; columns are standardised internally.
    n_factors : int
        :math:`q`, at most :math:`p`.
    max_iter, tol : int, float
        EM stops when the log-likelihood gains less than ``tol`` per row.

    Returns
    -------
    FactorAnalysis
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ValueError("x must be a finite 2-d array (rows = observations)")
    n, p = x.shape
    if not 1 <= n_factors <= p:
        raise ValueError(f"n_factors must lie in 1..{p}, got {n_factors}")
    mean, scale = x.mean(0), x.std(0)
    if (scale == 0).any():
        raise ValueError(f"column {int(np.argmax(scale == 0))} is constant; factor analysis needs variation")
    s = np.cov(((x - mean) / scale).T, bias=True)
    # Start from the leading principal components.
    vals, vecs = np.linalg.eigh(s)
    lam = vecs[:, ::-1][:, :n_factors] * np.sqrt(np.maximum(vals[::-1][:n_factors], 1e-3))
    psi = np.maximum(np.diag(s) - np.sum(lam**2, 1), 0.05)
    prev = -np.inf
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        cov = lam @ lam.T + np.diag(psi)
        beta = np.linalg.solve(cov, lam).T  # (q, p)
        ezz = np.eye(n_factors) - beta @ lam + beta @ s @ beta.T
        lam = s @ beta.T @ np.linalg.inv(ezz)
        psi = np.maximum(np.diag(s - lam @ beta @ s), 1e-4)
        cov = lam @ lam.T + np.diag(psi)
        _, logdet = np.linalg.slogdet(cov)
        ll = -0.5 * (logdet + np.trace(np.linalg.solve(cov, s)))
        if ll - prev < tol:
            break
        prev = ll
    return FactorAnalysis(loadings=lam, uniqueness=psi, mean=mean, scale=scale, n_iter=it)


def choose_n_factors(x_train: np.ndarray, x_valid: np.ndarray, candidates: Sequence[int]) -> tuple[int, dict[int, float]]:
    """Pick the number of factors by validation log-likelihood (never by the test set).

    Returns
    -------
    best : int
    scores : dict
        Validation log-likelihood per row for each candidate.
    """
    scores = {q: fit_factor_analysis(x_train, q).log_likelihood(x_valid) for q in candidates}
    return max(scores, key=scores.get), scores


def discretised_log_prob(y: np.ndarray, mean: np.ndarray, sd: np.ndarray, n_categories: int) -> np.ndarray:
    r"""Log-probability of ordinal answers under a Gaussian rounded to the nearest category.

    :math:`P(y = c) = \Phi((c + \tfrac12 - m)/s) - \Phi((c - \tfrac12 - m)/s)`, with the end
    categories open (they take all the mass beyond them).
    """
    y = np.asarray(y)
    hi = np.where(y >= n_categories - 1, np.inf, (y + 0.5 - mean) / sd)
    lo = np.where(y <= 0, -np.inf, (y - 0.5 - mean) / sd)
    p = ndtr(hi) - ndtr(lo)
    # In the far tails the difference underflows; use the log tail there.
    tail = np.where(lo > 0, log_ndtr(-lo), log_ndtr(hi))
    return np.where(p > 1e-300, np.log(np.maximum(p, 1e-300)), tail)
