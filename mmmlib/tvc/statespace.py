r"""A Kalman smoother for time-varying coefficients: the baseline Chapter 5's diffusion model must beat.

The state of series :math:`i` at week :math:`t` stacks the media coefficients, the control
coefficients and the four baseline coefficients (level, trend, yearly sine and cosine):

.. math::

    s_t = (\beta_t, \gamma_t, c),\qquad
    \beta_t = \phi_m \beta_{t-1} + (1 - \phi_m)\,\bar\beta + \eta_t,\qquad
    \gamma_t = \phi_k \gamma_{t-1} + (1 - \phi_k)\,\bar\gamma + \nu_t,\qquad c_t = c_{t-1},

observed through :math:`y_t = (x_t, z_t, f_t)^\top s_t + \varepsilon_t`. This is linear and
Gaussian, so the Rauch–Tung–Striebel smoother gives the exact posterior of every coefficient path
under this (approximate) prior. The prior is set from the same simulated training series the
diffusion model learns from (:meth:`KalmanTVC.calibrate`): the mean and covariance of the first
week's coefficients, the AR(1) persistence and innovation variance per coefficient, and the noise
variance. Coefficients are linear here (the world's media coefficients are log-OU with jumps), so
this is the simplest serious answer, not a straw man.

:class:`LogKalmanTVC` is the same smoother with :math:`u_t = \log\beta_t` as the media states,
which matches the world's log-OU coefficients: the prior is linear-Gaussian in :math:`u`, the
observation :math:`y_t = \sum_c e^{u_{tc}} x_{tc} + \dots` is not, so the smoother is iterated
(Gauss–Newton on the posterior mode of the whole path, the iterated extended Kalman smoother):
each pass linearises the observation around the current path,

.. math::

    y_t - \sum_c e^{\hat u_{tc}}(1 - \hat u_{tc})\,x_{tc}
    \approx \sum_c \big(e^{\hat u_{tc}} x_{tc}\big)\,u_{tc} + z_t^\top\gamma_t + f_t^\top c,

and runs the linear smoother on it. See Chapter 5.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np

from mmmlib.tvc.world import TVCWorld, baseline_features

__all__ = ["KalmanTVC", "LogKalmanTVC", "TVCPosterior"]


@dataclass
class TVCPosterior:
    """Gaussian posterior of coefficient paths, per series.

    Attributes
    ----------
    mean, sd : ndarray, shape (N, T, C + K + 4)
        Smoothed mean and standard deviation of the states (media, control, baseline
        coefficients); the media states are :math:`\\log\\beta` when ``log_media``.
    n_media, n_controls : int
        How the last axis splits.
    baseline, baseline_sd : ndarray, shape (N, T)
        Posterior mean and standard deviation of the baseline path (level, trend, season).
    log_media : bool
        Whether the media states are log coefficients (Gaussian in :math:`\\log\\beta`, so
        :math:`\\beta` is log-normal).
    converged : ndarray of bool, shape (N,), optional
        For an iterated smoother, whether each series' mode search converged (None when exact).
    """

    mean: np.ndarray
    sd: np.ndarray
    n_media: int
    n_controls: int
    baseline: np.ndarray | None = None
    baseline_sd: np.ndarray | None = None
    log_media: bool = False
    converged: np.ndarray | None = None

    @property
    def beta(self) -> np.ndarray:
        """Posterior mean media coefficients, shape (N, T, C)."""
        m = self.mean[..., : self.n_media]
        if self.log_media:
            return np.exp(m + 0.5 * self.sd[..., : self.n_media] ** 2)
        return m

    @property
    def beta_sd(self) -> np.ndarray:
        """Posterior standard deviation of the media coefficients."""
        s = self.sd[..., : self.n_media]
        if self.log_media:
            return self.beta * np.sqrt(np.expm1(s**2))
        return s

    def beta_quantile(self, q: float) -> np.ndarray:
        """The ``q`` quantile of every media coefficient, shape (N, T, C)."""
        z = NormalDist().inv_cdf(q)
        m, s = self.mean[..., : self.n_media], self.sd[..., : self.n_media]
        return np.exp(m + z * s) if self.log_media else m + z * s

    @property
    def gamma(self) -> np.ndarray:
        """Posterior mean control coefficients, shape (N, T, K)."""
        return self.mean[..., self.n_media: self.n_media + self.n_controls]


@dataclass
class KalmanTVC:
    """Linear-Gaussian state-space regression with time-varying coefficients.

    Attributes
    ----------
    m0 : ndarray, shape (S,)
        Prior mean of the first week's state.
    P0 : ndarray, shape (S, S)
        Prior covariance of the first week's state.
    phi, q : ndarray, shape (S,)
        AR(1) persistence and innovation variance of each state (1 and 0 for the baseline).
    long_run : ndarray, shape (S,)
        Mean the AR(1) states revert to.
    r : float
        Observation noise variance.
    """

    m0: np.ndarray
    P0: np.ndarray
    phi: np.ndarray
    q: np.ndarray
    long_run: np.ndarray
    r: float

    @classmethod
    def calibrate(cls, train: TVCWorld) -> KalmanTVC:
        """Set the prior from the truth of simulated training series (empirical Bayes).

        Parameters
        ----------
        train : TVCWorld
            Training series with their true coefficient paths.
        """
        return cls._from_paths(train, train.beta)

    @classmethod
    def _from_paths(cls, train: TVCWorld, media_states: np.ndarray) -> KalmanTVC:
        """Empirical-Bayes prior with ``media_states`` (the coefficients or their logs) as media states."""
        f = baseline_features(train.config.n_weeks)
        c_true = np.linalg.lstsq(f, train.baseline.T, rcond=None)[0].T  # (N, 4)
        coef = np.concatenate([media_states, train.gamma], axis=-1)  # (N, T, C+K)
        long_run = coef.mean(axis=(0, 1))
        dev = coef - long_run
        x, y = dev[:, :-1].reshape(-1, dev.shape[-1]), dev[:, 1:].reshape(-1, dev.shape[-1])
        phi = np.clip((x * y).sum(0) / (x * x).sum(0), 0.0, 0.999)
        q = (y - phi * x).var(axis=0)
        first = np.concatenate([coef[:, 0], c_true], axis=1)
        s = first.shape[1]
        return cls(m0=first.mean(0), P0=np.cov(first, rowvar=False) + 1e-9 * np.eye(s),
                   phi=np.concatenate([phi, np.ones(4)]), q=np.concatenate([q, np.zeros(4)]),
                   long_run=np.concatenate([long_run, np.zeros(4)]), r=float(train.noise.var()))

    def smooth(self, media: np.ndarray, controls: np.ndarray, sales: np.ndarray) -> TVCPosterior:
        """Kalman filter and RTS smoother over a batch of series.

        Parameters
        ----------
        media : ndarray, shape (N, T, C)
            Transformed media.
        controls : ndarray, shape (N, T, K)
        sales : ndarray, shape (N, T)

        Returns
        -------
        TVCPosterior
        """
        n, t, c = media.shape
        k = controls.shape[-1]
        f = np.broadcast_to(baseline_features(t), (n, t, 4))
        h = np.concatenate([media, controls, f], axis=-1)  # (N, T, S)
        s = h.shape[-1]
        if s != len(self.m0):
            raise ValueError(f"the smoother was calibrated for {len(self.m0)} states, the data has {s} columns")
        a = np.diag(self.phi)
        b = (1 - self.phi) * self.long_run
        qm = np.diag(self.q)
        mf = np.empty((n, t, s))
        pf = np.empty((n, t, s, s))
        mp = np.empty((n, t, s))
        pp = np.empty((n, t, s, s))
        m = np.broadcast_to(self.m0, (n, s)).copy()
        p = np.broadcast_to(self.P0, (n, s, s)).copy()
        for w in range(t):
            if w > 0:
                m = m @ a.T + b
                p = a @ p @ a.T + qm
            mp[:, w], pp[:, w] = m, p
            hw = h[:, w]
            ph = np.einsum("nij,nj->ni", p, hw)
            var = np.einsum("ni,ni->n", hw, ph) + self.r
            gain = ph / var[:, None]
            m = m + gain * (sales[:, w] - np.einsum("ni,ni->n", hw, m))[:, None]
            p = p - gain[:, :, None] * ph[:, None, :]
            mf[:, w], pf[:, w] = m, p
        ms, ps = mf.copy(), pf.copy()
        for w in range(t - 2, -1, -1):
            j = np.einsum("nij,jk,nkl->nil", pf[:, w], a.T, np.linalg.inv(pp[:, w + 1]))
            ms[:, w] = mf[:, w] + np.einsum("nij,nj->ni", j, ms[:, w + 1] - mp[:, w + 1])
            ps[:, w] = pf[:, w] + j @ (ps[:, w + 1] - pp[:, w + 1]) @ np.swapaxes(j, 1, 2)
        sd = np.sqrt(np.clip(np.einsum("ntii->nti", ps), 0.0, None))
        fb = baseline_features(t)
        base = (ms[..., c + k:] * fb).sum(-1)
        base_var = np.einsum("ti,ntij,tj->nt", fb, ps[..., c + k:, c + k:], fb)
        return TVCPosterior(mean=ms, sd=sd, n_media=c, n_controls=k, baseline=base,
                            baseline_sd=np.sqrt(np.clip(base_var, 0.0, None)))


@dataclass
class LogKalmanTVC:
    """Iterated extended Kalman smoother with log media coefficients as states.

    Each pass is a Gauss–Newton step on the posterior mode of the whole path; the step is
    damped per series by a backtracking line search on the negative log posterior (halving
    until it decreases), so a series whose path lies far from the prior's long-run level does
    not overshoot into ever larger coefficients. A series has converged when the Gauss–Newton
    step it asks for moves no log coefficient by more than ``tol``; series that have not after
    ``iterations`` passes (still moving, or stalled because no halving of the step lowers the
    objective) are flagged in ``TVCPosterior.converged`` and reported by a
    :class:`RuntimeWarning`.

    Attributes
    ----------
    prior : KalmanTVC
        The linear-Gaussian prior, media states in log space (AR(1) in :math:`\\log\\beta`).
    iterations : int
        Most Gauss–Newton passes (each one linear smoother run).
    tol : float
        A series has converged when its full Gauss–Newton step moves no log coefficient by more
        than this.
    max_halvings : int
        Most step halvings of the line search per pass.
    """

    prior: KalmanTVC
    iterations: int = 20
    tol: float = 1e-3
    max_halvings: int = 12

    def __post_init__(self) -> None:
        for name in ("iterations", "max_halvings"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "iterations" else 0):
                raise ValueError(f"{name} must be an integer >= {1 if name == 'iterations' else 0}, got {v!r}")
        if not self.tol > 0:
            raise ValueError(f"tol must be positive, got {self.tol!r}")

    @classmethod
    def calibrate(cls, train: TVCWorld, iterations: int = 20) -> LogKalmanTVC:
        """Set the prior from the truth of simulated training series, media states :math:`\\log\\beta`."""
        prior = KalmanTVC._from_paths(train, np.log(train.beta))
        return cls(prior=prior, iterations=iterations)

    def neg_log_posterior(self, states: np.ndarray, media: np.ndarray, controls: np.ndarray,
                          sales: np.ndarray) -> np.ndarray:
        """Negative log posterior density (up to a constant) of state paths, per series.

        Parameters
        ----------
        states : ndarray, shape (N, T, C + K + 4)
            Log media coefficients, control coefficients and the (constant) baseline coefficients.
        media, controls, sales : ndarray
            As in :meth:`smooth`.

        Returns
        -------
        ndarray, shape (N,)
        """
        p = self.prior
        c, k = media.shape[-1], controls.shape[-1]
        d = c + k
        first = states[:, 0] - p.m0
        out = 0.5 * np.einsum("ni,ni->n", first, np.linalg.solve(p.P0, first.T).T)
        ar = p.q[:d] > 0
        innov = states[:, 1:, :d] - p.phi[:d] * states[:, :-1, :d] - (1 - p.phi[:d]) * p.long_run[:d]
        out += 0.5 * (innov[..., ar] ** 2 / p.q[:d][ar]).sum((1, 2))
        fit = (np.exp(states[..., :c]) * media).sum(-1) + (states[..., c:d] * controls).sum(-1) \
            + states[:, 0, d:] @ baseline_features(media.shape[1]).T
        return out + 0.5 * ((sales - fit) ** 2).sum(-1) / p.r

    def initial_states(self, n: int, t: int, c: int, k: int) -> np.ndarray:
        """Where the mode search starts: the prior's long-run coefficients and baseline, shape (n, t, c + k + 4)."""
        p = self.prior
        start = np.concatenate([p.long_run[: c + k], p.m0[c + k:]])
        return np.broadcast_to(start, (n, t, len(start))).copy()

    def smooth(self, media: np.ndarray, controls: np.ndarray, sales: np.ndarray, warn: bool = True) -> TVCPosterior:
        """Posterior (Laplace approximation at the mode) of the paths of a batch of series.

        The first pass linearises around :meth:`initial_states`; the returned posterior has
        ``log_media=True`` and ``converged`` set per series.

        Parameters
        ----------
        media, controls, sales : ndarray
            As in :meth:`KalmanTVC.smooth`.
        warn : bool
            Warn when a series has not converged (``False`` when the caller reads ``converged``).
        """
        n, t, c = media.shape
        p = self.prior
        x = self.initial_states(n, t, c, controls.shape[-1])
        objective = self.neg_log_posterior(x, media, controls, sales)
        for _ in range(self.iterations):
            u = x[..., :c]
            eu = np.exp(u)
            post = p.smooth(eu * media, controls, sales - (eu * media * (1.0 - u)).sum(-1))
            wanted = np.abs(post.mean[..., :c] - u).max(axis=(1, 2))
            x, objective = self._line_search(x, post.mean, objective, media, controls, sales)
            converged = wanted < self.tol
            if converged.all():
                break
        if warn and not converged.all():
            warnings.warn(f"log Kalman smoother: {int((~converged).sum())} of {n} series did not converge in "
                          f"{self.iterations} passes (largest Gauss-Newton step {float(wanted.max()):.3g} > "
                          f"tol {self.tol})", RuntimeWarning, stacklevel=2)
        return replace(post, mean=x, log_media=True, converged=converged)

    def _line_search(self, x: np.ndarray, target: np.ndarray, objective: np.ndarray, media: np.ndarray,
                     controls: np.ndarray, sales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per series, the longest step ``x + 2^-j (target - x)`` that lowers the negative log posterior.

        A series for which no halving lowers it stays where it is (it is then not converged unless
        its step was below ``tol``, see :meth:`smooth`).
        """
        step = target - x
        alpha = np.ones(len(x))
        new = x + step
        val = self.neg_log_posterior(new, media, controls, sales)
        for _ in range(self.max_halvings):
            bad = ~(val <= objective)
            if not bad.any():
                break
            alpha[bad] *= 0.5
            new[bad] = x[bad] + alpha[bad, None, None] * step[bad]
            val[bad] = self.neg_log_posterior(new[bad], media[bad], controls[bad], sales[bad])
        bad = ~(val <= objective)
        new[bad], val[bad] = x[bad], objective[bad]
        return new, val
