r"""A particle smoother that knows the wear-out world's true dynamics: the floor of what its data can tell.

In the wear-out family (:mod:`mmmlib.tvc.wearout`) a media coefficient is
:math:`\beta_{tc} = a_c\, m_{tc}` with a fresh-creative coefficient :math:`a_c` fixed per series
and a multiplier :math:`m_{tc} = \exp(J_{tc} - \rho E_{tc})` driven by launches and jumps. Given
the launches and jumps (a *particle*), sales are linear and Gaussian in everything else:

.. math::

    y_t = \sum_c a_c\,(m_{tc} x_{tc}) + z_t^\top \gamma_t + f_t^\top c + \varepsilon_t,

with :math:`a` static, :math:`\gamma_t` an AR(1) and :math:`c` the static baseline coefficients.
So a Rao–Blackwellised particle filter is the natural exact-in-the-limit method: each particle
samples launches and jumps from their true prior (a bootstrap proposal) and carries a Kalman filter
of :math:`(a, \gamma, c)`; its weight is the Kalman predictive likelihood of the week's sales;
particles are resampled (systematic) when the effective sample size falls under half.

Smoothing uses the particles' genealogy: a surviving particle's ancestral launches and jumps give
its whole multiplier path, and because :math:`a` is static its final filtered distribution is its
smoothed one, so :math:`\beta_{tc} = a_c m_{tc}` is drawn exactly given the path. With enough
particles this is the posterior under the true process, except for three stated approximations:
the fresh-creative coefficient's log-normal prior is replaced by the Gaussian with the same mean
and variance (it enters a Kalman filter), the controls' coefficients and the baseline use the
empirical-Bayes Gaussian prior of :class:`~mmmlib.tvc.statespace.KalmanTVC` (what a practitioner
would know), and their sampled paths are the filtered means along each ancestral path (enough to
reconstruct sales; the media coefficients, which are scored, are smoothed). Early weeks suffer the
genealogy's path degeneracy when particles are few; :attr:`ParticleTVC.n_particles` sets the
trade-off and the tests check the posterior against the truth's known launches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mmmlib.tvc.diffusion import PathSamples
from mmmlib.tvc.statespace import KalmanTVC
from mmmlib.tvc.wearout import WearoutDynamics
from mmmlib.tvc.world import TVCConfig, TVCWorld, baseline_features

__all__ = ["ParticleTVC"]


def _log_mean_exp(logx: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """log sum_p weights[b, p] exp(logx[b, p]), stably, shape (B,)."""
    top = logx.max(1, keepdims=True)
    return top[:, 0] + np.log((weights * np.exp(logx - top)).sum(1))


def _systematic(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Systematic resampling of each row of ``weights`` (B, P) with offsets ``u`` (B,): indices (B, P)."""
    b, p = weights.shape
    cum = np.cumsum(weights, axis=1)
    cum[:, -1] = 1.0
    points = (np.arange(p)[None, :] + u[:, None]) / p
    return np.minimum(np.array([np.searchsorted(cum[i], points[i]) for i in range(b)]), p - 1)


@dataclass
class ParticleTVC:
    """Rao–Blackwellised particle smoother under the wear-out family's true dynamics.

    Attributes
    ----------
    dynamics : WearoutDynamics
        The true launch, wear-out and jump process.
    fresh_mean, fresh_var : ndarray, shape (C,)
        Mean and variance of the fresh-creative coefficient :math:`a` (moment-matched log-normal).
    prior : KalmanTVC
        Linear-Gaussian prior of the controls' coefficients and the baseline (its media block is
        not used) and the noise variance.
    n_particles : int
        Particles per series.
    n_draws : int
        Posterior draws of every path returned.
    chunk : int
        Series filtered together (memory: ``chunk x n_particles x S^2`` floats).
    seed : int
        Seed of the proposal and resampling.
    """

    dynamics: WearoutDynamics
    fresh_mean: np.ndarray
    fresh_var: np.ndarray
    prior: KalmanTVC
    n_particles: int = 1000
    n_draws: int = 200
    chunk: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_particles", "n_draws", "chunk"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ParticleTVC.{name} must be an integer >= 1, got {v!r}")
        if np.shape(self.fresh_mean) != np.shape(self.fresh_var):
            raise ValueError("fresh_mean and fresh_var need one value per channel each")
        if np.any(np.asarray(self.fresh_var) <= 0):
            raise ValueError(f"fresh_var must be positive, got {self.fresh_var!r}")

    @classmethod
    def calibrate(cls, train: TVCWorld, dynamics: WearoutDynamics, **kwargs) -> ParticleTVC:
        """The true media dynamics, plus the controls' and baseline's empirical-Bayes prior and the
        noise variance from the truth of simulated training series (as for the Kalman smoothers).

        Parameters
        ----------
        train : TVCWorld
            Training series of the wear-out family (their truth sets the controls' prior).
        dynamics : WearoutDynamics
            The process the world was simulated with.
        **kwargs
            ``n_particles``, ``n_draws``, ``chunk``, ``seed``.
        """
        cfg: TVCConfig = train.config
        median = np.asarray(cfg.beta_median) * dynamics.fresh_over_median
        s2 = cfg.beta_spread**2
        mean = median * np.exp(s2 / 2)
        var = mean**2 * np.expm1(s2)
        return cls(dynamics=dynamics, fresh_mean=mean, fresh_var=var, prior=KalmanTVC.calibrate(train), **kwargs)

    def sample(self, media: np.ndarray, controls: np.ndarray, sales: np.ndarray) -> PathSamples:
        """Posterior draws of the coefficient paths of a batch of series.

        Parameters
        ----------
        media : ndarray, shape (N, T, C)
            Transformed media.
        controls : ndarray, shape (N, T, K)
        sales : ndarray, shape (N, T)

        Returns
        -------
        PathSamples
            ``n_draws`` paths per series (media coefficients smoothed; see the module's notes).
        """
        return self._run(media, controls, sales, None)[0]

    def given_multipliers(self, media: np.ndarray, controls: np.ndarray, sales: np.ndarray,
                          multiplier: np.ndarray) -> tuple[PathSamples, np.ndarray]:
        """The posterior when every launch and jump is known (the multiplier :math:`m`), only the
        levels :math:`a`, the controls and the baseline unknown: an oracle no method can reach,
        the ceiling above the true-dynamics posterior. One exact Kalman filter per series.

        Parameters
        ----------
        media, controls, sales : ndarray
            As for :meth:`sample`.
        multiplier : ndarray, shape (N, T, C)
            The multiplier path :math:`m` of every series.

        Returns
        -------
        samples : PathSamples
        log_evidence : ndarray, shape (N,)
            Log marginal likelihood of each series' sales given the multiplier.
        """
        multiplier = np.asarray(multiplier, dtype=float)
        if multiplier.shape != np.shape(media):
            raise ValueError(f"multiplier must have the shape of media {np.shape(media)}, got {multiplier.shape}")
        return self._run(media, controls, sales, multiplier)

    def _run(self, media, controls, sales, multiplier) -> tuple[PathSamples, np.ndarray]:
        media, controls, sales = (np.asarray(a, dtype=float) for a in (media, controls, sales))
        n, t, c = media.shape
        if c != len(self.fresh_mean):
            raise ValueError(f"the smoother knows {len(self.fresh_mean)} channels, media has {c}")
        if controls.shape[:2] != (n, t) or sales.shape != (n, t):
            raise ValueError(f"media {media.shape}, controls {controls.shape} and sales {sales.shape} "
                             "must share (series, weeks)")
        k = controls.shape[-1]
        if len(self.prior.m0) != c + k + 4:
            raise ValueError(f"the prior was calibrated for {len(self.prior.m0) - 4} media and control columns, "
                             f"the data has {c + k}")
        start = time.perf_counter()
        rng = np.random.default_rng(self.seed)
        parts = []
        for i in range(0, n, self.chunk):
            rows = slice(i, i + self.chunk)
            fixed = None if multiplier is None else multiplier[rows]
            parts.append(self._chunk(media[rows], controls[rows], sales[rows], rng, fixed))
        beta, gamma, base, evidence = (np.concatenate([p[j] for p in parts]) for j in range(4))
        return PathSamples(beta=beta, gamma=gamma, baseline=base, seconds=time.perf_counter() - start), evidence

    def _propose_launches(self, h: np.ndarray, vh: np.ndarray, mean: np.ndarray, cov: np.ndarray,
                          jump: np.ndarray, x: np.ndarray, y: np.ndarray,
                          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Launches drawn channel by channel from their prior tilted by this week's sales.

        For channel :math:`c` (in order, the earlier channels' draws kept), the two choices
        launch / no launch change only :math:`h_c`, so their Kalman predictive likelihoods follow
        from :math:`Vh` by a rank-one update. The draw is made with probability proportional to
        prior x likelihood, and the particle's log weight gains log(prior / proposal): any
        proposal with the prior's support keeps the filter exact, this one spends particles
        where the sales say a new creative began.

        Returns
        -------
        launch : ndarray of bool, shape (B, P, C)
        log_ratio : ndarray, shape (B, P)
            log prior - log proposal of the draws.
        """
        dyn = self.dynamics
        c = x.shape[-1]
        lam = dyn.launch_rate
        h, vh = h.copy(), vh.copy()
        pred = np.einsum("bpi,bpi->bp", h, mean)
        var = np.einsum("bpi,bpi->bp", h, vh) + self.prior.r
        launch = np.zeros(h.shape[:2] + (c,), dtype=bool)
        log_ratio = np.zeros(h.shape[:2])
        if lam <= 0 or lam >= 1:
            launch[:] = lam >= 1
            return launch, log_ratio
        for j in range(c):
            on = x[:, None, j]  # (B, 1)
            delta = np.exp(jump[..., j] - dyn.wear_rate * on) * on - h[..., j]  # h_j(launch) - h_j(no launch)
            pred1 = pred + delta * mean[..., j]
            var1 = var + 2 * delta * vh[..., j] + delta**2 * cov[..., j, j]
            ll0 = -0.5 * (np.log(var) + (y[:, None] - pred) ** 2 / var)
            ll1 = -0.5 * (np.log(var1) + (y[:, None] - pred1) ** 2 / var1)
            a0, a1 = np.log1p(-lam) + ll0, np.log(lam) + ll1
            top = np.maximum(a0, a1)
            p1 = np.exp(a1 - top) / (np.exp(a0 - top) + np.exp(a1 - top))
            p1 = np.clip(p1, 1e-12, 1 - 1e-12)
            lj = rng.random(p1.shape) < p1
            launch[..., j] = lj
            log_ratio += np.where(lj, np.log(lam) - np.log(p1), np.log1p(-lam) - np.log1p(-p1))
            d = np.where(lj, delta, 0.0)
            h[..., j] += d
            pred, var = np.where(lj, pred1, pred), np.where(lj, var1, var)
            vh += d[..., None] * cov[..., :, j]
        return launch, log_ratio

    def _chunk(self, media: np.ndarray, controls: np.ndarray, sales: np.ndarray, rng: np.random.Generator,
               fixed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Filter one chunk of series; ``fixed`` (B, T, C) replaces the particles by known multipliers."""
        dyn = self.dynamics
        p = self.n_particles if fixed is None else 1
        b, t, c = media.shape
        k = controls.shape[-1]
        s = c + k + 4
        f = baseline_features(t)
        pr = self.prior
        # Kalman state (a, gamma, baseline coefficients): mean (B, P, S), covariance (B, P, S, S)
        m0 = np.concatenate([self.fresh_mean, pr.m0[c:]])
        v0 = np.zeros((s, s))
        v0[:c, :c] = np.diag(self.fresh_var)
        v0[c:, c:] = pr.P0[c:, c:]
        mean = np.broadcast_to(m0, (b, p, s)).copy()
        cov = np.broadcast_to(v0, (b, p, s, s)).copy()
        phi = np.concatenate([np.ones(c), pr.phi[c:]])
        drift = np.concatenate([np.zeros(c), (1 - pr.phi[c:]) * pr.long_run[c:]])
        q = np.concatenate([np.zeros(c), pr.q[c:]])
        expo = np.zeros((b, p, c))
        jump = np.zeros((b, p, c))
        logw = np.zeros((b, p))
        evidence = np.zeros(b)
        mult_hist = np.empty((t, b, p, c))
        gamma_hist = np.empty((t, b, p, k))
        anc = np.empty((t, b, p), dtype=np.int64)
        rows = np.arange(b)[:, None]
        for w in range(t):
            log_ratio = np.zeros((b, p))
            if w > 0:
                mean = mean * phi + drift
                cov = cov * np.outer(phi, phi) + np.diag(q)
                jump = jump + (rng.random((b, p, c)) < dyn.jump_rate) * rng.normal(0.0, dyn.jump_sd, (b, p, c))
            h = np.concatenate([np.exp(jump - dyn.wear_rate * (expo + media[:, w, None, :])) * media[:, w, None, :],
                                np.broadcast_to(controls[:, w, None, :], (b, p, k)),
                                np.broadcast_to(f[w], (b, p, 4))], axis=-1)  # every channel without a launch
            vh = np.einsum("bpij,bpj->bpi", cov, h)
            if fixed is not None:
                launch = np.zeros((b, p, c), dtype=bool)
            elif w > 0:
                launch, log_ratio = self._propose_launches(h, vh, mean, cov, jump, media[:, w], sales[:, w], rng)
            else:
                launch = np.ones((b, p, c), dtype=bool)
            expo = np.where(launch, 0.0, expo) + media[:, w, None, :]
            mult = np.exp(jump - dyn.wear_rate * expo) if fixed is None else fixed[:, None, w]
            h[..., :c] = mult * media[:, w, None, :]
            vh = np.einsum("bpij,bpj->bpi", cov, h)
            var = np.einsum("bpi,bpi->bp", h, vh) + pr.r
            innov = sales[:, w, None] - np.einsum("bpi,bpi->bp", h, mean)
            # the week's weight increment: likelihood x prior / proposal; the log evidence gains the
            # log of its mean under the normalised weights before it (the filter's unbiased estimate)
            inc = log_ratio - 0.5 * (np.log(2 * np.pi * var) + innov**2 / var)
            wprev = np.exp(logw - logw.max(1, keepdims=True))
            evidence = evidence + _log_mean_exp(inc, wprev / wprev.sum(1, keepdims=True))
            logw = logw + inc
            gain = vh / var[..., None]
            mean = mean + gain * innov[..., None]
            cov = cov - gain[..., :, None] * vh[..., None, :]
            # resample the series whose effective sample size fell under half
            wts = np.exp(logw - logw.max(1, keepdims=True))
            wts /= wts.sum(1, keepdims=True)
            ess = 1.0 / (wts**2).sum(1)
            idx = np.broadcast_to(np.arange(p), (b, p)).copy()
            low = ess < p / 2
            if w == t - 1:
                low[:] = False  # the last week's weights are used as they are
            if low.any():
                idx[low] = _systematic(wts[low], rng.random(int(low.sum())))
                logw[low] = 0.0
            anc[w] = idx
            mean, cov = mean[rows, idx], cov[rows, idx]
            expo, jump = expo[rows, idx], jump[rows, idx]
            mult_hist[w] = mult[rows, idx]
            gamma_hist[w] = mean[..., c:c + k]
        wts = np.exp(logw - logw.max(1, keepdims=True))
        wts /= wts.sum(1, keepdims=True)
        # ancestral paths of the final particles
        mult_path = np.empty((b, p, t, c))
        gamma_path = np.empty((b, p, t, k))
        j = np.broadcast_to(np.arange(p), (b, p)).copy()
        for w in range(t - 1, -1, -1):
            mult_path[:, :, w] = mult_hist[w][rows, j]
            gamma_path[:, :, w] = gamma_hist[w][rows, j]
            j = anc[w][rows, j]
        # draws: a particle by its final weight, then a ~ N(its filtered mean, covariance) of (a, c)
        d = self.n_draws
        pick = np.stack([rng.choice(p, size=d, p=wts[i]) for i in range(b)])  # (B, D)
        keep = np.r_[0:c, c + k:s]  # a and the baseline coefficients (static: filtered = smoothed)
        mu = mean[rows, pick][..., keep]  # (B, D, C+4)
        sig = cov[rows, pick][..., keep[:, None], keep[None, :]]
        chol = np.linalg.cholesky(sig + 1e-9 * np.eye(len(keep)))
        draw = mu + np.einsum("bdij,bdj->bdi", chol, rng.standard_normal(mu.shape))
        beta = draw[..., None, :c] * mult_path[rows, pick]  # (B, D, T, C)
        base = draw[..., c:] @ f.T  # (B, D, T)
        return beta, gamma_path[rows, pick], base, evidence
