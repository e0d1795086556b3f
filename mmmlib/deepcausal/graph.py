r"""Structure learning between channels: NOTEARS under an augmented Lagrangian, and its scores.

The graph is learned on the *spends* (how the advertiser's channels move one another), not
on sales. With weekly panels, a parent's spend moves its children a week later, so the
default model is a lag-one structural vector autoregression with a weighted adjacency
:math:`W` (``W[i, j]``: *i → j*) and an own-lag coefficient per channel:

.. math::

    z_{t,j} = a_j\,z_{t-1,j} + \sum_{i \ne j} W_{ij}\,z_{t-1,i} + e_{t,j}.

``lag=0`` fits the classic contemporaneous linear SEM :math:`z_t = z_t W + e` instead (what
a model that only sees one week at a time can use). Both minimise

.. math::

    \frac{1}{2n}\lVert Z - \hat Z\rVert_F^2 + \lambda_1\lVert W\rVert_1
    \quad\text{s.t.}\quad h(W) = \operatorname{tr} e^{W\circ W} - C = 0

by the augmented Lagrangian of :cite:t:`zheng2018notears`: inner L-BFGS-B on
:math:`F + \tfrac{\rho}{2}h^2 + \alpha h` with :math:`W = W^+ - W^-`, :math:`W^\pm \ge 0`;
dual ascent :math:`\alpha \leftarrow \alpha + \rho h`, and :math:`\rho \leftarrow 10\rho`
whenever :math:`h` did not fall below a quarter of its previous value. Entries with
:math:`|W_{ij}|` under ``threshold`` are then set to zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.linalg import expm
from scipy.optimize import minimize

__all__ = [
    "GraphFit",
    "notears",
    "spend_deviations",
    "acyclicity",
    "shd",
    "edge_scores",
    "total_effects",
]


@dataclass(frozen=True)
class GraphFit:
    """A learned channel graph.

    Attributes
    ----------
    weights : numpy.ndarray, shape (C, C)
        Thresholded weighted adjacency (``weights[i, j]``: *i → j*).
    raw : numpy.ndarray, shape (C, C)
        The adjacency before thresholding.
    own_lag : numpy.ndarray, shape (C,)
        Own-lag coefficients :math:`a_j` (zeros when ``lag=0``).
    channels : tuple of str
    lag : int
    h : float
        Acyclicity residual :math:`h(W)` of ``raw`` at the end.
    rho : float
        Final penalty parameter.
    outer_iterations : int
    threshold : float
    """

    weights: np.ndarray
    raw: np.ndarray
    own_lag: np.ndarray
    channels: tuple[str, ...]
    lag: int
    h: float
    rho: float
    outer_iterations: int
    threshold: float

    @property
    def binary(self) -> np.ndarray:
        """0/1 adjacency of the thresholded graph."""
        return (self.weights != 0).astype(int)

    def edges(self) -> pd.DataFrame:
        """Edges of the thresholded graph, strongest first."""
        i, j = np.nonzero(self.weights)
        frame = pd.DataFrame(
            {
                "parent": [self.channels[a] for a in i],
                "child": [self.channels[b] for b in j],
                "weight": self.weights[i, j],
            }
        )
        return frame.reindex(frame["weight"].abs().sort_values(ascending=False).index).reset_index(drop=True)


def acyclicity(w: np.ndarray) -> tuple[float, np.ndarray]:
    r"""NOTEARS' :math:`h(W) = \operatorname{tr} e^{W\circ W} - C` and its gradient."""
    e = expm(w * w)
    return float(np.trace(e) - w.shape[0]), e.T * w * 2.0


def spend_deviations(media: np.ndarray, train_weeks: int | None = None) -> np.ndarray:
    """Standardised log-spend deviations per region and channel.

    Log spend minus each region-channel's mean, divided by each channel's pooled standard
    deviation; both statistics come from the first ``train_weeks`` weeks only.

    Parameters
    ----------
    media : numpy.ndarray, shape (R, T, C)
        Spend; must be positive.
    train_weeks : int, optional
        Weeks used for the statistics (default: all).

    Returns
    -------
    numpy.ndarray, shape (R, T, C)
    """
    media = np.asarray(media, dtype=np.float64)
    if media.ndim != 3:
        raise ValueError(f"media must have shape (regions, weeks, channels), got {media.shape}")
    bad = np.argwhere(~(media > 0))
    if len(bad):
        r, t, c = bad[0]
        raise ValueError(f"spend must be positive and finite for a log scale: region {r}, week {t}, channel {c}")
    n = media.shape[1] if train_weeks is None else int(train_weeks)
    log = np.log(media)
    centred = log - log[:, :n].mean(axis=1, keepdims=True)
    sd = centred[:, :n].reshape(-1, media.shape[2]).std(axis=0)
    return centred / np.where(sd > 0, sd, 1.0)


def _design(z: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    if lag == 1:
        return z[:, :-1].reshape(-1, z.shape[2]), z[:, 1:].reshape(-1, z.shape[2])
    flat = z.reshape(-1, z.shape[2])
    return flat, flat


def notears(
    z: np.ndarray,
    channels: Sequence[str],
    lag: int = 1,
    lambda1: float = 0.02,
    threshold: float = 0.2,
    h_tol: float = 1e-8,
    rho_max: float = 1e16,
    max_outer: int = 100,
) -> GraphFit:
    """Learn a weighted acyclic adjacency between channels (see the module docstring).

    Parameters
    ----------
    z : numpy.ndarray, shape (R, T, C)
        Standardised series (e.g. :func:`spend_deviations`), one sequence per region.
    channels : sequence of str
        Channel names, length C.
    lag : {0, 1}
        1: lag-one structural VAR with own lags; 0: contemporaneous linear SEM.
    lambda1 : float
        L1 weight on :math:`W`.
    threshold : float
        Edges with smaller absolute weight are removed afterwards.
    h_tol, rho_max, max_outer : float, float, int
        Stopping rules of the augmented Lagrangian.

    Returns
    -------
    GraphFit
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 3:
        raise ValueError(f"z must have shape (regions, weeks, channels), got {z.shape}")
    c = z.shape[2]
    if len(channels) != c:
        raise ValueError(f"{len(channels)} channel names for {c} channels")
    if lag not in (0, 1):
        raise ValueError(f"lag must be 0 or 1, got {lag}")
    if not np.all(np.isfinite(z)):
        raise ValueError("z contains non-finite values")
    if lambda1 < 0 or threshold < 0:
        raise ValueError(f"lambda1 and threshold must be >= 0, got {lambda1}, {threshold}")
    x, y = _design(z, lag)
    n = x.shape[0]
    cc = c * c
    use_own = lag == 1

    def unpack(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = (p[:cc] - p[cc : 2 * cc]).reshape(c, c)
        a = p[2 * cc :] if use_own else np.zeros(c)
        return w, a

    def objective(p: np.ndarray, rho: float, alpha: float) -> tuple[float, np.ndarray]:
        w, a = unpack(p)
        resid = y - x @ w - x * a
        loss = 0.5 / n * np.sum(resid**2)
        g_w = -x.T @ resid / n
        h, g_h = acyclicity(w)
        obj = loss + 0.5 * rho * h * h + alpha * h + lambda1 * p[: 2 * cc].sum()
        g_smooth = g_w + (rho * h + alpha) * g_h
        grad = np.concatenate([g_smooth.ravel() + lambda1, -g_smooth.ravel() + lambda1])
        if use_own:
            grad = np.concatenate([grad, -np.sum(x * resid, axis=0) / n])
        return obj, grad

    diag = np.eye(c, dtype=bool).ravel()
    bounds = [(0.0, 0.0) if d else (0.0, None) for d in diag] * 2
    if use_own:
        bounds += [(None, None)] * c
    p = np.zeros(2 * cc + (c if use_own else 0))
    rho, alpha, h = 1.0, 0.0, np.inf
    outer = 0
    for outer in range(1, max_outer + 1):  # noqa: B007 - reported
        while rho < rho_max:
            sol = minimize(objective, p, args=(rho, alpha), jac=True, method="L-BFGS-B", bounds=bounds)
            h_new, _ = acyclicity(unpack(sol.x)[0])
            if h_new > 0.25 * h:
                rho *= 10.0
            else:
                break
        p, h = sol.x, h_new
        alpha += rho * h
        if h <= h_tol or rho >= rho_max:
            break
    w, a = unpack(p)
    kept = np.where(np.abs(w) >= threshold, w, 0.0)
    return GraphFit(
        weights=kept,
        raw=w,
        own_lag=a,
        channels=tuple(channels),
        lag=lag,
        h=float(h),
        rho=float(rho),
        outer_iterations=outer,
        threshold=threshold,
    )


def shd(estimate: np.ndarray, truth: np.ndarray) -> int:
    """Structural Hamming distance: edge additions, deletions and reversals (a reversal counts once)."""
    e = np.asarray(estimate) != 0
    t = np.asarray(truth) != 0
    if e.shape != t.shape or e.ndim != 2 or e.shape[0] != e.shape[1]:
        raise ValueError(f"adjacencies must be square and of equal shape, got {e.shape} and {t.shape}")
    distance = 0
    for i in range(e.shape[0]):
        for j in range(i + 1, e.shape[0]):
            if (e[i, j], e[j, i]) != (t[i, j], t[j, i]):
                distance += 1
    return distance


def edge_scores(estimate: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Directed-edge precision, recall and F1, plus SHD and edge counts.

    A reversed edge is both a false positive and a false negative.
    """
    e = np.asarray(estimate) != 0
    t = np.asarray(truth) != 0
    tp = int(np.sum(e & t))
    n_est, n_true = int(e.sum()), int(t.sum())
    precision = tp / n_est if n_est else float(n_true == 0)
    recall = tp / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "shd": shd(estimate, truth),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "edges": n_est,
        "true_edges": n_true,
    }


def total_effects(weights: np.ndarray, own_lag: np.ndarray) -> np.ndarray:
    r"""Long-run effect of holding one channel's (standardised) spend up on every channel.

    Holding channel *i* at :math:`z_i = 1`, a child settles at
    :math:`z_j = \sum_k W_{kj} z_k / (1 - a_j)`; on a DAG the total effect matrix is
    :math:`(I - B)^{-1}` with :math:`B_{kj} = W_{kj}/(1-a_j)` (row *i*: effects of *i*).
    """
    w = np.asarray(weights, dtype=np.float64)
    a = np.asarray(own_lag, dtype=np.float64)
    if np.any(a >= 1):
        raise ValueError(f"own-lag coefficients must be < 1 for a long run to exist, got {a}")
    b = w / (1.0 - a)[None, :]
    return np.linalg.inv(np.eye(w.shape[0]) - b)
