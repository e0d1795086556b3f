"""Convergence diagnostics and ``InferenceData`` export, by ArviZ.

Every sampler in the book reports through these two functions, so R-hat, ESS and Monte Carlo
standard errors are ArviZ's (Vehtari et al. 2021: rank-normalised split R-hat, bulk and tail
effective sample size), not estimators of our own.
"""

from __future__ import annotations

from collections.abc import Mapping

import arviz as az
import numpy as np
import pandas as pd

__all__ = ["inference_data", "summarize_draws"]


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
