r"""A compact No-U-Turn sampler in NumPy for small models with analytic gradients.

Pyro's NUTS spends about 0.3 ms of Python bookkeeping per leapfrog step on this
project's machines, and torch's autograd about 10 µs per operation, so a
25-parameter marketing-mix model costs 1.5–2 ms per leapfrog step there. The
national models of :mod:`mmmlib.bayes.model` also have a log density with a
hand-derived gradient in NumPy (:mod:`mmmlib.bayes.density`); this sampler
runs it at well under 0.1 ms per step. Chapter 1 checks it against Pyro's NUTS on
the same model.

The algorithm is the one of Stan and Pyro: multinomial NUTS with the generalised
no-U-turn criterion (Hoffman & Gelman 2014; Betancourt 2017), dual-averaging step
size adaptation to a target acceptance statistic, and a diagonal mass matrix
estimated in Stan's doubling windows during warm-up.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

import numpy as np
from threadpoolctl import threadpool_limits

__all__ = ["NUTSResult", "sample_nuts", "warmup_windows"]

LogDensity = Callable[[np.ndarray], tuple[float, np.ndarray]]
MAX_DELTA_H = 1000.0  # energy error that counts as a divergence (Stan, Pyro)


@dataclass
class NUTSResult:
    """Draws and sampler statistics of one or more chains.

    Attributes
    ----------
    draws : numpy.ndarray
        Unconstrained draws, ``(chains, num_samples, dim)``.
    divergent : numpy.ndarray
        Divergent transitions after warm-up, ``(chains, num_samples)`` booleans.
    tree_depth, n_leapfrog : numpy.ndarray
        Per transition after warm-up, ``(chains, num_samples)``.
    accept_stat : numpy.ndarray
        Mean Metropolis acceptance over the tree, ``(chains, num_samples)``.
    step_size : numpy.ndarray
        Adapted step size per chain.
    inverse_mass : numpy.ndarray
        Adapted inverse mass matrix per chain, ``(chains, dim)`` (diagonal) or
        ``(chains, dim, dim)`` (dense).
    seconds : numpy.ndarray
        Wall time per chain (warm-up and sampling).
    """

    draws: np.ndarray
    divergent: np.ndarray
    tree_depth: np.ndarray
    n_leapfrog: np.ndarray
    accept_stat: np.ndarray
    step_size: np.ndarray
    inverse_mass: np.ndarray
    seconds: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def num_divergent(self) -> int:
        return int(self.divergent.sum())


def warmup_windows(num_warmup: int) -> list[tuple[int, int]]:
    """Slow adaptation windows ``(start, end)``: the mass matrix is estimated from the
    draws of iterations ``start..end-1`` (Stan's windows).

    An initial fast buffer (15% or 75 iterations), slow windows doubling from 25
    iterations, and a final fast buffer (10% or 50 iterations) in which only the
    step size adapts. Short warm-ups are split 15% / 75% / 10% as in Stan.
    """
    if num_warmup < 20:
        return []
    init, term, base = 75, 50, 25
    if init + term + base > num_warmup:
        init, term = int(0.15 * num_warmup), int(0.1 * num_warmup)
        base = num_warmup - init - term
    windows, start, size = [], init, base
    while True:
        end = start + size
        if end + 2 * size > num_warmup - term:  # the next window would not fit: stretch this one
            windows.append((start, num_warmup - term))
            return windows
        windows.append((start, end))
        start, size = end, 2 * size


class _DualAveraging:
    """Nesterov dual averaging of log step size (Hoffman & Gelman 2014, Alg. 5)."""

    def __init__(self, step_size: float, target: float) -> None:
        self.target = target
        self.restart(step_size)

    def restart(self, step_size: float) -> None:
        self.mu = math.log(10.0 * step_size)
        self.h_bar = 0.0
        self.log_eps_bar = 0.0
        self.t = 0

    def update(self, accept_stat: float) -> float:
        self.t += 1
        t0, gamma, kappa = 10.0, 0.05, 0.75
        eta = 1.0 / (self.t + t0)
        self.h_bar = (1.0 - eta) * self.h_bar + eta * (self.target - accept_stat)
        log_eps = self.mu - math.sqrt(self.t) / gamma * self.h_bar
        w = self.t ** (-kappa)
        self.log_eps_bar = w * log_eps + (1.0 - w) * self.log_eps_bar
        return math.exp(log_eps)

    @property
    def final(self) -> float:
        return math.exp(self.log_eps_bar)


@dataclass
class _Tree:
    """A (sub)trajectory: its two ends, its proposal and its multinomial weight."""

    z_minus: np.ndarray
    r_minus: np.ndarray
    g_minus: np.ndarray
    v_minus: np.ndarray  # velocity M^-1 r, kept so that each is computed once
    z_plus: np.ndarray
    r_plus: np.ndarray
    g_plus: np.ndarray
    v_plus: np.ndarray
    z_prop: np.ndarray
    logp_prop: float
    g_prop: np.ndarray
    log_weight: float
    rho: np.ndarray  # sum of momenta
    n_leapfrog: int
    sum_accept: float
    turning: bool
    diverging: bool


class _Chain:
    """One NUTS chain: state, leapfrog integrator and tree building."""

    def __init__(self, log_density: LogDensity, z0: np.ndarray, rng: np.random.Generator, max_depth: int):
        self.f = log_density
        self.rng = rng
        self.max_depth = max_depth
        self.z = np.asarray(z0, dtype=np.float64).copy()
        self.logp, self.grad = self.f(self.z)
        if not np.isfinite(self.logp) or not np.all(np.isfinite(self.grad)):
            raise ValueError("the log density or its gradient is not finite at the initial point")
        self.set_inverse_mass(np.ones_like(self.z))

    def set_inverse_mass(self, inv_mass: np.ndarray) -> None:
        """A diagonal (vector) or dense (matrix) inverse mass matrix, i.e. the posterior
        covariance estimate; momenta are drawn from :math:`\\mathcal N(0, M)`."""
        self.inv_mass = inv_mass
        self.dense = inv_mass.ndim == 2
        if self.dense:
            self.chol = np.linalg.cholesky(inv_mass)  # M^-1 = L L^T, so L^-T xi ~ N(0, M)
        else:
            self.chol = None

    def _velocity(self, r: np.ndarray) -> np.ndarray:
        return self.inv_mass @ r if self.dense else self.inv_mass * r

    def _momentum(self) -> np.ndarray:
        xi = self.rng.normal(size=self.z.shape)
        if self.dense:
            return np.linalg.solve(self.chol.T, xi)
        return xi / np.sqrt(self.inv_mass)

    def _leapfrog(self, z, r, g, eps):
        """One leapfrog step; returns the new position, momentum, gradient, log density and
        velocity."""
        r_half = r + 0.5 * eps * g
        z_new = z + eps * self._velocity(r_half)
        logp, g_new = self.f(z_new)
        r_new = r_half + 0.5 * eps * g_new
        return z_new, r_new, g_new, logp, self._velocity(r_new)

    @staticmethod
    def _energy(logp: float, r: np.ndarray, v: np.ndarray) -> float:
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging trajectory: inf, caught by the caller
            return -logp + 0.5 * float(np.dot(v, r))

    @staticmethod
    def _no_u_turn(rho: np.ndarray, v_minus: np.ndarray, v_plus: np.ndarray) -> bool:
        return float(np.dot(v_minus, rho)) > 0 and float(np.dot(v_plus, rho)) > 0

    def _build(self, z, r, g, direction: int, depth: int, eps: float, h0: float) -> _Tree:
        if depth == 0:
            z1, r1, g1, logp1, v1 = self._leapfrog(z, r, g, direction * eps)
            h1 = self._energy(logp1, r1, v1) if math.isfinite(logp1) else math.inf
            delta = h1 - h0
            if not math.isfinite(delta):
                delta = math.inf
            return _Tree(z1, r1, g1, v1, z1, r1, g1, v1, z1, logp1, g1, -delta, r1.copy(), 1,
                         min(1.0, math.exp(-delta)) if delta > -700 else 1.0, False, delta > MAX_DELTA_H)
        first = self._build(z, r, g, direction, depth - 1, eps, h0)
        if first.turning or first.diverging:
            return first
        if direction > 0:
            second = self._build(first.z_plus, first.r_plus, first.g_plus, direction, depth - 1, eps, h0)
        else:
            second = self._build(first.z_minus, first.r_minus, first.g_minus, direction, depth - 1, eps, h0)
        tree = self._merge(first, second, direction, biased=False)
        return tree

    def _merge(self, old: _Tree, new: _Tree, direction: int, biased: bool) -> _Tree:
        log_weight = float(np.logaddexp(old.log_weight, new.log_weight))
        z_prop, logp_prop, g_prop = old.z_prop, old.logp_prop, old.g_prop
        if not (new.turning or new.diverging):
            # uniform progressive sampling within a subtree, biased towards the new half at the top
            log_accept = new.log_weight - (old.log_weight if biased else log_weight)
            if math.log(self.rng.uniform()) < min(0.0, log_accept):
                z_prop, logp_prop, g_prop = new.z_prop, new.logp_prop, new.g_prop
        if direction > 0:
            ends = (old.z_minus, old.r_minus, old.g_minus, old.v_minus, new.z_plus, new.r_plus, new.g_plus, new.v_plus)
        else:
            ends = (new.z_minus, new.r_minus, new.g_minus, new.v_minus, old.z_plus, old.r_plus, old.g_plus, old.v_plus)
        rho = old.rho + new.rho
        turning = new.turning or not self._no_u_turn(rho, ends[3], ends[7])
        if not turning:
            # Stan's extra checks across the two halves of a merged subtree
            left, right = (old, new) if direction > 0 else (new, old)
            turning = not self._no_u_turn(left.rho + right.r_minus, left.v_minus, right.v_minus) or not self._no_u_turn(
                right.rho + left.r_plus, left.v_plus, right.v_plus
            )
        return _Tree(*ends, z_prop, logp_prop, g_prop, log_weight, rho, old.n_leapfrog + new.n_leapfrog,
                     old.sum_accept + new.sum_accept, turning, old.diverging or new.diverging)

    def transition(self, eps: float) -> tuple[int, int, float, bool]:
        """One NUTS transition; returns (depth, leapfrogs, accept statistic, divergent)."""
        r0 = self._momentum()
        v0 = self._velocity(r0)
        h0 = self._energy(self.logp, r0, v0)
        tree = _Tree(self.z, r0, self.grad, v0, self.z, r0, self.grad, v0, self.z, self.logp, self.grad,
                     0.0, r0.copy(), 0, 0.0, False, False)
        depth = 0
        while depth < self.max_depth:
            direction = 1 if self.rng.uniform() < 0.5 else -1
            if direction > 0:
                new = self._build(tree.z_plus, tree.r_plus, tree.g_plus, 1, depth, eps, h0)
            else:
                new = self._build(tree.z_minus, tree.r_minus, tree.g_minus, -1, depth, eps, h0)
            tree = self._merge(tree, new, direction, biased=True)
            depth += 1
            if tree.turning or tree.diverging:
                break
        self.z, self.logp, self.grad = tree.z_prop, tree.logp_prop, tree.g_prop
        n = max(tree.n_leapfrog, 1)
        return depth, tree.n_leapfrog, tree.sum_accept / n, tree.diverging

    def reasonable_step_size(self) -> float:
        """Hoffman & Gelman's heuristic: double or halve until acceptance crosses 0.5."""
        eps = 1.0
        r = self._momentum()
        h0 = self._energy(self.logp, r, self._velocity(r))

        def log_accept(e: float) -> float:
            _, r1, _, logp1, v1 = self._leapfrog(self.z, r, self.grad, e)
            h1 = self._energy(logp1, r1, v1) if np.isfinite(logp1) else math.inf
            return h0 - h1 if np.isfinite(h1) else -math.inf

        direction = 1.0 if log_accept(eps) > math.log(0.5) else -1.0
        for _ in range(50):
            eps_new = eps * 2.0**direction
            la = log_accept(eps_new)
            if (direction > 0 and not la > math.log(0.5)) or (direction < 0 and la > math.log(0.5)):
                return eps_new if direction < 0 else eps
            eps = eps_new
        return eps


def _run_chain(args) -> dict[str, np.ndarray]:
    # One BLAS thread per chain. The density's arrays are small (25 x 25), so more threads buy
    # nothing: a full easy-world fit took 135.3 s with this limit and 136.7 s without, same
    # draws. The limit makes the sequential and parallel paths run alike.
    with threadpool_limits(limits=1):
        return _run_chain_single_threaded(args)


def _run_chain_single_threaded(args) -> dict[str, np.ndarray]:
    log_density, z0, seed, num_warmup, num_samples, target_accept, max_depth, jitter, dense, inv_mass0 = args
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    z_init = np.asarray(z0, dtype=np.float64) + jitter * rng.uniform(-1.0, 1.0, size=np.shape(z0))
    chain = _Chain(log_density, z_init, rng, max_depth)
    if inv_mass0 is not None:
        chain.set_inverse_mass(inv_mass0 if dense else np.diag(inv_mass0).copy())
    eps = chain.reasonable_step_size()
    adapt = _DualAveraging(eps, target_accept)
    windows = warmup_windows(num_warmup)
    ends = {end for _, end in windows}
    first_start = windows[0][0] if windows else num_warmup
    window: list[np.ndarray] = []
    for it in range(num_warmup):
        _, _, acc, _ = chain.transition(eps)
        eps = adapt.update(acc)
        if it >= first_start:
            window.append(chain.z.copy())
        if it + 1 in ends and len(window) > 2:
            w = np.asarray(window)
            n = w.shape[0]
            shrink = n / (n + 5.0)
            if dense:  # Stan's regularised covariance (dense_e)
                cov = np.atleast_2d(np.cov(w, rowvar=False))
                chain.set_inverse_mass(shrink * cov + 1e-3 * (1.0 - shrink) * np.eye(cov.shape[0]))
            else:
                chain.set_inverse_mass(shrink * w.var(axis=0, ddof=1) + 1e-3 * (1.0 - shrink))
            window = []
            eps = chain.reasonable_step_size()
            adapt.restart(eps)
        if it + 1 == num_warmup:
            eps = adapt.final
    if num_warmup == 0:
        eps = adapt.final if adapt.t else eps
    D = chain.z.shape[0]
    out = {
        "draws": np.empty((num_samples, D)),
        "divergent": np.zeros(num_samples, dtype=bool),
        "tree_depth": np.zeros(num_samples, dtype=np.int64),
        "n_leapfrog": np.zeros(num_samples, dtype=np.int64),
        "accept_stat": np.zeros(num_samples),
    }
    for i in range(num_samples):
        depth, n_lf, acc, div = chain.transition(eps)
        out["draws"][i] = chain.z
        out["divergent"][i] = div
        out["tree_depth"][i] = depth
        out["n_leapfrog"][i] = n_lf
        out["accept_stat"][i] = acc
    out["step_size"] = np.asarray(eps)
    out["inverse_mass"] = chain.inv_mass.copy()
    out["seconds"] = np.asarray(time.perf_counter() - t0)
    return out


def sample_nuts(
    log_density: LogDensity,
    z0: np.ndarray,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    chains: int = 2,
    seed: int = 0,
    target_accept_prob: float = 0.85,
    max_tree_depth: int = 10,
    init_jitter: float = 0.5,
    processes: int | None = None,
    dense_mass: bool = False,
    init_inverse_mass: np.ndarray | None = None,
) -> NUTSResult:
    """Run NUTS chains on an unconstrained log density.

    Parameters
    ----------
    log_density : callable
        ``z -> (log p(z), d log p / dz)`` on the unconstrained space (Jacobians included).
        Must be picklable (a module-level function or an instance of a module-level
        class) when chains run in parallel.
    z0 : numpy.ndarray
        Initial point ``(dim,)``, or one per chain ``(chains, dim)``; each chain starts
        there plus a uniform jitter of ``±init_jitter`` (Stan's default is ±2 around zero).
    num_warmup, num_samples, chains : int
        Per chain.
    seed : int
        Chain ``c`` uses ``numpy.random.default_rng([seed, c])``, so the draws do not
        depend on whether chains run in parallel.
    target_accept_prob : float
        Target of the step-size adaptation.
    max_tree_depth : int
        At most :math:`2^{\\text{depth}}` leapfrog steps per transition.
    dense_mass : bool
        Adapt a dense inverse mass matrix (the posterior covariance) instead of a diagonal
        one: fewer leapfrog steps when parameters are correlated, as in an MMM where the
        baseline, the media coefficients and their saturation trade off.
    init_inverse_mass : numpy.ndarray, optional
        Inverse mass matrix ``(dim, dim)`` to start warm-up with (default: identity), e.g.
        the covariance of a variational fit. Warm-up still re-estimates it in Stan's
        windows; a good start only saves the deep trees of early warm-up.
    processes : int, optional
        Worker processes (default: ``MMM_THREADS`` or the CPU count, at most ``chains``);
        1 runs the chains one after another in this process.

    Returns
    -------
    NUTSResult
    """
    if chains < 1 or num_samples < 1 or num_warmup < 0:
        raise ValueError("chains and num_samples must be >= 1 and num_warmup >= 0")
    if not 0.0 < target_accept_prob < 1.0:
        raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob}")
    if processes is None:
        processes = int(os.environ.get("MMM_THREADS", os.cpu_count() or 1))
    processes = max(1, min(int(processes), chains))
    z0 = np.asarray(z0, dtype=np.float64)
    starts = np.broadcast_to(z0, (chains, z0.shape[-1])) if z0.ndim == 1 else z0
    if starts.shape[0] != chains:
        raise ValueError(f"z0 has {starts.shape[0]} initial points for {chains} chains")
    if init_inverse_mass is not None:
        init_inverse_mass = np.asarray(init_inverse_mass, dtype=np.float64)
        if init_inverse_mass.shape != (z0.shape[-1],) * 2:
            raise ValueError(f"init_inverse_mass must be ({z0.shape[-1]}, {z0.shape[-1]}), got {init_inverse_mass.shape}")
    jobs = [
        (log_density, starts[c], np.random.SeedSequence([seed, c]), num_warmup, num_samples, target_accept_prob,
         max_tree_depth, init_jitter, dense_mass, init_inverse_mass)
        for c in range(chains)
    ]
    if processes > 1 and "fork" in _start_methods():
        with ProcessPoolExecutor(max_workers=processes, mp_context=get_context("fork")) as pool:
            outs = list(pool.map(_run_chain, jobs))
    else:
        outs = [_run_chain(j) for j in jobs]
    stack = {k: np.stack([o[k] for o in outs]) for k in outs[0]}
    return NUTSResult(
        draws=stack["draws"],
        divergent=stack["divergent"],
        tree_depth=stack["tree_depth"],
        n_leapfrog=stack["n_leapfrog"],
        accept_stat=stack["accept_stat"],
        step_size=stack["step_size"],
        inverse_mass=stack["inverse_mass"],
        seconds=stack["seconds"],
    )


def _start_methods() -> list[str]:
    import multiprocessing

    return multiprocessing.get_all_start_methods()
