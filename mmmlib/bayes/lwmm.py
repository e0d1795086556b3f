"""Run Google's LightweightMMM 0.1.9 itself on a :class:`~mmmlib.data.MediaDataset`.

LightweightMMM needs the JAX, NumPyro and TensorFlow of 2023, which cannot share an environment
with the book's torch. ``make peers-lwmm`` creates a second environment, ``.venv-lwmm``, from
``requirements-lwmm.lock``; this driver writes the data to a temporary file, fits the package
there in a subprocess (``_lwmm_worker.py``, the steps of LightweightMMM's README, costs scaled
by its ``multiply_by=0.15``) and reads the
posterior back. The results have the columns of :meth:`mmmlib.bayes.model.BayesianMMM.roi`, so
the port and the original can be put side by side (Chapter 1).

Controls enter as LightweightMMM's ``extra_features``, standardised as the port standardises
them (LightweightMMM's tutorial divides extra features by their mean, which for a control
centred on zero is not defined).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mmmlib.data import MediaDataset
from mmmlib.inference.diagnostics import interval_summary

__all__ = ["LightweightRun", "LWMM_VERSION", "PeerUnavailable", "lightweightmmm_python", "run_lightweightmmm"]

LWMM_VERSION = "0.1.9"
ENV_VAR = "MMM_LWMM_PYTHON"
_ROOT = Path(__file__).resolve().parents[2]
_WORKER = Path(__file__).with_name("_lwmm_worker.py")
_SITES = {
    "adstock": ("lag_weight", "exponent"),
    "hill_adstock": ("lag_weight", "half_max_effective_concentration", "slope"),
    "carryover": ("ad_effect_retention_rate", "peak_effect_delay", "exponent"),
}
_COMMON_SITES = ("coef_media", "intercept", "sigma", "coef_trend", "expo_trend", "gamma_seasonality", "coef_extra_features")


class PeerUnavailable(RuntimeError):
    """The LightweightMMM environment is missing or broken."""


def lightweightmmm_python() -> Path:
    """The Python of the LightweightMMM environment: ``$MMM_LWMM_PYTHON`` or ``.venv-lwmm``.

    Raises
    ------
    PeerUnavailable
        When neither exists (``make peers-lwmm`` creates ``.venv-lwmm``).
    """
    env = os.environ.get(ENV_VAR)
    path = Path(env) if env else _ROOT / ".venv-lwmm" / "bin" / "python"
    if not path.is_file():
        where = f"{ENV_VAR}={env}" if env else str(path)
        raise PeerUnavailable(
            f"LightweightMMM {LWMM_VERSION} environment not found ({where}); create it with `make peers-lwmm`"
        )
    return path


@dataclass(frozen=True)
class LightweightRun:
    """Posterior of one LightweightMMM fit.

    Attributes
    ----------
    channels : tuple of str
    roi_draws : numpy.ndarray, shape (chains, draws, C)
        ROI per draw from ``get_posterior_metrics`` (contribution over total cost).
    share_draws : numpy.ndarray, shape (chains, draws, C)
        Contribution as a share of predicted sales, per draw (LightweightMMM's definition).
    sites : dict of str to numpy.ndarray
        Posterior draws of the model's sites, ``(chains, draws, ...)``.
    divergences : int
        Divergent transitions after warm-up, all chains.
    seconds : float
        Wall time of ``fit`` in the peer environment.
    """

    channels: tuple[str, ...]
    roi_draws: np.ndarray
    share_draws: np.ndarray
    sites: dict[str, np.ndarray]
    divergences: int
    seconds: float

    def roi(self, level: float = 0.9) -> pd.DataFrame:
        """ROI per channel: ``mean``, ``median``, ``lo``, ``hi`` (as ``BayesianMMM.roi``)."""
        return interval_summary(self.roi_draws, list(self.channels), level)


def run_lightweightmmm(
    data: MediaDataset,
    model: str = "hill_adstock",
    num_warmup: int = 1000,
    num_samples: int = 1000,
    chains: int = 2,
    seed: int = 0,
    target_accept_prob: float = 0.85,
    degrees_seasonality: int = 2,
    seasonality_frequency: int = 52,
    cost_multiplier: float = 0.15,
    timeout: float | None = 3600.0,
) -> LightweightRun:
    """Fit LightweightMMM 0.1.9 to national ``data`` in its own environment.

    Parameters
    ----------
    data : MediaDataset
        National data (LightweightMMM's geo model is not driven here).
    model : str
        ``hill_adstock``, ``adstock`` or ``carryover``.
    num_warmup, num_samples, chains, seed, target_accept_prob :
        NUTS settings, passed to ``LightweightMMM.fit`` (chains run in parallel, one per core).
    degrees_seasonality, seasonality_frequency : int
        Fourier harmonics and period.
    cost_multiplier : float
        ``multiply_by`` of the cost scaler, ``CustomScaler(divide_operation=jnp.mean,
        multiply_by=cost_multiplier)``: the scaled costs are the half-normal scales of the media
        coefficients. Default 0.15, the value of LightweightMMM's README and demo notebooks.
    timeout : float, optional
        Seconds before the subprocess is stopped.

    Returns
    -------
    LightweightRun

    Raises
    ------
    PeerUnavailable
        When the environment is missing or the fit fails there (its stderr is in the message).
    """
    if model not in _SITES:
        raise ValueError(f"model must be one of {tuple(_SITES)}, got {model!r}")
    if not (np.isfinite(cost_multiplier) and cost_multiplier > 0):
        raise ValueError(f"cost_multiplier must be a positive number, got {cost_multiplier!r}")
    if data.geo is not None:
        raise ValueError("run_lightweightmmm drives LightweightMMM's national model: give national data")
    python = lightweightmmm_python()
    ctrl = data.controls_array()
    sd = ctrl.std(axis=0)
    extra = (ctrl - ctrl.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    spend = data.spend_array()
    settings = dict(
        model=model, num_warmup=num_warmup, num_samples=num_samples, chains=chains, seed=seed,
        target_accept_prob=target_accept_prob, degrees_seasonality=degrees_seasonality,
        seasonality_frequency=seasonality_frequency, cost_multiplier=float(cost_multiplier), sites=list(_SITES[model] + _COMMON_SITES),
    )
    with tempfile.TemporaryDirectory(prefix="mmm-lwmm-") as tmp:
        path_in, path_out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(
            path_in,
            media=data.media_array().astype(np.float64),
            target=data.target_array().astype(np.float64),
            costs=spend.sum(axis=0).astype(np.float64),
            extra_features=extra.astype(np.float64),
            settings=np.asarray(json.dumps(settings)),
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONHASHSEED="0")
        try:
            proc = subprocess.run(
                [str(python), str(_WORKER), str(path_in), str(path_out)],
                capture_output=True, text=True, env=env, timeout=timeout, check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise PeerUnavailable(f"LightweightMMM fit did not finish in {timeout} s") from err
        if proc.returncode != 0 or not path_out.is_file():
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise PeerUnavailable(f"LightweightMMM fit failed (exit {proc.returncode}) in {python}:\n{tail}")
        out = dict(np.load(path_out))
    roi = out["roi_by_chain"]
    return LightweightRun(
        channels=tuple(data.channels),
        roi_draws=roi,
        share_draws=out["share"].reshape(roi.shape),
        sites={k[len("site_"):]: v for k, v in out.items() if k.startswith("site_")},
        divergences=int(out["divergences"]),
        seconds=float(out["seconds"]),
    )


if __name__ == "__main__":  # pragma: no cover - a manual check: python -m mmmlib.bayes.lwmm
    from mmmlib.worlds import easy_world

    print(run_lightweightmmm(easy_world(0).data, num_warmup=200, num_samples=200).roi().round(3), file=sys.stdout)
