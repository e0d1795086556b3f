"""Full-rank Gaussian variational inference (ADVI) for a NumPy log density with its gradient.

The fast path of SVI for the national model: the same family as Pyro's
``AutoMultivariateNormal`` guide (a Gaussian with a full covariance on the unconstrained
space), fitted by stochastic gradient ascent on the evidence lower bound with the
reparameterisation trick, but on the hand-differentiated density of
:mod:`mmmlib.bayes.density` instead of Pyro's traced program:

.. math::

    \\mathrm{ELBO}(m, L) = \\mathbb E_{\\varepsilon\\sim\\mathcal N(0, I)}
    \\big[\\log p(m + L\\varepsilon)\\big] + \\sum_i \\log L_{ii} + \\text{const},

with :math:`\\nabla_m = \\mathbb E[g]`, :math:`\\nabla_L = \\mathrm{tril}(\\mathbb E[g\\varepsilon^\\top])
+ \\mathrm{diag}(1/L_{ii})` and :math:`g = \\nabla\\log p(m + L\\varepsilon)`; the diagonal of
:math:`L` is kept positive through its logarithm. Adam with a learning rate decaying
geometrically to a tenth (as the Pyro path's ``ClippedAdam``) and gradient-norm clipping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["ADVIResult", "fit_advi"]

LogDensity = Callable[[np.ndarray], tuple[float, np.ndarray]]


@dataclass(frozen=True)
class ADVIResult:
    """A fitted full-rank Gaussian on the unconstrained space.

    Attributes
    ----------
    mean : numpy.ndarray, shape (D,)
    scale_tril : numpy.ndarray, shape (D, D)
        Lower-triangular Cholesky factor of the covariance.
    elbo : numpy.ndarray, shape (steps,)
        Monte Carlo estimate of the ELBO (up to the density's constant) at every step.
    seconds : float
        Wall time of the optimisation.
    """

    mean: np.ndarray
    scale_tril: np.ndarray
    elbo: np.ndarray
    seconds: float

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` draws ``(n, D)`` from the fitted Gaussian."""
        eps = np.random.default_rng(seed).standard_normal((n, len(self.mean)))
        return self.mean + eps @ self.scale_tril.T


def fit_advi(
    log_density: LogDensity,
    z0: np.ndarray,
    steps: int = 3000,
    seed: int = 0,
    lr: float = 0.02,
    num_particles: int = 4,
    init_scale: float = 0.1,
    clip_norm: float = 10.0,
) -> ADVIResult:
    """Fit a full-rank Gaussian to the density by stochastic ELBO ascent.

    Parameters
    ----------
    log_density : callable
        ``z -> (log p(z), grad)`` on the unconstrained space (``-inf`` where undefined).
    z0 : numpy.ndarray, shape (D,)
        Initial mean (e.g. the prior median).
    steps : int
        Adam steps.
    seed : int
        Seed of the Monte Carlo draws.
    lr : float
        Initial Adam learning rate (decays to ``lr / 10`` over the steps).
    num_particles : int
        Draws per gradient estimate.
    init_scale : float
        Initial standard deviation of every coordinate.
    clip_norm : float
        Largest norm of each parameter block's gradient.
    """
    z0 = np.asarray(z0, dtype=np.float64)
    D = z0.size
    if steps < 1 or num_particles < 1:
        raise ValueError(f"steps and num_particles must be >= 1, got {steps} and {num_particles}")
    if not init_scale > 0:
        raise ValueError(f"init_scale must be positive, got {init_scale}")
    rng = np.random.default_rng(seed)
    tril = np.tril_indices(D, -1)
    # parameters: mean, log of the diagonal of L, strictly lower part of L
    theta = np.concatenate([z0, np.full(D, np.log(init_scale)), np.zeros(len(tril[0]))])
    m1 = np.zeros_like(theta)
    m2 = np.zeros_like(theta)
    b1, b2, adam_eps = 0.9, 0.999, 1e-8
    decay = 0.1 ** (1.0 / steps)
    elbo = np.empty(steps)
    t0 = time.perf_counter()
    for step in range(steps):
        mean, log_diag = theta[:D], theta[D : 2 * D]
        L = np.zeros((D, D))
        L[tril] = theta[2 * D :]
        L[np.diag_indices(D)] = np.exp(log_diag)
        eps = rng.standard_normal((num_particles, D))
        z = mean + eps @ L.T
        lps, grads = np.empty(num_particles), np.empty((num_particles, D))
        for i in range(num_particles):
            lps[i], grads[i] = log_density(z[i])
        ok = np.isfinite(lps)
        if not ok.any():  # every draw fell where the density is undefined: shrink towards the mean
            g_mean, g_L = np.zeros(D), -np.eye(D)
            elbo[step] = -np.inf
        else:
            g, e = grads[ok], eps[ok]
            g_mean = g.mean(axis=0)
            g_L = g.T @ e / len(g)
            elbo[step] = float(lps[ok].mean() + log_diag.sum())
        g_log_diag = np.diag(g_L) * np.exp(log_diag) + 1.0
        blocks = [g_mean, g_log_diag, g_L[tril]]
        for k, b in enumerate(blocks):
            n = float(np.linalg.norm(b))
            if n > clip_norm:
                blocks[k] = b * (clip_norm / n)
        grad = np.concatenate(blocks)
        m1 = b1 * m1 + (1 - b1) * grad
        m2 = b2 * m2 + (1 - b2) * grad * grad
        step_lr = lr * decay**step
        theta = theta + step_lr * (m1 / (1 - b1 ** (step + 1))) / (np.sqrt(m2 / (1 - b2 ** (step + 1))) + adam_eps)
    L = np.zeros((D, D))
    L[tril] = theta[2 * D :]
    L[np.diag_indices(D)] = np.exp(theta[D : 2 * D])
    return ADVIResult(mean=theta[:D].copy(), scale_tril=L, elbo=elbo, seconds=time.perf_counter() - t0)
