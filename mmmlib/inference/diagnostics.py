"""Convergence diagnostics and ``InferenceData`` export, by ArviZ.

Every sampler in the book reports through summarize_draws and inference_data, so R-hat, ESS and Monte Carlo
standard errors are ArviZ's (Vehtari et al. 2021: rank-normalised split R-hat, bulk and tail
effective sample size), not estimators of our own.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd

# ArviZ 0.23 announces its 1.0 refactor with a FutureWarning at import (stderr of every chapter).
warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)

import arviz as az  # noqa: E402

__all__ = ["compare_draws", "inference_data", "interval_summary", "summarize_draws"]


def inference_data(
    posterior: Mapping[str, np.ndarray],
    sample_stats: Mapping[str, np.ndarray] | None = None,
    dims: Mapping[str, list[str]] | None = None,
    coords: Mapping[str, list] | None = None,
    attrs: Mapping[str, object] | None = None,
) -> az.InferenceData:
    """An :class:`arviz.InferenceData` from draws shaped ``(chains, draws, ...)``.

    Parameters
    ----------
    posterior : mapping of str to numpy.ndarray
        Posterior draws per site, chain axis first, then draws.
    sample_stats : mapping, optional
        Per-draw sampler statistics (``diverging``, ``tree_depth``, ``n_steps``, ...), ``(chains, draws)``.
    dims, coords : mapping, optional
        Named dimensions of the sites (e.g. ``{"coef_media": ["channel"]}``) and their labels.
    attrs : mapping, optional
        Attributes stored with the posterior group (model, inference, mmmlib version, ...).
    """
    post = {k: np.asarray(v) for k, v in posterior.items()}
    for name, v in post.items():
        if v.ndim < 2:
            raise ValueError(f"posterior site {name!r} must be shaped (chains, draws, ...), got {v.shape}")
    stats = None if sample_stats is None else {k: np.asarray(v) for k, v in sample_stats.items()}
    idata = az.from_dict(posterior=post, sample_stats=stats, dims=dict(dims or {}), coords=dict(coords or {}))
    if attrs:
        idata.posterior.attrs.update({k: str(v) for k, v in attrs.items()})
    return idata


def summarize_draws(posterior: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Per scalar parameter: ``mean``, ``sd``, ``rhat``, ``ess_bulk``, ``ess_tail``, ``mcse_mean``
    and ``ess`` (the smaller of bulk and tail ESS), from draws shaped ``(chains, draws, ...)``.

    Vector sites are flattened to ``name[j]`` rows. R-hat and ESS are NaN for a single draw per
    chain; with one chain, R-hat is ArviZ's split R-hat of that chain's two halves.
    """
    rows: dict[str, dict[str, float]] = {}
    for name, v in posterior.items():
        v = np.asarray(v, dtype=np.float64)
        flat = v.reshape(v.shape[0], v.shape[1], -1)
        for j in range(flat.shape[-1]):
            x = flat[..., j]
            label = name if flat.shape[-1] == 1 else f"{name}[{j}]"
            enough = x.shape[1] >= 4
            bulk = float(az.ess(x, method="bulk")) if enough else float("nan")
            tail = float(az.ess(x, method="tail")) if enough else float("nan")
            rows[label] = {
                "mean": float(x.mean()),
                "sd": float(x.std()),
                "rhat": float(az.rhat(x, method="rank")) if enough else float("nan"),
                "ess_bulk": bulk,
                "ess_tail": tail,
                "ess": min(bulk, tail),
                "mcse_mean": float(az.mcse(x, method="mean")) if enough else float("nan"),
            }
    return pd.DataFrame(rows).T


def compare_draws(
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    probs: tuple[float, ...] = (0.05, 0.95),
) -> pd.DataFrame:
    r"""Do two samplers' draws describe the same posterior, within Monte Carlo error?

    For every scalar in the sites ``a`` and ``b`` share (draws shaped ``(chains, draws, ...)``),
    and for the mean and each quantile in ``probs``: both estimates, their difference and the
    combined Monte Carlo standard error :math:`\sqrt{\mathrm{MCSE}_a^2 + \mathrm{MCSE}_b^2}`
    (ArviZ's MCSE of the mean and of quantiles, which account for autocorrelation), and
    ``z``, the difference in units of that error. Two exact samplers of one posterior give
    :math:`|z| \le 3` in all but about 0.3% of rows.

    Returns
    -------
    pandas.DataFrame
        One row per (parameter, statistic): ``estimate_a``, ``estimate_b``, ``difference``,
        ``mcse``, ``z``.
    """
    rows = []
    for name in a:
        if name not in b:
            continue
        xa = np.asarray(a[name], dtype=np.float64)
        xb = np.asarray(b[name], dtype=np.float64)
        fa = xa.reshape(xa.shape[0], xa.shape[1], -1)
        fb = xb.reshape(xb.shape[0], xb.shape[1], -1)
        if fa.shape[-1] != fb.shape[-1]:
            raise ValueError(f"site {name!r} has {fa.shape[-1]} values in a, {fb.shape[-1]} in b")
        for j in range(fa.shape[-1]):
            label = name if fa.shape[-1] == 1 else f"{name}[{j}]"
            ya, yb = fa[..., j], fb[..., j]
            stats_ = [("mean", None)] + [(f"q{round(100 * p):02d}", p) for p in probs]
            for stat, p in stats_:
                if p is None:
                    ea, eb = float(ya.mean()), float(yb.mean())
                    ma, mb = float(az.mcse(ya, method="mean")), float(az.mcse(yb, method="mean"))
                else:
                    ea, eb = float(np.quantile(ya, p)), float(np.quantile(yb, p))
                    ma = float(az.mcse(ya, method="quantile", prob=p))
                    mb = float(az.mcse(yb, method="quantile", prob=p))
                mcse = float(np.hypot(ma, mb))
                rows.append(dict(parameter=label, statistic=stat, estimate_a=ea, estimate_b=eb,
                                 difference=ea - eb, mcse=mcse, z=(ea - eb) / mcse if mcse > 0 else float("nan")))
    return pd.DataFrame(rows)


def interval_summary(draws: np.ndarray, index: list[str], level: float = 0.9, name: str = "channel") -> pd.DataFrame:
    """Posterior mean, median and central interval of each column of ``draws``.

    Parameters
    ----------
    draws : ndarray
        ``(S, K)`` draws of ``K`` quantities (leading axes beyond the first are flattened into
        the draws when ``draws`` has more than two dimensions).
    index : list of str
        Names of the ``K`` quantities.
    level : float
        Probability of the central interval, in (0, 1).
    name : str
        Name of the index.

    Returns
    -------
    DataFrame
        Columns ``mean``, ``median``, ``lo``, ``hi``, one row per quantity.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    draws = np.asarray(draws, dtype=float).reshape(-1, len(index))
    a = (1.0 - level) / 2.0
    return pd.DataFrame(
        {
            "mean": draws.mean(axis=0),
            "median": np.median(draws, axis=0),
            "lo": np.quantile(draws, a, axis=0),
            "hi": np.quantile(draws, 1.0 - a, axis=0),
        },
        index=pd.Index(list(index), name=name),
    )
